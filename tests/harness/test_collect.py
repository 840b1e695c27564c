"""Scenario collection and running through pytest (pytester), with fake runners: this tests
collection, the judge's wiring, evidence and reporting, not the bot."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

import harness.collect as collect
from bot.core.events import Event
from harness.collect import PolicyBundle
from harness.expect import RunRecord, StepTiming
from harness.scenario import dict_lookup

BAR = 300_000
T_DD = 120 * BAR

GOOD = """
scenario: dd-halts
covers: [C2.drawdown]
tags: [gate]
mode: sim
profile: futures
seed: 7
market: {bars: 400}
steps:
  - id: dd
    at: 120 bars
    fault: drawdown
    params:
      depth_pct: {policy: circuit_breakers.drawdown.threshold_pct, plus: 0.5}
  - id: resume
    at: 300 bars
    fault: manual_resume
expect:
  - event: breaker.tripped
    match: {breaker: drawdown}
    after: dd
    within: 1 bar
  - never: order.placed
    match: {reduce_only: false}
    after: dd
    until: resume
"""

POLICY_TREE = {"circuit_breakers": {"drawdown": {"threshold_pct": 3.0}}}


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    """A dict-backed policy and an empty runner registry for each test."""
    monkeypatch.setattr(collect, "policy_provider",
                        lambda profile, cfg: PolicyBundle(dict_lookup(POLICY_TREE), "sha256:test"))
    monkeypatch.setattr(collect, "RUNNERS", {})


def register(monkeypatch, events, *, dd_error=None, calls=None):
    def runner(scenario, context):
        if calls is not None:
            calls.append((scenario.id, context.params))
        steps = [StepTiming("dd", "drawdown", context.params["dd"], T_DD, None, dd_error),
                 StepTiming("resume", "manual_resume", {}, 300 * BAR)]
        return RunRecord([Event(n, t, f) for n, t, f in events], steps, bar_ms=BAR,
                         end_state={"trading": "active"})

    monkeypatch.setitem(collect.RUNNERS, "sim", runner)


def write(pytester, name, text):
    return pytester.makefile(".yaml", **{name: textwrap.dedent(text).lstrip("\n")})


def run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)


# -- collection errors ------------------------------------------------------------------------

HEAD = "scenario: bad\nmode: sim\nprofile: futures\n"
STEP = "steps:\n  - id: dd\n    at: 10 bars\n    fault: restart\n"


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(HEAD + STEP.replace("restart", "restrat"),
                 "bad.yaml:7: steps[0].fault: unknown fault kind, did you mean 'restart'? (got 'restrat'; "
                 "allowed: drawdown, loss_streak", id="unknown-fault"),
    pytest.param(HEAD + STEP + "expect:\n  - event: trading.haltd\n    after: dd\n",
                 "bad.yaml:9: expect[0].event: unknown event name, did you mean trading.halted", id="unknown-event"),
    pytest.param(HEAD + STEP.replace("10 bars", "10 bras"),
                 'bad.yaml:6: steps[0].at: not a duration (got \'10 bras\'; allowed: "N bars", "1 bar", "500ms"',
                 id="bad-duration"),
    pytest.param(HEAD.replace("futures", "spot"),
                 "bad.yaml:3: profile: unknown profile (got 'spot'; allowed: futures, pets", id="unknown-profile"),
    pytest.param(HEAD + STEP + "expect:\n  - event: trading.halted\n    after: crash\n",
                 "bad.yaml:10: expect[0].after: names no step (got 'crash'; allowed: dd)", id="after-no-step"),
    pytest.param(HEAD + "steps:\n  - id: dd\n    at: 1 bar\n    fault: restart\n    when: now\n",
                 "bad.yaml:8: steps[0].when: unknown key (got 'when'; allowed: id, at, fault, params)",
                 id="unknown-key"),
    pytest.param(HEAD + STEP.replace("restart", "redis_outage\n    params: {duration: 5s}"),
                 "bad.yaml:7: steps[0].fault: fault 'redis_outage' is not available in mode sim", id="mode"),
    pytest.param(HEAD + "covers: [C2.drawdown, C9.nothing]\n",
                 "bad.yaml:4: covers: not a checklist id nor a refinement of one (got 'C9.nothing'",
                 id="bad-covers"),
    pytest.param(HEAD + "steps:\n  - id: dd\n    at: 1 bar\n    fault: drawdown\n"
                 "    params: {depth_pct: {policy: circuit_breakers.drawdown.nope, plus: 1}}\n",
                 "bad.yaml:8: steps.dd.params.depth_pct: unknown policy path (got 'circuit_breakers.drawdown.nope'",
                 id="unknown-policy-path"),
])
def test_malformed_file_is_a_collection_error_with_file_and_line(pytester, body, expected):
    write(pytester, "good", GOOD)
    write(pytester, "bad", body)
    result = run(pytester, "--collect-only", "-q")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert expected in out, out
    assert "Traceback" not in out
    assert "good.yaml::dd-halts" in out


def test_files_without_a_scenario_key_are_not_collected(pytester):
    write(pytester, "other", "items:\n  - id: x\n")
    write(pytester, "good", GOOD)
    result = run(pytester, "--collect-only", "-q")
    assert result.stdout.lines[0] == "good.yaml::dd-halts"
    assert "other.yaml" not in result.stdout.str()


def test_duplicate_scenario_ids_are_a_collection_error(pytester):
    write(pytester, "a", GOOD)
    write(pytester, "b", GOOD)
    result = run(pytester, "--collect-only", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*b.yaml:1: scenario: duplicate scenario id (got 'dd-halts'; first used in a.yaml*"])


def test_tags_are_markers(pytester):
    write(pytester, "gated", GOOD)
    write(pytester, "drill", GOOD.replace("dd-halts", "dd-drill").replace("[gate]", "[drill, slow]"))
    result = run(pytester, "--collect-only", "-q", "-m", "gate")
    assert "gated.yaml::dd-halts" in result.stdout.str()
    assert "dd-drill" not in result.stdout.str()
    result = run(pytester, "--collect-only", "-q", "-m", "drill and slow")
    assert "drill.yaml::dd-drill" in result.stdout.str() and "dd-halts" not in result.stdout.str()


# -- running ------------------------------------------------------------------------------------

def test_pass_writes_evidence_and_prints_the_table(pytester, monkeypatch):
    calls = []
    register(monkeypatch, [("breaker.tripped", T_DD + BAR, {"breaker": "drawdown"})], calls=calls)
    write(pytester, "good", GOOD)
    result = run(pytester, "--gameday-evidence", "out/ev")
    result.assert_outcomes(passed=1)
    assert calls == [("dd-halts", {"dd": {"depth_pct": 3.5}, "resume": {}})]
    out = result.stdout.str()
    assert "gameday: 1 scenario" in out
    result.stdout.fnmatch_lines([
        "*dd-halts*PASS*300000ms / 300000ms*breaker.tripped{breaker=drawdown} within 1 bar after dd*",
        "*held*never order.placed{reduce_only=false} after dd until resume*",
    ])
    lines = (pytester.path / "out/ev/evidence.jsonl").read_text().splitlines()
    assert len(lines) == 1
    evidence = json.loads(lines[0])
    assert list(evidence) == ["schema", "scenario", "covers", "mode", "profile", "seed", "time_scale",
                              "git_commit", "config_digest", "started_at", "duration_s", "steps",
                              "expectations", "verdict", "events_count", "message"]
    assert evidence["schema"] == "gameday.evidence/v1"
    assert (evidence["scenario"], evidence["covers"], evidence["mode"], evidence["profile"]) == \
        ("dd-halts", ["C2.drawdown"], "sim", "futures")
    assert (evidence["seed"], evidence["time_scale"], evidence["config_digest"]) == (7, 1.0, "sha256:test")
    assert evidence["started_at"].endswith("Z") and evidence["duration_s"] >= 0
    assert evidence["steps"][0] == {"id": "dd", "fault": "drawdown", "params": {"depth_pct": 3.5},
                                    "injected_ms": T_DD, "established_ms": None, "error": None}
    assert evidence["expectations"][0] == {
        "text": "breaker.tripped{breaker=drawdown} within 1 bar after dd", "sla_ms": BAR,
        "observed_ms": BAR, "verdict": "pass", "message": "seen 300000 ms after establishment"}
    assert evidence["verdict"] == "pass" and evidence["events_count"] == 1


def test_sla_miss_fails_with_the_judges_message(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD + 2 * BAR, {"breaker": "drawdown"})])
    write(pytester, "good", GOOD)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "FAILED good.yaml::dd-halts - scenario dd-halts: FAIL: breaker.tripped" in out
    assert ("good.yaml:18: breaker.tripped{breaker=drawdown} within 1 bar after dd: breaker.tripped came "
            "600000 ms after dd was injected (at 36000000 ms); expected within 1 bar = 300000 ms") in out
    assert "Traceback" not in out and "raise ScenarioFailed" not in out
    ev = json.loads((pytester.path / "reports/latest/evidence.jsonl").read_text())
    assert ev["verdict"] == "fail" and ev["expectations"][0]["observed_ms"] == 2 * BAR


def test_never_breached_fails(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD, {"breaker": "drawdown"}),
                           ("order.placed", T_DD + 5 * BAR, {"reduce_only": False})])
    write(pytester, "good", GOOD)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*never order.placed{reduce_only=false} after dd until resume: breached by "
                                 "order.placed{reduce_only=False} at 37500000 ms, 1500000 ms after dd*"])


def test_fault_not_injected_is_an_error_not_a_failure(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD, {"breaker": "drawdown"})],
             dd_error="equity did not reach the depth")
    write(pytester, "good", GOOD)
    result = run(pytester, "--junitxml=junit.xml")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "step dd (drawdown) could not be injected: equity did not reach the depth" in out
    assert "Traceback" not in out
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    ev = json.loads((pytester.path / "reports/latest/evidence.jsonl").read_text())
    assert ev["verdict"] == "error" and ev["steps"][0]["error"] == "equity did not reach the depth"


def test_no_runner_for_the_mode_is_an_error(pytester):
    write(pytester, "good", GOOD)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no runner is registered for mode 'sim' (registered: none)*"])
    ev = json.loads((pytester.path / "reports/latest/evidence.jsonl").read_text())
    assert ev["verdict"] == "error"
    assert [e["verdict"] for e in ev["expectations"]] == ["error", "error"]
    assert ev["expectations"][0]["sla_ms"] == BAR


def test_runner_that_raises_is_an_error_with_its_traceback(pytester, monkeypatch):
    def broken(scenario, context):
        raise RuntimeError("testnet would not start")

    monkeypatch.setitem(collect.RUNNERS, "sim", broken)
    write(pytester, "good", GOOD)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the sim runner raised RuntimeError: testnet would not start*",
                                 "*runner traceback:*"])


def test_junit_xml_carries_the_sla_figures(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD + 7, {"breaker": "drawdown"})])
    write(pytester, "good", GOOD)
    result = run(pytester, "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    assert case.get("name") == "dd-halts"
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["gameday:verdict"] == "pass"
    assert props["sla:breaker.tripped{breaker=drawdown} within 1 bar after dd"] == "7ms/300000ms pass"
    assert props["sla:never order.placed{reduce_only=false} after dd until resume"] == "-/- pass"


def test_results_are_kept_on_the_config_stash(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD, {"breaker": "drawdown"})])
    write(pytester, "good", GOOD)
    rec = pytester.inline_run("-p", "no:cacheprovider")
    config = rec.getcalls("pytest_unconfigure")[0].config
    (row,) = config.stash[collect.RESULTS_KEY]
    assert (row.scenario, row.verdict) == ("dd-halts", "pass")
    assert [(e.observed_ms, e.sla_ms) for e in row.expectations] == [(0, BAR), (None, None)]
