"""The exchange-outage decision matrix as a breaker: minor pauses, major flattens and halts."""

from __future__ import annotations

import pytest

from bot.config import load_policy
from bot.core.breakers.base import ExchangeStatus, StoreStatus
from bot.core.breakers.board import BreakerBoard
from bot.core.clock import VirtualClock
from bot.core.events import Event, EventBus


@pytest.fixture(params=["futures", "pets"])
def board(request: pytest.FixtureRequest) -> tuple[BreakerBoard, VirtualClock, list[Event]]:
    clock = VirtualClock(1_000_000)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    return BreakerBoard(load_policy(request.param).policy, bus, clock), clock, events


def major_ms(b: BreakerBoard) -> int:
    return int(b.policy.exchange_outage.major_after_minutes * 60_000)


def test_minor_outage_pauses_and_lifts_when_the_exchange_is_back(board) -> None:  # type: ignore[no-untyped-def]
    b, clock, events = board
    b.observe(ExchangeStatus(clock.now_ms(), True))
    assert b.status().state == "paused" and not b.status().flatten_requested
    clock.advance(major_ms(b) - 1)
    b.on_timer(clock.now_ms())
    assert b.status().state == "paused", "one ms before the major threshold it is still minor"
    b.observe(ExchangeStatus(clock.now_ms(), False))
    assert b.status().state == "active"
    assert [e.name for e in events if e.name.startswith("trading.")] == ["trading.paused", "trading.resumed"]


def test_major_outage_at_exactly_the_threshold_flattens_and_needs_an_operator(board) -> None:  # type: ignore[no-untyped-def]
    b, clock, _ = board
    b.observe(ExchangeStatus(clock.now_ms(), True))
    clock.advance(major_ms(b))
    b.on_timer(clock.now_ms())
    status = b.status()
    assert status.state == "halted" and status.flatten_requested and status.requires_manual_resume
    refused = b.manual_resume("ops", clock.now_ms())
    assert not refused.accepted and "still unreachable" in refused.reason
    b.observe(ExchangeStatus(clock.now_ms(), False))
    assert b.status().state == "halted", "the exchange coming back does not resume a major outage"
    assert b.manual_resume("ops", clock.now_ms()).accepted
    assert b.status().state == "active"


def test_the_bot_is_woken_at_the_major_threshold(board) -> None:  # type: ignore[no-untyped-def]
    """The driver sleeps until next_deadline_ms: the major action must not wait for the next bar."""
    b, clock, _ = board
    down_at = clock.now_ms()
    b.observe(ExchangeStatus(down_at, True))
    assert b.next_deadline_ms() == down_at + major_ms(b)
    clock.advance(major_ms(b))
    b.on_timer(clock.now_ms())
    assert b.next_deadline_ms() is None, "after the major action there is nothing left to wake for"


def test_outage_survives_a_restart(board) -> None:  # type: ignore[no-untyped-def]
    b, clock, _ = board
    b.observe(ExchangeStatus(clock.now_ms(), True))
    clock.advance(major_ms(b))
    b.on_timer(clock.now_ms())
    fresh = BreakerBoard(b.policy, EventBus(), clock)
    fresh.restore(b.snapshot())
    assert fresh.status().state == "halted" and fresh.status().requires_manual_resume


def test_a_repeated_down_report_does_not_restart_the_outage_clock(board) -> None:  # type: ignore[no-untyped-def]
    """The feed and REST both report the outage, again and again: it is as old as its first report."""
    b, clock, events = board
    b.observe(ExchangeStatus(clock.now_ms(), True))
    clock.advance(2 * 60_000)
    b.observe(ExchangeStatus(clock.now_ms(), True, "ws"))
    clock.advance(major_ms(b) - 2 * 60_000)
    b.on_timer(clock.now_ms())
    assert b.status().state == "halted" and b.status().flatten_requested
    assert [e.name for e in events if e.name.startswith("trading.")] == ["trading.paused", "trading.halted"]


def test_an_up_report_while_the_exchange_is_up_changes_nothing(board) -> None:  # type: ignore[no-untyped-def]
    b, clock, events = board
    b.observe(ExchangeStatus(clock.now_ms(), False))
    clock.advance(major_ms(b))
    b.on_timer(clock.now_ms())
    assert b.status().state == "active" and events == []


def test_a_state_store_outage_is_reported_as_down_1_against_0(board) -> None:  # type: ignore[no-untyped-def]
    """The trip event and the pause reason an operator reads carry the store's state as 1 (down)."""
    b, clock, events = board
    b.observe(StoreStatus(clock.now_ms(), True))
    (tripped,) = [e for e in events if e.name == "breaker.tripped"]
    assert (tripped.fields["value"], tripped.fields["threshold"]) == (1.0, 0.0)
    assert b.status().reasons == ("state_store.connectivity critical: 1 >= 0 (pause_new_entries)",)
