"""Fault params: read against the catalog's ParamSpec (harness.faults), and resolved to plain
numbers once a policy lookup is at hand (`resolve_params`, `resolve_all`)."""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.faults import FAULTS, FaultKind
from harness.faults.contract import NUMERIC_TYPES, TIME_TYPES, ParamSpec
from harness.scenario.errors import _MISSING, LList, LMap, Problem, ScenarioError
from harness.scenario.model import Scenario, Step
from harness.scenario.reader import POLICY_KEYS, _allowed, _join, _near, _Reader
from harness.scenario.values import _POLICY_PATH_RE, Duration, PolicyRef, policy_unit


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


class _ParamReader(_Reader):
    """A step's params against its kind's ParamSpec."""

    def params(self, s: LMap, key: str, spec: FaultKind) -> tuple[dict[str, Any], dict[str, int]]:
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
