"""The bot's event vocabulary (DESIGN.md "Bot events") and the bus the harness subscribes to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

EVENT_NAMES: frozenset[str] = frozenset(
    {
        "breaker.warning",
        "breaker.tripped",
        "breaker.reset",
        "sizing.reduced",
        "trading.paused",
        "trading.halted",
        "trading.resumed",
        "resume.refused",
        "killswitch.engaged",
        "killswitch.cleared",
        "killswitch.rejected",
        "order.placed",
        "order.filled",
        "order.rejected",
        "order.unknown",
        "order.reconciled",
        "order.refused",
        "orders.cancelled",
        "position.opened",
        "position.closed",
        "account.flat",
        "feed.stale",
        "feed.recovered",
        "exchange.down",
        "exchange.up",
        "state.restored",
        "state.lost",
        "startup.refused",
        "alert.sent",
        "credential.leak_detected",
        "credential.revoked",
        "credential.rotated",
        "runbook.step_done",
        "audit.repaired",
    }
)


class UnknownEventError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    ts_ms: int
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ts_ms": self.ts_ms, **self.fields}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        rest = {k: v for k, v in data.items() if k not in ("name", "ts_ms")}
        return cls(name=str(data["name"]), ts_ms=int(data["ts_ms"]), fields=rest)


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out. A subscriber that raises does not stop delivery to the others."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.errors: list[BaseException] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, name: str, ts_ms: int, **fields: Any) -> Event:
        if name not in EVENT_NAMES:
            raise UnknownEventError(f"unknown event name {name!r}; known: {sorted(EVENT_NAMES)}")
        event = Event(name, ts_ms, fields)
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # a broken observer must not break the bot
                self.errors.append(exc)
        return event
