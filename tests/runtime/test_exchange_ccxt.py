"""CcxtExchange over real sockets against the local testnet: every Exchange method, error classes, payloads."""

from __future__ import annotations

import asyncio
import math
import socket
import time

import pytest
from rt_support import BTC, KEY, SECRET, admin, open_testnet

from bot.io.exchange import (
    AuthError,
    ClockSkewError,
    ExchangeUnavailableError,
    NotFoundError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
    UnknownOutcomeError,
)
from bot.io.exchange_ccxt import (
    CcxtExchange,
    MalformedOrderReplyError,
    MalformedReplyError,
    SyncCcxtExchange,
    parse_balance,
    parse_book,
    parse_kline,
    parse_order,
    parse_position,
    parse_restrictions,
    parse_retry_after,
)


def _exchange(handle, key: str = KEY, secret: str = SECRET) -> CcxtExchange:  # type: ignore[no-untyped-def]
    return CcxtExchange(key, secret, rest_url=handle.rest_url, ws_url=handle.ws_url)


async def test_every_exchange_method_over_sockets() -> None:
    async with open_testnet() as handle:
        ex = _exchange(handle)
        try:
            assert abs(await ex.fetch_time_ms() - handle.engine.server_time_ms()) < 5_000
            balance = await ex.fetch_balance()
            assert balance.wallet == 10_000 and balance.equity == 10_000
            assert await ex.fetch_positions(BTC) == []
            book = await ex.fetch_book_top(BTC)
            assert 0 < book.bid < book.ask and book.symbol == BTC

            bought = await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "m-1"))
            assert (bought.client_id, bought.status, bought.filled_qty) == ("m-1", "filled", 0.01)
            assert bought.avg_price is not None and bought.avg_price > 0
            [pos] = await ex.fetch_positions(BTC)
            assert pos.qty == 0.01 and pos.entry_price == bought.avg_price

            price = round(book.bid * 0.9, 1)
            limit = await ex.create_order(OrderRequest(BTC, "buy", 0.01, "limit", "l-1", price=price))
            assert limit.status == "new" and limit.price == price and limit.type == "limit"
            post = await ex.create_order(OrderRequest(BTC, "buy", 0.01, "limit", "p-1", price=price,
                                                      time_in_force="GTX"))
            assert post.status == "new"
            assert (await ex.fetch_order(BTC, "l-1")).exchange_id == limit.exchange_id
            assert sorted(o.client_id for o in await ex.fetch_open_orders(BTC)) == ["l-1", "p-1"]

            await ex.countdown_cancel_all(BTC, 60_000)
            assert handle.engine.accounts[KEY].countdowns[BTC][0] == 60_000
            await ex.countdown_cancel_all(BTC, 0)
            assert BTC not in handle.engine.accounts[KEY].countdowns

            await ex.cancel_all_orders(BTC)
            assert await ex.fetch_open_orders(BTC) == []
            assert (await ex.fetch_order(BTC, "l-1")).status == "canceled"

            closed = await ex.create_order(OrderRequest(BTC, "sell", 0.01, "market", "c-1", reduce_only=True))
            assert closed.reduce_only and closed.status == "filled"
            assert await ex.fetch_positions(BTC) == []

            restrictions = await ex.fetch_api_restrictions()
            assert restrictions.ip_restrict and not restrictions.enable_withdrawals
            assert restrictions.enable_futures and restrictions.enable_reading
            logged = {r.get("client_id") for r in handle.engine.read_order_log()}
            assert {"m-1", "l-1", "p-1", "c-1"} <= logged  # our client ids reached the exchange
        finally:
            await ex.close()


