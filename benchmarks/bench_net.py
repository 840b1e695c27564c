"""Net-mode benchmark: fault-to-reaction latency of the real bot process vs its SLA.

    GAMEDAY_REQUIRE_SERVICES=1 .venv/bin/python benchmarks/bench_net.py [--repeat N]

- every scenario of scenarios/net/: each expectation's observed latency and SLA (ms, wall clock);
- the immediate kill switch: time to account.flat with 0 ms and 200 ms of injected REST latency;
- Redis loss: time from the Redis proxy going down to trading.paused (detection).
Needs Redis (redis-server on PATH or GAMEDAY_REDIS_URL); Toxiproxy falls back to the embedded one.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.collect import default_policy_provider  # noqa: E402
from harness.expect import judge  # noqa: E402
from harness.net.runner import run_net  # noqa: E402
from harness.scenario import load_scenario, resolve_all  # noqa: E402


def run_one(path: Path, evidence: Path, *, mutate: Any = None) -> tuple[Any, Any]:
    scenario = load_scenario(path)
    if mutate is not None:
        scenario = mutate(scenario)
    bundle = default_policy_provider(scenario.profile, None)
    params = resolve_all(scenario, bundle.lookup)
    context = SimpleNamespace(params=params, policy=bundle, evidence_dir=evidence, time_scale=scenario.time_scale)
    record = run_net(scenario, context)  # type: ignore[arg-type]
    return scenario, judge(scenario, record)


KILL_SWITCH_ROUND_TRIPS = 3  # cancel-all; the reduce-only close; positions + open orders (concurrent)


def without_latency(scenario: Any) -> Any:
    steps = tuple(s for s in scenario.steps if s.fault != "order_latency")
    return dataclasses.replace(scenario, steps=steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the kill-switch and Redis figures (default 3)")
    parser.add_argument("--kill-switch-only", action="store_true", help="only the kill-switch figures")
    args = parser.parse_args()
    evidence = Path(tempfile.mkdtemp(prefix="bench-net-"))
    print(f"{'scenario':<44} {'verdict':<7} {'observed/sla':>16}  expectation")
    for path in [] if args.kill_switch_only else sorted((ROOT / "scenarios" / "net").glob("*.yaml")):
        scenario, judgement = run_one(path, evidence)
        for exp in judgement.expectations:
            if exp.kind != "event":
                continue
            cell = f"{exp.observed_ms if exp.observed_ms is not None else '-'}/{exp.sla_ms}"
            print(f"{scenario.id:<44} {judgement.verdict:<7} {cell:>16}  {exp.text[:70]}")
    kill = ROOT / "scenarios" / "net" / "kill-switch-through-latency.yaml"
    medians: dict[str, float] = {}
    for label, mutate in (("0 ms", without_latency), ("200 ms", None)):
        flats = []
        for _ in range(args.repeat):
            _, judgement = run_one(kill, evidence, mutate=mutate)
            flats += [e.observed_ms for e in judgement.expectations
                      if e.text.startswith("account.flat") and e.observed_ms is not None]
        if len(flats) != args.repeat:  # a kill switch that does not flatten has no time to flat
            print(f"kill switch immediate, {label}: account.flat came in {len(flats)} of {args.repeat} runs")
            return 1
        medians[label] = statistics.median(flats)
        print(f"kill switch immediate, {label} injected REST latency: time to account.flat "
              f"median {medians[label]} ms, runs {flats} "
              f"(SLA reaction.kill_switch_immediate_flat_s = 10000 ms)")
    # The floor: the 0 ms time plus the round trips that cannot overlap - cancel-all, the close,
    # then positions and open orders read together - each paying the injected 200 ms.
    floor = medians["0 ms"] + KILL_SWITCH_ROUND_TRIPS * 200
    print(f"kill switch immediate, 200 ms: {medians['200 ms'] / floor:.2f}x the floor of {floor:.0f} ms "
          f"(0 ms median + {KILL_SWITCH_ROUND_TRIPS} x 200 ms; target <= 1.2x)")
    if args.kill_switch_only:
        return 0
    detections = []
    for _ in range(args.repeat):
        _, judgement = run_one(ROOT / "scenarios" / "net" / "redis-outage-fails-closed.yaml", evidence)
        detections += [e.observed_ms for e in judgement.expectations
                       if e.text.startswith("trading.paused") and e.observed_ms is not None]
    print(f"Redis loss -> trading.paused: median {statistics.median(detections) if detections else 'never'} ms, "
          f"runs {detections} (SLA 1000 ms; the bot pings the store every 250 ms)")
    print(f"artifacts: {evidence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
