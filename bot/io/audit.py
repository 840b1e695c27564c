"""Append-only, hash-chained JSONL audit log, fsynced per record.

One record per line, each line the canonical JSON (sorted keys, no spaces, ASCII only) of::

    {"seq": 1, "ts": "2026-01-02T03:04:05.678Z", "ts_ms": 1767323045678, "actor": "operator:alice",
     "action": "killswitch.engage", "details": {...}, "prev": "<sha256 of the previous line>",
     "hash": "<sha256 of this record without 'hash'>"}

With an HMAC key (bot.io.audit_anchor: kept apart from the log, in the environment / secrets
loader) each record also carries ``"mac"``: the hex HMAC-SHA256 of the canonical JSON of the record
without "hash" and "mac"; `hash` then covers the mac too. Without the key nobody can write a record
that `verify(hmac_key=...)` accepts, so an edit or a rewrite is found at the first record it touched.

`seq` starts at 1 and equals the line number. `prev` is the hex sha256 of the previous line's
bytes (without its newline), ``"0" * 64`` for the first record. `hash` is the hex sha256 of the
canonical JSON of the record without its "hash" field.

`AuditLog.append` writes the line and fsyncs the file (and, when it created the file, the
directory) before it returns: a caller reports an action done only after `append` returned.

A torn last line (a crash during an append: bytes after the last newline) is repaired when the
log is opened: the bytes are cut off (and kept beside the log in ``<log>.torn-<seq>-<sha>``), and
an ``audit.repaired`` record (details: cut_bytes, cut_sha256, after_seq, saved_to) is appended.
The append that was torn never returned, so nothing it recorded had been reported done. A line
that is complete but wrong (an edit) is never repaired: opening refuses with the line number.

What `verify` proves from the file alone: any edited byte, any deleted, inserted or reordered
line, a torn last line. A log cut at a record boundary (whole last records removed) is a
valid shorter log; to detect that, keep the last record's hash somewhere else (`AuditLog.head`;
the bot keeps it in its state store, heartbeats and evidence sets: bot.io.audit_anchor) and pass it
as ``expect_head``, or let `python -m bot audit verify FILE` find the anchors. `verify` also
lists every repair and every batch of records written late (``audit.late``) it finds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.io.disk import REAL_DISK, Disk

GENESIS = "0" * 64
REDACTED = "***"
FIELDS = frozenset({"seq", "ts", "ts_ms", "actor", "action", "details", "prev", "hash"})
MAC_FIELDS = FIELDS | {"mac"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Key names (lower-cased, with everything but letters and digits removed) that contain one of
# these are redacted. "keyid" / "key_id" is deliberately not matched: it names a key, it is not one.
_SECRET_KEY_PARTS = ("secret", "password", "passwd", "passphrase", "token", "privatekey")


class AuditError(Exception):
    """The audit log cannot be written or trusted."""


class AuditChainError(AuditError):
    """The existing log's chain is broken; the message names the file and line."""


@dataclass(frozen=True)
class Repair:
    """A torn last line cut off when the log was opened."""

    cut_bytes: int
    cut_sha256: str
    after_seq: int  # the last whole record, kept
    after_hash: str  # its hash (GENESIS when nothing was kept)
    saved_to: str | None  # where the cut bytes were kept (None: they could not be written)

    def details(self) -> dict[str, Any]:
        return {"cut_bytes": self.cut_bytes, "cut_sha256": self.cut_sha256, "after_seq": self.after_seq,
                "saved_to": self.saved_to}


class AuditWriteError(AuditError):
    """Records (or the repair record written on open) did not become durable. `attempted` are the
    records of the failed write - some may be in the file; `repair` is set when the failed write
    was the record of a repair already done (the cut is gone, its record is not written)."""

    def __init__(self, message: str, attempted: Sequence[Mapping[str, Any]], repair: Repair | None = None) -> None:
        super().__init__(message)
        self.attempted = [dict(r) for r in attempted]
        self.repair = repair


Entry = tuple[str, str, Mapping[str, Any], int]  # actor, action, details, ts_ms
REPAIR_ACTOR = "audit"


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


