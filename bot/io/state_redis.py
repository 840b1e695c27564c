"""RedisStore: the shared state store when several bot processes share breaker state.

Fails fast on purpose. redis-py's defaults retry a dead server for seconds; here every socket
operation has an explicit timeout and the retry policy is explicit and bounded: connection
errors and timeouts (TimeoutError is in the Retry's supported errors; the deprecated
`retry_on_timeout` flag is not used) are retried `retries` times with exponential backoff capped
at `backoff_cap`. Worst case for a server that accepts nothing is about
``(retries + 1) * max(socket_timeout, connect_timeout) + retries * backoff_cap``, ~1 s with the
defaults; a refused connection fails in milliseconds. Every failure surfaces as StateStoreError.

`update` is optimistic: WATCH key, GET, compute, MULTI/SET/EXEC, and start over when another
writer changed the key in between — no update is lost with several writer processes.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from bot.io.state import (
    JsonObject,
    StateStoreError,
    check_key,
    decode_envelope,
    encode_envelope,
)


def _check_database(url: str) -> None:
    """redis-py reads a non-numeric database (`redis://host:6379/abc`) as database 0: refuse it."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        # name the database, never the URL: it may carry a password
        raise StateStoreError(f"redis: bad URL: database {path!r} is not a number "
                              "(redis://HOST:PORT/N with N = 0, 1, ...)")


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gameday:",
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        retries: int = 1,
        backoff_cap: float = 0.1,
        max_update_attempts: int = 1000,
    ) -> None:
        if retries < 0 or max_update_attempts < 1:
            raise ValueError("retries must be >= 0 and max_update_attempts >= 1")
        self.prefix = prefix
        self.max_update_attempts = max_update_attempts
        _check_database(url)
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(
                    ExponentialBackoff(cap=backoff_cap, base=min(0.01, backoff_cap)),
                    retries,
                    supported_errors=(RedisConnectionError, RedisTimeoutError, socket.timeout),
                ),
                health_check_interval=0,
            )
        except ValueError as exc:  # malformed URL
            raise StateStoreError(f"redis: bad URL: {exc}") from exc
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        # Never put the URL itself in messages: it may carry a password.
        self.name = f"redis://{where}/{kwargs.get('db', 0)}"

    def _key(self, key: str) -> str:
        check_key(key)
        return self.prefix + key

    @contextmanager
    def _errors(self, key: str = "*") -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise StateStoreError(f"{self.name}:{key}: {type(exc).__name__}: {exc}") from exc

    def _decode(self, rkey: str, raw: Any) -> JsonObject | None:
        if raw is None:
            return None
        return decode_envelope(raw, store=self.name, key=rkey)

    def get(self, key: str) -> JsonObject | None:
        rkey = self._key(key)
        with self._errors(rkey):
            raw = self._client.get(rkey)
        return self._decode(rkey, raw)

    def put(self, key: str, value: JsonObject) -> None:
        rkey = self._key(key)
        text = encode_envelope(value)
        with self._errors(rkey):
            self._client.set(rkey, text)

    def update(self, key: str, fn: Callable[[JsonObject | None], JsonObject]) -> JsonObject:
        """Atomic read-modify-write (WATCH/MULTI/EXEC, retried on conflict).

        `fn` may run several times; only the result of the run whose EXEC succeeded is stored.
        A corrupt current value raises CorruptStateError instead of being overwritten. If the
        connection drops during EXEC the outcome is unknown and StateStoreError says so.
        """
        rkey = self._key(key)
        with self._errors(rkey):
            for attempt in range(self.max_update_attempts):
                with self._client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(rkey)  # type: ignore[no-untyped-call]
                        current = self._decode(rkey, pipe.get(rkey))
                    except WatchError as exc:  # connection lost while watching: nothing written
                        raise StateStoreError(f"{self.name}:{rkey}: {exc}") from exc
                    new = fn(current)
                    text = encode_envelope(new)
                    pipe.multi()
                    pipe.set(rkey, text)
                    try:
                        pipe.execute()
                    except WatchError as exc:
                        if isinstance(exc.__context__, RedisConnectionError | RedisTimeoutError):
                            raise StateStoreError(
                                f"{self.name}:{rkey}: connection lost during EXEC, update outcome unknown"
                            ) from exc
                        time.sleep(random.uniform(0, min(0.001 * (attempt + 1), 0.02)))
                        continue
                    return new
        raise StateStoreError(f"{self.name}:{rkey}: update gave up after {self.max_update_attempts} conflicts")

    def delete(self, key: str) -> None:
        rkey = self._key(key)
        with self._errors(rkey):
            self._client.delete(rkey)

    def set_aside(self, key: str, new_key: str) -> bool:
        rkey, rnew = self._key(key), self._key(new_key)
        with self._errors(rkey):
            try:
                self._client.rename(rkey, rnew)
            except redis.ResponseError:  # "no such key"
                return False
        return True

    def keys(self) -> list[str]:
        """Keys under this store's prefix, without the prefix."""
        with self._errors():
            raw = self._client.scan_iter(match=_glob_escape(self.prefix) + "*", count=500)
            names = (k.decode() if isinstance(k, bytes) else str(k) for k in raw)
            return sorted(name[len(self.prefix):] for name in names)

    def ping(self) -> None:
        with self._errors():
            self._client.ping()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
