"""Redaction: a loaded secret never reaches a log line, a stream, an event file or a traceback.

Every secret the bot loads (bot.io.secrets, bot.io.credentials) is registered here, together with
the forms it takes when text is escaped on the way out (JSON, repr, URL encoding). `redact(text)`
replaces each of them with `***`.

`install()` makes that true for the whole process, for as long as it is installed (the bot installs
it for the life of `python -m bot ...`):
- logging: a record factory redacts every record as it is made, on every logger, including the
  formatted exception and stack; a `RedactingFilter` on every handler that exists catches records
  made by other means (`logging.makeLogRecord`, a queue listener);
- `sys.stdout` / `sys.stderr`: wrapped line by line, so `print(..., file=sys.stderr)`, warnings and
  the default tracebacks are redacted, also when a secret is split over several writes;
- `sys.excepthook` / `threading.excepthook`: uncaught exceptions are formatted, redacted, printed;
- secret-looking environment variables (`*_SECRET`, `*_TOKEN`, `*_PASSWORD`, `*_API_KEY`, ...) are
  registered as they are, whoever reads them.
Writers of structured output (the event file) use `redact_obj` before serialising, which keeps
the structure intact.

A value shorter than MIN_LENGTH is not registered: redacting two letters everywhere would garble
every message and protect nothing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4
ENV_MIN_LENGTH = 8
SECRET_ENV_NAME = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|API_KEY|PRIVATE_KEY|ENCRYPTION_KEY|WEBHOOK_URL)$", re.IGNORECASE)


class SecretRegistry:
    """The registered secrets (and their escaped forms) and one compiled pattern for all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
                 repr(value)[1:-1], quote(value, safe=""), quote_plus(value, safe="")}
        forms = {f for f in forms if len(f) >= MIN_LENGTH}
        with self._lock:
            if forms <= self._forms:
                return
            self._forms |= forms
            # longest first: a secret that contains another is replaced whole
            alternatives = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))

    def clear(self) -> None:
        with self._lock:
            self._forms.clear()
            self._pattern = None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            return text
        while True:  # until nothing matches: a replacement must not join pieces into a secret
            redacted = pattern.sub(MASK, text)
            if redacted == text:
                return text
            text = redacted

    def __len__(self) -> int:
        return len(self._forms)


_REGISTRY = SecretRegistry()


def register_secret(value: str | None) -> None:
    """From now on `value` is redacted wherever the bot writes (None and short values are ignored)."""
    if value and len(value) >= MIN_LENGTH:
        _REGISTRY.add(value)


def redact(text: str) -> str:
    return _REGISTRY.redact(text)


def redact_obj(value: Any) -> Any:
    """A copy of a JSON-like value with every string (keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)) if isinstance(k, str) else k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value


def register_secret_env(env: Mapping[str, str] | None = None) -> None:
    """Register every environment variable whose name says it holds a secret and whose value looks
    like one (at least ENV_MIN_LENGTH characters: `DISABLE_TOKEN=true` must not mask every `true`)."""
    env = os.environ if env is None else env
    for name, value in env.items():
        if SECRET_ENV_NAME.search(name) and len(value.strip()) >= ENV_MIN_LENGTH:
            register_secret(value.strip())


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place: its message, formatted exception and stack (idempotent)."""
    if getattr(record, "_gameday_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what there is, as text
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._gameday_redacted = True


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record it sees and lets it pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what it forwards, a whole line at a time (so a secret written in
    pieces is still caught); `flush()` forwards a pending partial line."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self.inner = inner
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            head, sep, tail = self._pending.rpartition("\n")
            if sep:
                self._pending = tail
                self.inner.write(redact(head + sep))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.inner.write(redact(self._pending))
                self._pending = ""
        self.inner.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "errors", None)


def _print_redacted(exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(redact(text))
    sys.stderr.flush()


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    sys.stderr.write(redact(f"Exception in thread {name}:\n"))
    _print_redacted(args.exc_type, args.exc_value, args.exc_traceback)


_installed = 0
_install_lock = threading.Lock()


@contextmanager
def install(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Redact everything the process writes while the block runs (see the module docstring).

    Nested installs are free; the outermost one restores the streams, hooks and logging as they
    were, and forgets the registered secrets.
    """
    global _installed
    with _install_lock:
        _installed += 1
        outermost = _installed == 1
    if not outermost:
        try:
            yield
        finally:
            with _install_lock:
                _installed -= 1
        return
    register_secret_env(env)
    old_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    log_filter = RedactingFilter()
    handlers = _all_handlers()
    for handler in handlers:
        handler.addFilter(log_filter)
    old_out, old_err = sys.stdout, sys.stderr
    old_hook, old_thread_hook = sys.excepthook, threading.excepthook
    sys.stdout, sys.stderr = RedactingStream(old_out), RedactingStream(old_err)
    sys.excepthook, threading.excepthook = _print_redacted, _thread_hook
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, RedactingStream):
                stream.flush()
        sys.stdout, sys.stderr = old_out, old_err
        sys.excepthook, threading.excepthook = old_hook, old_thread_hook
        logging.setLogRecordFactory(old_factory)
        for handler in handlers:
            handler.removeFilter(log_filter)
        _REGISTRY.clear()
        with _install_lock:
            _installed -= 1


def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    seen: dict[int, logging.Handler] = {}
    for lg in loggers:
        for handler in lg.handlers:
            seen[id(handler)] = handler
    if logging.lastResort is not None:
        seen[id(logging.lastResort)] = logging.lastResort
    return list(seen.values())
