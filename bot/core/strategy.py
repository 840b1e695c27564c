"""A compact signal: EMA fast/slow crossover confirmed by momentum, with an online edge estimate.

- Buy when the fast EMA crosses above the slow EMA and the rate of change over
  `momentum_lookback` bars is above `min_momentum`; sell on the mirror image. No signal until
  `slow` bars have been seen.
- The strategy scores its own signals: a signal is resolved at the next signal or after
  `horizon_bars` bars, whichever comes first, as the signed return from its close. A return
  <= 0 counts as a loss (conservative). The last `window` outcomes are kept.
- Estimates blend those outcomes with a prior worth `prior_trades` trades (Beta-style pseudo
  counts): win probability p, average win and loss, payoff b = avg win / avg loss, and
  expected_edge = p x avg win - (1 - p) x avg loss (a fraction of notional per trade). The
  default prior (p 0.45, wins 2 %, losses 1 %: a 2R target on a 1 % stop, right less than half
  the time) has a positive Kelly fraction and clears the default cost check, so the bot trades
  from the start; its own record then takes over.

Deterministic and O(1) per bar (bounded deques, running sums). A bar that fails
`Bar.is_sane()` is ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from bot.core.exits import Side
from bot.core.market import Bar
from bot.core.policy import Policy


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
    prior_avg_win: float = 0.02
    prior_avg_loss: float = 0.01

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.fast < self.slow:
            problems.append(f"need 1 <= fast < slow (got fast={self.fast}, slow={self.slow})")
        if self.momentum_lookback < 1:
            problems.append(f"momentum_lookback must be >= 1 (got {self.momentum_lookback})")
        if self.min_momentum < 0:
            problems.append(f"min_momentum must be >= 0 (got {self.min_momentum})")
        if self.horizon_bars < 1 or self.window < 1:
            problems.append(f"horizon_bars and window must be >= 1 (got {self.horizon_bars}, {self.window})")
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
    expected_edge: float  # fraction of notional per trade, before costs
    win_prob: float
    payoff: float  # average win / average loss


class Strategy:
    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = p = params or StrategyParams()
        self._a_fast = 2.0 / (p.fast + 1)
        self._a_slow = 2.0 / (p.slow + 1)
        self._ema_fast = 0.0
        self._ema_slow = 0.0
        self._prev_diff = 0.0
        self._bars = 0
        self._need = p.momentum_lookback + 1
        self._closes: deque[float] = deque(maxlen=self._need)
        # the signal being scored
        self._pending_side: Side | None = None
        self._pending_price = 0.0
        self._pending_age = 0
        # rolling outcomes: signed returns
        self._outcomes: deque[float] = deque(maxlen=p.window)
        self._wins = 0
        self._sum_win = 0.0
        self._sum_loss = 0.0
        self._idle = self._estimate(None)

    @classmethod
    def for_policy(cls, policy: Policy, params: StrategyParams | None = None) -> Strategy:
        """A strategy that scores its signals over the policy's time-exit horizon."""
        base = params or StrategyParams()
        return cls(replace(base, horizon_bars=policy.exits.time_exit.max_hold_periods))

    @property
    def outcomes(self) -> int:
        return len(self._outcomes)

    @property
    def estimate(self) -> Signal:
        """The current edge estimate, without a side."""
        return self._idle

    def _estimate(self, side: Side | None) -> Signal:
        p = self.params
        n = len(self._outcomes)
        wins = self._wins
        prior_w = p.prior_trades * p.prior_win_prob
        prior_l = p.prior_trades - prior_w
        win_prob = (prior_w + wins) / (p.prior_trades + n)
        avg_win = (prior_w * p.prior_avg_win + self._sum_win) / (prior_w + wins)
        avg_loss = (prior_l * p.prior_avg_loss + self._sum_loss) / (prior_l + n - wins)
        edge = win_prob * avg_win - (1.0 - win_prob) * avg_loss
        return Signal(side, edge, win_prob, avg_win / avg_loss)

    def _record(self, ret: float) -> None:
        if len(self._outcomes) == self._outcomes.maxlen:
            old = self._outcomes[0]
            if old > 0.0:
                self._wins -= 1
                self._sum_win = max(self._sum_win - old, 0.0)
            else:
                self._sum_loss = max(self._sum_loss + old, 0.0)
        self._outcomes.append(ret)
        if ret > 0.0:
            self._wins += 1
            self._sum_win += ret
        else:
            self._sum_loss -= ret
        self._idle = self._estimate(None)

    def _resolve(self, close: float) -> None:
        side = self._pending_side
        if side is None:
            return
        move = close / self._pending_price - 1.0
        self._record(move if side == "buy" else -move)
        self._pending_side = None

    def update(self, bar: Bar) -> Signal:
        """Feed one closed bar; the signal for it (side None: no entry)."""
        if not bar.is_sane():
            return self._idle
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
            self._pending_age += 1
            if self._pending_age >= p.horizon_bars:
                self._resolve(close)

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
        self._pending_side, self._pending_price, self._pending_age = side, close, 0
        return self._estimate(side)
