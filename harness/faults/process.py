"""Process faults: the bot's process, its state store, its disk, the checks around it.

- bot_crash (net): the signal to the bot's process group; then the harness starts the bot again.
- restart: the bot process ends and a new one starts from the same state store, emergency marker,
  audit log and exchange account, as after a deploy or a crash that lost nothing on disk
  (net: SIGTERM, wait for the exit, start again). With `down_for` (default 0: at once) the bot
  stays down that long while the market goes on: bars close on the exchange, nobody manages the
  position it holds there, other steps still happen (a price gap, an outage); then it starts again
  and reconciles. The step is established when the new process starts (`within` counts from
  there; `never` from the stop). sim: the next process starts `down_for` later in virtual time;
  net: the bot is stopped and the runner starts it `down_for` (scaled) later, without holding up
  the rest of the timeline (`Injected.finish`).
- redis_outage (net): the Redis proxy disabled for `duration`.
- audit_torn: the bot dies in the middle of appending a large audit record - the first part of
  the record reaches the file, its end never does (a torn last line) - then starts again
  (net: SIGKILL, then the same bytes appended).
- state_lost: the bot stops (its last snapshot and `state.saved` record are written), then its
  state store loses what it held while it is down - `how`: delete (sim: state.db and its WAL gone;
  net: the bot's Redis key deleted), empty (a 0-byte file / key), not_a_database (overwritten with
  text), stale (back at a copy taken just before the stop: an older snapshot, as a lost WAL or a
  restored backup leaves), flush (every row deleted / FLUSHALL - on a Redis from
  GAMEDAY_REDIS_URL only the bot's keys: what a Redis restarted empty looks like) - and starts again.
- marker_written: the bot stops (its marker, if engaged, is written), then the kill-switch marker
  file is found holding `content` - a write torn off, a file written by hand or by another tool -
  and the bot starts again. The marker stands for a pulled switch: one that is not a complete
  snapshot of an engaged kill switch must engage the strictest mode (fail closed).
- check_fails (sim): a red-flag check run outside the bot's trading loop (breaker self-test,
  emergency-stop drill, monitoring probe, backup job, log scan for the key) reports a failure.
- disk_full: for `duration`, every write to the bot's disk fails with ENOSPC - `target` audit (the
  audit log and its spill files), state (the state store's writes; reads still work) or all (both,
  and the kill-switch marker file). The bot is not restarted. net: the tmpfs the runner mounted
  for the audit log (and marker) filled with a file until ENOSPC - root only, else the step is an
  ERROR - and/or Redis `CONFIG SET maxmemory 1` (writes fail with OOM, reads work).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

from bot.core.redflags import CHECKED_FLAGS
from harness.faults.contract import DURATION, DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.inject import FILLER, disable, now_ms, redis_client
from harness.sim.constants import P_STEP, START_MS

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


# The first 4 KiB of a large record as the bot writes it; the rest never reached the disk.
TORN_RECORD = (b'{"action":"order.place","actor":"bot","details":{"client_id":"gd-torn","note":"'
               + b"x" * 4000)[:4096]
STATE_PREFIX = "gameday:"  # bot.io.state.open_store's default key prefix for Redis
NOT_A_DATABASE = b"this is not a SQLite database: gameday state_lost not_a_database\n" * 64


async def restart(world: SimWorld, step: ActiveStep) -> None:
    down_for = int(step.params["down_for"])
    await world.stop_bot()
    if down_for <= 0:
        if await world.start_bot():
            world.publish_book()
        return
    step.pending = f"the bot was still down ({step.id} holds it down for {down_for} ms)"
    world.notes.append(f"{step.id}: the bot is down for {down_for} ms (until {world.now + down_for - START_MS} ms); "
                       "the market goes on without it")

    async def back() -> None:
        if world.trader is not None:
            step.fail(f"another step started the bot while {step.id} held it down for {down_for} ms: "
                      "overlapping restarts are not one fault")
            return
        step.establish(world.now)
        if await world.start_bot():
            world.publish_book()

    world.at(world.now + down_for, back, P_STEP)


async def audit_torn(world: SimWorld, step: ActiveStep) -> None:
    await world.crash_bot()
    with open(world.workdir / "audit.jsonl", "ab") as fh:
        fh.write(TORN_RECORD)
    world.notes.append(f"{step.id}: the bot died mid-append; {len(TORN_RECORD)} bytes of a record torn off")
    if await world.start_bot():
        world.publish_book()


async def marker_written(world: SimWorld, step: ActiveStep) -> None:
    await world.stop_bot()
    content = step.params["content"].encode("utf-8")
    (world.workdir / "EMERGENCY_STOP").write_bytes(content)
    world.notes.append(f"{step.id}: the kill-switch marker was found holding {len(content)} bytes while the bot "
                       "was down")
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


def bot_crash_net(run: NetRun, p: dict[str, Any]) -> Injected:
    sig = getattr(signal, p["signal"])
    run.bot.kill(sig)
    if sig != signal.SIGKILL and run.bot.wait_exit(run.stop_timeout_s) is None:
        raise FaultError(f"the bot did not exit within {run.stop_timeout_s} s of {p['signal']}")
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"bot {p['signal']} then restarted (pid {run.bot.pid})"])


def restart_net(run: NetRun, p: dict[str, Any]) -> Injected:
    down_for = int(p["down_for"])
    run.bot.stop()
    if down_for <= 0:
        return Injected(run.restart_bot())
    stopped = now_ms()

    def back() -> int:
        if run.bot.alive():
            raise FaultError(f"another step started the bot while the restart held it down for {down_for} ms: "
                             "overlapping restarts are not one fault")
        return run.restart_bot()

    return Injected(finish=back, finish_after_ms=down_for,
                    notes=[f"bot stopped at {stopped} ms; it starts again {down_for} ms (scaled) later"])


def redis_outage_net(run: NetRun, p: dict[str, Any]) -> Injected:
    return Injected(now_ms(), disable(run, "redis"), p["duration"])


def audit_torn_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.bot.kill(signal.SIGKILL)
    with open(run.audit_path, "ab") as fh:
        fh.write(TORN_RECORD)
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"bot SIGKILLed mid-append ({len(TORN_RECORD)} bytes torn), restarted "
                                      f"(pid {run.bot.pid})"])


def marker_written_net(run: NetRun, p: dict[str, Any]) -> Injected:
    if run.bot.stop() is None:
        raise FaultError("marker_written: the bot was not running")
    run.marker_path.write_bytes(p["content"].encode("utf-8"))
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"kill-switch marker {run.marker_path} overwritten while the bot was down, "
                                      f"restarted (pid {run.bot.pid})"])


def state_lost_net(run: NetRun, p: dict[str, Any]) -> Injected:
    how = p["how"]
    client = redis_client(run)
    key = STATE_PREFIX + "bot"
    notes = []
    try:
        older = client.get(key)
        if how == "stale" and older is None:
            raise FaultError("state_lost how=stale needs a saved state to go back to, and Redis holds none")
        if run.bot.stop() is None:
            raise FaultError("state_lost: the bot was not running")
        if how == "delete":
            client.delete(key)
        elif how == "flush":
            assert run.stack.redis is not None
            if run.stack.redis.source == "env":  # someone else's Redis: only what is the bot's
                keys = list(client.scan_iter(match=STATE_PREFIX + "*"))
                if keys:
                    client.delete(*keys)
                notes.append(f"Redis from the environment: deleted the bot's {len(keys)} key(s), not FLUSHALL")
            else:
                client.flushall()
        elif how == "empty":
            client.set(key, b"")
        elif how == "not_a_database":
            client.set(key, NOT_A_DATABASE)
        elif how == "stale":
            client.set(key, older)
        else:  # the loader checks the choices; a new one must be implemented here
            raise FaultError(f"state_lost: no net implementation of how={how!r}")
    finally:
        client.close()
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"state lost while the bot was down ({how}), restarted (pid {run.bot.pid})",
                                      *notes])


def disk_full_net(run: NetRun, p: dict[str, Any]) -> Injected:
    target = p["target"]
    undo: list[Any] = []
    notes: list[str] = []
    if target in ("audit", "all"):
        if run.disk_dir is None or not run.disk_mounted:
            raise FaultError(run.disk_problem or "no tmpfs was mounted for the bot's audit log")
        filler = run.disk_dir / FILLER
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):  # until not one more byte fits
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        notes.append(f"filled {run.disk_dir} ({filler.stat().st_size} bytes of filler)")
        undo.append(lambda: filler.unlink(missing_ok=True))
    if target in ("state", "all"):
        client = redis_client(run)
        before = client.config_get("maxmemory").get("maxmemory", "0")
        client.config_set("maxmemory", 1)

        def restore() -> None:
            client.config_set("maxmemory", before)
            client.close()

        undo.append(restore)
        notes.append("Redis maxmemory 1: every write fails with OOM")

    def revert() -> None:
        for fn in undo:
            fn()

    return Injected(now_ms(), revert, p["duration"], notes)


RESTARTS = DrillFacts(blinds_bars=1)
KINDS = (
    kind("bot_crash", "process", "the bot process dies", sim=None, net=bot_crash_net,
         signal=P("signal", required=False, default="SIGKILL", choices=("SIGKILL", "SIGTERM", "SIGINT")),
         not_in={"sim": "the sim bot lives in the harness's own process: a signal would end the harness "
                        "(use restart or audit_torn)"}),
    kind("restart", "process", "the bot restarts and reconciles (with `down_for`, after staying down that long "
         "while the market goes on)", sim=restart, net=restart_net, drill=RESTARTS,
         down_for=P("duration", required=False, default=0, ge=0,
                    doc="how long the bot stays down before it starts again (0: at once)")),
    kind("redis_outage", "process", "the Redis state store goes away", sim=None, net=redis_outage_net,
         duration=DURATION, not_in={"sim": "the sim bot's state store is SQLite in its work directory, not Redis "
                                           "(use disk_full target state)"}),
    kind("audit_torn", "process", "the bot dies mid-append of a large audit record (a torn last line), then "
         "starts again", sim=audit_torn, net=audit_torn_net,
         drill=DrillFacts("D3.audit", blinds_bars=1)),
    kind("state_lost", "process", "the bot stops, its state store loses what it held (how: delete, empty, "
         "not_a_database, stale, flush), the bot starts again", sim=state_lost, net=state_lost_net,
         how=P("enum", choices=("delete", "empty", "not_a_database", "stale", "flush"),
               doc="the store deleted / emptied / overwritten with bytes that are not a database / "
                   "back at an older snapshot (a lost WAL) / flushed (a Redis restarted empty)"),
         drill=DrillFacts("PETS.circuit_breakers.persisted", blinds_bars=1)),
    kind("marker_written", "process", "the bot stops, its kill-switch marker file is found holding `content` "
         "(a torn write, a hand-written or foreign file), the bot starts again", sim=marker_written,
         net=marker_written_net,
         content=P("str", doc="the file's text, written as UTF-8 in place of the marker (created if absent)"),
         drill=DrillFacts("C2.kill_switch", samples={"content": ('{"version": 1, "engaged": tr', '{"engaged": true}')},
                          blinds_bars=1)),
    kind("check_fails", "process", "a red-flag check reports a failure to the bot (flag: "
         + ", ".join(CHECKED_FLAGS) + ")", sim=check_fails, net=None,
         flag=P("enum", choices=CHECKED_FLAGS), detail=P("str", required=False, default="gameday drill"),
         not_in={"net": "the live bot runs its real checks (control API POST /checks/{name}); making one report "
                        "a failure on demand is not implemented"}),
    kind("disk_full", "process", "the bot's disk is full: its writes fail with ENOSPC (target: audit, state, all)",
         sim=disk_full, net=disk_full_net, duration=DURATION,
         target=P("enum", required=False, default="all", choices=("audit", "state", "all"),
                  doc="the audit log, the state store, or everything the bot writes (with the marker)"),
         drill=DrillFacts("D3.audit")),
)
