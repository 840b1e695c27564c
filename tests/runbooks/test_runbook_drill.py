"""Runbook drills: the operator script is checked at the door; a scripted drill that skips a
human step fails and says so in its evidence and timeline; the interactive drill is driven
through a real terminal under tmux (send-keys / capture-pane)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.cli import main
from harness.runbooks.model import load_runbooks
from harness.runbooks.operator import OperatorScriptError, ScriptedOperator

ROOT = Path(__file__).resolve().parents[2]


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "operator.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ("default: {after: soon}\n", "default.after: not a duration"),
    ("steps:\n  clear: {answer: maybe}\n", "steps.clear.answer: one of confirm, skip (got 'maybe')"),
    ("steps:\n  clear: {after: 2 bars}\n", "a time, not bars"),
    ("operator: x\n", "expected keys default and steps"),
])
def test_bad_operator_script_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OperatorScriptError, match=re.escape(message)):
        ScriptedOperator("ci", script(tmp_path, text))


def test_script_naming_a_step_the_runbook_has_not_is_refused(tmp_path: Path) -> None:
    path = script(tmp_path, "steps:\n  fly_to_the_moon: {after: 1s}\n")
    op = ScriptedOperator("ci", path)
    human = {s.id for s in load_runbooks()["kill_switch"].steps if not s.automated}
    with pytest.raises(OperatorScriptError, match="fly_to_the_moon"):
        op.check_steps(human, path)


@pytest.mark.parametrize("runbook", ["credential_leak", "exchange_outage", "kill_switch"])
def test_the_shipped_game_day_scripts_fit_their_runbooks(runbook: str) -> None:
    path = ROOT / "runbooks" / "operators" / f"{runbook}.yaml"
    human = {s.id for s in load_runbooks()[runbook].steps if not s.automated}
    ScriptedOperator("ci", path).check_steps(human, path)


@pytest.mark.parametrize("argv,message", [
    (["drill", "--runbook", "kill_switch"], "--runbook needs --operator NAME"),
    (["drill", "--runbook", "kill_switch", "--operator", "a", "--random", "3"], "two kinds of drill"),
    (["drill"], "give --random N --seed S"),
])
def test_drill_arguments_are_checked(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: gameday drill" in err


def _set_dir(report: Path) -> Path:
    [set_dir] = list((report / "runs").iterdir())
    return set_dir


def test_a_skipped_human_step_fails_the_drill(tmp_path: Path) -> None:
    path = script(tmp_path, "default: {after: 0s}\nsteps:\n  clear: {after: 1s, answer: skip, notes: cause unknown}\n")
    report = tmp_path / "reports"
    code = main(["drill", "--runbook", "kill_switch", "--operator", "ci", "--operator-script", str(path),
                 "--report", str(report)])
    assert code == 1
    set_dir = _set_dir(report)
    [record] = [json.loads(line) for line in (set_dir / "evidence.jsonl").read_text().splitlines()]
    assert record["verdict"] == "fail" and record["scenario"] == "drill-kill-switch"
    verdicts = {e["text"].split("step=")[1].split("}")[0]: e["verdict"] for e in record["expectations"]}
    assert verdicts == {"engage": "pass", "flatten": "pass", "document_state": "pass", "find_cause": "pass",
                        "clear": "fail"}
    assert [(h["step"], h["answer"], h["notes"]) for h in record["drill"]["human"]] == [
        ("find_cause", "confirm", ""), ("clear", "skip", "cause unknown")]
    timeline = (set_dir / "timeline.md").read_text()
    assert "| clear | risk_manager | resume (0ms-1h) | - | fail |" in timeline
    assert (set_dir / "manifest.json").is_file()


def _pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session, "-S", "-200"], capture_output=True,
                          text=True, check=True).stdout


def _wait_for(session: str, text: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pane = _pane(session)
        if text in pane:
            return pane
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not on the terminal within {timeout} s:\n{_pane(session)}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_the_interactive_drill_under_tmux(tmp_path: Path) -> None:
    session = f"gameday-drill-{uuid.uuid4().hex[:8]}"
    report = tmp_path / "reports"
    command = (f"cd {ROOT} && {sys.executable} -m harness.cli drill --runbook kill_switch --operator alice "
               f"--report {report}; echo DRILL-EXIT=$?; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command], check=True)
    try:
        pane = _wait_for(session, "find_cause:")
        assert "step find_cause" in pane and "SLA window: investigate (0ms-15m)" in pane and "left >" in pane
        subprocess.run(["tmux", "send-keys", "-t", session, "n restart loop in the feed", "Enter"], check=True)
        _wait_for(session, "note added (1)")
        subprocess.run(["tmux", "send-keys", "-t", session, "c", "Enter"], check=True)
        _wait_for(session, "clear:")
        subprocess.run(["tmux", "send-keys", "-t", session, "c", "Enter"], check=True)
        pane = _wait_for(session, "DRILL-EXIT=")
        assert "drill kill_switch: PASS" in pane and "DRILL-EXIT=0" in pane
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    [record] = [json.loads(line) for line in (_set_dir(report) / "evidence.jsonl").read_text().splitlines()]
    assert record["drill"]["operator"] == "alice" and record["drill"]["operator_kind"] == "TerminalOperator"
    assert [(h["step"], h["answer"], h["notes"]) for h in record["drill"]["human"]] == [
        ("find_cause", "confirm", "restart loop in the feed"), ("clear", "confirm", "")]
