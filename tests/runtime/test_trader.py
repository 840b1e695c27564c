"""The Trader on the in-process exchange: the safety behaviour a user relies on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import StartupRefused, TraderConfig
from tests.runtime.sim_world import SYMBOL, TOKEN, World


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_adopts_a_position_opened_while_it_was_down_and_protects_it(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.01)
        await world.trader.start()
        await world.bars(1)

    run(scenario())
    opened = world.of("position.opened")
    assert opened and opened[0].fields["reason"] == "reconciled"
    assert world.trader.engine.exit_state is not None, "an adopted position must get a stop"


def test_immediate_kill_switch_cancels_and_flattens(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(2)
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        await world.bars(1)

    run(scenario())
    assert world.position() == 0
    names = world.names()
    assert names.index("killswitch.engaged") < names.index("orders.cancelled") < names.index("account.flat")
    assert json.loads((world.dir / "EMERGENCY_STOP").read_text())["engaged"] is True
    assert world.trader.status()["trading"] == "halted"


@pytest.mark.parametrize("credential", ["wrong-token", None])
def test_bad_kill_switch_credentials_change_nothing_and_are_audited(world: World, credential: str | None) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        assert not await world.trader.engage_killswitch("immediate", "drill", "intruder", credential)
        await world.bars(1)

    run(scenario())
    assert world.position() == 0.05
    assert "killswitch.engaged" not in world.names() and world.of("killswitch.rejected")
    audit = [json.loads(line) for line in (world.dir / "audit.jsonl").read_text().splitlines()]
    assert any(r["action"] == "killswitch.rejected" and r["actor"] == "intruder" for r in audit)
    assert not (world.dir / "EMERGENCY_STOP").exists()


def test_unknown_outcome_is_resolved_by_query_never_by_a_second_order(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        world.exchange_engine.unknown_outcome_next(1)
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        await world.bars(2)

    run(scenario())
    unknown = world.of("order.unknown")
    assert len(unknown) == 1
    client_id = unknown[0].fields["client_id"]
    assert any(e.fields.get("client_id") == client_id for e in world.of("order.reconciled"))
    booked = [r for r in world.exchange_engine.order_log
              if r["event"] in ("new", "placed", "booked", "filled") and r.get("client_id") == client_id]
    client_ids = [r.get("client_id") for r in world.exchange_engine.order_log if r.get("client_id")]
    assert booked and client_ids.count(client_id) == len([r for r in world.exchange_engine.order_log
                                                          if r.get("client_id") == client_id])
    placements = {r.get("order_id") for r in world.exchange_engine.order_log if r.get("client_id") == client_id}
    assert len(placements) == 1, "one client id, one exchange order"
    assert world.position() == 0


def test_halt_never_blocks_the_stop(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)
        world.trader.engine.board.fail_closed("test: halted by an operator-visible fault")
        stop = world.trader.engine.exit_state
        assert stop is not None
        world.exchange_engine.set_price(SYMBOL, stop.stop * 0.995)
        await world.bars(1)

    run(scenario())
    closed = world.of("position.closed")
    assert closed and closed[-1].fields["reason"] == "stop"
    assert world.trader.status()["trading"] == "halted"
    assert world.position() == 0


def test_a_fill_the_bot_cannot_account_for_halts_trading(world: World) -> None:
    from bot.core.engine import Fill

    async def scenario() -> None:
        await world.trader.start()
        await world.bars(1)
        world.trader.engine.on_fill(Fill("gd-x-en-1", "buy", 0.01, float("nan"), 0.0, world.clock.now_ms()))

    run(scenario())
    assert world.trader.status()["trading"] == "halted"
    assert any("P&L arithmetic failed" in str(e.fields.get("reason", "")) for e in world.of("trading.halted"))


def test_restart_restores_a_halt_and_does_not_resume_by_itself(world: World) -> None:
    async def scenario() -> None:
        await world.trader.start()
        await world.bars(1)
        world.trader.engine.board.fail_closed("test halt")
        await world.bars(1)
        await world.trader.close()
        world.trader = world.new_trader()
        await world.trader.start()
        await world.bars(30)

    run(scenario())
    assert world.of("state.restored")
    assert world.trader.status()["trading"] == "halted"
    restored_at = world.names().index("state.restored")
    assert "trading.resumed" not in world.names()[restored_at:]


def test_marker_file_keeps_the_kill_switch_when_the_store_is_lost(world: World, tmp_path: Path) -> None:
    async def scenario() -> None:
        await world.trader.start()
        assert await world.trader.engage_killswitch("pause", "maintenance", "ops", TOKEN)
        await world.trader.close()
        world.store.delete("bot")
        world.trader = world.new_trader()
        await world.trader.start()

    run(scenario())
    assert world.trader.status()["killswitch"] == "engaged"


def test_corrupt_state_halts_with_a_reason_and_keeps_the_damaged_value(world: World) -> None:
    import sqlite3

    async def scenario() -> None:
        await world.trader.start()
        await world.trader.close()

    run(scenario())
    db = sqlite3.connect(world.dir / "state.db")
    table = db.execute("select name from sqlite_master where type='table'").fetchone()[0]
    columns = [row[1] for row in db.execute(f"pragma table_info({table})")]
    db.execute(f"update {table} set {columns[1]} = ?", ('{"v":1,"sha256":"00","value":{}}',))
    db.commit()
    db.close()
    world.trader = world.new_trader()
    run(world.trader.start())
    [lost] = world.of("state.lost")
    assert "sha256 mismatch" in lost.fields["reason"] and "kept as 'bot.damaged-" in lost.fields["reason"]
    halted = world.of("trading.halted")[-1]
    assert halted.fields["requires_manual_resume"] is True and "state lost" in halted.fields["reason"]
    assert world.trader.status()["trading"] == "halted"
    assert [k for k in world.store.keys() if k.startswith("bot.damaged-")]  # type: ignore[attr-defined]


def test_startup_refused_for_a_key_that_can_withdraw(world: World) -> None:
    world.exchange_engine.set_permissions("test-key", {"enableWithdrawals": True})
    with pytest.raises(StartupRefused, match="withdrawals are enabled"):
        run(world.trader.start())
    assert world.of("startup.refused")


def test_rate_limit_on_flatten_waits_for_retry_after_then_completes(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        world.exchange_engine.fail_next("/fapi/v1/order", 1, 429, -1003, retry_after_s=7, method="POST")
        engaged_at = world.clock.now_ms()
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        assert world.position() == 0.05
        await world.bars(1)
        flat = world.of("account.flat")
        assert flat and flat[-1].ts_ms - engaged_at >= 7_000

    run(scenario())
    assert world.position() == 0


def test_minor_exchange_outage_pauses_entries_and_major_outage_flattens_and_halts(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)
        world.exchange_engine.fail_next("*", 10_000, 503, None)
        await world.bars(3)  # 15 min: past the 5-minute major threshold
        world.exchange_engine.reset_faults()
        await world.bars(1)

    run(scenario())
    names = world.names()
    down, paused, halted = (world.of(name)[0] for name in ("exchange.down", "trading.paused", "trading.halted"))
    assert paused.ts_ms == down.ts_ms, "a minor outage pauses entries at once"
    assert halted.ts_ms - down.ts_ms == 5 * 60_000, "a major outage halts when it has lasted major_after_minutes"
    assert names.index("exchange.up") < names.index("account.flat"), "positions are closed once reachable"
    assert world.position() == 0
    assert world.trader.status()["trading"] == "halted"


class FlakyStore:
    """A real store behind a switch: while `down`, every call fails as a lost Redis would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        from bot.io.state import StateStoreError

        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StateStoreError("connection refused (test)")
            return method(*args, **kwargs)

        return call


