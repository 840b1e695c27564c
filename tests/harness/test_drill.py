"""Randomized drills (harness.drill): reproducible schedules, valid scenario files, an invariant
checker that catches crafted violations, a clean run on the real bot, and a broken bot caught
with a committed-ready scenario file that fails under pytest too."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_policy
from bot.core import risk as risk_mod
from bot.core.events import Event
from bot.core.killswitch import KillStatus
from bot.core.policy import policy_value
from harness import cli
from harness.drill import (
    PROFILES,
    SIM_KINDS,
    Limits,
    Snapshot,
    Trace,
    Violation,
    check_invariants,
    drill,
    generate,
    scenario_document,
    to_scenario,
    write_scenario,
)
from harness.faults import FAULTS
from harness.scenario import load_scenario, resolve_all

BAR = 300_000
LIMITS = Limits(max_position_pct=0.2, max_total_exposure_pct=0.5, stop_max_pct=0.05, breaker_sla_ms=BAR,
                kill_flat_ms=10_000)


@pytest.fixture(scope="module")
def policies() -> dict[str, Any]:
    return {p: load_policy(p).policy for p in PROFILES}


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def test_same_seed_same_schedules_other_seed_others(policies: dict[str, Any]) -> None:
    a = generate(25, 11, PROFILES, 80, policies)
    b = generate(25, 11, PROFILES, 80, policies)
    c = generate(25, 12, PROFILES, 80, policies)
    assert len(a) == 25
    assert [s.key for s in a] == [s.key for s in b]
    assert [s.key for s in a] != [s.key for s in c]


def test_schedules_stay_within_the_catalog_and_the_market(policies: dict[str, Any]) -> None:
    plan = generate(60, 3, PROFILES, 80, policies)
    for s in plan:
        assert s.steps and all(st.fault in SIM_KINDS for st in s.steps)
        assert all(0 < st.at_bars < s.bars for st in s.steps)
        assert [st.at_bars for st in s.steps] == sorted(st.at_bars for st in s.steps)
        params = resolve_all(to_scenario(s), lambda p, s=s: policy_value(policies[s.profile], p))  # type: ignore[misc]
        assert set(params) == set(s.step_ids())
    kinds = {st.fault for s in plan for st in s.steps}
    assert len(kinds) >= 12  # the draw is spread over the catalog


def test_thresholds_are_cited_from_the_policy(policies: dict[str, Any]) -> None:
    plan = generate(80, 5, PROFILES, 80, policies)
    refs = [v for s in plan for st in s.steps for _, v in st.params if type(v).__name__ == "PolicyRef"]
    assert refs, "no policy-relative magnitudes were drawn"
    assert any(r.times > 1 or r.plus > 0 for r in refs) and any(r.times < 1 or r.plus < 0 for r in refs)


@pytest.mark.parametrize("invariant", ["kill-entry", "halt-entry", "breaker-sla", "halt-exit", "duplicates",
                                       "caps", "harness-error"])
def test_generated_schedule_written_loads_as_a_valid_scenario_file(
        tmp_path: Path, policies: dict[str, Any], invariant: str) -> None:
    for i, schedule in enumerate(generate(12, 21, PROFILES, 80, policies)):
        violation = Violation(invariant, "crafted", 1_767_571_200_000 + schedule.steps[-1].at_bars * BAR + 1,
                              {"breaker": "drawdown", "wanted": "trading.halted"})
        sid = f"drill-{invariant}-{i}"
        path = write_scenario(scenario_document(schedule, violation, sid, LIMITS), violation, tmp_path)
        loaded = load_scenario(path)  # the project's profiles and checklist ids, as pytest collects
        built = to_scenario(schedule, sid)
        assert loaded.id == sid and loaded.mode == "sim" and loaded.profile == schedule.profile
        assert [(s.id, s.at, s.fault) for s in loaded.steps] == [(s.id, s.at, s.fault) for s in built.steps]
        lookup = lambda p, s=schedule: policy_value(policies[s.profile], p)  # noqa: E731
        assert resolve_all(loaded, lookup) == resolve_all(built, lookup)
        assert loaded.account.strategy == schedule.strategy and loaded.market.bars == schedule.bars


# --------------------------------------------------------------------------------------------
# The checker on crafted streams (error paths)
# --------------------------------------------------------------------------------------------


def ev(name: str, ts: int, **fields: Any) -> Event:
    return Event(name, ts, fields)


def placed(ts: int, cid: str, *, reduce_only: bool = False, qty: float = 0.01, side: str = "buy") -> Event:
    return ev("order.placed", ts, client_id=cid, side=side, qty=qty, price=None, reduce_only=reduce_only, code=None)


def trace(events: list[Event], **kw: Any) -> Trace:
    return Trace(events, BAR, kw.pop("end_ms", 100 * BAR), **kw)


def kinds(violations: list[Violation]) -> list[str]:
    return [v.invariant for v in violations]


def test_a_clean_stream_has_no_violations() -> None:
    events = [placed(BAR, "e1"), ev("order.filled", BAR, side="buy", qty=0.01, client_id="e1"),
              ev("position.opened", BAR, qty=0.01, entry=60000.0, reason="entry"),
              ev("breaker.tripped", 2 * BAR, breaker="drawdown", check="intraday", action="halt_trading"),
              ev("trading.halted", 2 * BAR, reason="dd", requires_manual_resume=True),
              placed(2 * BAR, "x1", reduce_only=True, side="sell"),
              ev("killswitch.engaged", 3 * BAR, mode="pause"), ev("killswitch.cleared", 4 * BAR),
              ev("trading.resumed", 5 * BAR, by="operator"), placed(6 * BAR, "e2")]
    snaps = {0: Snapshot(10000.0, 60000.0, 0.0), 9: Snapshot(10000.0, 60000.0, 0.0)}
    violations, checks = check_invariants(trace(events, snapshots=snaps), LIMITS)
    assert violations == [] and checks > 5


def test_entry_after_the_kill_switch_is_caught_until_cleared() -> None:
    events = [ev("killswitch.engaged", BAR, mode="pause"), placed(2 * BAR, "e1"),
              ev("killswitch.cleared", 3 * BAR), placed(4 * BAR, "e2")]
    violations, _ = check_invariants(trace(events), LIMITS)
    assert kinds(violations) == ["kill-entry"] and "e1" in violations[0].message


def test_kill_switch_restored_after_a_restart_still_blocks_entries() -> None:
    events = [ev("state.restored", BAR, breakers={"state": "active"}, killswitch={"engaged": True, "mode": "pause"}),
              placed(2 * BAR, "e1")]
    assert kinds(check_invariants(trace(events), LIMITS)[0]) == ["kill-entry"]


def test_entry_while_halted_or_paused_is_caught() -> None:
    events = [ev("trading.paused", BAR, reason="spread"), placed(BAR + 1, "e1"),
              ev("trading.resumed", 2 * BAR, by="cooldown"), placed(3 * BAR, "e2"),
              ev("trading.halted", 4 * BAR, reason="dd"), placed(4 * BAR, "x", reduce_only=True, side="sell"),
              placed(5 * BAR, "e3")]
    violations, _ = check_invariants(trace(events), LIMITS)
    assert kinds(violations) == ["halt-entry", "halt-entry"]
    assert [v.detail["client_id"] for v in violations] == ["e1", "e3"]


def test_entry_over_the_position_and_exposure_caps_is_caught() -> None:
    # 0.04 BTC at 60k = 2400 > 20% of 10k; with 2000 resting, exposure 4400 is within 50% (5000)...
    events = [placed(BAR, "e1", qty=0.04), placed(2 * BAR, "e2", qty=0.03)]
    snaps = {0: Snapshot(10000.0, 60000.0, 2000.0), 1: Snapshot(10000.0, 60000.0, 3500.0)}
    violations, _ = check_invariants(trace(events, snapshots=snaps), LIMITS)
    messages = [v.message for v in violations]
    assert kinds(violations) == ["caps", "caps"]
    assert "max_position_pct" in messages[0]
    assert "max_total_exposure_pct" in messages[1]  # ...but 1800 + 3500 resting = 5300 is over


def test_breaker_without_halt_or_flatten_within_the_sla_is_caught() -> None:
    events = [ev("position.opened", 0, qty=0.1, entry=60000.0, reason="reconciled"),
              ev("breaker.tripped", BAR, breaker="drawdown", check="intraday", action="flatten_and_halt"),
              ev("trading.halted", 3 * BAR, reason="late"),
              ev("breaker.tripped", 4 * BAR, breaker="volatility", check="spread", action="pause_new_entries")]
    violations, _ = check_invariants(trace(events, snapshots={1: Snapshot(10000.0, 60000.0, 0.0)}), LIMITS)
    assert kinds(violations) == ["breaker-sla", "breaker-sla"]
    assert "trading.halted" in violations[0].message and "account.flat" in violations[1].message
    # already halted: a pause needs no new event (the stricter state holds)


def test_immediate_kill_without_account_flat_is_caught_unless_the_exchange_is_down() -> None:
    events = [ev("killswitch.engaged", BAR, mode="immediate")]
    assert kinds(check_invariants(trace(events), LIMITS)[0]) == ["breaker-sla"]
    down = [ev("exchange.down", BAR - 5, scope="rest"), ev("killswitch.engaged", BAR, mode="immediate")]
    assert check_invariants(trace(down), LIMITS)[0] == []


def test_stop_passed_while_halted_without_an_exit_is_caught() -> None:
    events = [ev("position.opened", 0, qty=0.1, entry=60000.0, reason="reconciled"),
              ev("trading.halted", BAR, reason="dd"), ev("alert.sent", 3 * BAR, title="x")]
    prices = [(BAR + 10, 56000.0, 56010.0)]  # more than 5% (the widest stop) under the entry
    violations, _ = check_invariants(trace(events, prices=prices), LIMITS)
    assert kinds(violations) == ["halt-exit"]
    with_exit = events[:2] + [placed(BAR + 20, "x1", reduce_only=True, side="sell"), events[2]]
    assert check_invariants(trace(with_exit, prices=prices), LIMITS)[0] == []
    # an outage at the time excuses it: the bot cannot reach the venue
    steps = [("s1", "exchange_outage", BAR, {"duration": 600_000, "scope": "rest"}, None)]
    assert check_invariants(trace(events, prices=prices, steps=steps), LIMITS)[0] == []


def test_duplicate_orders_are_caught_in_events_and_in_the_exchange_log() -> None:
    events = [placed(BAR, "e1"), placed(BAR + 1, "e1")]
    log = [{"event": "new", "client_id": "x"}, {"event": "new", "client_id": "x"}]
    violations, _ = check_invariants(trace(events, order_log=log, runner_duplicates=["y sent twice"]), LIMITS)
    assert kinds(violations) == ["duplicates"] * 3


def test_harness_errors_are_reported_apart() -> None:
    violations, _ = check_invariants(trace([], harness_errors=["step s1 could not be injected"]), LIMITS)
    assert kinds(violations) == ["harness-error"]


# --------------------------------------------------------------------------------------------
# Real runs
# --------------------------------------------------------------------------------------------


def test_a_small_drill_passes_against_the_real_bot(tmp_path: Path) -> None:
    report = drill(5, 7, PROFILES, 60, tmp_path / "out", jobs=1, echo=lambda _: None)
    assert len(report.results) == 5
    assert report.violations == [] and report.harness_errors == [], report.summary()
    assert sum(r.checks for r in report.results) > 5
    assert report.written == [] and not (tmp_path / "out").exists()


def test_same_seed_same_results(tmp_path: Path) -> None:
    a = drill(4, 9, PROFILES, 60, tmp_path / "a", jobs=1, echo=lambda _: None)
    b = drill(4, 9, PROFILES, 60, tmp_path / "b", jobs=2, echo=lambda _: None)
    assert [(r.events, r.checks, r.violations) for r in a.results] == \
        [(r.events, r.checks, r.violations) for r in b.results]


@pytest.fixture
def kill_switch_does_not_block_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = risk_mod.RiskGate._entry

    def broken(self: risk_mod.RiskGate, o: risk_mod.OrderIntent, ctx: risk_mod.GateContext) -> Any:
        return entry(self, o, dataclasses.replace(ctx, killswitch=KillStatus(engaged=False)))

    monkeypatch.setattr(risk_mod.RiskGate, "_entry", broken)


def test_a_broken_bot_fails_the_drill_and_the_written_scenario_fails_under_pytest(
        tmp_path: Path, pytester: pytest.Pytester, kill_switch_does_not_block_entries: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drills"
    code = cli.main(["drill", "--random", "12", "--seed", "1", "--profile", "futures", "--bars", "60",
                     "--out", str(out), "--jobs", "1"])
    printed = capsys.readouterr().out
    assert code == 1
    files = sorted(out.glob("*.yaml"))
    assert files and any("kill-entry" in f.name for f in files)
    kill_file = next(f for f in files if "kill-entry" in f.name)
    assert f"wrote {kill_file}" in printed and "violations:" in printed
    text = kill_file.read_text()
    assert "never: order.placed" in text and "reduce_only: false" in text
    load_scenario(kill_file)
    pytester.makefile(".yaml", **{kill_file.stem: text})
    result = pytester.runpytest("-p", "no:cacheprovider", "--gameday-report", str(tmp_path / "reports"))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*never order.placed{reduce_only=false} after s*kill-switch*breached*"])


def test_the_written_scenario_passes_on_the_healthy_bot(tmp_path: Path) -> None:
    """The expectation the drill writes is a correct one: the unbroken bot meets it."""
    with pytest.MonkeyPatch.context() as mp:
        entry = risk_mod.RiskGate._entry
        mp.setattr(risk_mod.RiskGate, "_entry", lambda self, o, ctx: entry(
            self, o, dataclasses.replace(ctx, killswitch=KillStatus(engaged=False))))
        report = drill(12, 1, ("futures",), 60, tmp_path, jobs=1, echo=lambda _: None)
    path = next(p for p in report.written if "kill-entry" in p.name)
    from harness.expect import judge
    from harness.sim.runner import simulate

    scenario = load_scenario(path)
    policy = load_policy(scenario.profile).policy
    params = resolve_all(scenario, lambda p: policy_value(policy, p))  # type: ignore[arg-type,return-value]
    assert judge(scenario, simulate(scenario, params, policy)).verdict == "pass"


@pytest.mark.parametrize("argv", [["drill", "--random", "0", "--seed", "1"],
                                  ["drill", "--random", "5", "--seed", "x"],
                                  ["drill", "--random", "5", "--seed", "1", "--profile", "spot"],
                                  ["drill", "--random", "5", "--seed", "1", "--bars", "10"],
                                  ["drill", "--seed", "1"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: gameday drill" in capsys.readouterr().err


def test_every_sim_kind_has_a_generator(policies: dict[str, Any]) -> None:
    """A new fault kind or param type in FAULTS must not make the drill crash."""
    from hypothesis import find

    from harness.drill.schedule import _param

    for kind in SIM_KINDS:
        for name in FAULTS[kind].params:
            find(_param(kind, name, policies["futures"], BAR), lambda _: True)


def test_a_drilled_restart_with_down_for_leaves_its_downtime_free_of_other_steps() -> None:
    """The next step of a schedule comes after the bot is back: a step during the downtime would
    find no bot (a harness error, not a finding)."""
    from harness.drill.schedule import _reserve_bars
    from harness.scenario import Duration

    policy = load_policy("futures").policy
    assert _reserve_bars("restart", {}, policy) == FAULTS["restart"].drill.reserve_bars
    assert _reserve_bars("restart", {"down_for": Duration(3.0, "bar")}, policy) == \
        FAULTS["restart"].drill.reserve_bars + 3
    assert _reserve_bars("restart", {"down_for": Duration(7.0, "m")}, policy) == \
        FAULTS["restart"].drill.reserve_bars + 2  # 7 min: the bot is back during the second 5 min bar
