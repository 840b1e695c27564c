"""Durable state of the bot: breaker states, cooldown clocks, kill switch, peak equity.

Values are JSON objects stored in an envelope with a sha256 digest; a value that fails its
digest or does not parse raises `CorruptStateError`, and the bot refuses to trade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

JsonObject = dict[str, Any]


class StateStoreError(Exception):
    """The store cannot be reached or written."""


class CorruptStateError(StateStoreError):
    """A stored value is damaged; the message names the key and what is wrong."""


class StateStore(Protocol):
    def get(self, key: str) -> JsonObject | None: ...
    def put(self, key: str, value: JsonObject) -> None: ...
    def update(self, key: str, fn: Callable[[JsonObject | None], JsonObject]) -> JsonObject:
        """Atomic read-modify-write: no update is lost when several processes write one key."""
        ...
    def delete(self, key: str) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...
