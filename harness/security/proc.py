"""Running a scanner: argv, a deadline, and what it said - never an exception for a missing tool."""

from __future__ import annotations

import subprocess  # nosec B404 - scanners are run with argv lists, never a shell
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@dataclass
class Ran:
    argv: list[str]
    returncode: int | None        # None: could not start, or killed at the deadline
    stdout: str
    stderr: str
    duration_s: float
    problem: str | None = None    # why it did not run to completion

    def tail(self, lines: int = 3) -> str:
        """The last lines of stderr (then stdout), one line, for a reason."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(line.strip() for line in text[-lines:])[:400]


def run(argv: Sequence[str], *, cwd: Path, timeout_s: float, env: Mapping[str, str] | None = None) -> Ran:
    started = time.monotonic()
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout_s,  # nosec B603 - argv list, no shell
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return Ran(list(argv), None, "", "", time.monotonic() - started, f"{argv[0]} not found")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Ran(list(argv), None, out, err, time.monotonic() - started, f"did not finish within {timeout_s:g} s")
    except OSError as exc:
        return Ran(list(argv), None, "", "", time.monotonic() - started, f"cannot run {argv[0]}: {exc.strerror}")
    return Ran(list(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def python_module(module: str) -> list[str]:
    """argv prefix running `module` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module]



def package_version(distribution: str) -> str | None:
    """The installed version of a Python tool, None when it is not installed here."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
