"""The Trader on the in-process exchange: resting entries cancelled on the exchange when entries
are forbidden (and the race with a fill), exit plans across a restart, the ATR warmed from klines."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.core.market import Bar, IncrementalATR
from bot.core.strategy import Signal
from bot.io.exchange import NotFoundError
from tests.runtime.sim_world import BAR_MS, SYMBOL, TOKEN, World

BUY = Signal("buy", 0.01, 0.5, 2.0, 0.05)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def want_entry_on_next_bar(world: World) -> None:
    """The strategy signals a buy on the next bar (once), whatever the market did."""
    strategy = world.trader.engine.strategy
    update = strategy.update
    fired = {"done": False}

    def once(bar: Bar) -> Signal:
        signal = update(bar)
        if fired["done"]:
            return signal
        fired["done"] = True
        return BUY

    strategy.update = once  # type: ignore[method-assign]


def open_orders(world: World) -> list[Any]:
    return world.exchange_engine.open_orders("test-key", SYMBOL)


async def resting_entry(world: World) -> str:
    await world.trader.start()
    await world.bars(20)
    want_entry_on_next_bar(world)
    await world.bars(1)
    (order,) = open_orders(world)
    assert (order.type, order.time_in_force, order.reduce_only) == ("LIMIT", "GTX", False)
    placed = world.of("order.placed")[-1]
    assert placed.fields["purpose"] == "entry" and placed.fields["post_only"] is True
    return str(placed.fields["client_id"])


@pytest.fixture
def pets(tmp_path: Path) -> World:
    return World(tmp_path, profile="pets", trade_entries=True)


def test_a_pause_kill_cancels_the_resting_post_only_entry_on_the_exchange(pets: World) -> None:
    async def scenario() -> str:
        client_id = await resting_entry(pets)
        assert await pets.trader.engage_killswitch("pause", "drill", "risk-officer", TOKEN)
        assert open_orders(pets) == []
        await pets.bars(3)
        return client_id

    client_id = run(scenario())
    (cancelled,) = pets.of("orders.cancelled")
    assert cancelled.fields == {"count": 1, "scope": "entries", "client_id": client_id,
                                "reason": cancelled.fields["reason"]}
    assert not [e for e in pets.of("position.opened") if e.fields["reason"] == "entry"]
    assert pets.position() == 0


def test_a_cancel_that_loses_the_race_accounts_the_fill_and_manages_the_position(pets: World) -> None:
    async def scenario() -> None:
        client_id = await resting_entry(pets)
        bid, _ = pets.exchange_engine.book(SYMBOL)
        pets.exchange_engine.set_price(SYMBOL, bid * 0.998)  # the book reaches the entry first
        assert open_orders(pets) == []
        with pytest.raises(NotFoundError):
            await pets.trader.exchange.cancel_order(SYMBOL, client_id)  # what the bot's cancel will meet
        assert await pets.trader.engage_killswitch("graceful", "drill", "risk-officer", TOKEN)
        assert pets.trader.engine.exit_state is not None, "the late fill is a managed position"
        assert await pets.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        await pets.bars(1)

    run(scenario())
    opened = [e for e in pets.of("position.opened") if e.fields["reason"] == "entry"]
    assert len(opened) == 1
    assert any("lost the race" in e.fields["title"] for e in pets.of("bot.alert"))
    assert pets.of("account.flat") and pets.position() == 0


def test_a_fill_reported_by_the_cancel_itself_is_accounted_at_once(pets: World) -> None:
    """The exchange's answer to the cancel is the order's final state: part of it may have filled
    just before (the testnet fills whole orders, so the reply is doctored here)."""

    async def scenario() -> str:
        client_id = await resting_entry(pets)
        cancel = pets.trader.exchange.cancel_order

        async def partly_filled(symbol: str, cid: str) -> Any:
            state = await cancel(symbol, cid)
            return replace(state, filled_qty=0.004, avg_price=state.price)

        pets.trader.exchange.cancel_order = partly_filled  # type: ignore[method-assign]
        assert await pets.trader.engage_killswitch("pause", "drill", "risk-officer", TOKEN)
        return client_id

    client_id = run(scenario())
    assert pets.trader.engine.position_qty == pytest.approx(0.004)
    assert pets.trader.engine.exit_state is not None
    assert client_id not in pets.trader._pending  # done with: nothing left to poll
    assert [e.fields["qty"] for e in pets.of("order.filled")] == [pytest.approx(0.004)]


def test_a_failed_cancel_is_retried_until_the_entry_is_gone(pets: World) -> None:
    async def scenario() -> None:
        await resting_entry(pets)
        pets.exchange_engine.fail_next("/fapi/v1/order", 2, 503, None, method="DELETE")
        await pets.trader.engage_killswitch("pause", "drill", "risk-officer", TOKEN)
        assert len(open_orders(pets)) == 1  # the first attempt failed
        await pets.bars(1)

    run(scenario())
    assert open_orders(pets) == []
    assert pets.of("orders.cancelled")[-1].fields["scope"] == "entries"
    assert pets.position() == 0


def test_a_restart_cancels_the_entry_the_previous_process_left_resting(pets: World) -> None:
    async def scenario() -> str:
        client_id = await resting_entry(pets)
        # someone else's order and a reduce-only one on the same book stay
        bid, _ = pets.exchange_engine.book(SYMBOL)
        pets.exchange_engine.place_order("test-key", SYMBOL, "BUY", "LIMIT", 0.002, price=round(bid * 0.9, 1),
                                         time_in_force="GTC", client_id="manual-order-1")
        pets.trader = pets.new_trader()  # the old process died: nothing closed, nothing saved
        await pets.trader.start()
        return client_id

    client_id = run(scenario())
    assert [o.client_id for o in open_orders(pets)] == ["manual-order-1"]
    (cancelled,) = pets.of("orders.cancelled")
    assert cancelled.fields["client_id"] == client_id and "earlier run" in cancelled.fields["reason"]


def test_the_dead_man_countdown_is_armed_while_an_entry_rests_and_fires_if_the_bot_dies(pets: World) -> None:
    async def scenario() -> None:
        await resting_entry(pets)
        await pets.trader.on_timer()  # the heartbeat due now
        countdown = pets.exchange_engine.accounts["test-key"].countdowns[SYMBOL][0]
        assert countdown == 3 * pets.trader.config.heartbeat_ms
        pets.clock.advance_to(pets.clock.now_ms() + countdown + 1)  # the bot is gone: no renewal

    run(scenario())
    assert open_orders(pets) == []


def test_entries_carry_their_size_as_a_percentage_of_equity(pets: World) -> None:
    run(resting_entry(pets))
    placed = pets.of("order.placed")[-1]
    equity = pets.trader.engine.equity
    assert placed.fields["qty_pct"] == pytest.approx(placed.fields["qty"] * placed.fields["price"] / equity * 100,
                                                     rel=1e-3)
    assert 0 < placed.fields["qty_pct"] <= pets.policy.position_sizing.max_position_pct * 100


def test_a_restart_gives_the_open_position_its_saved_plan(tmp_path: Path) -> None:
    world = World(tmp_path, vol_bps=150)

    async def scenario() -> None:
        world.give_position(0.01)
        await world.trader.start()
        await world.bars(2)
        await world.trader.close()
        world.trader = world.new_trader()
        await world.trader.start()

    run(scenario())
    first, again = world.of("position.opened")
    assert first.fields["plan"] == "new" and again.fields["plan"] == "restored"
    assert again.fields["stop"] == first.fields["stop"] and again.fields["take_profit"] == first.fields["take_profit"]
    assert world.trader.engine.exit_state is not None and world.trader.engine.exit_state.bars_held == 2


def test_klines_warm_the_atr_so_a_position_found_at_start_gets_an_atr_stop(tmp_path: Path) -> None:
    world = World(tmp_path, vol_bps=150)
    world.give_position(0.01)
    run(world.trader.start())
    atr = IncrementalATR(world.policy.circuit_breakers.volatility.atr.atr_periods)
    for c in world.exchange_engine.candles(SYMBOL)[-100:-1]:  # the 100 klines asked for, less the one forming
        atr.update(Bar(c.open_time + BAR_MS, c.open, c.high, c.low, c.close))
    assert world.trader.engine.atr.value == pytest.approx(atr.value)
    (opened,) = world.of("position.opened")
    entry = opened.fields["entry"]
    stop_pct = 1 - opened.fields["stop"] / entry
    assert stop_pct > world.policy.exits.stop_loss.min_pct
    assert stop_pct == pytest.approx(min(1.5 * atr.value / entry, world.policy.exits.stop_loss.max_pct), rel=1e-6)


def test_without_klines_the_atr_warms_from_live_bars_and_says_so(tmp_path: Path) -> None:
    world = World(tmp_path, vol_bps=150)
    world.exchange_engine.fail_next("/fapi/v1/klines", 1, 503, None)
    world.give_position(0.01)
    run(world.trader.start())
    titles = [e.fields["title"] for e in world.of("bot.alert")]
    assert any("klines unavailable" in t for t in titles) and any("without an ATR" in t for t in titles)


def test_a_bar_length_with_no_kline_interval_starts_without_a_warm_up(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.trader.config = replace(world.trader.config, bar_ms=600_000)  # 10 m: Binance has no such kline
    run(world.trader.start())
    assert any("no kline interval of 600000 ms" in e.fields["title"] for e in world.of("bot.alert"))
    assert world.trader.engine.atr.value is None
