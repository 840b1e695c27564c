"""benchmarks/bench_core.py must fail when the BreakerBoard or the Engine it times does nothing (issue 10 item 6)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.config import load_policy
from bot.core.breakers.board import BreakerBoard
from bot.core.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_core  # noqa: E402


def test_the_board_figure_passes_with_the_real_board():
    assert len(bench_core.bench_breaker_board(load_policy("futures").policy, 3_000)) == 3_000


def test_the_board_figure_fails_when_observe_does_nothing(monkeypatch):
    monkeypatch.setattr(BreakerBoard, "observe", lambda self, x: self.status())
    with pytest.raises(SystemExit, match="judged nothing"):
        bench_core.bench_breaker_board(load_policy("futures").policy, 3_000)


def test_the_engine_figure_fails_when_on_bar_does_nothing(monkeypatch):
    monkeypatch.setattr(Engine, "on_bar", lambda self, bar: [])
    with pytest.raises(SystemExit, match="barely traded"):
        bench_core.bench_engine_on_bar(load_policy("futures").policy, 3_000)
