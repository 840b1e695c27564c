"""Progress of long work: live on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from harness.drill import drill
from harness.drill_args import PROFILES
from harness.progress import ScenarioWatch, Tracker, mode

ROOT = Path(__file__).resolve().parents[2]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_mode_follows_the_terminal_ci_and_the_override() -> None:
    assert mode(Tty(), env={}) == "live"
    assert mode(io.StringIO(), env={}) == "lines"
    assert mode(Tty(), env={"CI": "true"}) == "lines"
    assert mode(io.StringIO(), env={"GAMEDAY_PROGRESS": "live"}) == "live"
    assert mode(Tty(), env={"GAMEDAY_PROGRESS": "off"}) == "off"


def test_lines_mode_prints_one_line_per_tenth_and_a_heartbeat_line_when_slow() -> None:
    out, clock = io.StringIO(), Clock()
    t = Tracker("drill", 200, unit="schedules", stream=out, clock=clock, how="lines")
    for _ in range(200):
        t.advance(note="0 failing so far")
    t.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[0] == "drill: 20/200 schedules, 0.0 s elapsed, 0 failing so far"
    assert lines[-1].startswith("drill: 200/200 schedules") and "\x1b[" not in out.getvalue()
    slow = io.StringIO()
    t = Tracker("scenario x", 100, stream=slow, clock=clock, how="lines")
    t.update("waiting")
    clock.now += 31
    t.update("waiting")
    t.update("waiting")
    assert slow.getvalue().splitlines() == ["scenario x: 0/100, 31.0 s elapsed, waiting"]


def test_live_mode_draws_the_bar_with_count_and_note() -> None:
    out = Tty()
    t = Tracker("drill", 4, unit="schedules", stream=out, how="live")
    for _ in range(4):
        t.advance(note="1 failing so far")
    t.close()
    text = out.getvalue()
    assert "drill" in text and "4/4" in text and "1 failing so far" in text


def test_a_scenario_watch_says_step_reached_next_step_and_elapsed_against_plan() -> None:
    out, clock = io.StringIO(), Clock()
    watch = ScenarioWatch("net-outage", 2, 60.0, stream=out, clock=clock, how="lines")
    clock.now = 5
    watch.step("outage")
    assert out.getvalue().splitlines()[-1] == ("scenario net-outage: 1/2 steps, 5.0 s elapsed, at outage; "
                                               "5 s of 60 s planned")
    clock.now = 70
    watch.tick("recover", 3.2)
    assert out.getvalue().splitlines()[-1].endswith(
        "at outage; 70 s of 60 s planned (over plan: waiting for the bot); next recover in 3 s")
    watch.close()


def test_a_drill_in_ci_shows_line_progress(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GAMEDAY_PROGRESS", "lines")
    drill(10, 7, PROFILES, 60, tmp_path / "out", jobs=1, echo=lambda _: None)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == [f"drill: {i}/10 schedules" for i in range(1, 11)]


def test_the_drill_cli_off_a_terminal_stays_line_oriented(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "drill", "--random", "10", "--seed", "3", "--profile",
                           "futures", "--bars", "60", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False, env={"PATH": "/usr/bin:/bin", "CI": "1"})
    assert "drill: 10/10 schedules" in done.stderr, done.stderr
    assert "\x1b[" not in done.stderr


def test_under_pytest_the_terminal_is_judged_when_the_session_starts(monkeypatch) -> None:
    from harness import progress

    cleanups = []

    class Config:
        class pluginmanager:  # noqa: N801 - pytest's attribute name
            @staticmethod
            def getplugin(name: str) -> None:
                return None

        add_cleanup = staticmethod(cleanups.append)

    before = (progress._stream, progress._stream_tty)
    monkeypatch.setattr(sys, "stderr", Tty())
    progress.use_pytest(Config())
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # what a test sees while its output is captured
    assert progress.mode(env={}) == "live"
    for cleanup in cleanups:
        cleanup()
    assert (progress._stream, progress._stream_tty) == before  # the outer session's terminal again


def test_a_scenario_watch_shows_elapsed_against_the_sla_of_the_step_reached(write_scenario) -> None:
    from harness.scenario import load_scenario
    from tests.harness.test_scenario import CHECKLIST, GOOD, PROFILES

    sc = load_scenario(write_scenario("s.yaml", GOOD), profiles=PROFILES, checklist_ids=CHECKLIST)
    timed = [e for e in sc.expect if e.kind == "event" and e.after and e.within is not None]
    assert timed, "the sample scenario has an expectation timed from a step"
    out, clock = io.StringIO(), Clock()
    watch = ScenarioWatch.of(sc, 0.001, 120.0, stream=out, clock=clock, how="lines")
    sla_s = timed[0].within.to_ms(sc.bar_ms) * 0.001 / 1000
    clock.now = 1.0
    watch.step(timed[0].after)
    clock.now = 1.0 + sla_s / 2
    assert f"{timed[0].event}: {sla_s / 2:.1f} s of {sla_s:.1f} s SLA" in watch._note(None)
    clock.now = 1.0 + sla_s + 0.1
    assert "SLA" not in watch._note(None)  # the window is over: no longer shown
    watch.close()
