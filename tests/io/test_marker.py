"""The emergency marker file: whatever is at its path engages the kill switch, and never hangs or raises."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from bot.io.disk import Disk
from bot.io.marker import MAX_MARKER_BYTES, read_marker, remove_marker, write_marker

T0 = 1_767_571_200_000
COMPLETE = {"version": 1, "engaged": True, "mode": "pause", "reason": "maintenance", "actor": "operator:ops",
            "engaged_at_ms": T0, "deadline_ms": None, "flatten_requested": False}


def test_no_marker_is_none_and_a_complete_one_is_taken_as_written(tmp_path: Path) -> None:
    marker = tmp_path / "EMERGENCY_STOP"
    assert read_marker(marker, T0) is None
    write_marker(marker, COMPLETE)
    assert read_marker(marker, T0) == COMPLETE
    assert not list(tmp_path.glob("*.tmp"))
    remove_marker(marker)
    assert read_marker(marker, T0) is None


def make_directory(path: Path) -> None:
    path.mkdir()


def make_fifo(path: Path) -> None:
    os.mkfifo(path)  # reading it must not block the bot


def make_dangling_symlink(path: Path) -> None:
    path.symlink_to(path.with_name("nowhere"))


def make_huge(path: Path) -> None:
    path.write_bytes(b" " * (MAX_MARKER_BYTES + 1))


@pytest.mark.parametrize("make,problem", [
    (make_directory, "is a directory"),
    (make_fifo, "not a regular file"),
    (make_dangling_symlink, "cannot be read"),
    (make_huge, "larger than"),
    (lambda p: p.write_bytes(b'{"engaged": true}'), "not a complete kill-switch snapshot"),
    (lambda p: p.write_bytes(b""), "not JSON"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"), "not JSON"),
])
def test_whatever_is_there_engages_immediate_with_the_reason(tmp_path: Path, make: object, problem: str) -> None:
    marker = tmp_path / "EMERGENCY_STOP"
    make(marker)  # type: ignore[operator]
    snapshot = read_marker(marker, T0)
    assert snapshot is not None
    assert (snapshot["engaged"], snapshot["mode"], snapshot["flatten_requested"]) == (True, "immediate", True)
    assert str(marker) in snapshot["reason"] and problem in snapshot["reason"]


def test_an_unreadable_marker_engages_immediate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "EMERGENCY_STOP"
    marker.write_text(json.dumps(COMPLETE))
    real_open = os.open

    def denied(path: object, *args: object, **kwargs: object) -> int:
        if Path(str(path)) == marker:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied)  # root reads a chmod 000 file: deny it the way a user would meet it
    snapshot = read_marker(marker, T0)
    assert snapshot is not None and snapshot["mode"] == "immediate" and "Permission denied" in snapshot["reason"]


class FullDisk(Disk):
    def write(self, fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_raises_and_leaves_neither_a_marker_nor_a_temp_file(tmp_path: Path) -> None:
    marker = tmp_path / "EMERGENCY_STOP"
    with pytest.raises(OSError, match="No space left"):
        write_marker(marker, COMPLETE, FullDisk())
    assert list(tmp_path.iterdir()) == []
