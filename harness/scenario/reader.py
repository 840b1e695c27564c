"""The loader's typed getters: each reads one value from a line-numbered mapping or records a
problem naming file:line, the key path and what is allowed."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.faults.contract import DURATION_FORMS
from harness.scenario.errors import _MISSING, LList, LMap, Problem
from harness.scenario.files import DEFAULT_MAX_BARS
from harness.scenario.model import FINAL_VALUES
from harness.scenario.values import Duration


def _allowed(names: Iterable[str]) -> str:
    return ", ".join(names)


def _near(word: str, options: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(str(word), list(options), n=3, cutoff=0.6)


TOP_KEYS: Mapping[str, bool] = {
    "scenario": True, "title": False, "covers": False, "tags": False, "mode": False,
    "profile": True, "seed": False, "time_scale": False, "duration": False, "market": False,
    "account": False, "policy": False, "steps": False, "expect": False, "final": False,
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


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)



class _Reader:
    """Problems collected while reading one file, and typed getters that record them."""

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
