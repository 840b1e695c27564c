"""Breaker inputs, the verdict a breaker returns, and the contract every breaker follows.

Threshold semantics (one rule for every breaker and tier): a measure TRIPS when
``value >= threshold`` ("at the threshold, not just below"). Floating-point rounding is
absorbed by a relative tolerance of 1e-9 (see ``at_or_above``), so a drawdown computed as
2.9999999999999996 % trips a 3 % threshold while 2.99 % does not.

A breaker is a small object with one job (one check). ``observe`` returns a new
``BreakerVerdict`` only when the check's state changes (level, action, size factor or
cooldown); ``None`` means "not my business, or nothing changed" — this keeps the board's hot
path allocation-free. ``verdict`` always holds the current state.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.market import Bar, BookTick
from bot.core.policy import Action

Level = Literal["ok", "warning", "critical", "emergency"]
LEVEL_RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2, "emergency": 3}
LatencyKind = Literal["placement", "fill"]

MINUTE_MS = 60_000
DAY_MS = 86_400_000
REL_TOL = 1e-9


def at_or_above(value: float, threshold: float) -> bool:
    """`value >= threshold`, tolerant of floating-point rounding (relative 1e-9)."""
    return value >= threshold - REL_TOL * max(1.0, abs(threshold))


class NonFiniteError(ArithmeticError):
    """A breaker's own arithmetic produced NaN or infinity."""


def finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteError(f"{what} is not finite ({value})")
    return value


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EquityUpdate:
    """Real equity: wallet balance plus unrealised P&L."""

    ts_ms: int
    equity: float


@dataclass(frozen=True, slots=True)
class TradeClosed:
    ts_ms: int
    pnl: float


@dataclass(frozen=True, slots=True)
class BookUpdate:
    tick: BookTick

    @property
    def ts_ms(self) -> int:
        return self.tick.ts_ms


@dataclass(frozen=True, slots=True)
class BarClosed:
    bar: Bar

    @property
    def ts_ms(self) -> int:
        return self.bar.ts_ms


@dataclass(frozen=True, slots=True)
class FeedLag:
    ts_ms: int
    lag_ms: float


@dataclass(frozen=True, slots=True)
class InferenceTiming:
    ts_ms: int
    ms: float


@dataclass(frozen=True, slots=True)
class OrderLatency:
    ts_ms: int
    kind: LatencyKind
    ms: float


@dataclass(frozen=True, slots=True)
class TimerTick:
    ts_ms: int


