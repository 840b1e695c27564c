"""Circuit breakers and the board: every tier trips at its threshold and not 0.01 below it,
under both profiles, with thresholds read from the policy."""

from __future__ import annotations

import json
import math

import pytest
from breaker_support import DAY, MINUTE, POLICIES, PROFILES, T0, Rig, bar, book, rig

from bot.core.breakers.base import (
    BarClosed,
    BookUpdate,
    Breaker,
    BreakerInput,
    BreakerVerdict,
    EquityUpdate,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    TimerTick,
    TradeClosed,
)
from bot.core.breakers.board import BreakerBoard
from bot.core.breakers.drawdown import IntradayDrawdown
from bot.core.breakers.volatility import PriceMoveBreaker
from bot.core.market import Bar, BookTick
from bot.core.policy import Policy

BELOW = 0.01  # "just below" in the measured unit (%, bps, x, ms)
TIER_LEVEL = {"warning_pct": "warning", "threshold_pct": "critical", "emergency_pct": "emergency"}


def _tier_cases(peak: bool) -> list[tuple[str, str]]:
    out = []
    for profile in PROFILES:
        dd = POLICIES[profile].circuit_breakers.drawdown
        src = dd.peak if peak else dd
        if peak and not dd.peak.enabled:
            continue
        out += [(profile, t) for t in TIER_LEVEL if getattr(src, t) is not None]
    return out


def _level_events(r: Rig, check: str, level: str) -> list[str]:
    return [e.name for e in r.events if e.name in ("breaker.warning", "breaker.tripped")
            and e.fields["breaker"] == "drawdown" and e.fields["check"] == check and e.fields["level"] == level]


# --- drawdown ------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "tier"), _tier_cases(peak=False))
def test_intraday_drawdown_tier_trips_at_threshold_not_below(profile: str, tier: str) -> None:
    policy = POLICIES[profile]
    dd = policy.circuit_breakers.drawdown
    pct = getattr(dd, tier)
    level = TIER_LEVEL[tier]

    below = rig(policy)
    below.equity(T0, 10_000.0)
    below.equity(T0 + 1000, 10_000.0 * (1 - (pct - BELOW) / 100))
    assert _level_events(below, "intraday", level) == []

    at = rig(policy)
    at.equity(T0, 10_000.0)
    at.equity(T0 + 1000, 10_000.0 * (1 - pct / 100))  # unrealised: no trade closed at all
    assert _level_events(at, "intraday", level) == ["breaker.warning" if level == "warning" else "breaker.tripped"]
    status = at.board.status()
    if level == "warning":
        assert status.state == "active"
    else:
        tripped = at.named("breaker.tripped", breaker="drawdown", check="intraday", level=level)[0]
        want = dd.emergency_action if level == "emergency" else dd.action
        assert tripped.fields["action"] == want
        assert tripped.fields["threshold"] == pct
        assert status.state == "halted"
        assert status.flatten_requested == (want == "flatten_and_halt")
        halted = at.named("trading.halted")
        assert len(halted) == 1 and halted[0].fields["requires_manual_resume"] == dd.require_manual_resume


@pytest.mark.parametrize(("profile", "tier"), _tier_cases(peak=True))
def test_peak_drawdown_tier_trips_at_threshold_not_below(profile: str, tier: str) -> None:
    policy = POLICIES[profile]
    peak = policy.circuit_breakers.drawdown.peak
    pct = getattr(peak, tier)
    level = TIER_LEVEL[tier]
    # The drop happens at the first update of a new UTC day: intraday sees 0 %, peak sees pct.
    below = rig(policy)
    below.equity(T0, 10_000.0)
    below.equity(T0 + DAY, 10_000.0 * (1 - (pct - BELOW) / 100))
    assert _level_events(below, "peak", level) == []
    at = rig(policy)
    at.equity(T0, 10_000.0)
    at.equity(T0 + DAY, 10_000.0 * (1 - pct / 100))
    assert len(_level_events(at, "peak", level)) == 1
    assert _level_events(at, "intraday", "warning") == [] and _level_events(at, "intraday", "critical") == []


def test_peak_drawdown_disabled_under_futures() -> None:
    policy = POLICIES["futures"]
    assert not policy.circuit_breakers.drawdown.peak.enabled
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + DAY, 5_000.0)  # -50 % overnight: no intraday loss, no peak check
    assert r.board.status().state == "active"
    assert all(b.check != "peak" for b in r.board.breakers)


@pytest.mark.parametrize("profile", PROFILES)
def test_unrealised_drawdown_trips_without_any_closed_trade(profile: str) -> None:
    policy = POLICIES[profile]
    r = rig(policy)
    thr = policy.circuit_breakers.drawdown.threshold_pct
    r.equity(T0, 10_000.0)
    for step in range(1, 11):  # equity slides tick by tick as an open position loses
        r.equity(T0 + step * 1000, 10_000.0 * (1 - thr * step / 10 / 100))
    assert r.named("breaker.tripped", breaker="drawdown", check="intraday", level="critical")
    assert r.board.status().state == "halted"


