"""Net SLAs: scaled threshold + an unscaled, named allowance for a fixed real cost (config/net.yaml)."""

from __future__ import annotations

import dataclasses

import pytest

from bot.core.events import Event
from harness.allowances import AllowanceConfigError, Allowances, bot_start_ms, load_allowances
from harness.expect import RunRecord, StepTiming, judge
from harness.pytest_evidence import summary_lines
from harness.report.units import sla_text
from harness.scenario import ScenarioError, load_scenario

ALLOWANCES = Allowances({"restart": 5000, "reconnect": 1500}, {"bot_crash": "restart"})

CRASH = """
scenario: net-crash
mode: net
profile: futures
time_scale: 0.1
steps:
  - {id: crash, at: 10s, fault: bot_crash, params: {signal: SIGKILL}}
  - {id: lag, at: 20s, fault: ws_lag, params: {lag: 6s, duration: 30s}}
expect:
  - {event: state.restored, after: crash, within: 30s}
  - {event: trading.paused, after: lag, within: 5s}
  - {event: trading.paused, after: lag, within: 5s, allowance: reconnect}
  - {event: state.restored, after: crash, within: 30s, allowance: none}
"""


def crash_run(restored_after_ms: int) -> RunRecord:
    return RunRecord([Event("state.restored", 1_000 + restored_after_ms, {}), Event("trading.paused", 2_400, {})],
                     [StepTiming("crash", "bot_crash", {"signal": "SIGKILL"}, 1_000),
                      StepTiming("lag", "ws_lag", {"lag": 600, "duration": 3_000}, 2_000)],
                     bar_ms=300_000, time_scale=0.1, allowances=ALLOWANCES)


@pytest.fixture
def crash(write_scenario):
    return load_scenario(write_scenario("crash.yaml", CRASH), profiles=None, checklist_ids=None)


def test_the_fault_kind_implies_the_allowance_and_the_result_records_every_part(crash):
    j = judge(crash, crash_run(4_700))
    restored, paused, paused_reconnect, restored_none = j.expectations
    assert (restored.threshold_ms, restored.allowance, restored.allowance_ms, restored.sla_ms) == \
        (3_000, "restart", 5_000, 8_000)
    assert restored.to_dict()["margin_ms"] == 3_300 and restored.verdict == "pass"
    assert (paused.allowance, paused.sla_ms) == (None, 500)  # ws_lag implies none
    assert (paused_reconnect.allowance, paused_reconnect.sla_ms) == ("reconnect", 2_000)
    assert (restored_none.allowance, restored_none.sla_ms, restored_none.verdict) == (None, 3_000, "fail")


def test_one_ms_past_threshold_plus_allowance_fails_and_says_both(crash):
    restored = judge(crash, crash_run(8_001)).expectations[0]
    assert restored.verdict == "fail" and restored.margin_ms == -1
    assert "30s = 3000 ms + restart allowance 5000 ms = 8000 ms" in restored.message
    assert judge(crash, crash_run(8_000)).expectations[0].verdict == "pass"


def test_sim_mode_and_records_without_allowances_add_nothing(crash):
    run = crash_run(4_700)
    run.allowances = None
    assert judge(crash, run).expectations[0].sla_ms == 3_000


def test_the_table_and_the_report_show_threshold_and_allowance(crash):
    j = judge(crash, crash_run(4_700))
    row = {"scenario": "net-crash", "verdict": j.verdict, "message": "",
           "expectations": [e.to_dict() for e in j.expectations]}
    assert "4700ms / 3000+5000ms" in "\n".join(summary_lines([row]))
    assert sla_text("state.restored within 30s after crash", 8_000, 0.1, "net", "restart", 5_000) == \
        "8 s (3 s (30 s at time scale 0.1) + 5 s restart allowance)"


