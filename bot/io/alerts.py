"""The alert router: the bot states conditions as events; this decides who hears them.

`AlertRouter` subscribes to the bot's EventBus. For every event `config/alerts.yaml` names as
alert-worthy it builds one `Alert` (severity, stable key, title, the event's fields), redacted
of every secret the bot knows, passes it through dedup and a per-key rate limit, and queues one
delivery per channel of its route. Channels are the sinks of bot/io/alert_sinks.py (log, Slack,
webhook, email, SMS) or, in sim mode, the harness's in-memory stand-ins.

The router itself never waits and never does I/O: it is a small state machine on the bot's
Clock. A driver asks `due()` for the attempts to start now and reports each outcome with
`finished()`; `next_deadline_ms()` says when to ask again. `AlertDispatcher` is the asyncio
driver of the real bot (each attempt a task with a timeout, email in a worker thread, so the bot's
event loop never waits on a sink); the sim runner drives the same router on virtual time.

Delivery rules, per channel: up to `retry.attempts` tries with exponential backoff while the
channel's budget (`retry.give_up_after_seconds` from the alert reaching that channel) lasts; a
channel that failed its last alert gets a single try until it delivers again. Then
`alert.failed{channel, error, fallback}` and the channel's `fallback` takes over (a channel is
never given the same alert twice, whichever routes fell back to it; `log` ends every chain).
`alert.sent{channel, delivery_ms, attempts, fallback_for}` is emitted only when the sink
confirmed delivery. A broken sink is an `alert.failed`, never an exception in the bot; the
queue is bounded (`queue_max`: when full the least severe waiting delivery is dropped, and that
is an `alert.failed` too).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.config import ConfigError, Problem, config_dir
from bot.core.clock import Clock
from bot.core.events import EVENT_NAMES, RED_FLAGS, Event, EventBus
from bot.io import redaction

Severity = Literal["info", "warning", "critical", "emergency"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical", "emergency")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
HEARTBEAT_KEY = "heartbeat"
CONFIG_FILE = "alerts.yaml"
LAST_RESORT = "log"


# ============================================================================================
# Configuration (config/alerts.yaml)
# ============================================================================================


@dataclass(frozen=True)
class SecretRef:
    """`{secret: NAME}`: looked up through the bot's secrets loader; never written in config."""

    name: str
    optional: bool = False


@dataclass(frozen=True)
class EnvRef:
    """`{env: NAME, default: VALUE}`: a plain setting from the environment."""

    name: str
    default: str | None = None


Value = str | SecretRef | EnvRef
VALUE_FORMS = "text, {secret: NAME[, optional: true]} or {env: NAME[, default: VALUE]}"


def _value(raw: Any) -> Value:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float | str):
        return str(raw)
    if isinstance(raw, SecretRef | EnvRef):
        return raw
    if isinstance(raw, Mapping):
        keys = set(raw)
        if "secret" in keys and keys <= {"secret", "optional"} and isinstance(raw["secret"], str) \
                and isinstance(raw.get("optional", False), bool):
            return SecretRef(raw["secret"], bool(raw.get("optional", False)))
        if "env" in keys and keys <= {"env", "default"} and isinstance(raw["env"], str) \
                and isinstance(raw.get("default", ""), str | int | float | bool):
            default = raw.get("default")
            if isinstance(default, bool):
                default = "true" if default else "false"
            return EnvRef(raw["env"], None if default is None else str(default))
    raise ValueError(f"expected {VALUE_FORMS}")


def _values(raw: Any) -> Value | tuple[Value, ...]:
    if isinstance(raw, list | tuple):
        return tuple(_value(v) for v in raw)
    return _value(raw)


