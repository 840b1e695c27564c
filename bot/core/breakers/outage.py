"""Outages of what the bot depends on.

Exchange outage: the decision matrix of the exchange-outage runbook as a breaker.

While the exchange is unreachable the minor action applies (pause new entries: exits keep
trying); once it has been down for `major_after_minutes` the major action applies (close
positions and halt), which stays until an operator resumes after the exchange is back.
"""

from __future__ import annotations

import math

from bot.core.breakers.base import (
    Breaker,
    BreakerInput,
    BreakerVerdict,
    ExchangeStatus,
    StoreStatus,
    TimerTick,
)
from bot.core.policy import HALT_ACTIONS, ExchangeOutage


class ExchangeOutageBreaker(Breaker):
    name = "exchange_outage"
    check = "connectivity"
    inputs: tuple[type, ...] = (ExchangeStatus, TimerTick)

    def __init__(self, policy: ExchangeOutage) -> None:
        self._major_ms = policy.major_after_minutes * 60_000.0
        super().__init__(self._major_ms)
        self._policy = policy
        self._down_since: int | None = None

    @property
    def latched(self) -> bool:
        return self.verdict.requires_manual_resume

    @property
    def deadline_ms(self) -> int | None:
        if self._down_since is None or self.verdict.level == "emergency":
            return None
        return self._down_since + math.ceil(self._major_ms)

    def reset_blocker(self, now_ms: int) -> str | None:
        if self.latched and self._down_since is not None:
            return f"{self.key}: the exchange is still unreachable"
        return None

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if isinstance(x, ExchangeStatus):
            if x.down and self._down_since is None:
                self._down_since = x.ts_ms
                return self._minor(0.0)
            if not x.down and self._down_since is not None:
                self._down_since = None
                if not self.latched:
                    self.verdict = BreakerVerdict(self.name, self.check, "ok", 0.0, self._major_ms)
                    return self.verdict
            return None
        if isinstance(x, TimerTick) and self._down_since is not None and self.verdict.level != "emergency":
            down_for = float(x.ts_ms - self._down_since)
            if down_for >= self._major_ms:
                action = self._policy.major_action
                self.verdict = BreakerVerdict(self.name, self.check, "emergency", down_for, self._major_ms,
                                              action=action, requires_manual_resume=action in HALT_ACTIONS)
                return self.verdict
        return None

    def _minor(self, down_for: float) -> BreakerVerdict:
        action = self._policy.minor_action
        self.verdict = BreakerVerdict(self.name, self.check, "critical", down_for, self._major_ms, action=action,
                                      requires_manual_resume=action in HALT_ACTIONS)
        return self.verdict

    def _state(self) -> dict[str, int | None]:
        return {"down_since": self._down_since}

    def _load(self, data: dict[str, object]) -> None:
        down = data.get("down_since")
        self._down_since = int(down) if isinstance(down, int | float) else None


class StateStoreBreaker(Breaker):
    """The shared state store is unreachable: breaker state cannot be persisted, so no new
    risk is taken (fail closed) until it answers again; exits keep working."""

    name = "state_store"
    check = "connectivity"
    inputs: tuple[type, ...] = (StoreStatus,)

    def __init__(self) -> None:
        super().__init__(0.0)

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, StoreStatus) or x.down == (self.verdict.action is not None):
            return None
        if x.down:
            self.verdict = BreakerVerdict(self.name, self.check, "critical", 1.0, 0.0, action="pause_new_entries")
        else:
            self.verdict = BreakerVerdict(self.name, self.check, "ok", 0.0, 0.0)
        return self.verdict