@pytest.mark.parametrize("profile", PROFILES)
def test_intraday_mark_is_the_days_high_not_the_run_start(profile: str) -> None:
    policy = POLICIES[profile]
    thr = policy.circuit_breakers.drawdown.threshold_pct
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 11_000.0)
    r.equity(T0 + 2000, 11_000.0 * (1 - thr / 100))  # still above the run start
    assert r.board.status().state == "halted"


@pytest.mark.parametrize("profile", PROFILES)
def test_day_peak_resets_at_utc_midnight(profile: str) -> None:
    policy = POLICIES[profile]
    thr = policy.circuit_breakers.drawdown.threshold_pct
    warn = policy.circuit_breakers.drawdown.warning_pct or thr
    r = rig(policy)
    day_start = (T0 // DAY) * DAY
    r.equity(day_start + DAY - 3_600_000, 10_000.0)
    yesterday_low = 10_000.0 * (1 - (warn - 0.5) / 100)
    r.equity(day_start + DAY - 1, yesterday_low)  # 23:59:59.999, below warning
    r.equity(day_start + DAY, yesterday_low)  # 00:00: the day's mark restarts here
    r.equity(day_start + DAY + 1000, yesterday_low * (1 - (thr - BELOW) / 100))
    # from yesterday's peak this is > thr; from today's mark it is just below: no trip
    assert r.board.status().state == "active"
    r.equity(day_start + DAY + 2000, yesterday_low * (1 - thr / 100))
    assert r.board.status().state == "halted"
    snap = r.board.snapshot()["breakers"]["drawdown.intraday"]
    assert snap["peak"] == yesterday_low and snap["day"] == day_start // DAY + 1


@pytest.mark.parametrize("profile", PROFILES)
def test_drawdown_cooldown_refuses_resume_at_59_minutes_accepts_at_60(profile: str) -> None:
    policy = POLICIES[profile]
    dd = policy.circuit_breakers.drawdown
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 10_000.0 * (1 - dd.threshold_pct / 100))
    tripped_at = T0 + 1000
    cooldown = int(dd.cooldown_minutes * MINUTE)
    early = r.board.manual_resume("ops", tripped_at + cooldown - MINUTE)
    assert not early.accepted
    assert "drawdown.intraday" in early.reason and "1m00s left" in early.reason
    assert r.named("trading.resumed") == [] and r.board.status().state == "halted"
    r.at(tripped_at + cooldown)
    ok = r.board.manual_resume("ops", tripped_at + cooldown)
    assert ok.accepted, ok.reason
    assert r.board.status().state == "active"
    assert r.named("trading.resumed", by="operator")
    assert r.named("breaker.reset", breaker="drawdown", by="operator")


def test_a_manual_reset_inside_the_cooldown_is_refused_and_keeps_the_trip() -> None:
    policy = POLICIES["futures"]
    dd = policy.circuit_breakers.drawdown
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 10_000.0 * (1 - dd.threshold_pct / 100))
    (check,) = [b for b in r.board.breakers if b.key == "drawdown.intraday"]
    early = T0 + 1000 + int(dd.cooldown_minutes * MINUTE) - MINUTE
    ok, why = check.manual_reset(early)
    assert (ok, why.startswith("drawdown.intraday: cooldown has 1m00s left")) == (False, True)
    assert check.latched and check.verdict.level == "critical"


def _with_drawdown(policy: Policy, **changes: object) -> Policy:
    cb = policy.circuit_breakers
    return policy.model_copy(update={"circuit_breakers": cb.model_copy(
        update={"drawdown": cb.drawdown.model_copy(update=changes)})})


def test_drawdown_halt_lifts_by_itself_after_cooldown_when_no_manual_resume() -> None:
    policy = _with_drawdown(POLICIES["futures"], require_manual_resume=False)
    dd = policy.circuit_breakers.drawdown
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 10_000.0 * (1 - dd.threshold_pct / 100))
    assert r.board.status().state == "halted" and not r.board.status().requires_manual_resume
    r.equity(T0 + 2000, 10_000.0)  # recovered, but the trip holds until its cooldown has passed
    until = T0 + 1000 + int(dd.cooldown_minutes * MINUTE)
    r.board.observe(TimerTick(r.at(until - 1)))
    assert r.board.status().state == "halted"
    r.board.observe(TimerTick(r.at(until)))
    assert r.board.status().state == "active"
    assert r.named("breaker.reset", breaker="drawdown", check="intraday", by="cooldown")
    assert r.named("trading.resumed", by="cooldown")