def test_losing_the_state_store_stops_new_entries_and_alerts_then_recovers(tmp_path: Path) -> None:
    from dataclasses import replace

    world = World(tmp_path)
    store = FlakyStore(world.store)
    world.store = store  # type: ignore[assignment]
    world.trader = world.new_trader()
    world.trader.config = replace(world.trader.config, store_check_ms=250)

    async def scenario() -> None:
        await world.trader.start()
        await world.bars(1)
        store.down = True
        lost_at = world.clock.now_ms()
        await world.bars(1)
        paused = [e for e in world.of("trading.paused") if e.ts_ms >= lost_at]
        alerts = [e for e in world.of("bot.alert") if e.ts_ms >= lost_at]
        assert paused and paused[0].ts_ms - lost_at <= 1_000, "entries stop within 1 s"
        assert alerts and alerts[0].fields["severity"] == "critical" and alerts[0].ts_ms - lost_at <= 5_000
        store.down = False
        await world.bars(1)

    run(scenario())
    assert world.trader.status()["trading"] == "active"
    assert world.store.get("bot") is not None


def test_websocket_silent_falls_back_to_rest_prices_for_exits(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)
        world.feed_alive = False
        stop = world.trader.engine.exit_state
        assert stop is not None
        world.exchange_engine.set_price(SYMBOL, stop.stop * 0.99)
        # no bar or book message reaches the bot now; only REST answers
        for _ in range(20):
            world.clock.advance(1_000)
            await world.trader.on_timer()

    run(scenario())
    assert world.of("feed.stale")
    closed = world.of("position.closed")
    assert closed and closed[-1].fields["reason"] == "stop", "the stop fired on REST prices"
    assert world.position() == 0


