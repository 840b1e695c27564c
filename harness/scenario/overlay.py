"""A scenario's `policy:` overlay: settings laid over its profile's policy for that scenario only.

```yaml
policy:
  position_sizing.max_total_exposure_pct: 0.1      # a dotted key ...
  capital_ramp: {declared_capital_usd: 10000}      # ... or a nested table, as a profile writes it
```

The keys are checked against the policy schema when the file is loaded (an unknown key is a
`file:line` error with a did-you-mean); the values when the scenario is collected, against its
profile's policy, by the bot's own validation (`bot.config.overlay_policy`: types, ranges and the
invariants across fields), each problem named at the line of the setting that caused it. The
overlaid policy is what the bot runs on, what `{policy: ...}` params resolve against, and what the
evidence's `config_digest` names; the evidence also keeps the settings (`policy_overlay`).
Sim mode only: a net bot is a process that reads its config from the config directory.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from bot.core.policy import Policy
from harness.scenario.errors import LList, LMap, Problem, ScenarioError


@dataclass(frozen=True)
class PolicySetting:
    path: str  # dotted key of the policy tree
    value: Any  # plain YAML value (lists and mappings as list / dict)
    line: int


def _model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation names (also inside `X | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, LMap):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, LList):
        return [_plain(v) for v in value]
    return value


def read_overlay(value: Any, line: int, file: str, problems: list[Problem]) -> tuple[PolicySetting, ...]:
    """The settings of a `policy:` mapping; problems (not a mapping, a key the schema does not
    have) are appended to `problems`."""
    if not isinstance(value, LMap):
        problems.append(Problem(file, line, "policy", "expected a mapping of policy keys to values", value,
                                "e.g. {position_sizing.max_total_exposure_pct: 0.1}"))
        return ()
    out: list[PolicySetting] = []
    _walk(value, (), Policy, file, problems, out)
    return tuple(out)


def _walk(m: LMap, prefix: tuple[str, ...], model: type[BaseModel], file: str, problems: list[Problem],
          out: list[PolicySetting]) -> None:
    for key, value in m.items():
        line = m.value_lines[key]
        parts = (*prefix, *str(key).split("."))
        current: type[BaseModel] | None = model
        ok = True
        for i, part in enumerate(parts[len(prefix):], start=len(prefix)):
            if current is None:  # below a leaf that is a free mapping (zone multipliers): validated later
                break
            fields = current.model_fields
            if part not in fields:
                near = difflib.get_close_matches(part, list(fields), n=1)
                what = f"unknown policy key, did you mean {near[0]!r}?" if near else "unknown policy key"
                problems.append(Problem(file, m.key_lines[key], "policy." + ".".join(parts[:i + 1]), what,
                                        part, ", ".join(sorted(fields))))
                ok = False
                break
            current = _model(fields[part].annotation)
        if not ok:
            continue
        if isinstance(value, LMap) and current is not None and value:
            _walk(value, parts, current, file, problems, out)
        else:
            out.append(PolicySetting(".".join(parts), _plain(value), line))


def apply_overlay(policy: Policy, settings: tuple[PolicySetting, ...], file: str, line: int) -> Policy:
    """`policy` with the settings laid over it; ScenarioError naming each bad value's line."""
    from bot.config import ConfigError, overlay_policy

    try:
        return overlay_policy(policy, {s.path: s.value for s in settings}, file)
    except ConfigError as exc:
        problems = []
        for p in exc.problems:
            at = next((s.line for s in settings if p.key == s.path or p.key.startswith(s.path + ".")
                       or p.key.startswith(s.path + "[") or s.path.startswith(p.key + ".")), line)
            problems.append(Problem(file, at, "policy." + p.key, f"{p.what} (got {p.got})",
                                    allowed=f"{p.expected}, over the profile's policy"))
        raise ScenarioError(problems) from None


def overlay_text(settings: tuple[PolicySetting, ...]) -> dict[str, Any]:
    """The settings as the evidence keeps them: dotted key -> value."""
    return {s.path: s.value for s in settings}


__all__ = ["PolicySetting", "apply_overlay", "overlay_text", "read_overlay"]
