"""WebSocket streams: ccxt.pro watchers and raw Binance-style subscriptions, feed faults."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from tn_support import BTC, admin, open_testnet, open_testnet_client


async def _next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def _next_event(ws: aiohttp.ClientWebSocketResponse, event: str) -> dict[str, Any]:
    while True:
        data = await _next_json(ws)
        if data.get("e") == event or data.get("data", {}).get("e") == event:
            return data


async def test_ccxt_pro_watchers_receive_event_times() -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        candles = await ex.watch_ohlcv(BTC, "5m")
        assert candles and candles[-1][0] % 300_000 == 0
        kline_client = ex.clients[next(iter(ex.clients))]
        assert "/market/ws/" in kline_client.url
        first = await ex.watch_bids_asks([BTC])
        second = await ex.watch_bids_asks([BTC])
        e1, e2 = first[BTC]["info"]["E"], second[BTC]["info"]["E"]
        assert e1 <= e2 <= handle.engine.server_time_ms()
        assert second[BTC]["bid"] < second[BTC]["ask"]
        ticker = await ex.watch_ticker(BTC)
        assert ticker["info"]["E"] > 0 and ticker["last"] > 0
        mark = await ex.watch_mark_price(BTC)
        assert mark["info"]["E"] > 0 and mark["markPrice"] > 0
        newer = await ex.watch_ohlcv(BTC, "5m")
        assert newer[-1][0] >= candles[-1][0]


async def test_feed_lag_delays_messages_but_keeps_true_event_time() -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        await ex.watch_bids_asks([BTC])
        lag_ms = 400
        await admin(handle, "POST", "feed/lag", {"lag_ms": lag_ms})
        since = handle.engine.server_time_ms()
        event_times, delays = [], []
        while len(event_times) < 4:
            book = await ex.watch_bids_asks([BTC])
            received = handle.engine.server_time_ms()
            e = book[BTC]["info"]["E"]
            if e < since:
                continue  # sent before the fault
            event_times.append(e)
            delays.append(received - e)
        assert event_times == sorted(event_times)
        assert min(delays) >= lag_ms - 5  # every message arrived at least the lag after its event time
        await admin(handle, "POST", "feed/reset")


async def test_bookticker_on_every_price_change_and_stall_withholds() -> None:
    async with open_testnet(move_market=False) as handle, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{handle.ws_url}/btcusdt@bookTicker") as ws:
            snapshot = await _next_event(ws, "bookTicker")
            assert snapshot["s"] == "BTCUSDT" and "E" in snapshot and "T" in snapshot
            await admin(handle, "POST", "price", {"symbol": "BTCUSDT", "price": 50_000})
            moved = await _next_event(ws, "bookTicker")
            assert float(moved["b"]) < 50_000 < float(moved["a"]) and moved["u"] > snapshot["u"]
            await admin(handle, "POST", "feed/stall", {})
            await admin(handle, "POST", "price", {"symbol": "BTCUSDT", "price": 51_000})  # withheld
            await admin(handle, "POST", "feed/reset")
            await admin(handle, "POST", "price", {"symbol": "BTCUSDT", "price": 52_000})
            after = await _next_event(ws, "bookTicker")
            assert float(after["b"]) > 51_500  # the 51 000 update never arrived
            assert after["u"] == moved["u"] + 2


async def test_raw_subscribe_protocol_and_combined_streams() -> None:
    async with open_testnet() as handle, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{handle.rest_url}/market/ws/0") as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline_5m"], "id": 1}))
            assert await _next_json(ws) == {"result": None, "id": 1}
            kline = await _next_event(ws, "kline")
            assert kline["k"]["i"] == "5m" and kline["k"]["T"] == kline["k"]["t"] + 299_999 and "E" in kline
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            while (reply := await _next_json(ws)).get("id") != 2:
                pass
            assert reply["result"] == ["btcusdt@kline_5m"]
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 3}))
            while (reply := await _next_json(ws)).get("id") != 3:
                pass
            assert reply["error"]["code"] == 2
            await ws.send_str(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_5m"], "id": 4}))
            while (reply := await _next_json(ws)).get("id") != 4:
                pass
            assert reply == {"result": None, "id": 4}
        async with session.ws_connect(f"{handle.rest_url}/stream?streams=ethusdt@kline_15m/btcusdt@markPrice@1s") as ws:
            names = set()
            while len(names) < 2:
                wrapped = await _next_json(ws)
                names.add(wrapped["stream"])
                assert "E" in wrapped["data"]
            assert names == {"ethusdt@kline_15m", "btcusdt@markPrice@1s"}


async def test_bars_close_in_accelerated_time() -> None:
    async with open_testnet(bar_real_ms=200, tick_ms=50) as handle, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{handle.ws_url}/btcusdt@kline_5m") as ws:
            first = await _next_event(ws, "kline")
            while not (closed := await _next_event(ws, "kline"))["k"]["x"]:
                pass
            assert closed["k"]["t"] >= first["k"]["t"]
            nxt = await _next_event(ws, "kline")
            assert nxt["k"]["t"] == closed["k"]["t"] + 300_000 and not nxt["k"]["x"]
