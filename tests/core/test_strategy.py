"""The EMA crossover + momentum signal and its online edge estimate."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import pytest

from bot.config import load_policy
from bot.core.costs import entry_allowed_by_edge
from bot.core.market import Bar
from bot.core.sizing import kelly_fraction, size_position
from bot.core.strategy import Signal, Strategy, StrategyParams


def _bars(closes: Sequence[float]) -> Iterator[Bar]:
    prev = closes[0]
    for i, close in enumerate(closes):
        yield Bar(i, prev, max(prev, close) + 0.1, min(prev, close) - 0.1, close)
        prev = close


def _run(strategy: Strategy, closes: Sequence[float]) -> list[tuple[int, Signal]]:
    return [(i, sig) for i, bar in enumerate(_bars(closes)) if (sig := strategy.update(bar)).side is not None]


DOWN_UP = [100 - 0.5 * i for i in range(60)] + [70.5 + i for i in range(60)]
UP_DOWN = [100 + 0.5 * i for i in range(60)] + [129.5 - i for i in range(60)]


def _random_walk(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for _ in range(n):
        price *= math.exp(rng.gauss(0.0, 0.004))
        out.append(price)
    return out


def test_buy_after_a_v_bottom() -> None:
    signals = _run(Strategy(), DOWN_UP)
    assert [s.side for _, s in signals] == ["buy"]
    at = signals[0][0]
    assert 60 <= at <= 80  # after the turn, once the fast EMA is back above the slow one


def test_sell_after_a_top() -> None:
    signals = _run(Strategy(), UP_DOWN)
    assert [s.side for _, s in signals] == ["sell"]


def test_no_signal_during_warmup() -> None:
    params = StrategyParams()
    strategy = Strategy(params)
    # a crossover inside the warm-up window is not a signal
    closes = [100 - i for i in range(10)] + [91 + 3 * i for i in range(params.slow - 10)]
    assert _run(strategy, closes) == []


def test_momentum_filter_blocks_unconfirmed_crossovers() -> None:
    assert _run(Strategy(StrategyParams(min_momentum=0.5)), DOWN_UP) == []
    assert _run(Strategy(StrategyParams(min_momentum=0.5)), UP_DOWN) == []


def test_prior_lets_it_trade_from_the_start() -> None:
    policy = load_policy("futures").policy
    est = Strategy.for_policy(policy).estimate
    assert est.side is None
    assert math.isclose(est.win_prob, 0.45) and math.isclose(est.payoff, 2.0)
    assert math.isclose(est.expected_edge, 0.45 * 0.02 - 0.55 * 0.01)
    assert kelly_fraction(est.win_prob, est.payoff, policy.position_sizing.kelly_fraction) > 0
    assert entry_allowed_by_edge(policy.execution_costs, est.expected_edge, 1_000.0, 10.0, False).allowed
    size = size_position(policy, equity=10_000, price=100, atr=0.3, win_prob=est.win_prob, payoff=est.payoff)
    assert size.qty > 0


def test_pets_prior_clears_post_only_costs() -> None:
    policy = load_policy("pets").policy
    est = Strategy.for_policy(policy).estimate
    assert entry_allowed_by_edge(policy.execution_costs, est.expected_edge, 1_000.0, 10.0,
                                 policy.orders.post_only).allowed


def test_a_winning_signal_raises_the_estimate() -> None:
    strategy = Strategy(StrategyParams(horizon_bars=10))
    prior = strategy.estimate
    signals = _run(strategy, DOWN_UP)
    assert len(signals) == 1 and strategy.outcomes == 1  # scored after horizon_bars
    assert strategy.estimate.win_prob > prior.win_prob
    assert strategy.estimate.expected_edge > prior.expected_edge


def test_a_losing_signal_lowers_the_estimate() -> None:
    # a bottom that turns up long enough to trigger a buy, then falls again: the sell that
    # follows scores the buy as a loss
    closes = DOWN_UP[:72] + [DOWN_UP[71] - 0.5 * i for i in range(1, 30)]
    strategy = Strategy(StrategyParams(horizon_bars=40))
    prior = strategy.estimate
    signals = _run(strategy, closes)
    assert [s.side for _, s in signals] == ["buy", "sell"] and strategy.outcomes == 1
    assert strategy.estimate.win_prob < prior.win_prob
    assert strategy.estimate.expected_edge < prior.expected_edge


def test_next_signal_scores_the_pending_one() -> None:
    strategy = Strategy(StrategyParams(horizon_bars=10_000))
    closes = DOWN_UP + [DOWN_UP[-1] - 1.0 * i for i in range(1, 60)]
    signals = _run(strategy, closes)
    assert [s.side for _, s in signals] == ["buy", "sell"]
    assert strategy.outcomes == 1  # the buy, scored when the sell came; the sell is pending


def test_deterministic() -> None:
    closes = _random_walk(3_000, seed=11)
    a, b = _run(Strategy(), closes), _run(Strategy(), closes)
    assert a == b and len(a) > 10


def test_memory_is_bounded_and_estimates_stay_sane() -> None:
    params = StrategyParams(window=20, horizon_bars=12)
    strategy = Strategy(params)
    signals = _run(strategy, _random_walk(20_000, seed=3))
    assert len(signals) > params.window
    assert strategy.outcomes == params.window
    for _, sig in signals:
        assert 0.0 < sig.win_prob < 1.0 and sig.payoff > 0.0 and math.isfinite(sig.expected_edge)


def test_insane_bars_are_ignored() -> None:
    clean = Strategy()
    dirty = Strategy()
    out_clean, out_dirty = [], []
    for bar in _bars(DOWN_UP):
        out_clean.append(clean.update(bar))
        out_dirty.append(dirty.update(bar))
        junk = dirty.update(Bar(bar.ts_ms, math.nan, math.nan, math.nan, math.nan))
        assert junk.side is None
    assert out_clean == out_dirty


def test_for_policy_scores_over_the_time_exit_horizon() -> None:
    policy = load_policy("futures").policy
    assert Strategy.for_policy(policy).params.horizon_bars == policy.exits.time_exit.max_hold_periods


@pytest.mark.parametrize("changes", [
    {"fast": 26, "slow": 12}, {"fast": 0}, {"momentum_lookback": 0}, {"min_momentum": -0.1},
    {"horizon_bars": 0}, {"window": 0}, {"prior_trades": 0.0}, {"prior_win_prob": 1.0},
    {"prior_avg_loss": 0.0},
])
def test_bad_params_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StrategyParams(**changes)  # type: ignore[arg-type]