async def test_one_order_cancelled_by_client_id_and_klines_over_sockets() -> None:
    async with open_testnet() as handle:
        ex = _exchange(handle)
        try:
            book = await ex.fetch_book_top(BTC)
            price = round(book.bid * 0.9, 1)
            await ex.create_order(OrderRequest(BTC, "buy", 0.01, "limit", "e-1", price=price, time_in_force="GTX"))
            await ex.create_order(OrderRequest(BTC, "buy", 0.01, "limit", "e-2", price=price, time_in_force="GTX"))
            cancelled = await ex.cancel_order(BTC, "e-1")
            assert (cancelled.client_id, cancelled.status, cancelled.filled_qty) == ("e-1", "canceled", 0.0)
            assert [o.client_id for o in await ex.fetch_open_orders(BTC)] == ["e-2"]  # only that one
            with pytest.raises(NotFoundError) as gone:  # no longer open: -2011
                await ex.cancel_order(BTC, "e-1")
            assert gone.value.code == -2011
            await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "m-9"))
            with pytest.raises(NotFoundError):  # filled before the cancel
                await ex.cancel_order(BTC, "m-9")

            bars = await ex.fetch_klines(BTC, 300_000, 50)
            history = handle.engine.candles(BTC)[-50:]
            assert len(bars) == 50
            assert [b.ts_ms for b in bars] == [c.open_time + 300_000 for c in history]  # close times
            assert bars[0].close == pytest.approx(history[0].close) and all(b.is_sane() for b in bars)
            with pytest.raises(ValueError, match="no kline interval of 7000 ms"):
                await ex.fetch_klines(BTC, 7_000, 10)
        finally:
            await ex.close()


async def test_order_errors_are_classified() -> None:
    async with open_testnet() as handle:
        ex = _exchange(handle)
        try:
            await admin(handle, "POST", "unknown_outcome", {"count": 1, "mode": "503"})
            with pytest.raises(UnknownOutcomeError) as unknown:
                await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "u-1"))
            assert unknown.value.code == -1007
            assert (await ex.fetch_order(BTC, "u-1")).status == "filled"  # it WAS placed

            await admin(handle, "POST", "unknown_outcome", {"count": 1, "mode": "drop"})
            with pytest.raises(UnknownOutcomeError):
                await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "u-2"))

            await admin(handle, "POST", "reject", {"count": 1, "code": -2019})
            with pytest.raises(OrderRejectedError) as rejected:
                await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "r-1"))
            assert rejected.value.code == -2019

            await admin(handle, "POST", "fail", {"path": "/fapi/v1/order", "method": "POST", "count": 1,
                                                 "status": 418, "code": -1003, "retry_after_s": 7})
            with pytest.raises(RateLimitedError) as banned:
                await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "b-1"))
            assert banned.value.banned and banned.value.retry_after_s == 7

            await admin(handle, "POST", "fail", {"path": "/fapi/v1/order", "method": "POST", "count": 1,
                                                 "status": 502})
            with pytest.raises(UnknownOutcomeError):  # an HTML 5xx from a proxy: outcome unknown
                await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "h-1"))

            with pytest.raises(NotFoundError) as missing:
                await ex.fetch_order(BTC, "never-sent")
            assert missing.value.code == -2013

            with pytest.raises(OrderRejectedError):  # refused before sending: NaN never leaves the bot
                await ex.create_order(OrderRequest(BTC, "buy", math.nan, "market", "n-1"))
            assert not any(r.get("client_id") == "n-1" for r in handle.engine.read_order_log())
        finally:
            await ex.close()


