"""A real ``redis-server`` for tests, as a pytest plugin (tests/conftest.py loads it).

The server listens on a free loopback port, keeps its files in a temporary directory and runs with
``appendonly yes`` + ``appendfsync always`` (acknowledged means durable), as production should.
:meth:`RedisServer.restart` kills it (SIGKILL, a crash) and starts it again on the same port and
directory, so tests can check that acknowledged writes survive. Tests skip, saying why, only when
the ``redis-server`` binary is missing; CI installs it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with its data in ``directory``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on a free port (kept across restarts) and wait until it answers PING."""
        for _ in range(3):
            if not self.port:
                self.port = _free_port()
            if self._launch():
                return
            self.port = 0
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start in {self.directory}; log tail:\n{log}")

    def _launch(self) -> bool:
        command = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            *("--daemonize", "no", "--logfile", "redis.log"),
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers_ping(self.port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self, *, crash: bool = False) -> None:
        """Stop the server: SIGKILL when ``crash``, else SIGTERM (Redis then flushes and exits)."""
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, *, crash: bool = True) -> None:
        """Stop (by default as a crash) and start again with the same port and data directory."""
        self.stop(crash=crash)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running :class:`RedisServer` for the whole session; its ``url`` is ``redis://127.0.0.1:PORT/0``."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (apt-get install redis-server): the Redis store tests need it"
        )
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError):
            server.stop()
