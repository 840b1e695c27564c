"""The bot as a real process (`python -m bot run ...`) and the harness's live view of it.

- `EventFollower` tails the bot's `--events` JSON-lines file in a thread: every complete line
  becomes a `bot.core.events.Event` (ts_ms is the bot's wall clock), in order, across restarts
  (the bot appends). A partial last line waits for its newline; a line that is not an event is
  kept in `garbage` (reported, never judged).
- `BotProcess` starts the bot in its own process group (so a kill reaches every child), can
  SIGKILL it (the `bot_crash` fault), and on `stop()` sends SIGTERM, waits, then SIGKILLs the
  group. `stop()` runs from the runner's `finally`, so no bot process outlives a scenario.
- `ControlClient` speaks to the bot's control API as one principal (Bearer token): /health,
  /status, kill switch, resume; `outcome()` names a reply's status, error code and reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bot.core.events import Event

POLL_S = 0.005
STOP_TIMEOUT_S = 5.0
# what bot/live.py prints once its control server is bound (it binds port 0 and reports the port)
CONTROL_ANNOUNCED = re.compile(rb"bot: control API on (http://127\.0\.0\.1:\d+)")


class BotProcessError(Exception):
    """The bot process could not be started, or died when it should not have."""


class EventFollower:
    """Follow a JSON-lines event file as it grows; thread-safe reads of what arrived so far."""

    def __init__(self, path: Path, *, poll_s: float = POLL_S) -> None:
        self.path = path
        self.poll_s = poll_s
        self.events: list[Event] = []
        self.garbage: list[str] = []
        self._offset = 0
        self._partial = b""
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gameday-events", daemon=True)

    def start(self) -> EventFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.read_now()

    def read_now(self) -> None:
        """Read whatever is in the file now (also called by the thread)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        if not chunk:
            return
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        parsed: list[Event] = []
        bad: list[str] = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                parsed.append(Event.from_dict(obj))
            except (ValueError, KeyError, TypeError):
                bad.append(raw[:200].decode(errors="replace"))
        with self._lock:
            self.events.extend(parsed)
            self.garbage.extend(bad)
            self._lock.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read_quietly()
            self._stop.wait(self.poll_s)

    def _read_quietly(self) -> None:
        try:
            self.read_now()
        except OSError:
            pass

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def count(self) -> int:
        with self._lock:
            return len(self.events)

    def wait_for(self, predicate: Callable[[Event], bool], *, since: int = 0, timeout: float) -> Event | None:
        """The first event at index >= since matching predicate, waiting up to `timeout` s; None if none came."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(min(remaining, 0.05))


@dataclass
class ControlClient:
    base_url: str
    token: str
    timeout: float = 3.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.trust_env = False

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    def health(self) -> bool:
        try:
            return self.session.get(f"{self.base_url}/health", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    def status(self) -> dict[str, Any]:
        # GET is idempotent: one retry covers a pooled keep-alive connection the server closed while idle
        # (seen as "Connection reset by peer" on the first request after a quiet spell)
        for attempt in (1, 2):
            try:
                response = self.session.get(f"{self.base_url}/status", headers=self._headers(self.token),
                                            timeout=self.timeout)
                break
            except requests.ConnectionError:
                if attempt == 2:
                    raise
        response.raise_for_status()
        return dict(response.json())

    def post(self, path: str, body: Mapping[str, Any], token: str | None) -> requests.Response:
        return self.session.post(f"{self.base_url}{path}", json=dict(body), headers=self._headers(token),
                                 timeout=self.timeout)

    @staticmethod
    def outcome(response: requests.Response) -> str:
        """"HTTP 403 forbidden: <reason>" - what the bot answered, from its machine-readable body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body:
            return f"HTTP {response.status_code} {body['error']}: {str(body.get('reason', ''))[:200]}"
        return f"HTTP {response.status_code}"

    def close(self) -> None:
        self.session.close()


@dataclass
class BotProcess:
    """One bot process at a time; `start()` again after a crash starts a new one (same files)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    log_start: int = 0  # where the current process's output begins in the (appended) log

    def start(self) -> subprocess.Popen[bytes]:
        if self.alive():
            raise BotProcessError("the bot is already running")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.log_start = log.seek(0, os.SEEK_END)
            self.proc = subprocess.Popen(  # noqa: S603 - argv is ours
                [sys.executable, "-m", "bot", *self.argv], cwd=self.cwd, env=dict(self.env),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.pids.append(self.proc.pid)
        return self.proc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the bot's process group (bot_crash); waits for it to exit when it is SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            raise BotProcessError("the bot is not running, there is nothing to crash")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.exit_codes.append(self.proc.wait(STOP_TIMEOUT_S))

    def wait_exit(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole group. Returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever happened, nothing of the group may remain.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        self.exit_codes.append(proc.returncode)
        return proc.returncode

    def announced_control_url(self) -> str | None:
        """The control URL the current process announced last (an exec restart announces a new one);
        None until it has bound its port."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_start)
                found = CONTROL_ANNOUNCED.findall(fh.read())
        except OSError:
            return None
        return found[-1].decode() if found else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def process_group_alive(pgid: int) -> bool:
    """True while any process of group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
