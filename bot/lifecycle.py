"""What the bot process says about itself: the start banner, the stop message, bot.started / bot.stopped.

The banner is printed on stderr once the Trader started (state restored, positions reconciled):
an engaged kill switch, an active halt or pause and the restored breaker state come first, so an
operator who starts a bot that will not trade sees why at once. A SIGTERM / SIGINT prints one line
when it arrives (the bot is stopping, not hung) and `bot.stopped` carries the reason and exit code.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from bot.core.clock import Clock
from bot.core.events import EventBus

# Why the process ends when no signal says otherwise, by exit code (bot.live's EXIT_* codes).
EXIT_REASONS: Mapping[int, str] = {0: "stopped", 2: "usage or configuration error", 3: "startup refused",
                                   4: "exchange unreachable", 75: "restart requested"}
EXPLAINED_ON_STDERR = frozenset({2, 3, 4})


def banner_lines(status: Mapping[str, Any]) -> list[str]:
    """The start banner from `Trader.status()`: kill switch, halt, breakers, bookkeeping."""
    lines: list[str] = []
    kill = status.get("kill") or {}
    if kill.get("engaged"):
        lines.append(f"KILL SWITCH ENGAGED: mode {kill.get('mode')}, by {kill.get('actor')}: {kill.get('reason')} "
                     "- no new entries; clear it with python -m bot killswitch clear")
    else:
        lines.append("kill switch: clear")
    board = status.get("board") or {}
    state = board.get("state", "active")
    reasons = "; ".join(board.get("reasons") or []) or "no reason recorded"
    if state in ("halted", "paused"):
        resume = " (needs a manual resume)" if board.get("requires_manual_resume") else ""
        lines.append(f"TRADING {state.upper()}{resume}: {reasons}")
    elif state == "reduced":
        lines.append(f"trading reduced to size factor {board.get('size_factor')}: {reasons}")
    lines.append(f"breakers restored: state {state}, size factor {board.get('size_factor')}, "
                 f"position {status.get('position')}, equity {status.get('equity')}")
    books = status.get("bookkeeping") or {}
    if books.get("audit_problem"):
        lines.append(f"AUDIT LOG DOWN: {books['audit_problem']} ({books.get('audit_records_kept')} records kept)")
    if books.get("state_store_problem"):
        lines.append(f"STATE STORE DOWN: {books['state_store_problem']}")
    return lines


@dataclass
class Lifecycle:
    """Announces the start and the stop of one bot process."""

    bus: EventBus
    clock: Clock
    out: IO[str]
    signal_name: str | None = None  # the signal that asked the process to stop
    detail: str | None = None  # a more specific stop reason than the exit code's
    _stop_announced: bool = False

    def on_signal(self, signum: int) -> None:
        """Called from the event loop's signal handler: say once that the bot is stopping."""
        if self.signal_name is not None:
            return
        self.signal_name = signal.Signals(signum).name
        print(f"bot: {self.signal_name} received: stopping cleanly (saving state, closing connections)",
              file=self.out, flush=True)

    def started(self, status: Mapping[str, Any], *, symbol: str, exchange: str, pid: int) -> None:
        for line in banner_lines(status):
            print(f"bot: {line}", file=self.out, flush=True)
        board = status.get("board") or {}
        self.bus.emit("bot.started", self.clock.now_ms(), symbol=symbol, exchange=exchange, pid=pid,
                      trading=str(status.get("trading")), killswitch=str(status.get("killswitch")),
                      board=str(board.get("state", "active")))

    def stopped(self, exit_code: int) -> None:
        if self._stop_announced:
            return
        self._stop_announced = True
        reason = (f"signal {self.signal_name}" if self.signal_name is not None
                  else self.detail or EXIT_REASONS.get(exit_code, "error"))
        self.bus.emit("bot.stopped", self.clock.now_ms(), reason=reason, exit_code=exit_code,
                      signal=self.signal_name)
        if exit_code in EXPLAINED_ON_STDERR and self.signal_name is None:
            return  # the refusal already said why, in its one line
        print(f"bot: stopped ({reason}), exit code {exit_code}", file=self.out, flush=True)
