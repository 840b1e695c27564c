"""Append-only, hash-chained JSONL audit log, fsynced per record.

One record per line, each line the canonical JSON (sorted keys, no spaces, ASCII only) of::

    {"seq": 1, "ts": "2026-01-02T03:04:05.678Z", "ts_ms": 1767323045678, "actor": "operator:alice",
     "action": "killswitch.engage", "details": {...}, "prev": "<sha256 of the previous line>",
     "hash": "<sha256 of this record without 'hash'>"}

`seq` starts at 1 and equals the line number. `prev` is the hex sha256 of the previous line's
bytes (without its newline), ``"0" * 64`` for the first record. `hash` is the hex sha256 of the
canonical JSON of the record without its "hash" field.

`AuditLog.append` writes the line and fsyncs the file (and, when it created the file, the
directory) before it returns: a caller reports an action done only after `append` returned.

What `verify` proves from the file alone: any edited byte, any deleted, inserted or reordered
line, a truncated last line. A log cut at a record boundary (whole last records removed) is a
valid shorter log; to detect that, keep the last record's hash somewhere else (`AuditLog.head`)
and pass it as ``expect_head`` (`python -m bot audit verify FILE --head HASH`).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
REDACTED = "***"
FIELDS = frozenset({"seq", "ts", "ts_ms", "actor", "action", "details", "prev", "hash"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Key names (lower-cased, with everything but letters and digits removed) that contain one of
# these are redacted. "keyid" / "key_id" is deliberately not matched: it names a key, it is not one.
_SECRET_KEY_PARTS = ("secret", "password", "passwd", "passphrase", "token", "privatekey")


class AuditError(Exception):
    """The audit log cannot be written or trusted."""


class AuditChainError(AuditError):
    """The existing log's chain is broken; the message names the file and line."""


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, ASCII only, no NaN/Infinity: one text per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso_utc(ts_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, computed exactly from integer milliseconds."""
    moment = _EPOCH + timedelta(milliseconds=ts_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def is_secret_key(name: str) -> bool:
    folded = re.sub(r"[^0-9a-z]", "", name.lower())
    return any(part in folded for part in _SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """Copy of `value` with the value of every secret-named key replaced by "***", at any depth.

    Redaction is by key name only (secret, api_secret, password, passphrase, token, private_key
    and names containing them, case-insensitive). A secret passed under an innocent key name,
    or inside a free-text string, is NOT detected: callers must not put secrets in details.
    """
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _record_hash(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return _sha256(canonical_json(body).encode("ascii"))


def _check_line(raw: bytes, lineno: int, prev: str) -> tuple[dict[str, Any] | None, str]:
    """Parse and check one line (without newline). Returns (record, "") or (None, reason)."""
    if not raw:
        return None, "empty line"
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        return None, f"non-ASCII byte at column {exc.start + 1} (the log is ASCII-only: edited?)"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON at column {exc.colno}: {exc.msg}"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    if set(record) != FIELDS:
        missing = sorted(FIELDS - set(record))
        extra = sorted(set(record) - FIELDS)
        return None, f"wrong fields (missing {missing}, unexpected {extra})"
    seq, ts_ms = record["seq"], record["ts_ms"]
    if type(seq) is not int or type(ts_ms) is not int:
        return None, "seq and ts_ms must be integers"
    if not isinstance(record["actor"], str) or not isinstance(record["action"], str):
        return None, "actor and action must be strings"
    if not isinstance(record["details"], dict):
        return None, "details must be an object"
    try:
        canonical = canonical_json(record)
    except ValueError as exc:
        return None, f"not canonical JSON: {exc}"
    if canonical != text:
        return None, "line is not in canonical form (edited?)"
    if record["hash"] != _record_hash(record):
        return None, "hash does not match the record's content (record edited)"
    if seq != lineno:
        return None, f"seq is {seq}, expected {lineno} (a line was deleted, inserted or reordered)"
    if record["prev"] != prev:
        return None, "prev does not match the previous line (a line was deleted, inserted, reordered or edited)"
    if record["ts"] != iso_utc(ts_ms):
        return None, f"ts {record['ts']!r} does not match ts_ms {ts_ms}"
    return record, ""


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records checked good (all of them when ok; those before first_bad_line otherwise)
    first_bad_line: int | None
    reason: str | None
    last_hash: str = GENESIS  # hash of the last good record (GENESIS for an empty log)


def verify(path: str | os.PathLike[str], *, expect_head: str | None = None) -> VerifyResult:
    """Check the whole chain of the log at `path`; stop at the first bad line.

    `expect_head`: hash of a record known (from elsewhere) to have been in the log; when given,
    a log that does not contain it — e.g. cut after its last records — fails.
    Raises OSError when the file cannot be read.
    """
    prev = GENESIS
    count = 0
    seen_head = expect_head is None
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return VerifyResult(False, count, lineno, "truncated last line (no newline at end of file)", prev)
            record, reason = _check_line(line[:-1], lineno, prev)
            if record is None:
                return VerifyResult(False, count, lineno, reason, prev)
            count += 1
            prev = _sha256(line[:-1])
            if record["hash"] == expect_head:
                seen_head = True
    if not seen_head:
        return VerifyResult(
            False, count, count + 1,
            f"record {expect_head} is not in the log: records were removed from the end (or the log was replaced)",
            prev,
        )
    return VerifyResult(True, count, None, None, prev)


def _read_tail_lines(f: Any, size: int, want: int = 2) -> list[bytes]:
    """The last `want` lines of a file of `size` bytes (the last one may lack its newline)."""
    block = 8192
    pos = size
    data = b""
    while pos > 0 and data.count(b"\n") <= want:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        block *= 2
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # the first piece may be a partial line
    return lines[-(want + 1):]  # with a trailing "" when the file ends with a newline


class AuditLog:
    """Appends records to one JSONL file, continuing the chain found there.

    Opening checks the tail only (the last line parses, is canonical, matches its hash and links
    to the line before it) and raises AuditChainError naming the line otherwise; checking the
    whole file is `verify`'s job. A torn last line (crash during an append that therefore never
    returned) is refused too: an operator inspects it and truncates it before the bot goes on.

    Safe across threads, and across processes appending to the same file (flock per append).
    After a failed write or fsync the log refuses further appends: whether the record is
    durable is unknown, and the chain in memory can no longer be trusted.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._failed: str | None = None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            created = False
        self._fd = fd
        try:
            if created:
                os.fsync(fd)
                _fsync_dir(self.path.parent)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._load_tail()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise

    @property
    def head(self) -> str:
        """Hash of the last record (GENESIS when empty): keep it elsewhere to anchor `verify`."""
        return self._head

    @property
    def seq(self) -> int:
        """seq of the last record (0 when empty)."""
        return self._seq

    def _load_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        self._size = size
        self._seq, self._prev_line_hash, self._head = 0, GENESIS, GENESIS
        if size == 0:
            return
        with open(self.path, "rb") as f:
            tail = _read_tail_lines(f, size)
        if tail[-1] != b"":
            raise AuditChainError(
                f"{self.path}: last line is incomplete (no newline; a crash during append?): "
                f"refusing to continue; run `python -m bot audit verify {self.path}`"
            )
        last = tail[-2]
        before = tail[-3] if len(tail) >= 3 else None
        try:
            record = json.loads(last.decode("ascii"))
            seq = record["seq"]
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
            raise AuditChainError(
                f"{self.path}: last line does not parse as an audit record: refusing to continue"
            ) from None
        if type(seq) is not int or seq < 1:
            raise AuditChainError(f"{self.path}: last line has no valid seq: refusing to continue")
        prev = _sha256(before) if before is not None else GENESIS
        if before is None and seq != 1:
            raise AuditChainError(f"{self.path}:{seq}: first line of the file has seq {seq}, expected 1")
        checked, reason = _check_line(last, seq, prev)
        if checked is None:
            raise AuditChainError(f"{self.path}:{seq}: {reason}: refusing to continue a broken chain")
        self._seq = seq
        self._prev_line_hash = _sha256(last)
        self._head = checked["hash"]

    def append(self, actor: str, action: str, details: Mapping[str, Any], ts_ms: int) -> dict[str, Any]:
        """Write one record and fsync it; returns the record as written (details redacted)."""
        if not isinstance(actor, str) or not actor or not isinstance(action, str) or not action:
            raise ValueError("actor and action must be non-empty strings")
        if type(ts_ms) is not int:
            raise TypeError(f"ts_ms must be an int (milliseconds since the epoch), got {type(ts_ms).__name__}")
        if not isinstance(details, Mapping):
            raise TypeError(f"details must be a mapping, got {type(details).__name__}")
        clean = redact(details)
        canonical_json(clean)  # refuse non-JSON / NaN details before touching the file
        with self._lock:
            if self._failed is not None:
                raise AuditError(f"{self.path}: an earlier append failed ({self._failed}); reopen the log")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size != self._size:
                    self._load_tail()  # another process appended since our last look
                record: dict[str, Any] = {
                    "seq": self._seq + 1,
                    "ts": iso_utc(ts_ms),
                    "ts_ms": ts_ms,
                    "actor": actor,
                    "action": action,
                    "details": clean,
                    "prev": self._prev_line_hash,
                }
                record["hash"] = _record_hash(record)
                line = canonical_json(record).encode("ascii")
                try:
                    _write_all(self._fd, line + b"\n")
                    os.fsync(self._fd)
                except OSError as exc:
                    self._failed = f"{type(exc).__name__}: {exc}"
                    raise AuditError(f"{self.path}: append not durable: {exc}") from exc
                self._seq = record["seq"]
                self._prev_line_hash = _sha256(line)
                self._head = record["hash"]
                self._size += len(line) + 1
                return record
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main_verify(argv: Sequence[str]) -> int:
    """`python -m bot audit verify FILE [--head HASH]`: 0 intact, 1 broken, 2 cannot read."""
    parser = argparse.ArgumentParser(prog="python -m bot audit verify")
    parser.add_argument("file")
    parser.add_argument("--head", help="hash of a record that must be in the log (detects a cut tail)")
    args = parser.parse_args(list(argv))
    if args.head is not None and not _HEX64.fullmatch(args.head):
        print(f"--head must be 64 lowercase hex characters, got {args.head!r}", file=sys.stderr)
        return 2
    try:
        result = verify(args.file, expect_head=args.head)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"ok: {result.records} records, chain intact")
        return 0
    print(f"{args.file}:{result.first_bad_line}: {result.reason}")
    return 1
