"""Shared helpers for the breaker / kill-switch / risk-gate tests (not a test module)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.config import load_policy
from bot.core.breakers.base import BarClosed, BookUpdate, EquityUpdate
from bot.core.breakers.board import BreakerBoard
from bot.core.clock import VirtualClock
from bot.core.events import Event, EventBus
from bot.core.market import Bar, BookTick
from bot.core.policy import Policy

PROFILES = ("futures", "pets")
POLICIES: dict[str, Policy] = {name: load_policy(name).policy for name in PROFILES}
MINUTE = 60_000
DAY = 86_400_000
T0 = 10 * DAY + 3_600_000  # 01:00 UTC on day 10


@dataclass
class Rig:
    policy: Policy
    clock: VirtualClock
    bus: EventBus
    board: BreakerBoard
    events: list[Event] = field(default_factory=list)

    def named(self, name: str, **match: object) -> list[Event]:
        return [e for e in self.events if e.name == name
                and all(e.fields.get(k) == v for k, v in match.items())]

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def at(self, ts: int) -> int:
        self.clock.advance_to(ts)
        return ts

    def equity(self, ts: int, equity: float) -> None:
        self.board.observe(EquityUpdate(self.at(ts), equity))


def rig(policy: Policy, start_ms: int = T0) -> Rig:
    clock = VirtualClock(start_ms)
    bus = EventBus()
    board = BreakerBoard(policy, bus, clock)
    r = Rig(policy, clock, bus, board)
    bus.subscribe(r.events.append)
    return r


def book(ts: int, spread_bps: float, mid: float = 100.0) -> BookUpdate:
    half = mid * spread_bps / 20_000
    return BookUpdate(BookTick(ts, mid - half, mid + half))


def bar(ts: int, close: float, rng: float = 1.0) -> BarClosed:
    return BarClosed(Bar(ts, close, close + rng / 2, close - rng / 2, close))
