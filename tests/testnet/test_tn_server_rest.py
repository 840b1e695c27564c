"""Unmodified ccxt (async and sync) against the testnet server over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import ccxt
import pytest
from tn_support import BTC, KEY, SECRET, admin, open_testnet, open_testnet_client

from harness.testnet.admin import _is_loopback
from harness.testnet.ccxt_client import make_ccxt_client
from harness.testnet.server import _split_signature


async def test_every_spec_call_through_async_ccxt() -> None:
    async with open_testnet_client() as (handle, ex):
        markets = await ex.load_markets()
        assert BTC in markets and markets[BTC]["precision"]["amount"] == 0.001
        assert abs(await ex.fetch_time() - handle.engine.server_time_ms()) < 5_000
        candles = await ex.fetch_ohlcv(BTC, "5m", limit=10)
        assert len(candles) == 10 and all(c[0] % 300_000 == 0 for c in candles)
        assert candles[1][0] - candles[0][0] == 300_000
        assert len(await ex.fetch_ohlcv(BTC, "15m", limit=5)) == 5
        ticker = await ex.fetch_ticker(BTC)
        assert ticker["last"] > 0
        bids_asks = await ex.fetch_bids_asks([BTC])
        assert bids_asks[BTC]["bid"] < bids_asks[BTC]["ask"]
        raw = await ex.fapiPublicGetTickerBookTicker({"symbol": "BTCUSDT"})
        assert set(raw) >= {"symbol", "bidPrice", "bidQty", "askPrice", "askQty", "time"}
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == 10_000
        assert await ex.fetch_positions([BTC]) == []

        bought = await ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "m-1"})
        assert bought["status"] == "closed" and bought["filled"] == 0.01 and bought["clientOrderId"] == "m-1"
        [pos] = await ex.fetch_positions([BTC])
        assert pos["contracts"] == 0.01 and pos["side"] == "long"
        price = handle.engine.market("BTCUSDT").price
        limit = await ex.create_order(BTC, "limit", "buy", 0.01, round(price * 0.95, 1), {"clientOrderId": "l-1"})
        assert limit["status"] == "open"
        post_only = await ex.create_order(BTC, "limit", "buy", 0.01, round(price * 0.94, 1),
                                          {"timeInForce": "GTX", "clientOrderId": "p-1"})
        assert post_only["status"] == "open" and post_only["postOnly"]
        assert (await ex.fetch_order(limit["id"], BTC))["clientOrderId"] == "l-1"
        by_cid = await ex.fetch_order(None, BTC, {"origClientOrderId": "p-1"})
        assert by_cid["id"] == post_only["id"]
        assert sorted(o["clientOrderId"] for o in await ex.fetch_open_orders(BTC)) == ["l-1", "p-1"]
        assert (await ex.cancel_order(limit["id"], BTC))["status"] == "canceled"
        await ex.cancel_all_orders(BTC)
        assert await ex.fetch_open_orders(BTC) == []
        reply = await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 60_000})
        assert reply == {"symbol": "BTCUSDT", "countdownTime": "60000"}
        restrictions = await ex.sapiGetAccountApiRestrictions()
        assert restrictions["enableWithdrawals"] is False and restrictions["ipRestrict"] is True
        closed = await ex.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
        assert closed["status"] == "closed" and closed["reduceOnly"] is True
        headers = ex.last_response_headers
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) > 10 and headers["X-MBX-ORDER-COUNT-1M"] == "4"
        assert await ex.fetch_positions([BTC]) == []


async def test_countdown_fires_on_the_server_without_heartbeat() -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        price = handle.engine.market("BTCUSDT").price
        order = await ex.create_order(BTC, "limit", "buy", 0.01, round(price * 0.9, 1))
        await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 150})
        for _ in range(100):  # the ticker task polls the engine every tick
            if (await ex.fetch_order(order["id"], BTC))["status"] == "canceled":
                break
            await asyncio.sleep(0.05)
        assert (await ex.fetch_order(order["id"], BTC))["status"] == "canceled"
        assert any(r["event"] == "countdown_fired" for r in await admin(handle, "GET", "orders"))


async def test_sync_ccxt_client_works_too() -> None:
    async with open_testnet() as handle:
        def sync_session() -> tuple[float, str]:
            ex = make_ccxt_client(handle.rest_url, handle.ws_url, KEY, SECRET, async_=False,
                                  enable_rate_limit=False)
            ex.load_markets()
            order = ex.create_order(BTC, "market", "buy", 0.01)
            return ex.fetch_balance()["USDT"]["total"], order["status"]

        total, status = await asyncio.to_thread(sync_session)
        assert status == "closed" and total < 10_000


async def test_accepted_connections_use_tcp_nodelay() -> None:
    async with open_testnet() as handle:
        reader, writer = await asyncio.open_connection(handle.host, handle.port)
        try:
            writer.write(b"GET /fapi/v1/time HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert b"200" in await reader.readline()
            server_socks = [t.get_extra_info("socket") for t in _server_transports(handle)]
            assert server_socks and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in server_socks)
        finally:
            writer.close()


def _server_transports(handle):  # type: ignore[no-untyped-def]
    runner = handle.server._runner
    assert runner is not None
    return [proto.transport for proto in runner.server.connections if proto.transport is not None]


async def test_admin_api_drives_the_engine() -> None:
    async with open_testnet() as handle:
        created = await admin(handle, "POST", "keys", {"api_key": "k9", "secret": "s9",
                                                        "permissions": {"enableWithdrawals": True},
                                                        "ip_allowlist": ["127.0.0.1"], "balance": 500})
        assert created["permissions"]["enableWithdrawals"] is True and created["wallet"] == 500
        await admin(handle, "POST", "keys/permissions", {"api_key": "k9", "permissions": {"enableWithdrawals": False}})
        assert handle.engine.accounts["k9"].permissions.enable_withdrawals is False
        await admin(handle, "POST", "keys/revoke", {"api_key": "k9"})
        assert handle.engine.accounts["k9"].revoked
        assert (await admin(handle, "POST", "price", {"symbol": "BTCUSDT", "price": 50_000}))["price"] == 50_000
        assert (await admin(handle, "POST", "price/jump", {"symbol": "BTCUSDT", "pct": 10}))["price"] == 55_000
        await admin(handle, "POST", "price/freeze", {"symbol": "BTCUSDT"})
        await admin(handle, "POST", "spread", {"symbol": "BTCUSDT", "bps": 50})
        await admin(handle, "POST", "feed/lag", {"lag_ms": 250})
        await admin(handle, "POST", "fail", {"path": "/fapi/v1/time", "count": 1, "status": 503, "code": -1001})
        await admin(handle, "POST", "reject", {"count": 2, "code": -2019})
        await admin(handle, "POST", "unknown_outcome", {"count": 1})
        await admin(handle, "POST", "clock_skew", {"offset_ms": 2_000})
        await admin(handle, "POST", "ratelimit", {"weight_limit_1m": 100})
        state = await admin(handle, "GET", "state")
        assert state["markets"]["BTCUSDT"]["price"] == 55_000
        assert state["markets"]["BTCUSDT"]["spread_bps"] == 50
        faults = state["faults"]
        assert faults["reject_next"] == 2 and faults["unknown_outcome_next"] == 1
        assert faults["clock_skew_ms"] == 2_000 and faults["feed"]["lag_ms"] == 250
        assert faults["fail_next"][0]["path"] == "/fapi/v1/time" and state["rate_limits"]["weight_limit_1m"] == 100
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{handle.rest_url}/fapi/v1/time") as resp:
                assert resp.status == 503 and (await resp.json())["code"] == -1001
            async with session.post(f"{handle.admin_url}/price", json={"symbol": "NOPE", "price": 1}) as resp:
                assert resp.status == 400 and "Invalid symbol" in (await resp.json())["error"]
            async with session.post(f"{handle.admin_url}/fail", json={"count": 1}) as resp:
                assert resp.status == 400 and "path" in (await resp.json())["error"]
            async with session.get(f"{handle.admin_url}/teleport") as resp:
                assert resp.status == 404 and "POST /__admin/price" in (await resp.json())["routes"]
        assert [r["path"] for r in await admin(handle, "GET", "requests")] == ["/fapi/v1/time"]
        await admin(handle, "POST", "reset")
        faults = (await admin(handle, "GET", "state"))["faults"]
        assert faults["reject_next"] == 0 and faults["clock_skew_ms"] == 0 and faults["feed"]["lag_ms"] == 0
        keys = await admin(handle, "GET", "keys")
        assert {k["api_key"] for k in keys} == {KEY, "k9"} and all("secret" not in k for k in keys)


def test_loopback_and_signature_helpers() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("127.1.2.3")
    assert not _is_loopback("10.0.0.1") and not _is_loopback(None) and not _is_loopback("")
    assert _split_signature("a=1&b=2&signature=ff") == ("a=1&b=2", "ff")
    assert _split_signature("a=1") == ("a=1", None)


def test_cli_parser_validates_keys() -> None:
    from harness.testnet.__main__ import build_parser

    args = build_parser().parse_args(["--port", "9000", "--seed", "4", "--key", "k:s", "--key", "k2:s:2"])
    assert args.port == 9000 and args.seed == 4 and args.key == [("k", "s"), ("k2", "s:2")]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--key", "no-secret"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--taker-fee", "5"])


def test_exception_table_is_linear() -> None:
    ex = make_ccxt_client("http://127.0.0.1:1", "ws://127.0.0.1:1/ws", KEY, SECRET, async_=False)
    assert ex.get_exceptions_by_url("http://127.0.0.1:1/fapi/v1/order", "exact")["-2019"] is ccxt.InsufficientFunds
    assert ex.urls["api"]["sapi"] == "http://127.0.0.1:1/sapi/v1"
    assert ex.urls["api"]["fapiPrivateV3"] == "http://127.0.0.1:1/fapi/v3"
