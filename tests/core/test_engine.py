"""The engine: resting entries cancelled whenever entries are forbidden, refusals named, exit plans
kept across a restart, the ATR warmed from klines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.config import load_policy
from bot.core.clock import VirtualClock
from bot.core.engine import CancelAll, CancelOrder, Engine, Fill, Intent, PlaceOrder
from bot.core.events import Event, EventBus
from bot.core.market import Bar, BookTick
from bot.core.policy import Policy
from bot.core.risk import REFUSAL_RULES
from bot.core.strategy import Signal

POLICIES: dict[str, Policy] = {name: load_policy(name).policy for name in ("futures", "pets")}
BAR = 300_000
T0 = 1_767_571_200_000  # a bar boundary
TOKEN = "engine-test-token"
BUY = Signal("buy", 0.01, 0.5, 2.0, 0.05)  # an edge that clears every cost check


@dataclass
class Rig:
    engine: Engine
    clock: VirtualClock
    events: list[Event] = field(default_factory=list)
    price: float = 60_000.0
    bar_ts: int = T0

    def named(self, name: str, **match: Any) -> list[Event]:
        return [e for e in self.events if e.name == name and all(e.fields.get(k) == v for k, v in match.items())]

    def book(self, price: float | None = None, spread_bps: float = 2.0) -> list[Intent]:
        self.price = price or self.price
        half = self.price * spread_bps / 20_000
        return self.engine.on_book(BookTick(self.clock.now_ms(), self.price - half, self.price + half))

    def bar(self, signal: Signal | None = None, range_bps: float = 20.0, close: float | None = None) -> list[Intent]:
        self.bar_ts += BAR
        self.clock.advance_to(self.bar_ts)
        close = close or self.price
        half = close * range_bps / 20_000
        intents = self.book(close)
        infer = (lambda b: signal) if signal is not None else (lambda b: Signal(None, 0.0, 0.5, 2.0))
        return intents + self.engine.on_bar(Bar(self.bar_ts, close, close + half, close - half, close), infer=infer)

    def fill(self, order: PlaceOrder, qty: float | None = None, price: float | None = None) -> list[Intent]:
        o = order.intent
        return self.engine.on_fill(Fill(o.client_id, o.side, qty or o.qty, price or o.price or self.price, 0.0,
                                        self.clock.now_ms()))


def rig(profile: str = "futures", *, bars: int = 20, range_bps: float = 20.0, clock: VirtualClock | None = None,
        equity: float = 10_000.0, policy: Policy | None = None, price: float = 60_000.0) -> Rig:
    clock = clock or VirtualClock(T0)
    bus = EventBus()
    engine = Engine(policy or POLICIES[profile], clock, bus, symbol="BTCUSDT", equity=equity,
                    verify=lambda c: c == TOKEN, bar_ms=BAR)
    r = Rig(engine, clock, price=price)
    bus.subscribe(r.events.append)
    half = r.price * range_bps / 20_000
    engine.warm_up([Bar(T0 - (bars - i) * BAR, r.price, r.price + half, r.price - half, r.price)
                    for i in range(bars)])
    r.book()
    return r


def entry_order(r: Rig, signal: Signal = BUY) -> PlaceOrder:
    placed = [i for i in r.bar(signal) if isinstance(i, PlaceOrder)]
    assert len(placed) == 1 and placed[0].intent.purpose == "entry", placed
    return placed[0]


def cancels(intents: list[Intent]) -> list[CancelOrder]:
    return [i for i in intents if isinstance(i, CancelOrder)]


# --- resting entries ---------------------------------------------------------------------------


def _kill(mode: str) -> Any:
    return lambda r: r.engine.engage_killswitch(mode, "drill", "op", TOKEN)[1]


FORBIDDING: dict[str, Any] = {
    "killswitch pause": _kill("pause"),
    "killswitch graceful": _kill("graceful"),
    "ws lag pause": lambda r: r.engine.on_feed_lag(6_000),
    "spread pause": lambda r: r.book(spread_bps=60.0),
    "state store down": lambda r: r.engine.on_store_status(True),
    "minor exchange outage": lambda r: r.engine.on_exchange_status(True, "rest"),
    "inference latency": lambda r: [x for _ in range(100) for x in r.engine.on_inference(2_000)],
    "fail-closed halt": lambda r: (r.engine.board.fail_closed("P&L arithmetic failed"), r.engine.on_timer())[1],
}


@pytest.mark.parametrize("how", sorted(FORBIDDING))
def test_every_state_that_forbids_entries_cancels_the_resting_entry_once(how: str) -> None:
    r = rig("pets")
    order = entry_order(r)
    assert order.type == "limit" and order.time_in_force == "GTX"
    intents = FORBIDDING[how](r)
    assert cancels(intents) == [CancelOrder("BTCUSDT", order.intent.client_id, cancels(intents)[0].reason)]
    assert not any(isinstance(i, CancelAll) for i in intents)  # nothing else on the book is touched
    assert not cancels(r.engine.on_feed_lag(6_000) + r.book() + r.engine.on_timer())  # once, not per event


def test_an_immediate_kill_cancels_everything_and_flattens() -> None:
    r = rig("pets")
    entry_order(r)
    intents = _kill("immediate")(r)
    assert isinstance(intents[0], CancelAll)


def test_a_rejected_kill_switch_flatten_is_sent_again_naming_the_kill_switch() -> None:
    r = rig()
    r.fill(entry_order(r))
    _, first = r.engine.engage_killswitch("immediate", "drill", "op", TOKEN)
    flatten = [i for i in first if isinstance(i, PlaceOrder)]
    assert [o.intent.purpose for o in flatten] == ["flatten"]
    r.engine.on_order_done(flatten[0].intent.client_id)  # the venue rejected it
    again = r.engine.on_timer()
    assert [i.intent.purpose for i in again if isinstance(i, PlaceOrder)] == ["flatten"]
    cancel = next(i for i in again if isinstance(i, CancelAll))
    assert cancel.reason == "flatten requested: kill switch immediate: drill"


def test_a_blocked_zone_cancels_the_resting_entry() -> None:
    r = rig("pets")
    order = entry_order(r)
    # ATR jumps past 1 % of price (pets zones Z4-Z5 are blocked): bars with a 4 % range
    out: list[Intent] = []
    for _ in range(6):
        out += r.bar(range_bps=400.0)
    assert [c.client_id for c in cancels(out)] == [order.intent.client_id]
    assert "zone Z" in cancels(out)[0].reason


def test_a_latency_backoff_does_not_cancel_the_resting_entry() -> None:
    r = rig("pets")
    entry_order(r)
    intents = r.engine.on_order_latency("placement", 3_000)
    assert r.engine.status().board.entries_allowed_at_ms > r.clock.now_ms()  # backing off
    assert not cancels(intents + r.book() + r.engine.on_timer())


def test_an_entry_that_fills_after_its_cancel_is_managed_then_flattened_when_asked() -> None:
    r = rig("pets")
    order = entry_order(r)
    assert cancels(_kill("graceful")(r))
    r.fill(order)  # the book reached it before the cancel did
    assert r.engine.exit_state is not None and r.engine.position_qty == pytest.approx(order.intent.qty)
    assert r.named("bot.alert") and "lost the race" in r.named("bot.alert")[-1].fields["title"]
    intents = _kill("immediate")(r)  # escalate: flatten
    flatten = [i for i in intents if isinstance(i, PlaceOrder)]
    assert isinstance(intents[0], CancelAll) and flatten[0].intent.purpose == "flatten"
    assert flatten[0].intent.reduce_only and flatten[0].intent.qty == pytest.approx(order.intent.qty)


def test_a_partly_filled_resting_entry_has_its_remainder_cancelled() -> None:
    r = rig("pets")
    order = entry_order(r)
    half = round(order.intent.qty / 2, 3)
    r.fill(order, qty=half)
    assert r.engine.position_qty == pytest.approx(half)
    assert [c.client_id for c in cancels(r.engine.on_feed_lag(6_000))] == [order.intent.client_id]
    r.engine.on_order_done(order.intent.client_id)
    assert r.engine._open_exposure() == pytest.approx(half * r.price, rel=1e-3)  # the remainder is gone


# --- order.refused / resume.refused --------------------------------------------------------------


@pytest.mark.parametrize(("how", "rule"), [
    (_kill("pause"), "killswitch"),
    (lambda r: r.engine.on_feed_lag(6_000), "state"),
    (lambda r: r.engine.on_order_latency("placement", 3_000), "backoff"),
])
def test_a_refused_entry_names_its_rule(how: Any, rule: str) -> None:
    r = rig("futures")
    r.clock.advance_to(r.bar_ts + BAR - 1)  # just before the bar: a backoff is still running at its close
    how(r)
    assert not [i for i in r.bar(BUY) if isinstance(i, PlaceOrder)]
    refused = r.named("order.refused")
    assert [e.fields["rule"] for e in refused] == [rule]
    assert refused[0].fields["side"] == "buy" and refused[0].fields["qty"] > 0 and refused[0].fields["reason"]
    assert rule in REFUSAL_RULES


def test_the_edge_check_refuses_a_dead_calm_market_with_rule_edge() -> None:
    r = rig("futures", range_bps=2.5)
    calm = r.engine.strategy.estimate_at(r.price)
    assert not [i for i in r.bar(Signal("buy", calm.expected_edge, calm.win_prob, calm.payoff, calm.expected_move),
                                 range_bps=2.5) if isinstance(i, PlaceOrder)]
    (refused,) = r.named("order.refused")
    assert refused.fields["rule"] == "edge" and "expected move" in refused.fields["reason"]


def test_a_blocked_zone_refuses_with_rule_zone() -> None:
    r = rig("pets", range_bps=300.0)  # ATR 3 % of price: Z5, blocked under pets
    assert not [i for i in r.bar(BUY, range_bps=300.0) if isinstance(i, PlaceOrder)]
    assert [e.fields["rule"] for e in r.named("order.refused")] == ["zone"]


def test_a_size_below_one_qty_step_refuses_with_rule_size() -> None:
    r = rig("futures", equity=50.0)  # 20 % of $50 is far below one 0.001 BTC step ($60)
    r.bar(BUY)
    assert [e.fields["rule"] for e in r.named("order.refused")] == ["size"]


def test_one_refusal_per_bar_per_rule() -> None:
    r = rig("futures")
    _kill("pause")(r)
    r.bar(BUY)
    r.engine.on_bar(Bar(r.bar_ts, r.price, r.price + 1, r.price - 1, r.price), infer=lambda b: BUY)  # same bar again
    assert len(r.named("order.refused")) == 1
    r.bar(BUY)
    assert len(r.named("order.refused")) == 2


def test_a_refused_manual_resume_says_why() -> None:
    r = rig("futures")
    r.engine.manual_resume("op")
    assert r.named("resume.refused", by="operator", actor="op")[0].fields["reason"].startswith("nothing to resume")
    r.engine.adopt_position(1.0, r.price)  # 6x leverage: a 3.5 % drop is a 21 % drawdown
    r.book(r.price * 0.965)
    assert r.engine.status().board.state == "halted"
    r.engine.manual_resume("op")
    assert "cooldown" in r.named("resume.refused")[-1].fields["reason"]


# --- exit plans across a restart -------------------------------------------------------------------


def _restart(r: Rig, snapshot: dict[str, Any], range_bps: float = 300.0) -> Rig:
    again = rig("futures", clock=r.clock, bars=20, range_bps=range_bps)
    again.engine.restore(snapshot)
    again.price, again.bar_ts = r.price, r.bar_ts
    return again


def _open(r: Rig) -> PlaceOrder:
    order = entry_order(r)
    r.fill(order, price=r.price)
    assert r.engine.exit_state is not None
    return order


def test_a_restart_gives_the_same_position_back_its_plan() -> None:
    r = rig("futures", range_bps=300.0)  # wide ATR: an ATR-based stop, well off the 1 % floor
    _open(r)
    for _ in range(7):
        r.bar()
    before = r.engine.exit_state
    assert before is not None and before.bars_held == 7
    assert (r.price - before.stop) / r.price > 0.02
    again = _restart(r, r.engine.snapshot())
    assert again.engine.reconcile_position(r.engine.position_qty, r.engine.entry_price)
    after = again.engine.exit_state
    assert after is not None
    assert (after.stop, after.take_profit, after.entry_atr, after.bars_held) == (
        before.stop, before.take_profit, before.entry_atr, 7)
    assert again.named("position.opened", reason="reconciled", plan="restored", stop=before.stop)


def test_the_time_exit_counts_bars_missed_while_the_bot_was_down() -> None:
    r = rig("futures", range_bps=40.0)
    _open(r)
    for _ in range(10):
        r.bar()
    again = _restart(r, r.engine.snapshot(), range_bps=40.0)
    again.engine.reconcile_position(r.engine.position_qty, r.engine.entry_price)
    again.bar_ts += 25 * BAR  # down for 25 bars
    exits: list[PlaceOrder] = []
    held = 10 + 25
    while not exits:
        exits = [i for i in again.bar(range_bps=40.0) if isinstance(i, PlaceOrder)]
        held += 1
    assert held == POLICIES["futures"].exits.time_exit.max_hold_periods
    assert exits[0].intent.purpose == "exit" and again.engine._trade_reason == "time"


@pytest.mark.parametrize(("qty_factor", "side", "plan"), [
    (1.0, "same", "restored"), (0.5, "same", "restored"), (2.0, "same", "new"), (1.0, "other", "new")])
def test_a_position_that_is_not_the_saved_one_gets_a_new_plan(qty_factor: float, side: str, plan: str) -> None:
    r = rig("futures", range_bps=300.0)
    _open(r)
    again = _restart(r, r.engine.snapshot())
    qty = r.engine.position_qty * qty_factor * (1 if side == "same" else -1)
    again.engine.reconcile_position(qty, r.engine.entry_price)
    assert again.named("position.opened", plan=plan)
    if plan == "new":
        assert "differs from the saved one" in again.named("bot.alert")[-1].fields["title"]


@pytest.mark.parametrize(("steps", "plan"), [(0.4, "restored"), (1.0, "new")])
def test_a_position_one_qty_step_larger_than_the_saved_one_gets_a_new_plan(steps: float, plan: str) -> None:
    """Half a step is the exchange's rounding; a whole step more was added while the bot was down."""
    r = rig("futures", range_bps=300.0)
    _open(r)
    again = _restart(r, r.engine.snapshot())
    again.engine.reconcile_position(r.engine.position_qty + steps * r.engine.qty_step, r.engine.entry_price)
    assert again.named("position.opened", plan=plan)


