"""Market data over WebSocket (ccxt.pro binanceusdm): closed klines and bookTicker, with event times.

ccxt.pro's parsed candles drop Binance's `E` (event time) and `x` (kline closed), which the bot
needs: `E` measures feed lag, `x` says a bar is final. The feed therefore taps the raw messages
on their way into ccxt (`handle_ohlcv`, `handle_bids_asks`) and keeps ccxt's `watch_*` calls
only to hold the subscriptions and to reconnect: each `watch_*` awaits the next message; when a
socket drops it raises NetworkError and the next `watch_*` reconnects and resubscribes.

Each bookTicker becomes `on_book(BookTick, E)`; each kline with `x: true` becomes
`on_bar(Bar, E)` (the bar's `ts_ms` is its close: Binance's `T` + 1 ms, the next bar's open);
a kline still in progress becomes `on_alive(E)` (proof of life, for the lag measurement).
Malformed messages (missing fields, unparsable numbers) are counted and skipped; numbers that
parse but are not sane (NaN, negative) are passed on, and the core refuses them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import ccxt  # type: ignore[import-untyped]

from bot.core.market import Bar, BookTick
from bot.io.exchange import KLINE_INTERVALS

BarHandler = Callable[[Bar, int], Awaitable[None]]
BookHandler = Callable[[BookTick, int], Awaitable[None]]
StatusHandler = Callable[[bool, str | None], None]
AliveHandler = Callable[[int], Awaitable[None]]

TIMEFRAME_MS = {name: ms for ms, name in KLINE_INTERVALS.items()}


@dataclass
class FeedStats:
    bars: int = 0
    books: int = 0
    partial_klines: int = 0
    malformed: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


def _payload(message: Any) -> dict[str, Any] | None:
    if isinstance(message, dict) and isinstance(message.get("data"), dict):  # combined-stream envelope
        message = message["data"]
    return message if isinstance(message, dict) else None


def bar_from_kline(message: Any) -> tuple[Bar, int] | None:
    """(Bar, E) for a closed kline message; None while the kline is still open. KeyError/ValueError if malformed."""
    msg = _payload(message)
    if msg is None:
        raise ValueError("kline message is not an object")
    k = msg["k"]
    if not k["x"]:
        return None
    bar = Bar(ts_ms=int(k["T"]) + 1, open=float(k["o"]), high=float(k["h"]), low=float(k["l"]),
              close=float(k["c"]), volume=float(k.get("v", 0.0)))
    return bar, int(msg["E"])


def book_from_ticker(message: Any) -> tuple[BookTick, int]:
    """(BookTick, E) for a bookTicker message. KeyError/ValueError if malformed."""
    msg = _payload(message)
    if msg is None:
        raise ValueError("bookTicker message is not an object")
    event_ms = int(msg["E"] if msg.get("E") is not None else msg["T"])
    return BookTick(ts_ms=event_ms, bid=float(msg["b"]), ask=float(msg["a"])), event_ms


class MarketFeed:
    """Feeds one symbol's closed bars and book ticks from a ccxt.pro binanceusdm client."""

    def __init__(self, client: Any, symbol: str, *, timeframe: str = "5m", on_bar: BarHandler,
                 on_book: BookHandler, on_status: StatusHandler | None = None,
                 on_alive: AliveHandler | None = None,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 5.0) -> None:
        if timeframe not in TIMEFRAME_MS:
            raise ValueError(f"timeframe {timeframe!r} not one of {sorted(TIMEFRAME_MS)}")
        self.client = client
        self.symbol = symbol
        self.timeframe = timeframe
        self.on_bar = on_bar
        self.on_book = on_book
        self.on_status = on_status
        self.on_alive = on_alive
        self.stats = FeedStats()
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._klines: collections.deque[Any] = collections.deque(maxlen=10_000)
        self._books: collections.deque[Any] = collections.deque(maxlen=10_000)
        self._down: set[str] = set()
        self._install_taps()

    def _install_taps(self) -> None:
        original_ohlcv = self.client.handle_ohlcv
        original_books = self.client.handle_bids_asks

        def tap_ohlcv(client: Any, message: Any) -> Any:
            self._klines.append(message)
            return original_ohlcv(client, message)

        def tap_books(client: Any, message: Any) -> Any:
            self._books.append(message)
            return original_books(client, message)

        # handle_message looks these up on the instance at dispatch time
        self.client.handle_ohlcv = tap_ohlcv
        self.client.handle_bids_asks = tap_books

    async def _unified(self) -> str:
        if not self.client.markets:
            await self.client.load_markets()
        markets = self.client.markets_by_id.get(self.symbol)
        if not markets:
            raise ValueError(f"unknown symbol {self.symbol!r}")
        return str(markets[0]["symbol"])

    async def run(self) -> None:
        """Watch both streams until cancelled."""
        unified = await self._unified()
        tasks = [asyncio.create_task(self._watch("kline", lambda: self.client.watch_ohlcv(unified, self.timeframe))),
                 asyncio.create_task(self._watch("book", lambda: self.client.watch_bids_asks([unified])))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _watch(self, kind: str, watch: Callable[[], Awaitable[Any]]) -> None:
        backoff = self.backoff_initial_s
        while True:
            try:
                await watch()
            except asyncio.CancelledError:
                raise
            except ccxt.NetworkError as exc:
                self.stats.reconnects += 1
                self._error(kind, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            except ccxt.BaseError as exc:
                self._error(kind, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            if kind in self._down:
                self._down.discard(kind)
                if self.on_status is not None:
                    self.on_status(True, None)
            await self._drain(kind)

    def _error(self, kind: str, exc: BaseException) -> None:
        text = f"{kind} stream: {type(exc).__name__}: {str(exc)[:200]}"
        self.stats.errors.append(text)
        del self.stats.errors[:-20]
        if kind not in self._down:
            self._down.add(kind)
            if self.on_status is not None:
                self.on_status(False, text)

    async def _drain(self, kind: str) -> None:
        queue = self._klines if kind == "kline" else self._books
        while queue:
            message = queue.popleft()
            msg = _payload(message)
            if msg is None or msg.get("s", self.symbol) != self.symbol:
                continue
            try:
                parsed = bar_from_kline(msg) if kind == "kline" else book_from_ticker(msg)
            except (KeyError, ValueError, TypeError):
                self.stats.malformed += 1
                continue
            if parsed is None:
                self.stats.partial_klines += 1
                if self.on_alive is not None and isinstance(msg.get("E"), int):
                    await self.on_alive(msg["E"])
            elif kind == "kline":
                self.stats.bars += 1
                await self.on_bar(*parsed)
            else:
                self.stats.books += 1
                await self.on_book(*parsed)
