"""Each sim scenario's bounded event stream is kept, sealed, in its evidence set, and a failing
expectation quotes the events around the breach (harness/event_log.py, harness/expect.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.events import Event
from harness.event_log import EventBounds, EventBoundsError, bounded_lines, event_bounds
from harness.evidence import latest_set, verify_set

ROOT = Path(__file__).resolve().parents[2]
HALTS = ROOT / "scenarios" / "breakers" / "drawdown" / "critical-halts-futures.yaml"


def broken_scenarios(directory: Path) -> None:
    """Two deliberately failing copies of a gate scenario: a drawdown too shallow to trip the
    breaker (the trip never comes), and an expectation the halt itself breaches."""
    text = HALTS.read_text()
    shallow = text.replace("drawdown-critical-halts-futures", "broken-shallow-drawdown").replace("plus: 0.5",
                                                                                                 "plus: -2.0")
    breached = text.replace("drawdown-critical-halts-futures", "broken-never-halts").replace(
        "  - never: order.placed", "  - never: trading.halted\n    after: dd\n  - never: order.placed")
    assert shallow != text and breached != text
    (directory / "shallow.yaml").write_text(shallow)
    (directory / "breached.yaml").write_text(breached)


def test_a_failing_scenario_quotes_events_and_its_stream_is_kept_sealed_and_bounded(tmp_path: Path) -> None:
    scenarios, config = tmp_path / "scenarios", tmp_path / "config"
    scenarios.mkdir()
    broken_scenarios(scenarios)
    shutil.copytree(ROOT / "config", config)
    (config / "harness.yaml").write_text("evidence:\n  events_head: 4\n  events_tail: 6\n")
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenarios), "--report",
                           str(tmp_path / "reports")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GAMEDAY_CONFIG_DIR": str(config), "GAMEDAY_PROGRESS": "off"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "never came" in done.stdout and "breached by trading.halted" in done.stdout
    assert done.stdout.count("events around it:") >= 2, done.stdout
    assert "> trading.halted{reason=drawdown" in done.stdout, "the breaching event is quoted and marked"
    the_set = latest_set(tmp_path / "reports")
    assert the_set is not None and verify_set(the_set) == []
    manifest = json.loads((the_set / "manifest.json").read_text())
    for scenario in ("broken-shallow-drawdown", "broken-never-halts"):
        name = f"events/{scenario}.jsonl"
        assert name in json.dumps(manifest), f"{name} is not sealed by the manifest"
        rows = [json.loads(line) for line in (the_set / name).read_text().splitlines()]
        assert len(rows) == 4 + 1 + 6 and rows[4]["omitted"] > 0, "head, the gap, tail"
        assert all("name" in r and "ts_ms" in r for i, r in enumerate(rows) if i != 4)
    # the manifest catches an edited stream like any other file of the set
    (the_set / "events" / "broken-never-halts.jsonl").write_text("{}\n")
    assert verify_set(the_set)


@given(st.integers(0, 60), st.integers(0, 10), st.integers(0, 10))
def test_the_kept_stream_is_the_head_the_gap_and_the_tail(n: int, head: int, tail: int) -> None:
    events = [Event("bar.closed", i, {"i": i}) for i in range(n)]
    rows = [json.loads(line) for line in bounded_lines(events, EventBounds(head, tail))]
    if n <= head + tail:
        assert [r["i"] for r in rows] == list(range(n))
        return
    assert [r["i"] for r in rows[:head]] == list(range(head))
    assert [r["i"] for r in rows[head + 1:]] == list(range(n - tail, n))
    assert rows[head] == {"omitted": n - head - tail, "from_ts_ms": head, "to_ts_ms": n - tail - 1}


@pytest.mark.parametrize("value", ["200", -1, True, 1.5])
def test_a_bound_that_is_not_a_count_is_refused_with_its_place(tmp_path: Path, value: object) -> None:
    (tmp_path / "harness.yaml").write_text(f"evidence:\n  events_tail: {json.dumps(value)}\n")
    with pytest.raises(EventBoundsError, match=r"harness.yaml:1: evidence.events_tail: expected an integer >= 0"):
        event_bounds(tmp_path)
