"""The kill switch's emergency marker file: its presence means "stay stopped".

One reader for the bot's start (`Trader.start`), the running bot's watch (`LiveDriver`) and the
standalone kill switch; what the file's content means is decided by
`bot.core.killswitch.marker_snapshot` (anything but a complete engaged snapshot engages the
strictest mode, with a reason).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from bot.core.killswitch import marker_snapshot
from bot.io.disk import REAL_DISK, Disk

MAX_MARKER_BYTES = 65_536  # a snapshot is a few hundred bytes; anything this big is not one


def read_marker(path: Path, now_ms: int) -> dict[str, Any] | None:
    """None when there is no marker; else the kill-switch snapshot it stands for (never raises)."""
    try:
        os.lstat(path)  # a dangling symlink is something someone put there, too
    except FileNotFoundError:
        return None
    except OSError as exc:
        return marker_snapshot(None, f"it cannot be examined ({type(exc).__name__}: {exc.strerror or exc})",
                               str(path), now_ms)
    try:  # O_NONBLOCK: a FIFO put there must not hang the bot
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return marker_snapshot(None, f"it cannot be read ({type(exc).__name__}: {exc.strerror or exc})",
                               str(path), now_ms)
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            what = "a directory" if stat.S_ISDIR(kind) else "not a regular file"
            return marker_snapshot(None, f"it is {what}", str(path), now_ms)
        content = b""
        while len(content) <= MAX_MARKER_BYTES and (chunk := os.read(fd, MAX_MARKER_BYTES + 1 - len(content))):
            content += chunk
    except OSError as exc:
        return marker_snapshot(None, f"it cannot be read ({type(exc).__name__}: {exc.strerror or exc})",
                               str(path), now_ms)
    finally:
        os.close(fd)
    if len(content) > MAX_MARKER_BYTES:
        return marker_snapshot(None, f"it is larger than {MAX_MARKER_BYTES} bytes", str(path), now_ms)
    return marker_snapshot(content, None, str(path), now_ms)


def write_marker(path: Path, snapshot: dict[str, Any], disk: Disk = REAL_DISK) -> None:
    """Atomically and durably (temp file, fsync, rename, fsync of the directory). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        disk.write_all(fd, json.dumps(snapshot).encode())
        disk.fsync(fd)
    except OSError:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    disk.fsync_dir(path.parent)


def remove_marker(path: Path) -> None:
    """Raises OSError when something is there that cannot be removed (e.g. a directory)."""
    path.unlink(missing_ok=True)
