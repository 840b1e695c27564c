"""Latency: market-data lag, model inference time, order placement / fill time.

- websocket (FeedLag): lag_ms >= max_lag_seconds * 1000 -> `action` (pause). Lifts on the
  first message whose lag is back below the limit.
- inference (InferenceTiming): nearest-rank p95 and p99 over the last `window` timings (judged
  from the first timing: with fewer samples than the window the percentile leans to the max,
  which fails safe). p99 >= p99_ms or p95 >= p95_ms -> critical, `action` (pause); the verdict
  names the percentile that breached (p99 first). Lifts when both are back below.
- order_placement / order_fill (OrderLatency): ms >= max_ms -> `action` (backoff): new entries
  wait min(initial_ms * multiplier ** n, backoff.max_ms) from the breach, n = breaches in a
  row before this one; `entries_allowed_at_ms` exposes the time. A sample below the limit
  lifts the check and resets n (the delay already imposed still runs out).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

from bot.core.breakers.base import (
    Breaker,
    BreakerInput,
    BreakerVerdict,
    FeedLag,
    InferenceTiming,
    Level,
    OrderLatency,
    at_or_above,
    finite,
)
from bot.core.policy import Backoff, InferenceLatency, WebsocketLatency
from bot.core.policy import OrderLatency as OrderLatencyPolicy


class WebsocketLagBreaker(Breaker):
    name = "latency"
    check = "websocket"
    inputs: tuple[type, ...] = (FeedLag,)

    def __init__(self, policy: WebsocketLatency) -> None:
        self._limit = policy.max_lag_seconds * 1000.0
        super().__init__(self._limit)
        self._policy = policy

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, FeedLag):
            return None
        tripped = at_or_above(x.lag_ms, self._limit)
        if tripped == (self.verdict.action is not None):
            return None
        if tripped:
            self.verdict = BreakerVerdict(self.name, self.check, "critical", x.lag_ms, self._limit,
                                          action=self._policy.action)
        else:
            self.verdict = BreakerVerdict(self.name, self.check, "ok", x.lag_ms, self._limit)
        return self.verdict


class InferenceLatencyBreaker(Breaker):
    name = "latency"
    check = "inference"
    inputs: tuple[type, ...] = (InferenceTiming,)

    def __init__(self, policy: InferenceLatency) -> None:
        super().__init__(policy.p95_ms)
        self._policy = policy
        self._window: deque[float] = deque(maxlen=policy.window)
        self._sorted: list[float] = []

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (q in (0, 100]) of the timings in the window."""
        s = self._sorted
        rank = max(1, math.ceil(q / 100.0 * len(s)))
        return s[rank - 1]

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, InferenceTiming):
            return None
        window, s = self._window, self._sorted
        if len(window) == window.maxlen:
            del s[bisect.bisect_left(s, window[0])]
        window.append(x.ms)
        bisect.insort(s, x.ms)
        p = self._policy
        p99 = finite(self.percentile(99.0), "inference p99")
        p95 = finite(self.percentile(95.0), "inference p95")
        level: Level = "ok"
        value, threshold = p95, p.p95_ms
        if at_or_above(p99, p.p99_ms):
            level, value, threshold = "critical", p99, p.p99_ms
        elif at_or_above(p95, p.p95_ms):
            level = "critical"
        if level == self.verdict.level:
            return None
        self.verdict = BreakerVerdict(self.name, self.check, level, value, threshold,
                                      action=p.action if level == "critical" else None)
        return self.verdict

    def _state(self) -> dict[str, Any]:
        return {"window": list(self._window)}

    def _load(self, data: dict[str, Any]) -> None:
        self._window = deque((float(v) for v in data["window"]), maxlen=self._policy.window)
        self._sorted = sorted(self._window)


class OrderLatencyBreaker(Breaker):
    name = "latency"
    inputs: tuple[type, ...] = (OrderLatency,)

    def __init__(self, kind: str, policy: OrderLatencyPolicy, backoff: Backoff) -> None:
        self.kind = kind
        self.check = f"order_{kind}"
        super().__init__(policy.max_ms)
        self._policy = policy
        self._backoff = backoff
        self.breaches = 0
        self._allowed_at = 0

    def delay_ms(self, breaches: int) -> float:
        b = self._backoff
        return min(b.initial_ms * b.multiplier ** breaches, b.max_ms)

    @property
    def entries_allowed_at_ms(self) -> int:
        return self._allowed_at

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if not isinstance(x, OrderLatency) or x.kind != self.kind:
            return None
        limit = self._policy.max_ms
        if at_or_above(x.ms, limit):
            delay = int(finite(self.delay_ms(min(self.breaches, 64)), "backoff delay"))
            self.breaches += 1
            self._allowed_at = max(self._allowed_at, x.ts_ms + delay)
            self.verdict = BreakerVerdict(self.name, self.check, "critical", x.ms, limit,
                                          action=self._policy.action,
                                          cooldown_until_ms=self._allowed_at)
            return self.verdict
        self.breaches = 0
        if self.verdict.level == "ok":
            return None
        self.verdict = BreakerVerdict(self.name, self.check, "ok", x.ms, limit)
        return self.verdict

    def _state(self) -> dict[str, Any]:
        return {"breaches": self.breaches, "allowed_at": self._allowed_at}

    def _load(self, data: dict[str, Any]) -> None:
        self.breaches = int(data["breaches"])
        self._allowed_at = int(data["allowed_at"])
