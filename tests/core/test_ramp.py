"""The capital ramp: each stage caps what the gate lets through, an advance needs evidence and an
approver, the stage survives a restart; the hot-wallet share stops entries at its limit."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_engine import BUY, POLICIES, rig
from test_risk import ctx, entry

from bot.core.engine import PlaceOrder
from bot.core.policy import CapitalRamp, Policy
from bot.core.ramp import (
    DAY_MS,
    AdvanceEvidence,
    RampState,
    advance_problems,
    advanced,
    capital_cap,
    hot_wallet_limit,
)
from bot.core.risk import RiskGate

PASSED = AdvanceEvidence(approver="rita", validation=None)
MARK = 100.0


def _ramp(policy: Policy, **kw: object) -> Policy:
    return policy.model_copy(update={"capital_ramp": policy.capital_ramp.model_copy(update=kw)})


def _stage(policy: Policy, name: str) -> RampState:
    names = [s.name for s in policy.capital_ramp.stages]
    return RampState(names.index(name), 0)


# --- the stage cap in the gate ---------------------------------------------------------------------


@pytest.mark.parametrize("profile,stage,cap", [("pets", "small_1000", 1000.0), ("pets", "scale_5000", 5000.0),
                                               ("futures", "start_500", 500.0), ("futures", "scale_2000", 2000.0)])
def test_the_stage_cap_refuses_above_it_and_not_at_it(profile: str, stage: str, cap: float) -> None:
    policy = POLICIES[profile]
    assert capital_cap(policy.capital_ramp, _stage(policy, stage)) == cap
    limit = policy.position_sizing.max_position_pct * cap  # the position cap on the equity at risk
    gate = RiskGate(policy)
    at = gate.check(entry(policy, qty=limit / MARK), ctx(policy, capital_cap=cap))
    assert at.allowed, at.reason
    over = gate.check(entry(policy, qty=(limit + 0.01) / MARK), ctx(policy, capital_cap=cap))
    assert not over.allowed and over.rule == "stage" and "capital ramp stage cap" in over.reason
    assert gate.check(entry(policy, qty=(limit + 0.01) / MARK), ctx(policy)).allowed  # no stage: equity binds


def test_the_stage_cap_holds_total_exposure_too() -> None:
    policy = POLICIES["futures"]
    exposure_cap = policy.position_sizing.max_total_exposure_pct * 500.0
    d = RiskGate(policy).check(entry(policy, qty=10 / MARK), ctx(policy, capital_cap=500.0,
                                                                 open_exposure=exposure_cap - 9.99))
    assert not d.allowed and d.rule == "stage" and "total exposure" in d.reason


def test_a_cap_above_equity_changes_nothing() -> None:
    policy = POLICIES["futures"]
    over = (policy.position_sizing.max_position_pct * 10_000 + 1) / MARK
    d = RiskGate(policy).check(entry(policy, qty=over), ctx(policy, capital_cap=20_000.0))
    assert not d.allowed and d.rule == "cap"


@given(cap=st.floats(100, 50_000), qty=st.floats(0.001, 200))
def test_no_allowed_entry_exceeds_the_stage_cap(cap: float, qty: float) -> None:
    policy = POLICIES["pets"]
    d = RiskGate(policy).check(entry(policy, qty=qty), ctx(policy, capital_cap=cap))
    if d.allowed:
        assert qty * MARK <= cap * (1 + 1e-9)


def test_the_engine_sizes_from_the_equity_at_risk_and_says_so() -> None:
    r = rig("futures")
    r.engine.ramp_state = _stage(POLICIES["futures"], "start_500")
    placed = [i for i in r.bar(BUY) if isinstance(i, PlaceOrder)]
    assert len(placed) == 1
    assert placed[0].intent.qty * r.price <= 500.0 * POLICIES["futures"].position_sizing.max_position_pct + 1e-6


def test_an_entry_over_the_stage_cap_is_refused_with_rule_stage() -> None:
    r = rig("futures")
    r.engine.ramp_state = _stage(POLICIES["futures"], "start_500")
    r.engine._resting["held"] = (0.004, r.price)  # 240 of resting entries: the stage's exposure is near its cap
    assert not [i for i in r.bar(BUY) if isinstance(i, PlaceOrder)]
    refused = r.named("order.refused", rule="stage")
    assert refused and "capital ramp stage cap" in refused[0].fields["reason"]


# --- advancing ------------------------------------------------------------------------------------


def _ready(ramp: CapitalRamp, stage: int) -> tuple[RampState, int]:
    s = ramp.stages[stage]
    return RampState(stage, 0, trades=s.min_trades), int(s.min_days * DAY_MS)


@pytest.mark.parametrize("profile", ["pets", "futures"])
def test_an_advance_with_all_evidence_and_approval_is_allowed(profile: str) -> None:
    ramp = POLICIES[profile].capital_ramp
    for stage in range(len(ramp.stages) - 1):
        state, now = _ready(ramp, stage)
        assert advance_problems(ramp, state, PASSED, now) == []
        assert advanced(state, now) == RampState(stage + 1, now)


@pytest.mark.parametrize("missing,needle", [
    ("approver", "no approval"), ("validation", "no passed validation"), ("days", "min_days"),
    ("trades", "min_trades"), ("red_flag", "red flag win_rate_low"),
])
def test_an_advance_without_any_piece_is_refused_naming_it(missing: str, needle: str) -> None:
    ramp = POLICIES["pets"].capital_ramp
    state, now = _ready(ramp, 0)  # paper: 7 days, 100 trades
    evidence = PASSED
    if missing == "approver":
        evidence = AdvanceEvidence(approver=None, validation=None)
    elif missing == "validation":
        evidence = AdvanceEvidence(approver="rita", validation="validation.json: verdict fail")
    elif missing == "days":
        now -= 1
    elif missing == "trades":
        state = dataclasses.replace(state, trades=state.trades - 1)
    else:
        state = dataclasses.replace(state, red_flag="win_rate_low")
    problems = advance_problems(ramp, state, evidence, now)
    assert len(problems) == 1 and needle in problems[0], problems


def test_the_last_stage_does_not_advance() -> None:
    ramp = POLICIES["pets"].capital_ramp
    state, now = _ready(ramp, len(ramp.stages) - 1)
    assert "last stage" in advance_problems(ramp, state, PASSED, now)[0]


def test_engine_advance_is_refused_then_allowed_and_evented() -> None:
    r = rig("pets")
    assert r.engine.advance_ramp(AdvanceEvidence(None, None))
    assert r.named("ramp.refused", stage="paper")
    r.engine.ramp_state = dataclasses.replace(r.engine.ramp_state, trades=100)
    r.clock.advance_to(r.clock.now_ms() + 7 * DAY_MS)
    assert r.engine.advance_ramp(PASSED) == []
    assert r.named("ramp.advanced", stage="small_1000", previous="paper", actor="rita")


def test_the_stage_survives_a_restart_and_a_bad_one_is_refused() -> None:
    r = rig("pets")
    r.engine.ramp_state = RampState(2, 1234, trades=5, red_flag=None)
    snapshot = r.engine.snapshot()
    again = rig("pets", clock=r.clock)
    assert again.engine.ramp_state.stage == 0
    again.engine.restore(snapshot)
    assert again.engine.ramp_state == RampState(2, 1234, trades=5, red_flag=None)
    snapshot["ramp"]["stage"] = 99
    with pytest.raises(ValueError, match="stage 99"):
        rig("pets", clock=r.clock).engine.restore(snapshot)


# --- hot / cold ------------------------------------------------------------------------------------


@pytest.mark.parametrize("balance,refused", [(20_000.0, True), (19_990.0, False), (25_000.0, True)])
def test_the_hot_wallet_share_trips_at_20pct_and_not_at_19_99(balance: float, refused: bool) -> None:
    policy = _ramp(POLICIES["pets"], declared_capital_usd=100_000.0)
    limit = hot_wallet_limit(policy.capital_ramp)
    assert limit == pytest.approx(20_000.0)
    d = RiskGate(policy).check(entry(policy), ctx(policy, venue_balance=balance, hot_wallet_limit=limit))
    assert d.allowed is not refused, d.reason
    if refused:
        assert d.rule == "hot_wallet" and "cold storage" in d.reason


def test_no_declared_capital_no_hot_wallet_limit() -> None:
    assert hot_wallet_limit(POLICIES["futures"].capital_ramp) is None


def test_the_engine_refuses_and_alerts_when_the_hot_wallet_is_over_its_share() -> None:
    policy = _ramp(POLICIES["futures"], declared_capital_usd=50_000.0)  # 20 % = 10,000 = the rig's wallet
    r = rig("futures")
    r.engine.policy = policy
    assert not [i for i in r.bar(BUY) if isinstance(i, PlaceOrder)]
    assert r.named("order.refused", rule="hot_wallet")
    assert r.named("bot.alert", key="hot_wallet.over_share", severity="critical")
