"""Consecutive losing trades: progressive size reduction, then a halt with a cooldown.

- pnl < 0 increments the streak; pnl > 0 resets it to 0.
- pnl == 0 (break-even) leaves the streak unchanged: it is neither a loss nor evidence that
  the losing run is over. This is deliberate, not a silent reset.
- Size steps (`size_reduction`): the multiplier of the highest step whose `losses` <= streak
  (warning level, no action). At `max_consecutive_losses` (>=) the breaker trips: `action`
  with a cooldown of `cooldown_minutes` from the trip.
- require_manual_resume = false: the halt lifts by itself once the cooldown has passed
  (observed on a TimerTick or any other input) and the streak resets to 0.
  require_manual_resume = true: an operator reset is accepted only after the cooldown.
"""

from __future__ import annotations

from typing import Any

from bot.core.breakers.base import (
    MINUTE_MS,
    Breaker,
    BreakerInput,
    BreakerVerdict,
    TimerTick,
    TradeClosed,
)
from bot.core.policy import ConsecutiveLosses


class ConsecutiveLossesBreaker(Breaker):
    name = "consecutive_losses"
    check = "streak"
    inputs: tuple[type, ...] = (TradeClosed,)

    def __init__(self, policy: ConsecutiveLosses) -> None:
        super().__init__(float(policy.max_consecutive_losses))
        self._policy = policy
        self._max = policy.max_consecutive_losses
        self._steps = tuple(sorted((s.losses, s.size_multiplier) for s in policy.size_reduction))
        self._cooldown_ms = int(policy.cooldown_minutes * MINUTE_MS)
        self.count = 0
        self._latched = False

    def size_factor_for(self, count: int) -> tuple[float, int]:
        """(multiplier, step threshold) for a streak below the maximum."""
        factor, step = 1.0, 0
        for losses, multiplier in self._steps:
            if count >= losses:
                factor, step = multiplier, losses
        return factor, step

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if isinstance(x, TimerTick):
            return self._maybe_autolift(x.ts_ms)
        if not isinstance(x, TradeClosed):
            return None
        if self._latched:
            lifted = self._maybe_autolift(x.ts_ms)
            if lifted is None:
                return None  # halted: the streak is judged again after the lift
        if x.pnl > 0:
            self.count = 0
        elif x.pnl < 0:
            self.count += 1
        else:
            return None
        return self._judge(x.ts_ms)

    def _judge(self, ts_ms: int) -> BreakerVerdict | None:
        count = self.count
        if count >= self._max:
            self._latched = True
            self.verdict = BreakerVerdict(
                self.name, self.check, "critical", float(count), float(self._max),
                action=self._policy.action,
                requires_manual_resume=self._policy.require_manual_resume,
                cooldown_until_ms=ts_ms + self._cooldown_ms,
            )
            return self.verdict
        factor, step = self.size_factor_for(count)
        if factor < 1.0:
            new = BreakerVerdict(self.name, self.check, "warning", float(count), float(step),
                                 size_factor=factor)
        else:
            new = BreakerVerdict(self.name, self.check, "ok", float(count), float(self._max))
        old = self.verdict
        if (new.level, new.size_factor, new.action) == (old.level, old.size_factor, old.action):
            return None
        self.verdict = new
        return new

    def _maybe_autolift(self, ts_ms: int) -> BreakerVerdict | None:
        until = self.verdict.cooldown_until_ms
        if not self._latched or self._policy.require_manual_resume or until is None or ts_ms < until:
            return None
        self._reset(ts_ms)
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
        self._latched = False
        self.count = 0
        self.verdict = BreakerVerdict(self.name, self.check, "ok", 0.0, float(self._max))

    def _state(self) -> dict[str, Any]:
        return {"count": self.count, "latched": self._latched}

    def _load(self, data: dict[str, Any]) -> None:
        self.count = int(data["count"])
        self._latched = bool(data["latched"])