ValueField = Annotated[Any, BeforeValidator(_value)]
ValuesField = Annotated[Any, BeforeValidator(_values)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class _Channel(_Strict):
    type: str
    timeout_seconds: float = Field(default=1.5, gt=0, le=60)
    fallback: str | None = None
    concurrency: int = Field(default=2, ge=1, le=32)
    optional: bool = False  # not configured is normal: no notice at start


class LogChannel(_Channel):
    type: Literal["log"]


class SlackChannel(_Channel):
    type: Literal["slack"]
    url: ValueField


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    url: ValueField
    secret: ValueField
    signature_header: str = "X-Gameday-Signature"


class EmailChannel(_Channel):
    type: Literal["email"]
    timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    host: ValueField
    port: ValueField = "587"
    starttls: ValueField = "true"
    ssl: ValueField = "false"
    username: ValueField = ""
    password: ValueField | None = None
    sender: ValueField
    recipients: ValuesField


class SmsChannel(_Channel):
    type: Literal["sms"]
    api_url: ValueField = "https://api.twilio.com"
    account_sid: ValueField
    auth_token: ValueField
    sender: ValueField
    recipients: ValuesField


ChannelConfig = LogChannel | SlackChannel | WebhookChannel | EmailChannel | SmsChannel
CHANNEL_TYPES: dict[str, type[_Channel]] = {
    "log": LogChannel, "slack": SlackChannel, "webhook": WebhookChannel, "email": EmailChannel, "sms": SmsChannel,
}


class When(_Strict):
    match: dict[str, Any]
    severity: Severity


def _rule(raw: Any) -> Any:
    return {"severity": raw} if isinstance(raw, str) else raw


class EventRule(_Strict):
    severity: Severity | None = None  # None: the event's own `severity` field (bot.alert)
    when: tuple[When, ...] = ()
    channels: tuple[str, ...] | None = None

    def severity_for(self, fields: Mapping[str, Any]) -> str | None:
        for rule in self.when:
            if all(_field_matches(fields.get(k), v) for k, v in rule.match.items()):
                return rule.severity
        if self.severity is not None:
            return self.severity
        own = fields.get("severity")
        return own if own in SEVERITY_RANK else None


def _field_matches(got: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list | tuple) else [wanted]
    return any(got == option for option in options)


class LargeLoss(_Strict):
    pct_of_equity: float = Field(gt=0, le=100)
    severity: Severity = "critical"


class RateLimit(_Strict):
    max_alerts: int = Field(default=5, ge=1)
    per_seconds: float = Field(default=60.0, gt=0)


class Retry(_Strict):
    attempts: int = Field(default=3, ge=1, le=20)
    initial_backoff_seconds: float = Field(default=0.2, ge=0, le=60)
    max_backoff_seconds: float = Field(default=1.0, ge=0, le=600)
    give_up_after_seconds: float = Field(default=2.5, gt=0, le=600)


class Heartbeat(_Strict):
    every_seconds: float = Field(gt=0)
    channels: tuple[str, ...]


class _File(_Strict):
    channels: dict[str, Any]
    routes: dict[str, tuple[str, ...]]
    events: dict[str, Annotated[EventRule, BeforeValidator(_rule)]]
    large_loss: LargeLoss | None = None
    dedup_seconds: float = Field(default=60.0, ge=0)
    rate_limit: RateLimit = RateLimit()
    retry: Retry = Retry()
    queue_max: int = Field(default=1000, ge=1)
    drain_seconds: float = Field(default=5.0, ge=0, le=600)
    heartbeat: Heartbeat | None = None


@dataclass(frozen=True)
class AlertConfig:
    """config/alerts.yaml, validated: every name it uses exists."""

    channels: Mapping[str, ChannelConfig]
    routes: Mapping[str, tuple[str, ...]]
    events: Mapping[str, EventRule]
    large_loss: LargeLoss | None
    dedup_seconds: float
    rate_limit: RateLimit
    retry: Retry
    queue_max: int
    drain_seconds: float
    heartbeat: Heartbeat | None
    source: str = CONFIG_FILE

    def route(self, event: str, severity: str) -> tuple[str, ...]:
        rule = self.events.get(event)
        if rule is not None and rule.channels is not None:
            return rule.channels
        return self.routes.get(severity, ())


def default_alerts_path() -> Path:
    return config_dir() / CONFIG_FILE


def load_alert_config(path: str | os.PathLike[str] | None = None) -> AlertConfig:
    """Read and validate an alerts file; ConfigError lists every problem (file, key, value, allowed)."""
    p = Path(path) if path is not None else default_alerts_path()
    name = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(p), "(file)", "cannot read it", type(exc).__name__,
                                   "a readable UTF-8 YAML file (see config/alerts.yaml)")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, "(syntax)", "cannot parse", " ".join(str(exc).split())[:120],
                                   "valid YAML")]) from None
    return parse_alert_config(data, name)


