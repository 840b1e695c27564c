"""The manual kill switch (C2.kill_switch): immediate, graceful or pause; authenticated.

- immediate: cancel every order, flatten every position, halt.
- graceful: no new entries; positions exit at their targets; when `graceful_timeout_minutes`
  have passed (`deadline_ms`) whatever is left is flattened (`on_timer` reports it once).
- pause: no new entries; positions keep being managed (stops, targets, time exits).

Every request is authenticated by `verify(credential)` (a pure check the io layer supplies)
when `kill_switch.require_auth` is true; it returns True, False ("bad credentials"), or a text
naming the refusal (e.g. a role without the kill switch). A rejected request emits `killswitch.rejected{reason}`
and changes nothing. Engaging while engaged escalates to the stricter mode
(pause < graceful < immediate); a weaker request is refused with a reason, never applied
silently. A graceful deadline never moves once set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.clock import Clock
from bot.core.events import EventBus
from bot.core.policy import Policy

KillMode = Literal["immediate", "graceful", "pause"]
MODE_RANK: dict[str, int] = {"pause": 1, "graceful": 2, "immediate": 3}
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class KillResult:
    accepted: bool
    reason: str
    mode: KillMode | None = None
    cancel_all: bool = False  # cancel every resting order now
    flatten: bool = False  # close every position now
    halt: bool = False  # no new entries (true for every engaged mode)
    deadline_ms: int | None = None  # graceful: when the remainder is flattened
    unauthorized: bool = False  # rejected for its credentials (an unauthorized access attempt)


@dataclass(frozen=True, slots=True)
class KillStatus:
    engaged: bool
    mode: KillMode | None = None
    reason: str | None = None
    actor: str | None = None
    engaged_at_ms: int | None = None
    deadline_ms: int | None = None
    flatten_requested: bool = False

    @property
    def blocks_entries(self) -> bool:
        return self.engaged

    def to_dict(self) -> dict[str, Any]:
        return {"engaged": self.engaged, "mode": self.mode, "reason": self.reason, "actor": self.actor,
                "engaged_at_ms": self.engaged_at_ms, "deadline_ms": self.deadline_ms,
                "flatten_requested": self.flatten_requested}


def emergency_snapshot(reason: str, engaged_at_ms: int | None, actor: str = "marker") -> dict[str, Any]:
    """An immediate kill switch in snapshot form: what an emergency marker that cannot be read
    or used stands for (someone pulled the switch; the bot stays stopped and flattens)."""
    return {"version": SNAPSHOT_VERSION, **KillStatus(True, "immediate", reason, actor, engaged_at_ms, None,
                                                      True).to_dict()}


_SNAPSHOT_FIELDS = ("engaged", "mode", "reason", "actor", "engaged_at_ms", "deadline_ms", "flatten_requested")


def _snapshot_problem(data: object) -> str | None:
    """Why `data` is not a complete snapshot of an engaged kill switch (None when it is one)."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    missing = [k for k in ("version", *_SNAPSHOT_FIELDS) if k not in data]
    if missing:
        return "it is not a complete kill-switch snapshot (missing " + ", ".join(missing) + ")"
    if data["version"] != SNAPSHOT_VERSION:
        return f"version {data['version']!r}, expected {SNAPSHOT_VERSION}"
    if data["engaged"] is not True:
        return (f"engaged is {data['engaged']!r}, but a marker file stands for an engaged kill switch "
                "(clear it with `python -m bot killswitch --clear`)")
    mode = data["mode"]
    if mode not in MODE_RANK:
        return f"mode {mode!r} is not one of {sorted(MODE_RANK)}"
    for name in ("reason", "actor"):
        if data[name] is not None and not isinstance(data[name], str):
            return f"{name} is {type(data[name]).__name__}, not text"
    for name in ("engaged_at_ms", "deadline_ms"):
        if data[name] is not None and type(data[name]) is not int:
            return f"{name} is {data[name]!r}, not whole milliseconds"
    if type(data["flatten_requested"]) is not bool:
        return f"flatten_requested is {data['flatten_requested']!r}, not true/false"
    if mode == "immediate" and not data["flatten_requested"]:
        return "mode immediate without flatten_requested"
    if mode == "graceful" and data["deadline_ms"] is None:
        return "mode graceful without a deadline"
    return None


def marker_snapshot(content: bytes | None, problem: str | None, where: str, now_ms: int) -> dict[str, Any]:
    """What an emergency marker file stands for, as a snapshot `KillSwitch.restore` accepts.

    `content` is the file's bytes (None when it could not be read; `problem` says why). A complete
    snapshot of an engaged kill switch is taken as written; anything else a marker can be - a
    hand-written `{"engaged": true}`, `{}`, garbage bytes, a directory, an unreadable file - still
    means someone pulled the switch: it engages the strictest mode (immediate: cancel, flatten, halt)
    with a reason that names the marker and what is wrong with it. Never raises.
    """
    data: object = None
    if problem is None and content is None:
        problem = "it could not be read"
    if problem is None:
        assert content is not None
        try:
            data = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problem = f"it is not JSON ({type(exc).__name__}: {str(exc)[:80]})"
        except RecursionError:
            problem = "it is not usable JSON (nested too deeply)"
    if problem is None:
        problem = _snapshot_problem(data)
    if problem is None:
        assert isinstance(data, dict)
        return {"version": SNAPSHOT_VERSION, **{k: data[k] for k in _SNAPSHOT_FIELDS}}
    return emergency_snapshot(f"emergency marker {where}: {problem}; engaged in the strictest mode (immediate)",
                              now_ms)


