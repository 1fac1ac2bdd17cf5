"""A real Ray cluster started with ``ray start`` for tests of the ``ray job submit`` path.

It uses its own temp dir, ports and auth token, and stops only its own processes (``ray stop`` would
stop every Ray process on the machine, the test session's cluster included).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    """``ray start --head`` with token authentication, on free ports, as a context manager."""

    def __init__(self, *, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.temp_dir = tempfile.mkdtemp(prefix="wfc-", dir="/tmp")
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "OPENBLAS_NUM_THREADS": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("RAY_ADDRESS", None)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def __enter__(self) -> LocalCluster:
        command = [
            str(BIN / "ray"),
            "start",
            "--head",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--num-cpus={self.num_cpus}",
            # every port explicit: a second cluster on this machine (the test session's) holds defaults
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        subprocess.run(command, env=self.env, check=True, capture_output=True, timeout=120)
        return self

    def submit(
        self, *entrypoint: str, working_dir: Path, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``ray job submit`` and wait; returns the finished CLI process (stdout holds the job's log)."""
        command = [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            self.dashboard_url,
            "--working-dir",
            str(working_dir),
            "--",
            *entrypoint,
        ]
        deadline = time.monotonic() + 90
        while True:  # right after start the job agent may not be up yet; Ray says to try again later
            finished = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
            if "No available agent" not in finished.stderr or time.monotonic() > deadline:
                return finished
            time.sleep(2)

    def _own_processes(self) -> list[psutil.Process]:
        markers = (self.temp_dir, f":{self.gcs_port}", f"--port={self.dashboard_port}")
        roots = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if any(marker in cmdline for marker in markers):
                roots.append(proc)
        found = {p.pid: p for p in roots}
        for root in roots:
            try:
                for child in root.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def __exit__(self, *exc: object) -> None:
        processes = self._own_processes()
        for proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(processes, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
