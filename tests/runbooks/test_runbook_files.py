"""Runbooks as code: the shipped runbooks load with the config's windows; a malformed runbook is
refused naming file, line and the fix; scenarios judge the steps no later than their windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import load_policy
from bot.io.access import load_access_config
from harness.runbooks.model import AUTOMATED, RunbookError, load_runbook, load_runbooks, runbooks_dir
from harness.scenario import load_scenario, project_root

MIN = 60_000


def test_shipped_runbooks_load_with_the_slas_windows() -> None:
    books = load_runbooks()
    assert set(books) == {"credential_leak", "exchange_outage", "kill_switch"}
    slas = load_policy().policy
    leak = books["credential_leak"]
    rb = slas.runbooks.credential_leak
    assert leak.severity == "P0" and leak.response_ms == slas.incident_response.P0_minutes * MIN
    assert [(w.start_ms, w.end_ms) for w in leak.phases.values()] == [
        (0, rb.immediate_minutes * MIN), (rb.immediate_minutes * MIN, rb.investigate_minutes * MIN),
        (rb.investigate_minutes * MIN, rb.contain_minutes * MIN), (rb.contain_minutes * MIN, rb.recover_minutes * MIN),
        (24 * 60 * MIN, rb.post_incident_hours * 60 * MIN)]
    assert books["exchange_outage"].phases["respond"].end_ms == slas.runbooks.exchange_outage.response_minutes * MIN
    roles = set(load_access_config().roles)
    for book in books.values():
        assert all(s.actor == AUTOMATED or s.actor in roles for s in book.steps)
    automated = [s.id for s in leak.steps if s.automated]
    assert automated == ["kill_switch", "flatten", "disable_key", "document_state", "api_history", "rotate_key",
                         "verify_restrictions"]


def test_windows_follow_the_config(tmp_path: Path) -> None:
    tree = load_policy().policy.model_dump()
    tree["runbooks"]["credential_leak"]["immediate_minutes"] = 3
    book = load_runbook(runbooks_dir() / "credential_leak.yaml", policy_tree=tree)
    assert book.phases["immediate"].end_ms == 3 * MIN and book.phases["investigate"].start_ms == 3 * MIN


GOOD = """runbook: demo
title: A demo runbook
severity: P0
phases:
  immediate: {from: 0m, to: {policy: runbooks.credential_leak.immediate_minutes}}
steps:
  - id: stop
    phase: immediate
    actor: automated
    action: engage_kill_switch
    does: stop
    verify: stopped
  - id: look
    phase: immediate
    actor: risk_manager
    does: look
    verify: looked
"""


def test_the_good_demo_loads(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD)
    assert [s.id for s in load_runbook(path).steps] == ["stop", "look"]


@pytest.mark.parametrize("old,new,line,message", [
    ("actor: risk_manager", "actor: intern", 15, "steps[1].actor: unknown actor (got 'intern'; allowed: automated, "),
    ("phase: immediate\n    actor: risk", "phase: later\n    actor: risk", 14, "steps[1].phase: unknown phase"),
    ("action: engage_kill_switch", "action: do_magic", 10, "steps[0].action: an automated step names its action"),
    ("immediate_minutes}", "immediate_mins}", 5, "no such policy value in config"),
    ("{from: 0m,", "{from: 10m,", 5, "phases.immediate: the window ends before it starts"),
    ("severity: P0", "severity: P9", 3, "severity: unknown severity"),
    ("  - id: look", "  - id: stop", 13, "steps[1].id: duplicate step id (first at line 7)"),
    ("    verify: looked\n", "    verify: looked\n    when: later\n", 18, "steps[1].when: unknown key"),
    ("    does: look\n", "    does: look\n    action: revoke_key\n", 17, "a human step has no action"),
    ("{from: 0m,", "{from: 2 bars,", 5, "a window bound is a non-negative time, not bars"),
])
def test_bad_runbook_names_file_line_and_fix(tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    assert old in GOOD
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(RunbookError) as err:
        load_runbook(path)
    assert f"{path}:{line}: " in str(err.value) and message in str(err.value), str(err.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD.replace("actor: risk_manager", "actor: intern").replace("severity: P0", "severity: P7"))
    with pytest.raises(RunbookError) as err:
        load_runbook(path)
    assert len(err.value.problems) == 2


def _wanted(conditions: Any) -> str:
    [condition] = conditions
    return str(condition.value)


def _step_done_deadlines() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted((project_root() / "scenarios").rglob("*.yaml")):
        text = path.read_text()
        if "runbook.step_done" not in text:
            continue
        scenario = load_scenario(path)
        for exp in scenario.expect:
            if exp.event == "runbook.step_done" and exp.within is not None:
                within = exp.within.to_ms(scenario.bar_ms)
                out.append((_wanted(exp.match["runbook"]), _wanted(exp.match["step"]), within))
    return out


def _late(deadlines: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    books = load_runbooks()
    return [(rb, step, within) for rb, step, within in deadlines
            if within > books[rb].window(books[rb].step(step)).end_ms]


def test_scenarios_judge_runbook_steps_no_later_than_their_window() -> None:
    deadlines = _step_done_deadlines()
    assert deadlines, "no scenario judges a runbook step"
    assert _late(deadlines) == []


def test_a_deadline_past_the_window_is_caught() -> None:
    assert _late([("credential_leak", "flatten", 5 * MIN + 1), ("credential_leak", "flatten", 5 * MIN)]) == [
        ("credential_leak", "flatten", 5 * MIN + 1)]
