"""Starting or joining a Ray cluster the same way from every job."""

from __future__ import annotations

import logging
import os

import ray

WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Every worker keeps BLAS at one thread: two threads made one top-k query several times slower."""


def init_ray(address: str | None = None, *, num_cpus: int | None = None, temp_dir: str | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one.

    Inside ``ray job submit`` the job's driver finds its cluster through ``RAY_ADDRESS`` and keeps the
    runtime environment the job was submitted with. A local cluster gets one-thread BLAS in workers.
    Calling this twice in one process is a no-op.
    """
    if ray.is_initialized():
        return
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)
    target = address or os.environ.get("RAY_ADDRESS")
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if target:
        ray.init(address=target, **quiet)  # type: ignore[arg-type]
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": dict(WORKER_ENV)},
            _temp_dir=temp_dir,
            **quiet,  # type: ignore[arg-type]
        )
    configure_data_context()


def configure_data_context(*, progress_bars: bool = False) -> None:
    """Ray Data settings for our small-to-medium batches (see docs/ray-guide notes in README)."""
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our own progress lines say enough
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress_bars
    ctx.print_on_execution_start = False
    ctx.enable_arrow_backed_pandas_conversion = False
