"""Hypothesis properties of the safety core."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from breaker_support import DAY, MINUTE, POLICIES, PROFILES, T0, bar, book
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.core.breakers.base import (
    Breaker,
    BreakerInput,
    BreakerVerdict,
    EquityUpdate,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    TimerTick,
    TradeClosed,
)
from bot.core.breakers.board import BoardStatus, BreakerBoard
from bot.core.clock import VirtualClock
from bot.core.events import CHECKS, EventBus
from bot.core.killswitch import KillStatus
from bot.core.risk import GateContext, OrderIntent, RiskGate

SETTINGS = settings(max_examples=150, deadline=None)
profiles = st.sampled_from(PROFILES)


# --- strategies ----------------------------------------------------------------------------

board_states = st.builds(
    BoardStatus,
    state=st.sampled_from(["active", "reduced", "paused", "halted"]),
    size_factor=st.floats(0.0, 1.0),
    flatten_requested=st.booleans(),
    requires_manual_resume=st.booleans(),
    reasons=st.lists(st.text(max_size=20), max_size=3).map(tuple),
    entries_allowed_at_ms=st.integers(0, 2**53),
    rejected_inputs=st.integers(0, 10**6),
)
kill_states = st.one_of(
    st.just(KillStatus(engaged=False)),
    st.builds(KillStatus, engaged=st.just(True), mode=st.sampled_from(["immediate", "graceful", "pause"]),
              reason=st.text(max_size=10), actor=st.text(max_size=10), engaged_at_ms=st.integers(0, 2**40),
              deadline_ms=st.none() | st.integers(0, 2**40), flatten_requested=st.booleans()),
)
sizes = st.floats(1e-6, 1e6)


@st.composite
def input_streams(draw: st.DrawFn) -> list[BreakerInput]:
    """A realistic mixed stream with adversarial swings (drawdowns, gaps, lags, loss runs)."""
    n = draw(st.integers(1, 60))
    ts, equity, price = T0, 10_000.0, 100.0
    out: list[BreakerInput] = []
    for _ in range(n):
        ts += draw(st.integers(1, 3 * 3_600_000))
        kind = draw(st.sampled_from(["equity", "trade", "book", "bar", "lag", "inf", "order", "timer"]))
        if kind == "equity":
            equity *= 1 + draw(st.floats(-0.3, 0.3))
            out.append(EquityUpdate(ts, equity))
        elif kind == "trade":
            out.append(TradeClosed(ts, draw(st.floats(-500, 500))))
        elif kind == "book":
            out.append(book(ts, draw(st.floats(0.0, 200.0)), price))
        elif kind == "bar":
            price *= 1 + draw(st.floats(-0.2, 0.2))
            out.append(bar(ts, price, price * draw(st.floats(0.0, 0.1))))
        elif kind == "lag":
            out.append(FeedLag(ts, draw(st.floats(0.0, 20_000.0))))
        elif kind == "inf":
            out.append(InferenceTiming(ts, draw(st.floats(0.0, 3000.0))))
        elif kind == "order":
            out.append(OrderLatency(ts, draw(st.sampled_from(["placement", "fill"])), draw(st.floats(0.0, 9000.0))))
        else:
            out.append(TimerTick(ts))
    return out


def drive(profile: str, stream: list[BreakerInput]) -> BreakerBoard:
    clock = VirtualClock(T0)
    board = BreakerBoard(POLICIES[profile], EventBus(), clock)
    for x in stream:
        clock.advance_to(max(clock.now_ms(), x.ts_ms))
        board.observe(x)
    return board


def reducing_intent(position: float, fraction: float, purpose: str, reduce_only: bool) -> OrderIntent:
    side = "sell" if position > 0 else "buy"
    return OrderIntent("x", "BTCUSDT", side, abs(position) * fraction, None, reduce_only, purpose)  # type: ignore[arg-type]


# --- exits always pass ---------------------------------------------------------------------


@SETTINGS
@given(profile=profiles, board=board_states, ks=kill_states, position=sizes, sign=st.sampled_from([1, -1]),
       fraction=st.floats(1e-6, 1.0), purpose=st.sampled_from(["exit", "stop", "take_profit", "flatten", "entry"]),
       zone=st.none() | st.sampled_from(["Z1", "Z2", "Z3", "Z4", "Z5"]), now=st.integers(0, 2**53))
def test_exits_stops_reduce_only_pass_in_any_state(profile: str, board: BoardStatus, ks: KillStatus,
                                                  position: float, sign: int, fraction: float, purpose: str,
                                                  zone: Any, now: int) -> None:
    pos = sign * position
    ctx = GateContext(equity=10_000.0, position_qty=pos, position_notional=abs(pos) * 100.0,
                      open_exposure=abs(pos) * 100.0, mark_price=100.0, board=board, killswitch=ks,
                      now_ms=now, zone=zone)
    intent = reducing_intent(pos, fraction, purpose, reduce_only=purpose == "entry" or fraction < 0.5)
    d = RiskGate(POLICIES[profile]).check(intent, ctx)
    assert d.allowed, d.reason


@SETTINGS
@given(profile=profiles, stream=input_streams(), position=sizes, fraction=st.floats(1e-6, 1.0))
def test_real_board_never_blocks_exits_and_blocks_entries_when_stopped(
        profile: str, stream: list[BreakerInput], position: float, fraction: float) -> None:
    board = drive(profile, stream)
    status = board.status()
    assert 0.0 <= status.size_factor <= 1.0
    policy = POLICIES[profile]
    ctx = GateContext(equity=1e12, position_qty=position, position_notional=position * 100.0, open_exposure=0.0,
                      mark_price=100.0, board=status, killswitch=KillStatus(engaged=False),
                      now_ms=stream[-1].ts_ms, zone="Z1")
    gate = RiskGate(policy)
    for purpose in ("exit", "stop", "take_profit", "flatten"):
        assert gate.check(reducing_intent(position, fraction, purpose, True), ctx).allowed
    entry = OrderIntent("e", "BTCUSDT", "buy", 1e-6, 100.0, False, "entry", post_only=True)
    if status.state in ("paused", "halted"):
        assert not gate.check(entry, ctx).allowed


# --- progressive reductions compose ----------------------------------------------------------


class FixedFactor(Breaker):
    """A test breaker that applies a given size factor on the first trade it sees (named in the
    event schema's vocabulary, as every breaker's events must be: bot/core/events.py)."""

    name = "consecutive_losses"
    inputs: tuple[type, ...] = (TradeClosed,)

    def __init__(self, index: int, factor: float) -> None:
        self.check = CHECKS[index]
        super().__init__(1.0)
        self.factor = factor

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if self.verdict.level != "ok" or not isinstance(x, TradeClosed):
            return None
        self.verdict = BreakerVerdict(self.name, self.check, "warning", 1.0, 1.0, size_factor=self.factor)
        return self.verdict


@SETTINGS
@given(factors=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_size_factors_compose_by_multiplication(factors: list[float]) -> None:
    breakers: list[Breaker] = [FixedFactor(i, f) for i, f in enumerate(factors)]
    board = BreakerBoard(POLICIES["futures"], EventBus(), VirtualClock(T0), breakers=breakers)
    status = board.observe(TradeClosed(T0, -1.0))
    assert status.size_factor == math.prod(factors)
    assert 0.0 <= status.size_factor <= 1.0
    assert status.size_factor <= min(factors)
    assert status.state == ("reduced" if math.prod(factors) < 1.0 else "active")


@SETTINGS
@given(profile=profiles, pnls=st.lists(st.sampled_from([-1.0, -1.0, -1.0, 0.0, 1.0]), max_size=40))
def test_loss_streak_factor_is_the_step_for_the_streak(profile: str, pnls: list[float]) -> None:
    cl = POLICIES[profile].circuit_breakers.consecutive_losses
    clock = VirtualClock(T0)
    board = BreakerBoard(POLICIES[profile], EventBus(), clock)
    streak, halted = 0, False
    for pnl in pnls:
        status = board.observe(TradeClosed(T0, pnl))
        if not halted:
            streak = 0 if pnl > 0 else streak + (pnl < 0)
            halted = streak >= cl.max_consecutive_losses
        expected = 1.0
        for step in cl.size_reduction:
            if not halted and streak >= step.losses:
                expected = step.size_multiplier
        assert status.size_factor == expected
        assert 0.0 <= status.size_factor <= 1.0
        assert (status.state == "halted") == halted


# --- fail closed -----------------------------------------------------------------------------

# breaker check -> (method to break, an input that makes it compute)
ARITHMETIC: dict[str, tuple[str, Callable[[int], BreakerInput]]] = {
    "drawdown.intraday": ("drawdown_pct", lambda ts: EquityUpdate(ts, 9_999.0)),
    "consecutive_losses.streak": ("size_factor_for", lambda ts: TradeClosed(ts, -1.0)),
    "volatility.spread": ("spread_bps", lambda ts: book(ts, 5.0)),
    "volatility.price_move": ("move_pct", lambda ts: bar(ts, 100.0)),
    "latency.inference": ("percentile", lambda ts: InferenceTiming(ts, 1.0)),
    "latency.order_placement": ("delay_ms", lambda ts: OrderLatency(ts, "placement", 1e9)),
}


@SETTINGS
@given(profile=profiles, stream=input_streams(), split=st.integers(0, 60), key=st.sampled_from(sorted(ARITHMETIC)),
       error=st.sampled_from([ZeroDivisionError, OverflowError, ValueError, KeyError, "nan"]),
       after=input_streams())
def test_fail_closed_on_injected_arithmetic_failure(profile: str, stream: list[BreakerInput], split: int,
                                                    key: str, error: Any, after: list[BreakerInput]) -> None:
    clock = VirtualClock(T0)
    board = BreakerBoard(POLICIES[profile], EventBus(), clock)
    head = stream[:split]
    for x in head:
        clock.advance_to(max(clock.now_ms(), x.ts_ms))
        board.observe(x)
    method, trigger = ARITHMETIC[key]
    target = next(b for b in board.breakers if b.key == key)

    calls: list[int] = []

    def broken(*_: object) -> Any:
        calls.append(1)
        if error == "nan":
            return math.nan
        raise error("injected")

    setattr(target, method, broken)  # the instance's own arithmetic now fails
    ts = max([clock.now_ms()] + [x.ts_ms for x in head]) + 1
    board.observe(EquityUpdate(ts, 10_000.0))  # prime the day's mark for the drawdown trigger
    board.observe(bar(ts, 100.0))  # a previous close for the price-move trigger
    board.observe(trigger(ts + 1))
    assume(calls)  # a breaker already latched may not compute at all: nothing to fail then
    status = board.status()
    assert status.state == "halted" and status.requires_manual_resume
    assert any(r.startswith(f"risk arithmetic failed in {target.name}") for r in status.reasons)
    last = ts + 1
    for x in after:  # nothing that follows lifts a fail-closed halt by itself
        last = max(last, x.ts_ms) + DAY
        board.observe(TimerTick(last))
        status = board.status()
        assert status.state == "halted" and status.requires_manual_resume
    assert board.on_timer(last + 10 * DAY * MINUTE).state == "halted"
