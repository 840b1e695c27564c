"""Generation, parallel runs and shrinking: hypothesis drives the schedules, a process pool the runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from harness.drill.invariants import check_invariants
from harness.drill.run import Limits, Result, Violation, run_schedule
from harness.drill.schedule import Schedule, schedules
from harness.progress import tracker
from harness.scenario import (
    Market,
)

SHRINK_RUN_BUDGET = 150  # sim runs hypothesis may spend shrinking one failure


def _settings(n: int, phases: Sequence[Phase]) -> settings:
    return settings(max_examples=n, derandomize=False, database=None, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)


def generate(n: int, seed_value: int, profiles: Sequence[str], bars: int,
             policies: Mapping[str, Any]) -> list[Schedule]:
    """N schedules, the same for the same (seed, profiles, bars): hypothesis seeded by `seed`."""
    out: list[Schedule] = []
    seen: set[str] = set()

    @seed(seed_value)
    @_settings(_budget(n), [Phase.generate])
    @given(schedules(profiles, bars, policies))
    def collect(schedule: Schedule) -> None:
        if len(out) >= n:
            raise _Enough
        if schedule.key not in seen:
            seen.add(schedule.key)
            out.append(schedule)

    try:
        collect()
    except _Enough:
        pass
    return out


def _budget(n: int) -> int:
    """Examples hypothesis may generate to find n distinct schedules (it repeats some)."""
    return 3 * n + 20


class _Enough(Exception):
    """N distinct schedules collected: stop generating."""


class _Found(Exception):
    pass


def shrink(target: Schedule, invariant: str, seed_value: int, n: int, profiles: Sequence[str], bars: int,
           policies: Mapping[str, Any], run: Callable[[Schedule], list[Violation]]) -> Schedule:
    """The smallest schedule hypothesis finds that still breaks `invariant`, starting from `target`
    (replaying the seeded generation until `target` comes up, then shrinking it)."""
    state: dict[str, Any] = {"hit": False, "best": target, "runs": 0}

    @seed(seed_value)
    @_settings(_budget(n), [Phase.generate, Phase.shrink])
    @given(schedules(profiles, bars, policies))
    def replay(schedule: Schedule) -> None:
        if not state["hit"]:
            if schedule.key != target.key:
                return
            state["hit"] = True
        if state["runs"] >= SHRINK_RUN_BUDGET:
            return
        state["runs"] += 1
        if any(v.invariant == invariant for v in run(schedule)):
            if _size(schedule) <= _size(state["best"]):
                state["best"] = schedule
            raise _Found(invariant)

    try:
        replay()
    except _Found:
        pass
    return state["best"]  # type: ignore[no-any-return]


def _size(s: Schedule) -> tuple[int, int, int]:
    return (len(s.steps), sum(len(st_.params) for st_ in s.steps), sum(st_.at_bars for st_ in s.steps))


_POLICIES: dict[str, Any] = {}


def _policy(profile: str) -> Any:
    if profile not in _POLICIES:
        from bot.config import load_policy

        _POLICIES[profile] = load_policy(profile).policy
    return _POLICIES[profile]


def evaluate(schedule: Schedule, index: int = 0) -> Result:
    """Run and check one schedule (the unit of work of the process pool)."""
    t0 = time.perf_counter()
    policy = _policy(schedule.profile)
    scenario_bar_ms = Market().bar_ms
    trace = run_schedule(schedule, policy)
    violations, checks = check_invariants(trace, Limits.from_policy(policy, scenario_bar_ms))
    return Result(index, schedule, violations, checks, len(trace.events), time.perf_counter() - t0)


def _violations_of(schedule: Schedule) -> list[Violation]:
    return evaluate(schedule).violations


def run_all(schedules_: Sequence[Schedule], jobs: int) -> list[Result]:
    with tracker("drill", len(schedules_), unit="schedules") as shown:
        failing = 0

        def done(result: Result) -> Result:  # progress per schedule (harness/progress.py)
            nonlocal failing
            failing += bool(result.violations)
            shown.advance(note=f"{failing} failing so far")
            return result

        if jobs <= 1 or len(schedules_) < 2:
            return [done(evaluate(s, i)) for i, s in enumerate(schedules_)]
        import multiprocessing

        ctx = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
        chunk = max(1, len(schedules_) // (jobs * 8))
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            return [done(r) for r in pool.map(evaluate, schedules_, range(len(schedules_)), chunksize=chunk)]