def test_a_kill_switch_engaged_from_outside_is_announced_and_acted_on_at_once(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.trader.apply_external_killswitch(
            {"version": 1, "engaged": True, "mode": "immediate", "reason": "cli drill", "actor": "operator:cli",
             "engaged_at_ms": world.clock.now_ms(), "deadline_ms": None, "flatten_requested": True})

    run(scenario())
    engaged = world.of("killswitch.engaged")
    assert len(engaged) == 1 and engaged[0].fields["actor"] == "operator:cli"
    assert world.of("account.flat") and world.position() == 0


def test_429_then_418_on_cancel_all_mid_flatten_honours_retry_after_cancels_first_and_escalates(
        world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        world.exchange_engine.fail_next("/fapi/v1/allOpenOrders", 1, 429, -1003, retry_after_s=3, method="DELETE")
        world.exchange_engine.fail_next("/fapi/v1/allOpenOrders", 1, 418, -1003, retry_after_s=5, method="DELETE")
        engaged_at = world.clock.now_ms()
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        await world.bars(1)
        return engaged_at

    engaged_at = run(scenario())
    cancelled = world.of("orders.cancelled")
    placed = [e for e in world.of("order.placed") if e.fields.get("purpose") == "flatten"]
    assert cancelled and placed
    assert cancelled[0].ts_ms - engaged_at >= 8_000, "Retry-After 3 s, then the 418's 5 s, honoured"
    assert placed[0].ts_ms >= cancelled[0].ts_ms, "cancels first, then the flatten order"
    escalations = [e for e in world.of("bot.alert") if e.fields["title"].startswith("ESCALATION")]
    assert escalations and escalations[0].fields["severity"] == "critical"
    assert world.of("account.flat") and world.position() == 0


def test_a_flatten_with_nothing_open_is_still_confirmed_flat_once(world: World) -> None:
    async def scenario() -> None:
        await world.trader.start()
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        await world.bars(3)

    run(scenario())
    assert len(world.of("account.flat")) == 1


def test_a_revoked_key_mid_flatten_alerts_once_not_every_retry(world: World) -> None:
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        world.exchange_engine.revoke_key("test-key")
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        await world.bars(12)  # an hour of retries

    run(scenario())
    critical = [e for e in world.of("bot.alert") if e.fields["severity"] == "critical"]
    assert 1 <= len(critical) <= 5, [e.fields["title"] for e in critical]
    assert world.trader.status()["trading"] == "halted"


def test_a_breaker_lifting_under_an_engaged_kill_switch_does_not_announce_a_resume(world: World) -> None:
    from bot.core.breakers.base import FeedLag

    async def scenario() -> None:
        await world.trader.start()
        engine = world.trader.engine
        assert await world.trader.engage_killswitch("pause", "maintenance", "ops", TOKEN)
        engine.board.observe(FeedLag(world.clock.now_ms(), 60_000))  # latency pause ...
        engine.board.observe(FeedLag(world.clock.now_ms(), 0))  # ... lifts while the kill switch holds
        assert "trading.resumed" not in world.names()
        assert await world.trader.clear_killswitch("ops", TOKEN)

    run(scenario())
    resumed = world.of("trading.resumed")
    assert len(resumed) == 1 and resumed[0].fields["by"] == "operator"
    assert world.names().index("killswitch.cleared") < world.names().index("trading.resumed")


@pytest.mark.parametrize("path", ["/fapi/v3/positionRisk", "/fapi/v1/openOrders"])
def test_kill_switch_never_reports_flat_on_a_failed_read_of_the_concurrent_check(world: World, path: str) -> None:
    """Positions and open orders are read together to confirm flat; either read failing means
    the account is not known to be flat: no account.flat until both reads answer."""
    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)
        world.exchange_engine.fail_next(path, 1, 503, None, method="GET")
        assert await world.trader.engage_killswitch("immediate", "drill", "risk-officer", TOKEN)
        assert world.position() == 0, "the close went out"
        assert not world.of("account.flat"), f"a failed {path} read must not count as flat"
        assert world.of("exchange.down")
        await world.bars(2)

    run(scenario())
    assert world.of("account.flat") and world.position() == 0


RECONCILE_S = TraderConfig().reconcile_every_ms // 1000 + 1  # one reconcile, whatever its phase


async def _resting_entry_then(world: World, arrange: Callable[[], None], seconds: int) -> None:
    """The pets strategy books a post-only entry (bar 28 of this market); `arrange` runs while it
    rests, then the bot's timers run for `seconds` (inside the bar: the market does not reach it)."""
    await world.trader.start()
    while not world.exchange_engine.open_orders("test-key", SYMBOL):
        await world.bars(1)
    arrange()
    until = world.clock.now_ms() + seconds * 1000
    while (deadline := world.trader.next_deadline_ms()) is not None and deadline <= until:
        world.clock.advance_to(max(deadline, world.clock.now_ms()))
        await world.trader.on_feed_alive(world.clock.now_ms())
        await world.trader.on_timer()


def test_a_position_that_appears_while_an_entry_rests_is_adopted_with_exits_and_the_entry_cancelled(
        tmp_path: Path) -> None:
    world = World(tmp_path, profile="pets", trade_entries=True)
    run(_resting_entry_then(world, lambda: world.give_position(0.01), seconds=RECONCILE_S))
    opened = world.of("position.opened")
    assert [e.fields["reason"] for e in opened] == ["reconciled"], "the foreign position waited for the entry"
    assert opened[0].fields["qty"] == 0.01 and world.trader.engine.exit_state is not None
    cancelled = world.of("orders.cancelled")
    assert [(e.fields["scope"], e.fields["count"]) for e in cancelled] == [("entries", 1)]
    assert "did not open" in cancelled[0].fields["reason"]
    assert not world.exchange_engine.open_orders("test-key", SYMBOL)


def test_a_resting_entry_is_kept_while_the_account_holds_only_what_the_bot_knows(tmp_path: Path) -> None:
    world = World(tmp_path, profile="pets", trade_entries=True)
    run(_resting_entry_then(world, lambda: None, seconds=RECONCILE_S))
    assert world.exchange_engine.open_orders("test-key", SYMBOL), "an entry with nothing beside it is left working"
    assert not world.of("orders.cancelled") and not world.of("position.opened")
