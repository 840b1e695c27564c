# The services fixtures (gameday_redis, gameday_toxiproxy, toxiproxy_clean) come from harness.pytest_services.
# `pytest_plugins = [...]` here would break a full `pytest` run ("Defining 'pytest_plugins' in a non-top-level
# conftest is no longer supported"), so the module is registered from pytest_configure, once, unless the gameday
# plugin has already registered it.
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

import harness.pytest_services as _services_plugin


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(_services_plugin):
        config.pluginmanager.register(_services_plugin, "harness.pytest_services")


class TcpServer:
    """A small threaded TCP server on loopback; ``handler(conn)`` runs per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self._closed = False
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass


def _echo(conn: socket.socket) -> None:
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def _greeter(conn: socket.socket) -> None:
    conn.sendall(b"hello")


@pytest.fixture(scope="session")
def echo_server() -> Iterator[TcpServer]:
    server = TcpServer(_echo)
    yield server
    server.close()


@pytest.fixture(scope="session")
def greeter_server() -> Iterator[TcpServer]:
    """Sends b"hello" and closes at once."""
    server = TcpServer(_greeter)
    yield server
    server.close()


@pytest.fixture
def tcp_server_factory() -> Iterator[Callable[[Callable[[socket.socket], None]], TcpServer]]:
    servers: list[TcpServer] = []

    def make(handler: Callable[[socket.socket], None]) -> TcpServer:
        server = TcpServer(handler)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