def record_mac(record: Mapping[str, Any], key: bytes) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return hmac.new(key, canonical_json(body).encode("ascii"), hashlib.sha256).hexdigest()


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
    if set(record) not in (FIELDS, MAC_FIELDS):
        missing = sorted(FIELDS - set(record))
        extra = sorted(set(record) - MAC_FIELDS)
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
    repairs: tuple[tuple[int, dict[str, Any]], ...] = ()  # (line, details) of each audit.repaired record
    late: tuple[tuple[int, dict[str, Any]], ...] = ()  # (line, details) of each audit.late record
    prefix: VerifiedPrefix | None = None  # when ok: the whole file, to resume from next time
    unauthenticated: int = 0  # with an HMAC key: records before the first one carrying a mac


@dataclass(frozen=True)
class VerifiedPrefix:
    """The first `records` lines (`size` bytes) of a log, verified: their bytes hash to
    `prefix_sha256`, and the last of them (without newline) to `last_sha256`."""

    records: int
    size: int
    prefix_sha256: str
    last_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "size": self.size, "prefix_sha256": self.prefix_sha256,
                "last_sha256": self.last_sha256}

    @classmethod
    def from_dict(cls, data: Any) -> VerifiedPrefix | None:
        try:
            records, size, prefix, last = (data[k] for k in ("records", "size", "prefix_sha256", "last_sha256"))
        except (KeyError, TypeError):
            return None
        if not (type(records) is int and type(size) is int and records > 0 and size > 0
                and isinstance(prefix, str) and isinstance(last, str)):
            return None
        return cls(records, size, prefix, last)


def verify(path: str | os.PathLike[str], *, expect_head: str | None = None,
           resume: VerifiedPrefix | None = None, hmac_key: bytes | None = None) -> VerifyResult:
    """Check the whole chain of the log at `path`; stop at the first bad line.

    `expect_head`: hash of a record known (from elsewhere) to have been in the log; when given,
    a log that does not contain it — e.g. cut after its last records — fails.
    `resume`: a prefix verified before (the bot keeps one beside the log, to check only what was
    appended since its last start): skipped when the file still starts with exactly those bytes
    (their sha256, which costs far less than parsing them), else the whole file is checked.
    `hmac_key`: every record from the first one carrying a mac on must carry a mac made with this
    key (records before it were written before the key was configured: counted in `unauthenticated`);
    a log with no mac at all fails. Never combined with `resume`.
    `python -m bot audit verify` never resumes.
    Raises OSError when the file cannot be read.
    """
    prev = GENESIS
    count = 0
    seen_head = expect_head is None
    digest = hashlib.sha256()  # of every byte verified so far: the prefix a later resume may skip
    size = 0
    repairs: list[tuple[int, dict[str, Any]]] = []
    late: list[tuple[int, dict[str, Any]]] = []

    authenticated = 0
    unauthenticated = 0

    def result(ok: bool, bad: int | None, reason: str | None) -> VerifyResult:
        prefix = VerifiedPrefix(count, size, digest.hexdigest(), prev) if ok and count else None
        return VerifyResult(ok, count, bad, reason, prev, tuple(repairs), tuple(late), prefix, unauthenticated)

    with open(path, "rb") as f:
        if resume is not None and expect_head is None and hmac_key is None:
            seen = hashlib.sha256()
            left = resume.size
            while left > 0 and (chunk := f.read(min(left, 1 << 20))):
                seen.update(chunk)
                left -= len(chunk)
            if left == 0 and seen.hexdigest() == resume.prefix_sha256:  # byte for byte what was verified
                prev, count, size, digest = resume.last_sha256, resume.records, resume.size, seen
        f.seek(size)
        for lineno, line in enumerate(f, start=count + 1):
            if not line.endswith(b"\n"):
                return result(False, lineno, f"torn last line: {len(line)} bytes without a newline after record "
                                             f"{count} (a crash during an append); the bot and the kill switch cut "
                                             "it on their next open and record audit.repaired")
            record, reason = _check_line(line[:-1], lineno, prev)
            if record is None:
                return result(False, lineno, reason)
            if hmac_key is not None:
                if "mac" in record:
                    if not hmac.compare_digest(record["mac"], record_mac(record, hmac_key)):
                        return result(False, lineno, f"HMAC does not match: rewritten from seq {lineno} (this record "
                                                     "was edited or written by someone without the audit key)")
                    authenticated += 1
                elif authenticated:
                    return result(False, lineno, f"no HMAC after {authenticated} authenticated records: rewritten "
                                                 f"from seq {lineno} (written without the audit key)")
                else:
                    unauthenticated += 1
            count += 1
            prev = _sha256(line[:-1])
            digest.update(line)
            size += len(line)
            if record["hash"] == expect_head:
                seen_head = True
            if record["action"] == "audit.repaired":
                repairs.append((lineno, record["details"]))
            elif record["action"] == "audit.late":
                late.append((lineno, record["details"]))
    if not seen_head:
        return result(False, count + 1, f"record {expect_head} is not in the log: records were removed from the "
                                        "end (or the log was replaced)")
    if hmac_key is not None and count and not authenticated:
        return result(False, 1, "no record carries an HMAC: the log was written without the audit key (or "
                                "rewritten whole by someone without it)")
    return result(True, None, None)


