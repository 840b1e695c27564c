"""Faults with the bot's own strategy running (scenarios/strategy/), and atr_spike's ramp.

The exposure-arranging faults (loss_streak, drawdown, winning_trade) inject whatever the strategy
is doing: its open position is the first trade, its resting post-only entry is filled (the market
comes to it) before anything else. Each scenario under scenarios/strategy/ is shown failing on a
bot broken in what it checks (a FAIL, not an ERROR: the fault was still injected), and the
volatility-expansion scenario is shown to need its ramp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.core import engine as engine_mod
from bot.core.breakers import base as breakers_base
from bot.core.breakers import consecutive_losses as losses_mod
from bot.core.exits import ExitSignal
from harness import collect
from harness.scenario import ScenarioError, Step, load_scenario, resolve_all
from harness.sim.constants import START_MS
from harness.sim.runner import simulate
from harness.sim.world import SimWorld
from tests.harness.test_gate_catches_regressions import (
    GateCase,
    Outcome,
    drawdown_never_trips,
    run_case,
    win_does_not_reset_streak,
)

STRATEGY_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "strategy"
RAMP = "atr-ramp-volatility-exit-futures.yaml"
BAR = 300_000


def case(path: Path, edit: Callable[[Step], Step] | None = None) -> GateCase:
    scenario = load_scenario(path)
    if edit is not None:
        scenario = dataclasses.replace(scenario, steps=tuple(edit(s) for s in scenario.steps))
    bundle = collect.policy_provider(scenario.profile, None)
    return GateCase(scenario, resolve_all(scenario, bundle.lookup), bundle)


def run(path: Path, config: pytest.Config, tmp_path: Path, edit: Callable[[Step], Step] | None = None
        ) -> Outcome:
    return run_case(case(path, edit), config, tmp_path)


def _policy(c: GateCase) -> Any:
    policy = c.policy.policy
    return getattr(policy, "policy", policy)  # a LoadedPolicy or the Policy itself, as run_sim takes it


# --- broken bots ------------------------------------------------------------------------------


def losses_never_trip(mp: pytest.MonkeyPatch) -> None:
    """The consecutive-loss breaker counts nothing: no warning, no size cut, no halt."""
    observe = losses_mod.ConsecutiveLossesBreaker.observe

    def blind(self: Any, x: Any) -> breakers_base.BreakerVerdict | None:
        return None if isinstance(x, breakers_base.TradeClosed) else observe(self, x)

    mp.setattr(losses_mod.ConsecutiveLossesBreaker, "observe", blind)


def no_volatility_exit(mp: pytest.MonkeyPatch) -> None:
    """The volatility exit never fires (stop, take profit and time exits still do)."""
    check_exit = engine_mod.check_exit

    def without(state: Any, bar: Any, atr: float | None) -> ExitSignal | None:
        signal = check_exit(state, bar, atr)
        return None if signal is not None and signal.reason == "volatility" else signal

    mp.setattr(engine_mod, "check_exit", without)


def pnl_not_reset_on_close(mp: pytest.MonkeyPatch) -> None:
    """A closed trade leaves a stale 1.00 in the per-trade P&L: the next trade reports it on top of its own."""
    account = engine_mod.Engine._account

    def stale(self: Any, fill: Any) -> None:
        was_open = self.exit_state is not None
        account(self, fill)
        if was_open and self.exit_state is None:
            self._trade_pnl = 1.0

    mp.setattr(engine_mod.Engine, "_account", stale)


CATCHES = {
    "loss-streak-halts-futures.yaml": losses_never_trip,
    "loss-streak-stops-pets.yaml": losses_never_trip,
    "drawdown-halts-futures.yaml": drawdown_never_trips,
    "drawdown-stops-pets.yaml": drawdown_never_trips,
    "win-resets-streak-futures.yaml": win_does_not_reset_streak,
    "win-resets-streak-pets.yaml": win_does_not_reset_streak,
    RAMP: no_volatility_exit,
    "each-trade-reports-its-own-pnl-pets.yaml": pnl_not_reset_on_close,
}


def test_every_strategy_scenario_has_a_broken_bot_it_catches() -> None:
    assert sorted(p.name for p in STRATEGY_DIR.glob("*.yaml")) == sorted(CATCHES)


@pytest.mark.parametrize("name", sorted(CATCHES))
def test_strategy_scenario_passes_on_the_bot(name: str, pytestconfig: pytest.Config, tmp_path: Path) -> None:
    outcome = run(STRATEGY_DIR / name, pytestconfig, tmp_path)
    assert outcome.verdict == "pass", outcome.message


@pytest.mark.parametrize("name", sorted(CATCHES))
def test_strategy_scenario_fails_on_a_broken_bot(name: str, pytestconfig: pytest.Config, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    CATCHES[name](monkeypatch)
    outcome = run(STRATEGY_DIR / name, pytestconfig, tmp_path)
    assert outcome.verdict == "fail", f"{CATCHES[name].__doc__}: {outcome.verdict}\n{outcome.message}"


# --- what the faults took: the strategy's own position, its resting entry ---------------------


def _trace(path: Path, tmp_path: Path) -> tuple[Any, int]:
    c = case(path)
    step = c.scenario.steps[0]
    record = simulate(c.scenario, c.params, _policy(c), tmp_path / "work")
    return record, START_MS + step.at.to_ms(BAR)


def test_loss_streak_takes_the_strategys_open_position_first(tmp_path: Path) -> None:
    record, injected = _trace(STRATEGY_DIR / "loss-streak-halts-futures.yaml", tmp_path)
    before = [e for e in record.events if e.ts_ms < injected and e.name.startswith("position.")]
    assert before[-1].name == "position.opened" and before[-1].fields["reason"] == "entry"
    first = next(e for e in record.events if e.ts_ms >= injected and e.name == "position.closed")
    assert first.fields["entry"] == before[-1].fields["entry"] and first.fields["pnl"] < 0


def test_loss_streak_fills_the_resting_post_only_entry_first(tmp_path: Path) -> None:
    record, injected = _trace(STRATEGY_DIR / "loss-streak-stops-pets.yaml", tmp_path)
    placed = [e for e in record.events if e.ts_ms < injected and e.name == "order.placed"]
    assert placed[-1].fields["post_only"] is True and not any(
        e.name == "order.filled" and e.fields["client_id"] == placed[-1].fields["client_id"]
        for e in record.events if e.ts_ms < injected), "the entry must be resting at the injection"
    first = next(e for e in record.events if e.ts_ms >= injected and e.name == "position.closed")
    assert first.fields["entry"] == placed[-1].fields["price"] and first.fields["pnl"] < 0


# --- atr_spike's ramp ------------------------------------------------------------------------


def _with_over(over: int | None) -> Callable[[Step], Step]:
    def edit(step: Step) -> Step:
        params = {k: v for k, v in step.params.items() if k != "over"}
        if over is not None:
            params["over"] = over
        return dataclasses.replace(step, params=params)

    return edit


@pytest.mark.parametrize("over", [None, 1, 2])
def test_the_volatility_exit_scenario_needs_its_ramp(over: int | None, pytestconfig: pytest.Config,
                                                     tmp_path: Path) -> None:
    """At once (no `over`, or 1) or too fast (2), the spike's first bar reaches the 1 % stop."""
    outcome = run(STRATEGY_DIR / RAMP, pytestconfig, tmp_path, _with_over(over))
    assert outcome.verdict == "fail", outcome.message
    assert "reason=stop" in outcome.message


