"""Net-mode allowances: the unscaled fixed real costs an SLA's clock may include (config/net.yaml).

A net SLA is `within x time_scale` (the policy threshold, scaled) plus the allowance for the one
fixed cost the expectation names (`allowance: restart`) or its `after` step's fault kind implies
(`implied_by_fault`). `allowance: none` refuses any. Sim mode has no real costs: no allowance.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config import config_dir

NONE = "none"  # `allowance: none`: the SLA is the scaled threshold alone


class AllowanceConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Allowances:
    ms: Mapping[str, int]  # name -> fixed cost in real ms
    implied_by_fault: Mapping[str, str]  # fault kind -> allowance name

    def resolve(self, named: str | None, after_fault: str | None) -> tuple[str | None, int]:
        """(name, ms) for an expectation that names `named` (None: not stated) and counts from a
        step of `after_fault` (None: from the start). (None, 0): no allowance applies."""
        name = named if named is not None else self.implied_by_fault.get(after_fault or "")
        if name is None or name == NONE:
            return None, 0
        if name not in self.ms:
            raise AllowanceConfigError(f"allowance {name!r} is not in config/net.yaml allowances_ms "
                                       f"(known: {', '.join(sorted(self.ms))})")
        return name, self.ms[name]


def load_allowances(path: Path | None = None) -> Allowances:
    """Read and check config/net.yaml; every problem names the file and key."""
    path = path or config_dir() / "net.yaml"
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AllowanceConfigError(f"{path}: cannot read the net allowances: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"allowances_ms", "implied_by_fault"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise AllowanceConfigError(f"{path}: expected exactly the keys allowances_ms and implied_by_fault "
                                   f"(got {got})")
    ms, implied = data["allowances_ms"], data["implied_by_fault"]
    if not isinstance(ms, dict) or not ms:
        raise AllowanceConfigError(f"{path}: allowances_ms: expected a mapping name -> ms (got {ms!r})")
    for name, value in ms.items():
        if name == NONE or not isinstance(name, str):
            raise AllowanceConfigError(f"{path}: allowances_ms: {name!r} cannot name an allowance "
                                       f"({NONE!r} means no allowance)")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AllowanceConfigError(f"{path}: allowances_ms.{name}: expected whole ms >= 0 (got {value!r})")
    if not isinstance(implied, dict):
        raise AllowanceConfigError(f"{path}: implied_by_fault: expected a mapping fault -> allowance "
                                   f"(got {implied!r})")
    for fault, name in implied.items():
        if name not in ms:
            raise AllowanceConfigError(f"{path}: implied_by_fault.{fault}: {name!r} is not in allowances_ms "
                                       f"(known: {', '.join(sorted(ms))})")
    return Allowances(dict(ms), dict(implied))


def configured() -> Allowances:
    """config/net.yaml of the configured config directory (GAMEDAY_CONFIG_DIR), read once per path."""
    return _cached(config_dir() / "net.yaml")


@functools.cache
def _cached(path: Path) -> Allowances:
    return load_allowances(path)
