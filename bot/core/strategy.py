"""A compact signal: EMA fast/slow crossover confirmed by momentum, with an edge estimate scaled to
what the market moves.

- Buy when the fast EMA crosses above the slow EMA and the rate of change over
  `momentum_lookback` bars is above `min_momentum`; sell on the mirror image. No signal until
  `slow` bars have been seen.
- Expected move M = ATR / price x sqrt(horizon_bars): the typical size of the move the market
  makes over the holding horizon (a random walk's range grows with the square root of time),
  from the same Wilder ATR the exits and sizing use. horizon_bars is the time exit's
  max_hold_periods (`for_policy`).
- The strategy scores every signal as the trade it would have been, taken or not: from the
  signal's close it ends at the exits' stop (stop_distance_pct at the signal's ATR) or take
  profit (risk_multiple x that distance), judged on each later bar's low/high with the stop
  first as the exits judge them, else at the next signal or after horizon_bars bars at the
  close. The signed return is recorded in units of the signal's M: what is learned is how far,
  in expected moves, its signals run. A return <= 0 counts as a loss (conservative). The last
  `window` outcomes are kept; `snapshot` / `restore` carry them across a restart.
- Estimate: win probability p and the average win w and loss l (units of M) blend those
  outcomes with a prior worth `prior_trades` trades (Beta-style pseudo counts): p 0.45, w 2,
  l 1 - right less than half the time, a loser costs one expected move and a winner makes two
  (the exits' 2R target on a 1R stop, with R one expected move). For a signal at move M: avg
  win = min(w x M, take-profit distance), avg loss = min(l x M, stop distance) (a trade cannot
  make more than its exits let it), expected_edge = p x avg win - (1 - p) x avg loss (a fraction
  of notional, before costs) and payoff b = avg win / avg loss. The prior's edge is 0.35 x M
  until the exits bind: in a normal 5-minute BTC market (the testnet at vol_bps 15: median ATR ~
  19 bps, M ~ 1.3 %) they do, and it is their 2 % / 1 %: 0.35 %, clear of a taker round trip plus
  the minimum edge (0.28 %, so M >= 0.8 % is needed); in a dead-calm market (vol_bps 2: ATR ~ 2.5
  bps, M ~ 0.17 %) it is ~ 0.06 %, and the cost check keeps the bot out.

Deterministic and O(1) per bar (bounded deques, running sums). A bar that fails
`Bar.is_sane()` is ignored.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from bot.core.exits import Side, stop_distance_pct
from bot.core.market import Bar, IncrementalATR
from bot.core.policy import Exits, Policy


@dataclass(frozen=True, slots=True)
class StrategyParams:
    fast: int = 12
    slow: int = 26
    momentum_lookback: int = 10
    min_momentum: float = 0.0  # |rate of change| a crossover needs, fraction
    horizon_bars: int = 48  # a signal is scored after this many bars at most
    window: int = 50  # outcomes kept for the estimate
    prior_trades: float = 20.0
    prior_win_prob: float = 0.45
    prior_avg_win: float = 2.0  # in expected moves (M)
    prior_avg_loss: float = 1.0  # in expected moves (M)
    atr_periods: int = 14  # the ATR a strategy keeps when it is not given the engine's

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.fast < self.slow:
            problems.append(f"need 1 <= fast < slow (got fast={self.fast}, slow={self.slow})")
        if self.momentum_lookback < 1:
            problems.append(f"momentum_lookback must be >= 1 (got {self.momentum_lookback})")
        if self.min_momentum < 0:
            problems.append(f"min_momentum must be >= 0 (got {self.min_momentum})")
        if self.horizon_bars < 1 or self.window < 1 or self.atr_periods < 1:
            problems.append(f"horizon_bars, window and atr_periods must be >= 1 (got {self.horizon_bars}, "
                            f"{self.window}, {self.atr_periods})")
        if not self.prior_trades > 0:
            problems.append(f"prior_trades must be > 0 (got {self.prior_trades})")
        if not 0 < self.prior_win_prob < 1:
            problems.append(f"prior_win_prob must be in (0, 1) (got {self.prior_win_prob})")
        if not (self.prior_avg_win > 0 and self.prior_avg_loss > 0):
            problems.append(f"prior_avg_win and prior_avg_loss must be > 0 "
                            f"(got {self.prior_avg_win}, {self.prior_avg_loss})")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Signal:
    side: Side | None
    expected_edge: float  # fraction of notional per trade, before costs (0 when there is no signal)
    win_prob: float
    payoff: float  # average win / average loss
    expected_move: float = 0.0  # M: the market's typical move over the holding horizon, fraction of price


def expected_move(atr: float | None, price: float, horizon_bars: int) -> float:
    """ATR / price x sqrt(horizon): 0.0 when the ATR is unknown or anything is not usable."""
    if atr is None or not (math.isfinite(atr) and atr > 0 and math.isfinite(price) and price > 0):
        return 0.0
    return atr / price * math.sqrt(horizon_bars)


class Strategy:
    """The engine passes its own IncrementalATR (`atr`, updated before each `update`); a strategy
    built without one keeps and feeds its own. Without `exits` a scored signal ends only at the
    next signal or the horizon, and the estimate is not capped by exit distances."""

    def __init__(self, params: StrategyParams | None = None, *, exits: Exits | None = None,
                 atr: IncrementalATR | None = None) -> None:
        self.params = p = params or StrategyParams()
        self._exits = exits
        self._own_atr = atr is None
        self._atr = IncrementalATR(p.atr_periods) if atr is None else atr
        self._a_fast = 2.0 / (p.fast + 1)
        self._a_slow = 2.0 / (p.slow + 1)
        self._ema_fast = 0.0
        self._ema_slow = 0.0
        self._prev_diff = 0.0
        self._bars = 0
        self._need = p.momentum_lookback + 1
        self._closes: deque[float] = deque(maxlen=self._need)
        # the signal being scored: side, entry close, bars since, its M, stop and target prices
        self._pending_side: Side | None = None
        self._pending_price = 0.0
        self._pending_age = 0
        self._pending_move = 0.0
        self._pending_stop = 0.0
        self._pending_target = 0.0
        # rolling outcomes: signed returns in units of the signal's expected move
        self._outcomes: deque[float] = deque(maxlen=p.window)
        self._wins = 0
        self._sum_win = 0.0
        self._sum_loss = 0.0
        self._win_prob = self._avg_win = self._avg_loss = 0.0
        self._idle = self._refresh()

    @classmethod
    def for_policy(cls, policy: Policy, params: StrategyParams | None = None, *,
                   atr: IncrementalATR | None = None) -> Strategy:
        """A strategy scored with the policy's exits: its time-exit horizon, stop and take profit."""
        base = params or StrategyParams()
        periods = policy.circuit_breakers.volatility.atr.atr_periods
        return cls(replace(base, horizon_bars=policy.exits.time_exit.max_hold_periods, atr_periods=periods),
                   exits=policy.exits, atr=atr)

    @property
    def outcomes(self) -> int:
        return len(self._outcomes)

    @property
    def units(self) -> tuple[float, float, float]:
        """(win probability, average win, average loss), the sizes in expected moves."""
        return self._win_prob, self._avg_win, self._avg_loss

    @property
    def estimate(self) -> Signal:
        """The edge estimate at the last close and the current ATR, without a side."""
        return self.estimate_at(self._closes[-1] if self._closes else 0.0)

    def estimate_at(self, price: float) -> Signal:
        """The edge estimate for an entry at `price` with the current ATR, without a side."""
        return self._signal(None, price, expected_move(self._atr.value, price, self.params.horizon_bars))

    def snapshot(self) -> dict[str, Any]:
        return {"outcomes": list(self._outcomes)}

    def restore(self, data: dict[str, Any]) -> None:
        """Reload the measured outcomes (a restart keeps the hit rate and payoff it has learned)."""
        values = [float(v) for v in data["outcomes"]]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"strategy snapshot: outcomes must be finite numbers (got {values!r})")
        self._outcomes.clear()
        self._wins, self._sum_win, self._sum_loss = 0, 0.0, 0.0
        for v in values:
            self._record(v)

    def _refresh(self) -> Signal:
        p = self.params
        n = len(self._outcomes)
        wins = self._wins
        prior_w = p.prior_trades * p.prior_win_prob
        prior_l = p.prior_trades - prior_w
        self._win_prob = (prior_w + wins) / (p.prior_trades + n)
        self._avg_win = (prior_w * p.prior_avg_win + self._sum_win) / (prior_w + wins)
        self._avg_loss = (prior_l * p.prior_avg_loss + self._sum_loss) / (prior_l + n - wins)
        return Signal(None, 0.0, self._win_prob, self._avg_win / self._avg_loss)

    def _signal(self, side: Side | None, price: float, move: float) -> Signal:
        """The estimate in fractions of notional for a trade entered at `price` with move M."""
        prob = self._win_prob
        if move <= 0.0:
            return Signal(side, 0.0, prob, self._avg_win / self._avg_loss, 0.0)
        win, loss = self._avg_win * move, self._avg_loss * move
        exits = self._exits
        if exits is not None:
            stop = stop_distance_pct(price, self._atr.value, exits.stop_loss)
            win = min(win, exits.take_profit.risk_multiple * stop)
            loss = min(loss, stop)
        return Signal(side, prob * win - (1.0 - prob) * loss, prob, win / loss, move)

    def _record(self, units: float) -> None:
        if len(self._outcomes) == self._outcomes.maxlen:
            old = self._outcomes[0]
            if old > 0.0:
                self._wins -= 1
                self._sum_win = max(self._sum_win - old, 0.0)
            else:
                self._sum_loss = max(self._sum_loss + old, 0.0)
        self._outcomes.append(units)
        if units > 0.0:
            self._wins += 1
            self._sum_win += units
        else:
            self._sum_loss -= units
        self._idle = self._refresh()

    def _resolve(self, exit_price: float) -> None:
        side = self._pending_side
        if side is None:
            return
        move = exit_price / self._pending_price - 1.0
        self._record((move if side == "buy" else -move) / self._pending_move)
        self._pending_side = None

    def _score_pending(self, bar: Bar) -> None:
        """Advance the signal being scored by one bar: its stop or target, else the horizon."""
        self._pending_age += 1
        stop, target = self._pending_stop, self._pending_target
        if self._exits is None:
            exit_price = None
        elif self._pending_side == "buy":
            exit_price = min(bar.open, stop) if bar.low <= stop else target if bar.high >= target else None
        else:
            exit_price = max(bar.open, stop) if bar.high >= stop else target if bar.low <= target else None
        if exit_price is None and self._pending_age >= self.params.horizon_bars:
            exit_price = bar.close
        if exit_price is not None:
            self._resolve(exit_price)

    def _start_scoring(self, side: Side, close: float, move: float) -> None:
        self._pending_side, self._pending_price, self._pending_age, self._pending_move = side, close, 0, move
        exits = self._exits
        if exits is not None:
            stop = stop_distance_pct(close, self._atr.value, exits.stop_loss)
            target = exits.take_profit.risk_multiple * stop
            sign = 1.0 if side == "buy" else -1.0
            self._pending_stop = close * (1.0 - sign * stop)
            self._pending_target = close * (1.0 + sign * target)

    def update(self, bar: Bar) -> Signal:
        """Feed one closed bar; the signal for it (side None: no entry)."""
        if not bar.is_sane():
            return self._idle
        if self._own_atr:
            self._atr.update(bar)
        p = self.params
        close = bar.close
        self._bars += 1
        closes = self._closes
        closes.append(close)
        if self._bars == 1:
            self._ema_fast = self._ema_slow = close
        else:
            self._ema_fast += self._a_fast * (close - self._ema_fast)
            self._ema_slow += self._a_slow * (close - self._ema_slow)

        if self._pending_side is not None:
            self._score_pending(bar)

        diff = self._ema_fast - self._ema_slow
        prev = self._prev_diff
        self._prev_diff = diff
        if self._bars <= p.slow or len(closes) < self._need:
            return self._idle
        momentum = close / closes[0] - 1.0
        side: Side | None = None
        if prev <= 0.0 < diff and momentum > p.min_momentum:
            side = "buy"
        elif prev >= 0.0 > diff and momentum < -p.min_momentum:
            side = "sell"
        if side is None:
            return self._idle
        self._resolve(close)
        move = expected_move(self._atr.value, close, p.horizon_bars)
        if move > 0.0:  # a signal the market's move cannot be measured for is not scored
            self._start_scoring(side, close, move)
        return self._signal(side, close, move)
