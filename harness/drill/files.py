"""Scenario files for failures: a violated invariant written as a ready-to-commit scenario."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.drill.run import Limits, Violation
from harness.drill.schedule import DrillStep, Schedule
from harness.faults import FAULTS
from harness.scenario import (
    Duration,
    Market,
    PolicyRef,
)
from harness.sim.constants import START_MS

COVERS: Mapping[str, tuple[str, ...]] = {
    "caps": ("C1.sizing",), "kill-entry": ("C2.kill_switch",), "halt-exit": ("C1.exits",),
    "duplicates": ("D3.exchange_outage",),
}  # halt-entry and harness-error cite what the schedule's fault kinds cover (FaultKind.drill.covers)
BREAKER_COVERS = {"drawdown": "C2.drawdown", "consecutive_losses": "C2.consecutive_losses",
                  "volatility": "C2.volatility", "latency": "C2.latency", "outage": "D3.exchange_outage",
                  "exchange_outage": "D3.exchange_outage"}


def _raw(value: Any) -> Any:
    if isinstance(value, Duration):
        return str(value)
    if isinstance(value, PolicyRef):
        out: dict[str, Any] = {"policy": value.path}
        if value.times != 1.0:
            out["times"] = value.times
        if value.plus:
            out["plus"] = int(value.plus) if float(value.plus).is_integer() else value.plus
        return out
    return value


def _step_before(schedule: Schedule, ids: list[str], ts_ms: int | None, bar_ms: int) -> int | None:
    """Index of the last step injected at or before ts_ms."""
    if ts_ms is None:
        return None
    best = None
    for i, s in enumerate(schedule.steps):
        if START_MS + s.at_bars * bar_ms <= ts_ms:
            best = i
    return best


def scenario_document(schedule: Schedule, violation: Violation, sid: str, limits: Limits) -> dict[str, Any]:
    """The scenario file for a failure, with expectations that encode the violated invariant
    where the format can say it."""
    bar_ms = Market().bar_ms
    ids = schedule.step_ids()
    covers = list(COVERS.get(violation.invariant, ()))
    if not covers:  # what the schedule's kinds exercise (exchange and process faults: D3.exchange_outage)
        covers = sorted({FAULTS[s.fault].drill.covers or "D3.exchange_outage" for s in schedule.steps} - {"C2"}) \
            or ["C2.kill_switch"]
    expect: list[dict[str, Any]] = []
    final: dict[str, str] = {}
    k = _step_before(schedule, ids, violation.ts_ms, bar_ms)
    if violation.invariant == "kill-entry":
        kill = next((i for i in range(len(ids)) if schedule.steps[i].fault == "kill_switch"
                     and (k is None or i <= k)), k)
        if kill is not None:
            item: dict[str, Any] = {"never": "order.placed", "match": {"reduce_only": False}, "after": ids[kill]}
            clear = next((i for i in range(kill + 1, len(ids)) if schedule.steps[i].fault == "clear_kill_switch"),
                         None)
            if clear is not None:
                item["until"] = ids[clear]
            expect.append(item)
    elif violation.invariant == "halt-entry" and k is not None:
        item = {"never": "order.placed", "match": {"reduce_only": False}, "after": ids[k]}
        nxt = next((i for i in range(k + 1, len(ids))
                    if schedule.steps[i].at_bars * bar_ms > schedule.steps[k].at_bars * bar_ms), None)
        if nxt is not None:
            item["until"] = ids[nxt]
        expect.append(item)
    elif violation.invariant == "breaker-sla" and k is not None:
        breaker = violation.detail.get("breaker")
        if breaker in BREAKER_COVERS:
            covers = [BREAKER_COVERS[str(breaker)]]
        wanted = str(violation.detail.get("wanted", "trading.halted"))
        sla = int(violation.detail.get("sla_ms", limits.breaker_sla_ms))
        within = (violation.ts_ms or 0) - _at_ms(schedule.steps[k], bar_ms) + sla
        expect.append({"event": wanted, "after": ids[k], "within": _duration_text(within, bar_ms)})
    elif violation.invariant == "halt-exit" and k is not None:
        within = (violation.ts_ms or 0) - _at_ms(schedule.steps[k], bar_ms) + limits.breaker_sla_ms
        expect.append({"event": "order.placed", "match": {"reduce_only": True}, "after": ids[k],
                       "within": _duration_text(within, bar_ms)})
    elif violation.invariant == "duplicates":
        final["duplicate_orders"] = "none"
    doc: dict[str, Any] = {
        "scenario": sid,
        "title": f"drill finding ({violation.invariant}): {violation.message}"[:300],
        "covers": covers,
        "tags": ["drill"],
        "mode": "sim",
        "profile": schedule.profile,
        "seed": schedule.seed,
        "market": {"bars": schedule.bars, "vol_bps": schedule.vol_bps},
        "account": {"equity": 10000, "strategy": "on" if schedule.strategy else "off"},
        "steps": [{"id": sid_, "at": f"{s.at_bars} bars", "fault": s.fault,
                   **({"params": {k_: _raw(v) for k_, v in s.params}} if s.params else {})}
                  for sid_, s in zip(ids, schedule.steps, strict=True)],
    }
    if schedule.position is not None:
        doc["account"]["position"] = {"side": schedule.position.side, "qty_pct": schedule.position.qty_pct}
    if expect:
        doc["expect"] = expect
    if final:
        doc["final"] = final
    return doc


def _at_ms(step: DrillStep, bar_ms: int) -> int:
    return START_MS + step.at_bars * bar_ms


def _duration_text(ms: int, bar_ms: int) -> str:
    ms = max(ms, 1)
    if ms % bar_ms == 0:
        n = ms // bar_ms
        return "1 bar" if n == 1 else f"{n} bars"
    return f"{ms}ms"


def write_scenario(doc: Mapping[str, Any], violation: Violation, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{doc['scenario']}.yaml"
    header = (f"# Written by `gameday drill`: a shrunk schedule that broke the invariant "
              f"'{violation.invariant}'.\n# {violation.message}\n")
    text = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=110)
    path.write_text(header + text, encoding="utf-8")
    return path
