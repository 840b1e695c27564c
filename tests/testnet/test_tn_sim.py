"""SimExchange: the bot's Exchange protocol in-process, through the same engine checks as REST."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tn_support import KEY, SECRET

from bot.core.clock import VirtualClock
from bot.io.exchange import (
    AuthError,
    ClockSkewError,
    Exchange,
    NotFoundError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
    UnknownOutcomeError,
)
from harness.testnet.engine import Engine
from harness.testnet.sim import SimExchange


@pytest.fixture
def sim(engine: Engine) -> SimExchange:
    return SimExchange(engine, KEY, SECRET)


def market(side: str, qty: float, cid: str, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(symbol="BTCUSDT", side=side, qty=qty, type="market", client_id=cid,  # type: ignore[arg-type]
                        reduce_only=reduce_only)


def test_sim_satisfies_the_protocol(sim: SimExchange) -> None:
    exchange: Exchange = sim
    assert exchange is sim


def test_coroutines_finish_without_sleeping(sim: SimExchange) -> None:
    coro = sim.fetch_time_ms()
    assert coro.send(None) is None  # a single cooperative yield (asyncio.sleep(0)), no timer
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value == sim.engine.now_ms()


async def test_trading_round_trip(sim: SimExchange, engine: Engine) -> None:
    assert await sim.fetch_time_ms() == engine.now_ms()
    top = await sim.fetch_book_top("BTCUSDT")
    assert (top.bid, top.ask) == engine.book("BTCUSDT")
    bal = await sim.fetch_balance()
    assert (bal.wallet, bal.unrealized_pnl, bal.available) == (10_000, 0, 10_000)
    filled = await sim.create_order(market("buy", 0.05, "entry-1"))
    assert filled.status == "filled" and filled.filled_qty == pytest.approx(0.05)
    assert filled.avg_price == pytest.approx(top.ask) and filled.client_id == "entry-1"
    [pos] = await sim.fetch_positions("BTCUSDT")
    assert pos.qty == pytest.approx(0.05) and pos.entry_price == pytest.approx(top.ask)
    assert await sim.fetch_positions("ETHUSDT") == []
    resting = await sim.create_order(OrderRequest("BTCUSDT", "sell", 0.05, "limit", "tp-1", price=70_000.0,
                                                  time_in_force="GTX", reduce_only=True))
    assert resting.status == "new" and resting.reduce_only and resting.price == 70_000
    assert [o.client_id for o in await sim.fetch_open_orders("BTCUSDT")] == ["tp-1"]
    assert (await sim.fetch_order("BTCUSDT", "entry-1")).exchange_id == filled.exchange_id
    await sim.countdown_cancel_all("BTCUSDT", 30_000)
    await sim.cancel_all_orders("BTCUSDT")
    assert await sim.fetch_open_orders("BTCUSDT") == []
    closed = await sim.create_order(market("sell", 0.05, "exit-1", reduce_only=True))
    assert closed.status == "filled"
    assert await sim.fetch_positions("BTCUSDT") == []
    bal = await sim.fetch_balance()
    assert bal.wallet < 10_000 and bal.unrealized_pnl == 0
    with pytest.raises(NotFoundError):
        await sim.fetch_order("BTCUSDT", "never-sent")


async def test_one_order_cancelled_by_client_id_and_klines(sim: SimExchange, engine: Engine) -> None:
    bid, _ = engine.book("BTCUSDT")
    for cid in ("e-1", "e-2"):
        await sim.create_order(OrderRequest("BTCUSDT", "buy", 0.01, "limit", cid, price=round(bid * 0.99, 1),
                                            time_in_force="GTX"))
    cancelled = await sim.cancel_order("BTCUSDT", "e-1")
    assert (cancelled.status, cancelled.filled_qty) == ("canceled", 0.0)
    assert [o.client_id for o in await sim.fetch_open_orders("BTCUSDT")] == ["e-2"]
    with pytest.raises(NotFoundError):
        await sim.cancel_order("BTCUSDT", "e-1")
    bars = await sim.fetch_klines("BTCUSDT", engine.bar_ms, 20)
    candles = engine.candles("BTCUSDT")[-20:]
    assert [(b.ts_ms, b.open, b.high, b.low, b.close) for b in bars] == [
        (c.open_time + engine.bar_ms, c.open, c.high, c.low, c.close) for c in candles]


async def test_api_restrictions_follow_key_permissions(sim: SimExchange, engine: Engine) -> None:
    r = await sim.fetch_api_restrictions()
    assert r.enable_futures and r.enable_reading and r.ip_restrict
    assert not (r.enable_withdrawals or r.enable_internal_transfer or r.permits_universal_transfer)
    engine.set_permissions(KEY, {"enableWithdrawals": True})
    assert (await sim.fetch_api_restrictions()).enable_withdrawals


async def test_rejections_map_to_order_rejected(sim: SimExchange, engine: Engine) -> None:
    with pytest.raises(OrderRejectedError) as info:
        await sim.create_order(market("sell", 0.01, "ro-flat", reduce_only=True))
    assert info.value.code == -2022
    _, ask = engine.book("BTCUSDT")
    with pytest.raises(OrderRejectedError) as info:
        await sim.create_order(OrderRequest("BTCUSDT", "buy", 0.01, "limit", "po-1", price=ask + 10,
                                            time_in_force="GTX"))
    assert info.value.code == -5022
    with pytest.raises(OrderRejectedError) as info:
        await sim.create_order(market("buy", 5.0, "too-big"))
    assert info.value.code == -2019
    engine.reject_next_orders(1, -4164)
    with pytest.raises(OrderRejectedError) as info:
        await sim.create_order(market("buy", 0.01, "rej-1"))
    assert info.value.code == -4164
    assert await sim.fetch_open_orders("BTCUSDT") == []


async def test_unknown_outcome_is_booked_once_and_found_by_client_id(sim: SimExchange, engine: Engine) -> None:
    engine.unknown_outcome_next(1)
    with pytest.raises(UnknownOutcomeError):
        await sim.create_order(market("buy", 0.01, "uo-1"))
    found = await sim.fetch_order("BTCUSDT", "uo-1")
    assert found.status == "filled" and found.client_id == "uo-1"
    news = [r for r in engine.read_order_log(api_key=KEY) if r["event"] == "new"]
    assert [r["client_id"] for r in news] == ["uo-1"]
    with pytest.raises(OrderRejectedError) as info:  # a blind resend is refused as a duplicate
        await sim.create_order(market("buy", 0.01, "uo-1"))
    assert info.value.code == -4116
    assert len([r for r in engine.read_order_log() if r["event"] == "new"]) == 1


async def test_clock_skew(sim: SimExchange, engine: Engine) -> None:
    engine.set_clock_skew(-15_000)
    assert await sim.fetch_time_ms() == engine.now_ms() - 15_000
    with pytest.raises(ClockSkewError):
        await sim.fetch_balance()
    skewed = SimExchange(engine, KEY, SECRET, clock=VirtualClock(engine.now_ms() - 15_000))
    assert (await skewed.fetch_balance()).wallet == 10_000


async def test_auth_failures(engine: Engine) -> None:
    with pytest.raises(AuthError) as info:
        await SimExchange(engine, KEY, "wrong-secret").fetch_balance()
    assert info.value.code == -1022
    with pytest.raises(AuthError) as info:
        await SimExchange(engine, "ghost", SECRET).fetch_balance()
    assert (info.value.status, info.value.code) == (401, -2015)
    engine.create_key("remote", "s", ip_allowlist=["192.0.2.1"])
    with pytest.raises(AuthError):
        await SimExchange(engine, "remote", "s").fetch_balance()
    assert (await SimExchange(engine, "remote", "s", ip="192.0.2.1").fetch_balance()).wallet == 10_000
    engine.revoke_key(KEY)
    with pytest.raises(AuthError):
        await SimExchange(engine, KEY, SECRET).fetch_balance()


async def test_rate_limit_then_ban(sim: SimExchange, engine: Engine, vclock: VirtualClock) -> None:
    vclock.advance_to(vclock.now_ms() - vclock.now_ms() % 60_000 + 60_000)
    engine.set_rate_limits(weight_limit_1m=6, ban_after_429=1, ban_ms=120_000)
    await sim.fetch_time_ms()
    await sim.fetch_balance()  # weight 5: 6 used
    with pytest.raises(RateLimitedError) as info:
        await sim.fetch_time_ms()
    assert info.value.status == 429 and not info.value.banned and info.value.retry_after_s == 60
    with pytest.raises(RateLimitedError) as info:
        await sim.fetch_time_ms()
    assert info.value.banned and info.value.retry_after_s == 120
    vclock.advance(120_000)
    assert await sim.fetch_time_ms() == engine.now_ms()


async def test_path_faults_hit_the_sim_too(sim: SimExchange, engine: Engine) -> None:
    engine.fail_next("/fapi/v1/ticker/bookTicker", 1, 429, -1003, retry_after_s=7)
    with pytest.raises(RateLimitedError) as info:
        await sim.fetch_book_top("BTCUSDT")
    assert info.value.retry_after_s == 7
    engine.fail_next("/fapi/v1/order", 1, 503, None, method="POST")
    with pytest.raises(UnknownOutcomeError):
        await sim.create_order(market("buy", 0.01, "x-1"))
    assert await sim.fetch_open_orders("BTCUSDT") == []
    assert [r["status"] for r in engine.read_request_log()][-2:] == [503, 200]


async def test_closed_sim_refuses_calls(sim: SimExchange) -> None:
    await sim.close()
    with pytest.raises(Exception, match="closed"):
        await sim.fetch_time_ms()


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=24), max_size=6))
def test_the_fast_query_string_is_urlencode_byte_for_byte(query: dict[str, str]) -> None:
    from urllib.parse import urlencode

    from harness.testnet.sim import query_string

    assert query_string(query) == urlencode(query)


# Mostly characters urlencode leaves alone, so both the fast path and the fallback are exercised.
_NEAR_PLAIN = st.text(alphabet="AZaz09_.-~=&%+ /", max_size=16)


@given(st.dictionaries(_NEAR_PLAIN, _NEAR_PLAIN, max_size=6))
def test_the_fast_query_string_is_urlencode_byte_for_byte_near_plain(query: dict[str, str]) -> None:
    from urllib.parse import urlencode

    from harness.testnet.sim import query_string

    assert query_string(query) == urlencode(query)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**20, 10**20).map(float),
       st.integers(0, 20))
def test_the_fast_number_format_is_the_f_string_byte_for_byte(x: float, decimals: int) -> None:
    from harness.testnet.params import fmt

    assert fmt(x, decimals) == f"{x:.{decimals}f}"


@given(st.lists(st.tuples(st.sampled_from(["s1", "s2", "a-longer-secret"]), st.text(max_size=30)), max_size=40))
def test_the_signature_memo_answers_what_the_hmac_would(calls: list[tuple[str, str]]) -> None:
    """Repeats, other secrets and evictions from the memo never change a signature."""
    import hashlib
    import hmac

    from harness.testnet.gate import sign_payload

    for secret, payload in calls + calls[::-1]:
        assert sign_payload(secret, payload) == hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


@given(st.text(min_size=1, max_size=40), st.text(max_size=80))
def test_the_signature_is_binances_hmac_sha256(secret: str, payload: str) -> None:
    import hashlib
    import hmac

    from harness.testnet.gate import sign_payload

    assert sign_payload(secret, payload) == hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
