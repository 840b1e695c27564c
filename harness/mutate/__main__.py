"""`python -m harness.mutate` (`make mutate`): mutation testing of the bot's safety code.

Every mutant of the configured modules (harness/mutate/operators.py) is run against the unit tests
and the sim scenarios that execute its lines (harness/mutate/runner.py). Two scores: killed by
unit tests + scenarios, and killed by the scenario catalog alone. Mutants judged equivalent are
listed with the reason in the config (config/mutation.yaml) and leave the denominator. The
report is written to reports/mutation/ (summary.txt, mutants.json) and the summary to stdout;
the exit status is 1 when a score is below its threshold, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from harness.mutate.operators import Mutant, find_mutants, iter_modules
from harness.mutate.runner import (
    CoverageMap,
    Outcome,
    Running,
    build_coverage,
    is_scenario,
    mutant_lines,
    poll_mutant,
    start_mutant,
    tree_digest,
    warm_up,
)


class UsageError(Exception):
    pass


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the mutation config ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: the mutation config is a mapping (modules, tests, scenarios, thresholds)")
    for key in ("modules", "tests", "thresholds"):
        if key not in data:
            raise UsageError(f"{path}: missing key `{key}`")
    equivalent = data.get("equivalent") or []
    for n, entry in enumerate(equivalent, 1):
        if not isinstance(entry, dict) or not entry.get("mutant") or not entry.get("why"):
            raise UsageError(f"{path}: equivalent entry {n}: give `mutant:` (its name in the report) and `why:`")
    return data


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.mutate", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/mutation.yaml", help="mutation config (default: %(default)s)")
    p.add_argument("--root", default=".", help="project root (default: the current directory)")
    p.add_argument("--module", action="append", default=[],
                   help="only modules whose path contains this (repeatable), e.g. --module risk.py")
    p.add_argument("--mutant", action="append", default=[],
                   help="only the mutant with this report name (repeatable), e.g. to check a new test kills it")
    p.add_argument("--max-mutants", type=int, default=0, help="a random sample of this many mutants (0: all)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed (default: %(default)s)")
    p.add_argument("--out", default="reports/mutation", help="report directory (default: %(default)s)")
    p.add_argument("--threshold-overall", type=float, help="override thresholds.overall_pct")
    p.add_argument("--threshold-scenarios", type=float, help="override thresholds.scenarios_pct")
    p.add_argument("--jobs", type=int, default=1, help="mutants run at once (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the children's pytest output")
    return p.parse_args(argv)


def select_mutants(root: Path, config: dict[str, Any], modules: list[str], limit: int, seed: int,
                   names: list[str] | None = None) -> tuple[list[Mutant], dict[str, str], int]:
    """The mutants to run, every configured module's source by path, and how many mutants the
    selected modules have in all."""
    sources: dict[str, str] = {}
    every: list[Mutant] = []
    for module, rel in iter_modules([str(root / m) for m in config["modules"]]):
        rel = str(Path(rel).relative_to(root))
        module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        # Every module's source, not only the selected ones: the coverage map (and its cache key)
        # is then the same for any --module, so one mapping run serves them all.
        sources[rel] = (root / rel).read_text()
        if not modules or any(m in rel for m in modules):
            every.extend(find_mutants(module, rel, sources[rel]))
    if not every:
        raise UsageError(f"no mutants: no module of {config['modules']} matches --module {modules}")
    chosen = every
    if names:
        chosen = [m for m in every if m.name in names]
        missing = sorted(set(names) - {m.name for m in chosen})
        if missing:
            raise UsageError(f"no such mutant: {', '.join(missing)} (names are listed in mutants.json)")
    if 0 < limit < len(every):
        chosen = sorted(random.Random(seed).sample(every, limit), key=lambda m: (m.path, m.index, m.choice))
    return chosen, sources, len(every)


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 100.0


def summarise(results: list[tuple[Mutant, Outcome]], equivalent: dict[str, str]) -> dict[str, Any]:
    counted = [(m, o) for m, o in results if m.name not in equivalent]
    killed = [o for _, o in counted if o.status in ("killed", "timeout")]
    by_scenarios = [o for o in killed if o.scenario_kill]
    return {
        "mutants": len(results),
        "equivalent": len(results) - len(counted),
        "non_equivalent": len(counted),
        "killed": sum(o.status == "killed" for o in killed),
        "timeouts": sum(o.status == "timeout" for o in killed),
        "survived": sum(o.status == "survived" for _, o in counted),
        "not_covered": sum(o.status == "not_covered" for _, o in counted),
        "killed_by_scenarios": len(by_scenarios),
        "overall_pct": round(_pct(len(killed), len(counted)), 1),
        "scenarios_pct": round(_pct(len(by_scenarios), len(counted)), 1),
    }


def report_lines(summary: dict[str, Any], results: list[tuple[Mutant, Outcome]], equivalent: dict[str, str],
                 total: int, seconds: float, thresholds: tuple[float, float]) -> list[str]:
    lines = [
        f"mutation testing: {summary['mutants']} of {total} mutants run in {seconds:.0f}s; "
        f"{summary['equivalent']} judged equivalent (config), {summary['non_equivalent']} counted",
        f"  killed by unit tests + scenarios: {summary['overall_pct']:.1f}% "
        f"({summary['killed']} failed a test, {summary['timeouts']} timed out; threshold {thresholds[0]:g}%)",
        f"  killed by the scenario catalog alone: {summary['scenarios_pct']:.1f}% "
        f"({summary['killed_by_scenarios']}; threshold {thresholds[1]:g}%)",
        f"  survived: {summary['survived']}, not executed by any test: {summary['not_covered']}",
    ]
    survivors = [(m, o) for m, o in results if o.status in ("survived", "not_covered") and m.name not in equivalent]
    if survivors:
        lines.append("surviving mutants (kill them with a scenario or a test, or judge them equivalent):")
        for m, o in survivors:
            tag = "not executed" if o.status == "not_covered" else f"{o.ran} tests passed"
            lines.append(f"  {m.name}  [{tag}]  {m.source_line}")
    unit_only = [(m, o) for m, o in results if o.status in ("killed", "timeout") and not o.scenario_kill
                 and m.name not in equivalent]
    if unit_only:
        lines.append("killed by unit tests only (no scenario notices them):")
        lines.extend(f"  {m.name}  {m.source_line}" for m, _ in unit_only)
    return lines


def _run_all(root: Path, mutants: list[Mutant], sources: dict[str, str], coverage: CoverageMap, extra: list[str],
             config: dict[str, Any], args: argparse.Namespace, equivalent: dict[str, str]
             ) -> list[tuple[Mutant, Outcome]]:
    """Every mutant against the tests that execute it, `--jobs` children at a time."""
    factor, allowance = float(config.get("timeout_factor", 3)), float(config.get("timeout_allowance_s", 10))
    outcomes: dict[Mutant, Outcome] = {}
    waiting = list(reversed(mutants))
    running: list[Running] = []
    while waiting or running:
        while waiting and len(running) < args.jobs:
            mutant = waiting.pop()
            lines, at_import = mutant_lines(sources[mutant.path], mutant)
            chosen = coverage.covering_file(mutant.path) if at_import else coverage.covering(lines)
            if not chosen:
                outcomes[mutant] = Outcome("not_covered")
                continue
            timeout = factor * sum(coverage.durations.get(t, 0.0) for t in chosen) + allowance
            running.append(start_mutant(root, mutant, sources[mutant.path], chosen, extra, timeout,
                                        quiet=not args.verbose))
        for run in list(running):
            outcome = poll_mutant(run)
            if outcome is None:
                continue
            running.remove(run)
            outcomes[run.mutant] = outcome
            if outcome.status == "survived" and run.mutant.name not in equivalent:
                print(f"  [{len(outcomes)}/{len(mutants)}] survived: {run.mutant.name}", flush=True)
            elif len(outcomes) % 25 == 0:
                print(f"  [{len(outcomes)}/{len(mutants)}] ...", flush=True)
        time.sleep(0.02)
    return [(m, outcomes[m]) for m in mutants]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    root = Path(args.root).resolve()
    try:
        config = load_config(root / args.config if not Path(args.config).is_absolute() else Path(args.config))
        mutants, sources, total = select_mutants(root, config, args.module, args.max_mutants, args.seed,
                                                  args.mutant)
    except UsageError as exc:
        print(f"mutate: {exc}", file=sys.stderr)
        return 2
    equivalent = {e["mutant"]: e["why"] for e in config.get("equivalent") or []}
    thresholds = (args.threshold_overall if args.threshold_overall is not None else config["thresholds"]["overall_pct"],
                  args.threshold_scenarios if args.threshold_scenarios is not None
                  else config["thresholds"]["scenarios_pct"])
    selection = [*config["tests"], *config.get("scenarios", [])]
    extra = ["-m", config["marker"]] if config.get("marker") else []
    started = time.monotonic()
    print(f"mutate: {len(mutants)} of {total} mutants; mapping which tests run which lines ...", flush=True)
    out = root / args.out
    digest = tree_digest(root, ["bot", "harness", "config", *config["tests"], *config.get("scenarios", [])])
    coverage = build_coverage(root, set(sources), selection, extra, float(config.get("coverage_timeout_s", 1800)),
                              quiet=not args.verbose, cache=out / "coverage.json",
                              key=f"{digest}:{extra}:{sorted(sources)}")
    if coverage.failed:
        print("mutate: the unmutated tests fail; fix them first:\n  " + "\n  ".join(coverage.failed), file=sys.stderr)
        return 2
    scenarios = sum(is_scenario(t) for t in coverage.tests)
    print(f"mutate: {len(coverage.tests) - scenarios} unit tests and {scenarios} scenarios mapped in "
          f"{time.monotonic() - started:.0f}s", flush=True)
    warm_up(coverage.warm_modules)
    results = _run_all(root, mutants, sources, coverage, extra, config, args, equivalent)
    seconds = time.monotonic() - started
    summary = summarise(results, equivalent)
    lines = report_lines(summary, results, equivalent, total, seconds, thresholds)
    whole = not (args.module or args.max_mutants or args.mutant)
    stale = sorted(set(equivalent) - {m.name for m in mutants}) if whole else []
    if stale:
        lines.append("equivalent entries that match no mutant (the code moved; update config): " + ", ".join(stale))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    (out / "mutants.json").write_text(json.dumps({
        "summary": summary, "thresholds": {"overall_pct": thresholds[0], "scenarios_pct": thresholds[1]},
        "seconds": round(seconds, 1), "total_mutants": total, "sampled": len(mutants) < total,
        "mutants": [{**asdict(m), "name": m.name, **asdict(o), "equivalent": equivalent.get(m.name)}
                    for m, o in results]}, indent=1))
    print("\n".join(lines))
    print(f"mutate: report in {out}/summary.txt and mutants.json")
    scores = (("overall", summary["overall_pct"], thresholds[0]),
              ("scenarios alone", summary["scenarios_pct"], thresholds[1]))
    low = [f"{label} {value:.1f}% < {limit:g}%" for label, value, limit in scores if value < limit]
    if low:
        print("mutate: FAIL: score below threshold: " + "; ".join(low))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