def test_without_a_warning_tier_an_acknowledged_drawdown_is_reported_against_the_threshold() -> None:
    """warning_pct may be left out; the tier an operator acknowledged is then reported as a warning
    at threshold_pct (there is no warning threshold to name), and trading goes on."""
    policy = _with_drawdown(POLICIES["futures"], warning_pct=None)
    dd = policy.circuit_breakers.drawdown
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 10_000.0 * (1 - dd.threshold_pct / 100))
    later = r.at(T0 + 1000 + int(dd.cooldown_minutes * MINUTE))
    assert r.board.manual_resume("ops", later).accepted
    r.events.clear()
    r.equity(later + 1, 10_000.0 * (1 - dd.threshold_pct / 100))
    assert r.board.status().state == "active"
    (warning,) = r.named("breaker.warning", breaker="drawdown", check="intraday")
    assert warning.fields["threshold"] == dd.threshold_pct
    assert r.named("trading.halted") == []


def test_drawdown_after_operator_resume_rearms_and_escalates() -> None:
    policy = POLICIES["futures"]
    dd = policy.circuit_breakers.drawdown
    assert dd.emergency_pct is not None
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 10_000.0 * (1 - dd.threshold_pct / 100))
    later = T0 + 1000 + int(dd.cooldown_minutes * MINUTE)
    r.at(later)
    assert r.board.manual_resume("ops", later).accepted
    r.equity(later + 1, 10_000.0 * (1 - dd.threshold_pct / 100))  # acknowledged: no re-trip
    assert r.board.status().state == "active"
    r.equity(later + 2, 10_000.0 * (1 - dd.emergency_pct / 100))  # deeper tier trips at once
    assert r.board.status().state == "halted" and r.board.status().flatten_requested


# --- consecutive losses --------------------------------------------------------------------


def _loss(r: Rig, ts: int) -> None:
    r.board.observe(TradeClosed(r.at(ts), -10.0))


@pytest.mark.parametrize("profile", PROFILES)
def test_loss_streak_progression(profile: str) -> None:
    policy = POLICIES[profile]
    cl = policy.circuit_breakers.consecutive_losses
    steps = {s.losses: s.size_multiplier for s in cl.size_reduction}
    r = rig(policy)
    factor = 1.0
    for n in range(1, cl.max_consecutive_losses):
        _loss(r, T0 + n * MINUTE)
        factor = steps.get(n, factor)
        status = r.board.status()
        assert status.size_factor == factor, n
        assert status.state == ("reduced" if factor < 1 else "active")
    assert [e.fields["factor"] for e in r.named("sizing.reduced")] == [s.size_multiplier for s in cl.size_reduction]
    assert r.named("trading.halted") == []
    _loss(r, T0 + cl.max_consecutive_losses * MINUTE)
    status = r.board.status()
    assert status.state == "halted" and status.requires_manual_resume == cl.require_manual_resume
    tripped = r.named("breaker.tripped", breaker="consecutive_losses")
    assert len(tripped) == 1 and tripped[0].fields["value"] == cl.max_consecutive_losses
    assert tripped[0].fields["action"] == cl.action


def test_loss_streak_futures_values() -> None:
    r = rig(POLICIES["futures"])
    factors = []
    for n in range(1, 6):
        _loss(r, T0 + n)
        factors.append((r.board.status().state, r.board.status().size_factor))
    assert factors[2:] == [("reduced", 0.5), ("reduced", 0.25), ("halted", 1.0)]


def test_loss_streak_pets_halts_at_three() -> None:
    r = rig(POLICIES["pets"])
    for n in range(1, 4):
        _loss(r, T0 + n)
    assert [s for s in [r.board.status().state]] == ["halted"]
    assert r.named("sizing.reduced") == []


@pytest.mark.parametrize("profile", PROFILES)
def test_win_resets_streak_and_breakeven_leaves_it(profile: str) -> None:
    policy = POLICIES[profile]
    cl = policy.circuit_breakers.consecutive_losses
    r = rig(policy)
    for n in range(cl.max_consecutive_losses - 1):
        _loss(r, T0 + n)
    r.board.observe(TradeClosed(r.at(T0 + 100), 0.0))  # break-even: streak unchanged
    assert r.board.snapshot()["breakers"]["consecutive_losses.streak"]["count"] == cl.max_consecutive_losses - 1
    r.board.observe(TradeClosed(r.at(T0 + 200), 5.0))  # a win resets
    assert r.board.status().size_factor == 1.0 and r.board.status().state == "active"
    for n in range(cl.max_consecutive_losses - 1):
        _loss(r, T0 + 300 + n)
    assert r.board.status().state != "halted"
    if cl.size_reduction:
        assert r.named("breaker.reset", breaker="consecutive_losses")