def test_a_plan_that_found_no_position_is_not_handed_to_a_later_one() -> None:
    r = rig("futures", range_bps=300.0)
    _open(r)
    again = _restart(r, r.engine.snapshot())
    assert not again.engine.reconcile_position(0.0, 0.0)  # the position was closed while the bot was down
    again.engine.reconcile_position(r.engine.position_qty, r.engine.entry_price)  # someone opens one later
    assert again.named("position.opened", plan="new")


def test_a_version_1_snapshot_is_still_read_and_a_corrupt_plan_refused() -> None:
    r = rig("futures")
    _open(r)
    snap = r.engine.snapshot()
    assert snap["v"] == 2
    old = {k: v for k, v in snap.items() if k not in ("strategy", "position")} | {"v": 1}
    again = rig("futures")
    again.engine.restore(old)
    again.engine.reconcile_position(r.engine.position_qty, r.engine.entry_price)
    assert again.named("position.opened", plan="new")
    for field_name, bad in (("stop", math.nan), ("side", "long"), ("bars_held", -1), ("stop", 1e9)):
        broken = {**snap, "position": {**snap["position"], field_name: bad}}
        with pytest.raises(ValueError):
            rig("futures").engine.restore(broken)


def test_the_strategy_record_survives_a_restart() -> None:
    r = rig("futures")
    r.engine.strategy.restore({"outcomes": [1.0, -0.5, 2.0]})
    again = _restart(r, r.engine.snapshot())
    assert again.engine.strategy.units == pytest.approx(r.engine.strategy.units)


