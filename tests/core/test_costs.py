"""Execution costs: the checklist's 0.18 % round trip, impact, post-only, and the edge boundary."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import load_policy
from bot.core.costs import (
    edge_after_costs,
    entry_allowed_by_edge,
    fee_rate,
    impact_bps,
    required_edge,
    round_trip_cost,
    round_trip_costs,
    slippage_bps,
)
from bot.core.policy import ExecutionCosts, Policy, Slippage

PROFILES = ("futures", "pets")
POLICIES: dict[str, Policy] = {name: load_policy(name).policy for name in PROFILES}
FUTURES = POLICIES["futures"].execution_costs


def _costs(**changes: object) -> ExecutionCosts:
    return FUTURES.model_copy(update=changes)


def test_taker_round_trip_matches_the_checklist_estimate() -> None:
    """risk_safety_checklist.md C1: "Total Round-trip Cost: 0.18% estimated".

    Per leg: taker fee 0.04 % + base slippage 5 bps = 0.09 %; two legs = 0.18 %. That is the
    model in a calm market (ATR term 0) and below the impact threshold ($1,000). For a typical
    5-minute BTC bar (ATR ~10 bps of price) the volatility term adds 0.1 x 10 = 1 bp per leg,
    so the model says 0.20 %: the checklist's figure plus the "volatility-based adjustment".
    """
    calm = round_trip_costs(FUTURES, notional=1_000.0, atr_bps=0.0, post_only=False)
    assert math.isclose(calm.fees, 2 * 0.0004)
    assert math.isclose(calm.slippage, 2 * 5 / 10_000)
    assert calm.impact == 0.0
    assert math.isclose(calm.total, 0.0018)
    assert math.isclose(round_trip_cost(FUTURES, 1_000.0, 0.0, False), 0.0018)

    typical = round_trip_cost(FUTURES, notional=1_000.0, atr_bps=10.0, post_only=False)
    assert math.isclose(typical, 0.0018 + 2 * 0.1 * 10 / 10_000)
    assert 0.0018 < typical < 0.0021  # near the checklist figure: 0.20 % vs 0.18 %


def test_slippage_grows_with_atr() -> None:
    assert slippage_bps(FUTURES, 0.0, False) == 5.0
    assert math.isclose(slippage_bps(FUTURES, 40.0, False), 5.0 + 0.1 * 40.0)


def test_market_impact_above_threshold_only() -> None:
    assert impact_bps(FUTURES, 1_000.0, False) == 0.0
    assert impact_bps(FUTURES, 999.0, False) == 0.0
    # $11,000: $10,000 above the threshold -> 2 bps per leg
    assert math.isclose(impact_bps(FUTURES, 11_000.0, False), 2.0)
    assert math.isclose(round_trip_cost(FUTURES, 11_000.0, 0.0, False), 0.0018 + 2 * 2.0 / 10_000)
    assert math.isclose(impact_bps(FUTURES, 6_000.0, False), 1.0)


def test_fixed_slippage_model_ignores_atr_and_size() -> None:
    costs = _costs(slippage=Slippage(model="fixed", base_slippage_bps=5, volatility_coefficient=0.1))
    assert slippage_bps(costs, 50.0, False) == 5.0
    assert impact_bps(costs, 1e6, False) == 0.0
    assert math.isclose(round_trip_cost(costs, 1e6, 50.0, False), 0.0018)


def test_assumed_fee_is_used_when_above_the_taker_fee() -> None:
    assert fee_rate(_costs(taker_fee=0.0003, assumed_fee=0.0005), post_only=False) == 0.0005
    assert fee_rate(_costs(taker_fee=0.0006, assumed_fee=0.0004), post_only=False) == 0.0006


def test_pets_post_only_pays_maker_fee_and_no_slippage() -> None:
    policy = POLICIES["pets"]
    assert policy.orders.post_only
    costs = policy.execution_costs
    for notional, atr_bps in ((500.0, 0.0), (50_000.0, 80.0)):
        b = round_trip_costs(costs, notional, atr_bps, post_only=True)
        assert b.slippage == 0.0 and b.impact == 0.0
        assert math.isclose(b.fees, 2 * costs.maker_fee)
        assert math.isclose(round_trip_cost(costs, notional, atr_bps, True), 2 * costs.maker_fee)


def test_maker_rebate_makes_the_round_trip_negative() -> None:
    costs = _costs(maker_fee=-0.0001)
    assert math.isclose(round_trip_cost(costs, 5_000.0, 30.0, True), -0.0002)
    # a rebate lowers the edge an entry needs below min_edge_after_costs
    assert math.isclose(required_edge(costs, 5_000.0, 30.0, True), costs.min_edge_after_costs - 0.0002)


def test_edge_after_costs_subtracts_the_round_trip() -> None:
    assert math.isclose(edge_after_costs(FUTURES, 0.005, 1_000.0, 0.0, False), 0.005 - 0.0018)
    assert edge_after_costs(FUTURES, math.nan, 1_000.0, 0.0, False) == -math.inf
    assert edge_after_costs(FUTURES, 0.005, math.nan, 0.0, False) == -math.inf


def test_futures_needs_point_one_percent_after_costs() -> None:
    assert FUTURES.min_edge_after_costs == 0.001
    assert math.isclose(required_edge(FUTURES, 1_000.0, 0.0, False), 0.0028)
    assert entry_allowed_by_edge(FUTURES, 0.0028, 1_000.0, 0.0, False).allowed
    assert not entry_allowed_by_edge(FUTURES, 0.0027, 1_000.0, 0.0, False).allowed


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=300, deadline=None)
@given(notional=st.floats(min_value=0.0, max_value=1e7), atr_bps=st.floats(min_value=0.0, max_value=1_000.0),
       post_only=st.booleans())
def test_edge_boundary_exactly_min_passes_just_below_fails(profile: str, notional: float, atr_bps: float,
                                                          post_only: bool) -> None:
    costs = POLICIES[profile].execution_costs
    need = required_edge(costs, notional, atr_bps, post_only)
    at = entry_allowed_by_edge(costs, need, notional, atr_bps, post_only)
    assert at.allowed and at.required_edge == need
    assert math.isclose(at.edge_after_costs, costs.min_edge_after_costs, rel_tol=1e-9, abs_tol=1e-15)
    below = entry_allowed_by_edge(costs, math.nextafter(need, -math.inf), notional, atr_bps, post_only)
    assert not below.allowed and "below minimum" in below.reason


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=300, deadline=None)
@given(notional=st.floats(min_value=0.0, max_value=1e7), atr_bps=st.floats(min_value=0.0, max_value=1_000.0),
       post_only=st.booleans())
def test_a_market_whose_expected_move_cannot_pay_the_round_trip_is_refused(
        profile: str, notional: float, atr_bps: float, post_only: bool) -> None:
    """Whatever edge the strategy claims, the move the market makes over the holding horizon must
    cover fees + slippage + impact + min_edge: exactly at it passes, just below fails."""
    costs = POLICIES[profile].execution_costs
    need = required_edge(costs, notional, atr_bps, post_only)
    assert entry_allowed_by_edge(costs, need, notional, atr_bps, post_only, expected_move=need).allowed
    below = entry_allowed_by_edge(costs, 1.0, notional, atr_bps, post_only,
                                  expected_move=math.nextafter(need, -math.inf))
    assert not below.allowed and "expected move" in below.reason and "round trip" in below.reason
    assert not entry_allowed_by_edge(costs, 1.0, notional, atr_bps, post_only, expected_move=math.nan).allowed


@pytest.mark.parametrize(("edge", "notional", "atr_bps"), [
    (math.nan, 1_000.0, 10.0), (math.inf, 1_000.0, 10.0), (0.01, math.nan, 10.0), (0.01, -1.0, 10.0),
    (0.01, 1_000.0, -1.0), (0.01, 1_000.0, math.inf),
])
def test_bad_inputs_fail_closed_without_raising(edge: float, notional: float, atr_bps: float) -> None:
    check = entry_allowed_by_edge(FUTURES, edge, notional, atr_bps, False)
    assert not check.allowed and check.reason
    if math.isfinite(edge):
        assert round_trip_cost(FUTURES, notional, atr_bps, False) == math.inf
        with pytest.raises(ValueError, match="notional and atr_bps"):
            round_trip_costs(FUTURES, notional, atr_bps, False)
