"""One contract for every StateStore: SqliteStore (embedded default) and RedisStore (shared).

The bot keeps breaker states, cooldowns and the kill switch here; what it relies on is that a
value survives the process that wrote it, that concurrent writers lose nothing, that a writer
killed mid-write leaves a readable value, and that damage is reported, never returned as data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.io.state import CorruptStateError, StateStore, StateStoreError, open_store
from bot.io.state_redis import RedisStore
from bot.io.state_sqlite import SqliteStore

CHILD = r"""
import json, sys
from bot.io.state import open_store

target, prefix, key, mode = sys.argv[1:5]
store = open_store(target, prefix=prefix)
if mode == "put":
    store.put(key, json.loads(sys.argv[5]))
elif mode == "get":
    print(json.dumps(store.get(key)))
else:  # "count:N" or "count:forever": increment via update, print each committed value
    limit = mode.split(":", 1)[1]
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go" so that writers really run at the same time
    done = 0
    while limit == "forever" or done < int(limit):
        value = store.update(key, lambda cur: {"n": (cur or {"n": 0})["n"] + 1})
        print(value["n"], flush=True)
        done += 1
store.close()
"""


@dataclass
class Backend:
    kind: str
    target: str
    prefix: str

    def open(self) -> StateStore:
        return open_store(self.target, prefix=self.prefix)

    def write_raw(self, key: str, raw: bytes) -> None:
        """Overwrite the stored bytes of `key` behind the store's back."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as db:
                db.execute("UPDATE state SET value = ? WHERE key = ?", (raw.decode("latin-1"), key))
        else:
            client = redis.Redis.from_url(self.target)
            client.set(self.prefix + key, raw)
            client.close()

    def read_raw(self, key: str) -> bytes | None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as db:
                row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0]).encode("latin-1")
        client = redis.Redis.from_url(self.target)
        try:
            value = client.get(self.prefix + key)
            assert value is None or isinstance(value, bytes)
            return value
        finally:
            client.close()

    def child(self, key: str, mode: str, *extra: str, **popen: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, self.target, self.prefix, key, mode, *extra],
            text=True, stdout=subprocess.PIPE, stdin=subprocess.PIPE, **popen,
        )


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", str(tmp_path / "state.db"), "gameday:")
        return
    url = request.getfixturevalue("gameday_redis").url
    prefix = f"gameday-test-{uuid.uuid4().hex[:12]}:"  # isolates tests on a shared server
    yield Backend("redis", url, prefix)
    client = redis.Redis.from_url(url)
    for k in client.scan_iter(match=prefix + "*"):
        client.delete(k)
    client.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[StateStore]:
    s = backend.open()
    yield s
    s.close()


def increment(cur: dict[str, Any] | None) -> dict[str, Any]:
    return {"n": (cur or {"n": 0})["n"] + 1}


# --- basic contract ---------------------------------------------------------------------------

def test_open_store_picks_the_backend(backend: Backend) -> None:
    s = backend.open()
    assert isinstance(s, SqliteStore if backend.kind == "sqlite" else RedisStore)
    s.ping()
    s.close()


def test_missing_key_reads_as_none(store: StateStore) -> None:
    assert store.get("never-written") is None


def test_put_then_get_returns_the_value(store: StateStore) -> None:
    value = {"state": "tripped", "until_ms": 1_767_323_045_678, "levels": [1.5, 3.0], "by": None}
    store.put("breaker.drawdown", value)
    assert store.get("breaker.drawdown") == value
    store.put("breaker.drawdown", {"state": "armed"})
    assert store.get("breaker.drawdown") == {"state": "armed"}


def test_delete_removes_the_key_and_is_idempotent(store: StateStore) -> None:
    store.put("killswitch", {"engaged": True})
    store.delete("killswitch")
    assert store.get("killswitch") is None
    store.delete("killswitch")
    assert store.get("killswitch") is None