class KillSwitch:
    def __init__(self, policy: Policy, bus: EventBus, clock: Clock,
                 verify: Callable[[str | None], bool | str]) -> None:
        self._policy = policy.kill_switch
        self._bus = bus
        self._clock = clock
        self._verify = verify
        self._status = KillStatus(engaged=False)

    def status(self) -> KillStatus:
        return self._status

    def _auth_problem(self, credential: str | None) -> str | None:
        if not self._policy.require_auth:
            return None
        if credential is None or credential == "":
            return "missing credentials"
        try:
            ok = self._verify(credential)
        except Exception as exc:  # a broken verifier rejects: never engage/clear unauthenticated
            return f"credential check failed: {type(exc).__name__}"
        if ok is True:
            return None
        return ok if isinstance(ok, str) and ok else "bad credentials"

    def _reject(self, what: str, reason: str, actor: str, unauthorized: bool = False) -> KillResult:
        s = self._status  # unchanged: a rejected request changes nothing
        text = f"{what} rejected: {reason}"
        self._bus.emit("killswitch.rejected", self._clock.now_ms(), reason=text, actor=actor)
        return KillResult(False, text, s.mode, unauthorized=unauthorized)

    def engage(self, mode: str, reason: str, actor: str, credential: str | None) -> KillResult:
        problem = self._auth_problem(credential)
        if problem is not None:
            return self._reject("kill switch", problem, actor, unauthorized=True)
        if mode not in MODE_RANK:
            return self._reject("kill switch", f"unknown mode {mode!r} (immediate, graceful, pause)", actor)
        m: KillMode = "immediate" if mode == "immediate" else "graceful" if mode == "graceful" else "pause"
        return self._engage(m, reason, actor)

    def engage_for_safety(self, reason: str, actor: str) -> KillResult:
        """The bot's own immediate stop (a red flag): no credential - authentication keeps others from
        stopping or starting the bot, and reducing risk needs no permission. Clearing still does."""
        return self._engage("immediate", reason, actor)

    def _engage(self, m: KillMode, reason: str, actor: str) -> KillResult:
        s = self._status
        if s.engaged and s.mode is not None and MODE_RANK[m] < MODE_RANK[s.mode]:
            return KillResult(False, f"refused: already engaged in {s.mode}, stricter than {m}; "
                              "clear it first to change to a weaker mode", s.mode, halt=True,
                              deadline_ms=s.deadline_ms)
        now = self._clock.now_ms()
        deadline: int | None = None
        if m == "graceful":
            deadline = s.deadline_ms if s.mode == "graceful" and s.deadline_ms is not None else (
                now + int(self._policy.graceful_timeout_minutes * 60_000))
        flatten = m == "immediate" or s.flatten_requested
        engaged_at = s.engaged_at_ms if s.engaged and s.engaged_at_ms is not None else now
        self._status = KillStatus(True, m, reason, actor, engaged_at, deadline, flatten)
        self._bus.emit("killswitch.engaged", now, mode=m, reason=reason, actor=actor)
        return KillResult(True, f"engaged {m} by {actor}: {reason}", m, cancel_all=m == "immediate",
                          flatten=m == "immediate", halt=True, deadline_ms=deadline)

    def on_timer(self, now_ms: int) -> bool:
        """True once, when a graceful kill's timeout has passed: flatten what is left now."""
        s = self._status
        if s.mode != "graceful" or s.deadline_ms is None or now_ms < s.deadline_ms or s.flatten_requested:
            return False
        self._status = KillStatus(s.engaged, s.mode, s.reason, s.actor, s.engaged_at_ms, s.deadline_ms, True)
        return True

    def clear(self, actor: str, credential: str | None) -> KillResult:
        problem = self._auth_problem(credential)
        if problem is not None:
            return self._reject("kill switch clear", problem, actor, unauthorized=True)
        was = self._status
        self._status = KillStatus(engaged=False)
        self._bus.emit("killswitch.cleared", self._clock.now_ms(), actor=actor)
        text = f"cleared by {actor}" + ("" if was.engaged else " (was not engaged)")
        return KillResult(True, text, None)

    def snapshot(self) -> dict[str, Any]:
        return {"version": SNAPSHOT_VERSION, **self._status.to_dict()}

    def restore(self, data: dict[str, Any]) -> None:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"kill switch snapshot version {data.get('version')!r}; expected {SNAPSHOT_VERSION}")
        mode = data["mode"]
        if mode is not None and mode not in MODE_RANK:
            raise ValueError(f"kill switch snapshot mode {mode!r} not one of {sorted(MODE_RANK)}")
        self._status = KillStatus(
            engaged=bool(data["engaged"]), mode=mode, reason=data["reason"], actor=data["actor"],
            engaged_at_ms=None if data["engaged_at_ms"] is None else int(data["engaged_at_ms"]),
            deadline_ms=None if data["deadline_ms"] is None else int(data["deadline_ms"]),
            flatten_requested=bool(data["flatten_requested"]),
        )
        if self._status.engaged and self._status.mode is None:
            raise ValueError("kill switch snapshot: engaged without a mode")
