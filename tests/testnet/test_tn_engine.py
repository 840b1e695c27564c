"""The matching engine: orders, positions, fees, margin, faults, request gate, logs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tn_support import KEY, SECRET, signed_call

from bot.core.clock import VirtualClock
from harness.testnet import engine as engine_module
from harness.testnet.engine import Engine
from harness.testnet.errors import BinanceError
from harness.testnet.gate import sign_payload
from harness.testnet.model import Permissions

T0 = 1_700_000_000_000


def code_of(fn, *args, **kwargs) -> int | None:  # type: ignore[no-untyped-def]
    with pytest.raises(BinanceError) as info:
        fn(*args, **kwargs)
    return info.value.code


# ----------------------------------------------------------------------------- orders


def test_market_buy_fills_at_ask_and_pays_taker_fee(engine: Engine) -> None:
    bid, ask = engine.book("BTCUSDT")
    assert bid < engine.market("BTCUSDT").price < ask
    order = engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.01)
    acct = engine.accounts[KEY]
    assert order.status == "FILLED" and order.avg_price == pytest.approx(ask)
    assert acct.position("BTCUSDT").qty == pytest.approx(0.01)
    assert acct.position("BTCUSDT").entry_price == pytest.approx(ask)
    assert acct.wallet == pytest.approx(10_000 - 0.01 * ask * 0.0005)


def test_round_trip_realises_pnl(engine: Engine) -> None:
    engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.1)
    entry = engine.accounts[KEY].position("BTCUSDT").entry_price
    engine.set_price("BTCUSDT", 61_000)
    bid, _ = engine.book("BTCUSDT")
    engine.place_order(KEY, "BTCUSDT", "SELL", "MARKET", 0.1, reduce_only=True)
    acct = engine.accounts[KEY]
    assert acct.position("BTCUSDT").qty == 0
    assert acct.realized_pnl == pytest.approx((bid - entry) * 0.1)
    assert acct.wallet == pytest.approx(10_000 + acct.realized_pnl - acct.fees_paid)


def test_resting_limit_fills_when_price_crosses_with_maker_fee(engine: Engine) -> None:
    price = engine.market("BTCUSDT").price
    limit = round(price * 0.99, 1)
    order = engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=limit, client_id="rest-1")
    assert order.status == "NEW"
    assert [o.client_id for o in engine.open_orders(KEY, "BTCUSDT")] == ["rest-1"]
    engine.set_price("BTCUSDT", limit + 50)
    assert order.status == "NEW"
    engine.set_price("BTCUSDT", limit - 10)
    assert order.status == "FILLED" and order.avg_price == pytest.approx(limit)
    assert engine.accounts[KEY].fees_paid == pytest.approx(0.01 * limit * 0.0002)
    assert engine.open_orders(KEY, "BTCUSDT") == []


def test_post_only_that_would_take_is_rejected(engine: Engine) -> None:
    _, ask = engine.book("BTCUSDT")
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=ask, time_in_force="GTX") == -5022
    maker = engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=round(ask - 100, 1), time_in_force="GTX")
    assert maker.status == "NEW"


def test_ioc_that_cannot_take_expires(engine: Engine) -> None:
    bid, _ = engine.book("BTCUSDT")
    order = engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=round(bid - 100, 1), time_in_force="IOC")
    assert order.status == "EXPIRED" and order.executed_qty == 0
    assert engine.open_orders(KEY) == []


def test_reduce_only_rules(engine: Engine) -> None:
    assert code_of(engine.place_order, KEY, "BTCUSDT", "SELL", "MARKET", 0.01, reduce_only=True) == -2022
    engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.01)
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 0.01, reduce_only=True) == -2022
    closing = engine.place_order(KEY, "BTCUSDT", "SELL", "MARKET", 0.05, reduce_only=True)
    assert closing.executed_qty == pytest.approx(0.01)
    assert engine.accounts[KEY].position("BTCUSDT").qty == 0


def test_resting_reduce_only_expires_when_position_is_gone(engine: Engine) -> None:
    engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.01)
    price = engine.market("BTCUSDT").price
    tp = engine.place_order(KEY, "BTCUSDT", "SELL", "LIMIT", 0.01, price=round(price + 500, 1), reduce_only=True)
    engine.place_order(KEY, "BTCUSDT", "SELL", "MARKET", 0.01, reduce_only=True)
    engine.set_price("BTCUSDT", price + 600)
    assert tp.status == "EXPIRED"
    assert engine.accounts[KEY].position("BTCUSDT").qty == 0


def test_duplicate_client_order_id(engine: Engine) -> None:
    engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.01, client_id="dup")
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 0.01, client_id="dup") == -4116
    assert len([r for r in engine.read_order_log() if r["event"] == "new" and r["client_id"] == "dup"]) == 1


def test_margin_and_min_notional(engine: Engine) -> None:
    # 10x leverage on 10k: 2 BTC (~120k notional) is more than the margin allows
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 2.0) == -2019
    assert engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 1.0).status == "FILLED"
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 0.001) == -4164  # ~60 < 100 USDT
    assert engine.place_order(KEY, "BTCUSDT", "SELL", "MARKET", 0.001, reduce_only=True).status == "FILLED"


def test_leverage_setting_changes_margin(engine: Engine) -> None:
    engine.set_leverage(KEY, "BTCUSDT", 20)
    assert engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 2.0).status == "FILLED"
    assert code_of(engine.set_leverage, KEY, "BTCUSDT", 500) == -4028


def test_bad_order_parameters(engine: Engine) -> None:
    assert code_of(engine.place_order, KEY, "XYZUSDT", "BUY", "MARKET", 0.01) == -1121
    assert code_of(engine.place_order, KEY, "BTCUSDT", "HOLD", "MARKET", 0.01) == -1117
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "STOP", 0.01) == -1116
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 0.0) == -4003
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 0.0105) == -1111
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "LIMIT", 0.01) == -1102
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=50_000.05) == -1111


def test_cancel_and_unknown_orders(engine: Engine) -> None:
    order = engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=50_000.0, client_id="c1")
    assert engine.cancel_order(KEY, "BTCUSDT", client_id="c1").status == "CANCELED"
    assert code_of(engine.cancel_order, KEY, "BTCUSDT", order_id=order.order_id) == -2011
    assert code_of(engine.find_order, KEY, "BTCUSDT", client_id="nope") == -2013
    for i in range(3):
        engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=50_000.0 + i)
    assert engine.cancel_all(KEY, "BTCUSDT") == 3
    assert engine.open_orders(KEY, "BTCUSDT") == []


# ----------------------------------------------------------------------------- dead-man switch


def test_countdown_cancels_open_orders_when_not_renewed(engine: Engine, vclock: VirtualClock) -> None:
    o1 = engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=50_000.0)
    o2 = engine.place_order(KEY, "ETHUSDT", "BUY", "LIMIT", 0.01, price=2_000.0)
    engine.countdown_cancel_all(KEY, "BTCUSDT", 10_000)
    vclock.advance(9_000)
    engine.countdown_cancel_all(KEY, "BTCUSDT", 10_000)  # heartbeat renews
    vclock.advance(9_000)
    assert o1.status == "NEW"
    vclock.advance(1_001)  # the virtual clock's timer fires without any request
    assert o1.status == "CANCELED" and o1.update_time == T0 + 19_000
    assert o2.status == "NEW"  # other symbols untouched
    fired = [r for r in engine.read_order_log() if r["event"] == "countdown_fired"]
    assert fired and fired[0]["cancelled"] == 1


def test_countdown_zero_turns_it_off(engine: Engine, vclock: VirtualClock) -> None:
    order = engine.place_order(KEY, "BTCUSDT", "BUY", "LIMIT", 0.01, price=50_000.0)
    engine.countdown_cancel_all(KEY, "BTCUSDT", 5_000)
    engine.countdown_cancel_all(KEY, "BTCUSDT", 0)
    vclock.advance(60_000)
    engine.poll()
    assert order.status == "NEW"


# ----------------------------------------------------------------------------- market faults


def test_price_jump_path_and_spread(engine: Engine, vclock: VirtualClock) -> None:
    engine.set_price("BTCUSDT", 60_000)
    assert engine.jump_price("BTCUSDT", -10) == pytest.approx(54_000)
    engine.follow_path("BTCUSDT", [55_000, 56_000, 57_000], step_ms=1_000)
    assert engine.market("BTCUSDT").price == 55_000
    vclock.advance(1_000)
    assert engine.market("BTCUSDT").price == 56_000
    engine.step_market("BTCUSDT", 1.0)  # the random walk is suspended while the path runs
    assert engine.market("BTCUSDT").price == 56_000
    vclock.advance(5_000)
    assert engine.market("BTCUSDT").price == 57_000 and engine.market("BTCUSDT").path is None
    bid, ask = engine.book("BTCUSDT")
    assert (ask - bid) / 57_000 * 10_000 < 5
    engine.widen_spread(100, symbol="BTCUSDT", duration_ms=2_000)
    bid, ask = engine.book("BTCUSDT")
    assert (ask - bid) / 57_000 * 10_000 == pytest.approx(100, abs=0.1)
    vclock.advance(2_000)
    bid, ask = engine.book("BTCUSDT")
    assert (ask - bid) / 57_000 * 10_000 < 5


def test_feed_faults_expire(engine: Engine, vclock: VirtualClock) -> None:
    engine.set_feed_lag(3_000, duration_ms=10_000)
    engine.stall_feed(duration_ms=5_000)
    assert engine.feed_state().stalled and engine.feed_state().lag_ms == 3_000
    vclock.advance(5_000)
    assert not engine.feed_state().stalled and engine.feed_state().lag_ms == 3_000
    vclock.advance(5_000)
    assert engine.feed_state().lag_ms == 0


def test_advance_bar_is_deterministic(vclock: VirtualClock) -> None:
    a, b = Engine(vclock, seed=5, history_bars=10), Engine(VirtualClock(T0), seed=5, history_bars=10)
    assert [a.advance_bar("ETHUSDT") for _ in range(20)] == [b.advance_bar("ETHUSDT") for _ in range(20)]
    closes = [c.open_time for c in a.candles("ETHUSDT")]
    assert closes == sorted(closes) and len(set(closes)) == len(closes)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), vol_bps=st.sampled_from([2.0, 15.0, 60.0]), history=st.integers(0, 40))
def test_an_engine_on_cached_history_plays_on_as_one_built_from_scratch(seed: int, vol_bps: float,
                                                                       history: int) -> None:
    # Engines share their seeded history (harness.testnet.engine._history): the walk must go on
    # from the same random state and regime, or a scenario's market would depend on what ran before.
    def build() -> tuple[list[object], list[object]]:
        eng = Engine(VirtualClock(T0), seed=seed, vol_bps=vol_bps, history_bars=history)
        return ([list(m.history) for m in eng.markets.values()],
                [eng.advance_bar(s) for _ in range(30) for s in ("BTCUSDT", "ETHUSDT")])

    engine_module._history.cache_clear()
    fresh = build()
    assert build() == fresh  # the second engine's history came from the cache


def test_a_seed_gives_the_market_it_gave_before_history_was_cached() -> None:
    # Closes recorded from the engine before _history existed: a cached engine must go on from the
    # walk's random state after the history, not from a fresh one.
    for _ in range(2):  # built once from scratch, once from the cache
        eng = Engine(VirtualClock(T0), seed=11, vol_bps=40.0, history_bars=60)
        closes = [eng.advance_bar(s).close for _ in range(3) for s in ("BTCUSDT", "ETHUSDT")]
        assert closes == [64875.8, 3127.37, 64420.2, 3133.54, 64869.8, 3140.72]


def test_kline_aggregation(engine: Engine) -> None:
    five = engine.candles("BTCUSDT", 300_000)
    fifteen = engine.candles("BTCUSDT", 900_000)
    assert all(c.open_time % 900_000 == 0 for c in fifteen)
    first = [c for c in five if fifteen[1].open_time <= c.open_time < fifteen[1].open_time + 900_000]
    assert fifteen[1].high == max(c.high for c in first) and fifteen[1].close == first[-1].close
    with pytest.raises(BinanceError) as info:
        engine.candles("BTCUSDT", 60_000)
    assert info.value.code == -1120


# ----------------------------------------------------------------------------- request gate


def test_signed_request_checks(engine: Engine) -> None:
    assert signed_call(engine, "GET", "/fapi/v3/account").status == 200
    query = {"timestamp": str(engine.now_ms()), "recvWindow": "5000"}
    with pytest.raises(BinanceError) as info:
        engine.handle("GET", "/fapi/v3/account", query, api_key=KEY, payload="timestamp=1&recvWindow=5000",
                      signature=sign_payload(SECRET, "something else"))
    assert (info.value.status, info.value.code) == (400, -1022)
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "GET", "/fapi/v3/account", key="nobody")
    assert (info.value.status, info.value.code) == (401, -2015)
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "GET", "/fapi/v3/account", ts=engine.now_ms() - 20_000)
    assert info.value.code == -1021
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "GET", "/fapi/v3/account", ts=engine.now_ms() + 1_500)
    assert info.value.code == -1021


def test_clock_skew_moves_server_time(engine: Engine) -> None:
    engine.set_clock_skew(30_000)
    assert engine.handle("GET", "/fapi/v1/time", {}).body["serverTime"] == engine.now_ms() + 30_000
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "GET", "/fapi/v3/account")
    assert info.value.code == -1021
    signed_call(engine, "GET", "/fapi/v3/account", ts=engine.server_time_ms())
    engine.reset_faults()
    assert signed_call(engine, "GET", "/fapi/v3/account").status == 200


def test_revoked_key_ip_allowlist_and_permissions(engine: Engine) -> None:
    engine.create_key("k2", "s2", ip_allowlist=["10.0.0.7"])
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "GET", "/fapi/v3/account", key="k2", secret="s2")
    assert info.value.code == -2015 and "127.0.0.1" in info.value.msg
    assert signed_call(engine, "GET", "/fapi/v3/account", key="k2", secret="s2", ip="10.0.0.7").status == 200
    engine.set_permissions(KEY, {"enableFutures": False})
    assert signed_call(engine, "GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}).status == 200
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                       "quantity": "0.01"})
    assert info.value.code == -2015
    engine.set_permissions(KEY, {"enable_withdrawals": True, "ipRestrict": False})
    restrictions = signed_call(engine, "GET", "/sapi/v1/account/apiRestrictions").body
    assert restrictions["enableWithdrawals"] is True and restrictions["ipRestrict"] is False
    engine.revoke_key(KEY)
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "GET", "/fapi/v3/account")
    assert (info.value.status, info.value.code) == (401, -2015)
    with pytest.raises(ValueError, match="unknown permission"):
        Permissions().update({"enableTeleport": True})


def test_rate_limit_429_then_418_ban_with_retry_after(engine: Engine, vclock: VirtualClock) -> None:
    engine.set_rate_limits(weight_limit_1m=10, ban_after_429=2, ban_ms=120_000)
    vclock.advance_to(T0 - T0 % 60_000 + 60_000)  # the start of a fresh minute window
    statuses = []
    for _ in range(14):
        try:
            reply = engine.handle("GET", "/fapi/v1/time", {})
            statuses.append((reply.status, reply.headers["X-MBX-USED-WEIGHT-1M"]))
        except BinanceError as err:
            statuses.append((err.status, err.headers.get("Retry-After")))
    assert statuses[:10] == [(200, str(i)) for i in range(1, 11)]
    assert statuses[10] == (429, "60") and statuses[11] == (429, "60")
    assert statuses[12] == (418, "120") and statuses[13][0] == 418
    vclock.advance(121_000)
    assert engine.handle("GET", "/fapi/v1/time", {}).status == 200


def test_fail_next_on_a_path(engine: Engine) -> None:
    engine.fail_next("/fapi/v1/order", 2, 503, -1001, retry_after_s=3, method="POST")
    for _ in range(2):
        with pytest.raises(BinanceError) as info:
            signed_call(engine, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                           "quantity": "0.01"})
        assert (info.value.status, info.value.code, info.value.headers["Retry-After"]) == (503, -1001, "3")
    reply = signed_call(engine, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                           "quantity": "0.01"})
    assert reply.body["status"] == "FILLED"
    assert engine.accounts[KEY].position("BTCUSDT").qty == pytest.approx(0.01)  # the failed ones never booked
    engine.fail_next("/fapi/v1/ticker/*", 1, 502)
    with pytest.raises(BinanceError) as info:
        engine.handle("GET", "/fapi/v1/ticker/bookTicker", {"symbol": "BTCUSDT"})
    assert info.value.html and info.value.status == 502
    assert engine.handle("GET", "/fapi/v1/ticker/bookTicker", {"symbol": "BTCUSDT"}).status == 200


def test_reject_next_orders(engine: Engine) -> None:
    engine.reject_next_orders(1, -2019)
    assert code_of(engine.place_order, KEY, "BTCUSDT", "BUY", "MARKET", 0.01) == -2019
    assert engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.01).status == "FILLED"


def test_unknown_outcome_books_the_order_but_loses_the_reply(engine: Engine) -> None:
    engine.unknown_outcome_next(1)
    with pytest.raises(BinanceError) as info:
        signed_call(engine, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                       "quantity": "0.01", "newClientOrderId": "lost-1"})
    assert (info.value.status, info.value.code) == (503, -1007)
    assert info.value.order is not None and not info.value.drop_connection
    found = signed_call(engine, "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-1"})
    assert found.body["status"] == "FILLED"
    log = engine.read_order_log(api_key=KEY)
    assert [r["event"] for r in log if r.get("client_id") == "lost-1"] == ["new", "filled", "reply_lost"]
    engine.unknown_outcome_next(1, mode="drop")
    with pytest.raises(BinanceError) as info:
        engine.place_order(KEY, "BTCUSDT", "BUY", "MARKET", 0.01)
    assert info.value.drop_connection


def test_request_log_and_weight_headers(engine: Engine) -> None:
    reply = signed_call(engine, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                           "quantity": "0.01"})
    assert reply.headers["X-MBX-ORDER-COUNT-1M"] == "1" and int(reply.headers["X-MBX-USED-WEIGHT-1M"]) >= 1
    with pytest.raises(BinanceError):
        engine.handle("GET", "/fapi/v1/nothing", {})
    log = engine.read_request_log()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/fapi/v1/order", 200), ("GET", "/fapi/v1/nothing", 404)]
    assert all("secret" not in str(r).lower() and SECRET not in str(r) for r in log)
    assert engine.read_request_log(since=log[0]["seq"]) == log[1:]


# ----------------------------------------------------------------------------- properties

ops = st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(min_value=1, max_value=40),
                         st.booleans(), st.floats(min_value=-3.0, max_value=3.0)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_bookkeeping_cash_flow_matches_realised_pnl(steps: list[tuple[str, int, bool, float]]) -> None:
    """When flat again, wallet - deposits == net cash flow of all fills - fees (independent of entry averaging)."""
    eng = Engine(VirtualClock(T0), seed=2, history_bars=0, starting_balance=1_000_000)
    eng.create_key(KEY, SECRET)
    for side, lots, reduce_only, move_pct in steps:
        eng.jump_price("BTCUSDT", move_pct)
        try:
            eng.place_order(KEY, "BTCUSDT", side, "MARKET", lots / 100, reduce_only=reduce_only)
        except BinanceError as err:
            assert err.code in (-2022, -4164, -2019)
    pos = eng.accounts[KEY].position("BTCUSDT")
    if pos.qty:
        eng.place_order(KEY, "BTCUSDT", "SELL" if pos.qty > 0 else "BUY", "MARKET", round(abs(pos.qty), 3),
                        reduce_only=True)
    acct = eng.accounts[KEY]
    fills = [r for r in eng.read_order_log() if r["event"] == "filled"]
    cash = sum((-1 if r["side"] == "BUY" else 1) * r["fill_qty"] * r["fill_price"] for r in fills)
    fees = sum(r["fee"] for r in fills)
    assert acct.position("BTCUSDT").qty == 0
    assert math.isclose(acct.wallet, acct.deposits + acct.realized_pnl - acct.fees_paid, abs_tol=1e-6)
    assert math.isclose(acct.fees_paid, fees, abs_tol=1e-9)
    assert math.isclose(acct.realized_pnl, cash, abs_tol=1e-6)


@settings(max_examples=60, deadline=None)
@given(ops, st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=10))
def test_reduce_only_never_increases_exposure(steps: list[tuple[str, int, bool, float]], closes: list[int]) -> None:
    eng = Engine(VirtualClock(T0), seed=4, history_bars=0, starting_balance=1_000_000)
    eng.create_key(KEY, SECRET)
    for (side, lots, _, move_pct), close_lots in zip(steps, closes * len(steps), strict=False):
        eng.jump_price("BTCUSDT", move_pct)
        try:
            eng.place_order(KEY, "BTCUSDT", side, "MARKET", lots / 100)
        except BinanceError:
            pass
        before = eng.accounts[KEY].position("BTCUSDT").qty
        for ro_side in ("BUY", "SELL"):
            try:
                eng.place_order(KEY, "BTCUSDT", ro_side, "MARKET", close_lots / 100, reduce_only=True)
            except BinanceError as err:
                assert err.code == -2022
            after = eng.accounts[KEY].position("BTCUSDT").qty
            assert abs(after) <= abs(before) + 1e-12
            assert after == 0 or (after > 0) == (before > 0)
            before = after