def test_update_sees_current_value_and_stores_result(store: StateStore) -> None:
    seen: list[Any] = []

    def fn(cur: dict[str, Any] | None) -> dict[str, Any]:
        seen.append(cur)
        return increment(cur)

    assert store.update("peak", fn) == {"n": 1}
    assert store.update("peak", fn) == {"n": 2}
    assert seen[0] is None and seen[-1] == {"n": 1}
    assert store.get("peak") == {"n": 2}


def test_update_that_raises_leaves_the_value_unchanged(store: StateStore) -> None:
    store.put("cooldown", {"until_ms": 5})

    def boom(cur: dict[str, Any] | None) -> dict[str, Any]:
        raise RuntimeError("policy refused")

    with pytest.raises(RuntimeError, match="policy refused"):
        store.update("cooldown", boom)
    assert store.get("cooldown") == {"until_ms": 5}
    assert store.update("cooldown", lambda cur: {"until_ms": (cur or {})["until_ms"] + 1}) == {"until_ms": 6}


def test_update_is_atomic_across_threads(store: StateStore, backend: Backend) -> None:
    stores = [backend.open() for _ in range(4)]
    results: list[int] = []
    lock = threading.Lock()

    def worker(s: StateStore) -> None:
        for _ in range(25):
            n = s.update("counter", increment)["n"]
            with lock:
                results.append(n)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert store.get("counter") == {"n": 100}
    assert sorted(results) == list(range(1, 101))  # every committed value handed out exactly once


