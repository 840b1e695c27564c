"""Process faults. In sim mode:

- restart: the bot process ends and a new one starts from the same state store, emergency marker,
  audit log and exchange account, as after a deploy or a crash that lost nothing on disk.
- audit_torn: the bot dies in the middle of appending a large audit record - the first part of
  the record reaches the file, its end never does (a torn last line) - then starts again.
- state_lost: the bot stops (its last snapshot and `state.saved` record are written), then its
  state store loses what it held while it is down - `how`: delete (state.db and its WAL gone),
  empty (a 0-byte file), not_a_database (overwritten with text), stale (back at a copy taken just
  before the stop: an older snapshot, as a lost WAL or a restored backup leaves), flush (every
  row deleted: what a Redis restarted empty looks like) - and starts again.
- check_fails: a red-flag check run outside the bot's trading loop (breaker self-test, emergency-stop
  drill, monitoring probe, backup job, log scan for the key) reports a failure to the bot.
- disk_full: for `duration`, every write to the bot's disk fails with ENOSPC - `target` audit (the
  audit log and its spill files), state (the state store's writes; reads still work) or all (both,
  and the kill-switch marker file). The bot is not restarted.

(bot_crash and redis_outage need real processes: net mode only.)
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from harness.faults.contract import FaultError

# The first 4 KiB of a large record as the bot writes it; the rest never reached the disk.
TORN_RECORD = (b'{"action":"order.place","actor":"bot","details":{"client_id":"gd-torn","note":"'
               + b"x" * 4000)[:4096]
NOT_A_DATABASE = b"this is not a SQLite database: gameday state_lost not_a_database\n" * 64

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld



async def restart(world: SimWorld, step: ActiveStep) -> None:
    await world.stop_bot()
    if await world.start_bot():
        world.publish_book()


async def audit_torn(world: SimWorld, step: ActiveStep) -> None:
    await world.crash_bot()
    with open(world.workdir / "audit.jsonl", "ab") as fh:
        fh.write(TORN_RECORD)
    world.notes.append(f"{step.id}: the bot died mid-append; {len(TORN_RECORD)} bytes of a record torn off")
    if await world.start_bot():
        world.publish_book()


async def state_lost(world: SimWorld, step: ActiveStep) -> None:
    how = step.params["how"]
    db = world.workdir / "state.db"
    older = world.workdir / "state.older.db"
    if how == "stale":
        if not db.exists():
            raise FaultError("state_lost how=stale needs a saved state to go back to, and there is none yet")
        _copy_sqlite(db, older)
    await world.stop_bot()
    for side in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        side.unlink(missing_ok=True)
    if how == "delete":
        db.unlink(missing_ok=True)
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "not_a_database":
        db.write_bytes(NOT_A_DATABASE)
    elif how == "stale":
        older.replace(db)
    elif how == "flush":
        if db.exists():
            _flush_sqlite(db)
    else:  # the loader checks the choices; a new one must be implemented here
        raise FaultError(f"state_lost: no sim implementation of how={how!r}")
    world.notes.append(f"{step.id}: the state store was lost while the bot was down ({how})")
    if await world.start_bot():
        world.publish_book()


async def disk_full(world: SimWorld, step: ActiveStep) -> None:
    target, duration = step.params["target"], int(step.params["duration"])

    def fill(full: bool) -> None:
        if target in ("audit", "all"):
            world.disks.audit.full = full
        if target == "all":
            world.disks.marker.full = full
        if target in ("state", "all"):
            world.set_state_full(full)

    fill(True)
    step.on_cleanup(lambda: fill(False))
    world.at(world.now + duration, lambda: fill(False))


def _copy_sqlite(source: Any, target: Any) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _flush_sqlite(db: Any) -> None:
    con = sqlite3.connect(db)
    try:
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            con.execute(f'DELETE FROM "{table}"')  # nosec B608 - table names read from the file's own schema
        con.commit()
    finally:
        con.close()


async def check_fails(world: SimWorld, step: ActiveStep) -> None:
    """What the operator's tooling tells the bot when a red-flag check fails (Trader.observe_check)."""
    world.require_trader("check_fails").observe_check(step.params["flag"], False, step.params["detail"])


SIM: dict[str, Any] = {"check_fails": check_fails, "restart": restart,
                       "audit_torn": audit_torn, "state_lost": state_lost, "disk_full": disk_full}