def find_last(path: str | os.PathLike[str], action: str, where: Mapping[str, Any] | None = None
              ) -> dict[str, Any] | None:
    """The last record of `action` whose details hold every item of `where`, reading the file
    backwards from its end (cheap when such records are frequent). Lines are parsed, not
    verified (that is `verify`'s job). Raises OSError when the file cannot be read."""
    needle = b'"action":' + json.dumps(action).encode("ascii")
    wanted = dict(where or {})
    with open(path, "rb") as f:
        pos = os.fstat(f.fileno()).st_size
        rest = b""
        block = 65536
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + rest).split(b"\n")
            rest, complete = (lines[0], lines[1:]) if pos > 0 else (b"", lines)
            for raw in reversed(complete):
                if needle not in raw:
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                details = record.get("details") if isinstance(record, dict) else None
                if (record.get("action") == action and isinstance(details, dict)
                        and all(details.get(k) == v for k, v in wanted.items())):
                    return dict(record)
            block = min(block * 2, 1 << 22)
    return None


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


def _end_of_last_line(f: Any, size: int) -> int:
    """Offset just past the file's last newline (0 when there is none)."""
    pos = size
    block = 8192
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        i: int = f.read(step).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
        block = min(block * 2, 1 << 22)
    return 0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class AuditLog:
    """Appends records to one JSONL file, continuing the chain found there.

    Opening checks the tail only (the last line parses, is canonical, matches its hash and links
    to the line before it) and raises AuditChainError naming the line otherwise; checking the
    whole file is `verify`'s job. A torn last line (bytes after the last newline: a crash during
    an append, which therefore never returned) is cut and the cut recorded (module docstring);
    `repairs` lists what this instance cut, on open or when another process's crash left one.

    Safe across threads, and across processes appending to the same file (flock per append).
    After a failed write or fsync the file is cut back to where it was (no part of a record whose
    append failed stays behind) and the log refuses further appends: whether the cut itself
    reached the disk is unknown - open it again (the reopen repairs a torn tail if it did not).
    `disk` carries the write/fsync calls; `now_ms` stamps the repair records (default: wall clock);
    `hmac_key` authenticates every record written (module docstring).
    """

    def __init__(self, path: str | os.PathLike[str], *, disk: Disk = REAL_DISK,
                 now_ms: Callable[[], int] | None = None, hmac_key: bytes | None = None) -> None:
        self.path = Path(path)
        self.disk = disk
        self._hmac_key = hmac_key
        self._now_ms = now_ms or _wall_ms
        self._lock = threading.Lock()
        self._failed: str | None = None
        self.repairs: list[Repair] = []
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            created = False
        self._fd = fd
        try:
            if created:
                disk.fsync(fd)
                disk.fsync_dir(self.path.parent)
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
        """Read the chain's end (under the file lock); cut a torn last line."""
        size = os.fstat(self._fd).st_size
        self._size = size
        self._seq, self._prev_line_hash, self._head = 0, GENESIS, GENESIS
        if size == 0:
            return
        with open(self.path, "rb") as f:
            whole = _end_of_last_line(f, size)
            cut = b""
            if whole < size:
                f.seek(whole)
                cut = f.read(size - whole)
            tail = _read_tail_lines(f, whole) if whole else []
        if len(tail) >= 2:
            self._check_tail(tail)
        if cut:
            self._repair(whole, cut)

    def _check_tail(self, tail: list[bytes]) -> None:
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
        if before is not None:  # name the edited line itself, not only the broken link after it
            try:
                before_prev = json.loads(before.decode("ascii")).get("prev")
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                before_prev = None
            checked_before, why = _check_line(before, seq - 1, before_prev if isinstance(before_prev, str) else "")
            if checked_before is None:
                raise AuditChainError(f"{self.path}:{seq - 1}: {why}: refusing to continue a broken chain")
        checked, reason = _check_line(last, seq, prev)
        if checked is None:
            raise AuditChainError(f"{self.path}:{seq}: {reason}: refusing to continue a broken chain")
        self._seq = seq
        self._prev_line_hash = _sha256(last)
        self._head = checked["hash"]

    def _repair(self, whole: int, cut: bytes) -> None:
        digest = _sha256(cut)
        saved = self._save_cut(cut, digest)
        try:
            os.ftruncate(self._fd, whole)
            self.disk.fsync(self._fd)
        except OSError as exc:
            raise AuditError(f"{self.path}: a torn last line ({len(cut)} bytes) could not be cut: {exc}") from exc
        self._size = whole
        repair = Repair(len(cut), digest, self._seq, self._head, saved)
        self.repairs.append(repair)
        try:
            self._write_locked([(REPAIR_ACTOR, "audit.repaired", repair.details(), self._now_ms())])
        except AuditWriteError as exc:
            exc.repair = repair
            raise

    def _save_cut(self, cut: bytes, digest: str) -> str | None:
        """Keep the cut bytes beside the log for inspection (best effort: the cut goes on without)."""
        target = self.path.with_name(f"{self.path.name}.torn-{self._seq + 1}-{digest[:12]}")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return str(target)  # the same bytes, cut before (named by their digest)
        except OSError:
            return None
        try:
            self.disk.write_all(fd, cut)
            self.disk.fsync(fd)
        except OSError:
            os.close(fd)
            target.unlink(missing_ok=True)
            return None
        os.close(fd)
        return str(target)

    def append(self, actor: str, action: str, details: Mapping[str, Any], ts_ms: int) -> dict[str, Any]:
        """Write one record and fsync it; returns the record as written (details redacted)."""
        return self.append_batch([(actor, action, details, ts_ms)])[0]

    def append_batch(self, entries: Sequence[Entry]) -> list[dict[str, Any]]:
        """Write records with one write and one fsync (a crash leaves a prefix of them, and at most a
        torn last line the next open cuts); returns them as written (details redacted)."""
        clean: list[Entry] = []
        for actor, action, details, ts_ms in entries:
            if not isinstance(actor, str) or not actor or not isinstance(action, str) or not action:
                raise ValueError("actor and action must be non-empty strings")
            if type(ts_ms) is not int:
                raise TypeError(f"ts_ms must be an int (milliseconds since the epoch), got {type(ts_ms).__name__}")
            if not isinstance(details, Mapping):
                raise TypeError(f"details must be a mapping, got {type(details).__name__}")
            redacted = redact(details)
            canonical_json(redacted)  # refuse non-JSON / NaN details before touching the file
            clean.append((actor, action, redacted, ts_ms))
        if not clean:
            return []
        with self._lock:
            if self._failed is not None:
                raise AuditError(f"{self.path}: an earlier append failed ({self._failed}); reopen the log")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size != self._size:
                    self._load_tail()  # another process appended (or crashed appending) since our last look
                return self._write_locked(clean)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _write_locked(self, entries: Sequence[Entry]) -> list[dict[str, Any]]:
        """Chain, write and fsync `entries` (checked, redacted); the caller holds the file lock."""
        records: list[dict[str, Any]] = []
        lines: list[bytes] = []
        seq, prev = self._seq, self._prev_line_hash
        for actor, action, details, ts_ms in entries:
            seq += 1
            record: dict[str, Any] = {"seq": seq, "ts": iso_utc(ts_ms), "ts_ms": ts_ms, "actor": actor,
                                      "action": action, "details": dict(details), "prev": prev}
            if self._hmac_key is not None:
                record["mac"] = record_mac(record, self._hmac_key)
            record["hash"] = _record_hash(record)
            line = canonical_json(record).encode("ascii")
            prev = _sha256(line)
            records.append(record)
            lines.append(line)
        data = b"\n".join(lines) + b"\n"
        try:
            self.disk.write_all(self._fd, data)
            self.disk.fsync(self._fd)
        except OSError as exc:
            self._failed = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(OSError):  # leave no part of an unacknowledged write behind
                os.ftruncate(self._fd, self._size)
            raise AuditWriteError(f"{self.path}: append not durable: {exc}", records) from exc
        self._seq, self._prev_line_hash, self._head = seq, prev, records[-1]["hash"]
        self._size += len(data)
        return records

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
