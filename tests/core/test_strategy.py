"""The EMA crossover + momentum signal and its online edge estimate."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import load_policy
from bot.core.costs import entry_allowed_by_edge
from bot.core.market import Bar, IncrementalATR
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


def _atr_of(bps: float, price: float = 100.0, periods: int = 14) -> IncrementalATR:
    """An ATR fed flat bars whose range is `bps` of price."""
    atr = IncrementalATR(periods)
    half = price * bps / 20_000
    for i in range(periods):
        atr.update(Bar(i, price, price + half, price - half, price))
    return atr


def _edge_units(strategy: Strategy) -> float:
    p, win, loss = strategy.units
    return p * win - (1 - p) * loss


NORMAL_BPS, CALM_BPS = 19.0, 2.5  # the testnet's median ATR at vol_bps 15 and 2


def test_prior_trades_in_a_normal_market_with_the_exits_2r_on_1r() -> None:
    policy = load_policy("futures").policy
    est = Strategy.for_policy(policy, atr=_atr_of(NORMAL_BPS)).estimate_at(100.0)
    assert est.side is None
    # M = 19 bps x sqrt(48) = 1.3 %: the exits bind (1 % stop floor, 2R target), as in the old prior
    assert math.isclose(est.expected_move, 0.0019 * math.sqrt(48), rel_tol=1e-9)
    assert math.isclose(est.win_prob, 0.45) and math.isclose(est.payoff, 2.0)
    assert math.isclose(est.expected_edge, 0.45 * 0.02 - 0.55 * 0.01)
    assert kelly_fraction(est.win_prob, est.payoff, policy.position_sizing.kelly_fraction) > 0
    assert entry_allowed_by_edge(policy.execution_costs, est.expected_edge, 1_000.0, NORMAL_BPS, False,
                                 est.expected_move).allowed
    size = size_position(policy, equity=10_000, price=100, atr=0.19, win_prob=est.win_prob, payoff=est.payoff)
    assert size.qty > 0


def test_prior_stays_out_of_a_dead_calm_market_whose_moves_cannot_pay_the_round_trip() -> None:
    policy = load_policy("futures").policy
    est = Strategy.for_policy(policy, atr=_atr_of(CALM_BPS)).estimate_at(100.0)
    move = 0.00025 * math.sqrt(48)
    assert math.isclose(est.expected_move, move, rel_tol=1e-9)
    assert math.isclose(est.expected_edge, 0.45 * 2 * move - 0.55 * 1 * move, rel_tol=1e-9)
    check = entry_allowed_by_edge(policy.execution_costs, est.expected_edge, 1_000.0, CALM_BPS, False,
                                  est.expected_move)
    assert not check.allowed and "expected move" in check.reason
    # the edge alone (no move given) is refused too: 0.06 % against 0.28 %
    assert not entry_allowed_by_edge(policy.execution_costs, est.expected_edge, 1_000.0, CALM_BPS, False).allowed


def test_pets_prior_clears_post_only_costs_in_a_normal_market_only() -> None:
    policy = load_policy("pets").policy
    costs, post_only = policy.execution_costs, policy.orders.post_only
    normal = Strategy.for_policy(policy, atr=_atr_of(NORMAL_BPS)).estimate_at(100.0)
    calm = Strategy.for_policy(policy, atr=_atr_of(CALM_BPS)).estimate_at(100.0)
    assert entry_allowed_by_edge(costs, normal.expected_edge, 1_000.0, NORMAL_BPS, post_only,
                                 normal.expected_move).allowed
    assert not entry_allowed_by_edge(costs, calm.expected_edge, 1_000.0, CALM_BPS, post_only,
                                     calm.expected_move).allowed


@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 200.0), st.floats(0.5, 200.0))
def test_the_edge_grows_with_what_the_market_moves(low_bps: float, high_bps: float) -> None:
    policy = load_policy("futures").policy
    low_bps, high_bps = min(low_bps, high_bps), max(low_bps, high_bps)
    low = Strategy.for_policy(policy, atr=_atr_of(low_bps)).estimate_at(100.0)
    high = Strategy.for_policy(policy, atr=_atr_of(high_bps)).estimate_at(100.0)
    assert low.expected_move <= high.expected_move
    assert low.expected_edge <= high.expected_edge + 1e-15
    # never more than the exits allow: the take profit at the 5 % stop cap
    assert high.expected_edge <= 0.45 * 2 * 0.05 + 1e-12


def test_no_atr_no_edge() -> None:
    est = Strategy.for_policy(load_policy("futures").policy, atr=IncrementalATR(14)).estimate_at(100.0)
    assert est.expected_edge == 0.0 and est.expected_move == 0.0


def test_a_winning_signal_raises_the_estimate() -> None:
    strategy = Strategy(StrategyParams(horizon_bars=10))
    prior = strategy.units
    signals = _run(strategy, DOWN_UP)
    assert len(signals) == 1 and strategy.outcomes == 1  # scored after horizon_bars
    assert strategy.units[0] > prior[0]
    assert _edge_units(strategy) > prior[0] * prior[1] - (1 - prior[0]) * prior[2]


def test_a_losing_signal_lowers_the_estimate() -> None:
    # a bottom that turns up long enough to trigger a buy, then falls again: the sell that
    # follows scores the buy as a loss
    closes = DOWN_UP[:72] + [DOWN_UP[71] - 0.5 * i for i in range(1, 30)]
    strategy = Strategy(StrategyParams(horizon_bars=40))
    prior = strategy.units
    signals = _run(strategy, closes)
    assert [s.side for _, s in signals] == ["buy", "sell"] and strategy.outcomes == 1
    assert strategy.units[0] < prior[0]
    assert _edge_units(strategy) < prior[0] * prior[1] - (1 - prior[0]) * prior[2]


def test_a_signal_is_scored_at_the_exits_stop_in_expected_moves() -> None:
    """With the policy's exits a buy that falls through its stop is a loss of exactly the stop
    distance (in units of the signal's expected move), not wherever the horizon ends."""
    policy = load_policy("futures").policy
    strategy = Strategy.for_policy(policy, atr=_atr_of(200.0, price=80.0))  # the engine's ATR: 2 % of 80
    closes = DOWN_UP[:72]
    fired = _run(strategy, closes)
    assert [s.side for _, s in fired] == ["buy"]
    at, signal = fired[0]
    entry = closes[at]
    stop_pct = 1.5 * 1.6 / entry  # atr_multiplier x ATR (1.6) / entry, inside [1 %, 5 %]
    assert policy.exits.stop_loss.min_pct < stop_pct < policy.exits.stop_loss.max_pct
    assert math.isclose(signal.expected_move, 1.6 / entry * math.sqrt(48))
    top = closes[-1]
    strategy.update(Bar(10_000, top, top, entry * (1 - 2 * stop_pct), entry * (1 - 2 * stop_pct)))
    assert strategy.outcomes == 1
    recorded = strategy.snapshot()["outcomes"][0]
    assert math.isclose(recorded, -stop_pct / signal.expected_move, rel_tol=1e-9)


def test_snapshot_restores_the_measured_record() -> None:
    strategy = Strategy(StrategyParams(window=20, horizon_bars=12))
    _run(strategy, _random_walk(3_000, seed=5))
    again = Strategy(StrategyParams(window=20, horizon_bars=12))
    again.restore(strategy.snapshot())
    assert again.units == pytest.approx(strategy.units) and again.outcomes == strategy.outcomes
    with pytest.raises(ValueError):
        again.restore({"outcomes": [0.1, math.nan]})


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
