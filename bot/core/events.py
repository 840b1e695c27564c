"""The bot's event vocabulary (DESIGN.md "Bot events"): each event's fields and their types, and
the bus the harness subscribes to.

`EVENTS` is the schema: event name -> field name -> `FieldSpec`. It is what scenarios may match
on (harness/scenario/ rejects a field the event does not have, or a value of the wrong type)
and what the bot must emit (`event_problems` checks an emitted event; the harness runs it over
every event of every scenario run and the test suite over every event its tests emit). To add
an event or a field, declare it here:

    "order.refused": {"rule": STR, "side": STR, "qty": NUMBER, "reason": STR},
    "breaker.reset": {..., "actor": optional(STR)},      # emitted only by an operator reset
    "order.placed": {..., "price": nullable(NUMBER)},    # None for a market order

Types: STR, INT (an int, never a bool), NUMBER (an int or a float, never a bool), BOOL,
`enum(*values)` (one of the given strings), OBJECT (a mapping: carried, not matchable).
`nullable(spec)`: the bot may emit None. `optional(spec)`: the bot emits the field only in some
cases (absent otherwise). `EventBus.emit` does not check: it is on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

FieldKind = Literal["str", "int", "number", "bool", "enum", "object"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: FieldKind
    choices: tuple[str, ...] = ()  # enum only
    nullable: bool = False  # the bot may emit None
    optional: bool = False  # the bot emits the field only sometimes

    @property
    def orderable(self) -> bool:
        """lt/le/gt/ge apply (ints and numbers)."""
        return self.kind in ("int", "number")

    def accepts(self, value: Any) -> bool:
        """Whether `value` has this field's type (None only when nullable)."""
        if value is None:
            return self.nullable
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind == "enum":
            return isinstance(value, str) and value in self.choices
        return isinstance(value, Mapping)

    def describe(self) -> str:
        text = {"str": "text", "int": "an integer", "number": "a number", "bool": "true or false",
                "enum": "one of " + ", ".join(self.choices), "object": "a mapping"}[self.kind]
        return text + (" or null" if self.nullable else "")


STR = FieldSpec("str")
INT = FieldSpec("int")
NUMBER = FieldSpec("number")
BOOL = FieldSpec("bool")
OBJECT = FieldSpec("object")


def enum(*choices: str) -> FieldSpec:
    return FieldSpec("enum", tuple(choices))


def nullable(spec: FieldSpec) -> FieldSpec:
    return replace(spec, nullable=True)


def optional(spec: FieldSpec) -> FieldSpec:
    return replace(spec, optional=True)


# Vocabularies the bot's own types define (tests/core/test_events.py keeps them equal to those
# types, which cannot be imported here: they import this module).
BREAKERS = ("drawdown", "consecutive_losses", "volatility", "latency", "exchange_outage", "state_store")
CHECKS = ("intraday", "peak", "streak", "spread", "atr", "price_move", "websocket", "inference",
          "order_placement", "order_fill", "connectivity")
LEVELS = ("warning", "critical", "emergency")  # a tripped breaker's level (never "ok")
ACTIONS = ("pause_new_entries", "pause_trading", "backoff", "halt_trading", "flatten_and_halt")
KILL_MODES = ("immediate", "graceful", "pause")
SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit")
PURPOSES = ("entry", "exit", "stop", "take_profit", "flatten")
ORDER_STATUSES = ("new", "partially_filled", "filled", "canceled", "rejected", "expired")
RECONCILED = (*ORDER_STATUSES, "not_found", "position_adopted")
SCOPES = ("rest", "ws", "all")
SEVERITIES = ("info", "warning", "critical")  # what the bot says of a condition (bot.alert)
ALERT_SEVERITIES = (*SEVERITIES, "emergency")  # what the router delivers (the emergency flatten)
RESUMED_BY = ("cooldown", "operator")
OPEN_REASONS = ("entry", "reconciled")
EXIT_REASONS = ("stop", "take_profit", "time", "volatility")
CLOSE_REASONS = ("exit", *EXIT_REASONS, "killswitch", "emergency")
REFUSAL_RULES = ("invalid", "killswitch", "state", "backoff", "zone", "post_only", "hot_wallet", "stage", "cap",
                 "exposure", "edge", "size")