def test_values_that_are_not_json_objects_are_refused(store: StateStore) -> None:
    with pytest.raises(TypeError):
        store.put("k", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.put("k", {"x": float("nan")})
    with pytest.raises(TypeError):
        store.put("k", {"when": object()})
    with pytest.raises(ValueError):
        store.get("")
    assert store.get("k") is None


# --- damage is reported, never returned -------------------------------------------------------

CORRUPTIONS = {
    "not json": b'{"v":1,"sha256":"ab',
    "not an envelope": b'{"state":"armed"}',
    "unknown version": b'{"sha256":"00","v":2,"value":{}}',
    "digest mismatch": None,  # filled in from the real stored bytes, with the value edited
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_corrupt_value_raises_naming_the_key(store: StateStore, backend: Backend, damage: str) -> None:
    store.put("killswitch", {"engaged": True, "mode": "immediate"})
    store.put("neighbour", {"ok": 1})
    raw = CORRUPTIONS[damage]
    if raw is None:
        original = backend.read_raw("killswitch")
        assert original is not None and b'"engaged":true' in original
        raw = original.replace(b'"engaged":true', b'"engaged":false')
    backend.write_raw("killswitch", raw)

    with pytest.raises(CorruptStateError, match="killswitch") as info:
        store.get("killswitch")
    if damage == "digest mismatch":
        assert "sha256 mismatch" in str(info.value)
    # update refuses to build on (or overwrite) a damaged value
    with pytest.raises(CorruptStateError, match="killswitch"):
        store.update("killswitch", lambda cur: {"engaged": False})
    assert backend.read_raw("killswitch") == raw
    assert store.get("neighbour") == {"ok": 1}
    # an explicit put (operator repair) replaces the damaged value
    store.put("killswitch", {"engaged": True, "mode": "immediate"})
    assert store.get("killswitch") == {"engaged": True, "mode": "immediate"}


# --- across processes -------------------------------------------------------------------------

def test_state_written_by_one_process_is_read_by_a_new_process(backend: Backend) -> None:
    value = {"breakers": {"drawdown": "tripped"}, "killswitch": {"engaged": True}, "peak_equity": 10250.5}
    writer = backend.child("state", "put", json.dumps(value))
    assert writer.wait(timeout=30) == 0
    reader = backend.child("state", "get")
    out, _ = reader.communicate(timeout=30)
    assert reader.returncode == 0
    assert json.loads(out) == value


def _start_writers(backend: Backend, count: int, mode: str) -> list[subprocess.Popen[str]]:
    writers = [backend.child("counter", mode) for _ in range(count)]
    for w in writers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    for w in writers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    return writers


def test_two_writer_processes_lose_no_update(backend: Backend) -> None:
    writers = _start_writers(backend, 2, "count:200")
    handed_out: list[int] = []
    for w in writers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0
        handed_out += [int(line) for line in out.split()]
    store = backend.open()
    assert store.get("counter") == {"n": 400}
    store.close()
    assert sorted(handed_out) == list(range(1, 401))  # no value committed twice, none skipped


def test_writer_killed_mid_loop_leaves_a_readable_committed_value(backend: Backend) -> None:
    (writer,) = _start_writers(backend, 1, "count:forever")
    assert writer.stdout is not None
    last = 0
    while last < 40:
        line = writer.stdout.readline()
        assert line, "writer exited early"
        last = int(line)
    os.kill(writer.pid, signal.SIGKILL)
    # read through the text buffer: communicate() reads the raw pipe and would drop the lines
    # readline() already pulled into it, so a committed value would look "unreported"
    rest = writer.stdout.read()
    assert writer.wait(timeout=30) == -signal.SIGKILL
    last = max([last, *(int(x) for x in rest.split())])

    store = backend.open()
    value = store.get("counter")
    assert value is not None
    # every value the writer reported committed is there; at most one more committed unreported
    assert last <= value["n"] <= last + 1
    assert store.update("counter", increment) == {"n": value["n"] + 1}
    store.close()


# --- arbitrary JSON objects round-trip --------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_objects, key=st.text(min_size=1, max_size=40))
def test_any_json_object_round_trips(store: StateStore, value: dict[str, Any], key: str) -> None:
    store.put(key, value)
    assert store.get(key) == value
    assert store.update(key, lambda cur: {"wrapped": cur}) == {"wrapped": value}
    assert store.get(key) == {"wrapped": value}
    store.delete(key)


# --- failures of the store itself -------------------------------------------------------------

ALL_CALLS: dict[str, Callable[[StateStore], object]] = {
    "get": lambda s: s.get("k"),
    "put": lambda s: s.put("k", {"a": 1}),
    "update": lambda s: s.update("k", increment),
    "delete": lambda s: s.delete("k"),
    "ping": lambda s: s.ping(),
}


@pytest.mark.parametrize("call", sorted(ALL_CALLS))
def test_redis_that_went_down_raises_state_store_error(disposable_redis: Any, call: str) -> None:
    store = RedisStore(f"redis://127.0.0.1:{disposable_redis.port}/0")
    store.put("k", {"a": 1})  # connected and working
    disposable_redis.stop()
    with pytest.raises(StateStoreError) as info:
        ALL_CALLS[call](store)
    assert not isinstance(info.value, CorruptStateError)
    store.close()


@pytest.mark.parametrize("call", sorted(ALL_CALLS))
def test_redis_on_a_closed_port_raises_state_store_error(call: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    store = RedisStore(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(StateStoreError):
        ALL_CALLS[call](store)
    store.close()


def test_redis_that_accepts_but_never_answers_raises_instead_of_hanging() -> None:
    """A hung server (accepts TCP, never replies) must hit the socket timeout, not block forever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        store = RedisStore(f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                store.get("k")
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        t = threading.Thread(target=call, daemon=True)
        t.start()
        t.join(timeout=10)  # a guard against hanging the suite, not a measurement
        assert not t.is_alive(), "RedisStore.get blocked on a server that never answers"
        assert len(outcome) == 1 and isinstance(outcome[0], StateStoreError)
        store.close()


def test_redis_error_messages_do_not_leak_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(f"redis://:hunter2-s3cret@127.0.0.1:{port}/0")
    with pytest.raises(StateStoreError) as info:
        store.get("k")
    assert "hunter2" not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)
    store.close()


def test_sqlite_path_that_cannot_be_created_raises_state_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StateStoreError, match="a-file"):
        SqliteStore(blocker / "state.db")


def test_sqlite_file_that_is_not_a_database_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an SQLite database, it is a text file " * 100)
    with pytest.raises(StateStoreError, match="state.db"):
        store = SqliteStore(path)
        store.get("k")
