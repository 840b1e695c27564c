"""Meta-test: the sim gate catalog catches regressions of the bot's safety controls.

Each case breaks the REAL bot code with a monkeypatch (on the class the runner's Trader /
Engine / BreakerBoard look the method up on, so it applies inside `harness.sim`, which
builds its own bot in-process), runs the gate catalog (every `scenarios/**/*.yaml` tagged
`gate` with mode `sim`, params resolved against the profile's policy exactly as
`harness.collect` does, run by the registered sim runner, judged by `harness.expect.judge`)
and asserts that a scenario relevant to the regression FAILS. An `error` verdict does not
count: it means the harness could not establish the experiment, not that it caught anything.

For speed a broken bot's scan runs the relevant scenarios first and stops at the first
relevant failure; set GAMEDAY_META_FULL=1 to run the whole catalog for every case (to see
everything that catches it). The control test always runs the whole catalog on the unbroken
bot: every verdict must be pass, or the meta-tests above prove nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import harness.sim.runner  # noqa: F401  (registers collect.RUNNERS["sim"])
from bot import runtime
from bot.core import costs as costs_mod
from bot.core import engine as engine_mod
from bot.core import killswitch as killswitch_mod
from bot.core import risk as risk_mod
from bot.core.breakers import base as breakers_base
from bot.core.breakers import consecutive_losses as losses_mod
from bot.core.breakers import drawdown as drawdown_mod
from bot.io import alerts as alerts_mod
from harness import collect
from harness.expect import Judgement, judge
from harness.scenario import Scenario, load_scenario, resolve_all

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
FULL_SCAN = os.environ.get("GAMEDAY_META_FULL") == "1"


# --------------------------------------------------------------------------------------------
# The catalog, loaded and resolved the way harness.collect does it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateCase:
    scenario: Scenario
    params: dict[str, dict[str, Any]]
    policy: collect.PolicyBundle


@dataclass(frozen=True)
class Outcome:
    scenario: str
    verdict: str
    message: str


def load_sim_gate_catalog() -> list[GateCase]:
    bundles: dict[str, collect.PolicyBundle] = {}
    cases: list[GateCase] = []
    ids: dict[str, Path] = {}
    for path in sorted(SCENARIOS_DIR.rglob("*.y*ml")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        scenario = load_scenario(path)  # default profiles + checklist ids, as pytest collects
        if "gate" not in scenario.tags or scenario.mode != "sim":
            continue
        assert scenario.id not in ids, f"duplicate scenario id {scenario.id}: {ids[scenario.id]}, {path}"
        ids[scenario.id] = path
        if scenario.profile not in bundles:
            bundles[scenario.profile] = collect.policy_provider(scenario.profile, None)
        bundle = collect.overlaid(bundles[scenario.profile], scenario)  # its `policy:` overlay, as collected
        cases.append(GateCase(scenario, resolve_all(scenario, bundle.lookup), bundle))
    return cases


@pytest.fixture(scope="module")
def catalog() -> list[GateCase]:
    cases = load_sim_gate_catalog()
    assert cases, f"no sim gate scenarios under {SCENARIOS_DIR}"
    return cases


def run_case(case: GateCase, config: pytest.Config, workdir: Path) -> Outcome:
    """Run and judge one scenario as harness.collect.ScenarioItem.setup does (a runner that
    raises is an error, never a pass); no evidence is appended anywhere."""
    scenario = case.scenario
    runner = collect.RUNNERS[scenario.mode]
    context = collect.RunContext(config, case.params, case.policy, workdir,
                                 scenario.effective_time_scale)
    try:
        record = runner(scenario, context)
    except Exception as exc:  # the harness broke: not a catch
        return Outcome(scenario.id, "error", f"the sim runner raised {type(exc).__name__}: {exc}")
    judgement: Judgement = judge(scenario, record)
    return Outcome(scenario.id, judgement.verdict, judgement.message)


# --------------------------------------------------------------------------------------------
# The broken bots (each a monkeypatch of the real bot code)
# --------------------------------------------------------------------------------------------


def drawdown_never_trips(mp: pytest.MonkeyPatch) -> None:
    """Intraday and peak drawdown: observe() never returns a verdict (no warning, no trip)."""
    mp.setattr(drawdown_mod._TieredDrawdown, "observe", lambda self, x: None)


def emergency_does_not_flatten(mp: pytest.MonkeyPatch) -> None:
    """The emergency tier trips with halt_trading instead of flatten_and_halt, so the board never
    sets flatten_requested (the halt itself still happens)."""
    trip = drawdown_mod._TieredDrawdown._trip

    def downgraded(self: Any, level: Any, dd: float, ts_ms: int) -> breakers_base.BreakerVerdict:
        verdict = trip(self, level, dd, ts_ms)
        if verdict.action == "flatten_and_halt":
            verdict = dataclasses.replace(verdict, action="halt_trading")
            self.verdict = verdict
        return verdict

    mp.setattr(drawdown_mod._TieredDrawdown, "_trip", downgraded)


def killswitch_engage_does_not_cancel(mp: pytest.MonkeyPatch) -> None:
    """An immediate engage returns a KillResult with cancel_all/flatten False: the engage path
    itself cancels and flattens nothing (only the status flag is left for later inputs)."""
    engage = killswitch_mod.KillSwitch.engage

    def no_cancel(self: Any, *args: Any, **kwargs: Any) -> killswitch_mod.KillResult:
        return dataclasses.replace(engage(self, *args, **kwargs), cancel_all=False, flatten=False)

    mp.setattr(killswitch_mod.KillSwitch, "engage", no_cancel)


def trader_cancel_all_is_noop(mp: pytest.MonkeyPatch) -> None:
    """The Trader's cancel-all path does nothing (no exchange call, no orders.cancelled)."""

    async def cancel_all(self: Any, intent: Any) -> None:
        return None

    mp.setattr(runtime.Trader, "_cancel_all", cancel_all)