# --- ATR warm-up ------------------------------------------------------------------------------------


def test_a_position_adopted_after_warm_up_gets_an_atr_stop_not_the_floor() -> None:
    warm = rig("futures", range_bps=300.0)
    warm.engine.adopt_position(0.1, warm.price)
    assert warm.engine.exit_state is not None
    stop_pct = 1 - warm.engine.exit_state.stop / warm.price
    assert stop_pct == pytest.approx(1.5 * 0.03)  # atr_multiplier x ATR (3 % of price)
    cold = rig("futures", bars=0)
    cold.engine.adopt_position(0.1, cold.price)
    assert cold.engine.exit_state is not None
    assert 1 - cold.engine.exit_state.stop / cold.price == pytest.approx(0.01)  # the floor, and said so
    assert "without an ATR" in cold.named("bot.alert")[-1].fields["title"]


def test_warm_up_seeds_only_a_fresh_atr() -> None:
    r = rig("futures", range_bps=20.0)
    value = r.engine.atr.value
    assert value is not None
    assert r.engine.warm_up([Bar(T0, 1.0, 2.0, 0.5, 1.0)]) == 0 and r.engine.atr.value == value


@pytest.mark.parametrize("qty", [0.0, -0.001, math.nan])
def test_a_fill_of_no_quantity_halts_and_leaves_the_position(qty: float) -> None:
    r = rig("futures")
    order = entry_order(r)
    r.engine.on_fill(Fill(order.intent.client_id, order.intent.side, qty, r.price, 0.0, r.clock.now_ms()))
    assert r.engine.position_qty == 0.0
    halted = r.named("trading.halted")
    assert halted and "unusable fill numbers" in halted[-1].fields["reason"]


