"""Safety before bookkeeping (issue 8, items 1 and 2): figures from real processes.

    .venv/bin/python benchmarks/bench_bookkeeping.py [--kills N] [--record-kib K] [--code-root DIR]

1. torn tails: N times, a process appends large audit records (K KiB each) and is killed with
   SIGKILL at a random moment; how many kills left a torn last line, and how many of those then made
   `python -m bot killswitch` refuse to act (it must never refuse);
2. full disk (root only: a 64 KiB tmpfs holds the bot's state directory, filled up): an immediate
   kill switch through the running bot's control API - the HTTP status and the position after;
3. lost state: a bot that was halted (manual resume required) is stopped, its state is deleted,
   emptied, overwritten with garbage, or its Redis flushed, and it is started again - its trading
   state then (it must not be `active`).

Exits 1 when a figure fails or measures nothing: a kill-switch refusal, an appender that wrote no
record, a full-disk kill switch that did not flatten, a lost state that came back `active`, a bot that
was not halted before its state was lost, or a halt after it that names no loss.

`--code-root DIR` runs the bot and the CLI of another checkout (e.g. `git archive` of an older
commit) with this script's testnet and Redis: the same measurement before and after a change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.net.stack import TestnetThread  # noqa: E402
from harness.services import free_loopback_port, provide_redis  # noqa: E402

KEY, SECRET, TOKEN, BTC = "bench-key", "bench-secret-not-real", "bench-operator-token-0123", "BTCUSDT"


def env_for(code_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
    env.update({"PYTHONPATH": str(code_root), "GAMEDAY_API_KEY": KEY, "GAMEDAY_API_SECRET": SECRET,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env.update(extra)
    return env


def private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------------------------ 1. torn tails

WRITER = """
import sys
from bot.io.audit import AuditLog
log = AuditLog(sys.argv[1])
blob = "x" * (int(sys.argv[2]) * 1024)
print("ready", flush=True)
i = 0
while True:
    i += 1
    log.append("bench", "bench.large", {"i": i, "blob": blob}, 1_767_571_200_000 + i)
