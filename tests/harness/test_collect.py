"""Scenario collection and running through pytest (pytester), with fake runners: this tests
collection, the judge's wiring, evidence and reporting, not the bot."""

from __future__ import annotations

import fnmatch
import json
import xml.etree.ElementTree as ET

import pytest
import yaml
from collect_support import BAR, GOOD, PLACED, POLICY_TREE, T_DD, TRIPPED, register, run, write

import harness.collect as collect
from harness.collect import PolicyBundle
from harness.scenario import dict_lookup


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    """A dict-backed policy and an empty runner registry for each test."""
    monkeypatch.setattr(collect, "policy_provider",
                        lambda profile, cfg: PolicyBundle(dict_lookup(POLICY_TREE), "sha256:test"))
    monkeypatch.setattr(collect, "RUNNERS", {})



# -- collection errors ------------------------------------------------------------------------

HEAD = "scenario: bad\nmode: sim\nprofile: futures\ncovers: [C2.drawdown]\n"
STEP = "steps:\n  - id: dd\n    at: 10 bars\n    fault: restart\n"


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(HEAD + STEP.replace("restart", "restrat"),
                 "bad.yaml:8: steps[0].fault: unknown fault kind, did you mean 'restart'? (got 'restrat'; "
                 "allowed: drawdown, spread_spike", id="unknown-fault"),
    pytest.param(HEAD + STEP + "expect:\n  - event: trading.haltd\n    after: dd\n",
                 "bad.yaml:10: expect[0].event: unknown event name, did you mean trading.halted", id="unknown-event"),
    pytest.param(HEAD + STEP.replace("10 bars", "10 bras"),
                 'bad.yaml:7: steps[0].at: not a duration (got \'10 bras\'; allowed: "N bars", "1 bar", "500ms"',
                 id="bad-duration"),
    pytest.param(HEAD.replace("futures", "spot"),
                 "bad.yaml:3: profile: unknown profile (got 'spot'; allowed: futures, pets", id="unknown-profile"),
    pytest.param(HEAD + STEP + "expect:\n  - event: trading.halted\n    after: crash\n",
                 "bad.yaml:11: expect[0].after: names no step (got 'crash'; allowed: dd)", id="after-no-step"),
    pytest.param(HEAD + "steps:\n  - id: dd\n    at: 1 bar\n    fault: restart\n    when: now\n",
                 "bad.yaml:9: steps[0].when: unknown key (got 'when'; allowed: id, at, fault, params)",
                 id="unknown-key"),
    pytest.param(HEAD + STEP + "    params: {down_for: -2 bars}\n",
                 "bad.yaml:9: steps[0].params.down_for: a duration cannot be negative (got '-2 bars'; allowed: "
                 '"N bars"', id="restart-down-for-negative"),
    pytest.param(HEAD + STEP.replace("restart", "redis_outage\n    params: {duration: 5s}"),
                 "bad.yaml:8: steps[0].fault: fault 'redis_outage' is not available in mode sim", id="mode"),
    pytest.param(HEAD.replace("[C2.drawdown]", "[C2.drawdown, C9.nothing]"),
                 "bad.yaml:4: covers: not a checklist id nor a refinement of one (got 'C9.nothing'",
                 id="bad-covers"),
    pytest.param(HEAD + "steps:\n  - id: dd\n    at: 1 bar\n    fault: drawdown\n"
                 "    params: {depth_pct: {policy: circuit_breakers.drawdown.nope, plus: 1}}\n",
                 "bad.yaml:9: steps.dd.params.depth_pct: unknown policy path (got 'circuit_breakers.drawdown.nope'",
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


def test_yaml_that_is_not_a_scenario_is_not_collected(pytester):
    write(pytester, "other", "items:\n  - id: x\n")
    write(pytester, "runbook", "steps:\n  - {id: page, do: call the operator}\n")
    pytester.makefile(".json", payload='{"orders": [{"id": 1}]}')
    write(pytester, "good", GOOD)
    result = run(pytester, "--collect-only", "-q")
    assert result.stdout.lines[0] == "good.yaml::dd-halts"
    assert result.ret == 0
    assert not any(name in result.stdout.str() for name in ("other.yaml", "runbook.yaml", "payload.json"))


@pytest.mark.parametrize(("make", "expected"), [
    pytest.param(lambda p: write(p, "typo", GOOD.replace("scenario: dd-halts", "scenaro: dd-halts")),
                 ["typo.yaml:1: scenaro: unknown key, did you mean 'scenario'?*",
                  "typo.yaml:1: (top level): missing required key 'scenario'*"], id="scenaro"),
    pytest.param(lambda p: write(p, "empty", ""),
                 ["empty.yaml:1: empty file: a scenario needs at least scenario: ID, covers: [[]ITEMS] and profile: "
                  "NAME (docs/scenarios.md); if this is not a scenario, delete it or move it out of the collected "
                  "paths"], id="empty"),
    pytest.param(lambda p: write(p, "comments", "# to do\n"), ["comments.yaml:1: empty file*"], id="comments-only"),
    pytest.param(lambda p: p.makefile(".json", asjson=json.dumps(yaml.safe_load(GOOD))),
                 ["asjson.json:1: looks like a scenario (it has a scenario: key) but scenarios are YAML files: "
                  "rename it to asjson.yaml (JSON is valid YAML: the content can stay); if it is not a scenario, "
                  "move it out of the collected paths"], id="json"),
    pytest.param(lambda p: write(p, "nocover", GOOD.replace("covers: [C2.drawdown]", "covers: []")),
                 ["nocover.yaml:2: covers: an empty list: a scenario is evidence for checklist items; name them "
                  "(got []; allowed: ids of config/checklist.yaml, e.g. C2.drawdown)"], id="covers-empty"),
    pytest.param(lambda p: write(p, "nocover", GOOD.replace("covers: [C2.drawdown]\n", "")),
                 ["nocover.yaml:1: (top level): missing required key 'covers'*"], id="covers-missing"),
])
def test_what_looks_like_a_scenario_is_an_error_never_a_silent_skip(pytester, make, expected):
    make(pytester)
    result = run(pytester, "--collect-only", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*" + line for line in expected])
    assert "Traceback" not in result.stdout.str()


def test_a_missing_checklist_is_an_error_naming_it_and_the_fix(pytester):
    config = pytester.mkdir("cfg")
    (config / "profiles").mkdir()
    (config / "profiles" / "futures.yaml").write_text("overlay: {}\n")
    write(pytester, "good", GOOD)
    result = run(pytester, "--collect-only", "-q", "--gameday-config", "cfg")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*good.yaml:1: covers: cannot be checked: {config}/checklist.yaml: not found: "
                                 "scenarios' covers: are checked against it; restore config/checklist.yaml, or "
                                 "point --gameday-config / GAMEDAY_CONFIG_DIR at a config directory that has one"])


