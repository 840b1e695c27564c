"""`gameday drill --random`: the drill as a command, its summary and its drill.json record."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.drill.files import scenario_document, write_scenario
from harness.drill.invariants import INVARIANTS
from harness.drill.run import Limits, Result, Violation
from harness.drill.schedule import SIM_KINDS, Schedule
from harness.drill.search import _policy, _violations_of, generate, run_all, shrink
from harness.drill_args import ATR_HISTORY_BARS, PROFILES
from harness.scenario import (
    Market,
)


@dataclass
class DrillReport:
    schedules: list[Schedule]
    results: list[Result]
    written: list[Path]
    wall_s: float

    @property
    def violations(self) -> list[tuple[Result, Violation]]:
        return [(r, v) for r in self.results for v in r.violations if v.invariant != "harness-error"]

    @property
    def harness_errors(self) -> list[tuple[Result, Violation]]:
        return [(r, v) for r in self.results for v in r.violations if v.invariant == "harness-error"]

    def summary(self) -> list[str]:
        kinds = Counter(k for s in self.schedules for k in s.kinds)
        missing = [k for k in SIM_KINDS if k not in kinds]
        checks = sum(r.checks for r in self.results)
        rate = len(self.results) / self.wall_s * 60 if self.wall_s > 0 else 0.0
        by_inv = Counter(v.invariant for _, v in self.violations)
        lines = [f"drill: {len(self.results)} schedules run in {self.wall_s:.1f} s ({rate:.0f}/min), "
                 f"{sum(r.events for r in self.results)} bot events",
                 f"kinds exercised ({len(kinds)} of {len(SIM_KINDS)} sim kinds): "
                 + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))]
        if missing:
            lines.append("kinds not drawn: " + ", ".join(missing)
                         + (f" (atr_spike needs --bars >= {ATR_HISTORY_BARS + 4})" if "atr_spike" in missing else ""))
        lines.append(f"invariant checks made: {checks} ({', '.join(INVARIANTS)})")
        lines.append(f"violations: {len(self.violations)}"
                     + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(by_inv.items())) + ")" if by_inv else ""))
        lines.append(f"harness errors (drill bugs, not the bot's): {len(self.harness_errors)}")
        for r, v in (self.violations + self.harness_errors)[:10]:
            lines.append(f"  schedule {r.index} [{v.invariant}] {v.message}")
        return lines


def drill(n: int, seed_value: int, profiles: Sequence[str], bars: int, out_dir: Path, jobs: int = 1,
          shrink_failures: bool = True, echo: Callable[[str], None] = print) -> DrillReport:
    t0 = time.perf_counter()
    policies = {p: _policy(p) for p in profiles}
    plan = generate(n, seed_value, profiles, bars, policies)
    results = run_all(plan, jobs)
    wall = time.perf_counter() - t0
    report = DrillReport(plan, results, [], wall)
    done: set[str] = set()
    for result in results:
        bad = list(result.violations)
        if not bad:
            continue
        v = next((x for x in bad if x.invariant != "harness-error"), bad[0])
        if v.invariant in done:  # one file per invariant and run: the first, shrunk
            continue
        done.add(v.invariant)
        smallest = result.schedule
        if shrink_failures:
            smallest = shrink(result.schedule, v.invariant, seed_value, n, profiles, bars, policies,
                              _violations_of)
        final = next((x for x in _violations_of(smallest) if x.invariant == v.invariant), v)
        policy = policies[smallest.profile]
        sid = f"drill-{v.invariant}-s{seed_value}-{result.index}"
        doc = scenario_document(smallest, final, sid, Limits.from_policy(policy, Market().bar_ms))
        path = write_scenario(doc, final, out_dir)
        report.written.append(path)
        echo(f"wrote {path} ({v.invariant}; shrunk from {len(result.schedule.steps)} to "
             f"{len(smallest.steps)} steps)")
    return report


DRILL_FILE = "drill.json"
DRILL_SCHEMA = "gameday.drill/v1"


def drill_record(report: DrillReport, seed_value: int, profiles: Sequence[str], bars: int, out_dir: Path,
                 started_at: str) -> dict[str, Any]:
    """The drill's summary as evidence (drill.json, gameday.drill/v1): the readiness report's drill
    history reads it."""
    from harness.evidence import git_commit

    bad = report.violations + report.harness_errors
    return {
        "schema": DRILL_SCHEMA, "git_commit": git_commit(), "started_at": started_at,
        "wall_s": round(report.wall_s, 3), "seed": seed_value, "profiles": list(profiles), "bars": bars,
        "schedules": len(report.results), "events": sum(r.events for r in report.results),
        "checks": sum(r.checks for r in report.results),
        "violation_count": len(report.violations), "harness_error_count": len(report.harness_errors),
        "violations_by_invariant": dict(sorted(Counter(v.invariant for _, v in bad).items())),
        "kinds": dict(sorted(Counter(k for s in report.schedules for k in s.kinds).items())),
        "violations": [{"schedule": r.index, "invariant": v.invariant, "message": v.message} for r, v in bad[:50]],
        "written": [p.relative_to(out_dir).as_posix() if p.is_relative_to(out_dir) else str(p) for p in report.written],
        "verdict": "fail" if bad else "pass",
    }


def cmd_drill(args: argparse.Namespace) -> int:
    import json

    from harness.evidence import iso_z, tree_state, utc_now, write_manifest

    profiles = PROFILES if args.profile == "both" else (args.profile,)
    out_dir = Path(args.out)
    started = iso_z(utc_now())
    report = drill(args.n, args.seed, profiles, args.bars, out_dir, jobs=args.jobs,
                   shrink_failures=args.shrink)
    for line in report.summary():
        print(line)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = drill_record(report, args.seed, profiles, args.bars, out_dir, started)
    (out_dir / DRILL_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    code = 1 if (report.violations or report.harness_errors) else 0
    manifest = write_manifest(out_dir, tree_state(), complete=True, exit_status=code)
    print(f"drill record: {out_dir / DRILL_FILE}; manifest: {manifest}")
    return code
