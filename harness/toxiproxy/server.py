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
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import secrets
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

VERSION = "2.12.0"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474
READ_SIZE = 32 * 1024
# A link buffers at most this many bytes read from its source and not yet written (backpressure).
LINK_BUFFER_BYTES = 4 * 1024 * 1024
UPSTREAM_CONNECT_TIMEOUT_S = 10.0

STREAMS = ("upstream", "downstream")
TOXIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "noop": (),
}

__all__ = [
    "VERSION",
    "ApiError",
    "EmbeddedToxiproxy",
    "EmbeddedToxiproxyThread",
    "ToxiproxyServer",
    "run_toxiproxy",
    "start_embedded_toxiproxy",
]


class ApiError(Exception):
    """An API failure with the HTTP status the real Toxiproxy answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad_body(detail: str) -> ApiError:
    return ApiError(400, f"bad request body: {detail}")


# --------------------------------------------------------------------------------------------- addresses


def _split_hostport(value: str, what: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ApiError(400, f"invalid {what} address {value!r}: expected host:port")
    host, _, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ApiError(400, f"invalid {what} address {value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ApiError(400, f"invalid {what} address {value!r}: port must be 0..65535")
    return host, port


def _join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_listen_host(host: str, allow_remote: bool) -> str:
    """The literal IP a proxy binds to. Loopback only unless the server allows remote listeners."""
    if host == "":
        return "0.0.0.0" if allow_remote else "127.0.0.1"  # nosec B104 - all interfaces only when remote listeners are allowed explicitly
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        literal = host
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ApiError(400, f"invalid listen address: cannot resolve host {host!r}: {exc}") from None
        literal = str(infos[0][4][0])
    if not allow_remote and not _is_loopback(literal):
        raise ApiError(
            400,
            f"listen address {host!r} is not loopback; this server binds proxies to loopback only "
            "(start it with --allow-remote, or on a non-loopback --host, to allow it)",
        )
    return literal


# --------------------------------------------------------------------------------------------- model


def _parse_toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_body(f"toxicity must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise _bad_body(f"toxicity must be between 0 and 1, got {value!r}")
    return float(value)


def _parse_attributes(toxic_type: str, raw: Any, base: dict[str, int]) -> dict[str, int]:
    """Known keys must be non-negative integers; unknown keys are ignored (as the real server does)."""
    if raw is None:
        return dict(base)
    if not isinstance(raw, dict):
        raise _bad_body(f"attributes must be an object, got {raw!r}")
    merged = dict(base)
    for key in TOXIC_ATTRIBUTES[toxic_type]:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_body(f"attribute {key!r} of a {toxic_type} toxic must be an integer, got {value!r}")
        if value < 0:
            raise _bad_body(f"attribute {key!r} of a {toxic_type} toxic must be >= 0, got {value}")
        merged[key] = value
    return merged


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


class _CloseLink(Exception):
    """Raised inside a link's pump to end the link (reset=True: end the connection with a TCP RST)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass
class _Stub:
    """One toxic attached to one link: the roll of its toxicity and its per-link state."""

    toxic: Toxic
    active: bool
    attached_at: float
    detached: bool = False
    sent: int = 0  # limit_data
    free_at: float = 0.0  # bandwidth


@dataclass(eq=False)
class _Link:
    conn: _Connection
    direction: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    stubs: list[_Stub] = field(default_factory=list)
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
            raise _CloseLink()
        if self.close_at is not None and self.loop.time() >= self.close_at:
            raise _CloseLink()

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
        stubs: list[_Stub] = []
        for toxic in wanted:
            stub = current.pop(id(toxic), None)
            if stub is None:
                stub = _Stub(toxic, rng.random() < toxic.toxicity, now)
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
        except _CloseLink as exc:
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

    async def _through(self, stubs: list[_Stub], index: int, data: bytes, ts: float) -> None:
        while index < len(stubs) and not (stubs[index].active and not stubs[index].detached):
            index += 1
        if index == len(stubs):
            await self._write(data)
            return
        async for piece, piece_ts in _apply(self, stubs[index], data, ts):
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


