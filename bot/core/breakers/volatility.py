"""Volatility: bid/ask spread, ATR spike over its baseline, one-bar price move.

- spread (BookUpdate): spread_bps >= warning_bps -> warning; >= max_spread_bps -> `action`
  (pause). A pause lifts by itself on the first tick back below the limit.
- atr (BarClosed): IncrementalATR(atr_periods) against a baseline = RollingMean of the ATR
  values of the `baseline_periods` bars BEFORE the current one. The check is live once the
  baseline is full. ratio >= spike_threshold -> `action`; lifts when the ratio is back below.
- price_move (BarClosed): |close / previous close - 1| * 100 >= max_move_pct -> `action`
  (halt, manual resume). No cooldown in the policy: an operator may resume at once.

A check whose `require_manual_resume` is true latches instead of lifting by itself.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from bot.core.breakers.base import (
    BarClosed,
    BookUpdate,
    Breaker,
    BreakerInput,
    BreakerVerdict,
    Level,
    at_or_above,
    finite,
)
from bot.core.market import IncrementalATR, RollingMean
from bot.core.policy import Action, AtrCheck, PriceMoveCheck, SpreadCheck


class _SimpleCheck(Breaker):
    """A measure against one limit (and an optional warning); latches when manual resume."""

    name = "volatility"

    def __init__(self, limit: float, warning: float | None, action: Action, manual: bool) -> None:
        super().__init__(limit)
        self._limit = limit
        self._warning = warning
        self._action: Action = action
        self._manual = manual
        self._latched = False

    def _judge(self, value: float, ts_ms: int) -> BreakerVerdict | None:
        level: Level
        if at_or_above(value, self._limit):
            level = "critical"
        elif self._latched:
            return None
        elif self._warning is not None and at_or_above(value, self._warning):
            level = "warning"
        else:
            level = "ok"
        current = self.verdict
        if level == current.level:
            return None
        if level == "critical":
            self._latched = self._manual
            new = BreakerVerdict(self.name, self.check, level, value, self._limit, action=self._action,
                                 requires_manual_resume=self._manual,
                                 cooldown_until_ms=ts_ms if self._manual else None)
        else:
            threshold = self._warning if level == "warning" and self._warning is not None else self._limit
            new = BreakerVerdict(self.name, self.check, level, value, threshold)
        self.verdict = new
        return new

    @property
    def latched(self) -> bool:
        return self._latched

    def _reset(self, now_ms: int) -> None:
        self._latched = False
        super()._reset(now_ms)

    def _state(self) -> dict[str, Any]:
        return {"latched": self._latched}

    def _load(self, data: dict[str, Any]) -> None:
        self._latched = bool(data["latched"])


class SpreadBreaker(_SimpleCheck):
    check = "spread"
    inputs: tuple[type, ...] = (BookUpdate,)

    def __init__(self, policy: SpreadCheck) -> None:
        super().__init__(policy.max_spread_bps, policy.warning_bps, policy.action,
                         policy.require_manual_resume)

    def spread_bps(self, x: BookUpdate) -> float:
        return x.tick.spread_bps

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, BookUpdate):
            return None
        return self._judge(finite(self.spread_bps(x), "spread_bps"), x.tick.ts_ms)


class AtrSpikeBreaker(_SimpleCheck):
    check = "atr"
    inputs: tuple[type, ...] = (BarClosed,)

    def __init__(self, policy: AtrCheck) -> None:
        super().__init__(policy.spike_threshold, None, policy.action, policy.require_manual_resume)
        self.atr = IncrementalATR(policy.atr_periods)
        self.baseline = RollingMean(policy.baseline_periods)

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, BarClosed):
            return None
        before = self.baseline.mean if self.baseline.full else None
        atr = self.atr.update(x.bar)
        if atr is None:
            return None
        finite(atr, "ATR")
        self.baseline.update(atr)
        if before is None or before <= 0:
            return None  # warming up, or a flat market with no range to compare against
        return self._judge(finite(atr / before, "ATR ratio"), x.bar.ts_ms)

    def _state(self) -> dict[str, Any]:
        a, b = self.atr, self.baseline
        return {**super()._state(),
                "atr": {"prev_close": a._prev_close, "count": a._count, "sum": a._sum, "value": a.value},
                "baseline": list(b._values)}

    def _load(self, data: dict[str, Any]) -> None:
        super()._load(data)
        s = data["atr"]
        a = self.atr
        a._prev_close = None if s["prev_close"] is None else float(s["prev_close"])
        a._count = int(s["count"])
        a._sum = float(s["sum"])
        a.value = None if s["value"] is None else float(s["value"])
        b = self.baseline
        b._values = deque((float(v) for v in data["baseline"]), maxlen=b._values.maxlen)
        b._sum = sum(b._values)


class PriceMoveBreaker(_SimpleCheck):
    check = "price_move"
    inputs: tuple[type, ...] = (BarClosed,)

    def __init__(self, policy: PriceMoveCheck) -> None:
        super().__init__(policy.max_move_pct, None, policy.action, policy.require_manual_resume)
        self.prev_close: float | None = None

    def move_pct(self, prev: float, close: float) -> float:
        return abs(close / prev - 1.0) * 100.0

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, BarClosed):
            return None
        prev, close = self.prev_close, x.bar.close
        self.prev_close = close
        if prev is None:
            return None
        return self._judge(finite(self.move_pct(prev, close), "price move"), x.bar.ts_ms)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "prev_close": self.prev_close}

    def _load(self, data: dict[str, Any]) -> None:
        super()._load(data)
        self.prev_close = None if data["prev_close"] is None else float(data["prev_close"])
