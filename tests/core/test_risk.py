"""The pre-trade gate: exits always pass when they reduce; entries meet every rule."""

from __future__ import annotations

import dataclasses
import math

import pytest
from breaker_support import POLICIES, PROFILES, T0

from bot.core.breakers.board import BoardStatus
from bot.core.killswitch import KillStatus
from bot.core.policy import ZONES, Policy, Zone
from bot.core.risk import Decision, GateContext, OrderIntent, RiskGate

ACTIVE = BoardStatus("active", 1.0, False, False, (), 0, 0)
HALTED = BoardStatus("halted", 1.0, True, True, ("drawdown.intraday critical: 3 >= 3 (halt_trading)",), 0, 0)
PAUSED = BoardStatus("paused", 1.0, False, False, ("volatility.spread critical: 60 >= 50",), 0, 0)
OFF = KillStatus(engaged=False)
EQUITY, MARK = 10_000.0, 100.0


def ctx(policy: Policy, **kw: object) -> GateContext:
    zone: Zone | None = "Z1" if policy.position_sizing.zones.enabled else None
    base = GateContext(equity=EQUITY, position_qty=0.0, position_notional=0.0, open_exposure=0.0,
                       mark_price=MARK, board=ACTIVE, killswitch=OFF, now_ms=T0, zone=zone)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def entry(policy: Policy, qty: float = 1.0, **kw: object) -> OrderIntent:
    base = OrderIntent("c1", "BTCUSDT", "buy", qty, MARK, False, "entry", post_only=policy.orders.post_only)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def exit_(purpose: str = "exit", qty: float = 1.0, side: str = "sell", reduce_only: bool = True) -> OrderIntent:
    return OrderIntent("c2", "BTCUSDT", side, qty, None, reduce_only, purpose)  # type: ignore[arg-type]


@pytest.fixture(params=PROFILES)
def policy(request: pytest.FixtureRequest) -> Policy:
    return POLICIES[request.param]


def test_plain_entry_allowed(policy: Policy) -> None:
    d = RiskGate(policy).check(entry(policy), ctx(policy))
    assert d.allowed, d.reason


@pytest.mark.parametrize("board", [HALTED, PAUSED])
def test_entry_denied_when_halted_or_paused(policy: Policy, board: BoardStatus) -> None:
    d = RiskGate(policy).check(entry(policy), ctx(policy, board=board))
    assert not d.allowed and board.state in d.reason and board.reasons[0] in d.reason


@pytest.mark.parametrize("mode", ["immediate", "graceful", "pause"])
def test_entry_denied_under_every_kill_mode(policy: Policy, mode: str) -> None:
    ks = KillStatus(True, mode, "drill", "alice", T0, None, mode == "immediate")  # type: ignore[arg-type]
    d = RiskGate(policy).check(entry(policy), ctx(policy, killswitch=ks))
    assert not d.allowed and "kill switch" in d.reason and mode in d.reason


def test_entry_denied_during_backoff(policy: Policy) -> None:
    board = dataclasses.replace(ACTIVE, entries_allowed_at_ms=T0 + 2000)
    d = RiskGate(policy).check(entry(policy), ctx(policy, board=board))
    assert not d.allowed and "backoff" in d.reason and "2000 ms" in d.reason
    assert RiskGate(policy).check(entry(policy), ctx(policy, board=board, now_ms=T0 + 2000)).allowed


@pytest.mark.parametrize("zone", ZONES)
def test_zone_rules(policy: Policy, zone: str) -> None:
    zones = policy.position_sizing.zones
    d = RiskGate(policy).check(entry(policy), ctx(policy, zone=zone))
    assert d.allowed == (not zones.enabled or zone not in zones.blocked), d.reason
    if not d.allowed:
        assert zone in d.reason


def test_unknown_zone_denied_when_zones_enabled() -> None:
    policy = POLICIES["pets"]
    d = RiskGate(policy).check(entry(policy), ctx(policy, zone=None))
    assert not d.allowed and "zone unknown" in d.reason


def test_post_only_required_by_policy(policy: Policy) -> None:
    d = RiskGate(policy).check(entry(policy, post_only=False), ctx(policy))
    assert d.allowed == (not policy.orders.post_only)
    if policy.orders.post_only:
        assert "post-only" in d.reason


