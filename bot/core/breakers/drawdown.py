"""Drawdown on REAL equity (realised + unrealised), judged on every EquityUpdate.

Two checks share the tier logic:
- `intraday`: from the UTC day's high-water mark. At the first update of a new UTC day the
  mark resets to the current equity (not to the run start, not to yesterday's peak).
- `peak`: from the all-time equity peak (only when `drawdown.peak.enabled`).

Tiers: warning_pct (warning, no action) < threshold_pct (critical -> `action`, manual resume
when `require_manual_resume`) < emergency_pct (emergency -> `emergency_action`, i.e. flatten).
Each trips at value >= tier. A trip latches: the verdict holds even if equity recovers, until
an operator reset accepted after `cooldown_minutes` since the latest trip (or, with
require_manual_resume = false, until the cooldown has passed and the measure is back below
the threshold). An escalation (critical -> emergency) restarts the cooldown.

After an operator reset the check re-arms from where it stands: the acknowledged tier does not
trip again until the drawdown first falls back below the threshold; a deeper tier trips at
once. A new UTC day re-arms the intraday check fully.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from bot.core.breakers.base import (
    DAY_MS,
    LEVEL_RANK,
    MINUTE_MS,
    Breaker,
    BreakerInput,
    BreakerVerdict,
    EquityUpdate,
    Level,
    TimerTick,
    at_or_above,
    finite,
)
from bot.core.policy import Drawdown


class _TieredDrawdown(Breaker):
    name = "drawdown"
    inputs: tuple[type, ...] = (EquityUpdate,)

    def __init__(self, policy: Drawdown, warning: float | None, threshold: float,
                 emergency: float | None) -> None:
        super().__init__(threshold)
        self._policy = policy
        self._warning = warning
        self._threshold = threshold
        self._emergency = emergency
        self._cooldown_ms = int(policy.cooldown_minutes * MINUTE_MS)
        self.peak: float | None = None
        self._last_dd = 0.0
        self._latched = False
        self._ack_rank = 0  # tier acknowledged by the last operator reset

    # the arithmetic, separate so tests can inject failures
    def drawdown_pct(self, peak: float, equity: float) -> float:
        return (peak - equity) / peak * 100.0

    @abstractmethod
    def _update_peak(self, x: EquityUpdate) -> None:
        """Move this measure's high-water mark (the day's, or the all-time one) for `x`."""

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if isinstance(x, TimerTick):
            return self._maybe_autolift(x.ts_ms)
        if not isinstance(x, EquityUpdate):
            return None
        self._update_peak(x)
        peak = self.peak
        assert peak is not None
        dd = finite(self.drawdown_pct(peak, x.equity), f"{self.key} drawdown")
        self._last_dd = dd
        level = self._level(dd)
        rank = LEVEL_RANK[level]
        current = self.verdict
        if self._latched:
            if rank > LEVEL_RANK[current.level]:
                return self._trip(level, dd, x.ts_ms)
            return self._maybe_autolift(x.ts_ms)
        if rank <= 1:
            self._ack_rank = 0
        elif rank <= self._ack_rank:
            level, rank = "warning", 1  # acknowledged by the operator: report, do not re-trip
        if rank >= 2:
            return self._trip(level, dd, x.ts_ms)
        if level != current.level:
            threshold = self._warning if level == "warning" and self._warning else self._threshold
            self.verdict = BreakerVerdict(self.name, self.check, level, dd, threshold)
            return self.verdict
        return None

    def _level(self, dd: float) -> Level:
        if self._emergency is not None and at_or_above(dd, self._emergency):
            return "emergency"
        if at_or_above(dd, self._threshold):
            return "critical"
        if self._warning is not None and at_or_above(dd, self._warning):
            return "warning"
        return "ok"

    def _trip(self, level: Level, dd: float, ts_ms: int) -> BreakerVerdict:
        emergency = level == "emergency"
        self._latched = True
        self.verdict = BreakerVerdict(
            self.name, self.check, level, dd,
            self._emergency if emergency and self._emergency is not None else self._threshold,
            action=self._policy.emergency_action if emergency else self._policy.action,
            requires_manual_resume=self._policy.require_manual_resume,
            cooldown_until_ms=ts_ms + self._cooldown_ms,
        )
        return self.verdict

    def _maybe_autolift(self, ts_ms: int) -> BreakerVerdict | None:
        until = self.verdict.cooldown_until_ms
        if (not self._latched or self._policy.require_manual_resume or until is None
                or ts_ms < until or at_or_above(self._last_dd, self._threshold)):
            return None
        self._latched = False
        self.verdict = BreakerVerdict(self.name, self.check, "ok", self._last_dd, self._threshold)
        return self.verdict

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def deadline_ms(self) -> int | None:
        if self._latched and not self._policy.require_manual_resume:
            return self.verdict.cooldown_until_ms
        return None

    def _reset(self, now_ms: int) -> None:
        self._ack_rank = LEVEL_RANK[self.verdict.level]
        self._latched = False
        self.verdict = BreakerVerdict(self.name, self.check, "ok", self._last_dd, self._threshold)

    def _state(self) -> dict[str, Any]:
        return {"peak": self.peak, "last_dd": self._last_dd, "latched": self._latched,
                "ack_rank": self._ack_rank}

    def _load(self, data: dict[str, Any]) -> None:
        self.peak = None if data["peak"] is None else float(data["peak"])
        self._last_dd = float(data["last_dd"])
        self._latched = bool(data["latched"])
        self._ack_rank = int(data["ack_rank"])


class IntradayDrawdown(_TieredDrawdown):
    check = "intraday"

    def __init__(self, policy: Drawdown) -> None:
        super().__init__(policy, policy.warning_pct, policy.threshold_pct, policy.emergency_pct)
        self.day: int | None = None

    def _update_peak(self, x: EquityUpdate) -> None:
        day = x.ts_ms // DAY_MS
        if day != self.day or self.peak is None:
            self.day = day
            self.peak = x.equity  # UTC midnight: the day's mark starts at current equity
            self._ack_rank = 0
        elif x.equity > self.peak:
            self.peak = x.equity

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "day": self.day}

    def _load(self, data: dict[str, Any]) -> None:
        super()._load(data)
        self.day = None if data["day"] is None else int(data["day"])


class PeakDrawdown(_TieredDrawdown):
    check = "peak"

    def __init__(self, policy: Drawdown) -> None:
        p = policy.peak
        super().__init__(policy, p.warning_pct, p.threshold_pct, p.emergency_pct)

    def _update_peak(self, x: EquityUpdate) -> None:
        if self.peak is None or x.equity > self.peak:
            self.peak = x.equity