def _spike_file(tmp_path: Path, over: str) -> Path:
    path = tmp_path / "spike.yaml"
    path.write_text(textwrap.dedent(f"""\
        scenario: ramp
        covers: [C2.volatility]
        profile: futures
        market: {{bars: 160}}
        steps:
          - id: spike
            at: 130 bars
            fault: atr_spike
            params:
              multiple: 3
              duration: 2 bars
              over: {over}
        """), encoding="utf-8")
    return path


@pytest.mark.parametrize("over", ["0", "-3", "2.5", "10 bars", "ten"])
def test_over_must_be_a_positive_whole_number_of_bars(over: str, tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(_spike_file(tmp_path, over))
    assert "spike.yaml:12:" in str(err.value) and "over" in str(err.value)


def test_over_ramps_the_atr_in_equal_steps(tmp_path: Path) -> None:
    """Over 4 bars the ATR climbs to 3x the baseline it had at the injection, about a quarter of the
    way each bar, then holds there for the duration (2 bars)."""
    c = case(_spike_file(tmp_path, "4"))
    world = SimWorld(c.scenario, c.params, _policy(c), tmp_path)
    atr: dict[int, float] = {}
    baseline: dict[int, float] = {}
    close = world._bar_close

    async def spy(k: int) -> None:
        await close(k)
        atr[k], baseline[k] = world.atr.value or 0.0, world.atr_baseline.mean or 0.0

    world._bar_close = spy  # type: ignore[method-assign]
    asyncio.run(world.run())
    # Injected at 130 bars, before that bar closes: bars 130..134 are the spike's.
    start, base = atr[129] / baseline[129], baseline[129]
    ramp = [atr[k] / base for k in range(130, 135)]
    for i, ratio in enumerate(ramp[:4]):
        assert ratio == pytest.approx(start + (3 - start) * (i + 1) / 4, rel=0.02)
    assert ramp[4] == pytest.approx(3.0, rel=0.02)
    assert atr[135] / base < 2.9  # after the duration the bars are the market's own again


def test_net_atr_spike_swing_grows_over_n_bars_then_holds() -> None:
    from harness.faults.market import swing_path

    assert swing_path(100.0, 4.0, 2, 1) == [104.0, 96.0]  # the old form: the full swing at once
    path = swing_path(100.0, 4.0, 2, 4)
    assert [abs(p - 100.0) for p in path] == [1.0, 2.0, 3.0, 4.0, 4.0]
    assert all((a - 100) * (b - 100) < 0 for a, b in zip(path, path[1:], strict=False))