def test_position_cap_at_cap_allowed_above_denied(policy: Policy) -> None:
    cap = policy.position_sizing.max_position_pct * EQUITY
    gate = RiskGate(policy)
    assert gate.check(entry(policy, qty=cap / MARK), ctx(policy)).allowed
    d = gate.check(entry(policy, qty=(cap + 0.01) / MARK), ctx(policy))
    assert not d.allowed and "max_position_pct" in d.reason and f"{cap:.2f}" in d.reason
    # an existing position counts
    half = cap / 2
    d2 = gate.check(entry(policy, qty=(half + 1) / MARK),
                    ctx(policy, position_qty=half / MARK, position_notional=half, open_exposure=half))
    assert not d2.allowed


def test_a_reducing_order_exactly_at_the_tolerance_above_the_position_is_allowed(policy: Policy) -> None:
    """The gate's rounding tolerance (relative 1e-9) is inclusive, as every cap is: a close that float
    rounding put a hair above the position is still a close, not a reversal."""
    pos = 2.0
    c = ctx(policy, board=HALTED, position_qty=pos, position_notional=pos * MARK)
    assert RiskGate(policy).check(exit_(qty=pos * (1 + 1e-9)), c).allowed
    assert not RiskGate(policy).check(exit_(qty=pos * (1 + 2e-9)), c).allowed


def test_total_exposure_exactly_at_the_tolerance_above_the_cap_is_allowed(policy: Policy) -> None:
    limit = policy.position_sizing.max_total_exposure_pct * EQUITY * (1 + 1e-9)
    notional = 1.0  # 0.01 at the mark
    open_exposure = limit - notional
    assert open_exposure + notional == limit  # the boundary itself, not a float next to it
    gate = RiskGate(policy)
    assert gate.check(entry(policy, qty=0.01), ctx(policy, open_exposure=open_exposure)).allowed
    d = gate.check(entry(policy, qty=0.01), ctx(policy, open_exposure=open_exposure + 1e-3))
    assert not d.allowed and d.rule == "exposure"


def test_a_stage_cap_equal_to_equity_does_not_bind_the_denial_names_the_policy_cap(policy: Policy) -> None:
    """The stage binds only when its cap is below equity; at equity the position cap of equity applies."""
    cap = policy.position_sizing.max_position_pct * EQUITY
    c = ctx(policy, capital_cap=EQUITY)
    gate = RiskGate(policy)
    assert gate.check(entry(policy, qty=cap / MARK), c).allowed
    d = gate.check(entry(policy, qty=(cap + 1) / MARK), c)
    assert not d.allowed and d.rule == "cap"
    assert f"of equity {EQUITY:.2f}" in d.reason and "capital ramp" not in d.reason


def test_total_exposure_cap(policy: Policy) -> None:
    cap = policy.position_sizing.max_total_exposure_pct * EQUITY
    small = 1.0
    gate = RiskGate(policy)
    assert gate.check(entry(policy, qty=small / MARK), ctx(policy, open_exposure=cap - small)).allowed
    d = gate.check(entry(policy, qty=small / MARK), ctx(policy, open_exposure=cap - small + 0.01))
    assert not d.allowed and "max_total_exposure_pct" in d.reason


@pytest.mark.parametrize("qty", [math.nan, math.inf, 0.0, -1.0])
def test_entry_non_finite_or_non_positive_qty_denied(policy: Policy, qty: float) -> None:
    d = RiskGate(policy).check(entry(policy, qty=qty), ctx(policy))
    assert not d.allowed and "qty" in d.reason and not d.fail_closed


@pytest.mark.parametrize("field", ["equity", "mark_price", "open_exposure", "position_qty"])
def test_entry_non_finite_context_denied(policy: Policy, field: str) -> None:
    d = RiskGate(policy).check(entry(policy), ctx(policy, **{field: math.nan}))
    assert not d.allowed


