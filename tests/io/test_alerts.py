"""The alert router: its config, the full routing table, dedup and rate limits, retries, fallbacks,
the bounded queue, heartbeats, redaction - on a virtual clock, with a driver that plays the sinks."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import ConfigError
from bot.core.clock import VirtualClock
from bot.core.events import EVENT_NAMES, RED_FLAGS, Event, EventBus
from bot.io.alerts import (
    DESCRIBERS,
    AlertDispatcher,
    AlertRouter,
    Redactor,
    default_alerts_path,
    load_alert_config,
    parse_alert_config,
)

T0 = 1_767_571_200_000
CHANNELS = ("log", "slack", "webhook", "email", "sms")
DEFAULT = load_alert_config()


@dataclass
class Rig:
    """A router on a virtual clock; `outcome(channel, now)` decides each attempt (None = delivered)
    and `answer_ms` how long the receiver takes."""

    config: Any = DEFAULT
    available: tuple[str, ...] = CHANNELS
    outcome: Callable[[str, int], str | None] = lambda channel, now: None
    answer_ms: Callable[[str], int] = lambda channel: 0
    refused_after_ms: int = 0  # how long a refusal takes to reach the router (a loaded machine: longer)
    heartbeat_ms: int | None = None
    equity: float | None = 10_000.0
    clock: VirtualClock = field(default_factory=lambda: VirtualClock(T0))
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus = EventBus()
        self.bus.subscribe(self.events.append)
        self.router = AlertRouter(self.config, self.clock, self.bus, available=self.available,
                                  redactor=Redactor(["sk-live-SECRET-1234567890"], env={}),
                                  equity=lambda: self.equity, heartbeat_ms=self.heartbeat_ms)
        self.bus.subscribe(self.router)
        self._finishing: list[tuple[int, Any, str | None]] = []

    def emit(self, name: str, **fields: Any) -> None:
        self.bus.emit(name, self.clock.now_ms(), **fields)

    def run(self, ms: int) -> None:
        """Play the router's deadlines and the receivers' answers for `ms` of virtual time."""
        end = self.clock.now_ms() + ms
        while True:
            for attempt in self.router.due():
                now = self.clock.now_ms()
                error = self.outcome(attempt.channel, now)
                delay = self.answer_ms(attempt.channel) if error is None else self.refused_after_ms
                if delay >= attempt.timeout_ms:
                    delay, error = attempt.timeout_ms, "timed out"
                self._finishing.append((now + delay, attempt, error))
            times = [t for t, _, _ in self._finishing]
            deadline = self.router.next_deadline_ms()
            if deadline is not None:
                times.append(max(deadline, self.clock.now_ms()))
            nxt = min(times, default=None)
            if nxt is None or nxt > end:
                break
            self.clock.advance_to(nxt)
            due = [f for f in self._finishing if f[0] <= nxt]
            self._finishing = [f for f in self._finishing if f[0] > nxt]
            for _, attempt, error in due:
                self.router.finished(attempt, error)
        self.clock.advance_to(end)

    def of(self, name: str, **match: Any) -> list[Event]:
        return [e for e in self.events if e.name == name and all(e.fields.get(k) == v for k, v in match.items())]


def _config(**changes: Any) -> Any:
    data = yaml.safe_load(default_alerts_path().read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_alert_config(data)


# --------------------------------------------------------------------------------------------
# config/alerts.yaml
# --------------------------------------------------------------------------------------------


def test_the_shipped_config_loads_and_names_only_real_events() -> None:
    assert set(DEFAULT.events) <= EVENT_NAMES
    assert set(DEFAULT.channels) == set(CHANNELS)
    assert DEFAULT.routes["critical"] == ("slack", "email") and DEFAULT.routes["emergency"][-1] == "sms"


@pytest.mark.parametrize("change,key,fragment", [
    ({"routes__critical": ["slack", "emial"]}, "routes.critical[1]", "did you mean 'email'"),
    ({"routes__urgent": ["slack"]}, "routes.urgent", "unknown severity"),
    ({"events__breaker.trippd": "critical"}, "events.breaker.trippd", "not an event name"),
    ({"events__order.placed": "info"}, "events.order.placed", "not an event the router can describe"),
    ({"events__trading.halted": "severe"}, "events.trading.halted.severity", "not an allowed value"),
    ({"channels__slack__fallback": "slack"}, "channels.slack.fallback", "falls back to itself"),
    ({"channels__slack__timeout_seconds": 0}, "channels.slack.timeout_seconds", "out of range"),
    ({"channels__slack__url": {"secrets": "X"}}, "channels.slack.url", "wrong form"),
    ({"channels__pager": {"type": "pager"}}, "channels.pager.type", "unknown channel type"),
    ({"channels__slack__timeout": 2}, "channels.slack.timeout", "unknown key"),
    ({"retry__initial_backoff_seconds": 5}, "retry.initial_backoff_seconds", "above its maximum"),
    ({"heartbeat__channels": ["pagerduty"]}, "heartbeat.channels[0]", "unknown channel"),
    ({"dedup_secs": 60}, "dedup_secs", "did you mean 'dedup_seconds'"),
])
def test_a_config_mistake_is_one_line_naming_file_key_value_and_what_is_allowed(
        change: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**change)
    lines = [str(p) for p in info.value.problems]
    mine = [line for line in lines if line.startswith(f"alerts.yaml: {key}: ")]
    assert mine and fragment in mine[0] and "(got " in mine[0] and "expected " in mine[0], lines


def test_a_missing_route_and_unreadable_file_are_errors(tmp_path: Path) -> None:
    data = yaml.safe_load(default_alerts_path().read_text())
    del data["routes"]["info"]
    with pytest.raises(ConfigError, match=r"routes.info: missing route"):
        parse_alert_config(data)
    broken = tmp_path / "alerts.yaml"
    broken.write_text("routes: [unclosed\n")
    with pytest.raises(ConfigError, match=r"alerts.yaml: \(syntax\): cannot parse"):
        load_alert_config(broken)


# --------------------------------------------------------------------------------------------
# The full routing table: every alert-worthy event, every refinement, every red flag
# --------------------------------------------------------------------------------------------

SAMPLES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "breaker.warning": [({"breaker": "drawdown", "check": "intraday", "level": "warning", "value": 2.1,
                          "threshold": 2.0}, "warning")],
    "breaker.tripped": [
        ({"breaker": "drawdown", "check": "intraday", "level": "critical", "value": 3.1, "threshold": 3.0,
          "action": "halt_trading"}, "critical"),
        ({"breaker": "drawdown", "check": "intraday", "level": "emergency", "value": 5.1, "threshold": 5.0,
          "action": "flatten_and_halt"}, "emergency"),
        ({"breaker": "volatility", "check": "spread", "level": "critical", "value": 51, "threshold": 50,
          "action": "pause_new_entries"}, "warning"),
        ({"breaker": "latency", "check": "order_fill", "level": "critical", "value": 6000, "threshold": 5000,
          "action": "backoff"}, "warning"),
        ({"breaker": "drawdown", "check": "peak", "level": "critical", "value": None, "threshold": None,
          "action": "halt_trading", "error": "ZeroDivisionError"}, "critical"),
    ],
    "breaker.reset": [({"breaker": "drawdown", "check": "intraday", "by": "operator", "actor": "ops"}, "info")],
    "sizing.reduced": [({"factor": 0.5, "reason": "3 losses"}, "warning")],
    "trading.paused": [({"reason": "ws lag"}, "warning")],
    "trading.halted": [({"reason": "drawdown", "requires_manual_resume": True}, "critical")],
    "trading.resumed": [({"by": "cooldown"}, "info")],
    "killswitch.engaged": [({"mode": "immediate", "reason": "breach", "actor": "ops"}, "emergency"),
                           ({"mode": "graceful", "reason": "close", "actor": "ops"}, "critical"),
                           ({"mode": "pause", "reason": "look", "actor": "ops"}, "critical")],
    "killswitch.cleared": [({"actor": "ops"}, "warning")],
    "killswitch.rejected": [({"reason": "bad token", "actor": "mallory"}, "critical")],
    "account.flat": [({}, "info")],
    "exchange.down": [({"scope": "rest", "error": "503"}, "critical")],
    "exchange.up": [({"scope": "rest", "error": None}, "info")],
    "startup.refused": [({"reason": "key can withdraw"}, "critical")],
    "credential.leak_detected": [({"key_id": "k1", "where": "log:logs/bot.log:3"}, "emergency")],
    "credential.revoked": [({"key_id": "k1"}, "critical")],
    "credential.rotated": [({"key_id": "k1"}, "info")],
    "redflag.raised": [({"flag": flag, "detail": "drill"}, "emergency") for flag in RED_FLAGS],
    "bot.alert": [({"severity": s, "key": f"io.{s}", "title": f"an {s} trouble"}, s)
                  for s in ("info", "warning", "critical")],
}


def test_every_alert_worthy_event_has_a_sample_here() -> None:
    assert set(SAMPLES) == set(DEFAULT.events) == set(DESCRIBERS)


@pytest.mark.parametrize("name,fields,severity", [(n, f, s) for n, cases in SAMPLES.items() for f, s in cases])
def test_routing_table(name: str, fields: dict[str, Any], severity: str) -> None:
    rig = Rig()
    rig.emit(name, **fields)
    rig.run(100)
    sent = rig.of("alert.sent")
    wanted = {"info": {"slack"}, "warning": {"slack"}, "critical": {"slack", "email"},
              "emergency": {"slack", "email", "sms"}}[severity]
    assert {e.fields["channel"] for e in sent} == wanted
    assert {e.fields["severity"] for e in sent} == {severity}
    assert len({e.fields["id"] for e in sent}) == 1, "one alert, one id on every channel"
    assert all(e.fields["delivery_ms"] == 0 and e.fields["attempts"] == 1 for e in sent)
    if name == "redflag.raised":
        assert sent[0].fields["title"].startswith("RED FLAG - STOP IMMEDIATELY: " + RED_FLAGS[fields["flag"]])


@pytest.mark.off_schema
def test_events_outside_the_table_do_not_alert() -> None:
    rig = Rig()
    for name in ("order.placed", "feed.stale", "state.restored", "position.opened"):
        rig.emit(name, x=1)
    rig.run(100)
    assert not rig.of("alert.sent")


@pytest.mark.parametrize("pnl,alerts", [(-99.99, False), (-101.0, True), (250.0, False)])
def test_a_large_loss_alerts_at_its_threshold_share_of_equity(pnl: float, alerts: bool) -> None:
    rig = Rig(equity=10_000.0 + pnl)  # equity after the loss; 1% of the 10,000 before it is 100
    rig.emit("position.closed", symbol="BTCUSDT", qty=0.1, entry=60000, exit=59000, pnl=pnl, reason="stop")
    rig.run(100)
    sent = rig.of("alert.sent", key="large_loss")
    assert bool(sent) is alerts
    if alerts:
        assert {e.fields["channel"] for e in sent} == {"slack", "email"}


# --------------------------------------------------------------------------------------------
# Dedup and rate limits
# --------------------------------------------------------------------------------------------


def test_a_storm_of_22800_identical_alerts_sends_one_and_then_one_summary() -> None:
    rig = Rig()
    for _ in range(22_800):
        rig.emit("bot.alert", severity="warning", key="exchange.rate_limited", title="rate limited on reconcile")
        rig.clock.advance(1)
    rig.run(120_000)
    sent = [e for e in rig.of("alert.sent", channel="slack")]
    assert len(sent) == 2, [e.fields["title"] for e in sent]
    assert sent[1].fields["title"].startswith("22799 more alerts like this were suppressed")
    assert rig.router.stats.suppressed == 22_799


def test_the_rate_limit_holds_a_key_to_its_maximum_per_window_whatever_the_title() -> None:
    rig = Rig()
    for i in range(12):
        rig.emit("bot.alert", severity="warning", key="clock.resynced", title=f"resynced by {i} ms")
    rig.run(61_000)
    titles = [e.fields["title"] for e in rig.of("alert.sent", channel="slack")]
    assert titles[:5] == [f"resynced by {i} ms" for i in range(5)]
    assert len(titles) == 6 and "7 more alerts" in titles[5]


def test_other_keys_are_not_held_back_by_a_storm() -> None:
    rig = Rig()
    for _ in range(100):
        rig.emit("bot.alert", severity="warning", key="exchange.rate_limited", title="rate limited")
    rig.emit("trading.halted", reason="drawdown", requires_manual_resume=True)
    rig.run(100)
    assert rig.of("alert.sent", key="trading.halted", channel="email")


def test_a_changed_severity_is_not_a_duplicate() -> None:
    rig = Rig()
    rig.emit("bot.alert", severity="warning", key="k", title="same")
    rig.emit("bot.alert", severity="critical", key="k", title="same")
    rig.run(100)
    assert [e.fields["severity"] for e in rig.of("alert.sent", channel="slack")] == ["warning", "critical"]


# --------------------------------------------------------------------------------------------
# Retries, fallbacks, the failing-channel fast path
# --------------------------------------------------------------------------------------------


def test_a_refusing_channel_is_retried_with_backoff_then_its_fallback_delivers() -> None:
    rig = Rig(outcome=lambda ch, now: "connection refused" if ch == "slack" else None)
    rig.emit("trading.halted", reason="drawdown", requires_manual_resume=True)
    rig.run(5_000)
    [failed] = rig.of("alert.failed")
    assert failed.fields["channel"] == "slack" and failed.fields["attempts"] == 3
    assert failed.fields["fallback"] == "webhook" and failed.fields["error"] == "connection refused"
    assert failed.ts_ms - T0 == 600, "attempts at 0, 200 and 600 ms (backoff 0.2 s doubling)"
    [via] = rig.of("alert.sent", channel="webhook")
    assert via.fields["fallback_for"] == "slack" and via.fields["delivery_ms"] == 600
    assert rig.of("alert.sent", channel="email")[0].fields["fallback_for"] is None


def test_slow_refusals_leave_no_room_for_the_last_try_and_the_fallback_is_not_delayed_for_it() -> None:
    """`attempts` is a maximum inside the budget: a try is only started when it (timeout included)
    ends within give_up_after_seconds, so the fallback keeps its room in the 5 s SLA. Refusals that
    take 400 ms to come back (a loaded machine, net mode) fit two tries, not three."""
    rig = Rig(outcome=lambda ch, now: "connection refused" if ch == "slack" else None, refused_after_ms=400)
    rig.emit("trading.halted", reason="drawdown", requires_manual_resume=True)
    rig.run(5_000)
    [failed] = rig.of("alert.failed")
    assert (failed.fields["attempts"], failed.ts_ms - T0) == (2, 1_000), "tries at 0 and 600 ms; a third at 1.4 s " \
        "could time out at 2.9 s, past the 2.5 s budget"
    [via] = rig.of("alert.sent", channel="webhook")
    assert via.fields["fallback_for"] == "slack" and via.fields["delivery_ms"] == 1_000


def test_a_timeout_counts_against_the_budget_so_the_fallback_still_meets_5_s() -> None:
    rig = Rig(answer_ms=lambda ch: 0 if ch == "log" else 10_000)  # every receiver far too slow but the log
    rig.emit("trading.halted", reason="drawdown", requires_manual_resume=True)
    rig.run(20_000)
    failed = rig.of("alert.failed")
    assert {e.fields["channel"] for e in failed} == {"slack", "email", "webhook"}
    assert all(e.fields["attempts"] == 1 for e in failed), "a 1.5 s timeout leaves no room for a retry in 2.5 s"
    [log] = rig.of("alert.sent", channel="log")
    assert log.fields["delivery_ms"] <= 5_000, log.fields


def test_a_failed_channel_gets_one_try_per_alert_until_it_delivers_again() -> None:
    down = {"on": True}
    rig = Rig(outcome=lambda ch, now: "refused" if ch == "slack" and down["on"] else None)
    rig.emit("trading.halted", reason="a", requires_manual_resume=True)
    rig.run(5_000)
    rig.emit("trading.paused", reason="b")
    rig.run(5_000)
    assert [e.fields["attempts"] for e in rig.of("alert.failed", channel="slack")] == [3, 1]
    down["on"] = False
    rig.emit("trading.resumed", by="cooldown")
    rig.run(1_000)
    assert rig.of("alert.sent", channel="slack", key="trading.resumed")
    rig.emit("trading.paused", reason="c")
    rig.run(1_000)
    assert "slack" not in rig.router.failing


def test_a_chain_never_visits_a_channel_twice_and_ends_at_the_log() -> None:
    rig = Rig(outcome=lambda ch, now: None if ch == "log" else "down")
    rig.emit("killswitch.engaged", mode="immediate", reason="r", actor="a")
    rig.run(30_000)
    by_alert = [(e.fields["channel"], e.fields["fallback"]) for e in rig.of("alert.failed")]
    assert ("sms", "webhook") in by_alert and ("slack", "webhook") in by_alert
    assert sum(1 for ch, _ in by_alert if ch == "webhook") == 1, "webhook is tried once for the alert"
    assert sum(1 for ch, _ in by_alert if ch == "log") == 0
    [log] = rig.of("alert.sent", channel="log")
    assert log.fields["fallback_for"] in ("slack", "email", "sms")


def test_an_unconfigured_channel_is_replaced_by_its_fallback_chain() -> None:
    rig = Rig(available=("log", "webhook"))
    rig.emit("trading.halted", reason="dd", requires_manual_resume=True)
    rig.run(100)
    sent = rig.of("alert.sent")
    assert [(e.fields["channel"], e.fields["fallback_for"]) for e in sent] == [("webhook", "slack")]
    assert not rig.of("alert.failed")


# --------------------------------------------------------------------------------------------
# The bounded queue, the heartbeat, redaction, never breaking the bot
# --------------------------------------------------------------------------------------------


def test_a_full_queue_drops_the_least_severe_and_says_so() -> None:
    rig = Rig(config=_config(queue_max=3), answer_ms=lambda ch: 1_000)
    for i in range(3):
        rig.emit("bot.alert", severity="info", key=f"k{i}", title="info")
    rig.emit("bot.alert", severity="critical", key="urgent", title="urgent")
    assert rig.router.pending() <= 3
    rig.run(5_000)
    dropped = [e for e in rig.of("alert.failed") if e.fields["error"].startswith("dropped")]
    assert dropped and all(e.fields["severity"] == "info" for e in dropped)
    assert rig.of("alert.sent", key="urgent")


def test_the_heartbeat_goes_out_on_its_channel_without_fallback() -> None:
    down = {"on": False}
    rig = Rig(heartbeat_ms=60_000, outcome=lambda ch, now: "down" if down["on"] else None)
    rig.run(180_000)
    beats = rig.of("alert.sent", key="heartbeat")
    assert [e.ts_ms - T0 for e in beats] == [60_000, 120_000, 180_000]
    assert {e.fields["channel"] for e in beats} == {"webhook"}
    assert rig.router.last_success_ms["webhook"] == T0 + 180_000
    down["on"] = True
    rig.run(61_000)
    [failed] = rig.of("alert.failed", key="heartbeat")
    assert failed.fields["fallback"] is None and not rig.of("alert.sent", channel="log")


def test_secrets_never_reach_an_alert() -> None:
    rig = Rig(outcome=lambda ch, now: "HTTP 403 for https://hooks.example/sk-live-SECRET-1234567890" if ch == "slack"
              else None)
    rig.emit("exchange.down", scope="rest", error="auth failed: apiKey=AKIA1234 secret=sk-live-SECRET-1234567890")
    rig.emit("bot.alert", severity="critical", key="k", title="token: abcdefgh-leaked password=hunter2hunter2")
    rig.run(5_000)
    text = repr([e.fields for e in rig.events if e.name.startswith("alert.")])
    for leaked in ("sk-live-SECRET-1234567890", "abcdefgh-leaked", "hunter2hunter2"):
        assert leaked not in text
    assert "secret=***" in text and "***" in text
    alert = rig.router.classify(Event("exchange.down", T0, {"scope": "rest", "error": "x sk-live-SECRET-1234567890"}))
    assert alert is not None and "sk-live" not in repr(alert.to_dict())


@pytest.mark.off_schema
def test_a_broken_event_never_raises_into_the_bot() -> None:
    rig = Rig()

    class Unprintable:
        def __format__(self, spec: str) -> str:
            raise RuntimeError("cannot format")

    rig.emit("breaker.warning", breaker="drawdown", check="intraday", level="warning", value=Unprintable(),
             threshold=Unprintable())
    rig.emit("trading.halted", reason="still works", requires_manual_resume=False)
    rig.run(100)
    assert rig.router.stats.internal_errors == 0 or rig.router.stats.last_internal_error
    assert rig.of("alert.sent", key="trading.halted") and not rig.bus.errors


# --------------------------------------------------------------------------------------------
# The asyncio driver: the event loop never waits on a sink
# --------------------------------------------------------------------------------------------


class _Sink:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.got: list[str] = []

    async def send(self, alert: Any) -> None:
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "raise":
            raise ConnectionError("receiver exploded")
        self.got.append(alert.id)

    async def close(self) -> None:
        return None


def test_the_dispatcher_never_blocks_the_loop_and_turns_sink_trouble_into_alert_failed() -> None:
    asyncio.run(_dispatcher_under_trouble())


async def _dispatcher_under_trouble() -> None:
    from bot.core.clock import WallClock

    config = _config(channels__slack__timeout_seconds=0.2, channels__email__timeout_seconds=0.2)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    router = AlertRouter(config, WallClock(), bus, available=("log", "slack", "email", "webhook"))
    bus.subscribe(router)
    sinks = {"slack": _Sink("hang"), "email": _Sink("raise"), "webhook": _Sink("ok"), "log": _Sink("ok")}
    dispatcher = AlertDispatcher(router, sinks)
    dispatcher.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    bus.emit("trading.halted", WallClock().now_ms(), reason="dd", requires_manual_resume=True)
    assert loop.time() - started < 0.05, "emit returns at once"
    ticks = 0
    while not router.idle and loop.time() - started < 5:
        await asyncio.sleep(0.01)
        ticks += 1
    await dispatcher.close()
    assert ticks > 20, "the loop kept running while the sinks hung"
    failed = {e.fields["channel"]: e.fields for e in events if e.name == "alert.failed"}
    assert "no confirmation within 0.2 s" in failed["slack"]["error"]
    assert "ConnectionError: receiver exploded" in failed["email"]["error"]
    sent = [e.fields["channel"] for e in events if e.name == "alert.sent"]
    assert "webhook" in sent, sent


def test_config_text_documents_every_channel_type() -> None:
    text = textwrap.dedent(default_alerts_path().read_text())
    for kind in ("log", "slack", "webhook", "email", "sms"):
        assert f"type: {kind}" in text


def test_config_check_validates_the_alerts_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.__main__ import main

    assert main(["config", "check"]) == 0
    assert "alerts (alerts.yaml): 19 alert-worthy events; info -> slack" in capsys.readouterr().out
    bad = tmp_path / "alerts.yaml"
    bad.write_text(default_alerts_path().read_text().replace("critical: [slack, email]", "critical: [slack, mail]"))
    assert main(["config", "check", "--alerts", str(bad)]) == 2
    assert "alerts.yaml: routes.critical[1]: unknown channel" in capsys.readouterr().err
