"""bench_bookkeeping, bench_control and edge_after_costs fail when what they measure does nothing
(issue 10 item 6). The first two time real bot processes, so the no-op is patched into those
processes by a sitecustomize on their PYTHONPATH; edge_after_costs runs the bot in-process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bot.core.engine as engine
from bot.core.costs import EdgeCheck

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_bookkeeping  # noqa: E402
import edge_after_costs  # noqa: E402


def patched_checkout(tmp_path: Path, patch: str) -> Path:
    """A code root whose `bot` is this checkout's and whose every Python process first runs `patch`."""
    root = tmp_path / "code"
    root.mkdir()
    (root / "bot").symlink_to(ROOT / "bot")
    (root / "sitecustomize.py").write_text(textwrap.dedent(patch))
    return root


NO_AUDIT = """
    from bot.io.audit import AuditLog
    AuditLog.append = lambda self, *args, **kwargs: {}
"""


def test_the_torn_tail_figure_stands_with_the_real_audit_log(tmp_path):
    line, problems = bench_bookkeeping.torn_figure(ROOT, 3, 64, tmp_path)
    assert problems == [], line
    assert "3 kills (3 with records)" in line


def test_the_torn_tail_figure_fails_when_the_appender_writes_nothing(tmp_path):
    line, problems = bench_bookkeeping.torn_figure(patched_checkout(tmp_path, NO_AUDIT), 3, 64, tmp_path)
    assert "(0 with records), 0 torn tails" in line
    assert any("the appender wrote nothing" in p for p in problems), problems


def test_the_lost_state_figure_fails_when_nothing_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_bookkeeping, "lose", lambda how, db, redis_url: None)
    line = bench_bookkeeping.lost_state(ROOT, tmp_path, "delete", None)
    problems = bench_bookkeeping.lost_problems("delete", line)
    assert any("names no loss" in p for p in problems), (line, problems)


@pytest.mark.parametrize("line", ["active before -> halted after ([])", "halted before -> active after ([])",
                                  "halted before -> halted after (['bench: halted, manual resume required'])"])
def test_a_lost_state_line_that_shows_nothing_or_comes_back_active_is_a_problem(line):
    assert bench_bookkeeping.lost_problems("delete", line)


@pytest.mark.parametrize("line", ["halted before -> halted after (['state lost: sqlite:x holds no state'])",
                                  "halted before -> refused to start (exit 3): state lost", "not measured: no redis"])
def test_a_lost_state_that_stays_halted_or_refuses_is_no_problem(line):
    assert bench_bookkeeping.lost_problems("delete", line) == []


def test_a_full_disk_kill_switch_that_leaves_a_position_is_a_problem():
    assert bench_bookkeeping.disk_problems("HTTP 200, position after 0 BTC (flat after 0.1 s), 2 critical "
                                           "alert(s), bot alive") == []
    assert bench_bookkeeping.disk_problems("HTTP 500, position after 0.02 BTC (OPEN after 10.0 s), 0 critical "
                                           "alert(s), bot dead")


UNLIMITED = """
    from bot.io.control import RateLimiter
    RateLimiter.take = lambda self, key: None
"""


@pytest.mark.parametrize(("patch", "code"), [(None, 0), (UNLIMITED, 1)])
def test_the_control_figures_fail_when_nothing_rate_limits(tmp_path, patch, code):
    env = {"PATH": "/usr/bin:/bin"}
    if patch is not None:
        env["PYTHONPATH"] = str(patched_checkout(tmp_path, patch))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_control.py"), "--calls", "150",
                           "--big", "3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == code, done.stdout + done.stderr
    if code:
        assert "drew no 429: nothing rate limits" in done.stdout


def test_the_edge_figure_stands_with_the_real_edge_check():
    tallies = edge_after_costs.measure("futures", 2, 300, [2.0, 15.0])
    assert edge_after_costs.measured(tallies) == tallies


def test_the_edge_figure_fails_when_the_edge_check_allows_everything(monkeypatch):
    monkeypatch.setattr(engine, "entry_allowed_by_edge", lambda *a, **k: EdgeCheck(True, 1.0, 0.0, "no-op"))
    with pytest.raises(SystemExit, match="refused no entry in any regime: the figure measures nothing"):
        edge_after_costs.measured(edge_after_costs.measure("futures", 2, 300, [2.0, 15.0]))
