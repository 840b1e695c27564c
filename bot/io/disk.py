"""The system calls through which the bot's own files reach the disk: the audit log, its spill
files and the kill-switch marker.

`Disk()` is the real thing (it looks `os.write` / `os.fsync` up at each call, so a test may also
patch those). A test or the sim harness hands in a subclass whose calls fail with ENOSPC to make a
full disk without filling one.
"""

from __future__ import annotations

import os
from pathlib import Path


class Disk:
    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.write(fd, view)
            view = view[written:]

    def fsync_dir(self, directory: Path) -> None:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            self.fsync(dfd)
        finally:
            os.close(dfd)


REAL_DISK = Disk()
