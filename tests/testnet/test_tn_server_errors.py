"""Error paths over HTTP: what an unmodified ccxt raises for each testnet fault."""

from __future__ import annotations

import ccxt
import pytest
from tn_support import BTC, KEY, SECRET, admin, open_testnet, open_testnet_client

from harness.testnet.ccxt_client import make_ccxt_client


async def test_wrong_signature_unknown_and_revoked_keys() -> None:
    async with open_testnet() as handle:
        for key, secret in ((KEY, "not-the-secret"), ("ghost", SECRET)):
            ex = make_ccxt_client(handle.rest_url, handle.ws_url, key, secret, enable_rate_limit=False)
            try:
                await ex.load_markets()
                with pytest.raises(ccxt.AuthenticationError):
                    await ex.fetch_balance()
            finally:
                await ex.close()
        ex = make_ccxt_client(handle.rest_url, handle.ws_url, KEY, SECRET, enable_rate_limit=False)
        try:
            await ex.load_markets()
            assert (await ex.fetch_balance())["USDT"]["total"] == 10_000
            await admin(handle, "POST", "keys/revoke", {"api_key": KEY})
            with pytest.raises(ccxt.AuthenticationError, match="-2015"):
                await ex.fetch_balance()
        finally:
            await ex.close()
        codes = [(r["status"], r["code"]) for r in handle.engine.read_request_log() if r["path"] == "/fapi/v3/account"]
        assert codes == [(400, -1022), (401, -2015), (200, None), (401, -2015)]


async def test_ip_not_allowed() -> None:
    async with open_testnet() as handle:
        await admin(handle, "POST", "keys", {"api_key": "far", "secret": "s", "ip_allowlist": ["203.0.113.9"]})
        ex = make_ccxt_client(handle.rest_url, handle.ws_url, "far", "s", enable_rate_limit=False)
        try:
            await ex.load_markets()
            with pytest.raises(ccxt.AuthenticationError, match="request ip: 127.0.0.1"):
                await ex.fetch_balance()
            await admin(handle, "POST", "keys/permissions", {"api_key": "far", "ip_allowlist": ["127.0.0.1"]})
            assert (await ex.fetch_balance())["USDT"]["total"] == 10_000
        finally:
            await ex.close()


async def test_clock_skew_is_invalid_nonce() -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        await admin(handle, "POST", "clock_skew", {"offset_ms": 30_000})
        with pytest.raises(ccxt.InvalidNonce):
            await ex.fetch_balance()
        await admin(handle, "POST", "clock_skew", {"offset_ms": -3_000})  # our stamps are 3 s ahead
        with pytest.raises(ccxt.InvalidNonce):
            await ex.fetch_balance()


async def test_429_then_418_ban_with_retry_after() -> None:
    async with open_testnet_client(weight_limit_1m=12, ban_after_429=1, ban_ms=120_000) as (handle, ex):
        await ex.load_markets()  # weight 1
        seen: list[tuple[str, str | None]] = []
        for _ in range(15):
            try:
                await ex.fetch_ticker(BTC)
            except ccxt.DDoSProtection as err:
                status = "418" if " 418 " in str(err) else "429" if " 429 " in str(err) else "?"
                seen.append((status, ex.last_response_headers.get("Retry-After")))
        assert seen[0][0] == "429" and 0 < int(seen[0][1] or 0) <= 60
        assert seen[1] == ("418", "120")
        assert all(s == "418" for s, _ in seen[1:])
        statuses = [r["status"] for r in handle.engine.read_request_log()]
        assert statuses.count(429) == 1 and statuses[-1] == 418


async def test_order_rejections() -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        ask = float((await ex.fapiPublicGetTickerBookTicker({"symbol": "BTCUSDT"}))["askPrice"])
        with pytest.raises(ccxt.InvalidOrder, match="-5022"):
            await ex.create_order(BTC, "limit", "buy", 0.01, ask + 10, {"timeInForce": "GTX"})
        with pytest.raises(ccxt.InvalidOrder, match="-2022"):
            await ex.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order(BTC, "market", "buy", 5)
        with pytest.raises(ccxt.InvalidOrder, match="-4164"):
            await ex.create_order(BTC, "market", "buy", 0.001)
        await ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "same"})
        with pytest.raises(ccxt.InvalidOrder, match="-4116"):
            await ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "same"})
        await admin(handle, "POST", "reject", {"count": 1, "code": -2019})
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order(BTC, "market", "buy", 0.01)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order(None, BTC, {"origClientOrderId": "never"})


@pytest.mark.parametrize("mode", ["503", "drop"])
async def test_unknown_outcome_order_is_booked_once(mode: str) -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        await admin(handle, "POST", "unknown_outcome", {"count": 1, "mode": mode})
        with pytest.raises(ccxt.NetworkError):  # 503 -1007 (RequestTimeout) or a dropped connection
            await ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": f"uo-{mode}"})
        found = await ex.fetch_order(None, BTC, {"origClientOrderId": f"uo-{mode}"})
        assert found["status"] == "closed" and found["filled"] == 0.01
        log = await admin(handle, "GET", "orders")
        assert [r["client_id"] for r in log if r["event"] == "new"] == [f"uo-{mode}"]
        assert [r["mode"] for r in log if r["event"] == "reply_lost"] == [mode]
        assert len([p for p in await ex.fetch_positions([BTC]) if p["contracts"]]) == 1


async def test_injected_http_errors_map_like_binance() -> None:
    async with open_testnet_client() as (handle, ex):
        await ex.load_markets()
        await admin(handle, "POST", "fail", {"path": "/fapi/v1/ticker/24hr", "count": 1, "status": 503})
        with pytest.raises(ccxt.ExchangeNotAvailable):  # HTML 503 from "a proxy"
            await ex.fetch_ticker(BTC)
        await admin(handle, "POST", "fail", {"path": "/fapi/v1/ticker/*", "count": 1, "status": 500, "code": -1001})
        with pytest.raises(ccxt.OperationFailed):
            await ex.fetch_ticker(BTC)
        await admin(handle, "POST", "fail", {"path": "*", "count": 1, "status": 429, "code": -1003,
                                             "retry_after_s": 9})
        with pytest.raises(ccxt.DDoSProtection):
            await ex.fetch_balance()
        assert ex.last_response_headers["Retry-After"] == "9"
        assert (await ex.fetch_ticker(BTC))["last"] > 0
