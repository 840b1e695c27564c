"""Figures in the units people read: "2.1 s of 5 s", "0 ms of 1 bar (5 min)", "3 days ago"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

_WITHIN = re.compile(r"\bwithin (?P<num>\d+(?:\.\d+)?)(?P<unit> bars?|ms|s|m|h)(?:\s|$)")
_SECOND, _MINUTE, _HOUR, _DAY = 1_000, 60_000, 3_600_000, 86_400_000


def _num(value: float) -> str:
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return text if text != "-0" else "0"


def duration(ms: float | None) -> str:
    """A duration in milliseconds as a person says it: 480 ms, 2.1 s, 5 min, 1.5 h, 2 days."""
    if ms is None:
        return "-"
    ms = float(ms)
    size = abs(ms)
    if size < _SECOND:
        return f"{round(ms)} ms"
    if size < _MINUTE:
        return f"{_num(ms / _SECOND)} s"
    if size < _HOUR:
        return f"{_num(ms / _MINUTE)} min"
    if size < _DAY:
        return f"{_num(ms / _HOUR)} h"
    days = ms / _DAY
    return f"{_num(days)} day{'s' if _num(days) != '1' else ''}"


def age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "at an unknown time"
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return f"{duration(-seconds * 1000)} in the future (clock skew?)"
    if seconds < 60:
        return "just now"
    return f"{duration(seconds * 1000)} ago"


def expectation_kind(text: str) -> str:
    if text.startswith("never "):
        return "never"
    if text.startswith("final "):
        return "final"
    return "event"


def observed_vs_sla(exp: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """One expectation's outcome: "441 ms of 600 ms (6 s at time scale 0.1)", "held", ..."""
    text = str(exp.get("text", ""))
    verdict = exp.get("verdict")
    kind = expectation_kind(text)
    observed, sla = exp.get("observed_ms"), exp.get("sla_ms")
    if verdict == "error":
        return "not judged (the scenario errored)"
    if kind == "never":
        if verdict == "pass":
            return "held"
        return f"breached {duration(observed)} after the step" if observed is not None else "breached"
    if kind == "final":
        return "as required at the end" if verdict == "pass" else "not as required at the end"
    limit = sla_text(text, sla, float(record.get("time_scale") or 1.0), str(record.get("mode") or ""),
                     exp.get("allowance"), int(exp.get("allowance_ms") or 0))
    if observed is None:
        return f"never came (SLA {limit})" if limit else "never came"
    return f"{duration(observed)} of {limit}" if limit else duration(observed)


def sla_text(text: str, sla_ms: Any, time_scale: float, mode: str, allowance: str | None = None,
             allowance_ms: int = 0) -> str:
    """The SLA as written and as applied: "1 bar (5 min)", "600 ms (6 s at time scale 0.1)", "5 s",
    "8 s (30 s at time scale 0.1 + 5 s restart allowance)"."""
    if not isinstance(sla_ms, int | float):
        return ""
    if allowance and allowance_ms:
        threshold = sla_text(text, sla_ms - allowance_ms, time_scale, mode)
        return f"{duration(sla_ms)} ({threshold} + {duration(allowance_ms)} {allowance} allowance)"
    match = _WITHIN.search(text)
    if match is None:
        return duration(sla_ms)
    num, unit = float(match["num"]), match["unit"].strip()
    if unit.startswith("bar"):
        bars = f"{_num(num)} bar{'s' if num != 1 else ''}"
        scaled = f" at time scale {time_scale:g}" if mode == "net" and time_scale != 1 else ""
        return f"{bars} ({duration(sla_ms)}{scaled})"
    nominal = num * {"ms": 1, "s": _SECOND, "m": _MINUTE, "h": _HOUR}[unit]
    if mode == "net" and time_scale != 1:
        return f"{duration(sla_ms)} ({duration(nominal)} at time scale {time_scale:g})"
    return duration(sla_ms)


def short_commit(commit: str | None) -> str:
    if not commit:
        return "unknown"
    return commit[:10] if re.fullmatch(r"[0-9a-f]{11,64}", commit) else commit


def short_digest(digest: str | None) -> str:
    if not digest:
        return "-"
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]
