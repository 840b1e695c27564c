"""`config/report.yaml`: freshness windows per kind of evidence, attestation expiry limits.

A problem is reported the way the policy loader reports one (bot.config.Problem):
`report.yaml: freshness.scans.same_commit_days: must not be negative (got -1; expected ...)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config import ConfigError, Problem

REPORT_FILE = "report.yaml"
FRESHNESS_KINDS = ("scenarios", "game_days", "tests", "scans", "validation")
WINDOW_KEYS = ("same_commit_days", "other_commit_days")
ATTESTATION_KEYS = ("default_expiry_days", "max_expiry_days")
MAX_DAYS = 3650
_WINDOW_RANGE = f"a number of days from 0 to {MAX_DAYS}, or null (no age limit)"
_EXPIRY_RANGE = f"a whole number of days from 1 to {MAX_DAYS}"


@dataclass(frozen=True)
class Window:
    """How long evidence of one kind stays current; None: no age limit, 0: never current."""

    same_commit_days: float | None
    other_commit_days: float | None

    def limit(self, same_commit: bool) -> float | None:
        return self.same_commit_days if same_commit else self.other_commit_days

    def describe(self) -> str:
        return f"same commit: {_days(self.same_commit_days)}; other commit or config: {_days(self.other_commit_days)}"


def _days(value: float | None) -> str:
    if value is None:
        return "no age limit"
    if value == 0:
        return "never current"
    return f"{value:g} day{'s' if value != 1 else ''}"


@dataclass(frozen=True)
class ReportConfig:
    freshness: Mapping[str, Window]
    default_expiry_days: int
    max_expiry_days: int
    path: Path


def load_report_config(config_dir: Path) -> ReportConfig:
    """Read and validate `<config_dir>/report.yaml`; raise ConfigError listing every problem."""
    path = config_dir / REPORT_FILE
    problems: list[Problem] = []
    data: Any = None
    if not path.is_file():
        problems.append(Problem(str(path), "(file)", "file not found", str(path),
                                "an existing file (see config/report.yaml in the project)"))
    else:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(Problem(REPORT_FILE, "(syntax)", "cannot parse", " ".join(str(exc).split()),
                                    "valid YAML"))
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(REPORT_FILE, "(top level)", "wrong type", _show(data),
                                   "a mapping with freshness: and attestations:")])
    _unknown(data, ("freshness", "attestations"), "", problems)
    freshness: dict[str, Window] = {}
    fresh = _section(data, "freshness", problems)
    _unknown(fresh, FRESHNESS_KINDS, "freshness.", problems)
    for kind in FRESHNESS_KINDS:
        raw = _section(fresh, kind, problems, f"freshness.{kind}")
        _unknown(raw, WINDOW_KEYS, f"freshness.{kind}.", problems)
        values = [_window_days(raw, key, f"freshness.{kind}.{key}", problems) for key in WINDOW_KEYS]
        freshness[kind] = Window(*values)
    att = _section(data, "attestations", problems)
    _unknown(att, ATTESTATION_KEYS, "attestations.", problems)
    default = _expiry(att, "default_expiry_days", problems)
    maximum = _expiry(att, "max_expiry_days", problems)
    if not problems and default > maximum:
        problems.append(Problem(REPORT_FILE, "attestations.default_expiry_days", "longer than the maximum",
                                str(default), f"at most attestations.max_expiry_days ({maximum})"))
    if problems:
        raise ConfigError(problems)
    return ReportConfig(freshness, default, maximum, path)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str, problems: list[Problem]) -> None:
    for key in data:
        if key not in allowed:
            problems.append(Problem(REPORT_FILE, f"{prefix}{key}", "unknown key", _show(data[key]),
                                    "one of " + ", ".join(allowed)))


def _section(data: Mapping[str, Any], key: str, problems: list[Problem], where: str | None = None) -> Mapping[str, Any]:
    where = where or key
    if key not in data:
        problems.append(Problem(REPORT_FILE, where, "missing key", "nothing", "a mapping"))
        return {}
    value = data[key]
    if not isinstance(value, Mapping):
        problems.append(Problem(REPORT_FILE, where, "wrong type", _show(value), "a mapping"))
        return {}
    return value


def _window_days(data: Mapping[str, Any], key: str, where: str, problems: list[Problem]) -> float | None:
    if key not in data:
        if data:  # an empty section already said "missing" / "wrong type" once
            problems.append(Problem(REPORT_FILE, where, "missing key", "nothing", _WINDOW_RANGE))
        return None
    value = data[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(Problem(REPORT_FILE, where, "wrong type", _show(value), _WINDOW_RANGE))
        return None
    if not 0 <= value <= MAX_DAYS:
        problems.append(Problem(REPORT_FILE, where, "out of range", _show(value), _WINDOW_RANGE))
        return None
    return float(value)


def _expiry(data: Mapping[str, Any], key: str, problems: list[Problem]) -> int:
    where = f"attestations.{key}"
    value = data.get(key)
    if key not in data:
        problems.append(Problem(REPORT_FILE, where, "missing key", "nothing", _EXPIRY_RANGE))
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem(REPORT_FILE, where, "wrong type", _show(value), _EXPIRY_RANGE))
        return 0
    if not 1 <= value <= MAX_DAYS:
        problems.append(Problem(REPORT_FILE, where, "out of range", _show(value), _EXPIRY_RANGE))
        return 0
    return value