def test_loss_halt_lifts_by_itself_after_cooldown_when_no_manual_resume() -> None:
    policy = POLICIES["futures"]
    cl = policy.circuit_breakers.consecutive_losses
    assert cl.require_manual_resume is False
    r = rig(policy)
    for n in range(cl.max_consecutive_losses):
        _loss(r, T0 + n)
    tripped_at = T0 + cl.max_consecutive_losses - 1
    until = tripped_at + int(cl.cooldown_minutes * MINUTE)
    r.board.observe(TimerTick(r.at(until - 1)))
    assert r.board.status().state == "halted"
    r.board.observe(TimerTick(r.at(until)))
    assert r.board.status().state == "active" and r.board.status().size_factor == 1.0
    assert r.named("breaker.reset", breaker="consecutive_losses", by="cooldown")
    assert r.named("trading.resumed", by="cooldown")
    _loss(r, until + 1)  # the streak restarted from zero
    assert r.board.status().state == "active"


def test_loss_halt_lifts_on_any_input_after_cooldown() -> None:
    policy = POLICIES["futures"]
    cl = policy.circuit_breakers.consecutive_losses
    r = rig(policy)
    for _ in range(cl.max_consecutive_losses):
        _loss(r, T0)
    r.board.observe(book(r.at(T0 + int(cl.cooldown_minutes * MINUTE)), 1.0))
    assert r.board.status().state == "active"


def test_loss_halt_pets_needs_manual_reset_after_cooldown() -> None:
    policy = POLICIES["pets"]
    cl = policy.circuit_breakers.consecutive_losses
    r = rig(policy)
    for _ in range(cl.max_consecutive_losses):
        _loss(r, T0)
    until = T0 + int(cl.cooldown_minutes * MINUTE)
    r.board.observe(TimerTick(r.at(until + DAY)))
    assert r.board.status().state == "halted"
    refused = rig(policy)
    for _ in range(cl.max_consecutive_losses):
        _loss(refused, T0)
    assert not refused.board.manual_resume("ops", until - 1).accepted
    assert r.board.manual_resume("ops", until + DAY).accepted
    assert r.board.status().state == "active"


# --- volatility ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_spread_warning_and_pause_at_threshold_not_below(profile: str) -> None:
    policy = POLICIES[profile]
    sp = policy.circuit_breakers.volatility.spread
    assert sp.warning_bps is not None
    r = rig(policy)
    r.board.observe(book(T0, sp.warning_bps - BELOW))
    assert r.events == []
    r.board.observe(book(T0 + 1, sp.warning_bps))
    assert r.names() == ["breaker.warning"] and r.events[0].fields["check"] == "spread"
    r.board.observe(book(T0 + 2, sp.max_spread_bps - BELOW))
    assert r.named("breaker.tripped") == []
    r.board.observe(book(T0 + 3, sp.max_spread_bps))
    assert r.board.status().state == "paused"
    assert r.named("breaker.tripped", breaker="volatility", check="spread", action=sp.action)
    assert r.named("trading.paused")
    r.board.observe(book(T0 + 4, sp.max_spread_bps * 2))  # still wide: no new events
    assert len(r.named("trading.paused")) == 1 and len(r.named("breaker.tripped")) == 1
    r.board.observe(book(T0 + 5, 1.0))  # back within limits: lifts by itself
    assert r.board.status().state == "active"
    assert r.named("trading.resumed", by="cooldown") and r.named("breaker.reset", check="spread")


def _atr_rig(policy_name: str) -> tuple[Rig, int]:
    r = rig(POLICIES[policy_name])
    atr = POLICIES[policy_name].circuit_breakers.volatility.atr
    ts = T0
    for _ in range(atr.atr_periods + atr.baseline_periods):
        ts += 5 * MINUTE
        r.board.observe(bar(ts, 100.0, 1.0))  # true range 1.0: ATR and baseline = 1.0
    return r, ts


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("offset", [-BELOW, 0.0])
def test_atr_spike_trips_at_threshold_not_below(profile: str, offset: float) -> None:
    atr = POLICIES[profile].circuit_breakers.volatility.atr
    r, ts = _atr_rig(profile)
    assert r.events == []
    ratio = atr.spike_threshold + offset
    # Wilder: new ATR = 1 + (tr - 1) / n; choose tr so that new ATR / baseline(1.0) == ratio
    tr = 1.0 + (ratio - 1.0) * atr.atr_periods
    r.board.observe(bar(ts + 5 * MINUTE, 100.0, tr))
    tripped = r.named("breaker.tripped", breaker="volatility", check="atr")
    if offset < 0:
        assert tripped == [] and r.board.status().state == "active"
    else:
        assert len(tripped) == 1 and tripped[0].fields["value"] == pytest.approx(ratio)
        assert r.board.status().state == "paused"


def test_atr_spike_pause_lifts_when_ratio_back_below() -> None:
    atr = POLICIES["futures"].circuit_breakers.volatility.atr
    r, ts = _atr_rig("futures")
    r.board.observe(bar(ts + 1, 100.0, 1.0 + atr.spike_threshold * atr.atr_periods))
    assert r.board.status().state == "paused"
    for k in range(2, 200):
        r.board.observe(bar(ts + k, 100.0, 1.0))
        if r.board.status().state == "active":
            break
    assert r.board.status().state == "active" and r.named("trading.resumed")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("offset", [-BELOW, 0.0])
