"""SqliteStore: the bot's embedded default state store.

WAL journal, `synchronous=FULL`: a transaction that committed is on disk, so a writer killed
with SIGKILL (or a power cut) loses nothing it committed and leaves no partial write — the
next open rolls back whatever was in flight. `update` runs under `BEGIN IMMEDIATE`, which takes
the database's write lock before reading, so read-modify-write is atomic across processes.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bot.io.state import (
    CorruptStateError,
    JsonObject,
    StateStoreError,
    check_key,
    decode_envelope,
    encode_envelope,
)

_SCHEMA = "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
T = TypeVar("T")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _BUSY_CODES


class SqliteStore:
    """State in one SQLite file. One connection per instance, usable from several threads."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.name = f"sqlite:{self.path}"
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions, we issue BEGIN ourselves.
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StateStoreError(f"{self.name}: cannot open: {exc}") from exc
        try:
            self._retrying("*", self._init_schema)
        except BaseException:
            self._db.close()
            raise

    def _init_schema(self) -> None:
        self._db.execute("PRAGMA synchronous=FULL")  # per connection
        # WAL is a property of the file: switch only when needed (the switch takes an exclusive lock).
        deadline = time.monotonic() + self.busy_timeout
        while str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal" and time.monotonic() >= deadline:
                raise StateStoreError(f"{self.name}: cannot enable WAL journal (still {mode!r})")
            time.sleep(0.005)
        self._db.execute(_SCHEMA)

    def _retrying(self, key: str, op: Callable[[], T]) -> T:
        """Run `op` under the lock; retry it while SQLite reports busy/locked, up to busy_timeout.

        SQLite's own busy handler covers most waits, but some (a journal-mode switch, WAL
        recovery or cleanup by another connection) return SQLITE_BUSY at once. `op` must be
        safe to repeat: it either completed its transaction or rolled it back when it raised.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        with self._errors(key):
            while True:
                with self._lock:
                    try:
                        return op()
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc) or time.monotonic() >= deadline:
                            raise
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.05)

    @contextmanager
    def _errors(self, key: str = "*") -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked, busy, I/O error, read-only, ...
            raise StateStoreError(f"{self.name}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            raise CorruptStateError(f"{self.name}:{key}: database file is damaged: {exc}") from exc

    def _decode(self, key: str, raw: object) -> JsonObject:
        if not isinstance(raw, str | bytes):
            raise CorruptStateError(f"{self.name}:{key}: stored value has SQL type {type(raw).__name__}")
        return decode_envelope(raw, store=self.name, key=key)

    def _select(self, key: str) -> JsonObject | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._decode(key, row[0])

    def get(self, key: str) -> JsonObject | None:
        check_key(key)
        return self._retrying(key, lambda: self._select(key))

    def put(self, key: str, value: JsonObject) -> None:
        check_key(key)
        text = encode_envelope(value)
        self._retrying(key, lambda: self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                                                     (key, text)))

    def update(self, key: str, fn: Callable[[JsonObject | None], JsonObject]) -> JsonObject:
        """Atomic read-modify-write under BEGIN IMMEDIATE (the write lock is taken before reading).

        A corrupt current value raises instead of being overwritten; an exception from `fn` rolls
        back and propagates. `fn` may run more than once if SQLite reports the file busy.
        """
        check_key(key)

        def transaction() -> JsonObject:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = fn(self._select(key))
                text = encode_envelope(new)
                self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, text))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return new

        return self._retrying(key, transaction)

    def delete(self, key: str) -> None:
        check_key(key)
        self._retrying(key, lambda: self._db.execute("DELETE FROM state WHERE key = ?", (key,)))

    def set_aside(self, key: str, new_key: str) -> bool:
        check_key(key)
        check_key(new_key)

        def move() -> bool:
            cursor = self._db.execute("UPDATE OR REPLACE state SET key = ? WHERE key = ?", (new_key, key))
            return cursor.rowcount > 0

        return self._retrying(key, move)

    def keys(self) -> list[str]:
        return self._retrying("*", lambda: [row[0] for row in self._db.execute("SELECT key FROM state ORDER BY key")])

    def ping(self) -> None:
        self._retrying("*", lambda: self._db.execute("SELECT count(*) FROM state").fetchone())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
