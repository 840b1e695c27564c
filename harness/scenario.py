"""Scenario files: the model, the fault catalog and a loader with precise errors.

DESIGN.md "Scenario files" is the contract. Every problem is reported as
`path/file.yaml:LINE: <key path>: <what is wrong> (got X; allowed: ...)`, and the loader reports
every problem it finds in one `ScenarioError`, not only the first.

Numeric fault params may cite the policy (`{policy: dotted.path, plus: X}` / `{..., times: X}`);
they are kept as `PolicyRef` by the loader and turned into plain numbers by `resolve_params`
once the caller has a policy lookup for the scenario's profile.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bot.core.events import EVENT_NAMES, EVENTS, FieldSpec
from bot.core.redflags import CHECKED_FLAGS

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_MISSING: Any = object()


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    what: str
    got: Any = _MISSING
    allowed: str | None = None

    def __str__(self) -> str:
        detail = []
        if self.got is not _MISSING:
            detail.append(f"got {_show(self.got)}")
        if self.allowed:
            detail.append(f"allowed: {self.allowed}")
        tail = f" ({'; '.join(detail)})" if detail else ""
        key = f"{self.key}: " if self.key else ""
        return f"{self.file}:{self.line}: {key}{self.what}{tail}"


class ScenarioError(Exception):
    """One or more problems in a scenario file; str() is one `file:line: ...` line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _show(value: Any) -> str:
    if isinstance(value, Duration | PolicyRef):
        return str(value)
    if isinstance(value, LMap):
        value = dict(value)
    elif isinstance(value, LList):
        value = list(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------------


class LMap(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys/values start (1-based)."""

    line: int = 1
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]


class LList(list[Any]):
    line: int = 1
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> LMap:
    loader.flatten_mapping(node)
    out = LMap()
    out.line = node.start_mark.line + 1
    out.key_lines, out.value_lines = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
        out.value_lines[key] = value_node.start_mark.line + 1
    return out


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # nosec B506 - _LineLoader is a yaml.SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError([Problem(file, line, "", f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(file, 1, "", f"invalid YAML: {exc}")]) from None


# --------------------------------------------------------------------------------------------
# Durations and policy references
# --------------------------------------------------------------------------------------------

DurationUnit = Literal["bar", "ms", "s", "m", "h"]
_UNIT_MS: dict[str, int] = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
DURATION_FORMS = '"N bars", "1 bar", "500ms", "30s", "1.5s", "5m", "2h"'
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


# --------------------------------------------------------------------------------------------
# The fault catalog: ONE table read by the loader, the fault implementations, drills and docs
# --------------------------------------------------------------------------------------------

ParamType = Literal["number", "int", "ms", "duration", "offset", "enum", "str", "flags", "signal"]
# number: float; int: integer; ms: a latency in milliseconds (float); duration: a Duration
# (resolved to int ms); offset: a signed Duration (int ms); enum: one of `choices`;
# str: free text; flags: a list of strings; signal: a signal as kill(1) names it (KILL, SIGKILL,
# kill, 9), kept as its canonical name (SIGKILL), one of `choices`. number/int/ms/duration/offset
# accept a PolicyRef.
# Time-like types (ms, duration, offset) are multiplied by the time scale in net mode.
TIME_TYPES: frozenset[str] = frozenset({"ms", "duration", "offset"})
NUMERIC_TYPES: frozenset[str] = frozenset({"number", "int"}) | TIME_TYPES


@dataclass(frozen=True)
class ParamSpec:
    type: ParamType
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    nonzero: bool = False
    doc: str = ""

    def describe(self) -> str:
        if self.type == "enum":
            return "|".join(self.choices)
        if self.type == "signal":
            return "a signal as kill(1) names it (KILL, SIGKILL, kill, 9): " + "|".join(self.choices)
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {self.gt:g}")
        if self.ge is not None:
            bounds.append(f">= {self.ge:g}")
        if self.le is not None:
            bounds.append(f"<= {self.le:g}")
        if self.nonzero:
            bounds.append("!= 0")
        kind = {"number": "a number", "int": "an integer", "ms": "milliseconds (number)",
                "duration": f"a duration ({DURATION_FORMS})",
                "offset": f"a signed duration ({DURATION_FORMS}, may start with -)",
                "str": "text", "flags": "a list of names"}[self.type]
        if self.type in NUMERIC_TYPES:
            kind += " or {policy: dotted.path, plus|times: X}"
        return kind + (" " + ", ".join(bounds) if bounds else "")


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    family: Literal["market", "latency", "exchange", "credentials", "process", "operator", "alerts"]
    modes: frozenset[str]
    params: Mapping[str, ParamSpec]
    unfolds: bool = False  # established when a condition is reached, not at injection
    doc: str = ""


def _fault(kind: str, family: Any, modes: str, doc: str, unfolds: bool = False,
           **params: ParamSpec) -> FaultSpec:
    mode_set = frozenset({"s": "sim", "n": "net"}[m] for m in modes)
    return FaultSpec(kind, family, mode_set, dict(params), unfolds, doc)


_P = ParamSpec
_DUR = _P("duration", gt=0, doc="how long the fault lasts")
ALERT_CHANNELS = ("slack", "webhook", "email", "sms", "all")  # config/alerts.yaml's delivering channels

FAULTS: Mapping[str, FaultSpec] = {f.kind: f for f in (
    # market: the harness arranges the exposure it needs and moves the price
    _fault("drawdown", "market", "sn", "equity falls depth_pct from its peak", unfolds=True,
           depth_pct=_P("number", gt=0, doc="percent below the equity peak")),
    _fault("loss_streak", "market", "sn", "count consecutive losing trades", unfolds=True,
           count=_P("int", ge=1, doc="losing trades in a row")),
    _fault("spread_spike", "market", "sn", "the book's spread widens to bps",
           bps=_P("number", gt=0, doc="spread in basis points"), duration=_DUR),
    _fault("atr_spike", "market", "sn", "ATR jumps to multiple x its baseline",
           multiple=_P("number", gt=0, doc="ATR over baseline"), duration=_DUR),
    _fault("price_gap", "market", "sn", "the price moves pct in one bar",
           pct=_P("number", nonzero=True, doc="signed move in percent")),
    _fault("winning_trade", "market", "sn", "count winning trades in a row (a win resets a loss streak)",
           unfolds=True, count=_P("int", required=False, default=1, ge=1, doc="winning trades")),
    # latency
    _fault("ws_lag", "latency", "sn", "market data arrives lag late",
           lag=_P("duration", gt=0, doc="delay of each message"), duration=_DUR),
    _fault("ws_disconnect", "latency", "n", "the WebSocket connection drops", duration=_DUR),
    _fault("inference_latency", "latency", "sn", "the strategy's inference takes ms",
           ms=_P("ms", gt=0, doc="inference time"), duration=_DUR),
    _fault("order_latency", "latency", "sn", "orders are acknowledged / filled late",
           placement_ms=_P("ms", required=False, default=0.0, ge=0, doc="placement delay"),
           fill_ms=_P("ms", required=False, default=0.0, ge=0, doc="fill delay")),
    # exchange
    _fault("exchange_outage", "exchange", "sn", "the exchange stops answering", duration=_DUR,
           scope=_P("enum", required=False, default="all", choices=("rest", "ws", "all"))),
    _fault("http_errors", "exchange", "sn", "REST calls answer with an HTTP error",
           status=_P("int", ge=400, le=599, doc="HTTP status"),
           code=_P("int", required=False, doc="exchange error code in the body"),
           count=_P("int", required=False, default=1, ge=1, doc="how many calls fail"),
           retry_after=_P("duration", required=False, ge=0, doc="Retry-After header")),
    _fault("order_reject", "exchange", "sn", "new orders are rejected with code",
           code=_P("int", doc="exchange error code"),
           count=_P("int", required=False, default=1, ge=1)),
    _fault("unknown_outcome", "exchange", "sn", "order requests time out after reaching the book",
           count=_P("int", required=False, default=1, ge=1)),
    _fault("clock_skew", "exchange", "sn", "the bot's clock is off from the exchange's",
           offset=_P("offset", nonzero=True, doc="bot clock minus exchange clock")),
    _fault("stale_book", "exchange", "sn", "the order book stops updating", duration=_DUR),
    _fault("malformed_fill", "exchange", "s", "the exchange reports fills with a non-finite price",
           count=_P("int", required=False, default=1, ge=1, doc="how many fill reports")),
    # credentials
    _fault("credential_leak", "credentials", "sn", "an API secret shows up where it must not",
           where=_P("enum", choices=("log", "repo", "paste"))),
    _fault("key_revoked", "credentials", "sn", "the exchange revokes the API key"),
    _fault("key_permissions", "credentials", "sn", "the API key has these permissions",
           flags=_P("flags", doc="permission names, e.g. withdraw, trade")),
    # process
    _fault("bot_crash", "process", "n", "the bot process dies",
           signal=_P("signal", required=False, default="SIGKILL",
                     choices=("SIGKILL", "SIGTERM", "SIGINT"))),
    _fault("restart", "process", "sn", "the bot restarts and reconciles"),
    _fault("redis_outage", "process", "n", "the Redis state store goes away", duration=_DUR),
    _fault("audit_torn", "process", "sn",
           "the bot dies mid-append of a large audit record (a torn last line), then starts again"),
    _fault("state_lost", "process", "sn", "the bot stops, its state store loses what it held, the bot starts again",
           how=_P("enum", choices=("delete", "empty", "not_a_database", "stale", "flush"),
                  doc="the store deleted / emptied / overwritten with bytes that are not a database / "
                      "back at an older snapshot (a lost WAL) / flushed (a Redis restarted empty)")),
    _fault("check_fails", "process", "s", "a red-flag check reports a failure to the bot (a breaker self-test, "
           "the emergency-stop drill, the monitoring probe, the backup job, the log scan for the key)",
           flag=_P("enum", choices=CHECKED_FLAGS), detail=_P("str", required=False, default="gameday drill")),
    _fault("disk_full", "process", "sn", "the bot's disk is full: its writes fail with ENOSPC", duration=_DUR,
           target=_P("enum", required=False, default="all", choices=("audit", "state", "all"),
                     doc="the audit log, the state store, or everything the bot writes (with the marker)")),
    # operator
    _fault("kill_switch", "operator", "sn", "an operator engages the kill switch",
           mode=_P("enum", choices=("immediate", "graceful", "pause")),
           reason=_P("str", required=False, default="gameday drill"),
           credentials=_P("enum", required=False, default="valid",
                          choices=("valid", "invalid", "missing")),
           # whose valid credentials: a principal of this role (config/access.yaml)
           role=_P("enum", required=False, default="risk_manager",
                   choices=("system_admin", "risk_manager", "trading_ops", "quant_analyst", "auditor"))),
    _fault("clear_kill_switch", "operator", "sn", "an operator clears the kill switch"),
    _fault("manual_resume", "operator", "sn", "an operator resumes trading"),
    # alerts: the receivers of the bot's alert channels (harness/sim/alerts.py, harness/net/receivers.py)
    _fault("alert_sink_outage", "alerts", "sn", "an alert channel's receiver stops answering", duration=_DUR,
           channel=_P("enum", required=False, default="all", choices=ALERT_CHANNELS)),
    _fault("alert_sink_latency", "alerts", "sn", "an alert channel's receiver answers ms late",
           ms=_P("ms", gt=0, doc="added to each answer"), duration=_DUR,
           channel=_P("enum", required=False, default="all", choices=ALERT_CHANNELS)),
)}

# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

MODES = ("sim", "net")
KNOWN_TAGS = ("gate", "drill", "slow", "net")
GENERATORS = ("random_walk", "fixture")
FINAL_VALUES: Mapping[str, tuple[str, ...]] = {
    "trading": ("active", "paused", "halted"),
    "killswitch": ("engaged", "clear"),
    "position": ("flat", "open"),
    # no order was sent again while an earlier one's outcome was unknown (harness-computed)
    "duplicate_orders": ("none", "some"),
    # every alert.sent the bot emitted reached the harness's receiver (harness-computed)
    "unconfirmed_alerts": ("none", "some"),
}
_SCENARIO_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_STEP_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# `match:` operators besides plain equality (a plain value): ordering comparisons apply to
# int / number fields; `in` takes a non-empty list of values of the field's type (any-of).
MATCH_OPS: Mapping[str, str] = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "="}
ORDERING_OPS = frozenset({"lt", "le", "gt", "ge"})
_OP_SPELLINGS = {"lte": "le", "gte": "ge", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "!=": "ne",
                 "neq": "ne", "not": "ne", "one_of": "in", "any": "in"}


@dataclass(frozen=True)
class Condition:
    """One test on one event field: `op` is "eq" (a plain value) or a key of MATCH_OPS; for
    "in", `value` is a tuple of values."""

    op: str
    value: Any

    def test(self, got: Any) -> bool | None:
        """Whether the field's value `got` passes; None when that cannot be decided (an ordering
        comparison on null or a non-finite number)."""
        if self.op in ORDERING_OPS:
            if isinstance(got, bool) or not isinstance(got, int | float) or not math.isfinite(got):
                return None
            return bool({"lt": got < self.value, "le": got <= self.value, "gt": got > self.value,
                         "ge": got >= self.value}[self.op])
        if self.op == "in":
            return any(same_value(got, v) for v in self.value)
        equal = same_value(got, self.value)
        return not equal if self.op == "ne" else equal

    def text(self, name: str) -> str:
        if self.op == "in":
            return f"{name}=" + "|".join(_value_text(v) for v in self.value)
        return f"{name}{MATCH_OPS.get(self.op, '=')}{_value_text(self.value)}"


def same_value(got: Any, wanted: Any) -> bool:
    """Equality as the judge means it: a bool equals only a bool (0 is not false)."""
    if isinstance(wanted, bool) or isinstance(got, bool):
        return isinstance(got, bool) and isinstance(wanted, bool) and got is wanted
    return bool(got == wanted)


Match = Mapping[str, tuple[Condition, ...]]  # field -> conditions, all of which must pass

@dataclass(frozen=True)
class Market:
    generator: str = "random_walk"
    start_price: float = 60000.0
    bars: int | None = 300
    vol_bps: float = 10.0
    file: Path | None = None
    bar: Duration = Duration(5, "m")

    @property
    def bar_ms(self) -> int:
        return self.bar.to_ms()


@dataclass(frozen=True)
class Position:
    side: Literal["long", "short"]
    qty_pct: float | None = None
    notional: float | None = None
    entry_offset_pct: float = 0.0


@dataclass(frozen=True)
class Account:
    equity: float = 10000.0
    position: Position | None = None
    strategy: bool = True  # false: the bot places no entries of its own (trade_entries off)


@dataclass(frozen=True)
class Step:
    id: str
    at: Duration
    fault: str
    params: Mapping[str, Any]  # raw: numbers, str, lists, Duration, PolicyRef
    line: int = 0
    param_lines: Mapping[str, int] = field(default_factory=dict)
    index: int = 0  # position in the file's steps list
    at_line: int = 0

    @property
    def spec(self) -> FaultSpec:
        return FAULTS[self.fault]


@dataclass(frozen=True)
class Expectation:
    kind: Literal["event", "never"]
    event: str
    match: Match = field(default_factory=dict)
    after: str | None = None
    within: Duration | None = None
    until: str | None = None
    line: int = 0
    # net mode: the fixed real cost added unscaled to the SLA (config/net.yaml); None: the one
    # the `after` step's fault kind implies; "none": no allowance (harness/allowances.py)
    allowance: str | None = None

    @property
    def text(self) -> str:
        name = event_pattern(self.event, self.match)
        if self.kind == "never":
            parts = [f"never {name}"]
            if self.after:
                parts.append(f"after {self.after}")
            if self.until:
                parts.append(f"until {self.until}")
            return " ".join(parts)
        parts = [name]
        if self.within is not None:
            parts.append(f"within {self.within}")
        if self.after:
            parts.append(f"after {self.after}")
        return " ".join(parts)


def event_pattern(name: str, match: Match) -> str:
    """`breaker.tripped{breaker=drawdown}`, `order.placed{qty_pct<=15}`; `in` shows as `a|b`."""
    if not match:
        return name
    return name + "{" + ",".join(c.text(k) for k, conds in match.items() for c in conds) + "}"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Final:
    trading: str | None = None
    killswitch: str | None = None
    position: str | None = None
    duplicate_orders: str | None = None
    unconfirmed_alerts: str | None = None
    line: int = 0

    def checks(self) -> list[tuple[str, str]]:
        return [(k, getattr(self, k)) for k in FINAL_VALUES if getattr(self, k) is not None]


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    covers: tuple[str, ...]
    tags: tuple[str, ...]
    mode: Literal["sim", "net"]
    profile: str
    seed: int
    time_scale: float
    duration: Duration | None
    market: Market
    account: Account
    steps: tuple[Step, ...]
    expect: tuple[Expectation, ...]
    final: Final | None
    path: Path
    source: str = ""  # how the file is named in messages (path as given, or relative)
    line: int = 1

    @property
    def bar_ms(self) -> int:
        return self.market.bar_ms

    @property
    def effective_time_scale(self) -> float:
        """The factor durations are multiplied by: time_scale in net mode, 1 in sim mode."""
        return self.time_scale if self.mode == "net" else 1.0

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def where(self, line: int) -> str:
        return f"{self.source or self.path}:{line}"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_DEFAULT: Any = object()


def default_config_dir() -> Path:
    """$GAMEDAY_CONFIG_DIR, else the project's config/ (the bot's own rule: bot.config.config_dir)."""
    from bot.config import config_dir

    return config_dir()


def project_root() -> Path:
    import harness

    return Path(harness.__file__).resolve().parent.parent


HARNESS_CONFIG = "harness.yaml"
DEFAULT_MAX_BARS = 100_000


def max_bars(config_dir: Path | None = None) -> int:
    """`scenario.max_bars` of `<config>/harness.yaml` (DEFAULT_MAX_BARS without the file)."""
    path = (config_dir or default_config_dir()) / HARNESS_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return DEFAULT_MAX_BARS
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError([Problem(str(path), 1, "", f"cannot read the harness limits: {exc}")]) from None
    value = (data.get("scenario") or {}).get("max_bars", DEFAULT_MAX_BARS) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScenarioError([Problem(str(path), 1, "scenario.max_bars", "expected an integer >= 1", value)])
    return value


def known_profiles(config_dir: Path | None = None) -> frozenset[str]:
    directory = (config_dir or default_config_dir()) / "profiles"
    return frozenset(p.stem for p in directory.glob("*.yaml"))


def load_checklist_ids(config_dir: Path | None = None) -> frozenset[str]:
    """Ids in `<config>/checklist.yaml`; ChecklistError when it is missing or malformed."""
    from harness.checklist import checklist_ids

    return checklist_ids(config_dir)


def covers_ok(cid: str, known: Iterable[str]) -> bool:
    """An id is covered when it is a checklist id or a refinement of one (more dots)."""
    known = set(known)
    return cid in known or any(cid.startswith(k + ".") for k in known)


SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
_SNIFF_LIMIT = 1 << 20  # a larger file is data, not a scenario
_SCENARIO_KEY_RE = re.compile(r"""^["']?scenario["']?\s*:""", re.MULTILINE)
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOP_KEY_RE = re.compile(r"""^["']?(scenario|expect|steps)["']?\s*:""", re.MULTILINE)  # YAML: column 0
_JSON_KEY_RE = re.compile(r"""^\s*"(scenario|expect|steps)"\s*:""", re.MULTILINE)


def scenario_signs(path: str | Path) -> str | None:
    """Why the file at `path` looks like a scenario, or None when it does not.

    A `.yaml` / `.yml` / `.json` file looks like a scenario when it is empty (or only comments),
    or its top level is a mapping with a `scenario` key, an `expect` key, or a `steps` list whose
    items have `fault:`; a file that does not parse looks like one when a line starts with one of
    those keys. Collection turns each such file into a test or a collection error, never a skip;
    other YAML / JSON (fixtures, configs, workflows, runbook steps without faults) is left alone.
    """
    path = Path(path)
    if path.suffix not in SCENARIO_SUFFIXES or not path.is_file():
        return None
    try:
        if path.stat().st_size > _SNIFF_LIMIT:
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not "\n".join(line.split("#", 1)[0] for line in text.splitlines()).strip():
        return "it is empty"
    if _SCENARIO_KEY_RE.search(text):  # the common case, without parsing
        return "it has a scenario: key"
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)  # nosec B506 - a SafeLoader; JSON parses as YAML too
    except yaml.YAMLError:
        found = (_JSON_KEY_RE if path.suffix == ".json" else _TOP_KEY_RE).search(text)
        return f"it does not parse and has a {found[1]}: key" if found else None
    if not isinstance(data, dict):
        return None
    if "scenario" in data:
        return "it has a scenario: key"
    if "expect" in data:
        return "it has an expect: key"
    steps = data.get("steps")
    if isinstance(steps, list) and any(isinstance(s, dict) and "fault" in s for s in steps):
        return "its steps: have fault:"
    return None