def test_price_move_halts_at_threshold_not_below(profile: str, offset: float) -> None:
    pm = POLICIES[profile].circuit_breakers.volatility.price_move
    r = rig(POLICIES[profile])
    r.board.observe(bar(T0, 100.0))
    r.board.observe(bar(T0 + 5 * MINUTE, 100.0 * (1 - (pm.max_move_pct + offset) / 100)))
    if offset < 0:
        assert r.board.status().state == "active"
    else:
        assert r.board.status().state == "halted"
        assert r.named("breaker.tripped", check="price_move", action=pm.action)
        assert r.board.status().requires_manual_resume == pm.require_manual_resume
        r.board.observe(bar(T0 + 10 * MINUTE, 100.0 * (1 - (pm.max_move_pct + offset) / 100)))
        assert r.board.status().state == "halted"  # latched until an operator resumes


# --- latency -------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_websocket_lag_pauses_at_threshold_not_below_and_lifts(profile: str) -> None:
    ws = POLICIES[profile].circuit_breakers.latency.websocket
    limit = ws.max_lag_seconds * 1000
    r = rig(POLICIES[profile])
    r.board.observe(FeedLag(T0, limit - BELOW))
    assert r.board.status().state == "active"
    r.board.observe(FeedLag(T0 + 1, limit))
    assert r.board.status().state == "paused"
    assert r.named("breaker.tripped", breaker="latency", check="websocket", action=ws.action)
    r.board.observe(FeedLag(T0 + 2, 10.0))
    assert r.board.status().state == "active" and r.named("trading.resumed")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("pct", ["p95", "p99"])
@pytest.mark.parametrize("offset", [-BELOW, 0.0])
def test_inference_percentile_trips_at_threshold_not_below(profile: str, pct: str, offset: float) -> None:
    inf = POLICIES[profile].circuit_breakers.latency.inference
    r = rig(POLICIES[profile])
    n = inf.window
    if pct == "p95":
        samples = [inf.p95_ms + offset] * n
    else:  # p99 at the limit while p95 stays low: the slowest 1 % of the window is slow
        slow = n - math.ceil(0.99 * n) + 1
        samples = [1.0] * (n - slow) + [inf.p99_ms + offset] * slow
    for k, ms in enumerate(samples):
        r.board.observe(InferenceTiming(T0 + k, ms))
    tripped = r.named("breaker.tripped", breaker="latency", check="inference")
    if offset < 0:
        assert tripped == [] and r.board.status().state == "active"
    else:
        assert tripped and tripped[-1].fields["threshold"] == getattr(inf, f"{pct}_ms")
        assert r.board.status().state == "paused"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", ["placement", "fill"])
def test_order_latency_backoff_at_threshold_not_below(profile: str, kind: str) -> None:
    lat = POLICIES[profile].circuit_breakers.latency
    limit = getattr(lat, f"order_{kind}").max_ms
    bo = lat.backoff
    r = rig(POLICIES[profile])
    r.board.observe(OrderLatency(T0, kind, limit - BELOW))  # type: ignore[arg-type]
    assert r.board.status().entries_allowed_at_ms == 0 and r.events == []
    expected = []
    ts = T0
    for n in range(12):
        ts += 1000
        status = r.board.observe(OrderLatency(ts, kind, limit))  # type: ignore[arg-type]
        expected.append(ts + int(min(bo.initial_ms * bo.multiplier ** n, bo.max_ms)))
        assert status.entries_allowed_at_ms == max(expected)
    assert status.state == "active"  # backoff delays entries; it does not pause the board
    assert len(r.named("breaker.tripped", check=f"order_{kind}", action="backoff")) == 1
    r.board.observe(OrderLatency(ts + 1, kind, 1.0))  # type: ignore[arg-type]  # healthy again: lifts, n resets
    assert r.named("breaker.reset", check=f"order_{kind}")
    later = ts + 10 * bo.max_ms
    after = r.board.observe(OrderLatency(int(later), kind, limit))  # type: ignore[arg-type]
    assert after.entries_allowed_at_ms == int(later) + int(bo.initial_ms)


