"""Execution costs: fees, slippage, market impact, and the minimum edge an entry must clear.

Every rate comes from `policy.execution_costs`. Units: fees and costs are fractions of
notional (0.0004 = 0.04 %), slippage and impact are basis points, `atr_bps` is ATR as bps of
price (ATR / price x 10 000).

Model, per leg (entry or exit) of `notional` quote currency:

- taker (market order): fee = max(taker_fee, assumed_fee) — the checklist plans with the
  conservative assumed fee when it is above the venue's schedule;
  slippage = base_slippage_bps + volatility_coefficient x atr_bps (model `market_impact`), or
  base_slippage_bps alone (model `fixed`);
  impact = bps_per_10k_usd x (notional - threshold_usd) / 10 000 above the threshold
  (model `market_impact` only).
- post-only (maker, PETS "Post-only orders enforced"): fee = maker_fee (negative = rebate),
  slippage = 0 and impact = 0: a resting limit order fills at its own price or not at all.

A round trip is two legs of the same kind. With the default policy and a calm market
(atr_bps = 0, notional <= threshold) a taker round trip costs 2 x 0.04 % + 2 x 5 bps = 0.18 %,
the checklist's estimate; volatility and size add to it.

The entry check is `expected_edge >= min_edge_after_costs + round_trip_cost`: an edge exactly
at the minimum passes, anything below fails. When the strategy gives the market's expected move
over the holding horizon (`expected_move`, a fraction of price; see bot.core.strategy), that
move must clear the same bar first: a market that does not move as far as the round trip costs
plus the minimum edge cannot pay for a trade whatever the hit rate, and the reason says so. Bad
inputs (non-finite, negative notional or ATR) never raise: the check fails closed with a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.core.policy import ExecutionCosts

BPS = 10_000.0  # basis points per unit: a unit conversion, not a threshold
IMPACT_UNIT_USD = 10_000.0  # the "per 10k USD" of bps_per_10k_usd


def fee_rate(costs: ExecutionCosts, post_only: bool) -> float:
    """Fee per leg as a fraction of notional (negative for a maker rebate)."""
    if post_only:
        return costs.maker_fee
    return max(costs.taker_fee, costs.assumed_fee)


def slippage_bps(costs: ExecutionCosts, atr_bps: float, post_only: bool) -> float:
    """Expected slippage per leg in bps; zero for post-only orders."""
    if post_only:
        return 0.0
    slip = costs.slippage
    if slip.model == "fixed":
        return slip.base_slippage_bps
    return slip.base_slippage_bps + slip.volatility_coefficient * atr_bps


def impact_bps(costs: ExecutionCosts, notional: float, post_only: bool) -> float:
    """Market impact per leg in bps for `notional` above the threshold; zero for post-only."""
    if post_only or costs.slippage.model == "fixed":
        return 0.0
    impact = costs.market_impact
    excess = notional - impact.threshold_usd
    if excess <= 0.0:
        return 0.0
    return impact.bps_per_10k_usd * excess / IMPACT_UNIT_USD


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Round-trip costs as fractions of notional (both legs together)."""

    fees: float
    slippage: float
    impact: float

    @property
    def total(self) -> float:
        return self.fees + self.slippage + self.impact


def _valid(notional: float, atr_bps: float) -> bool:
    return math.isfinite(notional) and notional >= 0.0 and math.isfinite(atr_bps) and atr_bps >= 0.0


def round_trip_costs(costs: ExecutionCosts, notional: float, atr_bps: float,
                     post_only: bool) -> CostBreakdown:
    """Entry plus exit, each leg priced by the model above. Raises ValueError on bad inputs."""
    if not _valid(notional, atr_bps):
        raise ValueError(f"notional and atr_bps must be finite and >= 0 (got {notional!r}, {atr_bps!r})")
    return CostBreakdown(
        fees=2.0 * fee_rate(costs, post_only),
        slippage=2.0 * slippage_bps(costs, atr_bps, post_only) / BPS,
        impact=2.0 * impact_bps(costs, notional, post_only) / BPS,
    )


def round_trip_cost(costs: ExecutionCosts, notional: float, atr_bps: float, post_only: bool) -> float:
    """Total round-trip cost as a fraction of notional; +inf for bad inputs (fails closed)."""
    if not _valid(notional, atr_bps):
        return math.inf
    fee = fee_rate(costs, post_only)
    bps = slippage_bps(costs, atr_bps, post_only) + impact_bps(costs, notional, post_only)
    return 2.0 * (fee + bps / BPS)


def edge_after_costs(costs: ExecutionCosts, expected_edge: float, notional: float, atr_bps: float,
                     post_only: bool) -> float:
    """Expected edge (fraction) minus the round-trip cost; -inf when anything is not finite."""
    if not math.isfinite(expected_edge):
        return -math.inf
    return expected_edge - round_trip_cost(costs, notional, atr_bps, post_only)


def required_edge(costs: ExecutionCosts, notional: float, atr_bps: float, post_only: bool) -> float:
    """The smallest expected edge an entry needs: min_edge_after_costs + round-trip cost."""
    return costs.min_edge_after_costs + round_trip_cost(costs, notional, atr_bps, post_only)


@dataclass(frozen=True, slots=True)
class EdgeCheck:
    allowed: bool
    edge_after_costs: float
    required_edge: float
    reason: str


def entry_allowed_by_edge(costs: ExecutionCosts, expected_edge: float, notional: float, atr_bps: float,
                          post_only: bool, expected_move: float | None = None) -> EdgeCheck:
    """Allow an entry only when expected_edge (and expected_move, when given) >=
    min_edge_after_costs + round-trip cost."""
    if not math.isfinite(expected_edge):
        return EdgeCheck(False, -math.inf, math.inf, f"expected_edge is not finite ({expected_edge!r})")
    if not _valid(notional, atr_bps):
        return EdgeCheck(False, -math.inf, math.inf,
                         f"notional and atr_bps must be finite and >= 0 (got {notional!r}, {atr_bps!r})")
    cost = round_trip_cost(costs, notional, atr_bps, post_only)
    need = costs.min_edge_after_costs + cost
    after = expected_edge - cost
    if expected_move is not None and not expected_move >= need:  # NaN fails too
        return EdgeCheck(False, after, need,
                         f"expected move {expected_move:.4%} over the holding horizon does not cover the "
                         f"round trip {cost:.4%} plus min_edge_after_costs {costs.min_edge_after_costs:.4%}")
    if expected_edge >= need:
        return EdgeCheck(True, after, need, "edge clears costs")
    return EdgeCheck(False, after, need,
                     f"edge after costs {after:.6f} below minimum {costs.min_edge_after_costs:.6f}")
