"""Fixtures for tests/io.

`gameday_redis` comes from harness/pytest_services.py when it exists (the project's service
provisioning); until then a local redis-server is started here for the session.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

if importlib.util.find_spec("harness.pytest_services") is not None:
    from harness.pytest_services import gameday_redis  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
else:

    @dataclass(frozen=True)
    class _LocalRedis:
        url: str

    @pytest.fixture(scope="session")
    def gameday_redis() -> Iterator[_LocalRedis]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            pytest.skip("redis-server not found: install it (apt-get install redis-server) to run Redis tests")
        server = start_redis_server(binary)
        try:
            yield _LocalRedis(url=f"redis://127.0.0.1:{server.port}/0")
        finally:
            server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis_server(binary: str = "redis-server") -> RedisServer:
    """A throwaway redis-server on a free loopback port, no persistence; ready when returned."""
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode} on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return RedisServer(port, process)
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"redis-server did not answer PING on port {port} within 10 s")


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop (for outage tests)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server not found: install it (apt-get install redis-server) to run Redis outage tests")
    server = start_redis_server(binary)
    try:
        yield server
    finally:
        server.stop()