def halt_blocks_reduce_only(mp: pytest.MonkeyPatch) -> None:
    """The risk gate denies risk-reducing orders (exits, stops, flatten) while trading is halted."""
    reducing = risk_mod.RiskGate._reducing

    def blocked(self: Any, o: risk_mod.OrderIntent, ctx: risk_mod.GateContext) -> risk_mod.Decision:
        if ctx.board.state == "halted":
            return risk_mod.Decision(False, f"{o.purpose} denied: trading halted")
        return reducing(self, o, ctx)

    mp.setattr(risk_mod.RiskGate, "_reducing", blocked)


def win_does_not_reset_streak(mp: pytest.MonkeyPatch) -> None:
    """A winning trade leaves the consecutive-loss counter where it was."""
    observe = losses_mod.ConsecutiveLossesBreaker.observe

    def sticky(self: Any, x: Any) -> breakers_base.BreakerVerdict | None:
        if isinstance(x, breakers_base.TradeClosed) and x.pnl > 0:
            return None
        return observe(self, x)

    mp.setattr(losses_mod.ConsecutiveLossesBreaker, "observe", sticky)


def state_not_persisted(mp: pytest.MonkeyPatch) -> None:
    """Trader._persist writes nothing: a restarted bot finds no breaker/kill-switch state."""
    mp.setattr(runtime.Trader, "_persist", lambda self, force=False: None)


def restore_ignores_input(mp: pytest.MonkeyPatch) -> None:
    """Engine.restore accepts the saved snapshot and applies none of it."""
    mp.setattr(engine_mod.Engine, "restore", lambda self, data: None)


def pause_leaves_resting_entries(mp: pytest.MonkeyPatch) -> None:
    """A pause, halt or kill switch that forbids entries leaves the entries already resting on the book."""
    mp.setattr(engine_mod.Engine, "_cancel_resting_entries", lambda self, board, kill: [])


def restart_keeps_orphaned_entries(mp: pytest.MonkeyPatch) -> None:
    """A restarted bot leaves the entries its previous process booked resting on the book."""
    mp.setattr(engine_mod.Engine, "orphaned_entry", lambda self, client_id, reduce_only: False)


def restart_drops_exit_plan(mp: pytest.MonkeyPatch) -> None:
    """A restarted bot plans the reconciled position afresh instead of restoring its saved exit plan."""
    mp.setattr(engine_mod.Engine, "_restored_plan", lambda self, saved, side, qty: None)


def edge_check_always_passes(mp: pytest.MonkeyPatch) -> None:
    """The minimum edge after costs lets every entry through (whatever the market's moves can pay)."""
    mp.setattr(engine_mod, "entry_allowed_by_edge",
               lambda *args, **kwargs: costs_mod.EdgeCheck(True, 1.0, 0.0, "edge check disabled"))