def test_an_entry_filled_in_two_parts_averages_its_price_and_books_no_pnl() -> None:
    r = rig("pets")
    order = entry_order(r)
    qty = order.intent.qty
    half = round(qty / 2, 3)
    r.fill(order, qty=half, price=60_000.0)
    r.fill(order, qty=qty - half, price=60_300.0)
    assert r.engine.position_qty == pytest.approx(qty)
    assert r.engine.entry_price == pytest.approx((half * 60_000.0 + (qty - half) * 60_300.0) / qty)
    assert r.engine.wallet == 10_000.0  # adding to a position realises nothing (the rig's fills have no fee)
    assert len(r.named("position.opened")) == 1 and not r.named("position.closed")


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_limit_entry_before_any_book_price_is_refused_not_rested_at_a_made_up_price(side: str) -> None:
    clock = VirtualClock(T0)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    engine = Engine(POLICIES["pets"], clock, bus, symbol="BTCUSDT", equity=10_000.0, verify=lambda c: c == TOKEN,
                    bar_ms=BAR)
    engine.warm_up([Bar(T0 - (20 - i) * BAR, 60_000.0, 60_060.0, 59_940.0, 60_000.0) for i in range(20)])
    clock.advance_to(T0 + BAR)  # bars arrive (REST klines), the book has not spoken yet
    signal = Signal("buy" if side == "buy" else "sell", 0.01, 0.5, 2.0, 0.05)
    intents = engine.on_bar(Bar(T0 + BAR, 60_000.0, 60_060.0, 59_940.0, 60_000.0), infer=lambda b: signal)
    assert not [i for i in intents if isinstance(i, PlaceOrder)]
    refused = [e for e in events if e.name == "order.refused"]
    assert [e.fields["rule"] for e in refused] == ["invalid"] and "book price" in refused[0].fields["reason"]


