"""Exits: bounded ATR stop, R-multiple take profit, stop/TP on bar extremes, time and volatility exits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import load_policy
from bot.core.exits import ExitState, Side, check_exit, plan_exits, stop_distance_pct
from bot.core.market import Bar
from bot.core.policy import Exits, Policy, TimeExit, VolatilityExit

PROFILES = ("futures", "pets")
POLICIES: dict[str, Policy] = {name: load_policy(name).policy for name in PROFILES}
SIDES: tuple[Side, Side] = ("buy", "sell")


def _bar(price: float, high: float | None = None, low: float | None = None, open_: float | None = None,
         ts: int = 0) -> Bar:
    o = price if open_ is None else open_
    return Bar(ts, o, max(o, price) if high is None else high, min(o, price) if low is None else low, price)


def _state(exits: Exits, side: Side = "buy", entry: float = 100.0, atr: float = 1.0) -> ExitState:
    return ExitState.from_plan(plan_exits(side, entry, atr, exits), atr, exits)


# --- plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=400, deadline=None)
@given(side=st.sampled_from(SIDES), entry=st.floats(min_value=1e-3, max_value=1e7),
       atr_frac=st.floats(min_value=0.0, max_value=1.0) | st.just(math.nan))
def test_stop_within_bounds_and_tp_is_r_multiple(profile: str, side: Side, entry: float, atr_frac: float) -> None:
    exits = POLICIES[profile].exits
    sl = exits.stop_loss
    plan = plan_exits(side, entry, entry * atr_frac, exits)
    assert sl.min_pct <= plan.stop_pct <= sl.max_pct
    stop_dist = abs(entry - plan.stop)
    assert sl.min_pct * (1 - 1e-9) <= stop_dist / entry <= sl.max_pct * (1 + 1e-9)
    tp_dist = abs(plan.take_profit - entry)
    assert math.isclose(tp_dist, exits.take_profit.risk_multiple * stop_dist, rel_tol=1e-9)
    assert math.isclose(plan.risk_per_unit, stop_dist, rel_tol=1e-9)
    if side == "buy":
        assert plan.stop < entry < plan.take_profit
    else:
        assert plan.take_profit < entry < plan.stop


@pytest.mark.parametrize("profile", PROFILES)
def test_stop_distance_is_atr_times_multiplier_clamped(profile: str) -> None:
    sl = POLICIES[profile].exits.stop_loss
    entry = 100.0
    mid_atr = (sl.min_pct + sl.max_pct) / 2 * entry / sl.atr_multiplier
    assert math.isclose(stop_distance_pct(entry, mid_atr, sl), sl.atr_multiplier * mid_atr / entry)
    assert stop_distance_pct(entry, 0.0, sl) == sl.min_pct
    assert stop_distance_pct(entry, entry, sl) == sl.max_pct
    assert stop_distance_pct(entry, None, sl) == sl.min_pct
    assert stop_distance_pct(entry, math.nan, sl) == sl.min_pct
    assert stop_distance_pct(entry, -1.0, sl) == sl.min_pct


def test_futures_plan_matches_the_checklist() -> None:
    exits = POLICIES["futures"].exits
    # ATR 1 % of price: stop 1.5 x 1 % = 1.5 %, take profit 2 R = 3 %
    plan = plan_exits("buy", 100.0, 1.0, exits)
    assert math.isclose(plan.stop, 98.5) and math.isclose(plan.take_profit, 103.0)
    short = plan_exits("sell", 100.0, 1.0, exits)
    assert math.isclose(short.stop, 101.5) and math.isclose(short.take_profit, 97.0)


@pytest.mark.parametrize("entry", [0.0, -1.0, math.nan, math.inf])
def test_plan_rejects_an_impossible_entry(entry: float) -> None:
    with pytest.raises(ValueError, match="entry price"):
        plan_exits("buy", entry, 1.0, POLICIES["futures"].exits)


# --- stop and take profit ------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_long_stop_and_take_profit_on_bar_extremes(profile: str) -> None:
    exits = POLICIES[profile].exits
    s = _state(exits)
    assert check_exit(s, _bar(100.0, high=s.take_profit - 1e-9, low=s.stop + 1e-9), 1.0) is None
    sig = check_exit(_state(exits), _bar(100.0, low=s.stop), 1.0)
    assert sig is not None and sig.reason == "stop" and sig.price == s.stop and sig.bars_held == 1
    sig = check_exit(_state(exits), _bar(100.0, high=s.take_profit), 1.0)
    assert sig is not None and sig.reason == "take_profit" and sig.price == s.take_profit


@pytest.mark.parametrize("profile", PROFILES)
def test_short_stop_and_take_profit_on_bar_extremes(profile: str) -> None:
    exits = POLICIES[profile].exits
    s = _state(exits, "sell")
    assert check_exit(s, _bar(100.0, high=s.stop - 1e-9, low=s.take_profit + 1e-9), 1.0) is None
    sig = check_exit(_state(exits, "sell"), _bar(100.0, high=s.stop), 1.0)
    assert sig is not None and sig.reason == "stop" and sig.price == s.stop
    sig = check_exit(_state(exits, "sell"), _bar(100.0, low=s.take_profit), 1.0)
    assert sig is not None and sig.reason == "take_profit" and sig.price == s.take_profit


@pytest.mark.parametrize("side", SIDES)
def test_bar_touching_both_levels_counts_as_stop(side: Side) -> None:
    exits = POLICIES["futures"].exits
    s = _state(exits, side)
    both = _bar(100.0, high=max(s.stop, s.take_profit) + 1, low=min(s.stop, s.take_profit) - 1)
    sig = check_exit(s, both, 1.0)
    assert sig is not None and sig.reason == "stop" and sig.price == s.stop


def test_gap_through_the_stop_exits_at_the_open() -> None:
    exits = POLICIES["futures"].exits
    long = _state(exits, "buy")
    sig = check_exit(long, _bar(95.0, open_=96.0, high=96.0, low=94.0), 1.0)
    assert sig is not None and sig.reason == "stop" and sig.price == 96.0
    short = _state(exits, "sell")
    sig = check_exit(short, _bar(105.0, open_=104.0, high=106.0, low=104.0), 1.0)
    assert sig is not None and sig.reason == "stop" and sig.price == 104.0


def test_price_exit_wins_over_time_and_volatility() -> None:
    exits = POLICIES["futures"].exits
    s = _state(exits)
    s.bars_held = exits.time_exit.max_hold_periods - 1
    sig = check_exit(s, _bar(100.0, low=s.stop), 10.0)
    assert sig is not None and sig.reason == "stop"


# --- time exit -----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_time_exit_exactly_at_max_hold_periods(profile: str) -> None:
    exits = POLICIES[profile].exits
    limit = exits.time_exit.max_hold_periods
    s = _state(exits)
    for i in range(1, limit):
        assert check_exit(s, _bar(100.0, ts=i), 1.0) is None, f"early exit at bar {i} of {limit}"
    assert s.bars_held == limit - 1
    sig = check_exit(s, _bar(100.5, ts=limit), 1.0)
    assert sig is not None and sig.reason == "time" and sig.bars_held == limit and sig.price == 100.5


def test_futures_time_exit_is_48_bars() -> None:
    assert POLICIES["futures"].exits.time_exit.max_hold_periods == 48


def test_time_exit_disabled_holds_on() -> None:
    base = POLICIES["futures"].exits
    exits = base.model_copy(update={"time_exit": TimeExit(enabled=False, max_hold_periods=48)})
    s = _state(exits)
    for i in range(1, 200):
        assert check_exit(s, _bar(100.0, ts=i), 1.0) is None


def test_insane_bar_counts_for_time_but_not_for_prices() -> None:
    exits = POLICIES["futures"].exits
    s = _state(exits)
    s.bars_held = exits.time_exit.max_hold_periods - 2
    assert check_exit(s, Bar(1, math.nan, math.nan, math.nan, math.nan), 1.0) is None
    sig = check_exit(s, Bar(2, 100.0, 100.0, 0.0, 100.0), 1.0)  # low 0: not sane, not judged as a stop
    assert sig is not None and sig.reason == "time" and sig.price == s.stop


# --- volatility exit -----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("entry_atr", [1.0, 0.37, 123.456])
def test_volatility_expansion_boundary(profile: str, entry_atr: float) -> None:
    exits = POLICIES[profile].exits
    at = exits.volatility_exit.expansion_multiple * entry_atr
    sig = check_exit(_state(exits, atr=entry_atr), _bar(100.0), at)
    assert sig is not None and sig.reason == "volatility"
    assert check_exit(_state(exits, atr=entry_atr), _bar(100.0), math.nextafter(at, 0.0)) is None


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("entry_atr", [1.0, 0.37, 123.456])
def test_volatility_contraction_boundary(profile: str, entry_atr: float) -> None:
    exits = POLICIES[profile].exits
    at = exits.volatility_exit.contraction_multiple * entry_atr
    sig = check_exit(_state(exits, atr=entry_atr), _bar(100.0), at)
    assert sig is not None and sig.reason == "volatility"
    assert check_exit(_state(exits, atr=entry_atr), _bar(100.0), math.nextafter(at, math.inf)) is None


def test_futures_volatility_multiples_are_two_and_a_half() -> None:
    vol = POLICIES["futures"].exits.volatility_exit
    assert (vol.expansion_multiple, vol.contraction_multiple) == (2.0, 0.5)
    exits = POLICIES["futures"].exits
    assert check_exit(_state(exits, atr=1.0), _bar(100.0), 2.0) is not None
    assert check_exit(_state(exits, atr=1.0), _bar(100.0), 1.99) is None


@pytest.mark.parametrize("atr", [None, math.nan, math.inf])
def test_unknown_atr_skips_the_volatility_exit(atr: float | None) -> None:
    exits = POLICIES["futures"].exits
    assert check_exit(_state(exits), _bar(100.0), atr) is None


def test_volatility_exit_disabled() -> None:
    base = POLICIES["futures"].exits
    off = VolatilityExit(enabled=False, expansion_multiple=2.0, contraction_multiple=0.5)
    exits = base.model_copy(update={"volatility_exit": off})
    assert check_exit(_state(exits), _bar(100.0), 5.0) is None


# --- a saved plan (restart) ------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("entry", [100.0, 0.5])  # a coin priced below 1 is a valid plan
def test_saved_plan_round_trips(side: Side, entry: float) -> None:
    exits = POLICIES["futures"].exits
    state = _state(exits, side, entry=entry, atr=entry / 100)
    back = ExitState.from_dict(state.to_dict(), exits)
    assert (back.side, back.entry, back.stop, back.take_profit) == (state.side, state.entry, state.stop,
                                                                     state.take_profit)


@pytest.mark.parametrize("field", ["entry", "stop", "take_profit"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_saved_plan_with_an_unusable_price_is_refused(field: str, bad: float) -> None:
    exits = POLICIES["futures"].exits
    data = _state(exits).to_dict() | {field: bad}
    with pytest.raises(ValueError, match=f"{field} .* is not a finite positive price"):
        ExitState.from_dict(data, exits)


@pytest.mark.parametrize("side", SIDES)
def test_saved_plan_with_the_stop_at_entry_is_refused(side: Side) -> None:
    exits = POLICIES["futures"].exits
    data = _state(exits, side).to_dict()
    data["stop"] = data["entry"]
    with pytest.raises(ValueError, match="wrong side of entry"):
        ExitState.from_dict(data, exits)


@pytest.mark.parametrize("side", ["long", "", "BUY"])
def test_saved_plan_with_a_side_other_than_buy_or_sell_is_refused(side: str) -> None:
    # a misread side would turn a long's stop into a short's: refuse the plan, plan afresh
    exits = POLICIES["futures"].exits
    data = _state(exits).to_dict() | {"side": side}
    with pytest.raises(ValueError, match="is not buy or sell"):
        ExitState.from_dict(data, exits)
