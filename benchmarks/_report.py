"""Writing one benchmark's section of BENCHMARKS.md and measuring a process tree's peak memory."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import psutil

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nEvery number here is written by a script in `benchmarks/` that anyone can rerun; "
    "each compares against its reference measured in the same run (the machines are shared and noisy: "
    "ratios hold, absolute times do not).\n"
)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (appending if absent)."""
    text = path.read_text() if path.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text)


def _tree_pss(root: psutil.Process) -> int:
    """Proportional set size of a process and all its descendants (shared pages split fairly)."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_measured(command: list[str], *, interval: float = 0.25, timeout: float = 3600) -> tuple[str, int]:
    """Run a command; return its stdout and the peak PSS (bytes) of its process tree while it ran."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                peak = max(peak, _tree_pss(root))
            except psutil.NoSuchProcess:
                return
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate(timeout=timeout)
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-4000:]}")
    return stdout, peak