def test_with_zones_disabled_a_listed_blocked_zone_cancels_nothing() -> None:
    pets = POLICIES["pets"]
    sizing = pets.position_sizing
    policy = pets.model_copy(update={"position_sizing": sizing.model_copy(
        update={"zones": sizing.zones.model_copy(update={"enabled": False})})})
    assert policy.position_sizing.zones.blocked  # Z4, Z5 still listed, but zones are off
    r = rig(policy=policy)
    order = entry_order(r)
    out: list[Intent] = []
    for _ in range(6):
        out += r.bar(range_bps=400.0)  # ATR past 1 % of price: Z4-Z5, blocked only when zones are on
    assert not cancels(out) and order.intent.client_id in r.engine._resting


@pytest.mark.parametrize("working", ["flatten", "exit"])
def test_an_exit_retried_after_a_rejection_sends_no_second_close_while_one_is_working(working: str) -> None:
    """exit_now (a stop was rejected: exit at market now) must not double the close already on its way."""
    r = rig("futures")
    r.fill(entry_order(r))
    if working == "flatten":
        sent = _kill("immediate")(r)  # the kill switch's flatten is working
    else:
        sent = r.engine.exit_now()  # the first retry's market exit is working
    assert [i.intent.purpose for i in sent if isinstance(i, PlaceOrder)] == [working]
    assert r.engine.exit_now() == []


def test_a_refusal_names_the_state_that_forbids_entries_before_the_size() -> None:
    r = rig("futures", equity=50.0)  # no size either: 20 % of $50 is below one 0.001 BTC step
    _kill("pause")(r)
    r.bar(BUY)
    (refused,) = r.named("order.refused")
    assert refused.fields["rule"] == "killswitch" and refused.fields["qty"] == 0.0  # nothing was sized


def test_a_closed_trade_reports_its_pnl_to_the_cent() -> None:
    r = rig("futures")
    order = _open(r)
    qty = order.intent.qty
    r.engine.on_fill(Fill("gd-test-ex-1", "sell", qty, r.price + 10.0, 0.0, r.clock.now_ms()))
    (closed,) = r.named("position.closed")
    assert closed.fields["pnl"] == pytest.approx(qty * 10.0, abs=1e-6) and closed.fields["pnl"] < 1.0


def test_warm_up_counts_the_sane_bars_it_used() -> None:
    r = rig("futures", bars=0)
    bars = [Bar(T0 - (5 - i) * BAR, 60_000.0, 60_060.0, 59_940.0, 60_000.0) for i in range(5)]
    bars.insert(2, Bar(T0 - 10 * BAR, 60_000.0, 59_000.0, 61_000.0, 60_000.0))  # high below low: skipped
    assert r.engine.warm_up(bars) == 5


