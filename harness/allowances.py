"""Net-mode allowances: the unscaled fixed real costs an SLA's clock may include (config/net.yaml).

A net SLA is `within x time_scale` (the policy threshold, scaled) plus the allowance for the one
fixed cost the expectation names (`allowance: restart`) or its `after` step's fault kind implies
(`implied_by_fault`). `allowance: none` refuses any. Sim mode has no real costs: no allowance.

`calibrate` (optional) derives an allowance from a cost measured on this machine now: once per
process, `measured()` (what a net run uses) times a bare start of the bot's interpreter and the modules `python -m bot
run` imports before it can restore state (no exchange, no state: a slow restore or a breaker that
does not react is not in it), and the allowance becomes max(configured ms, factor x measured). Load
makes a process start slower; it does not make the bot's reaction any less late. `basis` names
where each allowance came from; the evidence records it beside the allowance.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bot.config import config_dir

NONE = "none"  # `allowance: none`: the SLA is the scaled threshold alone
# What `python -m bot run` imports before it restores state (bot.live, then _serve's imports): the
# interpreter start plus these is ~85 % of a bot start, the rest is reading config, state and the audit.
BOT_START_PROBE = "import bot.live, bot.io.alerts, bot.io.exchange_ccxt, bot.io.metrics, bot.io.control, ccxt.pro"


class AllowanceConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Allowances:
    ms: Mapping[str, int]  # name -> fixed cost in real ms
    implied_by_fault: Mapping[str, str]  # fault kind -> allowance name
    calibrate: Mapping[str, float] = field(default_factory=dict)  # name -> factor x the measured bot start
    basis: Mapping[str, str] = field(default_factory=dict)  # name -> where its ms came from (evidence)

    def basis_of(self, name: str | None) -> str | None:
        if name is None:
            return None
        return self.basis.get(name, f"config/net.yaml allowances_ms.{name}")

    def calibrated(self, measure: Callable[[], int]) -> Allowances:
        """Each `calibrate` allowance as max(configured, factor x `measure()` ms), measured once."""
        if not self.calibrate:
            return self
        start_ms = measure()
        ms, basis = dict(self.ms), dict(self.basis)
        for name, factor in self.calibrate.items():
            derived = round(factor * start_ms)
            ms[name] = max(self.ms[name], derived)
            basis[name] = (f"max(config/net.yaml {self.ms[name]} ms, {factor:g} x {start_ms} ms bare bot start "
                           f"measured at run start = {derived} ms)")
        return replace(self, ms=ms, basis=basis)

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
    if not isinstance(data, dict) or not {"allowances_ms", "implied_by_fault"} <= set(data) <= {
            "allowances_ms", "implied_by_fault", "calibrate"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise AllowanceConfigError(f"{path}: expected the keys allowances_ms and implied_by_fault, and optionally "
                                   f"calibrate (got {got})")
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
    calibrate = data.get("calibrate") or {}
    if not isinstance(calibrate, dict):
        raise AllowanceConfigError(f"{path}: calibrate: expected a mapping allowance -> factor (got {calibrate!r})")
    for name, factor in calibrate.items():
        if name not in ms:
            raise AllowanceConfigError(f"{path}: calibrate.{name}: {name!r} is not in allowances_ms "
                                       f"(known: {', '.join(sorted(ms))})")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 <= factor <= 4:
            raise AllowanceConfigError(f"{path}: calibrate.{name}: expected a factor from 1 to 4 x the measured "
                                       f"bot start (got {factor!r})")
    return Allowances(dict(ms), dict(implied), {k: float(v) for k, v in calibrate.items()})


def bot_start_ms() -> int:
    """Wall ms of a bare bot interpreter start plus its run-path imports, on this machine now."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", BOT_START_PROBE], check=True, capture_output=True)  # noqa: S603
    return round((time.monotonic() - start) * 1000)


def configured() -> Allowances:
    """config/net.yaml of the configured config directory (GAMEDAY_CONFIG_DIR), read once per path."""
    return _cached(config_dir() / "net.yaml")


def measured() -> Allowances:
    """`configured()` with its `calibrate` allowances measured, once per path and process (net runs)."""
    return _measured(config_dir() / "net.yaml")


@functools.cache
def _cached(path: Path) -> Allowances:
    return load_allowances(path)


@functools.cache
def _measured(path: Path) -> Allowances:
    return _cached(path).calibrated(bot_start_ms)