def parse_alert_config(data: Any, name: str = CONFIG_FILE) -> AlertConfig:
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(name, "(top level)", "wrong type", _show(data), "a mapping")])
    problems: list[Problem] = []
    try:
        top = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_explain(e, _File, name, ()) for e in exc.errors()]) from None
    channels: dict[str, ChannelConfig] = {}
    for cname, body in top.channels.items():
        key = f"channels.{cname}"
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", str(cname)):
            problems.append(Problem(name, key, "bad channel name", _show(cname), "[a-z][a-z0-9_-]*"))
            continue
        if not isinstance(body, Mapping):
            problems.append(Problem(name, key, "wrong type", _show(body), "a mapping with a type"))
            continue
        kind = body.get("type")
        model = CHANNEL_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(Problem(name, f"{key}.type", "unknown channel type", _show(kind),
                                    "one of " + ", ".join(CHANNEL_TYPES)))
            continue
        try:
            channels[cname] = model.model_validate(dict(body))  # type: ignore[assignment]
        except ValidationError as exc:
            problems += [_explain(e, model, name, (key,)) for e in exc.errors()]
    if LAST_RESORT not in channels and not any(p.key.startswith(f"channels.{LAST_RESORT}") for p in problems):
        channels[LAST_RESORT] = LogChannel(type="log")
    names = sorted(channels)

    def check_channel(key: str, value: str) -> None:
        if value not in channels:
            problems.append(_unknown(name, key, value, names, "unknown channel"))

    for cname, ch in channels.items():
        if ch.fallback is not None:
            check_channel(f"channels.{cname}.fallback", ch.fallback)
            if ch.fallback == cname:
                problems.append(Problem(name, f"channels.{cname}.fallback", "falls back to itself",
                                        _show(ch.fallback), "another channel"))
    for sev, route in top.routes.items():
        if sev not in SEVERITY_RANK:
            problems.append(_unknown(name, f"routes.{sev}", sev, list(SEVERITIES), "unknown severity"))
        for i, cname in enumerate(route):
            check_channel(f"routes.{sev}[{i}]", cname)
    for sev in SEVERITIES:
        if sev not in top.routes:
            problems.append(Problem(name, f"routes.{sev}", "missing route", "nothing",
                                    "a list of channels (" + ", ".join(names) + ")"))
    for ev, rule in top.events.items():
        key = f"events.{ev}"
        if ev not in DESCRIBERS:
            what = "not an event name" if ev not in EVENT_NAMES else "not an event the router can describe"
            problems.append(_unknown(name, key, ev, sorted(DESCRIBERS), what))
            continue
        if rule.severity is None and not rule.when and ev not in OWN_SEVERITY:
            problems.append(Problem(name, f"{key}.severity", "missing severity", "nothing",
                                    "one of " + ", ".join(SEVERITIES)))
        for i, cname in enumerate(rule.channels or ()):
            check_channel(f"{key}.channels[{i}]", cname)
    if top.heartbeat is not None:
        for i, cname in enumerate(top.heartbeat.channels):
            check_channel(f"heartbeat.channels[{i}]", cname)
    if top.retry.initial_backoff_seconds > top.retry.max_backoff_seconds:
        problems.append(Problem(name, "retry.initial_backoff_seconds", "above its maximum",
                                _show(top.retry.initial_backoff_seconds),
                                f"<= retry.max_backoff_seconds ({top.retry.max_backoff_seconds})"))
    if problems:
        raise ConfigError(problems)
    return AlertConfig(channels, dict(top.routes), dict(top.events), top.large_loss, top.dedup_seconds,
                       top.rate_limit, top.retry, top.queue_max, top.drain_seconds, top.heartbeat, name)


def alerts_summary(config: AlertConfig) -> str:
    """One line for `python -m bot config check`."""
    routes = ", ".join(f"{sev} -> {'+'.join(config.routes.get(sev, ()))}" for sev in SEVERITIES)
    hb = config.heartbeat
    beat = f"; heartbeat every {hb.every_seconds:g} s via {'+'.join(hb.channels)}" if hb else "; no heartbeat"
    return (f"  alerts ({config.source}): {len(config.events)} alert-worthy events; {routes}; dedup "
            f"{config.dedup_seconds:g} s, at most {config.rate_limit.max_alerts} per key per "
            f"{config.rate_limit.per_seconds:g} s{beat}")


