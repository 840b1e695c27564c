"""Durability costs: audit append+fsync, SqliteStore put/update, RedisStore update.

    .venv/bin/python benchmarks/bench_state.py [--n 500]

Writes under a temporary directory (so figures are those of that filesystem: set TMPDIR to
measure another disk) and starts a throwaway redis-server on a free loopback port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.io.audit import AuditLog
from bot.io.state_redis import RedisStore
from bot.io.state_sqlite import SqliteStore

BREAKER_STATE = {"breaker": "drawdown", "state": "armed", "value": 1.25, "threshold": 3.0, "until_ms": 0}


def increment(cur: dict[str, Any] | None) -> dict[str, Any]:
    return {**BREAKER_STATE, "n": (cur or {"n": 0})["n"] + 1}


def timed(n: int, op: Callable[[int], object]) -> list[float]:
    """Per-call durations in seconds."""
    out = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        out.append(time.perf_counter() - start)
    return out


def report(label: str, samples: list[float]) -> None:
    med = statistics.median(samples)
    p99 = sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]
    print(f"{label:<34} median {med * 1e6:9.1f} µs   p99 {p99 * 1e6:9.1f} µs   {1 / med:9.0f} ops/s (1/median)"
          f"   {len(samples) / sum(samples):9.0f} ops/s (mean)")


def start_redis() -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    return None


def kept(what: str, got: object, want: object) -> None:
    """A store that acknowledges and keeps nothing is fast: every figure is void unless what was
    written reads back."""
    if got != want:
        raise SystemExit(f"{what}: read back {got!r}, wrote {want!r}: the timed writes kept nothing, "
                         "the figure measures nothing")


def bench_files(root: Path, n: int) -> None:
    log = AuditLog(root / "audit.jsonl")
    details = {"mode": "immediate", "reason": "bench"}
    report("audit append+fsync", timed(n, lambda i: log.append(
        "operator:alice", "killswitch.engage", {**details, "i": i}, 1_700_000_000_000 + i
    )))
    log.close()
    lines = (root / "audit.jsonl").read_text(encoding="utf-8").splitlines() if (root / "audit.jsonl").exists() else []
    kept("audit log records", len(lines), n)

    sqlite = SqliteStore(root / "state.db")
    report("sqlite put (WAL, synchronous=FULL)", timed(n, lambda i: sqlite.put(f"breaker.{i % 8}", BREAKER_STATE)))
    report("sqlite update (BEGIN IMMEDIATE)", timed(n, lambda i: sqlite.update("counter", increment)))
    report("sqlite get", timed(n, lambda i: sqlite.get(f"breaker.{i % 8}")))
    sqlite.close()
    reopened = SqliteStore(root / "state.db")
    try:
        kept("sqlite put", reopened.get("breaker.0"), BREAKER_STATE)
        kept("sqlite update counter", (reopened.get("counter") or {}).get("n"), n)
    finally:
        reopened.close()


def bench_redis(url: str, n: int) -> None:
    store = RedisStore(url, prefix="bench:")
    try:
        report("redis put", timed(n, lambda i: store.put(f"breaker.{i % 8}", BREAKER_STATE)))
        report("redis update (WATCH/MULTI/EXEC)", timed(n, lambda i: store.update("counter", increment)))
        report("redis get", timed(n, lambda i: store.get(f"breaker.{i % 8}")))
        kept("redis put", store.get("breaker.0"), BREAKER_STATE)
        kept("redis update counter", (store.get("counter") or {}).get("n"), n)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="operations per measurement")
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="gameday-bench-") as tmp:
        print(f"n={n} per measurement, files under {tmp}")
        bench_files(Path(tmp), n)

    started = start_redis()
    if started is None:
        print("redis: skipped (no redis-server binary, or it did not start)")
        return
    proc, port = started
    try:
        bench_redis(f"redis://127.0.0.1:{port}/0", n)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
