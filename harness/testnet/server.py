"""The testnet over the network: Binance USD-M REST + WebSocket streams + admin API, one port.

- REST: every route of `rest.ROUTES`, Binance JSON shapes and errors, HMAC signatures,
  recvWindow, IP allowlists, weights (`X-MBX-USED-WEIGHT-1M`), 429 then 418 with Retry-After.
- WebSocket: ccxt.pro's paths (`/ws`, `/market/ws/<n>`, `/public/ws/<n>`, `/ws/<stream>`,
  `/stream?streams=a/b`), SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS; streams
  `<sym>@kline_<i>`, `<sym>@bookTicker`, `<sym>@markPrice[@1s]`, `<sym>@ticker`, `<sym>@miniTicker`. Feed faults
  delay (lag) or withhold (stall) messages; `E` is always the true event time.
- Admin: JSON under `/__admin/`, loopback clients only; the routes are `admin.AdminApi` (see docs/testnet.md).

A ticker task advances the market in real time: one random-walk step every `tick_ms`, a bar
every `bar_real_ms` (so a 5 m bar may pass in 1 s), kline updates every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from bot.core.clock import Clock, WallClock
from harness.testnet.admin import AdminApi
from harness.testnet.engine import Engine
from harness.testnet.errors import BinanceError
from harness.testnet.market import Candle
from harness.testnet.model import LOOPBACK_IPS
from harness.testnet.params import fmt
from harness.testnet.rest import INTERVALS_MS

JSON_HEADERS = {"Content-Type": "application/json"}
HTML_ERROR = "<html><head><title>{status}</title></head><body><h1>{status} Service Unavailable</h1></body></html>"


def _split_signature(raw: str) -> tuple[str, str | None]:
    """(payload without the signature parameter, signature) of a query string or form body."""
    if not raw:
        return "", None
    keep, sig = [], None
    for part in raw.split("&"):
        if part.startswith("signature="):
            sig = part[len("signature="):]
        else:
            keep.append(part)
    return "&".join(keep), sig


@dataclass(frozen=True, slots=True)
class Stream:
    name: str  # as subscribed (lower-case symbol)
    kind: str  # kline | bookTicker | markPrice | ticker | miniTicker
    symbol: str  # upper-case
    interval: str | None = None
    every_ms: int = 0


def parse_stream(name: str, engine: Engine) -> Stream | None:
    if "@" not in name:
        return None
    sym, _, rest = name.partition("@")
    symbol = sym.upper()
    if symbol not in engine.markets:
        return None
    if rest.startswith("kline_"):
        interval = rest[len("kline_"):]
        step = INTERVALS_MS.get(interval)
        if step is None or step < engine.bar_ms or step % engine.bar_ms:
            return None
        return Stream(name, "kline", symbol, interval)
    if rest == "bookTicker":
        return Stream(name, "bookTicker", symbol)
    if rest in ("markPrice", "markPrice@1s"):
        return Stream(name, "markPrice", symbol, every_ms=1000 if rest.endswith("@1s") else 3000)
    if rest in ("ticker", "miniTicker"):
        return Stream(name, rest, symbol)
    return None


class WsConn:
    """One WebSocket client: its subscriptions and a delivery queue honouring the lag fault."""

    def __init__(self, ws: web.WebSocketResponse, combined: bool, max_queue: int = 10_000) -> None:
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, Stream] = {}
        self.queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue(maxsize=max_queue)
        self.dropped = 0

    def push(self, deliver_at: float, text: str) -> None:
        try:
            self.queue.put_nowait((deliver_at, text))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run_sender(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deliver_at, text = await self.queue.get()
            delay = deliver_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return


class ListenError(OSError):
    """The testnet's address cannot be bound (port in use, not permitted, no such address)."""