SIZED_BY = ("kelly", "risk_per_trade", "max_risk_per_trade", "max_position_pct", "max_total_exposure_pct",
            "zone_blocked", "zone_multiplier", "size_factor", "no_edge", "invalid_input")
PLANS = ("new", "restored")  # an exit plan made now, or the one saved with the position
CANCEL_SCOPES = ("all", "entries")

_ORDER: dict[str, FieldSpec] = {
    "client_id": STR, "side": enum(*SIDES), "qty": NUMBER, "price": nullable(NUMBER),  # None: market
    "reduce_only": BOOL, "code": nullable(INT),
}
_POSITION: dict[str, FieldSpec] = {
    "symbol": STR, "qty": NUMBER, "entry": NUMBER, "exit": nullable(NUMBER), "pnl": nullable(NUMBER),
}
# The pets checklist's "RED FLAGS - STOP IMMEDIATELY": the values of redflag.raised{flag}.
RED_FLAGS: dict[str, str] = {
    "private_key_logged": "Private key logged",
    "breaker_not_working": "Circuit breaker not working",
    "emergency_stop_failed": "Emergency stop fails",
    "win_rate_low": "Win rate <50%",
    "drawdown_over_40pct": "Drawdown >40%",
    "gas_costs_high": "Gas costs >$50/day",
    "monitoring_down": "Monitoring down",
    "alerts_not_received": "Alerts not received",
    "backup_failed": "Database backup failed",
    "unauthorized_access": "Unauthorized access attempt",
}
# A routed alert: one delivery attempt chain on one channel (alert.sent = delivery confirmed).
_ALERT: dict[str, FieldSpec] = {"id": STR, "channel": STR, "severity": enum(*ALERT_SEVERITIES), "title": STR,
                                "key": STR, "attempts": INT}

