"""Market data primitives and incremental indicators: O(1) per bar, no history scans."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bar:
    ts_ms: int  # close time
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0

    def is_sane(self) -> bool:
        values = (self.open, self.high, self.low, self.close)
        return (all(math.isfinite(v) and v > 0 for v in values)
                and self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close))


@dataclass(frozen=True, slots=True)
class BookTick:
    ts_ms: int
    bid: float
    ask: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> float:
        return (self.ask - self.bid) / self.mid * 10_000

    def is_sane(self) -> bool:
        return math.isfinite(self.bid) and math.isfinite(self.ask) and 0 < self.bid <= self.ask


class IncrementalATR:
    """Wilder's average true range; `value` is None until `periods` bars have been seen."""

    def __init__(self, periods: int) -> None:
        self.periods = periods
        self._prev_close: float | None = None
        self._count = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, bar: Bar) -> float | None:
        prev = self._prev_close
        tr = bar.high - bar.low if prev is None else max(
            bar.high - bar.low, abs(bar.high - prev), abs(bar.low - prev))
        self._prev_close = bar.close
        if self.value is None:
            self._count += 1
            self._sum += tr
            if self._count == self.periods:
                self.value = self._sum / self.periods
        else:
            self.value += (tr - self.value) / self.periods
        return self.value


class RollingMean:
    """Mean of the last `window` values."""

    def __init__(self, window: int) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    def update(self, value: float) -> float:
        if len(self._values) == self._values.maxlen:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        return self._sum / len(self._values)

    @property
    def full(self) -> bool:
        return len(self._values) == self._values.maxlen

    @property
    def mean(self) -> float | None:
        return self._sum / len(self._values) if self._values else None
