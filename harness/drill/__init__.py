"""Randomized game-day drills: hypothesis-generated fault schedules checked against invariants.

`gameday drill --random N --seed S [--profile futures|pets|both] [--bars B] [--out DIR]`

1. Generate N fault schedules (`Schedule`) with hypothesis: kinds from the fault catalog
   `harness.faults.FAULTS`
   (sim-capable only), times within the market, magnitudes from each param's allowed range and,
   where the policy has a threshold for the param, as `{policy: path, times: x}` with x near 1
   so breakers actually trip (just above / just below / well past).
2. Build each as an in-memory `Scenario` (the loader's own model), run it in sim mode on a
   `harness.sim.world.SimWorld` (the real bot, virtual time, the in-process exchange) with a probe
   that samples the exchange (equity, mark, resting orders, prices) when the bot emits events.
3. Check INVARIANTS over the event stream and the exchange's logs (`check_invariants`), not
   scenario-specific expectations:
   - caps: no entry whose position would exceed max_position_pct x equity, nor total exposure
     max_total_exposure_pct x equity;
   - entries blocked: no entry order (reduce_only=false) while halted / paused (`halt-entry`) or
     after the kill switch engaged until it is cleared (`kill-entry`);
   - exits let through: while halted / paused / killed, a position whose price passes the widest
     stop the policy allows (exits.stop_loss.max_pct) gets an exit order within the breaker SLA;
   - breaker SLA: breaker.tripped with a halt (pause) action -> trading.halted (paused) within
     reaction.breaker_bars bars; flatten_and_halt -> account.flat within the same SLA; the
     immediate kill switch -> account.flat within reaction.kill_switch_immediate_flat_s;
   - no duplicate orders: one client id, one exchange order (events and the exchange's log);
   - the harness did not error: a fault that could not be injected, or the runner raising, is a
     DRILL bug, reported apart from the bot's violations.
4. A failing schedule is shrunk by hypothesis and written as a ready-to-commit scenario file.

Hypothesis, reproducibility and shrinking (why it is used this way): generation is a
`@given` run seeded with `@seed(S)` (derandomize=False: derandomize would hash the test function
and ignore the seed), `database=None` (no state outside the command line), generate phase only,
so the same S always yields the same N schedules - no wall clock anywhere (deadline=None; sim
runs are on virtual time). The schedules then run in a process pool (the runs are independent
and deterministic, so results do not depend on --jobs). For each failure a second `@given` run
with the SAME seed replays the generation - identical choices, so the failing schedule comes
up again - but now with the shrink phase on: the first time the failing schedule appears the
test body runs it for real and raises, and hypothesis shrinks it (re-running the sim on every
candidate, keeping only candidates that break the SAME invariant). That gives hypothesis's own
shrinking without giving up parallel generation or determinism.
"""

from __future__ import annotations

from harness.drill.command import DRILL_FILE, DRILL_SCHEMA, DrillReport, cmd_drill, drill, drill_record
from harness.drill.files import BREAKER_COVERS, COVERS, scenario_document, write_scenario
from harness.drill.invariants import CAP_TOLERANCE, INVARIANTS, check_invariants
from harness.drill.run import Limits, Result, Snapshot, Trace, Violation, run_schedule
from harness.drill.schedule import (
    NEAR,
    NEAR_COUNT,
    SIM_KINDS,
    TRADES_PER_STEP_BARS,
    UNFOLDING,
    DrillStep,
    Schedule,
    schedules,
    to_scenario,
)
from harness.drill.search import SHRINK_RUN_BUDGET, evaluate, generate, run_all, shrink
from harness.drill_args import PROFILES

__all__ = [
    "BREAKER_COVERS", "CAP_TOLERANCE", "COVERS", "DRILL_FILE", "DRILL_SCHEMA", "DrillReport", "DrillStep",
    "INVARIANTS", "Limits", "NEAR", "NEAR_COUNT", "PROFILES", "Result", "SHRINK_RUN_BUDGET", "SIM_KINDS",
    "Schedule", "Snapshot", "TRADES_PER_STEP_BARS", "Trace", "UNFOLDING", "Violation", "check_invariants",
    "cmd_drill", "drill", "drill_record", "evaluate", "generate", "run_all", "run_schedule",
    "scenario_document", "schedules", "shrink", "to_scenario", "write_scenario",
]
