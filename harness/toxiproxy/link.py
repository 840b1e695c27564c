"""The data plane of one proxied connection: two links (upstream, downstream), each a reader that
timestamps chunks and a pump that pushes them through the link's toxics to the other side."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.toxiproxy.toxics import CloseLink, Stub, Toxic, apply_toxic

if TYPE_CHECKING:
    from harness.toxiproxy.proxy import Proxy

READ_SIZE = 32 * 1024
# A link buffers at most this many bytes read from its source and not yet written (backpressure).
LINK_BUFFER_BYTES = 4 * 1024 * 1024


@dataclass(eq=False)
class Link:
    conn: Connection
    direction: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    stubs: list[Stub] = field(default_factory=list)
    buf: deque[tuple[bytes, float] | None] = field(default_factory=deque)
    buf_bytes: int = 0
    version: int = 0
    closing: bool = False
    close_at: float | None = None
    waiter: asyncio.Future[None] | None = None
    space_waiter: asyncio.Future[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.conn.loop

    # -- wake-ups: data arrived, chain changed, close requested, deadline reached
    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, until: float | None) -> None:
        deadline = until
        if self.close_at is not None and (deadline is None or self.close_at < deadline):
            deadline = self.close_at
        self.waiter = self.loop.create_future()
        handle = self.loop.call_at(deadline, self.wake) if deadline is not None else None
        try:
            await self.waiter
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()

    def _check_close(self) -> None:
        if self.closing:
            raise CloseLink()
        if self.close_at is not None and self.loop.time() >= self.close_at:
            raise CloseLink()

    async def sleep_until(self, when: float | None) -> bool:
        """Wait until ``when`` (None: forever). True when reached, False when the chain changed first."""
        version = self.version
        while True:
            self._check_close()
            if self.version != version:
                return False
            if when is not None and self.loop.time() >= when:
                return True
            await self._wait(when)

    async def next_chunk(self) -> tuple[bytes, float] | None:
        while True:
            self._check_close()
            if self.buf:
                item = self.buf.popleft()
                if item is not None:
                    self.buf_bytes -= len(item[0])
                    space = self.space_waiter
                    if space is not None and not space.done() and self.buf_bytes <= LINK_BUFFER_BYTES:
                        space.set_result(None)
                return item
            await self._wait(None)

    # -- the toxic chain
    def sync(self, toxics: Iterable[Toxic], rng: random.Random) -> None:
        """Align this link's stubs with the proxy's toxics for this direction."""
        now = self.loop.time()
        wanted = [t for t in toxics if t.stream == self.direction]
        current = {id(s.toxic): s for s in self.stubs}
        stubs: list[Stub] = []
        for toxic in wanted:
            stub = current.pop(id(toxic), None)
            if stub is None:
                stub = Stub(toxic, rng.random() < toxic.toxicity, now)
            stubs.append(stub)
        for removed in current.values():
            removed.detached = True
            # Removing a timeout toxic closes the links it was acting on.
            if removed.active and removed.toxic.type == "timeout":
                self.closing = True
        self.stubs = stubs
        self._recompute_close_at()
        self.version += 1
        self.wake()

    def refresh(self, toxic: Toxic, rng: random.Random, *, reroll: bool) -> None:
        """The toxic was updated: restart its per-link timers; re-roll it when its toxicity changed."""
        for stub in self.stubs:
            if stub.toxic is toxic:
                if reroll:
                    stub.active = rng.random() < toxic.toxicity
                stub.attached_at = self.loop.time()
        self._recompute_close_at()
        self.version += 1
        self.wake()

    def _recompute_close_at(self) -> None:
        close_at = None
        for stub in self.stubs:
            if stub.active and stub.toxic.type == "timeout":
                timeout_ms = stub.toxic.attributes.get("timeout", 0)
                if timeout_ms > 0:
                    at = stub.attached_at + timeout_ms / 1000.0
                    close_at = at if close_at is None else min(close_at, at)
        self.close_at = close_at

    def request_close(self) -> None:
        self.closing = True
        self.wake()

    # -- tasks
    async def read_loop(self) -> None:
        try:
            while True:
                try:
                    data = await self.reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    break
                self.buf.append((data, self.loop.time()))
                self.buf_bytes += len(data)
                self.wake()
                while self.buf_bytes > LINK_BUFFER_BYTES and not self.closing:
                    self.space_waiter = self.loop.create_future()
                    try:
                        await self.space_waiter
                    finally:
                        self.space_waiter = None
        finally:
            self.buf.append(None)
            self.wake()

    async def pump(self) -> None:
        reset = False
        try:
            while True:
                item = await self.next_chunk()
                if item is None:
                    await self._eof()
                    break
                data, ts = item
                if self.stubs:
                    await self._through(list(self.stubs), 0, data, ts)
                else:
                    await self._write(data)
        except CloseLink as exc:
            reset = exc.reset
        except (ConnectionError, OSError):
            pass
        if reset:
            self.conn.abort(reset=True)
        else:
            self.conn.close_writer(self.writer)

    async def _write(self, data: bytes) -> None:
        self._check_close()
        self.writer.write(data)
        await self.writer.drain()

    async def _through(self, stubs: list[Stub], index: int, data: bytes, ts: float) -> None:
        while index < len(stubs) and not (stubs[index].active and not stubs[index].detached):
            index += 1
        if index == len(stubs):
            await self._write(data)
            return
        async for piece, piece_ts in apply_toxic(self, stubs[index], data, ts):
            await self._through(stubs, index + 1, piece, piece_ts)

    async def _eof(self) -> None:
        eof_at = self.loop.time()
        for stub in list(self.stubs):
            if stub.toxic.type != "slow_close":
                continue
            while stub.active and not stub.detached:
                delay_s = stub.toxic.attributes.get("delay", 0) / 1000.0
                if await self.sleep_until(eof_at + delay_s):
                    break


def set_linger_zero(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Connection:
    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.links = {
            "upstream": Link(self, "upstream", client[0], upstream[1]),
            "downstream": Link(self, "downstream", upstream[0], client[1]),
        }
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        for link in self.links.values():
            link.sync(self.proxy.toxics, self.proxy.server.rng)
        readers = [self.loop.create_task(link.read_loop()) for link in self.links.values()]
        pumps = [self.loop.create_task(link.pump()) for link in self.links.values()]
        self.tasks = readers + pumps
        try:
            await asyncio.gather(*pumps)
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for writer in (self.client_writer, self.upstream_writer):
                self.close_writer(writer)

    def sync(self) -> None:
        for link in self.links.values():
            link.sync(self.proxy.toxics, self.proxy.server.rng)

    @staticmethod
    def close_writer(writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        if not transport.is_closing():
            transport.close()

    def abort(self, reset: bool = False) -> None:
        """Close both sockets now; with reset=True the peers get a TCP RST (SO_LINGER 0)."""
        for link in self.links.values():
            link.request_close()
        for writer in (self.client_writer, self.upstream_writer):
            if reset:
                set_linger_zero(writer)
            writer.transport.abort()