def sizing_ignores_position_cap(mp: pytest.MonkeyPatch) -> None:
    """Entry sizing forgets max_position_pct (the risk gate is left to catch what it asks for)."""
    size_position = engine_mod.size_position

    def uncapped(policy: Any, **kwargs: Any) -> Any:
        sizing = policy.position_sizing.model_copy(update={"max_position_pct": 1.0})
        return size_position(policy.model_copy(update={"position_sizing": sizing}), **kwargs)

    mp.setattr(engine_mod, "size_position", uncapped)


def resume_refusal_is_silent(mp: pytest.MonkeyPatch) -> None:
    """A refused manual resume changes nothing but tells no one (no resume.refused)."""
    mp.setattr(engine_mod.Engine, "manual_resume", lambda self, actor: self.board.manual_resume(
        actor, self.clock.now_ms()))
def alerts_never_fall_back(mp: pytest.MonkeyPatch) -> None:
    """The alert router gives up on a failed channel without trying its fallback."""
    mp.setattr(alerts_mod.AlertRouter, "_next_fallback", lambda self, d, routes: (None, False))


def alert_claimed_without_delivery(mp: pytest.MonkeyPatch) -> None:
    """The alert router reports alert.sent whatever the sink answered (a failure counts as delivered)."""
    finished = alerts_mod.AlertRouter.finished
    mp.setattr(alerts_mod.AlertRouter, "finished", lambda self, attempt, error: finished(self, attempt, None))


def breaker_trips_do_not_alert(mp: pytest.MonkeyPatch) -> None:
    """breaker.tripped is not alert-worthy: the router makes no alert of it."""
    classify = alerts_mod.AlertRouter.classify
    mp.setattr(alerts_mod.AlertRouter, "classify",
               lambda self, event: None if event.name == "breaker.tripped" else classify(self, event))


@dataclass(frozen=True)
class Regression:
    id: str
    breaks: Callable[[pytest.MonkeyPatch], None]
    # Scenarios that exercise the broken control, most direct first (they are run first).
    relevant: tuple[str, ...]


DRAWDOWN_RESTART = ("restart-keeps-drawdown-halt", "restart-keeps-drawdown-halt-pets")
RESTART = (*DRAWDOWN_RESTART, "restart-keeps-loss-streak-halt", "killswitch-survives-restart")
EMERGENCY = ("drawdown-emergency-flattens-futures", "pets-drawdown-40pct-emergency-flattens")
ALERT_FALLBACK = ("alerts-receiver-down-retries-then-falls-back", "alerts-slow-receiver-times-out-then-falls-back")
IMMEDIATE_KILL = ("killswitch-immediate-acts-on-engage", "killswitch-immediate-flattens-futures",
                  "killswitch-immediate-flattens-pets")
RESTING_ENTRY = ("killswitch-graceful-cancels-resting-entry-pets", "killswitch-pause-cancels-resting-entry-pets",
                 "pets-ws-lag-cancels-resting-entry", "pets-spread-spike-cancels-resting-entry")
CAPS = ("pets-entries-capped-at-max-position", "entries-capped-at-max-position-futures")

REGRESSIONS = [
    Regression("drawdown-never-trips", drawdown_never_trips, (
        "drawdown-critical-halts-futures", *EMERGENCY, "drawdown-emergency-just-below-futures",
        "drawdown-warning-futures", "drawdown-warning-pets", "drawdown-resume-waits-for-cooldown",
        "pets-daily-loss-5pct-stops", "pets-drawdown-25pct-stops", "halt-lets-stop-loss-exit",
        *DRAWDOWN_RESTART)),
    Regression("emergency-does-not-flatten", emergency_does_not_flatten, EMERGENCY),
    Regression("killswitch-engage-does-not-cancel", killswitch_engage_does_not_cancel, IMMEDIATE_KILL),
    Regression("trader-cancel-all-is-noop", trader_cancel_all_is_noop, (
        *IMMEDIATE_KILL, "killswitch-graceful-flattens-at-timeout-futures",
        "killswitch-graceful-flattens-at-timeout-pets")),
    Regression("halt-blocks-reduce-only-exits", halt_blocks_reduce_only, (
        "halt-lets-stop-loss-exit", "halt-lets-stop-loss-exit-pets", *EMERGENCY,
        "exchange-outage-major-closes-and-halts", "pets-exchange-outage-major-halts")),
    Regression("win-does-not-reset-loss-streak", win_does_not_reset_streak, ("losses-win-resets-streak",)),
    Regression("state-not-persisted", state_not_persisted, RESTART),
    Regression("restore-ignores-input", restore_ignores_input, RESTART),
    Regression("pause-leaves-resting-entries", pause_leaves_resting_entries, RESTING_ENTRY),
    Regression("restart-keeps-orphaned-entries", restart_keeps_orphaned_entries,
               ("pets-restart-cancels-orphaned-entry",)),
    Regression("restart-drops-exit-plan", restart_drops_exit_plan,
               ("restart-keeps-time-exit", "restart-keeps-stop-level", "restart-keeps-volatility-exit")),
    Regression("edge-check-always-passes", edge_check_always_passes, ("dead-calm-market-no-entries",)),
    Regression("sizing-ignores-position-cap", sizing_ignores_position_cap, CAPS),
    Regression("resume-refusal-is-silent", resume_refusal_is_silent, ("drawdown-resume-waits-for-cooldown",)),
    Regression("alerts-never-fall-back", alerts_never_fall_back, ALERT_FALLBACK),
    Regression("alert-claimed-without-delivery", alert_claimed_without_delivery, ALERT_FALLBACK),
    Regression("breaker-trips-do-not-alert", breaker_trips_do_not_alert, (
        "alerts-breaker-trip-slack-and-email", "alerts-emergency-stop-sms-and-large-loss", *ALERT_FALLBACK)),
]


