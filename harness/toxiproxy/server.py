"""An embedded, Toxiproxy-compatible server (the HTTP API of Toxiproxy 2.12 plus its TCP data plane).

The compatibility target is ``../shared/specs/toxiproxy-api.md``. The API is served by aiohttp; the data
plane is raw asyncio streams. Each proxied connection has two links: ``upstream`` (client -> server) and
``downstream`` (server -> client). A link is a reader task that timestamps every chunk it reads and a pump
that pushes each chunk through the link's toxics (one stub per toxic, in the order they were added) and
writes the result to the other side. Chunk timestamps make latency pipeline like the real server's: a
chunk is released at its arrival time plus the latency, not after the previous chunk's delay.

Toxicity is rolled per connection and direction when the link starts (or when the toxic is attached to a
link that is already open, or when its toxicity is updated). Toxic attributes are read live, so an
update applies to open connections at once; every wait inside a toxic wakes on a change of its link.

Three ways to run it:

* ``await start_embedded_toxiproxy(host, port)`` inside a running event loop -> :class:`EmbeddedToxiproxy`;
* :class:`EmbeddedToxiproxyThread` - the same server on its own event loop in a daemon thread, for
  synchronous code (pytest fixtures) and for serving other processes;
* :func:`run_toxiproxy` - blocking, prints the API URL, stops on SIGINT/SIGTERM
  (``python -m harness.toxiproxy``).

The parts: ``api`` (the HTTP API and the proxy collection), ``proxy`` (listeners), ``link`` (the data
plane of a connection), ``toxics`` (toxic types and their effects), ``addresses``, ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
from typing import Any

from aiohttp import web

from harness.toxiproxy.addresses import is_loopback, join_hostport
from harness.toxiproxy.api import ToxiproxyServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EmbeddedToxiproxy",
    "EmbeddedToxiproxyThread",
    "load_populate_file",
    "run_toxiproxy",
    "start_embedded_toxiproxy",
]


class EmbeddedToxiproxy:
    """A running embedded server inside the current event loop."""

    def __init__(self, server: ToxiproxyServer, runner: web.AppRunner, host: str, port: int) -> None:
        self.server = server
        self._runner = runner
        self.host = host
        self.port = port
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{join_hostport(self.host, self.port)}"

    async def populate(self, proxies: list[dict[str, Any]]) -> None:
        async with self.server.lock:
            _, error = await self.server.populate(proxies)
        if error is not None:
            raise error

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._runner.cleanup()
        await self.server.close_all()


async def start_embedded_toxiproxy(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    seed: int | None = None,
    allow_remote: bool | None = None,
) -> EmbeddedToxiproxy:
    """Start the API on host:port (0 = ephemeral) in the running loop.

    Proxies may only listen on loopback addresses unless ``allow_remote`` is true; by default it is true
    exactly when the API itself was told to bind a non-loopback host.
    """
    if allow_remote is None:
        allow_remote = not (is_loopback(host) or host == "localhost")
    server = ToxiproxyServer(allow_remote=allow_remote, seed=seed)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    runner = web.AppRunner(server.build_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    return EmbeddedToxiproxy(server, runner, str(bound_host), int(bound_port))


def load_populate_file(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of proxies")
    return data


def run_toxiproxy(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    config: str | None = None,
    seed: int | None = None,
    allow_remote: bool | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM. Prints the API URL once listening. Returns the exit code."""
    proxies = load_populate_file(config) if config else None

    async def main() -> None:
        handle = await start_embedded_toxiproxy(host, port, seed=seed, allow_remote=allow_remote)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            if proxies is not None:
                await handle.populate(proxies)
            print(f"Toxiproxy API listening on {handle.url}", flush=True)
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await handle.stop()
            print("Toxiproxy stopped", flush=True)

    asyncio.run(main())
    return 0


class EmbeddedToxiproxyThread:
    """The embedded server on its own event loop in a daemon thread (for synchronous callers).

    Other processes reach it over TCP like any Toxiproxy; nothing here is shared process state, so a
    child process may also create its own instance.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        seed: int | None = None,
        allow_remote: bool | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._seed = seed
        self._allow_remote = allow_remote
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handle: EmbeddedToxiproxy | None = None

    @property
    def url(self) -> str:
        return self._require().url

    @property
    def host(self) -> str:
        return self._require().host

    @property
    def port(self) -> int:
        return self._require().port

    def _require(self) -> EmbeddedToxiproxy:
        if self._handle is None:
            raise RuntimeError("EmbeddedToxiproxyThread is not running; call start() first")
        return self._handle

    def start(self, timeout: float = 10.0) -> EmbeddedToxiproxyThread:
        if self._thread is not None:
            raise RuntimeError("EmbeddedToxiproxyThread already started")
        self._thread = threading.Thread(target=self._run, name="embedded-toxiproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"embedded Toxiproxy did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"embedded Toxiproxy failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        try:
            self._handle = await start_embedded_toxiproxy(
                self._host, self._port, seed=self._seed, allow_remote=self._allow_remote
            )
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._handle.stop()

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or event is None:
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
            thread.join(timeout)

    def __enter__(self) -> EmbeddedToxiproxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