async def _apply(link: _Link, stub: _Stub, data: bytes, ts: float) -> AsyncIterator[tuple[bytes, float]]:
    """Push one chunk through one active toxic, yielding what it lets out."""
    toxic = stub.toxic
    kind = toxic.type
    attrs = toxic.attributes
    rng = link.conn.proxy.server.rng
    if kind == "latency":
        jitter = attrs.get("jitter", 0)
        offset_ms = rng.uniform(-jitter, jitter) if jitter > 0 else 0.0
        while not stub.detached:
            release = ts + max(0.0, attrs.get("latency", 0) + offset_ms) / 1000.0
            if await link.sleep_until(release):
                ts = max(ts, release)
                break
        yield data, ts
    elif kind == "bandwidth":
        while data:
            if stub.detached:
                yield data, ts
                return
            rate = attrs.get("rate", 0)  # KB/s == bytes per ms
            if rate <= 0:
                await link.sleep_until(None)  # stall until the toxic changes
                continue
            piece = data[: rate * 100]  # at most 100 ms worth of bytes per write
            release = max(link.loop.time(), stub.free_at) + len(piece) / (rate * 1000.0)
            if await link.sleep_until(release):
                stub.free_at = release
                data = data[len(piece) :]
                yield piece, ts
    elif kind == "slicer":
        pos = 0
        while pos < len(data):
            average = attrs.get("average_size", 0)
            if stub.detached or average <= 0:
                yield data[pos:], ts
                return
            variation = min(attrs.get("size_variation", 0), max(average - 1, 0))
            size = max(1, average + (rng.randint(-variation, variation) if variation else 0))
            yield data[pos : pos + size], ts
            pos += size
            if pos < len(data):
                await link.sleep_until(link.loop.time() + attrs.get("delay", 0) / 1_000_000.0)
    elif kind == "limit_data":
        allowed = attrs.get("bytes", 0)
        remaining = max(0, allowed - stub.sent)
        piece = data[:remaining]
        if piece:
            stub.sent += len(piece)
            yield piece, ts
        if stub.sent >= allowed and not stub.detached:
            raise _CloseLink()
    elif kind == "timeout":
        return  # drop the data; the link's close_at closes it after the timeout
    elif kind == "reset_peer":
        started = link.loop.time()
        while not stub.detached:
            if await link.sleep_until(started + attrs.get("timeout", 0) / 1000.0):
                raise _CloseLink(reset=True)
        yield data, ts
    else:  # noop
        yield data, ts


