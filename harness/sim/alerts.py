"""Alert delivery in sim mode: in-memory receivers on virtual time, driving the bot's real router.

Every channel of config/alerts.yaml gets a `MemoryReceiver` that stands in for Slack, the webhook
endpoint, the mail server, the SMS gateway and the log. The receivers belong to the run, not to
the bot process: they outlive a `restart`, and what reached them is what the harness can prove was
delivered. `SimAlerts` drives the bot's `bot.io.alerts.AlertRouter` the way the live
`AlertDispatcher` does: it starts each attempt the router hands out and reports the outcome after
the receiver's (virtual) answer time. Faults (`alert_sink_outage`, `alert_sink_latency`) open
windows on a receiver: while one is down an attempt fails at once ("connection refused"); while
one is slow, an answer later than the channel's timeout is a timeout.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.io.alerts import Alert, AlertConfig, AlertRouter, Attempt, default_alerts_path, load_alert_config
from harness.sim.constants import P_DELIVERY

if TYPE_CHECKING:
    from harness.sim.world import SimWorld


@dataclass(frozen=True)
class Receipt:
    alert: Alert
    channel: str
    received_ms: int


@dataclass
class MemoryReceiver:
    channel: str
    outages: list[tuple[int, int]] = field(default_factory=list)  # [start, end) virtual ms
    slow: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, extra answer ms)
    received: list[Receipt] = field(default_factory=list)

    def down(self, now: int) -> bool:
        return any(s <= now < e for s, e in self.outages)

    def answer_ms(self, now: int) -> int:
        return max((ms for s, e, ms in self.slow if s <= now < e), default=0)


@functools.lru_cache(maxsize=4)
def _cached_config(path: str, _mtime_ns: int) -> AlertConfig:
    return load_alert_config(path)


def sim_alert_config(path: Path | None = None) -> AlertConfig:
    """config/alerts.yaml (validated once per file version)."""
    p = path or default_alerts_path()
    return _cached_config(str(p), os.stat(p).st_mtime_ns)


class SimAlerts:
    """The run's alert receivers and the driver of the current bot process's router."""

    def __init__(self, world: SimWorld, config: AlertConfig) -> None:
        self.world = world
        self.config = config
        self.receivers = {name: MemoryReceiver(name) for name in config.channels}
        self.router: AlertRouter | None = None

    def attach(self, router: AlertRouter) -> None:
        """The router of a new bot process (the previous one's in-flight attempts die with it)."""
        self.router = router

    def next_deadline_ms(self) -> int | None:
        return self.router.next_deadline_ms() if self.router is not None else None

    def pump(self) -> None:
        """Start every attempt the router has due now; each finishes on the agenda."""
        router = self.router
        if router is None:
            return
        now = self.world.now
        for attempt in router.due():
            receiver = self.receivers[attempt.channel]
            if receiver.down(now):
                delay, error = 0, "connection refused (gameday alert_sink_outage)"
            else:
                delay, error = receiver.answer_ms(now), None
                if delay >= attempt.timeout_ms:
                    delay, error = attempt.timeout_ms, f"no confirmation within {attempt.timeout_ms / 1000:g} s"
            self.world.at(now + delay, functools.partial(self._finish, router, attempt, error), P_DELIVERY)

    def _finish(self, router: AlertRouter, attempt: Attempt, error: str | None) -> None:
        if error is None:
            self.receivers[attempt.channel].received.append(Receipt(attempt.alert, attempt.channel, self.world.now))
        if router is self.router:
            router.finished(attempt, error)

    def unconfirmed(self, events: list[Any]) -> list[str]:
        """alert.sent events no receiver holds (the bot claimed a delivery that did not happen)."""
        got = {(r.channel, r.alert.id) for rec in self.receivers.values() for r in rec.received}
        return [f"{e.fields.get('channel')}:{e.fields.get('id')}" for e in events
                if e.name == "alert.sent" and (e.fields.get("channel"), e.fields.get("id")) not in got]
