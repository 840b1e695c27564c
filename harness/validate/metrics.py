"""Performance figures of a paper-trading run, computed with numpy.

Definitions (the ones `gameday validate` reports and judges):

- **trades**: closed positions (round trips); a trade's P&L is net of its fees and slippage.
- **win rate**: trades with P&L > 0 divided by all trades (a break-even trade is not a win).
- **profit factor**: gross profit / gross loss = sum of positive P&L / |sum of negative P&L|;
  +inf when there are wins and no losses, undefined (None) with neither.
- **Sharpe ratio**: annualised from the equity curve sampled at every bar close (marked to
  market, so it includes unrealised P&L): simple per-bar returns r_t = E_t / E_(t-1) - 1,
  Sharpe = mean(r) / std(r, ddof=1) x sqrt(bars per year), bars per year = 365 days / bar length
  (crypto trades every day), risk-free rate 0. Undefined (None) with fewer than two returns or
  no variation at all.
- **max drawdown**: the largest fall of that same equity curve from its running peak, as a
  percentage of the peak, in [0, 100] (an account at or below zero has lost 100 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000
YEAR_DAYS = 365


def periods_per_year(bar_ms: int) -> float:
    """How many bars of `bar_ms` fit in a 365-day year."""
    if bar_ms <= 0:
        raise ValueError(f"bar_ms must be > 0, got {bar_ms}")
    return YEAR_DAYS * DAY_MS / bar_ms


def _array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite numbers")
    return arr


@dataclass(frozen=True, slots=True)
class TradeStats:
    trades: int
    wins: int
    losses: int
    gross_profit: float
    gross_loss: float  # a positive number: the sum of the losing trades' |P&L|
    net_pnl: float

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None

    @property
    def profit_factor(self) -> float | None:
        if self.gross_loss > 0:
            return self.gross_profit / self.gross_loss
        return math.inf if self.gross_profit > 0 else None


def trade_stats(pnls: Sequence[float]) -> TradeStats:
    """Win/loss counts and gross figures of closed trades' P&L."""
    arr = _array(pnls, "trade P&L")
    wins = arr[arr > 0]
    losing = arr[arr < 0]
    return TradeStats(trades=int(arr.size), wins=int(wins.size), losses=int(losing.size),
                      gross_profit=float(wins.sum()), gross_loss=float(-losing.sum()), net_pnl=float(arr.sum()))


def bar_returns(equity: Sequence[float]) -> np.ndarray:
    """Simple returns between consecutive equity samples (equity must stay > 0 to have one)."""
    arr = _array(equity, "equity")
    if arr.size < 2:
        return np.empty(0)
    prev = arr[:-1]
    if np.any(prev <= 0):
        raise ValueError("equity must be > 0 for returns to be defined")
    out: np.ndarray = arr[1:] / prev - 1.0
    return out


def sharpe(returns: Sequence[float] | np.ndarray, bar_ms: int) -> float | None:
    """Annualised Sharpe ratio of per-bar returns (risk-free rate 0); None when undefined."""
    r = _array(returns, "returns")
    if r.size < 2:
        return None
    sd = float(np.std(r, ddof=1))
    if not sd > 0:
        return None
    return float(np.mean(r)) / sd * math.sqrt(periods_per_year(bar_ms))


def max_drawdown_pct(equity: Sequence[float]) -> float:
    """Largest peak-to-trough fall of the equity curve, % of the peak, in [0, 100]."""
    arr = _array(equity, "equity")
    if arr.size == 0:
        return 0.0
    peaks = np.maximum.accumulate(arr)
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (peaks - arr) / peaks, 0.0)
    return float(min(max(falls.max() * 100.0, 0.0), 100.0))
