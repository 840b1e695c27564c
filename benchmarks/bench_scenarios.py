"""Scenario and drill throughput: `.venv/bin/python benchmarks/bench_scenarios.py [--drills N] [--jobs J]`.

Prints:
1. the median (and p90, max) wall time of one sim scenario over the catalog (every file under
   scenarios/ except scenarios/net), loaded, resolved, run by the sim runner and judged in-process;
   and the marginal cost of a 300-bar one (the catalog's 300-bar files, each run 5 times in this
   warm process: no imports or pytest startup in it), against the target of 20 ms;
2. the whole sim gate catalog's wall time on J cores (default 2), in-process through a process
   pool of loader + runner + judge, and - unless --no-pytest - as `pytest -m gate --ignore
   scenarios/net -n0` in a subprocess (one core: what a plain `gameday run -m gate` costs);
3. randomized drill schedules per minute (harness.drill: generation + run + invariant checks, no
   shrinking) on J cores, against the target of 1,000/min, with a profile of where the time of
   one drill run goes when asked (--profile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_policy  # noqa: E402
from bot.core.policy import policy_value  # noqa: E402
from harness.expect import judge  # noqa: E402
from harness.scenario import load_scenario, resolve_all  # noqa: E402
from harness.sim.runner import simulate  # noqa: E402

_POLICIES: dict[str, object] = {}
LONG = {"post-only-entries.yaml", "dead-calm-market-no-entries.yaml"}  # the catalog's 300-bar scenarios


def catalog() -> list[Path]:
    return [p for p in sorted((ROOT / "scenarios").rglob("*.yaml")) if "net" not in p.relative_to(ROOT).parts[1:2]]


def run_one(path: Path) -> tuple[str, float, str]:
    t0 = time.perf_counter()
    scenario = load_scenario(path)
    if scenario.profile not in _POLICIES:
        _POLICIES[scenario.profile] = load_policy(scenario.profile).policy
    policy = _POLICIES[scenario.profile]
    params = resolve_all(scenario, lambda p: policy_value(policy, p))  # type: ignore[arg-type,return-value]
    verdict = judge(scenario, simulate(scenario, params, policy)).verdict
    return path.name, time.perf_counter() - t0, verdict


def all_pass(results: list[tuple[str, float, str]]) -> list[tuple[str, float, str]]:
    """The timed runs, if each one passed: the catalog's expectations are what proves the runner
    simulated anything (a runner that does nothing is fast and fails them), so a time of runs that
    did not pass is no figure."""
    bad = [(name, verdict) for name, _, verdict in results if verdict != "pass"]
    if bad or not results:
        raise SystemExit(f"timed scenarios did not pass {bad or 'any'}: the figure measures nothing")
    return results


def drills_checked(report: Any) -> None:
    """A rate of drill schedules counts only if every one ran, saw events and checked invariants
    clean: a runner or checker that does nothing is fast."""
    idle = [r.index for r in report.results if r.events == 0 or r.checks == 0]
    if report.violations or report.harness_errors or idle or not report.results:
        raise SystemExit(f"the timed drills are no figure: {len(report.violations)} violations, "
                         f"{len(report.harness_errors)} harness errors, schedules that saw no events or checked "
                         f"nothing: {idle[:10]}, {len(report.results)} run")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--drills", type=int, default=400, help="drill schedules to time (default 400)")
    ap.add_argument("--bars", type=int, default=80, help="market length of each drill schedule")
    ap.add_argument("--no-pytest", action="store_true", help="skip the pytest subprocess timing")
    ap.add_argument("--profile", action="store_true", help="cProfile 20 drill schedules, print the top")
    args = ap.parse_args()

    files = catalog()
    times = sorted(t for _, t, _ in all_pass([run_one(p) for p in files]))
    print(f"sim scenario wall time over {len(files)} catalog files: median {statistics.median(times) * 1000:.0f} ms, "
          f"p90 {times[int(len(times) * 0.9)] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")

    long_runs = [run_one(p) for p in files if p.name in LONG for _ in range(5)]
    long_times = sorted(t for _, t, _ in all_pass(long_runs))
    print(f"300-bar sim scenario ({', '.join(sorted(LONG))}), warm process: median "
          f"{statistics.median(long_times) * 1000:.0f} ms, min {long_times[0] * 1000:.0f} ms (target <= 20 ms)")

    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, files))
    wall = time.perf_counter() - t0
    all_pass(results)
    print(f"sim gate catalog, in-process, {args.jobs} cores: {wall:.1f} s for {len(files)} scenarios (all pass)")

    if not args.no_pytest:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gate", "scenarios",
                               "--ignore", "scenarios/net", "--gameday-report", "/tmp/gameday-bench-reports",
                               "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        tail = proc.stdout.strip().splitlines()[-1:] or ["?"]
        print(f"sim gate catalog, `pytest -m gate --ignore scenarios/net` subprocess (1 core): {wall:.1f} s "
              f"[{tail[0]}]")
        if proc.returncode != 0:
            raise SystemExit(f"the timed pytest gate did not pass (exit {proc.returncode}): the figure is void")

    from harness.drill import PROFILES, drill

    report = drill(args.drills, 1, PROFILES, args.bars, Path("/tmp/gameday-bench-drills"), jobs=args.jobs,
                   shrink_failures=False, echo=lambda _: None)
    rate = len(report.results) / report.wall_s * 60
    run_s = sorted(r.wall_s for r in report.results)
    print(f"drill: {len(report.results)} schedules ({args.bars} bars) on {args.jobs} cores in {report.wall_s:.1f} s "
          f"= {rate:.0f} schedules/min (target >= 1000); per schedule median {statistics.median(run_s) * 1000:.0f} ms, "
          f"max {run_s[-1] * 1000:.0f} ms; violations {len(report.violations)}, "
          f"harness errors {len(report.harness_errors)}")
    drills_checked(report)

    if args.profile:
        from harness.drill.search import _policy, evaluate, generate

        plan = generate(20, 1, PROFILES, args.bars, {p: _policy(p) for p in PROFILES})
        prof = cProfile.Profile()
        prof.enable()
        for i, s in enumerate(plan):
            evaluate(s, i)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
