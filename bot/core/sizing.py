"""Position sizing: fractional Kelly, volatility (ATR) scaling, risk per trade, caps, zones.

Every number comes from `policy.position_sizing` (and the stop from `policy.exits.stop_loss`).
The size is the smallest of these notionals (the smallest one is the `binding_constraint`):

- `kelly`: f x equity, f = kelly_fraction x (p - (1 - p) / b) from the strategy's win
  probability p and payoff ratio b. f <= 0 means no edge: size 0.
- `risk_per_trade`: the notional that loses risk_per_trade x equity when the risk distance is
  covered (only with volatility_scaling.enabled).
- `max_risk_per_trade`: the same at max_risk_per_trade: a hard ceiling, always applied.
- `max_position_pct`: max_position_pct x equity.
- `max_total_exposure_pct`: max_total_exposure_pct x equity minus the exposure already open.

The risk distance is the stop distance `plan_exits` will use (ATR x atr_multiplier bounded to
[min_pct, max_pct] of price); with volatility scaling it is widened to atr_factor x ATR when
that is larger, so a stop clamped at max_pct in a wild market still sizes by the real swing.
The loss at the stop is therefore never above risk_per_trade (or max_risk_per_trade) x equity.

That notional is then multiplied by the zone multiplier (zones enabled) and the external
`size_factor` from the breakers (clamped to [0, 1]). Both are <= 1, so no cap can be exceeded,
and the result is linear and non-decreasing in `size_factor`. A blocked zone gives 0.

Caps are applied with a relative guard of 1e-12 so that rounding in notional = qty x price
can never push a result past a cap by one ulp.

Bad inputs (non-finite, price <= 0, equity <= 0, p outside [0, 1], b <= 0, negative exposure,
missing ATR) give qty 0 with `binding_constraint="invalid_input"` and a reason: never an
exception.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal

from bot.core.exits import stop_distance_pct
from bot.core.policy import Policy, Zone, Zones

Binding = Literal[
    "kelly", "risk_per_trade", "max_risk_per_trade", "max_position_pct", "max_total_exposure_pct",
    "zone_blocked", "zone_multiplier", "size_factor", "no_edge", "invalid_input",
]

_ZONES: tuple[Zone, Zone, Zone, Zone, Zone] = ("Z1", "Z2", "Z3", "Z4", "Z5")
_CAP_GUARD = 1.0 - 1e-12  # numerical headroom under every cap (see module docstring)
PERCENT = 100.0  # ATR as % of price: a unit conversion


def zone_for(atr_pct: float, zones: Zones) -> Zone:
    """Market zone from ATR as % of price. A value on a boundary belongs to the higher zone;
    a value that is not a number is treated as the most extreme zone."""
    if math.isnan(atr_pct):
        return _ZONES[-1]
    return _ZONES[bisect_right(zones.boundaries_atr_pct, atr_pct)]


@dataclass(frozen=True, slots=True)
class SizeDecision:
    qty: float
    notional: float
    zone: Zone
    binding_constraint: Binding
    reason: str
    kelly_f: float = 0.0  # fractional Kelly fraction of equity (after kelly_fraction)
    stop_pct: float = 0.0  # stop distance, fraction of price
    risk_distance_pct: float = 0.0  # distance used for risk sizing, >= stop_pct
    zone_multiplier: float = 0.0
    size_factor: float = 0.0  # the external factor actually applied (clamped)
    loss_at_stop: float = 0.0  # notional x stop_pct, quote currency

    @property
    def blocked(self) -> bool:
        return self.qty == 0.0


def _zero(zone: Zone, binding: Binding, reason: str, kelly_f: float = 0.0, stop_pct: float = 0.0,
          risk_dist: float = 0.0, zone_mult: float = 0.0, factor: float = 0.0) -> SizeDecision:
    return SizeDecision(0.0, 0.0, zone, binding, reason, kelly_f, stop_pct, risk_dist, zone_mult, factor)


def _invalid(equity: float, price: float, atr: float | None, win_prob: float, payoff: float,
             open_exposure: float, size_factor: float) -> str | None:
    if not (math.isfinite(equity) and equity > 0.0):
        return f"equity must be finite and > 0 (got {equity!r})"
    if not (math.isfinite(price) and price > 0.0):
        return f"price must be finite and > 0 (got {price!r})"
    if atr is None or not (math.isfinite(atr) and atr >= 0.0):
        return f"ATR must be finite and >= 0 (got {atr!r})"
    if not (math.isfinite(win_prob) and 0.0 <= win_prob <= 1.0):
        return f"win probability must be in [0, 1] (got {win_prob!r})"
    if not (math.isfinite(payoff) and payoff > 0.0):
        return f"payoff ratio must be finite and > 0 (got {payoff!r})"
    if not (math.isfinite(open_exposure) and open_exposure >= 0.0):
        return f"open exposure must be finite and >= 0 (got {open_exposure!r})"
    if math.isnan(size_factor):
        return "size factor is not a number"
    return None


def kelly_fraction(win_prob: float, payoff: float, fraction: float) -> float:
    """fraction x (p - (1 - p) / b); may be <= 0 (no edge)."""
    return fraction * (win_prob - (1.0 - win_prob) / payoff)


def size_position(
    policy: Policy,
    *,
    equity: float,
    price: float,
    atr: float | None,
    win_prob: float,
    payoff: float,
    open_exposure: float = 0.0,
    size_factor: float = 1.0,
) -> SizeDecision:
    """The size of a new position; see the module docstring for the rules."""
    sizing = policy.position_sizing
    zones = sizing.zones
    problem = _invalid(equity, price, atr, win_prob, payoff, open_exposure, size_factor)
    if problem is not None or atr is None:
        zone = zone_for(atr / price * PERCENT, zones) if (
            atr is not None and math.isfinite(price) and price > 0.0) else _ZONES[-1]
        return _zero(zone, "invalid_input", problem or "ATR missing")

    atr_frac = atr / price
    zone = zone_for(atr_frac * PERCENT, zones)
    if zones.enabled and zone in zones.blocked:
        return _zero(zone, "zone_blocked", f"zone {zone} is blocked")
    zone_mult = zones.size_multipliers.get(zone, 1.0) if zones.enabled else 1.0
    factor = min(max(size_factor, 0.0), 1.0)

    f = kelly_fraction(win_prob, payoff, sizing.kelly_fraction)
    stop_pct = stop_distance_pct(price, atr, policy.exits.stop_loss)
    scaling = sizing.volatility_scaling
    risk_dist = stop_pct
    if scaling.enabled:
        swing = scaling.atr_factor * atr_frac
        if math.isfinite(swing) and swing > risk_dist:
            risk_dist = swing
    if not f > 0.0:
        return _zero(zone, "no_edge", f"no edge: Kelly fraction {f:.6f} <= 0",
                     f, stop_pct, risk_dist, zone_mult, factor)

    best: float = f * equity
    binding: Binding = "kelly"
    if scaling.enabled:
        cand = sizing.risk_per_trade * equity * _CAP_GUARD / risk_dist
        if cand < best:
            best, binding = cand, "risk_per_trade"
    cand = sizing.max_risk_per_trade * equity * _CAP_GUARD / risk_dist
    if cand < best:
        best, binding = cand, "max_risk_per_trade"
    cand = sizing.max_position_pct * equity * _CAP_GUARD
    if cand < best:
        best, binding = cand, "max_position_pct"
    cand = sizing.max_total_exposure_pct * equity * _CAP_GUARD - open_exposure
    if cand < best:
        best, binding = cand, "max_total_exposure_pct"
    if not best > 0.0:
        return _zero(zone, binding, f"no room under {binding}", f, stop_pct, risk_dist, zone_mult, factor)
    if zone_mult == 0.0:
        return _zero(zone, "zone_multiplier", f"zone {zone} multiplier is 0", f, stop_pct, risk_dist, zone_mult, factor)
    if factor == 0.0:
        return _zero(zone, "size_factor", "size factor is 0", f, stop_pct, risk_dist, zone_mult, factor)

    qty = best * zone_mult * factor / price
    if not (math.isfinite(qty) and qty > 0.0):
        return _zero(zone, "invalid_input", f"quantity not representable (got {qty!r})",
                     f, stop_pct, risk_dist, zone_mult, factor)
    notional = qty * price
    return SizeDecision(qty, notional, zone, binding, f"sized by {binding}", f, stop_pct, risk_dist, zone_mult,
                        factor, notional * stop_pct)
