"""MarketFeed over ccxt.pro against the testnet WebSocket: bars, book ticks, event times, reconnects."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from rt_support import BTC, KEY, SECRET, open_testnet

from bot.core.market import Bar, BookTick
from bot.io.exchange_ccxt import CcxtExchange
from bot.io.feed import MarketFeed, bar_from_kline, book_from_ticker

KLINE = {"e": "kline", "E": 1_700_000_300_050, "s": BTC,
         "k": {"t": 1_700_000_000_000, "T": 1_700_000_299_999, "s": BTC, "i": "5m", "o": "60000", "c": "60002",
               "h": "60005", "l": "59995", "v": "12.5", "x": True}}


def test_kline_and_book_parsing() -> None:
    bar, event_ms = bar_from_kline(KLINE)  # type: ignore[misc]
    assert bar == Bar(1_700_000_300_000, 60000, 60005, 59995, 60002, 12.5) and event_ms == KLINE["E"]
    assert bar_from_kline({**KLINE, "k": {**KLINE["k"], "x": False}}) is None
    assert bar_from_kline({"data": KLINE}) is not None  # combined-stream envelope
    tick, e = book_from_ticker({"e": "bookTicker", "s": BTC, "b": "1", "B": "2", "a": "3", "A": "4", "E": 7, "T": 6})
    assert tick == BookTick(7, 1.0, 3.0) and e == 7
    with pytest.raises(KeyError):
        bar_from_kline({"e": "kline", "E": 1, "s": BTC, "k": {"x": True, "T": 1}})
    with pytest.raises(ValueError):
        book_from_ticker({"s": BTC, "b": "one", "a": "3", "E": 1})


async def test_feed_delivers_bars_and_books_and_reconnects_after_a_drop() -> None:
    async with open_testnet() as handle:
        ex = CcxtExchange(KEY, SECRET, rest_url=handle.rest_url, ws_url=handle.ws_url)
        bars: list[tuple[Bar, int]] = []
        books: list[tuple[BookTick, int]] = []
        alive: list[int] = []
        status: list[bool] = []

        async def on_bar(bar: Bar, e: int) -> None:
            bars.append((bar, e))

        async def on_book(tick: BookTick, e: int) -> None:
            books.append((tick, e))

        async def on_alive(e: int) -> None:
            alive.append(e)

        feed = MarketFeed(ex.client, BTC, on_bar=on_bar, on_book=on_book, on_alive=on_alive,
                          on_status=lambda up, err: status.append(up), backoff_initial_s=0.05)
        task = asyncio.create_task(feed.run())
        try:
            async def until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
                end = asyncio.get_running_loop().time() + timeout
                while not cond():
                    assert asyncio.get_running_loop().time() < end, (feed.stats, status)
                    await asyncio.sleep(0.02)

            await until(lambda: bars and len(books) > 3)
            bar, e = bars[0]
            assert bar.ts_ms % 300_000 == 0 and bar.is_sane() and e <= handle.engine.server_time_ms()
            assert all(t.bid < t.ask and t.ts_ms == e for t, e in books)
            assert alive  # klines in progress prove the feed alive
            for conn in list(handle.server.conns):  # the exchange drops every socket
                await conn.ws.close()
            seen = len(books)
            await until(lambda: feed.stats.reconnects >= 1 and len(books) > seen + 3)
            assert status[0] is False and status[-1] is True
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ex.close()