def load_scenario(
    path: str | Path,
    *,
    profiles: Iterable[str] | Callable[[], Iterable[str]] | None = _DEFAULT,
    checklist_ids: Iterable[str] | Callable[[], Iterable[str] | None] | None = _DEFAULT,
    config_dir: Path | None = None,
    display_path: str | None = None,
) -> Scenario:
    """Load and validate one scenario file; raise ScenarioError listing every problem.

    profiles: the known profile names (default: stems of `<config>/profiles/*.yaml`);
    None skips the check. checklist_ids: the checklist ids `covers:` must cite (default: ids
    of `<config>/checklist.yaml`; a missing one is an error); `covers:` is then required and not
    empty. None skips both (unit tests of the loader and runners). `config_dir` defaults to
    $GAMEDAY_CONFIG_DIR, else the project's config/.
    `display_path` is how the file is named in messages (default: `path` as given).
    """
    path = Path(path)
    file = display_path or str(path)
    if profiles is _DEFAULT:
        profiles = functools.partial(known_profiles, config_dir)
    if checklist_ids is _DEFAULT:
        checklist_ids = functools.partial(load_checklist_ids, config_dir)
    from harness.checklist import ChecklistError

    profile_set = _materialise(profiles)
    try:
        checklist_set = _materialise(checklist_ids)
    except ChecklistError as exc:
        raise ScenarioError([Problem(file, 1, "covers", f"cannot be checked: {line}")
                             for line in str(exc).splitlines()]) from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(file, 1, "", f"cannot read the file: {exc}")]) from None
    data = _parse_yaml(text, file)
    if data is None:
        raise ScenarioError([Problem(file, 1, "", "empty file: a scenario needs at least scenario: ID, "
                                     "covers: [ITEMS] and profile: NAME (docs/scenarios.md); if this is not a "
                                     "scenario, delete it or move it out of the collected paths")])
    return _Loader(file, path, profile_set, checklist_set, max_bars(config_dir)).scenario(data)


