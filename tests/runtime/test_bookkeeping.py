"""Safety before bookkeeping (issue 8, items 1 and 2), on the Trader with the in-process exchange.

- the kill switch acts whatever the audit log, the marker file and the state store do, and says
  what it could not record; what was not recorded is written late once the disk takes it again;
- a torn audit tail is repaired at start and announced; a chain broken inside refuses the start;
- losing the state (deleted, emptied, not a database, an older snapshot, a flushed Redis) is not
  a first start: the bot comes up halted, manual resume required, and says what is missing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from bot.io.audit import verify
from bot.io.state import UnusableStore, open_bot_store, open_store
from bot.io.state_sqlite import SqliteStore
from bot.runtime import StartupRefused
from harness.sim.transport import SimStore
from tests.runtime.sim_world import TOKEN, World


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def audit_records(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (world.dir / "audit.jsonl").read_text().splitlines()]


def critical(world: World, since: int = 0) -> list[str]:
    return [str(e.fields["title"]) for e in world.events[since:]
            if e.name == "bot.alert" and e.fields.get("severity") == "critical"]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# --- item 1: the kill switch is never blocked by its own bookkeeping -----------------------------


def test_immediate_kill_with_the_audit_disk_full_flattens_alerts_and_writes_the_records_late(world: World) -> None:
    async def scenario() -> Any:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)
        world.audit_disk.full = True
        outcome = await world.trader.engage_killswitch("immediate", "disk full drill", "risk-officer", TOKEN)
        assert world.position() == 0, "flat at once, with the audit log unwritable"
        assert world.trader.status()["trading"] == "halted"
        world.audit_disk.full = False
        await world.bars(1)
        return outcome

    outcome = run(scenario())
    assert outcome.accepted and outcome.record_error is not None
    assert outcome.record_error.startswith("audit: ") and "No space left on device" in outcome.record_error
    alerts = critical(world)
    assert any("audit log cannot be written" in a for a in alerts)
    assert any(a.startswith("kill switch immediate: acted; recording failed: audit: ") for a in alerts)
    records = audit_records(world)
    [late] = [r for r in records if r["action"] == "audit.late"]
    after = [r["action"] for r in records[records.index(late) + 1:]]
    assert after[:late["details"]["records"]] and "No space left" in late["details"]["reason"]
    assert {"orders.cancel_all", "order.place", "account.flat", "killswitch.engage"} <= set(after)
    assert verify(world.dir / "audit.jsonl").ok
    assert any(e.name == "bot.alert" and "writable again" in e.fields["title"] for e in world.events)


def test_immediate_kill_with_the_marker_and_the_store_unwritable_still_flattens(world: World) -> None:
    store = SimStore(world.store)
    world.store = store  # type: ignore[assignment]
    world.trader = world.new_trader()

    async def scenario() -> Any:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)
        world.marker_disk.full = True
        store.full = True
        world.audit_disk.full = True
        outcome = await world.trader.engage_killswitch("immediate", "everything full", "risk-officer", TOKEN)
        assert world.position() == 0
        assert not (world.dir / "EMERGENCY_STOP").exists() and not (world.dir / "EMERGENCY_STOP.tmp").exists()
        world.marker_disk.full = store.full = world.audit_disk.full = False
        await world.bars(1)
        return outcome

    outcome = run(scenario())
    assert outcome.accepted and outcome.record_error is not None
    for part in ("marker ", "state store: ", "audit: "):
        assert part in outcome.record_error
    assert world.trader.status()["killswitch"] == "engaged"
    # recorded as soon as it could be: the marker, the store and the audit log all caught up
    assert json.loads((world.dir / "EMERGENCY_STOP").read_text())["mode"] == "immediate"
    assert world.store.get("bot")["killswitch"]["engaged"] is True  # type: ignore[index]
    assert "killswitch.engage" in [r["action"] for r in audit_records(world)]


def test_an_unwritable_audit_log_stops_new_entries_until_the_records_are_written(world: World) -> None:
    async def scenario() -> None:
        await world.trader.start()
        await world.bars(1)
        world.audit_disk.full = True
        outcome = await world.trader.manual_resume("ops")  # refused (nothing to resume), but recorded
        assert outcome.record_error is not None
        assert world.trader.engine.board.status().state == "paused"
        await world.bars(2)
        assert world.trader.engine.board.status().state == "paused", "still kept: still no entries"
        world.audit_disk.full = False
        await world.bars(1)

    run(scenario())
    assert world.trader.engine.board.status().state == "active"
    names = world.names()
    assert names.index("trading.paused") < names.index("trading.resumed")
    assert any(r["action"] == "trading.resume" for r in audit_records(world))


def test_a_torn_audit_tail_is_cut_at_start_announced_and_trading_goes_on(world: World) -> None:
    async def scenario() -> None:
        await world.trader.start()
        await world.bars(1)
        await world.trader.close()
        torn = b'{"action":"order.place","actor":"bot","details":{"pad":"' + b"p" * 70_000
        with open(world.dir / "audit.jsonl", "ab") as fh:
            fh.write(torn)
        world.trader = world.new_trader()
        await world.trader.start()
        await world.bars(1)

    run(scenario())
    [repaired] = world.of("audit.repaired")
    assert repaired.fields["cut_bytes"] == 70_000 + len(b'{"action":"order.place","actor":"bot","details":{"pad":"')
    assert len(repaired.fields["cut_sha256"]) == 64
    assert world.trader.status()["trading"] == "active" and not world.of("state.lost")
    result = verify(world.dir / "audit.jsonl")
    assert result.ok and len(result.repairs) == 1


def test_an_audit_chain_broken_inside_refuses_the_start_naming_the_line(world: World) -> None:
    async def first() -> None:
        await world.trader.start()
        assert await world.trader.engage_killswitch("pause", "drill", "ops", TOKEN)
        assert await world.trader.clear_killswitch("ops", TOKEN)
        await world.trader.close()
        world.trader = world.new_trader()  # a second start: it keeps what it verified beside the log
        await world.trader.start()
        await world.trader.close()

    run(first())
    path = world.dir / "audit.jsonl"
    assert (world.dir / "audit.jsonl.verified").exists()
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 5
    edited = next(i for i, line in enumerate(lines) if b'"action":"killswitch.engage"' in line)
    assert edited < len(lines) - 2  # deep inside: not the tail that every open checks anyway
    lines[edited] = lines[edited].replace(b'"reason":"drill"', b'"reason":"DRILL"')
    path.write_bytes(b"".join(lines))
    world.trader = world.new_trader()
    with pytest.raises(StartupRefused, match=rf"audit\.jsonl:{edited + 1}: hash does not match"):
        run(world.trader.start())
    [refused] = world.of("startup.refused")
    assert "chain is broken" in refused.fields["reason"] and "kill switch" in refused.fields["reason"]
    assert path.read_bytes() == b"".join(lines), "the evidence is left as found"
    spills = list(world.dir.glob("audit.jsonl.pending-*"))
    assert spills and b"startup.refused" in spills[0].read_bytes()
    assert world.trader.audit.close() == [], "nothing only in memory: the spill file holds the record"
    # the operator moves the broken log aside: a new chain starts, the refusal is written late
    path.rename(world.dir / "audit.jsonl.broken")
    world.trader = world.new_trader()
    run(world.trader.start())
    actions = [r["action"] for r in audit_records(world)]
    assert actions[:2] == ["audit.late", "startup.refused"]


# --- item 2: losing the state is not a first start -------------------------------------------------


def copy_db(source: Path, target: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()


def halted_then_stopped(world: World) -> None:
    """A bot halted with manual resume required (a breaker's halt), then stopped. A copy of its
    state from before the halt is kept in older.db (what a lost WAL or an old backup gives back)."""

    async def scenario() -> None:
        world.give_position(0.02)
        await world.trader.start()
        await world.bars(1)
        if isinstance(world.store, SqliteStore):
            copy_db(world.dir / "state.db", world.dir / "older.db")
        world.trader.engine.board.fail_closed("drill: halted, manual resume required")
        await world.bars(1)
        await world.trader.close()

    run(scenario())
    assert world.trader.status()["trading"] == "halted"


def lose(world: World, how: str) -> None:
    db = world.dir / "state.db"
    world.store.close()
    for side in (db.with_name("state.db-wal"), db.with_name("state.db-shm")):
        side.unlink(missing_ok=True)
    if how == "delete":
        db.unlink()
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "not_a_database":
        db.write_bytes(b"this is not a database\n" * 100)
    elif how == "stale":
        (world.dir / "older.db").replace(db)
    elif how == "flush":
        con = sqlite3.connect(db)
        con.execute("DELETE FROM state")
        con.commit()
        con.close()
    world.store = open_bot_store(db)


@pytest.mark.parametrize("how", ["delete", "empty", "not_a_database", "stale", "flush"])
def test_lost_state_brings_the_bot_up_halted_until_a_manual_resume(world: World, how: str) -> None:
    halted_then_stopped(world)
    saved = [r for r in audit_records(world) if r["action"] == "state.saved"]
    lose(world, how)
    since = len(world.events)
    world.trader = world.new_trader()
    run(world.trader.start())
    events = world.events[since:]
    [lost] = [e for e in events if e.name == "state.lost"]
    assert lost.fields["key"] == "bot" and lost.fields["store"].startswith("sqlite:")
    assert lost.fields["expected_generation"] == saved[-1]["details"]["generation"]
    halted = [e for e in events if e.name == "trading.halted"]
    assert halted and halted[0].fields["requires_manual_resume"] is True
    assert "state lost" in halted[0].fields["reason"]
    assert any(t.startswith("STATE LOST") for t in critical(world, since))
    [record] = [r for r in audit_records(world) if r["action"] == "state.lost"]
    assert record["details"]["reason"] == lost.fields["reason"]
    status = world.trader.status()
    assert status["trading"] == "halted"
    assert status["position"] == "open", "the halted bot adopted the position it found (and protects it)"
    assert world.trader.engine.exit_state is not None
    resumed = run(world.trader.manual_resume("ops"))
    assert resumed.accepted
    if how == "not_a_database":
        assert isinstance(world.store, UnusableStore)
        assert world.trader.status()["trading"] == "paused", "no new entries while the state cannot be saved"
        assert "not a database" in str(world.trader.status()["bookkeeping"]["state_store_problem"])
    else:
        assert world.trader.status()["trading"] == "active"


def test_stale_state_names_both_generations(world: World) -> None:
    halted_then_stopped(world)
    lose(world, "stale")
    world.trader = world.new_trader()
    run(world.trader.start())
    [lost] = world.of("state.lost")
    expected, found = lost.fields["expected_generation"], lost.fields["found_generation"]
    assert isinstance(found, int) and isinstance(expected, int) and found < expected
    assert f"holds generation {found}, older than generation {expected}" in lost.fields["reason"]


def test_a_first_start_and_an_ordinary_restart_are_not_lost_state(world: World) -> None:
    async def scenario() -> None:
        await world.trader.start()
        await world.bars(2)
        await world.trader.close()
        world.trader = world.new_trader()
        await world.trader.start()
        await world.bars(1)

    run(scenario())
    assert not world.of("state.lost") and world.trader.status()["trading"] == "active"
    generations = [r["details"]["generation"] for r in audit_records(world) if r["action"] == "state.saved"]
    assert generations == sorted(generations) and len(set(generations)) == len(generations)
    assert world.store.get("bot")["generation"] == generations[-1]  # type: ignore[index]


def test_the_marker_still_engages_the_kill_switch_when_the_state_is_lost(world: World) -> None:
    async def scenario() -> None:
        await world.trader.start()
        assert await world.trader.engage_killswitch("graceful", "maintenance", "ops", TOKEN)
        await world.trader.close()

    run(scenario())
    lose(world, "delete")
    world.trader = world.new_trader()
    run(world.trader.start())
    assert world.of("state.lost")
    kill = world.trader.engine.killswitch.status()
    assert kill.engaged and kill.mode == "graceful" and kill.reason == "maintenance"


def test_a_redis_restarted_empty_is_lost_state(tmp_path: Path, gameday_redis: Any) -> None:
    import redis

    prefix = f"gameday-test-{secrets.token_hex(4)}:"
    world = World(tmp_path)
    world.store = open_store(gameday_redis.url, prefix=prefix)
    world.trader = world.new_trader()
    halted_then_stopped(world)
    client = redis.Redis.from_url(gameday_redis.url)
    try:
        assert client.get(prefix + "bot") is not None
        client.delete(*client.keys(prefix + "*"))  # what FLUSHALL does to this bot's keys
        world.trader = world.new_trader()
        run(world.trader.start())
        [lost] = world.of("state.lost")
        assert lost.fields["store"].startswith("redis://") and lost.fields["found_generation"] is None
        assert world.trader.status()["trading"] == "halted"
        assert world.of("trading.halted")[-1].fields["requires_manual_resume"] is True
    finally:
        keys = client.keys(prefix + "*")
        if keys:
            client.delete(*keys)
        client.close()


# --- the marker file: whatever is there engages the strictest mode, at start and while running ----


@pytest.mark.parametrize("content,problem", [
    ('{"engaged": true}', "not a complete kill-switch snapshot"),
    ("{}", "missing version, engaged"),
    ("\x00garbage\xff", "not JSON"),
    (None, "is a directory"),
])
def test_a_hand_written_or_partial_marker_at_start_engages_immediate_and_flattens(
        world: World, content: str | None, problem: str) -> None:
    marker = world.dir / "EMERGENCY_STOP"
    if content is None:
        marker.mkdir()
    else:
        marker.write_bytes(content.encode("latin-1"))

    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        await world.bars(1)

    run(scenario())
    kill = world.trader.engine.killswitch.status()
    assert (kill.engaged, kill.mode, kill.flatten_requested) == (True, "immediate", True)
    assert kill.reason is not None and problem in kill.reason and str(marker) in kill.reason
    assert world.position() == 0 and world.of("account.flat")
