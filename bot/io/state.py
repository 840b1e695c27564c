"""Durable state of the bot: breaker states, cooldown clocks, kill switch, peak equity.

Values are JSON objects stored in an envelope with a sha256 digest; a value that fails its
digest or does not parse raises `CorruptStateError`. The bot then treats its state as lost: it
comes up halted (manual resume required) and sets the damaged value aside (`set_aside`) before it
saves a new one (bot.runtime, "Lost state").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any, Protocol

JsonObject = dict[str, Any]


class StateStoreError(Exception):
    """The store cannot be reached or written."""


class CorruptStateError(StateStoreError):
    """A stored value is damaged; the message names the key and what is wrong."""


class StateStore(Protocol):
    name: str  # where the state lives, for messages (never a password)

    def get(self, key: str) -> JsonObject | None: ...
    def put(self, key: str, value: JsonObject) -> None: ...
    def update(self, key: str, fn: Callable[[JsonObject | None], JsonObject]) -> JsonObject:
        """Atomic read-modify-write: no update is lost when several processes write one key."""
    def delete(self, key: str) -> None: ...
    def set_aside(self, key: str, new_key: str) -> bool:
        """Move the stored value of `key`, as it is (damaged or not), to `new_key`; False if none."""
    def ping(self) -> None: ...
    def close(self) -> None: ...


class UnusableStore:
    """Stands in for a store that cannot even be opened (a state file that is not a database):
    every call raises the reason, so the bot comes up halted, stops new entries and says why,
    instead of refusing to run while a position may be open. The file is left as found."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def _fail(self, *args: object) -> Any:
        raise CorruptStateError(self.reason)

    get = put = update = delete = ping = _fail

    def set_aside(self, key: str, new_key: str) -> bool:
        return False  # nothing can be moved inside it: the whole file is left as found, for the operator

    def close(self) -> None:
        pass


ENVELOPE_VERSION = 1


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII only, no NaN/Infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def value_digest(value: JsonObject) -> str:
    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()


def check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"state key must be a non-empty string, got {key!r}")


def encode_envelope(value: JsonObject) -> str:
    """`{"v": 1, "sha256": <digest of canonical JSON of value>, "value": value}` as canonical JSON.

    Refuses what would not round-trip: a non-object, non-string keys, NaN/Infinity, non-JSON types.
    """
    if not isinstance(value, dict):
        raise TypeError(f"state values are JSON objects (dict), got {type(value).__name__}")
    try:
        value_text = canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"state value is not storable as JSON: {exc}") from exc
    if json.loads(value_text) != value:
        raise TypeError("state value does not round-trip through JSON (tuples, or non-string keys?)")
    digest = hashlib.sha256(value_text.encode("ascii")).hexdigest()
    return canonical_json({"v": ENVELOPE_VERSION, "sha256": digest, "value": value})


def decode_envelope(raw: str | bytes, *, store: str, key: str) -> JsonObject:
    """The value inside an envelope; CorruptStateError("<store>:<key>: <what is wrong>") if damaged."""
    where = f"{store}:{key}"
    try:
        envelope = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStateError(f"{where}: stored value is not valid JSON ({exc})") from None
    if not isinstance(envelope, dict) or set(envelope) != {"v", "sha256", "value"}:
        raise CorruptStateError(f"{where}: stored value is not a state envelope {{v, sha256, value}}")
    if envelope["v"] != ENVELOPE_VERSION:
        raise CorruptStateError(f"{where}: unknown envelope version {envelope['v']!r} (expected {ENVELOPE_VERSION})")
    value = envelope["value"]
    if not isinstance(value, dict):
        raise CorruptStateError(f"{where}: envelope value is not a JSON object")
    try:
        digest = value_digest(value)
    except ValueError as exc:
        raise CorruptStateError(f"{where}: envelope value is not canonical JSON ({exc})") from None
    if envelope["sha256"] != digest:
        raise CorruptStateError(
            f"{where}: sha256 mismatch (stored {str(envelope['sha256'])[:16]}…, computed {digest[:16]}…): "
            "the value was altered"
        )
    return value


def open_bot_store(target: str | os.PathLike[str], *, prefix: str = "gameday:") -> StateStore:
    """`open_store` for the bot itself: a store that is damaged beyond opening (CorruptStateError,
    e.g. "file is not a database") becomes an `UnusableStore` carrying the reason (module doc)."""
    try:
        return open_store(target, prefix=prefix)
    except CorruptStateError as exc:
        return UnusableStore(f"sqlite:{os.fspath(target)}", f"{exc} - move the file aside for inspection "
                             "(e.g. `mv FILE FILE.damaged`), restart, then resume manually")


def open_store(target: str | os.PathLike[str], *, prefix: str = "gameday:") -> StateStore:
    """"redis://…" / "rediss://…" / "unix://…" -> RedisStore (keys under `prefix`); anything else is a SQLite path."""
    text = os.fspath(target)
    if text.startswith(("redis://", "rediss://", "unix://")):
        from bot.io.secrets import CredentialError, redis_url_with_password
        from bot.io.state_redis import RedisStore

        try:  # the password may come from a secret (GAMEDAY_REDIS_PASSWORD) rather than the URL
            text = redis_url_with_password(text)
        except CredentialError as exc:
            raise StateStoreError(f"redis: {exc}") from None
        return RedisStore(text, prefix=prefix)
    from bot.io.state_sqlite import SqliteStore

    return SqliteStore(text)
