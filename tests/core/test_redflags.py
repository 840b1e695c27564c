"""Red flags: each observed flag raises once at its threshold (not below), engages the kill switch
with the flag as reason, flattens, blocks the ramp, and keeps its last check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_engine import POLICIES, rig

from bot.core.engine import CancelAll
from bot.core.events import RED_FLAGS
from bot.core.policy import RedFlags
from bot.core.redflags import CHECKED_BY, CHECKED_FLAGS, OBSERVED_FLAGS, RedFlag, RedFlagMonitor

CONFIG = POLICIES["pets"].red_flags


def test_every_flag_but_gas_is_observed() -> None:
    assert set(RED_FLAGS) - set(OBSERVED_FLAGS) == {"gas_costs_high"}


@pytest.mark.parametrize("flag", CHECKED_FLAGS)
def test_a_failed_check_raises_once_and_a_pass_rearms(flag: str) -> None:
    m = RedFlagMonitor(CONFIG)
    assert m.check(flag, True, "fine", 1) is None
    assert m.check(flag, False, "broken", 2) == RedFlag(flag, "broken")
    assert m.check(flag, False, "still broken", 3) is None
    assert m.check(flag, True, "fine", 4) is None
    assert m.check(flag, False, "broken again", 5) == RedFlag(flag, "broken again")
    last = m.last_checks()[flag]
    assert last is not None and (last.ts_ms, last.ok) == (5, False)


def test_an_unknown_flag_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown red flag"):
        RedFlagMonitor(CONFIG).check("gas_cost", False, "x", 1)


def test_win_rate_is_judged_only_over_a_full_window_and_trips_below_min() -> None:
    window = CONFIG.win_rate_window
    wins = int(window * CONFIG.min_win_rate)  # exactly the minimum: no flag
    m = RedFlagMonitor(CONFIG)
    pnls = [1.0] * wins + [-1.0] * (window - wins)
    assert [m.trade_closed(p, i) for i, p in enumerate(pnls)] == [None] * window
    flag = m.trade_closed(-1.0, window)  # the window drops a win for a loss: below the minimum
    assert flag is not None and flag.flag == "win_rate_low" and "rolling win rate" in flag.detail


def test_losing_trades_before_a_full_window_raise_nothing() -> None:
    m = RedFlagMonitor(CONFIG)
    assert all(m.trade_closed(-1.0, i) is None for i in range(CONFIG.win_rate_window - 1))
    last = m.last_checks()["win_rate_low"]
    assert last is not None and last.ok and "not judged yet" in last.detail


@pytest.mark.parametrize("equity,raised", [(59.99, True), (60.0, False)])
def test_drawdown_over_40pct_trips_above_and_not_at(equity: float, raised: bool) -> None:
    flag = RedFlagMonitor(CONFIG).equity(equity, 100.0, 1)
    assert (flag is not None) is raised
    if flag:
        assert flag.flag == "drawdown_over_40pct"


@given(st.integers(0, 5), st.integers(1, 8))
def test_unauthorized_access_raises_on_the_attempt_past_the_allowance(allowed: int, attempts: int) -> None:
    m = RedFlagMonitor(RedFlags(max_unauthorized_attempts=allowed))
    raised = [i + 1 for i in range(attempts) if m.access_denied("POST /killswitch: bad token", i)]
    assert raised == ([allowed + 1] if attempts > allowed else [])


# A team that allows a few bad tokens (a fumbled paste) sets a window; the figures here are the test's.
WINDOWED = RedFlags(max_unauthorized_attempts=4, unauthorized_window_minutes=10)


def test_the_fifth_denied_request_within_the_window_raises_and_one_spread_past_it_does_not() -> None:
    burst = RedFlagMonitor(WINDOWED)
    raised = [i + 1 for i in range(5) if burst.access_denied("GET /status: bad token", i * 60_000)]
    assert raised == [5]
    spread = RedFlagMonitor(WINDOWED)  # 5 requests, the first 10 min before the fifth: only 4 in the window
    assert not [i for i in range(5) if spread.access_denied("GET /status: bad token", i * 150_000)]
    last = spread.last_checks()["unauthorized_access"]
    assert last is not None and last.ok and last.detail.startswith("4 denied request(s) within 10 min")


@given(st.lists(st.integers(0, 3_600_000), min_size=1, max_size=30), st.integers(0, 4), st.integers(1, 30))
def test_unauthorized_access_counts_a_sliding_window(offsets: list[int], allowed: int, minutes: int) -> None:
    m = RedFlagMonitor(RedFlags(max_unauthorized_attempts=allowed, unauthorized_window_minutes=minutes))
    times = sorted(offsets)
    window = minutes * 60_000
    over = [sum(1 for u in times[: i + 1] if u > t - window) > allowed for i, t in enumerate(times)]
    # raised when the condition begins: over now and not over at the request before
    expected = [i for i, o in enumerate(over) if o and (i == 0 or not over[i - 1])]
    assert [i for i, t in enumerate(times) if m.access_denied("x", t)] == expected


@pytest.mark.parametrize("flag", OBSERVED_FLAGS)
def test_each_flag_engages_the_kill_switch_with_the_flag_as_reason_and_flattens(flag: str) -> None:
    r = rig("pets")
    r.engine.position_qty, r.engine.entry_price = 0.01, r.price  # an open position to flatten
    intents = r.engine.raise_red_flag(RedFlag(flag, "seen in a drill"))
    kill = r.engine.killswitch.status()
    assert kill.engaged and kill.mode == "immediate" and kill.reason == f"red flag {flag}: seen in a drill"
    assert r.named("redflag.raised", flag=flag, detail="seen in a drill")
    assert any(isinstance(i, CancelAll) for i in intents)
    assert r.engine.ramp_state.red_flag == flag


def test_a_drawdown_past_40pct_stops_the_engine_by_itself() -> None:
    r = rig("pets")
    r.engine.wallet = 5_900.0  # 41 % below the 10,000 peak
    r.book()
    assert r.named("redflag.raised", flag="drawdown_over_40pct")
    assert r.engine.killswitch.status().engaged


def test_a_second_red_flag_with_nothing_open_is_confirmed_flat_again() -> None:
    """A drill finding: after a first flag was flattened and confirmed, a later flag re-engaged the
    switch with nothing open and the bot asked for nothing, so no account.flat followed it."""
    r = rig("pets")
    assert any(isinstance(i, CancelAll) for i in r.engine.raise_red_flag(RedFlag("alerts_not_received", "first")))
    second = r.engine.raise_red_flag(RedFlag("monitoring_down", "second"))
    assert any(isinstance(i, CancelAll) for i in second)


def test_every_observed_flag_says_who_checks_it() -> None:
    assert set(CHECKED_BY) == set(OBSERVED_FLAGS)