@dataclass(frozen=True, slots=True)
class ExchangeStatus:
    """The venue became unreachable (down) or reachable again."""

    ts_ms: int
    down: bool
    scope: str = "rest"


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The state store stopped (down) or resumed answering."""

    ts_ms: int
    down: bool


BreakerInput = (
    EquityUpdate | TradeClosed | BookUpdate | BarClosed | FeedLag | InferenceTiming | OrderLatency
    | TimerTick | ExchangeStatus | StoreStatus
)


def input_problem(x: object) -> str | None:
    """Why an input is malformed (rejected at the door, never a halt), or None when it is sane."""
    if isinstance(x, EquityUpdate):
        return None if math.isfinite(x.equity) else f"equity not finite ({x.equity})"
    if isinstance(x, TradeClosed):
        return None if math.isfinite(x.pnl) else f"pnl not finite ({x.pnl})"
    if isinstance(x, BookUpdate):
        t = x.tick
        return None if t.is_sane() else f"book tick not sane (bid {t.bid}, ask {t.ask})"
    if isinstance(x, BarClosed):
        b = x.bar
        return None if b.is_sane() else f"bar not sane (o {b.open} h {b.high} l {b.low} c {b.close})"
    if isinstance(x, FeedLag):
        return None if math.isfinite(x.lag_ms) and x.lag_ms >= 0 else f"feed lag not valid ({x.lag_ms})"
    if isinstance(x, InferenceTiming):
        return None if math.isfinite(x.ms) and x.ms >= 0 else f"inference ms not valid ({x.ms})"
    if isinstance(x, OrderLatency):
        if x.kind not in ("placement", "fill"):
            return f"order latency kind {x.kind!r} not one of placement, fill"
        return None if math.isfinite(x.ms) and x.ms >= 0 else f"order latency ms not valid ({x.ms})"
    if isinstance(x, TimerTick | ExchangeStatus | StoreStatus):
        return None
    return f"unknown input type {type(x).__name__}"


# --- verdicts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerVerdict:
    breaker: str  # drawdown | consecutive_losses | volatility | latency
    check: str  # intraday | peak | streak | spread | atr | price_move | websocket | inference | ...
    level: Level
    value: float
    threshold: float
    action: Action | None = None  # None: no action (ok, warning, or a size reduction only)
    size_factor: float = 1.0
    requires_manual_resume: bool = False
    cooldown_until_ms: int | None = None

    @property
    def key(self) -> str:
        return f"{self.breaker}.{self.check}"

    def describe(self) -> str:
        text = f"{self.key} {self.level}: {self.value:g} >= {self.threshold:g}"
        if self.action is not None:
            text += f" ({self.action})"
        if self.size_factor < 1.0:
            text += f" (size x{self.size_factor:g})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker, "check": self.check, "level": self.level,
            "value": self.value, "threshold": self.threshold, "action": self.action,
            "size_factor": self.size_factor, "requires_manual_resume": self.requires_manual_resume,
            "cooldown_until_ms": self.cooldown_until_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BreakerVerdict:
        return cls(
            breaker=str(d["breaker"]), check=str(d["check"]), level=d["level"],
            value=float(d["value"]), threshold=float(d["threshold"]), action=d["action"],
            size_factor=float(d["size_factor"]),
            requires_manual_resume=bool(d["requires_manual_resume"]),
            cooldown_until_ms=None if d["cooldown_until_ms"] is None else int(d["cooldown_until_ms"]),
        )


def ok_verdict(breaker: str, check: str, threshold: float) -> BreakerVerdict:
    return BreakerVerdict(breaker, check, "ok", 0.0, threshold)


def fmt_ms(ms: int) -> str:
    seconds = max(0, ms) // 1000
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Breaker(ABC):
    """One check of one breaker. Subclasses set `name`, `check` and `inputs`."""

    name: str
    check: str
    inputs: tuple[type, ...]

    def __init__(self, threshold: float) -> None:
        self.verdict: BreakerVerdict = ok_verdict(self.name, self.check, threshold)

    @property
    def key(self) -> str:
        return f"{self.name}.{self.check}"

    @abstractmethod
    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        """The new verdict when this input changes the check's state, else None."""

    @property
    def latched(self) -> bool:
        """Tripped and lifted only by a manual reset (or, when allowed, by its cooldown)."""
        return False

    @property
    def deadline_ms(self) -> int | None:
        """When the passage of time alone may change this check (auto-lift), else None."""
        return None

    @property
    def entries_allowed_at_ms(self) -> int:
        return 0

    def reset_blocker(self, now_ms: int) -> str | None:
        """Why a manual reset would be refused at now_ms, or None when it would be accepted."""
        until = self.verdict.cooldown_until_ms
        if self.latched and until is not None and now_ms < until:
            return f"{self.key}: cooldown has {fmt_ms(until - now_ms)} left (until ts {until})"
        return None

    def manual_reset(self, now_ms: int) -> tuple[bool, str]:
        blocker = self.reset_blocker(now_ms)
        if blocker is not None:
            return False, blocker
        if not self.latched:
            return True, f"{self.key}: nothing to reset"
        self._reset(now_ms)
        return True, f"{self.key}: reset"

    def _reset(self, now_ms: int) -> None:
        self.verdict = ok_verdict(self.name, self.check, self.verdict.threshold)

    def snapshot(self) -> dict[str, Any]:
        return {"verdict": self.verdict.to_dict(), **self._state()}

    def restore(self, data: dict[str, Any]) -> None:
        self.verdict = BreakerVerdict.from_dict(data["verdict"])
        self._load(data)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, data: dict[str, Any]) -> None:
        return None