async def test_read_errors_clock_skew_and_auth() -> None:
    async with open_testnet() as handle:
        ex = _exchange(handle)
        try:
            await admin(handle, "POST", "fail", {"path": "/fapi/v3/account", "count": 1, "status": 503,
                                                 "code": -1001})
            with pytest.raises(ExchangeUnavailableError):  # a read: nothing to resolve, just retry
                await ex.fetch_balance()
            await admin(handle, "POST", "fail", {"path": "/fapi/v1/openOrders", "count": 1, "status": 429,
                                                 "code": -1003, "retry_after_s": 3})
            with pytest.raises(RateLimitedError) as limited:
                await ex.fetch_open_orders(BTC)
            assert limited.value.retry_after_s == 3 and not limited.value.banned
            assert ex.last_response_headers.get("Retry-After") == "3"

            await admin(handle, "POST", "clock_skew", {"offset_ms": 120_000})
            with pytest.raises(ClockSkewError):
                await ex.fetch_balance()
            ex.set_time_offset_ms(await ex.fetch_time_ms() - time.time_ns() // 1_000_000)
            assert (await ex.fetch_balance()).wallet == 10_000
            await admin(handle, "POST", "clock_skew", {"offset_ms": 0})
            ex.set_time_offset_ms(0)

            await admin(handle, "POST", "keys/revoke", {"api_key": KEY})
            with pytest.raises(AuthError):
                await ex.fetch_balance()
        finally:
            await ex.close()


async def test_connection_refused_is_unavailable_not_unknown() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with open_testnet() as handle:
        ex = _exchange(handle)
        try:
            await ex.load_markets()  # markets come from the live testnet; then the venue vanishes
            for name, url in list(ex.client.urls["api"].items()):
                if isinstance(url, str):
                    ex.client.urls["api"][name] = url.replace(handle.rest_url, f"http://127.0.0.1:{port}")
            with pytest.raises(ExchangeUnavailableError):  # never sent: safe to retry, not unknown
                await ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "x-1"))
            with pytest.raises(ExchangeUnavailableError):
                await ex.fetch_balance()
        finally:
            await ex.close()


async def test_sync_variant_reads_and_trades() -> None:
    async with open_testnet() as handle:
        def session() -> tuple[int, int, int]:
            ex = SyncCcxtExchange(KEY, SECRET, rest_url=handle.rest_url)
            try:
                ex.create_order(OrderRequest(BTC, "buy", 0.02, "market", "s-1"))
                positions = ex.fetch_all_positions()
                book = ex.fetch_book_top(BTC)
                ex.create_order(OrderRequest(BTC, "sell", 0.01, "limit", "s-2", price=round(book.ask * 1.2, 1)))
                open_orders = ex.fetch_open_orders()
                ex.cancel_all_orders(BTC)
                cancelled = 1 if ex.fetch_order(BTC, "s-2").status == "canceled" else 0
                assert ex.fetch_api_restrictions().ip_restrict
                return len(positions), len(open_orders), cancelled
            finally:
                ex.close()

        assert await asyncio.to_thread(session) == (1, 1, 1)


# --- payload validation (no network) -----------------------------------------------------------

ORDER = {"orderId": 7, "symbol": BTC, "status": "FILLED", "clientOrderId": "c-1", "price": "0",
         "avgPrice": "60000.5", "origQty": "0.010", "executedQty": "0.010", "type": "MARKET", "side": "BUY",
         "reduceOnly": False, "updateTime": 1_700_000_000_000}


def test_parse_order_accepts_binance_shape() -> None:
    state = parse_order(ORDER)
    assert (state.exchange_id, state.filled_qty, state.avg_price, state.price) == ("7", 0.01, 60000.5, None)


@pytest.mark.parametrize("field,value", [
    ("avgPrice", "NaN"), ("origQty", "-1"), ("executedQty", "0.02"), ("status", "WEIRD"), ("side", "UP"),
    ("origQty", None), ("clientOrderId", ""), ("updateTime", "soon"), ("avgPrice", "0"), ("type", "STOP"),
    ("executedQty", "inf"), ("origQty", True),
])
def test_parse_order_refuses_malformed_fields(field: str, value: object) -> None:
    with pytest.raises(MalformedReplyError):
        parse_order({**ORDER, field: value})


def test_parse_order_refuses_missing_fields_and_non_objects() -> None:
    for name in ("orderId", "status", "origQty", "executedQty", "side"):
        with pytest.raises(MalformedReplyError, match=name):
            parse_order({k: v for k, v in ORDER.items() if k != name})
    with pytest.raises(MalformedReplyError):
        parse_order("<html>OK</html>")