class TestnetServer:
    """aiohttp application over an Engine: REST, WebSocket, admin API, market ticker."""

    def __init__(self, engine: Engine, *, tick_ms: int = 250, bar_real_ms: int | None = None,
                 move_market: bool = True, admin_loopback_only: bool = True) -> None:
        if not 0 < tick_ms <= 1000:
            raise ValueError(f"tick_ms must be in (0, 1000] so klines update at least once a second, got {tick_ms}")
        self.engine = engine
        self.tick_ms = tick_ms
        self.bar_real_ms = bar_real_ms if bar_real_ms is not None else engine.bar_ms
        if self.bar_real_ms < tick_ms:
            raise ValueError(f"bar_real_ms ({self.bar_real_ms}) must be >= tick_ms ({tick_ms})")
        self.move_market = move_market
        self.admin_loopback_only = admin_loopback_only
        self.conns: set[WsConn] = set()
        self._subs: dict[str, set[WsConn]] = {}
        self._streams: dict[str, Stream] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._last_mark_ms: dict[str, int] = {}
        self.app = web.Application(client_max_size=1 << 20)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        engine.add_listener(self._on_price)
        self._admin = AdminApi(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sock.setblocking(False)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._tasks.append(asyncio.create_task(self._ticker(), name="testnet-ticker"))
        return host, sock.getsockname()[1]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for conn in list(self.conns):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        self.engine.remove_listener(self._on_price)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/__admin/"):
            return await self._admin.dispatch(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws(request)
        return await self._rest(request)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        raw_query = request.query_string
        body = await request.text() if request.body_exists else ""
        q_payload, q_sig = _split_signature(raw_query)
        b_payload, b_sig = _split_signature(body)
        signature = b_sig or q_sig
        payload = q_payload + b_payload if (q_payload and b_payload) else (q_payload or b_payload)
        params: dict[str, str] = dict(parse_qsl(q_payload, keep_blank_values=True))
        params.update(parse_qsl(b_payload, keep_blank_values=True))
        try:
            reply = self.engine.handle(request.method, request.path, params,
                                       api_key=request.headers.get("X-MBX-APIKEY"), ip=request.remote or "",
                                       payload=payload, signature=signature)
        except BinanceError as err:
            if err.drop_connection and request.transport is not None:
                request.transport.abort()
                raise asyncio.CancelledError() from None
            if err.html:
                return web.Response(status=err.status, text=HTML_ERROR.format(status=err.status),
                                    content_type="text/html", headers=err.headers)
            return web.Response(status=err.status, body=json.dumps(err.body()), headers={**err.headers,
                                                                                           **JSON_HEADERS})
        return web.Response(status=200, body=json.dumps(reply.body, separators=(",", ":")),
                            headers={**reply.headers, **JSON_HEADERS})

    # ------------------------------------------------------------------ WebSocket

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        combined = "/stream" in request.path
        conn = WsConn(ws, combined)
        initial = [p for p in request.path.split("/") if "@" in p]
        if request.query.get("streams"):
            initial += request.query["streams"].split("/")
        for name in initial:
            stream = parse_stream(name, self.engine)
            if stream is not None:
                self._subscribe(conn, stream)
                self._send_snapshot(conn, stream)
        self.conns.add(conn)
        sender = asyncio.create_task(conn.run_sender())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._ws_command(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            for name in list(conn.streams):
                self._unsubscribe(conn, name)
            self.conns.discard(conn)
        return ws

    async def _ws_command(self, conn: WsConn, data: str) -> None:
        try:
            cmd = json.loads(data)
            method, req_id = cmd.get("method"), cmd.get("id")
        except (ValueError, AttributeError):
            await conn.ws.send_str(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
            return
        params = cmd.get("params") or []
        if method == "SUBSCRIBE":
            streams = [parse_stream(str(p), self.engine) for p in params]
            bad = [p for p, s in zip(params, streams, strict=True) if s is None]
            if bad:
                reply: dict[str, Any] = {"error": {"code": 2, "msg": f"Invalid request: unknown stream(s) {bad}"},
                                         "id": req_id}
            else:
                for s in streams:
                    assert s is not None
                    self._subscribe(conn, s)
                reply = {"result": None, "id": req_id}
        elif method == "UNSUBSCRIBE":
            for p in params:
                self._unsubscribe(conn, str(p))
            reply = {"result": None, "id": req_id}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(conn.streams), "id": req_id}
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": req_id}
        await conn.ws.send_str(json.dumps(reply))
        if method == "SUBSCRIBE" and "error" not in reply:
            for s in streams:
                assert s is not None
                self._send_snapshot(conn, s)

    def _subscribe(self, conn: WsConn, stream: Stream) -> None:
        conn.streams[stream.name] = stream
        self._subs.setdefault(stream.name, set()).add(conn)
        self._streams[stream.name] = stream

    def _unsubscribe(self, conn: WsConn, name: str) -> None:
        conn.streams.pop(name, None)
        subs = self._subs.get(name)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[name]
                self._streams.pop(name, None)

    def _send_snapshot(self, conn: WsConn, stream: Stream) -> None:
        msg = self._build(stream)
        if msg is not None:
            self._deliver([conn], stream.name, msg)

    def _deliver(self, conns: Iterable[WsConn], name: str, msg: dict[str, Any]) -> None:
        feed = self.engine.feed_state()
        if feed.stalled:
            return
        deliver_at = asyncio.get_running_loop().time() + feed.lag_ms / 1000
        raw = combined = None
        for conn in conns:
            if conn.combined:
                combined = combined or json.dumps({"stream": name, "data": msg}, separators=(",", ":"))
                conn.push(deliver_at, combined)
            else:
                raw = raw or json.dumps(msg, separators=(",", ":"))
                conn.push(deliver_at, raw)

    def _broadcast(self, name: str, msg: dict[str, Any]) -> None:
        conns = self._subs.get(name)
        if conns:
            self._deliver(list(conns), name, msg)

    # message builders ---------------------------------------------------

    def _current_kline(self, symbol: str, step: int) -> Candle:
        m = self.engine.market(symbol)
        cur = m.current_candle()
        if step == self.engine.bar_ms:
            return cur
        t = (cur.open_time // step) * step
        parts = [c for c in list(m.history)[-(step // self.engine.bar_ms):] if c.open_time >= t] + [cur]
        return Candle(t, parts[0].open, max(c.high for c in parts), min(c.low for c in parts), cur.close,
                      sum(c.volume for c in parts))

    def kline_message(self, symbol: str, interval: str, candle: Candle, closed: bool) -> dict[str, Any]:
        spec = self.engine.market(symbol).spec
        step = INTERVALS_MS[interval]
        pp = spec.price_precision
        now = self.engine.server_time_ms()
        return {"e": "kline", "E": now, "s": symbol, "k": {
            "t": candle.open_time, "T": candle.open_time + step - 1, "s": symbol, "i": interval, "f": 0, "L": 0,
            "o": fmt(candle.open, pp), "c": fmt(candle.close, pp), "h": fmt(candle.high, pp),
            "l": fmt(candle.low, pp), "v": fmt(candle.volume, 3), "n": max(int(candle.volume * 10), 1),
            "x": closed, "q": fmt(candle.volume * candle.close, 4), "V": fmt(candle.volume / 2, 3),
            "Q": fmt(candle.volume * candle.close / 2, 4), "B": "0"}}

    def _build(self, stream: Stream) -> dict[str, Any] | None:
        eng = self.engine
        now = eng.server_time_ms()
        if stream.kind == "kline":
            assert stream.interval is not None
            candle = self._current_kline(stream.symbol, INTERVALS_MS[stream.interval])
            return self.kline_message(stream.symbol, stream.interval, candle, False)
        if stream.kind == "bookTicker":
            bt = eng.book_ticker(stream.symbol)
            return {"e": "bookTicker", "u": bt["lastUpdateId"], "s": stream.symbol, "b": bt["bidPrice"],
                    "B": bt["bidQty"], "a": bt["askPrice"], "A": bt["askQty"], "T": now, "E": now}
        if stream.kind == "markPrice":
            pi = eng.premium_index(stream.symbol)
            return {"e": "markPriceUpdate", "E": now, "s": stream.symbol, "p": pi["markPrice"], "ap": pi["markPrice"],
                    "P": pi["estimatedSettlePrice"], "i": pi["indexPrice"], "r": pi["lastFundingRate"],
                    "T": pi["nextFundingTime"]}
        if stream.kind == "ticker":
            t = eng.ticker_24hr(stream.symbol)
            return {"e": "24hrTicker", "E": now, "s": stream.symbol, "p": t["priceChange"],
                    "P": t["priceChangePercent"], "w": t["weightedAvgPrice"], "c": t["lastPrice"], "Q": t["lastQty"],
                    "o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"],
                    "q": t["quoteVolume"], "O": t["openTime"], "C": t["closeTime"], "F": t["firstId"],
                    "L": t["lastId"], "n": t["count"]}
        if stream.kind == "miniTicker":
            t = eng.ticker_24hr(stream.symbol)
            return {"e": "24hrMiniTicker", "E": now, "s": stream.symbol, "c": t["lastPrice"], "o": t["openPrice"],
                    "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"]}
        return None

    def _on_price(self, symbol: str) -> None:
        """Engine listener: bookTicker (and 24h ticker) on every price change."""
        if not self._subs:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: engine driven outside the server
            asyncio.get_running_loop()
            for name, stream in list(self._streams.items()):
                if stream.symbol == symbol and stream.kind in ("bookTicker", "ticker", "miniTicker"):
                    msg = self._build(stream)
                    if msg is not None:
                        self._broadcast(name, msg)

    def push_klines(self) -> None:
        """Send the current bar of every subscribed kline stream."""
        for name, stream in list(self._streams.items()):
            if stream.kind == "kline":
                msg = self._build(stream)
                if msg is not None:
                    self._broadcast(name, msg)

    def push_closed_bar(self, symbol: str, closed: Candle) -> None:
        """Send the closed bar `closed` to each kline stream of `symbol` whose interval it ends."""
        for name, stream in list(self._streams.items()):
            if stream.kind != "kline" or stream.symbol != symbol or stream.interval is None:
                continue
            step = INTERVALS_MS[stream.interval]
            if (closed.open_time + self.engine.bar_ms) % step:
                continue
            candle = closed if step == self.engine.bar_ms else self._aggregate_closed(symbol, closed, step)
            self._broadcast(name, self.kline_message(symbol, stream.interval, candle, True))

    def _aggregate_closed(self, symbol: str, last: Candle, step: int) -> Candle:
        t = (last.open_time // step) * step
        parts = [c for c in list(self.engine.market(symbol).history)[-(step // self.engine.bar_ms):]
                 if c.open_time >= t]
        return Candle(t, parts[0].open, max(c.high for c in parts), min(c.low for c in parts), last.close,
                      sum(c.volume for c in parts))

    def _push_marks(self) -> None:
        now = self.engine.server_time_ms()
        for name, stream in list(self._streams.items()):
            if stream.kind == "markPrice" and now - self._last_mark_ms.get(name, 0) >= stream.every_ms:
                self._last_mark_ms[name] = now
                msg = self._build(stream)
                if msg is not None:
                    self._broadcast(name, msg)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.tick_ms / 1000
        next_at = loop.time() + tick_s
        bar_elapsed = 0
        fraction = self.tick_ms / self.bar_real_ms
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += tick_s
            try:
                self.engine.poll()
                if self.move_market:
                    for symbol in self.engine.markets:
                        self.engine.step_market(symbol, fraction)
                    bar_elapsed += self.tick_ms
                    if bar_elapsed >= self.bar_real_ms:
                        bar_elapsed -= self.bar_real_ms
                        for symbol in self.engine.markets:
                            self.push_closed_bar(symbol, self.engine.roll_bar(symbol))
                self.push_klines()
                self._push_marks()
            except Exception as exc:  # keep the market alive; a broken tick must not kill the testnet
                print(f"testnet ticker error: {exc!r}", file=sys.stderr)

# --------------------------------------------------------------------------- entry points


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class TestnetHandle:
    rest_url: str
    ws_url: str
    engine: Engine
    server: TestnetServer
    host: str
    port: int

    @property
    def admin_url(self) -> str:
        return f"{self.rest_url}/__admin"

    async def stop(self) -> None:
        await self.server.stop()


def build_engine(*, seed: int = 0, keys: Sequence[tuple[str, str]] = (), bar_ms: int = 300_000,
                 clock: Clock | None = None, **engine_kwargs: Any) -> Engine:
    """An Engine with `keys` created as trading keys (withdrawals off, loopback-only)."""
    engine = Engine(clock or WallClock(), seed=seed, bar_ms=bar_ms, **engine_kwargs)
    for key, secret in keys:
        engine.create_key(key, secret, ip_allowlist=LOOPBACK_IPS)
    return engine


async def start_testnet(*, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                        keys: Sequence[tuple[str, str]] = (), bar_ms: int = 300_000, bar_real_ms: int | None = None,
                        tick_ms: int = 250, move_market: bool = True, engine: Engine | None = None,
                        clock: Clock | None = None, **engine_kwargs: Any) -> TestnetHandle:
    """Start the testnet on `host:port` (0 = a free port) in the running loop; returns a handle.

    `engine_kwargs` go to `Engine` (maker_fee, taker_fee, spread_bps, weight_limit_1m, ...).
    """
    if engine is None:
        engine = build_engine(seed=seed, keys=keys, bar_ms=bar_ms, clock=clock, **engine_kwargs)
    else:
        for key, secret in keys:
            engine.create_key(key, secret, ip_allowlist=LOOPBACK_IPS)
    server = TestnetServer(engine, tick_ms=tick_ms, bar_real_ms=bar_real_ms, move_market=move_market)
    host, bound = await server.start(host, port)
    base = f"http://{_url_host(host)}:{bound}"
    return TestnetHandle(rest_url=base, ws_url=f"ws://{_url_host(host)}:{bound}/ws", engine=engine, server=server,
                         host=host, port=bound)


def run_testnet(host: str = "127.0.0.1", port: int = 8900, seed: int = 0, keys: Sequence[tuple[str, str]] = (),
                bar_ms: int = 300_000, bar_real_ms: int | None = None, tick_ms: int = 250,
                **engine_kwargs: Any) -> None:
    """Run the testnet until SIGINT/SIGTERM (blocking). Prints the REST and WebSocket URLs."""

    async def main() -> None:
        handle = await start_testnet(host=host, port=port, seed=seed, keys=keys, bar_ms=bar_ms,
                                     bar_real_ms=bar_real_ms, tick_ms=tick_ms, **engine_kwargs)
        print(f"testnet REST {handle.rest_url}", flush=True)
        print(f"testnet WS   {handle.ws_url}", flush=True)
        print(f"testnet admin {handle.admin_url}/state", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await handle.stop()
            print("testnet stopped", flush=True)

    asyncio.run(main())
