"""AuditTrail: a write that fails never raises; what could not be written is kept and appended late,
once, behind an audit.late record - and the chain still verifies."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.io.audit import AuditLog, verify
from bot.io.audit_trail import AuditTrail
from bot.io.disk import Disk
from harness.sim.transport import SimDisk

T0 = 1_767_571_200_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def actions(path: Path) -> list[str]:
    return [r["action"] for r in records(path)]


def test_enospc_keeps_the_records_and_a_retry_appends_them_late_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, now_ms=Clock())
    assert trail.record("bot", "startup", {}) is None
    real_write = os.write

    def enospc(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)  # the whole disk: the spill file cannot be written either
    error = trail.record("operator:alice", "killswitch.engage", {"mode": "immediate"})
    assert error is not None and "No space left on device" in error
    assert trail.record("bot", "account.flat", {}) == error
    assert trail.down and trail.pending == 2 and trail.spill_problem is not None
    assert not trail.retry()
    monkeypatch.setattr(os, "write", real_write)
    assert trail.retry() and not trail.down
    assert actions(path) == ["startup", "audit.late", "killswitch.engage", "account.flat"]
    late = records(path)[1]["details"]
    assert late["records"] == 2 and "No space left" in late["reason"]
    assert trail.retry()  # nothing kept: nothing appended twice
    assert trail.close() == []
    assert actions(path) == ["startup", "audit.late", "killswitch.engage", "account.flat"]
    assert verify(path).ok


def test_a_short_write_then_enospc_leaves_nothing_and_the_retry_writes_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, now_ms=Clock())
    trail.record("bot", "startup", {})
    real_write = os.write
    calls: list[int] = []

    def short_then_enospc(fd: int, data: Any) -> int:
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:40]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    assert trail.record("operator:alice", "killswitch.engage", {"reason": "r" * 300}) is not None
    monkeypatch.setattr(os, "write", real_write)
    assert trail.retry() and trail.take_repairs() == []
    assert actions(path) == ["startup", "audit.late", "killswitch.engage"]
    assert verify(path).ok


def test_a_batch_torn_by_a_crash_is_cut_and_its_records_written_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    disk = SimDisk()
    trail = AuditTrail(path, now_ms=Clock(), disk=disk)
    trail.record("bot", "startup", {})
    disk.full = True
    trail.record("operator:alice", "killswitch.engage", {})
    trail.record("bot", "account.flat", {})
    disk.full = False
    with open(path, "ab") as fh:  # another process died mid-append meanwhile
        fh.write(b'{"seq":2,"ts"')
    assert trail.retry()
    assert [r.cut_bytes for r in trail.take_repairs()] == [13]
    assert actions(path) == ["startup", "audit.repaired", "audit.late", "killswitch.engage", "account.flat"]
    assert verify(path).ok


@pytest.mark.parametrize("cut_back", [True, False], ids=["cut-back", "cut-back-fails"])
def test_a_failed_fsync_after_a_complete_write_is_written_exactly_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_back: bool) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, now_ms=Clock())
    trail.record("bot", "startup", {})
    real_fsync, real_ftruncate = os.fsync, os.ftruncate

    def eio(*args: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    if not cut_back:  # the record stays in the file: the reopen must not append it again
        monkeypatch.setattr(os, "ftruncate", eio)
    assert trail.record("operator:alice", "killswitch.engage", {}) is not None
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    assert trail.retry()
    expected = ["startup", "audit.late", "killswitch.engage"] if cut_back else ["startup", "killswitch.engage"]
    assert actions(path) == expected
    assert verify(path).ok


class LogFullDisk(SimDisk):
    """Only the log's own file fails (its filesystem is full); spill files can still be written."""

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.full and ".pending-" not in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return Disk.write(self, fd, data)


def test_a_dead_writers_spill_file_is_taken_over_by_the_next_opener(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    disk = LogFullDisk()
    cli = AuditTrail(path, now_ms=Clock(), disk=disk)
    cli.record("operator:bob", "killswitch.status", {})
    disk.full = True
    assert cli.record("operator:bob", "killswitch.engage", {"mode": "immediate", "token": "secret-value"}) is not None
    [spill] = list(tmp_path.glob("audit.jsonl.pending-*"))
    assert b"killswitch.engage" in spill.read_bytes() and b"secret-value" not in spill.read_bytes()
    running = AuditTrail(path, now_ms=Clock())  # its writer still lives (holds the lock): not taken over
    assert running.close() == [] and spill.exists()
    copy = tmp_path / "spill.copy"
    shutil.copy(spill, copy)
    cli.abandon()  # the CLI process dies; its spill file stays
    bot = AuditTrail(path, now_ms=Clock())
    assert not bot.down and not spill.exists()
    assert actions(path) == ["killswitch.status", "audit.late", "killswitch.engage"]
    assert records(path)[1]["details"]["spills"] == {spill.name: hashlib.sha256(copy.read_bytes()).hexdigest()}
    bot.close()
    # a crash after the append, before the spill file was deleted: recognised, not appended again
    shutil.copy(copy, spill)
    AuditTrail(path, now_ms=Clock()).close()
    assert not spill.exists() and actions(path).count("killswitch.engage") == 1
    assert verify(path).ok


def test_a_chain_broken_inside_is_never_extended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(4):
        log.append("bot", "order.place", {"i": i}, T0 + i)
    log.close()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"i":1', b'"i":7')
    path.write_bytes(b"".join(lines))
    broken = path.read_bytes()
    trail = AuditTrail(path, now_ms=Clock(), verify_chain=True)
    assert trail.chain_error is not None and f"{path}:2: hash does not match" in trail.chain_error
    assert trail.record("operator:alice", "killswitch.engage", {}) is not None
    assert not trail.retry()
    assert trail.close() == [] and path.read_bytes() == broken  # kept in the spill file, the log untouched


def test_the_witness_is_the_newest_state_saved_record_written_or_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    disk = SimDisk()
    trail = AuditTrail(path, now_ms=Clock(), disk=disk)
    assert trail.last_saved("bot") == (None, None)
    trail.record("bot", "state.saved", {"generation": 4, "key": "bot", "store": "sqlite:x"})
    trail.record("bot", "state.saved", {"generation": 9, "key": "other", "store": "sqlite:x"})
    witness, problem = trail.last_saved("bot")
    assert problem is None and witness is not None and (witness.generation, witness.seq) == (4, 1)
    disk.full = True
    trail.record("bot", "state.saved", {"generation": 5, "key": "bot", "store": "sqlite:x"})
    witness, _ = trail.last_saved("bot")
    assert witness is not None and (witness.generation, witness.seq) == (5, None)
    trail.close()


def test_spill_files_that_hold_nothing_usable_do_not_pile_up(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    disk = SimDisk()
    cli = AuditTrail(path, now_ms=Clock(), disk=disk)
    disk.full = True  # the log and the spill file: the whole disk
    cli.record("operator:bob", "killswitch.engage", {})
    assert [k.action for k in cli.close()] == ["killswitch.engage"]  # printed by the CLI, kept nowhere
    assert not list(tmp_path.glob("audit.jsonl.pending-*"))
    # a dead writer's spill that holds only a torn line: its remains are recorded, then it goes
    (tmp_path / "audit.jsonl.pending-1-dead").write_bytes(b'{"actor":"bot","act')
    AuditTrail(path, now_ms=Clock()).close()
    [late] = [r for r in records(path) if r["action"] == "audit.late"]
    assert late["details"]["records"] == 0 and late["details"]["unreadable_spill_lines"] == 1
    assert not list(tmp_path.glob("audit.jsonl.pending-*")) and verify(path).ok