def _materialise(source: Any) -> frozenset[str] | None:
    if source is None:
        return None
    if callable(source):
        source = source()
        if source is None:
            return None
    return frozenset(source)


def _allowed(names: Iterable[str]) -> str:
    return ", ".join(names)


def _near(word: str, options: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(str(word), list(options), n=3, cutoff=0.6)


TOP_KEYS: Mapping[str, bool] = {
    "scenario": True, "title": False, "covers": False, "tags": False, "mode": False,
    "profile": True, "seed": False, "time_scale": False, "duration": False, "market": False,
    "account": False, "steps": False, "expect": False, "final": False,
}
MARKET_KEYS = {"generator": False, "start_price": False, "bars": False, "vol_bps": False,
               "file": False, "bar": False}
ACCOUNT_KEYS = {"equity": False, "position": False, "strategy": False}
POSITION_KEYS = {"side": True, "qty_pct": False, "notional": False, "entry_offset_pct": False}
STEP_KEYS = {"id": True, "at": True, "fault": True, "params": False}
EVENT_KEYS = {"event": True, "match": False, "after": False, "within": False, "allowance": False}
NEVER_KEYS = {"never": True, "match": False, "after": False, "until": False}
FINAL_KEYS = {k: False for k in FINAL_VALUES}
POLICY_KEYS = {"policy": True, "plus": False, "times": False, "unit": False}


class _Loader:
    def __init__(self, file: str, path: Path, profiles: frozenset[str] | None,
                 checklist: frozenset[str] | None, bars_limit: int = DEFAULT_MAX_BARS) -> None:
        self.file, self.path = file, path
        self.bars_limit = bars_limit
        self.profiles, self.checklist = profiles, checklist
        self.problems: list[Problem] = []
        self.step_lines: dict[str, int] = {}  # every well-formed step id, even of a bad step

    # -- helpers -------------------------------------------------------------------------
    def err(self, line: int, key: str, what: str, got: Any = _MISSING,
            allowed: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, key, what, got, allowed))

    def mapping(self, value: Any, line: int, key: str, keys: Mapping[str, bool]) -> LMap | None:
        if not isinstance(value, LMap):
            self.err(line, key or "(top level)", "expected a mapping", value)
            return None
        for k in value:
            if k not in keys:
                near = _near(k, keys)
                what = f"unknown key, did you mean {near[0]!r}?" if near else "unknown key"
                self.err(value.key_lines[k], _join(key, k), what, k, _allowed(keys))
        for k, required in keys.items():
            if required and k not in value:
                self.err(value.line, key or "(top level)", f"missing required key {k!r}",
                         allowed=_allowed(keys))
        return value

    def number(self, m: LMap, k: str, key: str, default: Any, *, integer: bool = False,
               gt: float | None = None, ge: float | None = None) -> Any:
        if k not in m:
            return default
        value, line = m[k], m.value_lines[k]
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                integer and not isinstance(value, int)) or not math.isfinite(value):
            self.err(line, _join(key, k), "expected an integer" if integer else "expected a number",
                     value)
            return default
        if gt is not None and not value > gt:
            self.err(line, _join(key, k), "out of range", value, f"> {gt:g}")
        if ge is not None and not value >= ge:
            self.err(line, _join(key, k), "out of range", value, f">= {ge:g}")
        return value if integer else float(value)

    def choice(self, m: LMap, k: str, key: str, choices: Iterable[str], default: Any) -> Any:
        if k not in m:
            return default
        value, choices = m[k], tuple(choices)
        if value not in choices:
            near = _near(value, choices) if isinstance(value, str) else []
            what = f"unknown value, did you mean {near[0]!r}?" if near else "unknown value"
            self.err(m.value_lines[k], _join(key, k), what, value, _allowed(choices))
            return default
        return value

    def text(self, m: LMap, k: str, key: str, default: Any) -> Any:
        if k not in m:
            return default
        value = m[k]
        if not isinstance(value, str) or not value.strip():
            self.err(m.value_lines[k], _join(key, k), "expected non-empty text", value)
            return default
        return value

    def duration(self, value: Any, line: int, key: str, *, signed: bool = False,
                 allow_zero: bool = True, time_only: bool = False) -> Duration | None:
        try:
            parsed = Duration.parse(value)
        except ValueError:
            self.err(line, key, "not a duration", value, DURATION_FORMS)
            return None
        if parsed.value < 0 and not signed:
            self.err(line, key, "a duration cannot be negative", value, DURATION_FORMS)
            return None
        if parsed.value == 0 and not allow_zero:
            self.err(line, key, "a duration must be more than zero", value, DURATION_FORMS)
            return None
        if time_only and parsed.in_bars:
            self.err(line, key, "must be a time, not a number of bars", value,
                     '"500ms", "30s", "5m", "2h"')
            return None
        return parsed

    def string_list(self, m: LMap, k: str, key: str) -> list[tuple[str, int]]:
        if k not in m:
            return []
        value = m[k]
        if not isinstance(value, LList):
            self.err(m.value_lines[k], _join(key, k), "expected a list", value)
            return []
        out = []
        for i, (item, line) in enumerate(zip(value, value.item_lines, strict=True)):
            if not isinstance(item, str) or not item:
                self.err(line, f"{_join(key, k)}[{i}]", "expected a name", item)
            else:
                out.append((item, line))
        return out

    # -- sections ------------------------------------------------------------------------
    def scenario(self, data: Any) -> Scenario:
        top = self.mapping(data, 1, "", TOP_KEYS)
        if top is None:
            raise ScenarioError(self.problems)
        sid = top.get("scenario")
        if "scenario" in top and (not isinstance(sid, str) or not _SCENARIO_ID_RE.match(sid)):
            self.err(top.value_lines["scenario"], "scenario", "invalid scenario id", sid,
                     "lowercase letters, digits and '-', starting with a letter or digit")
        title = self.text(top, "title", "", None) or (sid if isinstance(sid, str) else "")
        mode = self.choice(top, "mode", "", MODES, "sim")
        covers = self.covers(top)
        tags = []
        for tag, line in self.string_list(top, "tags", ""):
            if tag not in KNOWN_TAGS:
                self.err(line, "tags", "unknown tag", tag, _allowed(KNOWN_TAGS))
            tags.append(tag)
        profile = top.get("profile")
        if "profile" in top:
            if not isinstance(profile, str):
                self.err(top.value_lines["profile"], "profile", "expected a profile name", profile)
            elif self.profiles is not None and profile not in self.profiles:
                near = _near(profile, self.profiles)
                what = f"unknown profile, did you mean {near[0]!r}?" if near else "unknown profile"
                self.err(top.value_lines["profile"], "profile", what, profile,
                         _allowed(sorted(self.profiles)) + " (config/profiles/*.yaml)")
        seed = self.number(top, "seed", "", 0, integer=True)
        time_scale = self.number(top, "time_scale", "", 1.0, gt=0)
        duration = None
        if "duration" in top:
            duration = self.duration(top["duration"], top.value_lines["duration"], "duration",
                                     allow_zero=False)
        market = self.market(top)
        account = self.account(top)
        steps = self.steps(top, mode, market)
        expect = self.expectations(top, steps, market, mode)
        final = self.final(top)
        self.check_timeline(mode, duration, market, steps, top)
        if self.problems:
            raise ScenarioError(sorted(self.problems, key=lambda p: p.line))
        return Scenario(
            id=str(sid), title=title, covers=tuple(covers), tags=tuple(tags), mode=mode,
            profile=str(profile), seed=seed, time_scale=time_scale, duration=duration, market=market,
            account=account, steps=tuple(steps), expect=tuple(expect), final=final,
            path=self.path, source=self.file, line=top.line)

    def covers(self, top: LMap) -> list[str]:
        items = self.string_list(top, "covers", "")
        if "covers" not in top and self.checklist is not None:
            self.err(top.line, "(top level)", "missing required key 'covers': a scenario is evidence for "
                     "checklist items; name them", allowed="covers: [ids of config/checklist.yaml]")
        if isinstance(top.get("covers"), LList) and not top["covers"]:
            self.err(top.value_lines["covers"], "covers", "an empty list: a scenario is evidence for checklist "
                     "items; name them", [], "ids of config/checklist.yaml, e.g. C2.drawdown")
        if self.checklist is not None:
            for cid, line in items:
                if not covers_ok(cid, self.checklist):
                    near = _near(cid, self.checklist)
                    what = "not a checklist id nor a refinement of one"
                    if near:
                        what += f", did you mean {near[0]!r}?"
                    self.err(line, "covers", what, cid,
                             "an id of config/checklist.yaml or a refinement of one "
                             f"(e.g. {', '.join(near or sorted(self.checklist)[:5])})")
        return [c for c, _ in items]

    def market(self, top: LMap) -> Market:
        if "market" not in top:
            return Market()
        m = self.mapping(top["market"], top.value_lines["market"], "market", MARKET_KEYS)
        if m is None:
            return Market()
        generator = self.choice(m, "generator", "market", GENERATORS, "random_walk")
        bar = Market.bar
        if "bar" in m:
            bar = self.duration(m["bar"], m.value_lines["bar"], "market.bar", allow_zero=False,
                                time_only=True) or bar
        bars_default = Market.bars if generator == "random_walk" else None
        file = None
        if generator == "fixture":
            if "file" not in m:
                self.err(m.line, "market", "generator fixture needs 'file'",
                         allowed="a path relative to the scenario file or the project")
            else:
                file = self.fixture_file(m)
        elif "file" in m:
            self.err(m.key_lines["file"], "market.file", "only for generator fixture",
                     m["file"], "remove it, or set generator: fixture")
        bars = self.number(m, "bars", "market", bars_default, integer=True, ge=1)
        if bars is not None and bars > self.bars_limit:
            self.err(m.value_lines["bars"], "market.bars",
                     "too many bars for one run: minutes of CPU in sim, hours of real time in net "
                     f"(limit {self.bars_limit}, config/{HARNESS_CONFIG} scenario.max_bars)", bars,
                     f"<= {self.bars_limit}; shorten the market, or raise the limit")
            bars = self.bars_limit
        return Market(
            generator=generator,
            start_price=self.number(m, "start_price", "market", Market.start_price, gt=0),
            bars=bars,
            vol_bps=self.number(m, "vol_bps", "market", Market.vol_bps, ge=0),
            file=file, bar=bar)

    def fixture_file(self, m: LMap) -> Path | None:
        name = m["file"]
        if not isinstance(name, str) or not name:
            self.err(m.value_lines["file"], "market.file", "expected a file path", name)
            return None
        candidates = [self.path.parent / name, project_root() / name]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        self.err(m.value_lines["file"], "market.file", "file not found", name,
                 "a path relative to the scenario file or the project root")
        return None

    def account(self, top: LMap) -> Account:
        if "account" not in top:
            return Account()
        a = self.mapping(top["account"], top.value_lines["account"], "account", ACCOUNT_KEYS)
        if a is None:
            return Account()
        equity = self.number(a, "equity", "account", Account.equity, gt=0)
        position = None
        if "position" in a:
            p = self.mapping(a["position"], a.value_lines["position"], "account.position",
                             POSITION_KEYS)
            if p is not None:
                side = self.choice(p, "side", "account.position", ("long", "short"), "long")
                qty_pct = self.number(p, "qty_pct", "account.position", None, gt=0)
                notional = self.number(p, "notional", "account.position", None, gt=0)
                if ("qty_pct" in p) == ("notional" in p):
                    self.err(p.line, "account.position", "give exactly one of qty_pct, notional",
                             allowed="qty_pct (percent of equity) or notional (quote currency)")
                offset = self.number(p, "entry_offset_pct", "account.position", 0.0)
                position = Position(side, qty_pct, notional, offset)
        # YAML 1.1 reads a bare on/off as a boolean; accept both spellings.
        raw_strategy = a.get("strategy", True)
        strategy = raw_strategy if isinstance(raw_strategy, bool) else \
            self.choice(a, "strategy", "account", ("on", "off"), "on") == "on"
        return Account(equity, position, strategy)

    def steps(self, top: LMap, mode: str, market: Market) -> list[Step]:
        if "steps" not in top:
            return []
        raw = top["steps"]
        if not isinstance(raw, LList):
            self.err(top.value_lines["steps"], "steps", "expected a list of steps", raw)
            return []
        steps: list[Step] = []
        seen = self.step_lines
        for i, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
            key = f"steps[{i}]"
            s = self.mapping(item, line, key, STEP_KEYS)
            if s is None:
                continue
            sid = s.get("id")
            if "id" in s:
                if not isinstance(sid, str) or not _STEP_ID_RE.match(sid):
                    self.err(s.value_lines["id"], f"{key}.id", "invalid step id", sid,
                             "lowercase letters, digits, '-' and '_'")
                    sid = None
                elif sid in seen:
                    self.err(s.value_lines["id"], f"{key}.id",
                             f"duplicate step id (first at line {seen[sid]})", sid)
                else:
                    seen[sid] = s.value_lines["id"]
            at = None
            if "at" in s:
                at = self.duration(s["at"], s.value_lines["at"], f"{key}.at")
            kind: Any = s.get("fault")
            spec = None
            if "fault" in s:
                kind_line = s.value_lines["fault"]
                if kind not in FAULTS:
                    near = _near(kind, FAULTS) if isinstance(kind, str) else []
                    what = f"unknown fault kind, did you mean {near[0]!r}?" if near else \
                        "unknown fault kind"
                    self.err(kind_line, f"{key}.fault", what, kind, _allowed(FAULTS))
                else:
                    spec = FAULTS[kind]
                    if mode not in spec.modes:
                        self.err(kind_line, f"{key}.fault", f"fault {kind!r} is not available in "
                                 f"mode {mode} (it runs in: {', '.join(sorted(spec.modes))})", kind,
                                 f"in {mode}: " + _allowed(k for k, f in FAULTS.items()
                                                           if mode in f.modes))
            params: dict[str, Any] = {}
            param_lines: dict[str, int] = {}
            if spec is not None:
                params, param_lines = self.params(s, key, spec)
            elif "params" in s and not isinstance(s["params"], LMap):
                self.err(s.value_lines["params"], f"{key}.params", "expected a mapping", s["params"])
            if sid is not None and at is not None and spec is not None:
                steps.append(Step(sid, at, kind, params, line, param_lines, i, s.value_lines["at"]))
        return steps

    def params(self, s: LMap, key: str, spec: FaultSpec) -> tuple[dict[str, Any], dict[str, int]]:
        pkey = f"{key}.params"
        raw = s.get("params")
        if raw is None:
            raw = LMap()
            raw.line, raw.key_lines, raw.value_lines = s.line, {}, {}
        if not isinstance(raw, LMap):
            self.err(s.value_lines["params"], pkey, "expected a mapping", raw)
            return {}, {}
        names = list(spec.params)
        for k in raw:
            if k not in spec.params:
                near = _near(k, names)
                what = f"unknown param for {spec.kind}" + (f", did you mean {near[0]!r}?" if near else "")
                self.err(raw.key_lines[k], _join(pkey, k), what, k,
                         _allowed(names) if names else f"none ({spec.kind} takes no params)")
        for name, ps in spec.params.items():
            if ps.required and name not in raw:
                self.err(raw.line if "params" in s else s.line, pkey,
                         f"missing required param {name!r} for {spec.kind}",
                         allowed=f"{name}: {ps.describe()}")
        out: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for name, value in raw.items():
            if name not in spec.params:
                continue
            ps = spec.params[name]
            line = raw.value_lines[name]
            lines[name] = line
            parsed = self.param(value, line, _join(pkey, name), ps)
            if parsed is not _MISSING:
                out[name] = parsed
        return out, lines

    def param(self, value: Any, line: int, key: str, ps: ParamSpec) -> Any:
        if isinstance(value, LMap) and "policy" in value and ps.type in NUMERIC_TYPES:
            return self.policy_ref(value, key, ps)
        if ps.type == "enum":
            if value not in ps.choices:
                self.err(line, key, "unknown value", value, ps.describe())
                return _MISSING
            return value
        if ps.type == "signal":
            name = signal_name(value)
            if name is None or name not in ps.choices:
                self.err(line, key, "not a signal" if name is None else f"{name} is not a crash this fault makes",
                         value, ps.describe())
                return _MISSING
            return name
        if ps.type == "str":
            if not isinstance(value, str):
                self.err(line, key, "expected text", value)
                return _MISSING
            return value
        if ps.type == "flags":
            if not isinstance(value, LList) or not all(isinstance(v, str) and v for v in value):
                self.err(line, key, "expected a list of names", value, ps.describe())
                return _MISSING
            return list(value)
        if ps.type in ("duration", "offset"):
            parsed = self.duration(value, line, key, signed=ps.type == "offset")
            if parsed is None:
                return _MISSING
            problem = check_bounds(parsed.value, ps)
            if problem:
                self.err(line, key, problem, value, ps.describe())
                return _MISSING
            return parsed
        # number, int, ms
        integer = ps.type == "int"
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                integer and not isinstance(value, int)) or not math.isfinite(value):
            self.err(line, key, "expected an integer" if integer else "expected a number",
                     value, ps.describe())
            return _MISSING
        problem = check_bounds(value, ps)
        if problem:
            self.err(line, key, problem, value, ps.describe())
            return _MISSING
        return value if integer else float(value)

    def policy_ref(self, m: LMap, key: str, ps: ParamSpec) -> Any:
        if self.mapping(m, m.line, key, POLICY_KEYS) is None:
            return _MISSING
        path = m["policy"]
        ok = True
        if not isinstance(path, str) or not _POLICY_PATH_RE.match(path):
            self.err(m.value_lines["policy"], f"{key}.policy", "not a dotted policy path", path,
                     "e.g. circuit_breakers.drawdown.threshold_pct")
            ok = False
        if "plus" in m and "times" in m:
            self.err(m.line, key, "give plus or times, not both", dict(m))
            ok = False
        plus = self.number(m, "plus", key, 0.0)
        times = self.number(m, "times", key, 1.0)
        unit: Any = None
        if "unit" in m:
            if ps.type not in TIME_TYPES:
                self.err(m.key_lines["unit"], f"{key}.unit", "only for time params", m["unit"])
                ok = False
            else:
                unit = self.choice(m, "unit", key, ("ms", "s", "m", "h", "bar"), None)
                ok = ok and unit is not None
        elif ps.type in TIME_TYPES and isinstance(path, str):
            unit = policy_unit(path)
            if unit is None:
                self.err(m.value_lines["policy"], f"{key}.policy",
                         "cannot tell the time unit of this policy value", path,
                         "add unit: ms|s|m|h|bar, or cite a *_ms / *_seconds / *_minutes path")
                ok = False
        if not ok:
            return _MISSING
        return PolicyRef(path, plus, times, unit, m.line)

    def expectations(self, top: LMap, steps: list[Step], market: Market, mode: str) -> list[Expectation]:
        if "expect" not in top:
            return []
        raw = top["expect"]
        if not isinstance(raw, LList):
            self.err(top.value_lines["expect"], "expect", "expected a list", raw)
            return []
        step_ids = list(self.step_lines)
        by_id = {s.id: s for s in steps}
        out = []
        for i, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
            key = f"expect[{i}]"
            kind: Literal["event", "never"]
            if isinstance(item, LMap) and "never" in item:
                kind, keys = "never", NEVER_KEYS
            elif isinstance(item, LMap) and "event" in item:
                kind, keys = "event", EVENT_KEYS
            else:
                self.err(line, key, "an expectation starts with 'event:' or 'never:'", item,
                         "{event: NAME, match, after, within} or {never: NAME, match, after, until}")
                continue
            e = self.mapping(item, line, key, keys)
            if e is None:
                continue
            name = e[kind]
            ok = True
            if name not in EVENT_NAMES:
                near = _near(name, EVENT_NAMES) if isinstance(name, str) else []
                what = "unknown event name" + (f", did you mean {' or '.join(near)}?" if near else "")
                self.err(e.value_lines[kind], f"{key}.{kind}", what, name,
                         _allowed(near) if near else _allowed(sorted(EVENT_NAMES)))
                ok = False
            match = self.match(e, key, name if ok else None)
            refs: dict[str, str | None] = {}
            for ref in ("after", "until"):
                refs[ref] = None
                if ref not in e:
                    continue
                target = e[ref]
                if target in self.step_lines and target not in by_id:
                    ok = False  # the step itself is broken and already reported
                elif target not in by_id:
                    self.err(e.value_lines[ref], f"{key}.{ref}", "names no step", target,
                             _allowed(step_ids) if step_ids else "no steps are defined")
                    ok = False
                else:
                    refs[ref] = target
            if refs["after"] and refs["until"]:
                a, u = by_id[refs["after"]].at, by_id[refs["until"]].at
                if a.to_ms(market.bar_ms) >= u.to_ms(market.bar_ms):
                    self.err(e.value_lines["until"], f"{key}.until",
                             f"step {refs['until']!r} ({u}) does not come after step "
                             f"{refs['after']!r} ({a})", refs["until"],
                             _allowed(s.id for s in steps
                                      if s.at.to_ms(market.bar_ms) > a.to_ms(market.bar_ms)))
                    ok = False
            within = None
            if "within" in e:
                within = self.duration(e["within"], e.value_lines["within"], f"{key}.within")
                ok = ok and within is not None
            allowance = self.allowance(e, key, mode, within)
            ok = ok and allowance is not _MISSING
            if ok and match is not None:
                out.append(Expectation(kind, name, match, refs["after"], within, refs["until"],
                                       line, allowance))
        return out

    def allowance(self, e: LMap, key: str, mode: str, within: Duration | None) -> Any:
        """`allowance: NAME` of config/net.yaml, or `none`; _MISSING when wrong (reported)."""
        if "allowance" not in e:
            return None
        from harness.allowances import NONE, AllowanceConfigError, configured

        value, line = e["allowance"], e.value_lines["allowance"]
        try:
            names = sorted(configured().ms) + [NONE]
        except AllowanceConfigError as exc:
            self.err(line, f"{key}.allowance", f"cannot check it: {exc}", value)
            return _MISSING
        if mode != "net":
            self.err(line, f"{key}.allowance", "an allowance is for fixed real costs, which only net mode "
                     "has; remove it", value, "mode: net")
        elif within is None:
            self.err(line, f"{key}.allowance", "an allowance is added to an SLA; this expectation has no "
                     "within", value, "within: DURATION")
        elif value not in names:
            near = _near(value, names) if isinstance(value, str) else []
            self.err(line, f"{key}.allowance", "unknown allowance" + (f", did you mean {near[0]!r}?" if near else ""),
                     value, _allowed(names) + " (config/net.yaml allowances_ms)")
        else:
            return str(value)
        return _MISSING

    def match(self, e: LMap, key: str, event: str | None) -> dict[str, tuple[Condition, ...]] | None:
        """`match:` against the event's declared fields (bot/core/events.py); `event` is None when
        the event name is itself wrong (already reported): only the shape is checked then."""
        if "match" not in e:
            return {}
        m = e["match"]
        if not isinstance(m, LMap):
            self.err(e.value_lines["match"], f"{key}.match", "expected a mapping of field: value", m)
            return None
        fields = EVENTS[event] if event is not None else None
        out: dict[str, tuple[Condition, ...]] = {}
        ok = True
        for k, v in m.items():
            fkey, line = f"{key}.match.{k}", m.value_lines[k]
            if not isinstance(k, str):
                self.err(m.key_lines[k], f"{key}.match", "a field name must be text", k)
                ok = False
                continue
            spec = None
            if fields is not None:
                if k not in fields:
                    near = _near(k, fields)
                    what = f"{event} has no field {k!r}" + (f", did you mean {near[0]!r}?" if near else "")
                    self.err(m.key_lines[k], fkey, what, k,
                             _allowed(fields) if fields else f"none: {event} carries no fields")
                    ok = False
                    continue
                spec = fields[k]
                if spec.kind == "object":
                    self.err(m.key_lines[k], fkey, f"{event}.{k} is a mapping and cannot be matched", k,
                             _allowed(f for f, s in fields.items() if s.kind != "object"))
                    ok = False
                    continue
            conds = self.conditions(v, line, fkey, spec)
            if conds is None:
                ok = False
            else:
                out[k] = conds
        return out if ok else None

    def conditions(self, v: Any, line: int, key: str, spec: FieldSpec | None) -> tuple[Condition, ...] | None:
        """A plain value (equality) or a mapping of operators (MATCH_OPS), typed by `spec`."""
        if isinstance(v, LList):
            self.err(line, key, "a list is not a field value; for any-of write {in: [...]}", v,
                     "a value, or {ne|lt|le|gt|ge: value}, or {in: [values]}")
            return None
        if not isinstance(v, LMap):
            return (Condition("eq", v),) if self.field_value(v, line, key, spec) else None
        if not v:
            self.err(line, key, "no operator given", dict(v), _allowed(MATCH_OPS))
            return None
        out: list[Condition] = []
        for op, arg in v.items():
            okey, oline = f"{key}.{op}", v.value_lines[op]
            if op not in MATCH_OPS:
                near = [_OP_SPELLINGS[op]] if op in _OP_SPELLINGS else \
                    _near(op, MATCH_OPS) if isinstance(op, str) else []
                what = "unknown operator" + (f", did you mean {near[0]!r}?" if near else "")
                if op == "eq":
                    what = "equality is the plain value: write the value itself"
                self.err(v.key_lines[op], okey, what, op, _allowed(MATCH_OPS))
                return None
            if op in ORDERING_OPS:
                if spec is not None and not spec.orderable:
                    self.err(v.key_lines[op], okey, f"{op} compares numbers; this field is {spec.describe()}",
                             op, "ne, in, or a plain value")
                    return None
                if isinstance(arg, bool) or not isinstance(arg, int | float) or not math.isfinite(arg):
                    self.err(oline, okey, "expected a number", arg)
                    return None
                out.append(Condition(op, arg))
            elif op == "in":
                if not isinstance(arg, LList) or not arg:
                    self.err(oline, okey, "expected a non-empty list of values", arg)
                    return None
                if not all(self.field_value(x, xl, okey, spec) for x, xl in zip(arg, arg.item_lines, strict=True)):
                    return None
                out.append(Condition("in", tuple(arg)))
            else:  # ne
                if not self.field_value(arg, oline, okey, spec):
                    return None
                out.append(Condition(op, arg))
        return tuple(out)

    def field_value(self, value: Any, line: int, key: str, spec: FieldSpec | None) -> bool:
        if isinstance(value, LMap | LList):
            self.err(line, key, "expected a plain value", value)
            return False
        if spec is None or spec.accepts(value):
            return True
        near = _near(value, spec.choices) if spec.kind == "enum" and isinstance(value, str) else []
        what = "wrong type" if spec.kind != "enum" or not isinstance(value, str) else "unknown value"
        if near:
            what += f", did you mean {near[0]!r}?"
        self.err(line, key, what, value, spec.describe())
        return False

    def final(self, top: LMap) -> Final | None:
        if "final" not in top:
            return None
        f = self.mapping(top["final"], top.value_lines["final"], "final", FINAL_KEYS)
        if f is None:
            return None
        values = {k: self.choice(f, k, "final", choices, None) for k, choices in FINAL_VALUES.items()}
        return Final(line=f.line, **values)

    def check_timeline(self, mode: str, duration: Duration | None, market: Market,
                       steps: list[Step], top: LMap) -> None:
        if mode != "sim":
            return
        bar_ms = market.bar_ms
        if duration is not None:
            end_ms, end = duration.to_ms(bar_ms), f"duration {duration}"
        elif market.bars is not None:
            end_ms, end = market.bars * bar_ms, f"market.bars {market.bars}"
        else:
            return
        for step in steps:
            if step.at.to_ms(bar_ms) >= end_ms:
                self.err(step.at_line, f"steps[{step.index}].at", f"the step comes after the scenario ends ({end})",
                         str(step.at), f"before {end}")


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def signal_name(value: Any) -> str | None:
    """The canonical name (SIGKILL) of a signal spelled as kill(1) accepts it: KILL, SIGKILL, kill,
    sigkill, 9; None when it names no signal."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return signal.Signals(value).name
        except ValueError:
            return None
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if text.isdigit():
        return signal_name(int(text))
    name = text if text.startswith("SIG") else "SIG" + text
    return name if name in signal.Signals.__members__ else None


def check_bounds(value: float, ps: ParamSpec) -> str | None:
    if ps.gt is not None and not value > ps.gt:
        return "out of range"
    if ps.ge is not None and not value >= ps.ge:
        return "out of range"
    if ps.le is not None and not value <= ps.le:
        return "out of range"
    if ps.nonzero and value == 0:
        return "must not be zero"
    return None


# --------------------------------------------------------------------------------------------
# Resolving params
# --------------------------------------------------------------------------------------------

PolicyLookup = Callable[[str], float]


def resolve_params(step: Step, policy_lookup: PolicyLookup, *, bar_ms: int,
                   time_scale: float = 1.0, file: str | Path | None = None) -> dict[str, Any]:
    """The step's params as plain values, defaults filled in.

    number -> float, int -> int, ms -> float milliseconds, duration/offset -> int milliseconds,
    enum/str -> str, flags -> list[str]; optional params without a default are None.
    Time-like values (ms, duration, offset) are multiplied by `time_scale` (pass the scenario's
    `effective_time_scale`). `policy_lookup(path)` returns the policy value at a dotted path and
    raises KeyError (or LookupError) for an unknown one; that, or a resolved value out of the
    param's range, raises ScenarioError naming `file:line` of the param.
    """
    where = str(file) if file is not None else "<scenario>"
    problems: list[Problem] = []
    out: dict[str, Any] = {}
    spec = FAULTS[step.fault]
    for name, ps in spec.params.items():
        key = f"steps.{step.id}.params.{name}"
        line = step.param_lines.get(name, step.line)
        if name not in step.params:
            out[name] = ps.default
            continue
        value = step.params[name]
        if isinstance(value, PolicyRef):
            try:
                base = policy_lookup(value.path)
            except LookupError:
                problems.append(Problem(where, line, key, "unknown policy path", value.path,
                                        "a dotted path into the merged policy "
                                        "(config/*.yaml, *.toml and the profile)"))
                continue
            if isinstance(base, bool) or not isinstance(base, int | float):
                problems.append(Problem(where, line, key, "the policy value is not a number",
                                        f"{value.path} = {base!r}"))
                continue
            number = value.apply(float(base))
            if ps.type == "int":
                if number != int(number):
                    problems.append(Problem(where, line, key, "resolves to a non-integer",
                                            f"{value} = {number:g}"))
                    continue
                number = int(number)
            bounds = check_bounds(number, ps)
            if bounds:
                problems.append(Problem(where, line, key, f"resolves {bounds}",
                                        f"{value} = {number:g}", ps.describe()))
                continue
            if ps.type in TIME_TYPES:
                unit = value.unit or "ms"
                ms = Duration(number, unit).to_ms(bar_ms) if unit != "ms" else number
                out[name] = _scale(ms, ps, time_scale)
            else:
                out[name] = number
        elif isinstance(value, Duration):
            out[name] = _scale(value.to_ms(bar_ms), ps, time_scale)
        elif ps.type == "ms":
            out[name] = _scale(value, ps, time_scale)
        elif isinstance(value, list):
            out[name] = list(value)
        else:
            out[name] = value
    if problems:
        raise ScenarioError(problems)
    return out


def _scale(ms: float, ps: ParamSpec, time_scale: float) -> float | int:
    scaled = ms * time_scale
    return float(scaled) if ps.type == "ms" else round(scaled)


def resolve_all(scenario: Scenario, policy_lookup: PolicyLookup) -> dict[str, dict[str, Any]]:
    """resolve_params for every step (bar length and time scale from the scenario); all
    problems of all steps in one ScenarioError."""
    problems: list[Problem] = []
    out: dict[str, dict[str, Any]] = {}
    for step in scenario.steps:
        try:
            out[step.id] = resolve_params(step, policy_lookup, bar_ms=scenario.bar_ms,
                                          time_scale=scenario.effective_time_scale,
                                          file=scenario.source or scenario.path)
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return out


def dict_lookup(tree: Mapping[str, Any]) -> PolicyLookup:
    """A policy lookup over a nested mapping (`{"a": {"b": 1}}` answers "a.b"); KeyError if none."""

    def lookup(path: str) -> float:
        node: Any = tree
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(path)
            node = node[part]
        return node  # type: ignore[no-any-return]

    return lookup
