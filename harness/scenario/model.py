"""The scenario model: what a loaded file is (market, account, steps, expectations, final)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.faults import FAULTS, FaultKind
from harness.scenario.overlay import PolicySetting
from harness.scenario.values import Duration

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
# int / number fields; `in` takes a non-empty list of values of the field's type (any-of);
# `contains` a non-empty piece of a text field (a reason that carries a run's path or time).
MATCH_OPS: Mapping[str, str] = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "=",
                                "contains": "~"}
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
        if self.op == "contains":
            return isinstance(got, str) and self.value in got
        equal = same_value(got, self.value)
        return not equal if self.op == "ne" else equal

    def text(self, name: str) -> str:
        if self.op == "in":
            return f"{name}=" + "|".join(_value_text(v) for v in self.value)
        if self.op == "contains":
            return f"{name}~{json.dumps(self.value)}"
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
    def spec(self) -> FaultKind:
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
    policy: tuple[PolicySetting, ...] = ()  # laid over the profile's policy for this run (sim only)

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