# --- bad input, fail closed ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    EquityUpdate(T0, math.nan),
    EquityUpdate(T0, math.inf),
    TradeClosed(T0, math.nan),
    BookUpdate(BookTick(T0, -1.0, 100.0)),
    BookUpdate(BookTick(T0, 101.0, 100.0)),
    BookUpdate(BookTick(T0, math.nan, 100.0)),
    BarClosed(Bar(T0, 100.0, 101.0, 99.0, math.nan)),
    BarClosed(Bar(T0, -100.0, 101.0, 99.0, 100.0)),
    FeedLag(T0, -5.0),
    InferenceTiming(T0, math.nan),
    OrderLatency(T0, "placement", math.inf),
])
@pytest.mark.parametrize("profile", PROFILES)
def test_one_bad_input_is_rejected_and_counted_not_a_halt(bad: object, profile: str) -> None:
    r = rig(POLICIES[profile])
    r.equity(T0, 10_000.0)
    r.board.observe(bar(T0, 100.0))
    status = r.board.observe(bad)  # type: ignore[arg-type]
    assert status.state == "active" and status.rejected_inputs == 1 and status.last_rejection
    assert r.events == []
    r.equity(T0 + 1, 10_000.0)  # and the board goes on judging
    assert r.board.status().state == "active"


@pytest.mark.parametrize("profile", PROFILES)
def test_exception_in_breaker_arithmetic_halts_fail_closed(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: IntradayDrawdown, peak: float, equity: float) -> float:
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(IntradayDrawdown, "drawdown_pct", boom)
    r = rig(POLICIES[profile])
    r.equity(T0, 10_000.0)
    status = r.board.status()
    assert status.state == "halted" and status.requires_manual_resume
    assert status.reasons[0].startswith("risk arithmetic failed in drawdown: ZeroDivisionError: injected")
    halted = r.named("trading.halted")
    assert len(halted) == 1 and halted[0].fields["requires_manual_resume"] is True
    r.equity(T0 + 1, 10_000.0)  # still failing: still halted, no duplicate events
    assert len(r.named("trading.halted")) == 1
    monkeypatch.undo()
    r.board.observe(TimerTick(r.at(T0 + DAY)))
    assert r.board.status().state == "halted"  # never lifts by itself
    assert r.board.manual_resume("ops", T0 + DAY).accepted
    assert r.board.status().state == "active"


def test_non_finite_result_of_breaker_arithmetic_halts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PriceMoveBreaker, "move_pct", lambda self, prev, close: math.nan)
    r = rig(POLICIES["futures"])
    r.board.observe(bar(T0, 100.0))
    r.board.observe(bar(T0 + 1, 101.0))
    assert r.board.status().state == "halted"
    assert "risk arithmetic failed in volatility" in r.board.status().reasons[0]


class _NanValue(Breaker):
    """A breaker whose measure came out NaN while its threshold is sane."""

    name, check = "volatility", "atr"
    inputs: tuple[type, ...] = (EquityUpdate,)

    def __init__(self) -> None:
        super().__init__(2.0)

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        self.verdict = BreakerVerdict(self.name, self.check, "warning", math.nan, 2.0)
        return self.verdict


def test_a_verdict_with_a_non_finite_value_halts_fail_closed() -> None:
    r = rig(POLICIES["futures"])
    r.board = BreakerBoard(r.policy, r.bus, r.clock, breakers=[_NanValue()])
    status = r.board.observe(EquityUpdate(r.at(T0), 10_000.0))
    assert status.state == "halted" and status.requires_manual_resume
    assert status.reasons[0].startswith("risk arithmetic failed in volatility: ArithmeticError: non-finite")
    assert r.named("breaker.warning") == []  # the NaN is never reported as a measure


class _OverflowingBackoff(Breaker):
    """An order-latency backoff whose delay overflowed to infinity: the board cannot turn
    'entries allowed at' into a time. That is the board's own arithmetic failing, not the breaker's."""

    name, check = "latency", "order_placement"
    inputs: tuple[type, ...] = (OrderLatency,)

    def __init__(self) -> None:
        super().__init__(500.0)
        self._since = 0
        self._delay_ms = 0.0

    @property
    def entries_allowed_at_ms(self) -> int:
        return int(self._since + self._delay_ms)

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        assert isinstance(x, OrderLatency)
        self._since, self._delay_ms = x.ts_ms, math.inf
        self.verdict = BreakerVerdict(self.name, self.check, "critical", x.ms, 500.0, action="backoff")
        return self.verdict


def test_the_boards_own_arithmetic_failing_halts_for_an_operator_without_a_flatten() -> None:
    r = rig(POLICIES["futures"])
    r.board = BreakerBoard(r.policy, r.bus, r.clock, breakers=[_OverflowingBackoff()])
    status = r.board.observe(OrderLatency(r.at(T0), "placement", 900.0))
    assert status.state == "halted" and status.requires_manual_resume
    assert not status.flatten_requested  # it stops new risk; closing positions is not its call
    assert status.reasons == ("risk arithmetic failed in board: OverflowError: cannot convert float infinity "
                              "to integer",)
    (halted,) = r.named("trading.halted")
    assert halted.fields["requires_manual_resume"] is True


class _OverflowOnce(_OverflowingBackoff):
    """The overflow of _OverflowingBackoff on the first report only; the next one is sane again."""

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        assert isinstance(x, OrderLatency)
        if self._delay_ms == 0.0:
            return super().observe(x)
        self._since, self._delay_ms = x.ts_ms, 0.0
        self.verdict = BreakerVerdict(self.name, self.check, "ok", x.ms, 500.0)
        return self.verdict