@pytest.mark.parametrize("purpose", ["exit", "stop", "take_profit", "flatten"])
@pytest.mark.parametrize("board", [ACTIVE, HALTED, PAUSED])
@pytest.mark.parametrize("mode", [None, "immediate", "graceful", "pause"])
def test_risk_reducing_orders_always_pass(policy: Policy, purpose: str, board: BoardStatus,
                                          mode: str | None) -> None:
    ks = OFF if mode is None else KillStatus(True, mode, "x", "a", T0)  # type: ignore[arg-type]
    board = dataclasses.replace(board, entries_allowed_at_ms=T0 + 10**9)
    c = ctx(policy, board=board, killswitch=ks, position_qty=2.0, position_notional=200.0, zone="Z5")
    gate = RiskGate(policy)
    assert gate.check(exit_(purpose, reduce_only=False), c).allowed
    assert gate.check(exit_(purpose, qty=2.0), c).allowed
    # a reduce-only order whatever its stated purpose
    assert gate.check(dataclasses.replace(entry(policy), side="sell", reduce_only=True, post_only=False), c).allowed


def test_risk_reducing_denied_when_it_would_grow_the_position(policy: Policy) -> None:
    gate = RiskGate(policy)
    long_ = ctx(policy, board=HALTED, position_qty=2.0, position_notional=200.0)
    d = gate.check(exit_(side="buy"), long_)
    assert not d.allowed and "increase" in d.reason
    d = gate.check(exit_(qty=3.0), long_)
    assert not d.allowed and "exceeds the position" in d.reason
    d = gate.check(exit_(), ctx(policy, board=HALTED))
    assert not d.allowed and "no BTCUSDT position" in d.reason
    short = ctx(policy, position_qty=-1.0, position_notional=100.0)
    assert gate.check(exit_(side="buy"), short).allowed
    for bad in (math.nan, math.inf, 0.0, -1.0):
        assert not gate.check(exit_(qty=bad), long_).allowed


def test_exception_inside_the_gate_fails_closed(policy: Policy) -> None:
    class Exploding:
        @property
        def engaged(self) -> bool:
            raise RuntimeError("status store corrupted")

    d = RiskGate(policy).check(entry(policy), ctx(policy, killswitch=Exploding()))
    assert d == Decision(False, "risk gate failed: RuntimeError: status store corrupted", fail_closed=True,
                        rule="invalid")


def test_reducing_order_denied_when_the_position_qty_is_not_finite(policy: Policy) -> None:
    for bad in (math.nan, math.inf):
        d = RiskGate(policy).check(exit_(), ctx(policy, position_qty=bad, position_notional=200.0))
        assert not d.allowed and "not finite" in d.reason


def test_entry_reversing_the_position_is_capped_on_the_resulting_position(policy: Policy) -> None:
    cap = policy.position_sizing.max_position_pct * EQUITY
    long_qty = 5.0  # a long of 500; a sell of long_qty + x leaves a short of x
    c = ctx(policy, position_qty=long_qty, position_notional=long_qty * MARK, open_exposure=0.0)
    gate = RiskGate(policy)
    assert gate.check(entry(policy, qty=long_qty + cap / MARK, side="sell"), c).allowed
    d = gate.check(entry(policy, qty=long_qty + (cap + 1) / MARK, side="sell"), c)
    assert not d.allowed and d.rule == "cap" and "max_position_pct" in d.reason


def test_an_entry_adding_to_a_position_is_capped_on_the_position_at_the_mark_plus_the_order_at_its_price(
        policy: Policy) -> None:
    """A limit below the mark must not value the position already held at the limit's lower price."""
    cap = policy.position_sizing.max_position_pct * EQUITY
    held = cap / 2 / MARK  # half the cap, at the mark
    c = ctx(policy, position_qty=held, position_notional=held * MARK, open_exposure=held * MARK)
    price = MARK * 0.96
    d = RiskGate(policy).check(entry(policy, qty=(cap / 2 + 8) / price, price=price), c)  # 8 past the cap
    assert not d.allowed and d.rule == "cap" and "max_position_pct" in d.reason
    assert RiskGate(policy).check(entry(policy, qty=(cap / 2 - 8) / price, price=price), c).allowed


@pytest.mark.parametrize("price", [math.nan, math.inf, 0.0, -1.0])
def test_a_reducing_limit_order_at_an_unusable_price_is_denied(policy: Policy, price: float) -> None:
    long_ = ctx(policy, position_qty=2.0, position_notional=200.0)
    d = RiskGate(policy).check(dataclasses.replace(exit_(), price=price), long_)
    assert not d.allowed and f"price {price}" in d.reason and not d.fail_closed