def test_the_second_trade_reports_only_its_own_pnl() -> None:
    r = rig("futures")
    for gain in (10.0, -0.5):  # the second trade loses less than a dollar: it must still read as a loss
        order = _open(r)
        qty = order.intent.qty
        r.engine.on_fill(Fill(f"gd-test-ex-{gain}", "sell", qty, r.price + gain, 0.0, r.clock.now_ms()))
    first, second = r.named("position.closed")
    assert second.fields["pnl"] == pytest.approx(order.intent.qty * -0.5, abs=1e-6) and second.fields["pnl"] < 0


def test_an_exit_filled_in_two_parts_books_both_from_the_entry_price() -> None:
    r = rig("futures")
    order = _open(r)
    qty, entry = order.intent.qty, r.engine.entry_price
    half = qty / 2
    r.engine.on_fill(Fill("gd-test-ex-1", "sell", half, entry + 20.0, 0.0, r.clock.now_ms()))
    assert r.engine.entry_price == entry, "a partial close does not move the entry of what is left"
    r.engine.on_fill(Fill("gd-test-ex-1", "sell", qty - half, entry + 10.0, 0.0, r.clock.now_ms()))
    (closed,) = r.named("position.closed")
    assert closed.fields["pnl"] == pytest.approx(half * 20.0 + (qty - half) * 10.0, abs=1e-6)


def test_a_cancel_all_forgets_the_resting_entries_it_cancelled() -> None:
    r = rig("pets")
    order = entry_order(r)
    assert order.type == "limit"
    _, intents = r.engine.engage_killswitch("immediate", "drill", "ops", TOKEN)
    assert any(isinstance(i, CancelAll) for i in intents)
    r.engine.clear_killswitch("ops", TOKEN)
    _, intents = r.engine.engage_killswitch("pause", "drill", "ops", TOKEN)
    assert cancels(intents) == [], "the entry was cancelled with everything else: nothing is left to cancel"


def test_a_position_in_a_coin_priced_below_one_is_adopted_not_refused() -> None:
    r = rig("futures")
    r.engine.adopt_position(200.0, 0.5)
    assert r.engine.board.status().state == "active" and r.engine.exit_state is not None
    (opened,) = r.named("position.opened", reason="reconciled")
    assert 0 < opened.fields["stop"] < 0.5


def test_an_entry_in_a_coin_priced_below_one_is_accounted_not_refused_as_unusable() -> None:
    r = rig("futures", price=0.5)
    order = entry_order(r)
    r.fill(order, price=0.5)
    assert r.engine.position_qty == pytest.approx(order.intent.qty) and r.engine.entry_price == 0.5
    assert r.engine.board.status().state == "active" and r.named("trading.halted") == []
    (opened,) = r.named("position.opened", reason="entry")
    assert opened.fields["entry"] == 0.5


def test_a_short_takes_profit_when_the_ask_reaches_exactly_the_take_profit() -> None:
    r = rig("futures")
    r.fill(entry_order(r, Signal("sell", 0.01, 0.5, 2.0, 0.05)))
    state = r.engine.exit_state
    assert state is not None and state.side == "sell"
    tp = state.take_profit
    intents = r.engine.on_book(BookTick(r.clock.now_ms(), tp - 1.0, tp))
    placed = [i for i in intents if isinstance(i, PlaceOrder)]
    assert [(p.intent.purpose, p.intent.side, p.intent.reduce_only) for p in placed] == [
        ("take_profit", "buy", True)]


def test_only_an_untracked_entry_of_this_bot_is_an_orphan() -> None:
    """At its first reconcile the runtime cancels orphaned entries it finds resting: it must not cancel its own
    working entry, a reduce-only order (an exit protects a position), or another system's order."""
    r = rig("futures")
    tracked = entry_order(r).intent.client_id
    assert [r.engine.orphaned_entry(client_id, reduce_only) for client_id, reduce_only in [
        (tracked, False),  # this engine's entry, in flight
        ("gd-earlier-en-7", True),  # an earlier run's reduce-only order
        ("desk-manual-en-7", False),  # another system's id that happens to look alike
        ("gd-earlier-st-8", False),  # an earlier run's stop: not an entry
        ("gd-earlier-en-7", False),  # an earlier run's entry nobody manages now
    ]] == [False, False, False, False, True]