"""


def torn_tails(code_root: Path, kills: int, record_kib: int, work: Path) -> tuple[int, int, int, int]:
    """(kills, kills that found records in the log, torn tails, CLI refusals after a torn tail)."""
    rng = random.Random(8)
    wrote = torn = refusals = 0
    for n in range(kills):
        d = work / f"kill-{n}"
        d.mkdir(parents=True)
        audit = d / "audit.jsonl"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(audit), str(record_kib)],  # noqa: S603
                                  cwd=code_root, env=env_for(code_root), stdout=subprocess.PIPE)
        assert writer.stdout is not None
        writer.stdout.readline()
        time.sleep(rng.uniform(0.02, 0.25))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        data = audit.read_bytes() if audit.exists() else b""
        wrote += data.count(b"\n") > 0
        if not data or data.endswith(b"\n"):
            shutil.rmtree(d)
            continue
        torn += 1
        private(d / "kill_token", TOKEN)
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "bot", "killswitch", "--mode", "pause", "--reason", "bench torn tail",
             "--audit", str(audit), "--state", str(d / "bot.db"), "--marker", str(d / "EMERGENCY_STOP"),
             "--auth-token-file", str(d / "kill_token")],
            cwd=code_root, env=env_for(code_root, GAMEDAY_KILL_TOKEN=TOKEN), capture_output=True, text=True,
            timeout=60, check=False)
        if not (d / "EMERGENCY_STOP").exists():
            refusals += 1
            print(f"  kill {n}: CLI exit {done.returncode}: {done.stderr.strip()[:160]}")
        shutil.rmtree(d)
    return kills, wrote, torn, refusals


# ------------------------------------------------------------------------------------------ bots


@contextlib.contextmanager
def testnet() -> Iterator[TestnetThread]:
    t = TestnetThread(seed=5, keys=[(KEY, SECRET)], tick_ms=50, bar_real_ms=1000, history_bars=100)
    t.start()
    try:
        yield t
    finally:
        t.stop()


class Bot:
    def __init__(self, code_root: Path, tn: TestnetThread, work: Path, state: str, state_dir: Path) -> None:
        self.port = free_loopback_port()
        self.events = work / "events.jsonl"
        self.log = work / "bot.log"
        self.argv = [sys.executable, "-m", "bot", "run", "--exchange", "testnet", "--testnet-url",
                     tn.handle.rest_url, "--no-entries", "--events", str(self.events), "--state", state,
                     "--audit", str(state_dir / "audit.jsonl"), "--marker", str(state_dir / "EMERGENCY_STOP"),
                     "--auth-token-file", str(work / "kill_token"), "--control-port", str(self.port),
                     "--reconcile-ms", "500"]
        private(work / "kill_token", TOKEN)
        self.env = env_for(code_root, GAMEDAY_CONTROL_TOKEN=TOKEN)
        self.cwd = code_root
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log,  # noqa: S603
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=0.5).ok:
                    return True
            time.sleep(0.05)
        return False

    def status(self) -> dict[str, Any]:
        reply = requests.get(f"http://127.0.0.1:{self.port}/status", timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        return dict(reply.json())

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def tail(self, lines: int = 3) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])


def position(tn: TestnetThread) -> float:
    return float(tn.call(lambda: tn.handle.engine.accounts[KEY].position(BTC).qty))


# ------------------------------------------------------------------------------------------ 2. full disk


def full_disk(code_root: Path, work: Path) -> str:
    if os.geteuid() != 0:
        return "not measured: mounting a tmpfs needs root"
    disk = work / "disk"
    disk.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)  # noqa: S603,S607
    try:
        with testnet() as tn:
            tn.call(lambda: tn.handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.02))
            bot = Bot(code_root, tn, work, str(disk / "bot.db"), disk)
            try:
                if not bot.start():
                    return f"the bot did not start: {bot.tail()}"
                deadline = time.monotonic() + 20
                while bot.status().get("position") != "open" and time.monotonic() < deadline:
                    time.sleep(0.1)
                with contextlib.suppress(OSError), open(disk / "filler", "wb") as fh:
                    while True:
                        fh.write(b"\0" * 512)
                        fh.flush()
                started = time.monotonic()
                reply = requests.post(f"http://127.0.0.1:{bot.port}/killswitch", timeout=30,
                                      headers={"Authorization": f"Bearer {TOKEN}"},
                                      json={"mode": "immediate", "reason": "bench full disk", "actor": "bench"})
                while abs(position(tn)) > 1e-12 and time.monotonic() - started < 10:
                    time.sleep(0.05)
                flat_s = time.monotonic() - started
                left = position(tn)
                alerts = [e for e in map(json.loads, bot.events.read_text().splitlines())
                          if e["name"] == "alert.sent" and e.get("severity") == "critical"]
                alive = bot.proc is not None and bot.proc.poll() is None
                return (f"HTTP {reply.status_code}, position after {left:g} BTC "
                        f"({'flat' if abs(left) < 1e-12 else 'OPEN'} after {flat_s:.1f} s), "
                        f"{len(alerts)} critical alert(s), bot {'alive' if alive else 'dead'}")
            finally:
                bot.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)  # noqa: S603,S607


# ------------------------------------------------------------------------------------------ 3. lost state


def halted_snapshot(code_root: Path) -> dict[str, Any]:
    """What a bot halted with manual resume required leaves in its store (built by that checkout's engine)."""
    probe = ("import json; from bot.config import load_policy; from bot.core.clock import WallClock; "
             "from bot.core.events import EventBus; from bot.core.engine import Engine; "
             "e = Engine(load_policy('futures').policy, WallClock(), EventBus(), symbol='BTCUSDT', equity=10000, "
             "verify=lambda c: False); e.board.fail_closed('bench: halted, manual resume required'); "
             "print(json.dumps(e.snapshot()))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=code_root, env=env_for(code_root),  # noqa: S603
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def lose(how: str, db: Path, redis_url: str | None) -> None:
    """The loss itself: the SQLite file deleted, emptied or overwritten, or the Redis flushed."""
    for side in (db.with_name("bot.db-wal"), db.with_name("bot.db-shm")):
        side.unlink(missing_ok=True)
    if how == "delete":
        db.unlink()
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "garbage":
        db.write_bytes(b"this is not a database\n" * 64)
    else:
        import redis

        redis.Redis.from_url(redis_url).flushall()


def lost_state(code_root: Path, work: Path, how: str, redis_url: str | None) -> str:
    d = work / f"lost-{how}"
    d.mkdir(parents=True)
    state = redis_url if how == "flush" else str(d / "bot.db")
    assert state is not None
    seed_store = ("import json, sys; from bot.io.state import open_store; s = open_store(sys.argv[1]); "
                  "s.put('bot', json.loads(sys.argv[2])); s.close()")
    subprocess.run([sys.executable, "-c", seed_store, state, json.dumps(halted_snapshot(code_root))],  # noqa: S603
                   cwd=code_root, env=env_for(code_root), check=True)
    with testnet() as tn:
        bot = Bot(code_root, tn, d, state, d)
        if not bot.start():
            return f"first start failed: {bot.tail()}"
        before = bot.status().get("trading")
        bot.stop()
        lose(how, d / "bot.db", redis_url)
        bot = Bot(code_root, tn, d, state, d)
        try:
            if not bot.start():
                code = bot.proc.wait(5) if bot.proc is not None else None
                return f"halted before -> refused to start (exit {code}): {bot.tail(1)}"
            status = bot.status()
            return f"{before} before -> {status.get('trading')} after ({status.get('board', {}).get('reasons')})"
        finally:
            bot.stop()


def torn_figure(code_root: Path, kills: int, record_kib: int, work: Path) -> tuple[str, list[str]]:
    """The torn-tail line and its problems: an appender that wrote nothing makes "0 torn tails"
    of nothing; a refusal is the failure the figure exists to catch."""
    kills, wrote, torn, refusals = torn_tails(code_root, kills, record_kib, work)
    line = (f"kill -9 of an appending process, {record_kib} KiB records: {kills} kills ({wrote} with records), "
            f"{torn} torn tails, {refusals} kill-switch CLI refusals")
    found = [f"{refusals} kill-switch CLI refusals after a torn tail (it must never refuse)"] if refusals else []
    if kills and not wrote:
        found.append(f"no kill of {kills} found a record in the audit log: the appender wrote nothing, "
                     "the figure measures nothing")
    return line, found


def disk_problems(line: str) -> list[str]:
    if line.startswith("not measured"):
        return []
    return [] if line.startswith("HTTP 200,") and "(flat after" in line and "bot alive" in line else \
        [f"the immediate kill switch on a full disk did not flatten through a live bot: {line}"]


def lost_problems(how: str, line: str) -> list[str]:
    """A lost state must never come back `active`; the bot must have been halted before, and its
    halt after must name the loss (a halt restored from the saved state shows nothing was lost)."""
    if line.startswith("not measured"):
        return []
    if line.startswith("halted before -> refused to start"):
        return []
    before, _, after = line.partition(" before -> ")
    found = []
    if before != "halted":
        found.append(f"state lost ({how}): the bot was {before!r} before the loss, not halted: the seeded "
                     "state was not kept, the figure measures nothing")
    if after.startswith("active"):
        found.append(f"state lost ({how}): came back active after the loss: {line}")
    elif "state lost" not in after and "damaged" not in after:
        found.append(f"state lost ({how}): the halt after names no loss (the saved halt came back): nothing was "
                     f"lost, the figure measures nothing: {line}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of the appending process (default 100)")
    parser.add_argument("--record-kib", type=int, default=1024, help="size of each audit record (default 1024 KiB)")
    parser.add_argument("--code-root", type=Path, default=ROOT, help="the checkout whose bot and CLI are measured")
    parser.add_argument("--skip", action="append", default=[], choices=["torn", "disk", "lost"])
    args = parser.parse_args()
    code_root = args.code_root.resolve()
    work = Path(tempfile.mkdtemp(prefix="bench-bookkeeping-"))
    print(f"code measured: {code_root}")
    found: list[str] = []
    try:
        if "torn" not in args.skip:
            line, problems = torn_figure(code_root, args.kills, args.record_kib, work)
            print(line)
            found += problems
        if "disk" not in args.skip:
            line = full_disk(code_root, work)
            print(f"immediate kill switch through the control API, state dir full: {line}")
            found += disk_problems(line)
        if "lost" not in args.skip:
            redis = provide_redis()
            try:
                url = f"redis://{redis.handle.host}:{redis.handle.port}/0" if redis.handle else None
                for how in ("delete", "empty", "garbage", "flush"):
                    if how == "flush" and url is None:
                        print(f"state lost ({how}): not measured: {redis.reason}")
                        continue
                    line = lost_state(code_root, work, how, url)
                    print(f"state lost ({how}): {line}")
                    found += lost_problems(how, line)
            finally:
                if redis.handle is not None:
                    redis.handle.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for problem in found:
        print(f"FAIL: {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
