"""Validation metrics against hand-computed cases, and their properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.validate.metrics import (
    bar_returns,
    max_drawdown_pct,
    periods_per_year,
    sharpe,
    trade_stats,
)

DAY_MS = 86_400_000
FIVE_MIN_MS = 300_000


def test_trade_stats_by_hand() -> None:
    # wins 30 + 20 = 50, losses 10 + 20 = 30, one break-even trade (not a win, not a loss)
    s = trade_stats([30.0, -10.0, 20.0, -20.0, 0.0])
    assert (s.trades, s.wins, s.losses) == (5, 2, 2)
    assert s.win_rate == pytest.approx(0.4)
    assert s.gross_profit == pytest.approx(50.0)
    assert s.gross_loss == pytest.approx(30.0)
    assert s.profit_factor == pytest.approx(5 / 3)
    assert s.net_pnl == pytest.approx(20.0)


def test_profit_factor_without_losses_is_infinite_and_without_trades_undefined() -> None:
    assert trade_stats([5.0, 1.0]).profit_factor == math.inf
    assert trade_stats([]).profit_factor is None
    assert trade_stats([]).win_rate is None
    assert trade_stats([0.0]).profit_factor is None
    assert trade_stats([-1.0]).profit_factor == 0.0


def test_sharpe_by_hand() -> None:
    # returns +10 %, -10 %, +10 %: mean 1/30, deviations 1/15, -2/15, 1/15 -> variance (6/225)/2 = 1/75
    equity = [100.0, 110.0, 99.0, 108.9]
    assert bar_returns(equity) == pytest.approx([0.1, -0.1, 0.1])
    per_bar = (1 / 30) / math.sqrt(1 / 75)
    assert sharpe(bar_returns(equity), DAY_MS) == pytest.approx(per_bar * math.sqrt(365))
    assert sharpe(bar_returns(equity), FIVE_MIN_MS) == pytest.approx(per_bar * math.sqrt(105_120))
    assert per_bar * math.sqrt(365) == pytest.approx(5.51514, abs=1e-5)


def test_periods_per_year_counts_every_day() -> None:
    assert periods_per_year(FIVE_MIN_MS) == 105_120
    assert periods_per_year(DAY_MS) == 365
    with pytest.raises(ValueError, match="bar_ms"):
        periods_per_year(0)


def test_sharpe_undefined_without_variation_or_data() -> None:
    assert sharpe(bar_returns([100.0, 100.0, 100.0]), DAY_MS) is None
    assert sharpe(bar_returns([100.0, 101.0]), DAY_MS) is None  # one return
    assert sharpe([], DAY_MS) is None


def test_max_drawdown_by_hand() -> None:
    assert max_drawdown_pct([100.0, 110.0, 99.0, 108.9]) == pytest.approx(10.0)
    assert max_drawdown_pct([100.0, 50.0, 200.0, 100.0]) == pytest.approx(50.0)
    assert max_drawdown_pct([100.0, 90.0, 120.0, 84.0, 130.0]) == pytest.approx(30.0)
    assert max_drawdown_pct([100.0, 101.0, 102.0]) == 0.0
    assert max_drawdown_pct([100.0, 0.0]) == 100.0
    assert max_drawdown_pct([]) == 0.0


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        trade_stats([1.0, math.nan])
    with pytest.raises(ValueError, match="finite"):
        max_drawdown_pct([100.0, math.inf])
    with pytest.raises(ValueError, match="> 0"):
        bar_returns([100.0, 0.0, 50.0])


pnl = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
equity_value = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(st.lists(pnl, max_size=60), st.randoms(use_true_random=False))
def test_win_rate_and_profit_factor_do_not_depend_on_trade_order(pnls: list[float], rnd: object) -> None:
    shuffled = list(pnls)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = trade_stats(pnls), trade_stats(shuffled)
    assert a.win_rate == b.win_rate
    if a.profit_factor is None or math.isinf(a.profit_factor):
        assert a.profit_factor == b.profit_factor
    else:
        assert b.profit_factor == pytest.approx(a.profit_factor, rel=1e-9)


@given(st.lists(pnl, min_size=1, max_size=60))
def test_win_rate_is_a_fraction_and_profit_factor_not_negative(pnls: list[float]) -> None:
    s = trade_stats(pnls)
    assert s.win_rate is not None and 0.0 <= s.win_rate <= 1.0
    assert s.profit_factor is None or s.profit_factor >= 0.0
    assert s.wins + s.losses <= s.trades


@given(st.lists(equity_value, max_size=80))
def test_max_drawdown_is_a_percentage(equity: list[float]) -> None:
    assert 0.0 <= max_drawdown_pct(equity) <= 100.0


@given(st.lists(equity_value, min_size=2, max_size=80), st.floats(min_value=0.01, max_value=100.0))
def test_drawdown_and_sharpe_do_not_depend_on_account_size(equity: list[float], scale: float) -> None:
    scaled = [e * scale for e in equity]
    assert max_drawdown_pct(scaled) == pytest.approx(max_drawdown_pct(equity), abs=1e-9)
    a, b = sharpe(bar_returns(equity), FIVE_MIN_MS), sharpe(bar_returns(scaled), FIVE_MIN_MS)
    if a is not None and b is not None:
        assert b == pytest.approx(a, rel=1e-6, abs=1e-6)


@given(st.lists(equity_value, min_size=1, max_size=80))
def test_a_curve_that_never_falls_has_no_drawdown(equity: list[float]) -> None:
    assert max_drawdown_pct(sorted(equity)) == 0.0