def _show(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(file: str, key: str, value: str, allowed: list[str], what: str) -> Problem:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f", did you mean '{close[0]}'?" if close else ""
    return Problem(file, key, what + hint, _show(value), "one of " + ", ".join(allowed))


def _explain(err: Any, model: type[BaseModel], file: str, prefix: tuple[str, ...]) -> Problem:
    loc = tuple(str(p) if not isinstance(p, int) else p for p in err["loc"])
    # pydantic puts validator-internal names (union members, function names) in the location
    parts: list[str | int] = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function")))]
    key = ".".join(prefix)
    for part in parts:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    kind = err["type"]
    got = _show(err.get("input"))
    if kind == "extra_forbidden":
        allowed = _allowed(model, [p for p in parts[:-1] if isinstance(p, str)])
        return _unknown(file, key, str(parts[-1]), allowed, "unknown key")
    if kind == "missing":
        return Problem(file, key, "missing key", "nothing", "see config/alerts.yaml for the form")
    if kind == "literal_error":
        return Problem(file, key, "not an allowed value", got, err["ctx"]["expected"])
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        return Problem(file, key, "out of range", got, err["msg"].lower())
    if kind == "value_error":
        return Problem(file, key, "wrong form", got, str(err["msg"]).removeprefix("Value error, "))
    return Problem(file, key, str(err["msg"]).lower(), got, "see config/alerts.yaml for the form")


def _allowed(model: type[BaseModel], path: list[str]) -> list[str]:
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = next((a for a in (annotation, *getattr(annotation, "__args__", ()))
                        if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


# ============================================================================================
# What an event says as an alert: its key and title
# ============================================================================================

Described = tuple[str, str]  # (key, title)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _breaker(f: Mapping[str, Any]) -> str:
    return f"{f.get('breaker')} {f.get('check')}"


def _tripped(f: Mapping[str, Any]) -> Described:
    level, action = f.get("level"), f.get("action")
    if f.get("error"):
        measure = f"its arithmetic failed ({f['error']})"
    else:
        measure = f"{_num(f.get('value'))} >= {_num(f.get('threshold'))}"
    flatten = " - EMERGENCY STOP: closing everything" if action == "flatten_and_halt" else ""
    return (f"breaker.{f.get('breaker')}.{f.get('check')}.{level}",
            f"breaker tripped: {_breaker(f)} {level}, {measure} -> {action}{flatten}")


def _red_flag(f: Mapping[str, Any]) -> Described:
    flag = str(f.get("flag"))
    return f"redflag.{flag}", f"RED FLAG - STOP IMMEDIATELY: {RED_FLAGS.get(flag, flag)}: {f.get('detail', '')}"


DESCRIBERS: dict[str, Callable[[Mapping[str, Any]], Described]] = {
    "breaker.warning": lambda f: (f"breaker.{f.get('breaker')}.{f.get('check')}.warning",
                                  f"breaker warning: {_breaker(f)} at {_num(f.get('value'))} "
                                  f"(warning level {_num(f.get('threshold'))})"),
    "breaker.tripped": _tripped,
    "breaker.reset": lambda f: (f"breaker.{f.get('breaker')}.{f.get('check')}.reset",
                                f"breaker reset: {_breaker(f)} by {f.get('by')}"
                                + (f" ({f['actor']})" if f.get("actor") else "")),
    "sizing.reduced": lambda f: ("sizing.reduced", f"position size reduced to x{_num(f.get('factor'))}: "
                                                   f"{f.get('reason')}"),
    "trading.paused": lambda f: ("trading.paused", f"trading paused (no new entries, exits go on): {f.get('reason')}"),
    "trading.halted": lambda f: ("trading.halted", "trading halted"
                                 + (" until a manual resume" if f.get("requires_manual_resume") else "")
                                 + f": {f.get('reason')}"),
    "trading.resumed": lambda f: ("trading.resumed", f"trading resumed by {f.get('by')}"
                                  + (f" ({f['actor']})" if f.get("actor") else "")),
    "killswitch.engaged": lambda f: ("killswitch.engaged", f"KILL SWITCH engaged ({f.get('mode')}) by "
                                                          f"{f.get('actor')}: {f.get('reason')}"),
    "killswitch.cleared": lambda f: ("killswitch.cleared", f"kill switch cleared by {f.get('actor')}"),
    "killswitch.rejected": lambda f: ("killswitch.rejected", f"kill-switch request REJECTED from "
                                                             f"{f.get('actor')}: {f.get('reason')}"),
    "account.flat": lambda f: ("account.flat", "account flat: no position or resting order remains"),
    "exchange.down": lambda f: (f"exchange.{f.get('scope')}.down",
                                f"exchange unreachable ({f.get('scope')}): {f.get('error')}"),
    "exchange.up": lambda f: (f"exchange.{f.get('scope')}.up", f"exchange reachable again ({f.get('scope')})"),
    "startup.refused": lambda f: ("startup.refused", f"bot refused to start: {f.get('reason')}"),
    "credential.leak_detected": lambda f: ("credential.leak", f"credential leak detected: key {f.get('key_id')}"),
    "credential.revoked": lambda f: ("credential.revoked", f"API key revoked: {f.get('key_id')}"),
    "credential.rotated": lambda f: ("credential.rotated", f"API key rotated: {f.get('key_id')}"),
    "redflag.raised": _red_flag,
    "bot.alert": lambda f: (str(f.get("key") or "bot.alert"), str(f.get("title"))),
}
OWN_SEVERITY = frozenset({"bot.alert"})


# ============================================================================================
# Redaction
# ============================================================================================

MASK = redaction.MASK
_SECRET_SHAPE = re.compile(
    r"(?i)\b(secret|password|passwd|token|api[_-]?key|private[_-]?key|signature)(\s*[=:]\s*)(['\"]?)[^\s'\",;&]+")


class Redactor:
    """Removes from alert text every secret the process registered (bot.io.redaction), the ones
    given here (a sim run's fake keys, the tokens the bot was started with), the values of
    secret-named environment variables, and `secret=...`-shaped values."""

    def __init__(self, secrets: Iterable[str | None] = (), env: Mapping[str, str] | None = None) -> None:
        self._own = redaction.SecretRegistry()
        for name, value in (os.environ if env is None else env).items():
            if redaction.SECRET_ENV_NAME.search(name) and len(value.strip()) >= redaction.ENV_MIN_LENGTH:
                self.add(value)
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and len(secret.strip()) >= redaction.MIN_LENGTH:
            self._own.add(secret.strip())

    def __call__(self, text: str) -> str:
        text = redaction.redact(self._own.redact(text))
        return _SECRET_SHAPE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}", text)

    def fields(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {str(k): self.fields(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.fields(v) for v in value]
        return value


# ============================================================================================
# The router
# ============================================================================================


@dataclass(frozen=True)
class Alert:
    id: str
    key: str
    severity: str
    title: str
    event: str  # the event it came from ("heartbeat", "suppressed" for the router's own)
    raised_ms: int  # when the condition was stated: delivery_ms counts from here
    fields: Mapping[str, Any] = field(default_factory=dict)
    fallback: bool = True  # a heartbeat proves its own channel: no fallback

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "severity": self.severity, "title": self.title,
                "event": self.event, "raised_at_ms": self.raised_ms, "fields": dict(self.fields)}


@dataclass
class _Delivery:
    alert: Alert
    channel: str
    fallback_for: str | None
    tried: frozenset[str]
    budget_end_ms: int
    max_attempts: int
    attempts: int = 0
    due_ms: int = 0


@dataclass(frozen=True)
class Attempt:
    """One try of one alert on one channel; the driver reports its outcome to `finished()`."""

    alert: Alert
    channel: str
    number: int
    timeout_ms: int
    started_ms: int
    _delivery: _Delivery = field(repr=False, compare=False)


@dataclass
class _KeyState:
    last_title: str | None = None
    last_severity: str = "info"
    last_ms: int = -(1 << 62)
    sent: deque[int] = field(default_factory=deque)
    suppressed: int = 0
    suppressed_severity: str = "info"
    suppressed_title: str = ""
    window_end_ms: int | None = None


@dataclass
class RouterStats:
    raised: int = 0
    suppressed: int = 0
    dropped: int = 0
    sent: int = 0
    failed: int = 0
    internal_errors: int = 0
    last_internal_error: str | None = None


class AlertRouter:
    """Event -> alerts -> deliveries (see the module doc). Subscribe it to the bus."""

    def __init__(self, config: AlertConfig, clock: Clock, bus: EventBus, *, available: Iterable[str],
                 redactor: Redactor | None = None, equity: Callable[[], float | None] | None = None,
                 heartbeat_ms: int | None = None, run_id: str | None = None) -> None:
        self.config = config
        self.clock = clock
        self.bus = bus
        self.redact = redactor or Redactor()
        self.equity = equity
        # (seq, hash) of the audit chain's head: every heartbeat carries it, an anchor kept off the host
        self.audit_head: Callable[[], tuple[int, str] | None] = lambda: None
        self.available = frozenset(available) | {LAST_RESORT}
        self.on_wake: Callable[[], None] = lambda: None
        self.stats = RouterStats()
        self.last_success_ms: dict[str, int] = {}
        self.failing: set[str] = set()  # channels whose last delivery failed
        self._queues: dict[str, deque[_Delivery]] = {name: deque() for name in config.channels}
        self._in_flight: dict[str, int] = {name: 0 for name in config.channels}
        self._keys: dict[str, _KeyState] = {}
        # alert id -> channel -> "live" | "sent" | "failed", while any delivery of the alert is live
        self._routes: dict[str, dict[str, str]] = {}
        self._seq = 0
        self._run_id = run_id or format(clock.now_ms() % 36**6, "x")
        now = clock.now_ms()
        hb = config.heartbeat
        every = heartbeat_ms if heartbeat_ms is not None else (
            round(hb.every_seconds * 1000) if hb is not None else None)
        self.heartbeat_channels = tuple(c for c in (hb.channels if hb else ()) if c in self.available)
        self._heartbeat_every = every if every and self.heartbeat_channels else None
        self._next_heartbeat_ms = now + self._heartbeat_every if self._heartbeat_every else None
        self._heartbeats = 0

    # --- in: events ---------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if event.name.startswith("alert."):
            return
        try:
            alert = self.classify(event)
            if alert is not None:
                self.raise_alert(alert)
        except Exception as exc:  # the router must never break the bot
            self.stats.internal_errors += 1
            self.stats.last_internal_error = f"{type(exc).__name__}: {exc}"[:300]

    def classify(self, event: Event) -> Alert | None:
        """The alert this event makes, or None (not alert-worthy under this config)."""
        fields = event.fields
        if event.name == "position.closed":
            return self._large_loss(event)
        rule = self.config.events.get(event.name)
        describe = DESCRIBERS.get(event.name)
        if rule is None or describe is None:
            return None
        severity = rule.severity_for(fields)
        if severity is None:
            return None
        key, title = describe(fields)
        return self._alert(key, severity, title, event.name, event.ts_ms, fields)

    def _large_loss(self, event: Event) -> Alert | None:
        rule, pnl = self.config.large_loss, event.fields.get("pnl")
        if rule is None or self.equity is None or not isinstance(pnl, int | float) or pnl >= 0:
            return None
        equity = self.equity()
        if equity is None:
            return None
        before = equity - pnl
        if before <= 0:
            return None
        pct = -pnl / before * 100
        if pct < rule.pct_of_equity:
            return None
        title = (f"large loss: {pnl:.2f} on {event.fields.get('symbol')} ({pct:.2f}% of equity, limit "
                 f"{rule.pct_of_equity:g}%), closed by {event.fields.get('reason')}")
        return self._alert("large_loss", rule.severity, title, event.name, event.ts_ms, event.fields)

    def _alert(self, key: str, severity: str, title: str, source: str, raised_ms: int,
               fields: Mapping[str, Any], *, fallback: bool = True) -> Alert:
        self._seq += 1
        return Alert(f"{self._run_id}-{self._seq}", self.redact(key), severity, self.redact(title)[:500], source,
                     raised_ms, self.redact.fields(dict(fields)), fallback)

    def raise_alert(self, alert: Alert, *, limited: bool = True) -> bool:
        """Queue an alert on its route; False when dedup or the rate limit held it back."""
        now = self.clock.now_ms()
        self.stats.raised += 1
        if limited and not self._admit(alert, now):
            self.stats.suppressed += 1
            return False
        targets: list[tuple[str, str | None]] = []
        for name in self.config.route(alert.event, alert.severity):
            channel, stands_in = self._resolve(name)
            if channel is not None and channel not in (c for c, _ in targets):
                targets.append((channel, stands_in))
        if not targets:
            targets = [(LAST_RESORT, None)]
        for channel, stands_in in targets:
            tried = frozenset({channel} | ({stands_in} if stands_in else set()))
            self._enqueue(_Delivery(alert, channel, stands_in, tried, 0, 0), now)
        self.on_wake()
        return True

    def _resolve(self, name: str) -> tuple[str | None, str | None]:
        """A route's channel if configured, else the first configured channel of its fallback chain."""
        seen = {name}
        current = name
        while current not in self.available:
            nxt = self.config.channels[current].fallback if current in self.config.channels else None
            if nxt is None or nxt in seen:
                return None, None
            seen.add(nxt)
            current = nxt
        return current, (name if current != name else None)

    def _admit(self, alert: Alert, now: int) -> bool:
        state = self._keys.setdefault(alert.key, _KeyState())
        window = round(self.config.rate_limit.per_seconds * 1000)
        while state.sent and state.sent[0] <= now - window:
            state.sent.popleft()
        duplicate = (state.last_title == alert.title and state.last_severity == alert.severity
                     and now - state.last_ms < round(self.config.dedup_seconds * 1000))
        if duplicate or len(state.sent) >= self.config.rate_limit.max_alerts:
            state.suppressed += 1
            if SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[state.suppressed_severity] or state.suppressed == 1:
                state.suppressed_severity = alert.severity
            state.suppressed_title = alert.title
            ends = [state.sent[0] + window] if len(state.sent) >= self.config.rate_limit.max_alerts else []
            if duplicate:
                ends.append(state.last_ms + round(self.config.dedup_seconds * 1000))
            state.window_end_ms = max(state.window_end_ms or 0, *ends)
            return False
        state.last_title, state.last_severity, state.last_ms = alert.title, alert.severity, now
        state.sent.append(now)
        return True

    def _enqueue(self, d: _Delivery, now: int) -> None:
        retry = self.config.retry
        self._routes.setdefault(d.alert.id, {})[d.channel] = "live"
        d.budget_end_ms = now + round(retry.give_up_after_seconds * 1000)
        d.max_attempts = 1 if d.channel in self.failing else retry.attempts
        d.due_ms = now
        if self.pending() >= self.config.queue_max:
            victim = self._least_severe_waiting()
            if victim is None or SEVERITY_RANK[victim.alert.severity] >= SEVERITY_RANK[d.alert.severity]:
                self._drop(d)
                return
            self._queues[victim.channel].remove(victim)
            self._drop(victim)
        self._queues[d.channel].append(d)

    def _least_severe_waiting(self) -> _Delivery | None:
        waiting = [d for q in self._queues.values() for d in q]
        if not waiting:
            return None
        return min(waiting, key=lambda d: (SEVERITY_RANK[d.alert.severity], d.alert.raised_ms))

    def _drop(self, d: _Delivery) -> None:
        self.stats.dropped += 1
        self._done(d, "failed")
        self._failed(d, f"dropped: the alert queue is full ({self.config.queue_max})", None)

    def _done(self, d: _Delivery, outcome: str) -> None:
        routes = self._routes.get(d.alert.id)
        if routes is not None:
            routes[d.channel] = outcome
            if "live" not in routes.values():
                del self._routes[d.alert.id]

    # --- out: attempts --------------------------------------------------------------------------

    def due(self) -> list[Attempt]:
        """Attempts to start now (each is then in flight until `finished()`)."""
        now = self.clock.now_ms()
        self._timers(now)
        out: list[Attempt] = []
        for name, queue in self._queues.items():
            if not queue:
                continue
            limit = self.config.channels[name].concurrency
            timeout = round(self.config.channels[name].timeout_seconds * 1000)
            for d in list(queue):
                if self._in_flight[name] >= limit:
                    break
                if d.due_ms > now:
                    continue
                queue.remove(d)
                d.attempts += 1
                self._in_flight[name] += 1
                out.append(Attempt(d.alert, name, d.attempts, timeout, now, d))
        return out

    def finished(self, attempt: Attempt, error: str | None) -> None:
        """The outcome of an attempt `due()` handed out: None = the sink confirmed delivery."""
        now = self.clock.now_ms()
        d = attempt._delivery
        self._in_flight[d.channel] = max(0, self._in_flight[d.channel] - 1)
        if error is None:
            self._done(d, "sent")
            self.failing.discard(d.channel)
            self.last_success_ms[d.channel] = now
            self.stats.sent += 1
            a = d.alert
            self.bus.emit("alert.sent", now, id=a.id, channel=d.channel, severity=a.severity, title=a.title,
                          key=a.key, delivery_ms=max(0, now - a.raised_ms), attempts=d.attempts,
                          fallback_for=d.fallback_for)
            self.on_wake()
            return
        error = self.redact(error)[:300]
        retry = self.config.retry
        backoff = round(min(retry.initial_backoff_seconds * 2 ** (d.attempts - 1), retry.max_backoff_seconds) * 1000)
        timeout = round(self.config.channels[d.channel].timeout_seconds * 1000)
        if d.attempts < d.max_attempts and now + backoff + timeout <= d.budget_end_ms:
            d.due_ms = now + backoff
            self._queues[d.channel].append(d)
            self.on_wake()
            return
        self.failing.add(d.channel)
        routes = dict(self._routes.get(d.alert.id, {}))
        self._done(d, "failed")
        nxt, covered = self._next_fallback(d, routes)
        self._failed(d, error, nxt)
        if nxt is not None and not covered:
            self._enqueue(_Delivery(d.alert, nxt, d.fallback_for or d.channel, d.tried | {nxt}, 0, 0), now)
        self.on_wake()

    def _next_fallback(self, d: _Delivery, routes: Mapping[str, str]) -> tuple[str | None, bool]:
        """The channel that takes over, and whether it already carries (or delivered) the alert
        for another route: a channel is never given the same alert twice."""
        if not d.alert.fallback:
            return None, False
        current = d.channel
        seen = set(d.tried)
        while True:
            nxt = self.config.channels[current].fallback
            if nxt is None or nxt in seen:
                return None, False
            if nxt in self.available and routes.get(nxt) != "failed":
                return nxt, nxt in routes
            seen.add(nxt)
            current = nxt

    def _failed(self, d: _Delivery, error: str, fallback: str | None) -> None:
        self.stats.failed += 1
        a = d.alert
        self.bus.emit("alert.failed", self.clock.now_ms(), id=a.id, channel=d.channel, severity=a.severity,
                      title=a.title, key=a.key, error=error, attempts=d.attempts, fallback=fallback)

    # --- timers: heartbeat, suppression summaries -----------------------------------------------

    def _timers(self, now: int) -> None:
        if self._next_heartbeat_ms is not None and now >= self._next_heartbeat_ms:
            every = self._heartbeat_every or 1
            missed = (now - self._next_heartbeat_ms) // every
            self._next_heartbeat_ms += (missed + 1) * every
            self._heartbeats += 1
            self._seq += 1
            head = self.audit_head()
            anchor = f"; audit head {head[0]}:{head[1]}" if head is not None else ""
            data: dict[str, Any] = {"n": self._heartbeats}
            if head is not None:
                data["audit_head"] = {"seq": head[0], "hash": head[1]}
            alert = Alert(f"{self._run_id}-{self._seq}", HEARTBEAT_KEY, "info",
                          f"heartbeat {self._heartbeats}: the gameday bot is running and its alerts flow{anchor}",
                          "heartbeat", now, data, fallback=False)
            for channel in self.heartbeat_channels:
                self._enqueue(_Delivery(alert, channel, None, frozenset({channel}), 0, 0), now)
        for key, state in self._keys.items():
            if state.window_end_ms is not None and now >= state.window_end_ms:
                count, state.suppressed, state.window_end_ms = state.suppressed, 0, None
                if count:
                    title = (f"{count} more alert{'s' if count != 1 else ''} like this were suppressed "
                             f"(dedup / rate limit): {state.suppressed_title}")
                    self._seq += 1
                    summary = Alert(f"{self._run_id}-{self._seq}", key, state.suppressed_severity, title[:500],
                                    "suppressed", now, {"suppressed": count})
                    self.raise_alert(summary, limited=False)

    def next_deadline_ms(self) -> int | None:
        """When `due()` has something to hand out (None: nothing until a new event)."""
        candidates = [d.due_ms for name, q in self._queues.items() for d in q
                      if self._in_flight[name] < self.config.channels[name].concurrency]
        if self._next_heartbeat_ms is not None:
            candidates.append(self._next_heartbeat_ms)
        candidates += [s.window_end_ms for s in self._keys.values() if s.window_end_ms is not None]
        return min(candidates) if candidates else None

    def pending(self) -> int:
        """Deliveries waiting or in flight."""
        return sum(len(q) for q in self._queues.values()) + sum(self._in_flight.values())

    @property
    def idle(self) -> bool:
        return self.pending() == 0


# ============================================================================================
# Sinks and the asyncio driver
# ============================================================================================


class Sink(Protocol):
    """Delivers one alert; returns when the receiver confirmed it, raises otherwise."""

    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


class AlertDispatcher:
    """Drives an AlertRouter in the bot's event loop: each attempt is a task with its timeout."""

    def __init__(self, router: AlertRouter, sinks: Mapping[str, Sink]) -> None:
        self.router = router
        self.sinks = dict(sinks)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        router.on_wake = self._wake.set

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gameday-alerts")

    async def _run(self) -> None:
        router = self.router
        while True:
            self._wake.clear()
            for attempt in router.due():
                task = asyncio.get_running_loop().create_task(self._attempt(attempt))
                self._attempts.add(task)
                task.add_done_callback(self._attempts.discard)
            deadline = router.next_deadline_ms()
            timeout = None if deadline is None else max(0.0, (deadline - router.clock.now_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, attempt: Attempt) -> None:
        sink = self.sinks.get(attempt.channel)
        error: str | None = None
        try:
            if sink is None:
                raise RuntimeError(f"no sink for channel {attempt.channel!r}")
            await asyncio.wait_for(sink.send(attempt.alert), attempt.timeout_ms / 1000)
        except TimeoutError:
            error = f"no confirmation within {attempt.timeout_ms / 1000:g} s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any sink failure is an alert.failed, never the bot's problem
            error = f"{type(exc).__name__}: {exc}"
        self.router.finished(attempt, error)

    async def drain(self, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until nothing is waiting or in flight; True if it all went."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self.router.idle and loop.time() < end:
            await asyncio.sleep(0.01)
        return self.router.idle

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._attempts) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.close()


SecretLookup = Callable[[str], str | None]


@dataclass
class AlertService:
    """The bot's alerting, wired: config, sinks, router on the bus, dispatcher in the loop."""

    router: AlertRouter
    dispatcher: AlertDispatcher
    notes: list[str]

    @classmethod
    def build(cls, config: AlertConfig, bus: EventBus, clock: Clock, *, secrets: SecretLookup | None = None,
              env: Mapping[str, str] | None = None, known_secrets: Iterable[str | None] = (),
              heartbeat_ms: int | None = None) -> AlertService:
        """Resolve every channel (ConfigError for a value that is set but unusable); a channel
        whose secret or setting is missing is left out, with a note saying what to set."""
        from bot.io.alert_sinks import build_sinks

        env = os.environ if env is None else env
        lookup = secrets or env.get
        redactor = Redactor(known_secrets, env)
        sinks, notes = build_sinks(config, lookup, env, redactor)
        router = AlertRouter(config, clock, bus, available=sinks, redactor=redactor, heartbeat_ms=heartbeat_ms)
        bus.subscribe(router)
        return cls(router, AlertDispatcher(router, sinks), notes)

    def start(self) -> None:
        self.dispatcher.start()

    async def stop(self) -> bool:
        """Deliver what is queued (at most drain_seconds), then close; True if nothing was left."""
        try:
            return await self.dispatcher.drain(self.router.config.drain_seconds)
        finally:
            await self.dispatcher.close()