EVENTS: Mapping[str, Mapping[str, FieldSpec]] = {
    "breaker.warning": {"breaker": enum(*BREAKERS), "check": enum(*CHECKS), "level": enum("warning"),
                        "value": NUMBER, "threshold": NUMBER},
    # value/threshold are None and `error` says why when the breaker's own arithmetic failed
    "breaker.tripped": {"breaker": enum(*BREAKERS), "check": enum(*CHECKS), "level": enum(*LEVELS),
                        "value": nullable(NUMBER), "threshold": nullable(NUMBER),
                        "action": enum(*ACTIONS), "error": optional(STR)},
    "breaker.reset": {"breaker": enum(*BREAKERS), "check": enum(*CHECKS), "by": enum(*RESUMED_BY),
                      "actor": optional(STR)},
    "sizing.reduced": {"factor": NUMBER, "reason": STR},
    "trading.paused": {"reason": STR},
    "trading.halted": {"reason": STR, "requires_manual_resume": BOOL},
    "trading.resumed": {"by": enum(*RESUMED_BY), "actor": optional(STR)},
    "resume.refused": {"by": STR, "reason": STR, "actor": optional(STR)},
    "killswitch.engaged": {"mode": enum(*KILL_MODES), "reason": nullable(STR), "actor": nullable(STR)},
    "killswitch.cleared": {"actor": STR},
    "killswitch.rejected": {"reason": STR, "actor": STR},
    # qty_pct (notional as % of equity) and sized_by (the binding sizing constraint): entries only
    "order.placed": {**_ORDER, "type": enum(*ORDER_TYPES), "purpose": enum(*PURPOSES), "post_only": BOOL,
                     "qty_pct": optional(nullable(NUMBER)), "sized_by": optional(nullable(enum(*SIZED_BY)))},
    "order.filled": dict(_ORDER),
    "order.rejected": dict(_ORDER),
    "order.unknown": dict(_ORDER),
    # status position_adopted: a position found on the exchange, not an order of ours
    "order.reconciled": {**_ORDER, "client_id": nullable(STR), "side": nullable(enum(*SIDES)),
                         "reduce_only": nullable(BOOL), "status": enum(*RECONCILED)},
    "order.refused": {"rule": enum(*REFUSAL_RULES), "side": enum(*SIDES), "qty": NUMBER, "reason": STR},
    # scope all: every resting order (a flatten); entries: one resting entry (client_id)
    "orders.cancelled": {"count": INT, "scope": enum(*CANCEL_SCOPES), "client_id": nullable(STR), "reason": STR},
    "position.opened": {**_POSITION, "reason": enum(*OPEN_REASONS), "plan": enum(*PLANS), "stop": NUMBER,
                        "take_profit": NUMBER},
    "position.closed": {**_POSITION, "reason": enum(*CLOSE_REASONS)},
    "account.flat": {},
    "feed.stale": {"lag_ms": NUMBER},
    "feed.recovered": {"lag_ms": NUMBER},
    "exchange.down": {"scope": enum(*SCOPES), "error": nullable(STR)},
    "exchange.up": {"scope": enum(*SCOPES), "error": nullable(STR)},
    "state.restored": {"breakers": OBJECT, "killswitch": OBJECT},
    "startup.refused": {"reason": STR},
    # the process started trading (banner printed) and stopped (reason: a signal, a refusal, a restart...)
    "bot.started": {"symbol": STR, "exchange": STR, "pid": INT, "trading": enum("active", "paused", "halted"),
                    "killswitch": enum("engaged", "clear"), "board": enum("active", "reduced", "paused", "halted")},
    "bot.stopped": {"reason": STR, "exit_code": INT, "signal": nullable(STR)},
    "audit.repaired": {"cut_bytes": INT, "cut_sha256": STR},
    # the store held no state (or older / unreadable state) while the audit log witnessed a save
    "state.lost": {"reason": STR, "store": STR, "key": STR, "expected_generation": nullable(INT),
                   "found_generation": nullable(INT)},
    # the bot states a condition someone must hear of; the alert router decides who (bot/io/alerts.py)
    "bot.alert": {"severity": enum(*SEVERITIES), "key": STR, "title": STR},
    "alert.sent": {**_ALERT, "delivery_ms": NUMBER, "fallback_for": nullable(STR)},
    "alert.failed": {**_ALERT, "error": STR, "fallback": nullable(STR)},
    "redflag.raised": {"flag": enum(*RED_FLAGS), "detail": STR},
    # the capital ramp (capital_ramp.stages): an approved advance, or why one was refused
    "ramp.advanced": {"stage": STR, "previous": STR, "actor": STR},
    "ramp.refused": {"stage": STR, "actor": nullable(STR), "reason": STR},
    # where: the kind of place and the place (log:/path:LINE, repo:/repo@commit:file, paste:/path:LINE)
    "credential.leak_detected": {"key_id": STR, "where": STR},
    "credential.revoked": {"key_id": STR},
    "credential.rotated": {"key_id": STR},
    # elapsed_ms: from the incident (its detection); actor: automated or the RBAC role who did it
    "runbook.step_done": {"runbook": STR, "step": STR, "elapsed_ms": NUMBER, "actor": STR},
}

EVENT_NAMES: frozenset[str] = frozenset(EVENTS)



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


def event_problems(event: Event) -> list[str]:
    """How `event` breaks the schema (empty: it conforms): an unknown name, a required field
    missing, a field the schema does not declare, a value of the wrong type."""
    spec = EVENTS.get(event.name)
    if spec is None:
        return [f"unknown event name {event.name!r}"]
    problems = []
    for name, fs in spec.items():
        if name not in event.fields:
            if not fs.optional:
                problems.append(f"{event.name}: field {name!r} missing (declared {fs.describe()})")
        elif not fs.accepts(event.fields[name]):
            problems.append(f"{event.name}: field {name!r} is {event.fields[name]!r}, "
                            f"declared {fs.describe()}")
    for name in event.fields:
        if name not in spec:
            problems.append(f"{event.name}: field {name!r} is not declared "
                            f"(declared: {', '.join(spec) or 'none'})")
    return problems


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