def test_gameday_config_dir_is_honoured_by_collection(pytester, monkeypatch):
    """GAMEDAY_CONFIG_DIR picks the profiles and checklist the loader checks against."""
    config = pytester.mkdir("cfg")
    (config / "profiles").mkdir()
    (config / "profiles" / "staging.yaml").write_text("overlay: {}\n")
    (config / "checklist.yaml").write_text("items:\n  - id: X1.thing\n    verified_by: {none: test}\n")
    write(pytester, "good", GOOD.replace("profile: futures", "profile: staging").replace("C2.drawdown", "X1.thing"))
    monkeypatch.setenv("GAMEDAY_CONFIG_DIR", str(config))
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == 0 and result.stdout.lines[0] == "good.yaml::dd-halts"
    monkeypatch.delenv("GAMEDAY_CONFIG_DIR")
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*good.yaml:5: profile: unknown profile (got 'staging'*"])


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
    register(monkeypatch, [("breaker.tripped", T_DD + BAR, TRIPPED)], calls=calls)
    write(pytester, "good", GOOD)
    result = run(pytester, "--gameday-report", "out")
    result.assert_outcomes(passed=1)
    assert calls == [("dd-halts", {"dd": {"depth_pct": 3.5}, "resume": {}})]
    out = result.stdout.str()
    assert "gameday: 1 scenario" in out
    table = [
        "*dd-halts*PASS*300000ms / 300000ms*breaker.tripped{breaker=drawdown} within 1 bar after dd*",
        "*held*never order.placed{reduce_only=false} after dd until resume*",
    ]
    result.stdout.fnmatch_lines(table)
    lines = (pytester.path / "out/latest/evidence.jsonl").read_text().splitlines()
    assert len(lines) == 1
    evidence = json.loads(lines[0])
    assert list(evidence) == ["schema", "scenario", "covers", "mode", "profile", "seed", "time_scale",
                              "git_commit", "git_dirty", "git_diff_digest", "config_digest", "started_at",
                              "duration_s", "steps", "expectations", "verdict", "events_count", "message"]
    assert evidence["schema"] == "gameday.evidence/v1"
    assert (evidence["scenario"], evidence["covers"], evidence["mode"], evidence["profile"]) == \
        ("dd-halts", ["C2.drawdown"], "sim", "futures")
    assert (evidence["seed"], evidence["time_scale"], evidence["config_digest"]) == (7, 1.0, "sha256:test")
    assert evidence["started_at"].endswith("Z") and evidence["duration_s"] >= 0
    assert evidence["steps"][0] == {"id": "dd", "fault": "drawdown", "params": {"depth_pct": 3.5},
                                    "injected_ms": T_DD, "established_ms": None, "error": None}
    assert evidence["expectations"][0] == {
        "text": "breaker.tripped{breaker=drawdown} within 1 bar after dd", "kind": "event", "sla_ms": BAR,
        "observed_ms": BAR, "threshold_ms": BAR, "allowance": None, "allowance_ms": 0, "allowance_basis": None,
        "margin_ms": 0,
        "verdict": "pass", "message": "seen 300000 ms after establishment"}
    assert evidence["verdict"] == "pass" and evidence["events_count"] == 1
    results = (pytester.path / "out/latest/results.txt").read_text().splitlines()
    assert results[0].split() == ["scenario", "verdict", "observed", "/", "sla", "expectation"]
    assert fnmatch.fnmatch(results[1], table[0]) and fnmatch.fnmatch(results[2], table[1])


def test_events_outside_the_schema_make_the_run_an_error(pytester, monkeypatch):
    """A judge that meets words it does not know cannot be trusted: the bot's events are checked."""
    register(monkeypatch, [("breaker.tripped", T_DD + BAR, {**TRIPPED, "levl": "critical"}),
                           ("order.placed", T_DD + 2 * BAR, {**PLACED, "reduce_only": "false"})])
    write(pytester, "good", GOOD)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*scenario dd-halts: ERROR: the bot emitted events that break the event schema (bot/core/events.py)*",
        "*breaker.tripped: field 'levl' is not declared*",
        "*order.placed: field 'reduce_only' is 'false', declared true or false (1x)*",
    ])
    assert json.loads((pytester.path / "reports/latest/evidence.jsonl").read_text())["verdict"] == "error"


def test_sla_miss_fails_with_the_judges_message(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD + 2 * BAR, TRIPPED)])
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
    register(monkeypatch, [("breaker.tripped", T_DD, TRIPPED),
                           ("order.placed", T_DD + 5 * BAR, PLACED)])
    write(pytester, "good", GOOD)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*never order.placed{reduce_only=false} after dd until resume: breached by "
                                 "order.placed{client_id=c1, *reduce_only=False*} at 37500000 ms, "
                                 "1500000 ms after dd*"])


def test_fault_not_injected_is_an_error_not_a_failure(pytester, monkeypatch):
    register(monkeypatch, [("breaker.tripped", T_DD, TRIPPED)],
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
    register(monkeypatch, [("breaker.tripped", T_DD + 7, TRIPPED)])
    write(pytester, "good", GOOD)
    result = run(pytester, "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    assert case.get("name") == "dd-halts"
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["gameday:verdict"] == "pass"
    assert props["sla:breaker.tripped{breaker=drawdown} within 1 bar after dd"] == "7ms/300000ms pass"
    assert props["sla:never order.placed{reduce_only=false} after dd until resume"] == "-/- pass"
