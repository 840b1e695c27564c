"""Exits: ATR stop bounded to [min_pct, max_pct], R-multiple take profit, time and volatility exits.

All numbers come from `policy.exits`. `side` is the side of the entry: "buy" opens a long,
"sell" a short.

- Stop distance (fraction of entry) = clamp(atr_multiplier x ATR / entry, min_pct, max_pct).
  A non-finite or negative ATR gives min_pct: the tightest stop the policy allows, so the loss
  at the stop is never above what sizing assumed.
- Take profit at risk_multiple x R, where R = the stop distance in price.
- `check_exit` is called once per closed bar after the entry bar. It counts the bar, then judges
  in this order: stop, take profit, volatility, time. Stop and take profit are judged on the
  bar's low/high. A bar that touches both is assumed to have hit the stop first: OHLC cannot
  tell the order, and assuming the loss is the conservative reading. A bar that opens beyond the
  stop (a gap) exits at its open, the price actually obtainable.
- Time exit when bars held reaches max_hold_periods (the 48th bar after entry, not the 47th).
- Volatility exit when ATR >= expansion_multiple x entry ATR or ATR <= contraction_multiple x
  entry ATR (both bounds inclusive).
- A bar that fails `Bar.is_sane()` counts toward the time exit but is not used to judge prices;
  the feed and volatility breakers deal with bad data.
- The plan outlives the process: `ExitState.to_dict` / `from_dict` carry the levels, the entry
  ATR, the bars held and the close time of the last bar counted (`last_bar_ms`; the fill time
  before the first). A restarted bot counts the bars that closed while it was down
  (`catch_up`), so the time exit still fires max_hold_periods bars after the entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.market import Bar
from bot.core.policy import Exits, StopLoss

Side = Literal["buy", "sell"]
ExitReason = Literal["stop", "take_profit", "time", "volatility"]


def stop_distance_pct(entry: float, atr: float | None, stop_loss: StopLoss) -> float:
    """Stop distance as a fraction of entry, always within [min_pct, max_pct]."""
    raw = stop_loss.atr_multiplier * atr / entry if atr is not None else math.nan
    if not math.isfinite(raw) or raw < stop_loss.min_pct:
        return stop_loss.min_pct
    if raw > stop_loss.max_pct:
        return stop_loss.max_pct
    return raw


@dataclass(frozen=True, slots=True)
class ExitPlan:
    side: Side
    entry: float
    stop: float
    take_profit: float
    stop_pct: float  # stop distance as a fraction of entry
    risk_per_unit: float  # R: |entry - stop| in price


def plan_exits(side: Side, entry: float, atr: float | None, policy: Exits) -> ExitPlan:
    """Stop and take-profit prices for an entry. Raises ValueError if entry is not finite and > 0."""
    if not (math.isfinite(entry) and entry > 0.0):
        raise ValueError(f"entry price must be finite and > 0 (got {entry!r})")
    pct = stop_distance_pct(entry, atr, policy.stop_loss)
    r = entry * pct
    reward = policy.take_profit.risk_multiple * r
    if side == "buy":
        return ExitPlan(side, entry, entry - r, entry + reward, pct, r)
    return ExitPlan(side, entry, entry + r, entry - reward, pct, r)


@dataclass(frozen=True, slots=True)
class ExitSignal:
    reason: ExitReason
    # reference exit price: the stop / take-profit level (a gap past the stop: the bar's open),
    # else the bar's close (the stop level when the bar is not sane)
    price: float
    bars_held: int


@dataclass(slots=True)
class ExitState:
    """An open position's exit levels, entry ATR and bars held since entry."""

    side: Side
    entry: float
    stop: float
    take_profit: float
    entry_atr: float | None
    policy: Exits
    bars_held: int = 0
    last_bar_ms: int | None = None  # close time of the last bar counted (the fill time before one)

    @classmethod
    def from_plan(cls, plan: ExitPlan, entry_atr: float | None, policy: Exits,
                  opened_ms: int | None = None) -> ExitState:
        return cls(plan.side, plan.entry, plan.stop, plan.take_profit, entry_atr, policy,
                   last_bar_ms=opened_ms)

    def catch_up(self, bar_ts_ms: int, bar_ms: int) -> int:
        """Count the bars that closed after `last_bar_ms` and before the bar closing at
        `bar_ts_ms` (which check_exit counts itself): the bars a stopped process did not see.
        Bars close on multiples of bar_ms. Returns how many were added."""
        if self.last_bar_ms is None or bar_ms <= 0:
            return 0
        missed = max(0, bar_ts_ms // bar_ms - self.last_bar_ms // bar_ms - 1)
        self.bars_held += missed
        return missed

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "entry": self.entry, "stop": self.stop, "take_profit": self.take_profit,
                "entry_atr": self.entry_atr, "bars_held": self.bars_held, "last_bar_ms": self.last_bar_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any], policy: Exits) -> ExitState:
        """The inverse of to_dict; ValueError (naming the field) when the saved plan is unusable."""
        side = data["side"]
        if side not in ("buy", "sell"):
            raise ValueError(f"exit plan: side {side!r} is not buy or sell")
        levels = {k: float(data[k]) for k in ("entry", "stop", "take_profit")}
        for name, value in levels.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"exit plan: {name} {value!r} is not a finite positive price")
        long = side == "buy"
        if (levels["stop"] >= levels["entry"]) if long else (levels["stop"] <= levels["entry"]):
            raise ValueError(f"exit plan: stop {levels['stop']} is on the wrong side of entry {levels['entry']}")
        atr = data.get("entry_atr")
        entry_atr = None if atr is None else float(atr)
        bars = int(data["bars_held"])
        if bars < 0:
            raise ValueError(f"exit plan: bars_held {bars} is negative")
        last = data.get("last_bar_ms")
        return cls(side, levels["entry"], levels["stop"], levels["take_profit"], entry_atr, policy, bars,
                   None if last is None else int(last))


def _price_exit(state: ExitState, bar: Bar) -> ExitSignal | None:
    if state.side == "buy":
        if bar.low <= state.stop:
            return ExitSignal("stop", min(bar.open, state.stop), state.bars_held)
        if bar.high >= state.take_profit:
            return ExitSignal("take_profit", state.take_profit, state.bars_held)
        return None
    if bar.high >= state.stop:
        return ExitSignal("stop", max(bar.open, state.stop), state.bars_held)
    if bar.low <= state.take_profit:
        return ExitSignal("take_profit", state.take_profit, state.bars_held)
    return None


def check_exit(state: ExitState, bar: Bar, atr: float | None) -> ExitSignal | None:
    """Count `bar` as held and return the first exit that applies, or None."""
    policy = state.policy
    state.bars_held += 1
    state.last_bar_ms = bar.ts_ms
    sane = bar.is_sane()
    if sane:
        hit = _price_exit(state, bar)
        if hit is not None:
            return hit
    vol = policy.volatility_exit
    base = state.entry_atr
    if (vol.enabled and atr is not None and math.isfinite(atr) and base is not None
            and math.isfinite(base) and base > 0.0
            and (atr >= vol.expansion_multiple * base or atr <= vol.contraction_multiple * base)):
        return ExitSignal("volatility", bar.close if sane else state.stop, state.bars_held)
    timed = policy.time_exit
    if timed.enabled and state.bars_held >= timed.max_hold_periods:
        return ExitSignal("time", bar.close if sane else state.stop, state.bars_held)
    return None
