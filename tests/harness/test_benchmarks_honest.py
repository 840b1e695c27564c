"""Every benchmark fails when the thing it measures does nothing (issue 10 item 6): a store that
keeps nothing, a sim runner that simulates nothing, drills that check nothing are all fast, so
bench_state and bench_scenarios read back or judge what they timed. bench_core: tests/core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import harness.sim.world as world
from bot.config import load_policy
from bot.io.audit import AuditLog
from bot.io.state_sqlite import SqliteStore
from bot.runtime import Trader
from harness.drill import PROFILES, drill
from harness.expect import RunRecord

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_scenarios  # noqa: E402
import bench_state  # noqa: E402
import bench_validate  # noqa: E402

HALTS = ROOT / "scenarios" / "breakers" / "drawdown" / "critical-halts-futures.yaml"


def test_the_durability_figures_stand_with_the_real_stores(tmp_path):
    bench_state.bench_files(tmp_path, 20)


@pytest.mark.parametrize(("cls", "method", "why"), [(SqliteStore, "put", "sqlite put"),
                                                    (SqliteStore, "update", "sqlite update counter"),
                                                    (AuditLog, "append", "audit log records")])
def test_the_durability_figures_fail_when_a_write_keeps_nothing(tmp_path, monkeypatch, cls, method, why):
    monkeypatch.setattr(cls, method, lambda self, *a, **k: None)
    with pytest.raises(SystemExit, match=f"{why}: read back .* the figure measures nothing"):
        bench_state.bench_files(tmp_path, 20)


def test_the_scenario_figure_stands_with_the_real_runner():
    assert bench_scenarios.all_pass([bench_scenarios.run_one(HALTS)])


def test_the_scenario_figure_fails_when_the_runner_simulates_nothing(monkeypatch):
    monkeypatch.setattr(bench_scenarios, "simulate", lambda scenario, params, policy: RunRecord([], [], 300_000))
    with pytest.raises(SystemExit, match="did not pass .*measures nothing"):
        bench_scenarios.all_pass([bench_scenarios.run_one(HALTS)])


def test_the_drill_rate_stands_with_the_real_runner(tmp_path):
    bench_scenarios.drills_checked(drill(3, 1, PROFILES, 60, tmp_path, shrink_failures=False, echo=lambda _: None))


def test_the_drill_rate_fails_when_the_runner_simulates_nothing(tmp_path, monkeypatch):
    async def nothing(self):
        return RunRecord([], [], 300_000)

    monkeypatch.setattr(world.SimWorld, "run", nothing)
    report = drill(3, 1, PROFILES, 60, tmp_path, shrink_failures=False, echo=lambda _: None)
    with pytest.raises(SystemExit, match="the timed drills are no figure"):
        bench_scenarios.drills_checked(report)


def test_the_paper_trading_rate_stands_with_the_real_bot():
    assert bench_validate.regime_figures(load_policy("futures").policy, 1_500)


def test_the_paper_trading_rate_fails_when_the_bot_ignores_its_bars(monkeypatch):
    async def ignore(self, bar, event_ts_ms=None):
        return None

    monkeypatch.setattr(Trader, "on_bar", ignore)
    with pytest.raises(SystemExit, match="the bot played nothing"):
        bench_validate.regime_figures(load_policy("futures").policy, 1_500)


@pytest.mark.parametrize(("flags", "code"), [([], 0), (["--broken"], 1)])
def test_the_alert_delivery_figure_fails_when_the_sinks_send_nothing(flags, code):
    """bench_alerts times the bot's sinks against real receivers; sinks that confirm without
    sending must make it exit non-zero."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_alerts.py"), "--alerts", "3", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    if code:
        assert "never reached the receiver" in done.stdout
