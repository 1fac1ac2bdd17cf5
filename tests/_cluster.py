"""A real Ray cluster started with ``ray start`` for tests of the ``ray job submit`` path.

It uses its own temp dir, ports and auth token, and stops only its own processes (``ray stop`` would
stop every Ray process on the machine, the test session's cluster included). :meth:`add_worker`
joins a second node on the same machine (``ray start --address=...`` with its own CPUs and custom
resources); :meth:`kill_worker` stops that node abruptly (SIGKILL), as a lost machine would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class WorkerNode:
    """A node joined with ``ray start --address``; its raylet is recognised by its own ports."""

    node_manager_port: int
    temp_dir: str


def _ray_start(command: list[str], env: dict[str, str]) -> None:
    """Run ``ray start``; on failure, raise with what it printed (its exit status alone says nothing)."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


class LocalCluster:
    """``ray start --head`` with token authentication, on free ports, as a context manager."""

    def __init__(self, *, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.workers: list[WorkerNode] = []
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
        try:
            _ray_start(command, self.env)
        except BaseException:
            self.__exit__(None, None, None)  # a half-started head leaves processes behind
            raise
        return self

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}

    def add_worker(self, *, num_cpus: int = 1, resources: dict[str, float] | None = None) -> WorkerNode:
        """Join a second node to this cluster, on this machine, and wait until the GCS lists it."""
        node = WorkerNode(free_port(), tempfile.mkdtemp(prefix="wfw-", dir="/tmp"))
        before = len(self.alive_nodes())
        command = [
            str(BIN / "ray"),
            "start",
            f"--address={self.gcs_address}",
            f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources or {})}",
            f"--node-manager-port={node.node_manager_port}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={node.temp_dir}",
            "--disable-usage-stats",
        ]
        self.workers.append(node)  # first, so that __exit__ stops it even if the start fails
        _ray_start(command, self.env)
        deadline = time.monotonic() + 60
        while len(self.alive_nodes()) <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker node did not join within 60 s")
            time.sleep(0.5)
        return node

    def kill_worker(self, node: WorkerNode) -> None:
        """SIGKILL the node's raylet and everything it started (workers, agents), like a lost host."""
        marker = f"--node_manager_port={node.node_manager_port}"
        raylets = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
        if not raylets:
            raise RuntimeError(f"no raylet with {marker} is running")
        victims = [*raylets]
        for raylet in raylets:
            with contextlib.suppress(psutil.NoSuchProcess):
                victims += raylet.children(recursive=True)
        for proc in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(victims, timeout=10)

    def state(self, kind: str, **filters: str) -> list[dict[str, Any]]:
        """Rows of the State API (``actors``, ``tasks``, ``nodes``) through the dashboard, with the token."""
        params: dict[str, Any] = {"limit": 10_000, "detail": 1}
        if filters:
            params["filter_keys"] = list(filters)
            params["filter_predicates"] = ["="] * len(filters)
            params["filter_values"] = list(filters.values())
        response = requests.get(
            f"{self.dashboard_url}/api/v0/{kind}", params=params, headers=self.auth_headers, timeout=60
        )
        response.raise_for_status()
        return list(response.json()["data"]["result"]["result"])

    def alive_nodes(self) -> list[str]:
        return [n["node_id"] for n in self.state("nodes") if n["state"] == "ALIVE"]

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
        markers = (
            self.temp_dir,
            f":{self.gcs_port}",
            f"--port={self.dashboard_port}",
            *(w.temp_dir for w in self.workers),
        )
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
        for path in (self.temp_dir, *(w.temp_dir for w in self.workers)):
            shutil.rmtree(path, ignore_errors=True)