def test_the_boards_own_arithmetic_failing_holds_until_an_operator_resumes() -> None:
    r = rig(POLICIES["futures"])
    r.board = BreakerBoard(r.policy, r.bus, r.clock, breakers=[_OverflowOnce()])
    r.board.observe(OrderLatency(r.at(T0), "placement", 900.0))
    status = r.board.observe(OrderLatency(r.at(T0 + 1000), "placement", 100.0))  # sane again
    assert status.state == "halted" and status.requires_manual_resume  # it does not lift by itself
    assert r.named("trading.resumed") == []
    result = r.board.manual_resume("ops", r.at(T0 + 2000))
    assert result.accepted and result.status.state == "active"
    assert [e.fields["by"] for e in r.named("trading.resumed")] == ["operator"]


class _NanAtDeadline(Breaker):
    """A check whose auto-lift at its deadline comes out NaN (the timer path of the board)."""

    name, check = "volatility", "atr"
    inputs: tuple[type, ...] = (EquityUpdate,)

    def __init__(self, deadline_ms: int) -> None:
        super().__init__(2.0)
        self._deadline = deadline_ms

    @property
    def deadline_ms(self) -> int | None:
        return self._deadline

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        if isinstance(x, TimerTick):
            self.verdict = BreakerVerdict(self.name, self.check, "warning", math.nan, 2.0)
            return self.verdict
        return None


def test_a_non_finite_verdict_at_a_deadline_halts_fail_closed() -> None:
    r = rig(POLICIES["futures"])
    r.board = BreakerBoard(r.policy, r.bus, r.clock, breakers=[_NanAtDeadline(r.at(T0) + 1000)])
    status = r.board.observe(EquityUpdate(r.at(T0 + 2000), 10_000.0))
    assert status.state == "halted" and status.requires_manual_resume
    assert status.reasons[0].startswith("risk arithmetic failed in volatility: ArithmeticError: non-finite")
    assert r.named("breaker.warning") == []


class _NanOnReset(Breaker):
    """A latched check whose manual reset leaves a NaN measure behind."""

    name, check = "volatility", "atr"
    inputs: tuple[type, ...] = (EquityUpdate,)

    def __init__(self) -> None:
        super().__init__(2.0)

    @property
    def latched(self) -> bool:
        return self.verdict.action is not None

    def observe(self, x: BreakerInput) -> BreakerVerdict | None:
        self.verdict = BreakerVerdict(self.name, self.check, "critical", 3.0, 2.0, action="halt_trading",
                                      requires_manual_resume=True)
        return self.verdict

    def _reset(self, now_ms: int) -> None:
        self.verdict = BreakerVerdict(self.name, self.check, "warning", math.nan, 2.0)


def test_a_manual_reset_that_leaves_a_non_finite_verdict_stays_halted() -> None:
    r = rig(POLICIES["futures"])
    r.board = BreakerBoard(r.policy, r.bus, r.clock, breakers=[_NanOnReset()])
    r.board.observe(EquityUpdate(r.at(T0), 10_000.0))
    result = r.board.manual_resume("ops", r.at(T0 + 1000))
    assert result.status.state == "halted" and result.status.requires_manual_resume
    assert any(reason.startswith("risk arithmetic failed in volatility") for reason in result.status.reasons)
    assert r.named("trading.resumed") == [] and r.named("breaker.warning") == []


# --- board combination, events, snapshot ------------------------------------------------------


def test_worst_state_wins_and_flatten_requested() -> None:
    policy = POLICIES["futures"]
    dd = policy.circuit_breakers.drawdown
    assert dd.emergency_pct is not None
    r = rig(policy)
    r.board.observe(book(T0, policy.circuit_breakers.volatility.spread.max_spread_bps))
    assert r.board.status().state == "paused"
    r.equity(T0 + 1, 10_000.0)
    r.equity(T0 + 2, 10_000.0 * (1 - dd.emergency_pct / 100))
    s = r.board.status()
    assert s.state == "halted" and s.flatten_requested
    assert r.names().count("trading.paused") == 1 and r.names().count("trading.halted") == 1
    r.board.observe(book(T0 + 3, 1.0))
    assert r.board.status().state == "halted"  # the spread lifting does not resume a halt
    assert r.named("trading.resumed") == []


def test_events_carry_design_fields() -> None:
    policy = POLICIES["futures"]
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1, 10_000.0 * (1 - policy.circuit_breakers.drawdown.threshold_pct / 100))
    for e in r.events:
        required = {
            "breaker.warning": {"breaker", "check", "level", "value", "threshold"},
            "breaker.tripped": {"breaker", "check", "level", "value", "threshold", "action"},
            "trading.halted": {"reason", "requires_manual_resume"},
        }[e.name]
        assert required <= set(e.fields), e
        assert e.ts_ms == T0 + 1  # emitted synchronously, at the clock time of the crossing