def _ordered(catalog: list[GateCase], first: Iterable[str]) -> list[GateCase]:
    by_id = {c.scenario.id: c for c in catalog}
    head = [by_id[i] for i in first]
    return head + [c for c in catalog if c.scenario.id not in set(first)]


def _listing(outcomes: Iterable[Outcome]) -> str:
    return "\n".join(f"  {o.scenario}: {o.verdict}" for o in outcomes) or "  (none)"


def test_relevant_scenario_ids_exist(catalog: list[GateCase]) -> None:
    """A renamed or deleted scenario must not silently empty a regression's expected set."""
    ids = {c.scenario.id for c in catalog}
    missing = {r.id: sorted(set(r.relevant) - ids) for r in REGRESSIONS if set(r.relevant) - ids}
    assert not missing, f"expected scenarios not in the sim gate catalog: {missing}"


@pytest.mark.parametrize("regression", REGRESSIONS, ids=[r.id for r in REGRESSIONS])
def test_gate_catches_regression(regression: Regression, catalog: list[GateCase],
                                 monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config,
                                 tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    regression.breaks(monkeypatch)
    relevant = set(regression.relevant)
    outcomes: list[Outcome] = []
    for case in _ordered(catalog, regression.relevant):
        outcome = run_case(case, pytestconfig, tmp_path)
        outcomes.append(outcome)
        if not FULL_SCAN and outcome.verdict == "fail" and outcome.scenario in relevant:
            break
    failed = [o for o in outcomes if o.verdict == "fail"]
    caught_by = sorted(o.scenario for o in failed if o.scenario in relevant)
    errors = [o for o in outcomes if o.verdict == "error"]
    scope = "whole catalog" if FULL_SCAN else f"{len(outcomes)} of {len(catalog)} scenarios"
    record_property("caught_by", ", ".join(caught_by))
    record_property("failed", ", ".join(sorted(o.scenario for o in failed)))
    print(f"\n{regression.id}: caught by {caught_by} ({scope}); all failing: "
          f"{sorted(o.scenario for o in failed)}; errors: {sorted(o.scenario for o in errors)}")
    assert caught_by, (
        f"the sim gate catalog did NOT catch regression {regression.id!r} "
        f"({regression.breaks.__doc__}): no scenario in {sorted(relevant)} failed.\n"
        f"Failing scenarios (not in the relevant set): {sorted(o.scenario for o in failed) or 'none'}\n"
        f"Errored (the harness broke, not a catch): {sorted(o.scenario for o in errors) or 'none'}\n"
        f"Scanned ({scope}):\n{_listing(outcomes)}")


def test_unbroken_bot_passes_the_whole_sim_gate(catalog: list[GateCase], pytestconfig: pytest.Config,
                                                 tmp_path: Path) -> None:
    """The control: without a regression every sim gate scenario passes (so a failure above is
    the regression's doing, not a catalog that fails anyway)."""
    outcomes = [run_case(case, pytestconfig, tmp_path) for case in catalog]
    bad = [o for o in outcomes if o.verdict != "pass"]
    assert not bad, (f"{len(bad)} of {len(outcomes)} sim gate scenarios did not pass on the unbroken bot:\n"
                     + "\n".join(f"--- {o.scenario}: {o.verdict}\n{o.message}" for o in bad))