@pytest.mark.parametrize("line, wrong", [
    ("{event: state.restored, after: crash, within: 30s, allowance: restrat}", "did you mean 'restart'"),
    ("{event: state.restored, after: crash, allowance: restart}", "this expectation has no within"),
])
def test_a_wrong_allowance_is_a_load_error_naming_the_line(write_scenario, line, wrong):
    text = CRASH.split("expect:")[0] + "expect:\n  - " + line + "\n"
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_scenario("bad.yaml", text), profiles=None, checklist_ids=None)
    assert wrong in str(err.value) and "bad.yaml:" in str(err.value) and "allowance" in str(err.value)


def test_an_allowance_in_sim_mode_is_refused(write_scenario):
    text = """
scenario: sim-crash
mode: sim
profile: futures
market: {bars: 100}
steps:
  - {id: crash, at: 10 bars, fault: bot_crash, params: {signal: SIGKILL}}
expect:
  - {event: state.restored, after: crash, within: 1 bar, allowance: restart}
"""
    with pytest.raises(ScenarioError, match="only net mode"):
        load_scenario(write_scenario("sim.yaml", text), profiles=None, checklist_ids=None)


def test_the_config_is_checked(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("allowances_ms: {restart: -1}\nimplied_by_fault: {}\n")
    with pytest.raises(AllowanceConfigError, match="allowances_ms.restart: expected whole ms"):
        load_allowances(path)
    path.write_text("allowances_ms: {restart: 10}\nimplied_by_fault: {bot_crash: restrat}\n")
    with pytest.raises(AllowanceConfigError, match="implied_by_fault.bot_crash: 'restrat' is not in"):
        load_allowances(path)
    assert load_allowances().resolve(None, "bot_crash")[0] == "restart"  # the shipped config


def test_a_calibrated_allowance_grows_with_the_measured_start_and_a_slow_restore_still_fails(crash):
    """Load makes a bot start slower, so the restart allowance is derived from a bare start measured
    now; a restore later than the scaled threshold plus that allowance is still a failure."""
    loaded = dataclasses.replace(ALLOWANCES, calibrate={"restart": 2.0}).calibrated(lambda: 4_000)
    assert loaded.ms["restart"] == 8_000 and "2 x 4000 ms bare bot start" in (loaded.basis_of("restart") or "")
    run = crash_run(11_000)
    run.allowances = loaded
    restored = judge(crash, run).expectations[0]
    assert (restored.sla_ms, restored.verdict) == (11_000, "pass")
    assert restored.to_dict()["allowance_basis"] == loaded.basis_of("restart")
    run = crash_run(11_001)  # the restore itself came late: the measured start does not cover it
    run.allowances = loaded
    assert judge(crash, run).expectations[0].verdict == "fail"
    assert crash.expect[3].allowance == "none"  # `allowance: none` stays the bare threshold when calibrated
    run.allowances = loaded
    assert judge(crash, run).expectations[3].sla_ms == 3_000


def test_a_fast_start_never_shrinks_the_configured_allowance():
    quick = dataclasses.replace(ALLOWANCES, calibrate={"restart": 2.0}).calibrated(lambda: 1_000)
    assert quick.ms["restart"] == 5_000 and "= 2000 ms" in (quick.basis_of("restart") or "")
    assert quick.basis_of("reconnect") == "config/net.yaml allowances_ms.reconnect"  # not calibrated


@pytest.mark.parametrize("calibrate, wrong", [
    ("{restrat: 2}", "calibrate.restrat: 'restrat' is not in allowances_ms"),
    ("{restart: 10}", "calibrate.restart: expected a factor from 1 to 4"),
    ("[restart]", "calibrate: expected a mapping"),
])
def test_a_wrong_calibration_is_refused_naming_the_key(tmp_path, calibrate, wrong):
    path = tmp_path / "net.yaml"
    path.write_text(f"allowances_ms: {{restart: 10}}\nimplied_by_fault: {{}}\ncalibrate: {calibrate}\n")
    with pytest.raises(AllowanceConfigError, match=wrong):
        load_allowances(path)


def test_the_bare_start_probe_runs_the_bots_run_path_imports():
    assert bot_start_ms() > 0  # the probe's imports exist: a renamed module would raise here
