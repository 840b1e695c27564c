"""Runbooks as code: `runbooks/*.yaml`, the model and a loader with precise errors.

A runbook is the incident procedure of risk_safety_checklist.md "Incident Runbooks" as data:

```yaml
runbook: credential_leak
title: Credential leak (P0)
severity: P0                       # a key of slas.yaml incident_response (P0_minutes ...)
phases:                            # SLA windows relative to the incident (its detection)
  immediate: {from: 0m, to: {policy: runbooks.credential_leak.immediate_minutes}}
steps:
  - id: kill_switch
    phase: immediate
    actor: automated               # or a role of config/access.yaml (system_admin, risk_manager ...)
    action: engage_kill_switch     # automated steps: an action of harness.runbooks.actions
    does: Engage the kill switch in immediate mode: cancel every order, flatten
    verify: killswitch.engaged and account.flat are seen; the marker file exists
```

Window bounds are durations ("30s", "5m", "24h") or `{policy: dotted.path}` citing config/slas.yaml
(the unit is the path's suffix: `_minutes`, `_hours`, ...), so every SLA stays configuration.
Every problem is reported as `file:LINE: key: what (got X; allowed: ...)`, all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import load_policy
from bot.io.access import load_access_config
from harness.scenario import (
    Duration,
    LList,
    LMap,
    Problem,
    ScenarioError,
    dict_lookup,
    parse_yaml,
    policy_unit,
    project_root,
)

AUTOMATED = "automated"
TOP_KEYS = ("runbook", "title", "severity", "phases", "steps")
STEP_KEYS = ("id", "phase", "actor", "action", "does", "verify")
SEVERITIES = ("P0", "P1", "P2", "P3")


class RunbookError(ScenarioError):
    """One or more problems in a runbook file; str() is one `file:line: ...` line per problem."""


@dataclass(frozen=True)
class Window:
    """An SLA window relative to the incident, in ms."""

    name: str
    start_ms: int
    end_ms: int

    def holds(self, elapsed_ms: float) -> bool:
        return elapsed_ms <= self.end_ms

    def __str__(self) -> str:
        return f"{self.name} ({_fmt(self.start_ms)}-{_fmt(self.end_ms)})"


@dataclass(frozen=True)
class RunbookStep:
    id: str
    phase: str
    actor: str  # AUTOMATED or an RBAC role
    does: str
    verify: str
    action: str | None = None  # automated steps only
    line: int = 0

    @property
    def automated(self) -> bool:
        return self.actor == AUTOMATED


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str
    severity: str
    response_ms: int  # the severity's first-response deadline (slas.yaml incident_response)
    phases: Mapping[str, Window]
    steps: tuple[RunbookStep, ...]
    file: str

    def window(self, step: RunbookStep) -> Window:
        return self.phases[step.phase]

    def step(self, step_id: str) -> RunbookStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(f"runbook {self.id} has no step {step_id!r}; steps: {[s.id for s in self.steps]}")


def _fmt(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def runbooks_dir() -> Path:
    return project_root() / "runbooks"


def default_actions() -> frozenset[str]:
    from harness.runbooks.actions import ACTION_NAMES

    return ACTION_NAMES


def load_runbook(path: str | Path, *, policy_tree: Mapping[str, Any] | None = None,
                 roles: Iterable[str] | None = None, actions: Iterable[str] | None = None) -> Runbook:
    """Load and validate one runbook file; RunbookError listing every problem (file:line)."""
    path = Path(path)
    file = str(path)
    data = parse_yaml(path.read_text(encoding="utf-8"), file)
    if policy_tree is None:
        policy_tree = load_policy().policy.model_dump()
    role_names = sorted(roles if roles is not None else load_access_config().roles)
    action_names = sorted(actions if actions is not None else default_actions())
    return _Loader(file, policy_tree, role_names, action_names).runbook(data)


def load_runbooks(directory: Path | None = None, **kwargs: Any) -> dict[str, Runbook]:
    out: dict[str, Runbook] = {}
    for path in sorted((directory or runbooks_dir()).glob("*.yaml")):
        rb = load_runbook(path, **kwargs)
        out[rb.id] = rb
    return out


class _Loader:
    def __init__(self, file: str, policy_tree: Mapping[str, Any], roles: list[str], actions: list[str]) -> None:
        self.file = file
        self.lookup = dict_lookup(policy_tree)
        self.roles = roles
        self.actions = actions
        self.problems: list[Problem] = []

    def bad(self, line: int, key: str, what: str, got: Any = None, allowed: str | None = None) -> None:
        if got is None:
            self.problems.append(Problem(self.file, line, key, what, allowed=allowed))
        else:
            self.problems.append(Problem(self.file, line, key, what, got, allowed))

    def _line(self, node: Any, key: str) -> int:
        if isinstance(node, LMap):
            return node.value_lines.get(key, node.key_lines.get(key, node.line))
        return getattr(node, "line", 1)

    def _text(self, node: LMap, key: str, where: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            self.bad(self._line(node, key), f"{where}{key}", "required: a non-empty text",
                     value if key in node else None)
            return ""
        return value.strip()

    def _unknown(self, node: LMap, allowed: tuple[str, ...], where: str) -> None:
        for key in node:
            if key not in allowed:
                self.bad(node.key_lines[key], f"{where}{key}", "unknown key", key, ", ".join(allowed))

    def runbook(self, data: Any) -> Runbook:
        if not isinstance(data, LMap):
            raise RunbookError([Problem(self.file, getattr(data, "line", 1), "", "a runbook is a mapping",
                                        data, "keys " + ", ".join(TOP_KEYS))])
        self._unknown(data, TOP_KEYS, "")
        rid = self._text(data, "runbook", "")
        title = self._text(data, "title", "")
        severity = data.get("severity")
        response_ms = 0
        if severity not in SEVERITIES:
            self.bad(self._line(data, "severity"), "severity", "unknown severity", severity, ", ".join(SEVERITIES))
        else:
            response_ms = self._policy_ms(f"incident_response.{severity}_minutes", self._line(data, "severity"),
                                          "severity")
        phases = self._phases(data.get("phases"), self._line(data, "phases"))
        steps = self._steps(data.get("steps"), self._line(data, "steps"), phases)
        if self.problems:
            raise RunbookError(self.problems)
        return Runbook(rid, title, str(severity), response_ms, phases, tuple(steps), self.file)

    def _policy_ms(self, path: str, line: int, key: str) -> int:
        unit = policy_unit(path)
        try:
            value = self.lookup(path)
        except KeyError:
            self.bad(line, key, "no such policy value in config (slas.yaml)", path)
            return 0
        if unit is None or unit == "bar" or not isinstance(value, int | float):
            self.bad(line, key, "the policy value is not a time (its name must end _s/_minutes/_hours)", path)
            return 0
        return Duration(float(value), unit).to_ms()

    def _bound(self, node: LMap, key: str, where: str) -> int | None:
        value = node.get(key)
        line = self._line(node, key)
        if isinstance(value, LMap) and set(value) == {"policy"} and isinstance(value["policy"], str):
            return self._policy_ms(value["policy"], line, f"{where}{key}")
        if isinstance(value, str):
            try:
                duration = Duration.parse(value)
            except ValueError as exc:
                self.bad(line, f"{where}{key}", str(exc), value)
                return None
            if duration.in_bars or duration.value < 0:
                self.bad(line, f"{where}{key}", "a window bound is a non-negative time, not bars", value,
                         '"0m", "30s", "24h" or {policy: dotted.path}')
                return None
            return duration.to_ms()
        self.bad(line, f"{where}{key}", "required: a duration or {policy: dotted.path}",
                 value if key in node else None)
        return None

    def _phases(self, node: Any, line: int) -> dict[str, Window]:
        if not isinstance(node, LMap) or not node:
            self.bad(line, "phases", "required: a mapping of phase name -> {from, to}", node)
            return {}
        out: dict[str, Window] = {}
        for name, body in node.items():
            where = f"phases.{name}."
            if not isinstance(body, LMap):
                self.bad(node.value_lines[name], f"phases.{name}", "a phase is {from: ..., to: ...}", body)
                continue
            self._unknown(body, ("from", "to"), where)
            start, end = self._bound(body, "from", where), self._bound(body, "to", where)
            if start is None or end is None:
                continue
            if end <= start:
                self.bad(body.line, f"phases.{name}", "the window ends before it starts",
                         f"from {_fmt(start)} to {_fmt(end)}")
                continue
            out[str(name)] = Window(str(name), start, end)
        return out

    def _steps(self, node: Any, line: int, phases: Mapping[str, Window]) -> list[RunbookStep]:
        if not isinstance(node, LList) or not node:
            self.bad(line, "steps", "required: a list of steps", node)
            return []
        out: list[RunbookStep] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(node):
            where = f"steps[{i}]."
            item_line = node.item_lines[i]
            if not isinstance(item, LMap):
                self.bad(item_line, f"steps[{i}]", "a step is a mapping", item, ", ".join(STEP_KEYS))
                continue
            self._unknown(item, STEP_KEYS, where)
            sid = self._text(item, "id", where)
            if sid in seen:
                self.bad(self._line(item, "id"), f"{where}id", f"duplicate step id (first at line {seen[sid]})", sid)
            seen.setdefault(sid, item_line)
            phase = item.get("phase")
            if phase not in phases and phases:
                self.bad(self._line(item, "phase"), f"{where}phase", "unknown phase", phase, ", ".join(phases))
            actor = item.get("actor")
            allowed_actors = [AUTOMATED, *self.roles]
            if actor not in allowed_actors:
                self.bad(self._line(item, "actor"), f"{where}actor", "unknown actor", actor,
                         ", ".join(allowed_actors) + " (roles of config/access.yaml)")
            action = item.get("action")
            if actor == AUTOMATED and action not in self.actions:
                self.bad(self._line(item, "action"), f"{where}action",
                         "an automated step names its action", action, ", ".join(self.actions))
            elif actor != AUTOMATED and "action" in item:
                self.bad(self._line(item, "action"), f"{where}action",
                         "a human step has no action (the person does it; say what in `does`)", action)
            does, verify = self._text(item, "does", where), self._text(item, "verify", where)
            out.append(RunbookStep(sid, str(phase), str(actor), does, verify,
                                   action if actor == AUTOMATED else None, item_line))
        return out
