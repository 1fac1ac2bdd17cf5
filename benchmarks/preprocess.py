"""Preprocessing throughput and peak memory: the Ray Data job against single-process pandas.

For each size (default 10^5, 10^6, 10^7 synthetic events with the default dirt), both engines run the
same library steps on the same files, each in a fresh process whose whole process tree (Ray's GCS,
raylet and workers included) is sampled for peak PSS. Times are the pipeline alone; Ray's cluster
start-up is reported apart. Writes the ``preprocess`` section of BENCHMARKS.md.

    python -m benchmarks.preprocess [--sizes 100000,1000000,10000000] [--workdir /tmp/wf-bench]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import psutil

from benchmarks._report import run_measured, write_section
from recsys.data.synthetic import SyntheticConfig, generate

ENGINES = ("pandas", "ray")


def dataset(size: int, workdir: Path) -> tuple[Path, str]:
    """The synthetic dataset of ``size`` clean events (generated once, reused) and its end time."""
    config = SyntheticConfig(seed=0, n_events=size, chunk_rows=max(size // 8, 10_000))
    path = workdir / f"events-{size}"
    if not (path / "manifest.json").exists():
        print(f"[bench] generating {size:,} events", file=sys.stderr, flush=True)
        generate(config, str(path))
    return path, config.end.isoformat()


def measure(size: int, workdir: Path) -> list[dict[str, float | int | str]]:
    data, now = dataset(size, workdir)
    manifest = json.loads((data / "manifest.json").read_text())
    rows: list[dict[str, float | int | str]] = []
    for engine in ENGINES:
        print(f"[bench] {engine} on {size:,}", file=sys.stderr, flush=True)
        command = [
            sys.executable,
            "-m",
            "benchmarks._preprocess_run",
            "--engine",
            engine,
            "--data",
            str(data),
            "--out",
            str(workdir / f"out-{engine}-{size}"),
            "--now",
            now,
        ]
        stdout, peak = run_measured(command)
        result = json.loads(stdout.strip().splitlines()[-1])
        rows_in = int(manifest["events"]["rows"])
        rows.append(
            {
                "size": size,
                "engine": engine,
                "rows_in": rows_in,
                "rows_out": int(result["rows_out"]),
                "seconds": float(result["seconds"]),
                "startup": float(result["startup"]),
                "rows_per_s": rows_in / float(result["seconds"]),
                "peak_mb": peak / 2**20,
            }
        )
    return rows


def render(results: list[dict[str, float | int | str]]) -> str:
    lines = [
        "## Preprocessing: Ray Data job vs single-process pandas",
        "",
        "`python -m benchmarks.preprocess` on synthetic events with the default dirt (Parquet, 8 files), "
        f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}. Seconds are the pipeline alone (read, validate, dedup, bots, "
        "catalogue features, event features, write); peak memory is the PSS of the whole process tree.",
        "",
        "| events in | engine | seconds | rows/s | peak MiB | time vs pandas | Ray start-up s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    by_size: dict[int, dict[str, dict[str, float | int | str]]] = {}
    for row in results:
        by_size.setdefault(int(row["size"]), {})[str(row["engine"])] = row
    for size in sorted(by_size):
        pandas_seconds = float(by_size[size]["pandas"]["seconds"])
        for engine in ENGINES:
            row = by_size[size][engine]
            ratio = float(row["seconds"]) / pandas_seconds
            startup = f"{float(row['startup']):.1f}" if engine == "ray" else ""
            lines.append(
                f"| {int(row['rows_in']):,} | {engine} | {float(row['seconds']):.1f} | "
                f"{float(row['rows_per_s']):,.0f} | {float(row['peak_mb']):,.0f} | {ratio:.2f}x | {startup} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--workdir", default="/tmp/wf-bench-preprocess")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        results.extend(measure(size, workdir))
        (workdir / "results.json").write_text(json.dumps(results, indent=1))
    write_section("preprocess", render(results))
    print(render(results))


if __name__ == "__main__":
    main()
