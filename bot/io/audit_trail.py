"""The audit log as the bot and the kill switch use it: recording never stands in the way of acting.

`AuditTrail.record()` never raises for a write that fails. The record is kept instead, in memory and
in a spill file beside the log (``<log>.pending-<pid>-<nonce>``, one JSON object per line, fsynced),
and `record()` returns the reason; the caller acts anyway and reports that recording failed.
`retry()` (the bot calls it on its timer; `close()` calls it once more) reopens the log and appends
what was kept, in order, behind one ``audit.late`` record that says how many records follow late,
from when, and why - so no record is lost silently and the chain stays verifiable.

A spill file is locked (flock) by the process that writes it for as long as it lives. Whoever
opens the log next - the bot or the kill switch - takes over the spill files whose writer is gone
and appends their records late too; the ``audit.late`` record names each spill file with the
sha256 of its content, so a crash between the append and the deletion of the spill does not append
it twice. Records that could be neither written nor spilled (the disk is full) stay in memory;
`close()` returns them so a short-lived caller (the CLI) can print them.

Opening repairs a torn tail (bot.io.audit); an existing chain broken inside sets `chain_error`
(the bot refuses to start; the kill switch acts and says it could not audit). With
`verify_chain` the whole file is verified on open, not only its tail (the bot does this); what was
verified is kept in ``<log>.verified`` so the next start checks only what was appended since (a
speed-up, not a proof: `python -m bot audit verify` always checks the whole file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.io.audit import (
    REPAIR_ACTOR,
    AuditChainError,
    AuditError,
    AuditLog,
    AuditWriteError,
    Repair,
    VerifiedPrefix,
    canonical_json,
    find_last,
    redact,
    verify,
)
from bot.io.disk import REAL_DISK, Disk

_SPILL_FIELDS = ("actor", "action", "details", "ts_ms", "error")


@dataclass
class Kept:
    """A record that could not be written yet."""

    actor: str
    action: str
    details: dict[str, Any]
    ts_ms: int
    error: str  # why it could not be written when it was made
    spilled: bool = False  # a spill file holds it too

    def line(self) -> bytes:
        return canonical_json({"actor": self.actor, "action": self.action, "details": self.details,
                               "ts_ms": self.ts_ms, "error": self.error}).encode("ascii") + b"\n"


@dataclass(frozen=True)
class Witness:
    """The last `state.saved` record for a state key: proof that a snapshot of this generation existed."""

    generation: int
    ts_ms: int
    seq: int | None  # its line in the log (None: not written yet, still kept in memory)


def _json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    clean = redact(details)
    try:
        canonical_json(clean)
    except (TypeError, ValueError):  # a value JSON cannot hold: keep what it said, never drop the record
        return {"unserialisable": repr(clean)[:2000]}
    return dict(clean)


class AuditTrail:
    def __init__(self, path: str | os.PathLike[str], *, now_ms: Callable[[], int], disk: Disk = REAL_DISK,
                 verify_chain: bool = False, hmac_key: bytes | None = None) -> None:
        self.path = Path(path)
        self.disk = disk
        self._hmac_key = hmac_key  # authenticates every record (bot.io.audit_anchor.audit_hmac_key)
        self._head: tuple[int, str] | None = None  # (seq, hash) of the last record known written
        self._now_ms = now_ms
        self.problem: str | None = None  # why records cannot be written now
        self.chain_error: str | None = None  # the chain found in the file is broken inside
        self.spill_problem: str | None = None  # why records could not be spilled either
        self._pending: list[Kept] = []
        self._new_repairs: list[Repair] = []
        self._log: AuditLog | None = None
        self._repairs_seen = 0
        self._attempted: list[tuple[str, Kept | None]] = []  # (record hash, kept) of a failed write
        self._spill: tuple[int, Path] | None = None  # our spill file (fd, locked for our lifetime)
        self._spilled = 0  # records written to it
        self._old_spills: list[tuple[int, Path]] = []  # ours, not written to after a failed write
        self._adopted: dict[Path, tuple[int, str]] = {}  # a dead writer's spill: (fd we lock, sha256)
        self._unreadable_spill_lines = 0
        self._log = self._open(verify_chain)
        if self._log is not None:
            self._flush()

    # --- what callers use -------------------------------------------------------------------

    @property
    def down(self) -> bool:
        """True while records are being kept instead of written."""
        return self._log is None or bool(self._pending)

    @property
    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record written: the anchor the bot keeps apart from the log
        (state store, heartbeat); None before the log was ever opened."""
        if self._log is not None:
            self._head = (self._log.seq, self._log.head)
        return self._head

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, actor: str, action: str, details: Mapping[str, Any], ts_ms: int | None = None) -> str | None:
        """Append one record; None when it is durable, else why not (it is kept and written later)."""
        ts = self._now_ms() if ts_ms is None else ts_ms
        clean = _json_safe(details)
        kept = Kept(actor, action, clean, ts, "")
        if self._log is not None and not self._pending:
            try:
                self._log.append(actor, action, clean, ts)
                self._collect_repairs(self._log)
                return None
            except AuditWriteError as exc:
                self._write_failed(exc, [kept])
            except (AuditError, OSError) as exc:  # e.g. another process broke the chain since we opened it
                self._lose_log(str(exc), chain=isinstance(exc, AuditChainError))
        kept.error = self.problem or "the audit log is not open"
        self._keep(kept)
        return self.problem

    def retry(self) -> bool:
        """Reopen the log if needed and write what was kept; True when nothing is kept any more."""
        if not self.down:
            return True
        if self._log is None:
            # a chain found broken is verified whole again: never extend it because its tail looks fine
            self._log = self._open(verify_chain=self.chain_error is not None)
            if self._log is None:
                return False
        return self._flush()

    def take_repairs(self) -> list[Repair]:
        """Torn tails cut since the last call (the bot announces each as `audit.repaired`)."""
        out, self._new_repairs = self._new_repairs, []
        return out

    def last_saved(self, key: str) -> tuple[Witness | None, str | None]:
        """(witness, problem): the newest `state.saved` record for `key`, or why it cannot be known."""
        for kept in reversed(self._pending):
            if kept.action == "state.saved" and kept.details.get("key") == key:
                return self._witness(kept.details, kept.ts_ms, None)
        try:
            found = find_last(self.path, "state.saved", {"key": key})
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{self.path}: cannot be read to learn whether a state snapshot existed: {exc}"
        if found is None:
            return None, None
        return self._witness(found["details"], found.get("ts_ms"), found.get("seq"))

    def close(self) -> list[Kept]:
        """Write what is kept if possible; returns the records that are neither written nor in a spill file."""
        if self.down:
            self.retry()
        if self._log is not None:
            self._head = (self._log.seq, self._log.head)
            self._log.close()
            self._log = None
        left = [k for k in self._pending if not k.spilled]
        for fd, path in [*self._old_spills, *([self._spill] if self._spill else [])]:
            if not self._pending:
                path.unlink(missing_ok=True)
            os.close(fd)
        for fd, _ in self._adopted.values():
            os.close(fd)  # their records stay in the files, for the next opener
        self._spill, self._old_spills, self._adopted = None, [], {}
        return left

    def abandon(self) -> None:
        """Let go of every file without writing anything, as a process that dies does (a crash
        drill): what was only in memory is gone, the spill files stay for the next opener."""
        if self._log is not None:
            self._head = (self._log.seq, self._log.head)
            self._log.close()
            self._log = None
        for fd, _ in [*self._old_spills, *([self._spill] if self._spill else []), *self._adopted.values()]:
            os.close(fd)
        self._spill, self._old_spills, self._adopted, self._pending = None, [], {}, []

    # --- opening and flushing -----------------------------------------------------------------

    def _open(self, verify_chain: bool = False) -> AuditLog | None:
        try:
            log = AuditLog(self.path, disk=self.disk, now_ms=self._now_ms, hmac_key=self._hmac_key)
        except AuditWriteError as exc:  # the repair record could not be written: keep it
            if exc.repair is not None:
                self._new_repairs.append(exc.repair)
                self._keep(Kept(REPAIR_ACTOR, "audit.repaired", exc.repair.details(), self._now_ms(), str(exc)))
            self._set_problem(str(exc))
            return None
        except AuditChainError as exc:
            self._set_problem(str(exc), chain=True)
            return None
        except (AuditError, OSError) as exc:
            self._set_problem(f"{self.path}: cannot be opened for appending: {exc}")
            return None
        self._repairs_seen = 0
        self._collect_repairs(log)
        if verify_chain:
            try:
                result = verify(self.path, resume=self._verified_prefix())
            except OSError as exc:
                log.close()
                self._set_problem(f"{self.path}: cannot be read to verify its chain: {exc}")
                return None
            if not result.ok:
                log.close()
                self._set_problem(f"{self.path}:{result.first_bad_line}: {result.reason}", chain=True)
                return None
            self._keep_verified_prefix(result.prefix)
        self.chain_error = None
        self._forget_written(log)
        return log

    def _checkpoint_path(self) -> Path:
        return self.path.with_name(self.path.name + ".verified")

    def _verified_prefix(self) -> VerifiedPrefix | None:
        """What an earlier open verified (a speed-up of the bot's start only: a prefix whose last
        line is no longer where it was is not used, and `audit verify` always checks everything)."""
        try:
            return VerifiedPrefix.from_dict(json.loads(self._checkpoint_path().read_bytes()))
        except (OSError, ValueError):
            return None

    def _keep_verified_prefix(self, prefix: VerifiedPrefix | None) -> None:
        if prefix is None:
            return
        target = self._checkpoint_path()
        tmp = target.with_name(target.name + ".tmp")
        with contextlib.suppress(OSError):  # best effort: without it the next start verifies everything
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                self.disk.write_all(fd, canonical_json(prefix.to_dict()).encode("ascii"))
            finally:
                os.close(fd)
            os.replace(tmp, target)

    def _flush(self) -> bool:
        assert self._log is not None
        self._adopt_spills()
        if not self._pending and not self._unreadable_spill_lines:
            self._drop_spill_files()
            self.problem = None
            return True
        batch = list(self._pending)
        marker = Kept(REPAIR_ACTOR, "audit.late", self._late_details(batch), self._now_ms(), "")
        entries = [(k.actor, k.action, k.details, k.ts_ms) for k in (marker, *batch)]
        try:
            self._log.append_batch(entries)
        except AuditWriteError as exc:
            self._write_failed(exc, [None, *batch])
            return False
        except (AuditError, OSError) as exc:
            self._lose_log(str(exc), chain=isinstance(exc, AuditChainError))
            return False
        self._collect_repairs(self._log)
        self._pending = []
        self._unreadable_spill_lines = 0
        self._drop_spill_files()
        self.problem = None
        return True

    def _drop_spill_files(self) -> None:
        """Everything they held is in the log now."""
        for fd, path in [*self._old_spills, *([self._spill] if self._spill else []),
                         *((fd, path) for path, (fd, _) in self._adopted.items())]:
            path.unlink(missing_ok=True)
            os.close(fd)
        self._spill, self._old_spills, self._adopted = None, [], {}

    def _late_details(self, batch: list[Kept]) -> dict[str, Any]:
        spills = {path.name: sha for path, (_, sha) in self._adopted.items()}
        for _, path in [*self._old_spills, *([self._spill] if self._spill else [])]:
            with contextlib.suppress(OSError):
                spills[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        reason = batch[0].error if batch else "spill files of writers that died held only torn lines"
        details: dict[str, Any] = {"records": len(batch),
                                   "first_ts_ms": min(k.ts_ms for k in batch) if batch else None,
                                   "last_ts_ms": max(k.ts_ms for k in batch) if batch else None,
                                   "reason": (reason or "unknown")[:300], "spills": spills}
        if self._unreadable_spill_lines:
            details["unreadable_spill_lines"] = self._unreadable_spill_lines
        return details

    # --- failures -------------------------------------------------------------------------------

    def _set_problem(self, problem: str, *, chain: bool = False) -> None:
        self.problem = problem
        if chain:
            self.chain_error = problem

    def _lose_log(self, problem: str, *, chain: bool = False) -> None:
        if self._log is not None:
            self._head = (self._log.seq, self._log.head)
            self._log.close()
            self._log = None
        self._set_problem(problem, chain=chain)

    def _write_failed(self, exc: AuditWriteError, kept: list[Kept | None]) -> None:
        """Some of the attempted records may be in the file: remember them to drop them on reopen."""
        self._attempted = [(str(r["hash"]), k) for r, k in zip(exc.attempted, kept, strict=False)]
        self._lose_log(str(exc))

    def _forget_written(self, log: AuditLog) -> None:
        """After a reopen: records of the failed write that did reach the file are not kept again."""
        attempted, self._attempted = self._attempted, []
        if not attempted:
            return
        head = log.repairs[0].after_hash if log.repairs else log.head  # before any cut this open made
        hashes = [h for h, _ in attempted]
        if head not in hashes:
            return
        written = {id(k) for _, k in attempted[:hashes.index(head) + 1] if k is not None}
        self._pending = [k for k in self._pending if id(k) not in written]

    def _collect_repairs(self, log: AuditLog) -> None:
        self._new_repairs.extend(log.repairs[self._repairs_seen:])
        self._repairs_seen = len(log.repairs)

    # --- spill files ----------------------------------------------------------------------------

    def _keep(self, kept: Kept) -> None:
        self._pending.append(kept)
        try:
            if self._spill is None:
                name = f"{self.path.name}.pending-{os.getpid()}-{secrets.token_hex(4)}"
                path = self.path.with_name(name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._spill, self._spilled = (fd, path), 0
            self.disk.write_all(self._spill[0], kept.line())
            self.disk.fsync(self._spill[0])
        except OSError as exc:
            self.spill_problem = f"{type(exc).__name__}: {exc}"
            if self._spill is not None:  # it may end in a torn line now: never write to it again
                if self._spilled:
                    self._old_spills.append(self._spill)
                else:  # it holds nothing usable
                    self._spill[1].unlink(missing_ok=True)
                    os.close(self._spill[0])
                self._spill = None
            return
        kept.spilled = True
        self._spilled += 1
        self.spill_problem = None

    def _adopt_spills(self) -> None:
        """Take over the spill files of writers that are gone (their lock is free)."""
        ours = {p for _, p in [*self._old_spills, *([self._spill] if self._spill else [])]} | set(self._adopted)
        try:
            candidates = [p for p in sorted(self.path.parent.glob(f"{self.path.name}.pending-*")) if p not in ours]
        except OSError:
            return
        flushed = self._flushed_spills() if candidates else {}
        found: list[Kept] = []
        for path in candidates:
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                data = path.read_bytes()
            except OSError:  # its writer still lives (BlockingIOError), or it cannot be read
                os.close(fd)
                continue
            sha = hashlib.sha256(data).hexdigest()
            if flushed.get(path.name) == sha:  # appended already; the writer died before deleting it
                path.unlink(missing_ok=True)
                os.close(fd)
                continue
            self._adopted[path] = (fd, sha)
            found.extend(self._parse_spill(data))
        found.sort(key=lambda k: k.ts_ms)
        self._pending[:0] = found

    def _flushed_spills(self) -> dict[str, str]:
        try:
            last = find_last(self.path, "audit.late")
        except OSError:
            return {}
        spills = (last or {}).get("details", {}).get("spills")
        return {str(k): str(v) for k, v in spills.items()} if isinstance(spills, dict) else {}

    def _parse_spill(self, data: bytes) -> list[Kept]:
        out: list[Kept] = []
        for raw in data.split(b"\n"):
            if not raw:
                continue
            try:
                obj = json.loads(raw)
                if not (isinstance(obj, dict) and all(f in obj for f in _SPILL_FIELDS)
                        and isinstance(obj["details"], dict) and type(obj["ts_ms"]) is int):
                    raise ValueError("not a kept record")
                out.append(Kept(str(obj["actor"]), str(obj["action"]), obj["details"], obj["ts_ms"],
                                str(obj["error"]), spilled=True))
            except ValueError:  # a torn line (its writer died mid-write): counted in audit.late
                self._unreadable_spill_lines += 1
        return out

    @staticmethod
    def _witness(details: Mapping[str, Any], ts_ms: Any, seq: Any) -> tuple[Witness | None, str | None]:
        generation = details.get("generation")
        if type(generation) is not int or generation < 0:
            return None, f"the last state.saved record has no valid generation ({generation!r})"
        return Witness(generation, int(ts_ms or 0), seq if isinstance(seq, int) else None), None
