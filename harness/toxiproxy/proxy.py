"""One proxy: a loopback listener that opens a connection upstream per client and forwards it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from harness.toxiproxy.addresses import join_hostport, resolve_listen_host, split_hostport
from harness.toxiproxy.errors import ApiError
from harness.toxiproxy.link import Connection
from harness.toxiproxy.toxics import STREAMS, Toxic

if TYPE_CHECKING:
    from harness.toxiproxy.api import ToxiproxyServer

UPSTREAM_CONNECT_TIMEOUT_S = 10.0


class Proxy:
    def __init__(self, server: ToxiproxyServer, name: str, listen: str, upstream: str, enabled: bool) -> None:
        self.server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = enabled
        self.toxics: list[Toxic] = []
        self.connections: set[Connection] = set()
        self._listener: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._generation = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": self.toxics_json(),
        }

    def toxics_json(self) -> list[dict[str, Any]]:
        return [t.to_json() for stream in STREAMS for t in self.toxics if t.stream == stream]

    def find_toxic(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise ApiError(404, "toxic not found")

    # -- lifecycle
    async def start(self) -> None:
        host, port = split_hostport(self.listen, "listen")
        bind_host = resolve_listen_host(host, self.server.allow_remote)
        try:
            listener = await asyncio.start_server(self._on_client, bind_host, port, reuse_address=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ApiError(500, f"listen tcp {join_hostport(bind_host, port)}: bind: {reason.lower()}") from None
        self._listener = listener
        self._generation += 1
        real_port = listener.sockets[0].getsockname()[1]
        self.listen = join_hostport(bind_host, real_port)
        self.enabled = True

    async def stop(self) -> None:
        self.enabled = False
        self._generation += 1
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in list(self.connections):
            conn.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)
        if listener is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), timeout=1.0)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        generation = self._generation
        try:
            host, port = split_hostport(self.upstream, "upstream")
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(host, port), timeout=UPSTREAM_CONNECT_TIMEOUT_S
                )
            except (TimeoutError, OSError):
                writer.transport.abort()
                return
            if generation != self._generation or not self.enabled:
                writer.transport.abort()
                upstream[1].transport.abort()
                return
            conn = Connection(self, (reader, writer), upstream)
            self.connections.add(conn)
            try:
                await conn.run()
            finally:
                self.connections.discard(conn)
        except (ApiError, asyncio.CancelledError):
            # Cancelled by stop(): swallow it, because asyncio's stream callback would log a cancelled
            # client_connected_cb task as an error.
            writer.transport.abort()
        finally:
            self._handlers.discard(task)

    # -- toxics
    def toxics_changed(self) -> None:
        for conn in list(self.connections):
            conn.sync()
