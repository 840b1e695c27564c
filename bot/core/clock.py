"""Time for the core. The core never reads the wall clock; it is handed a Clock."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class VirtualClock:
    """Deterministic time: `advance` moves the clock and fires due timers in time order."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return self._now

    def call_at(self, ts_ms: int, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (ts_ms, next(self._seq), callback))

    def advance(self, ms: int) -> None:
        self.advance_to(self._now + ms)

    def advance_to(self, ts_ms: int) -> None:
        if ts_ms < self._now:
            raise ValueError(f"virtual time cannot go back: {ts_ms} < {self._now}")
        while self._timers and self._timers[0][0] <= ts_ms:
            due, _, callback = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            callback()
        self._now = ts_ms

    def next_timer_ms(self) -> int | None:
        return self._timers[0][0] if self._timers else None
