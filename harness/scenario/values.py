"""Durations ("N bars", "500ms", ...) and policy references (`{policy: path, plus|times: X}`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from harness.faults.contract import DURATION_FORMS

DurationUnit = Literal["bar", "ms", "s", "m", "h"]
_UNIT_MS: dict[str, int] = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DURATION_RE = re.compile(
    r"^(?P<sign>[-+])?(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>bars?|ms|s|m|h)$")


@dataclass(frozen=True)
class Duration:
    value: float
    unit: DurationUnit

    def to_ms(self, bar_ms: int | None = None) -> int:
        if self.unit == "bar":
            if bar_ms is None:
                raise ValueError(f"{self} needs the bar length to convert to ms")
            return round(self.value * bar_ms)
        return round(self.value * _UNIT_MS[self.unit])

    @property
    def in_bars(self) -> bool:
        return self.unit == "bar"

    def __str__(self) -> str:
        num = f"{self.value:g}"
        if self.unit == "bar":
            return f"{num} bar" if abs(self.value) == 1 else f"{num} bars"
        return f"{num}{self.unit}"

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse "N bars" / "500ms" / "30s" / "5m" / "2h"; ValueError listing the forms otherwise."""
        match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"not a duration; accepted forms: {DURATION_FORMS}")
        value = float(match["num"]) * (-1 if match["sign"] == "-" else 1)
        unit = match["unit"]
        return cls(value, "bar" if unit.startswith("bar") else unit)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PolicyRef:
    """`{policy: dotted.path, plus: X}` or `{policy: dotted.path, times: X}`.

    The resolved number is `value * times + plus`, in the policy value's own unit. For a
    duration param the unit is `unit:` if given, else the path's suffix (`_ms`, `_s`,
    `_seconds`, `_minutes`, `_hours`, `_bars`).
    """

    path: str
    plus: float = 0.0
    times: float = 1.0
    unit: DurationUnit | None = None
    line: int = 0

    def apply(self, value: float) -> float:
        return value * self.times + self.plus

    def __str__(self) -> str:
        text = f"policy {self.path}"
        if self.times != 1.0:
            text += f" x {self.times:g}"
        if self.plus:
            text += f" {'+' if self.plus > 0 else '-'} {abs(self.plus):g}"
        return text


_POLICY_PATH_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+$")
_UNIT_SUFFIXES: tuple[tuple[str, DurationUnit], ...] = (
    ("_ms", "ms"), ("_seconds", "s"), ("_s", "s"), ("_minutes", "m"), ("_hours", "h"),
    ("_bars", "bar"),
)


def policy_unit(path: str) -> DurationUnit | None:
    """The time unit a policy path's name states, if any (`max_lag_seconds` -> s)."""
    last = path.rsplit(".", 1)[-1]
    for suffix, unit in _UNIT_SUFFIXES:
        if last.endswith(suffix):
            return unit
    return None