def test_other_payloads_are_validated() -> None:
    assert parse_balance({"totalWalletBalance": "10", "totalUnrealizedProfit": "-1",
                          "availableBalance": "9"}).equity == 9
    with pytest.raises(MalformedReplyError):
        parse_balance({"totalWalletBalance": "nan", "totalUnrealizedProfit": "0", "availableBalance": "0"})
    with pytest.raises(MalformedReplyError):
        parse_balance({"totalWalletBalance": "-5", "totalUnrealizedProfit": "0", "availableBalance": "0"})
    assert parse_position({"symbol": BTC, "positionAmt": "-0.5", "entryPrice": "100",
                           "unRealizedProfit": "1"}).qty == -0.5
    with pytest.raises(MalformedReplyError):
        parse_position({"symbol": BTC, "positionAmt": "0.5", "entryPrice": "0", "unRealizedProfit": "0"})
    with pytest.raises(MalformedReplyError):
        parse_book({"symbol": BTC, "bidPrice": "101", "askPrice": "100", "time": 1}, BTC)
    with pytest.raises(MalformedReplyError):
        parse_book({"symbol": "ETHUSDT", "bidPrice": "1", "askPrice": "2", "time": 1}, BTC)
    flags = {"enableReading": True, "enableFutures": True, "enableWithdrawals": False,
             "enableInternalTransfer": False, "permitsUniversalTransfer": False, "ipRestrict": True}
    assert parse_restrictions(flags).ip_restrict
    with pytest.raises(MalformedReplyError):  # a missing flag is never read as "off"
        parse_restrictions({k: v for k, v in flags.items() if k != "enableWithdrawals"})
    with pytest.raises(MalformedReplyError):
        parse_restrictions({**flags, "ipRestrict": "maybe"})


def test_klines_are_validated() -> None:
    bar = parse_kline([1_000, "10", "12", "9", "11", "3"], 300_000)
    assert (bar.ts_ms, bar.open, bar.high, bar.low, bar.close, bar.volume) == (301_000, 10, 12, 9, 11, 3)
    for row in ([1_000, "10", "9", "12", "11", "3"], [1_000, "nan", "12", "9", "11", "3"],
                [1_000, "10", "12", "9", "-11", "3"], [1_000, "10", "12"], "x"):
        with pytest.raises(MalformedReplyError):
            parse_kline(row, 300_000)


def test_malformed_order_reply_is_an_unknown_outcome() -> None:
    assert issubclass(MalformedOrderReplyError, UnknownOutcomeError)


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"Retry-After": "12"}) == 12
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now_s=1445412470.0) == 10
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


async def test_concurrent_calls_each_classify_from_their_own_reply() -> None:
    """The kill switch reads positions and open orders at once: a 429's Retry-After must stay with
    the call that got it, not be overwritten by the sibling's 200."""
    from bot.io.exchange_ccxt import _HttpTrace

    class Client:
        def on_rest_response(self, code, reason, url, method, headers, body, *rest):  # noqa: ANN001, ANN002
            return body

    client = Client()
    trace = _HttpTrace(client)

    async def call(code: int, retry_after: str, delay: float) -> tuple:
        trace.reset()
        client.on_rest_response(code, "", "/fapi", "GET", {"Retry-After": retry_after}, "{}")
        await asyncio.sleep(delay)  # the sibling's reply arrives meanwhile
        return trace.call_reply()

    limited, fine = await asyncio.gather(call(429, "7", 0.02), call(200, "0", 0))
    assert (limited[0], limited[1]["Retry-After"]) == (429, "7")
    assert (fine[0], fine[1]["Retry-After"]) == (200, "0")
    assert trace.headers["Retry-After"] in ("7", "0")  # the client's latest reply, whichever came last