@pytest.mark.parametrize("profile", PROFILES)
def test_snapshot_restore_in_a_new_board(profile: str) -> None:
    policy = POLICIES[profile]
    cb = policy.circuit_breakers
    r = rig(policy)
    r.equity(T0, 10_000.0)
    r.equity(T0 + 1000, 12_000.0)
    for n in range(cb.consecutive_losses.max_consecutive_losses - 1):
        _loss(r, T0 + 2000 + n)
    for k in range(30):
        r.board.observe(bar(T0 + k * 5 * MINUTE, 100.0 + k * 0.1))
    tripped_at = r.at(T0 + 200 * MINUTE)
    r.equity(tripped_at, 12_000.0 * (1 - cb.drawdown.threshold_pct / 100))
    assert r.board.status().state == "halted"
    snap = json.loads(json.dumps(r.board.snapshot()))  # JSON-safe

    fresh = rig(policy, start_ms=tripped_at + MINUTE)
    fresh.board.restore(snap)
    assert fresh.events == []  # restoring emits nothing, in particular no trading.resumed
    assert fresh.board.status() == r.board.status()
    assert fresh.board.snapshot()["breakers"] == r.board.snapshot()["breakers"]
    cooldown = int(cb.drawdown.cooldown_minutes * MINUTE)
    assert not fresh.board.manual_resume("ops", tripped_at + cooldown - MINUTE).accepted
    # the same stream into both boards gives the same events (peaks, streak, ATR state kept)
    for board_rig in (r, fresh):
        board_rig.events.clear()
        board_rig.clock.advance_to(tripped_at + cooldown)
        assert board_rig.board.manual_resume("ops", tripped_at + cooldown).accepted
        board_rig.board.observe(TradeClosed(tripped_at + cooldown, -1.0))
        board_rig.board.observe(bar(tripped_at + cooldown, 100.0))
    assert [e.to_dict() for e in fresh.events] == [e.to_dict() for e in r.events]
    assert fresh.board.snapshot()["breakers"] == r.board.snapshot()["breakers"]


def test_restore_rejects_a_foreign_snapshot() -> None:
    r = rig(POLICIES["pets"])
    snap = r.board.snapshot()
    futures_board = BreakerBoard(POLICIES["futures"], r.bus, r.clock)
    with pytest.raises(ValueError, match="drawdown.peak"):
        futures_board.restore(snap)
    with pytest.raises(ValueError, match="version"):
        futures_board.restore({"version": 99})


def test_a_snapshot_without_a_rejection_count_restores_none() -> None:
    r = rig(POLICIES["futures"])
    for bad in (EquityUpdate(T0, math.nan), FeedLag(T0, -1.0)):
        r.board.observe(bad)
    snap = json.loads(json.dumps(r.board.snapshot()))
    assert snap["rejected_inputs"] == 2
    kept = rig(POLICIES["futures"])
    kept.board.restore(snap)
    assert kept.board.status().rejected_inputs == 2
    del snap["rejected_inputs"]  # a snapshot written before the count was kept
    older = rig(POLICIES["futures"])
    older.board.restore(snap)
    assert older.board.status().rejected_inputs == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_fail_closed_from_the_engine_halts_until_operator(profile: str) -> None:
    r = rig(POLICIES[profile])
    status = r.board.fail_closed("P&L arithmetic failed on fill c1: float division by zero")
    assert status.state == "halted" and status.requires_manual_resume
    assert status.reasons == ("P&L arithmetic failed on fill c1: float division by zero",)
    assert [e.name for e in r.events] == ["trading.halted"]
    r.board.fail_closed("again")
    assert len(r.events) == 1
    snap = json.loads(json.dumps(r.board.snapshot()))
    fresh = rig(POLICIES[profile])
    fresh.board.restore(snap)
    assert fresh.board.status().state == "halted" and fresh.events == []
    assert r.board.manual_resume("ops", T0).accepted
    assert r.board.status().state == "active" and r.named("trading.resumed", by="operator")


def test_next_deadline_is_the_auto_lift_time() -> None:
    policy = POLICIES["futures"]
    cl = policy.circuit_breakers.consecutive_losses
    r = rig(policy)
    assert r.board.next_deadline_ms() is None
    for _ in range(cl.max_consecutive_losses):
        _loss(r, T0)
    assert r.board.next_deadline_ms() == T0 + int(cl.cooldown_minutes * MINUTE)
    r.board.on_timer(r.at(T0 + int(cl.cooldown_minutes * MINUTE)))
    assert r.board.next_deadline_ms() is None


def test_manual_resume_with_nothing_to_resume_is_refused_without_events() -> None:
    r = rig(POLICIES["futures"])
    res = r.board.manual_resume("ops", T0)
    assert not res.accepted and "nothing to resume" in res.reason and r.events == []