def _set_linger_zero(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Connection:
    def __init__(
        self,
        proxy: _Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.links = {
            "upstream": _Link(self, "upstream", client[0], upstream[1]),
            "downstream": _Link(self, "downstream", upstream[0], client[1]),
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
                _set_linger_zero(writer)
            writer.transport.abort()


class _Proxy:
    def __init__(self, server: ToxiproxyServer, name: str, listen: str, upstream: str, enabled: bool) -> None:
        self.server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = enabled
        self.toxics: list[Toxic] = []
        self.connections: set[_Connection] = set()
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
        host, port = _split_hostport(self.listen, "listen")
        bind_host = _resolve_listen_host(host, self.server.allow_remote)
        try:
            listener = await asyncio.start_server(self._on_client, bind_host, port, reuse_address=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ApiError(500, f"listen tcp {_join_hostport(bind_host, port)}: bind: {reason.lower()}") from None
        self._listener = listener
        self._generation += 1
        real_port = listener.sockets[0].getsockname()[1]
        self.listen = _join_hostport(bind_host, real_port)
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
            host, port = _split_hostport(self.upstream, "upstream")
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
            conn = _Connection(self, (reader, writer), upstream)
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


class ToxiproxyServer:
    """The proxy collection and the HTTP API over it (one instance per embedded server)."""

    def __init__(self, *, allow_remote: bool = False, seed: int | None = None) -> None:
        self.allow_remote = allow_remote
        self.rng = random.Random(seed)
        self.proxies: dict[str, _Proxy] = {}
        self.lock = asyncio.Lock()

    # -- collection operations (callers hold self.lock)
    async def create_proxy(self, body: Any) -> _Proxy:
        name, listen, upstream, enabled = self._proxy_fields(body)
        if name in self.proxies:
            raise ApiError(409, "proxy already exists")
        proxy = _Proxy(self, name, listen, upstream, enabled)
        if enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    def _proxy_fields(self, body: Any, where: str = "") -> tuple[str, str, str, bool]:
        if not isinstance(body, dict):
            raise _bad_body(f"expected a JSON object{where}, got {type(body).__name__}")
        for key in ("name", "listen", "upstream"):
            if key in body and not isinstance(body[key], str):
                raise _bad_body(f"field {key!r}{where} must be a string, got {body[key]!r}")
        if "enabled" in body and not isinstance(body["enabled"], bool):
            raise _bad_body(f"field 'enabled'{where} must be a boolean, got {body['enabled']!r}")
        name = body.get("name", "")
        upstream = body.get("upstream", "")
        if not name:
            raise ApiError(400, f"missing required field: name{where}")
        if not upstream:
            raise ApiError(400, f"missing required field: upstream{where}")
        _split_hostport(upstream, "upstream")
        listen = body.get("listen") or f"{'0.0.0.0' if self.allow_remote else '127.0.0.1'}:0"  # nosec B104 - as above
        _resolve_listen_host(_split_hostport(listen, "listen")[0], self.allow_remote)
        return name, listen, upstream, body.get("enabled", True)

    def get_proxy(self, name: str) -> _Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    async def update_proxy(self, proxy: _Proxy, body: Any) -> None:
        if not isinstance(body, dict):
            raise _bad_body(f"expected a JSON object, got {type(body).__name__}")
        listen = body.get("listen", proxy.listen)
        upstream = body.get("upstream", proxy.upstream)
        enabled = body.get("enabled", proxy.enabled)
        if not isinstance(listen, str) or not isinstance(upstream, str):
            raise _bad_body("fields 'listen' and 'upstream' must be strings")
        if not isinstance(enabled, bool):
            raise _bad_body(f"field 'enabled' must be a boolean, got {enabled!r}")
        _split_hostport(listen, "listen")
        _split_hostport(upstream, "upstream")
        if listen != proxy.listen or upstream != proxy.upstream:
            _resolve_listen_host(_split_hostport(listen, "listen")[0], self.allow_remote)
            await proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
            if enabled:
                await proxy.start()
            return
        if enabled and not proxy.enabled:
            await proxy.start()
        elif not enabled and proxy.enabled:
            await proxy.stop()

    async def delete_proxy(self, name: str) -> None:
        proxy = self.get_proxy(name)
        del self.proxies[name]
        await proxy.stop()

    async def reset(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.toxics.clear()
            proxy.toxics_changed()
            if not proxy.enabled:
                with contextlib.suppress(ApiError):
                    await proxy.start()

    async def populate(self, body: Any) -> tuple[list[_Proxy], ApiError | None]:
        if not isinstance(body, list):
            raise _bad_body(f"expected a JSON array of proxies, got {type(body).__name__}")
        entries = [self._proxy_fields(entry, f" at proxy {i}") for i, entry in enumerate(body, start=1)]
        result: list[_Proxy] = []
        for name, listen, upstream, enabled in entries:
            existing = self.proxies.get(name)
            if existing is not None:
                if existing.listen == listen and existing.upstream == upstream:
                    result.append(existing)
                    continue
                del self.proxies[name]
                await existing.stop()
            proxy = _Proxy(self, name, listen, upstream, enabled)
            if enabled:
                try:
                    await proxy.start()
                except ApiError as exc:
                    return result, exc
            self.proxies[name] = proxy
            result.append(proxy)
        return result, None

    def add_toxic(self, proxy: _Proxy, body: Any) -> Toxic:
        if not isinstance(body, dict):
            raise _bad_body(f"expected a JSON object, got {type(body).__name__}")
        toxic_type = body.get("type")
        if not isinstance(toxic_type, str) or toxic_type not in TOXIC_ATTRIBUTES:
            raise ApiError(400, "invalid toxic type")
        stream = body.get("stream") or "downstream"
        if not isinstance(stream, str) or stream.lower() not in STREAMS:
            raise ApiError(400, "stream was invalid, can be either upstream or downstream")
        stream = stream.lower()
        name = body.get("name") or f"{toxic_type}_{stream}"
        if not isinstance(name, str):
            raise _bad_body(f"field 'name' must be a string, got {name!r}")
        toxicity = _parse_toxicity(body["toxicity"]) if body.get("toxicity") is not None else 1.0
        base = dict.fromkeys(TOXIC_ATTRIBUTES[toxic_type], 0)
        attributes = _parse_attributes(toxic_type, body.get("attributes"), base)
        if any(t.name == name for t in proxy.toxics):
            raise ApiError(409, "toxic already exists")
        toxic = Toxic(name, toxic_type, stream, toxicity, attributes)
        proxy.toxics.append(toxic)
        proxy.toxics_changed()
        return toxic

    def update_toxic(self, proxy: _Proxy, toxic: Toxic, body: Any) -> None:
        if not isinstance(body, dict):
            raise _bad_body(f"expected a JSON object, got {type(body).__name__}")
        attributes = _parse_attributes(toxic.type, body.get("attributes"), toxic.attributes)
        toxicity = _parse_toxicity(body["toxicity"]) if body.get("toxicity") is not None else toxic.toxicity
        toxic.attributes.clear()
        toxic.attributes.update(attributes)
        rolled = toxicity != toxic.toxicity
        toxic.toxicity = toxicity
        for conn in list(proxy.connections):
            conn.links[toxic.stream].refresh(toxic, self.rng, reroll=rolled)

    def remove_toxic(self, proxy: _Proxy, name: str) -> None:
        toxic = proxy.find_toxic(name)
        proxy.toxics.remove(toxic)
        proxy.toxics_changed()

    async def close_all(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()

    # -- HTTP
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_get("/version", self._h_version)
        r.add_get("/proxies", self._h_proxies)
        r.add_post("/proxies", self._h_create)
        r.add_post("/reset", self._h_reset)
        r.add_post("/populate", self._h_populate)
        r.add_get("/proxies/{proxy}", self._h_get_proxy)
        r.add_patch("/proxies/{proxy}", self._h_update_proxy)
        r.add_post("/proxies/{proxy}", self._h_update_proxy)
        r.add_delete("/proxies/{proxy}", self._h_delete_proxy)
        r.add_get("/proxies/{proxy}/toxics", self._h_toxics)
        r.add_post("/proxies/{proxy}/toxics", self._h_add_toxic)
        r.add_get("/proxies/{proxy}/toxics/{toxic}", self._h_get_toxic)
        r.add_patch("/proxies/{proxy}/toxics/{toxic}", self._h_update_toxic)
        r.add_post("/proxies/{proxy}/toxics/{toxic}", self._h_update_toxic)
        r.add_delete("/proxies/{proxy}/toxics/{toxic}", self._h_delete_toxic)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request_id = secrets.token_hex(10)
        response: web.StreamResponse
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            response = _error_response(403, "User agent not allowed")
        else:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = _error_response(exc.status, exc.message)
            except web.HTTPException as exc:
                message = "404 page not found" if exc.status == 404 else (exc.reason or "error")
                response = _error_response(exc.status, message)
            except Exception as exc:  # noqa: BLE001 - the API answers 500 rather than dropping the request
                response = _error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        response.headers["X-Toxiproxy-Request-Id"] = request_id
        return response

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise _bad_body("EOF")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad_body(str(exc)) from None

    async def _h_version(self, request: web.Request) -> web.Response:
        return _json_response(200, {"version": VERSION})

    async def _h_proxies(self, request: web.Request) -> web.Response:
        return _json_response(200, {name: p.to_json() for name, p in self.proxies.items()})

    async def _h_create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        async with self.lock:
            proxy = await self.create_proxy(body)
            return _json_response(201, proxy.to_json())

    async def _h_get_proxy(self, request: web.Request) -> web.Response:
        return _json_response(200, self.get_proxy(request.match_info["proxy"]).to_json())

    async def _h_update_proxy(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            body = await self._body(request)
            await self.update_proxy(proxy, body)
            return _json_response(200, proxy.to_json())

    async def _h_delete_proxy(self, request: web.Request) -> web.Response:
        async with self.lock:
            await self.delete_proxy(request.match_info["proxy"])
        return web.Response(status=204)

    async def _h_reset(self, request: web.Request) -> web.Response:
        async with self.lock:
            await self.reset()
        return web.Response(status=204)

    async def _h_populate(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        async with self.lock:
            proxies, error = await self.populate(body)
        payload: dict[str, Any] = {"proxies": [p.to_json() for p in proxies]}
        if error is not None:
            payload = {"error": error.message, "status": error.status, **payload}
            return _json_response(error.status, payload)
        return _json_response(201, payload)

    async def _h_toxics(self, request: web.Request) -> web.Response:
        return _json_response(200, self.get_proxy(request.match_info["proxy"]).toxics_json())

    async def _h_add_toxic(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            toxic = self.add_toxic(proxy, await self._body(request))
            return _json_response(200, toxic.to_json())

    async def _h_get_toxic(self, request: web.Request) -> web.Response:
        proxy = self.get_proxy(request.match_info["proxy"])
        return _json_response(200, proxy.find_toxic(request.match_info["toxic"]).to_json())

    async def _h_update_toxic(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            toxic = proxy.find_toxic(request.match_info["toxic"])
            self.update_toxic(proxy, toxic, await self._body(request))
            return _json_response(200, toxic.to_json())

    async def _h_delete_toxic(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            self.remove_toxic(proxy, request.match_info["toxic"])
        return web.Response(status=204)


def _json_response(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def _error_response(status: int, message: str) -> web.Response:
    body = json.dumps({"error": message, "status": status}) + "\n"
    response = web.Response(status=status, text=body, content_type="text/plain", charset="utf-8")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --------------------------------------------------------------------------------------------- hosting


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
        return f"http://{_join_hostport(self.host, self.port)}"

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
        allow_remote = not (_is_loopback(host) or host == "localhost")
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
