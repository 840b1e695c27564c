"""The pets checklist's "RED FLAGS - STOP IMMEDIATELY", as far as a machine can observe them.

`RedFlagMonitor` is fed what the bot sees - a closed trade, equity against its peak, a denied
request, and the result of each periodic check (a breaker self-test, the emergency-stop drill, the
monitoring heartbeat, alert delivery, the backup, the log scan for a private key) - and answers a
`RedFlag` verdict when one is raised: the caller engages the kill switch with the flag as reason and
emits `redflag.raised`. A flag is raised when its condition begins, not again while it lasts. Every
flag's last check (when, ok or not, what was seen) is kept for the readiness report. Pure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from bot.core.events import RED_FLAGS
from bot.core.policy import RedFlags

# The flags judged from a check's outcome (the rest from trades, equity and denied requests).
CHECKED_FLAGS: tuple[str, ...] = ("private_key_logged", "breaker_not_working", "emergency_stop_failed",
                                  "monitoring_down", "alerts_not_received", "backup_failed")
# gas_costs_high: a chain's gas; this bot trades a futures venue and pays no gas (never observed).
OBSERVED_FLAGS: tuple[str, ...] = (*CHECKED_FLAGS, "win_rate_low", "drawdown_over_40pct", "unauthorized_access")

# Who or what checks each flag: what the readiness report says of a flag never checked yet.
CHECKED_BY: dict[str, str] = {
    "private_key_logged": "the live bot's scan of its own logs (leak_detection.yaml scan_interval_s.log) and "
                          "credential.leak_detected",
    "breaker_not_working": "the live bot's breaker self-test (red_flags.checks.breaker_self_test_s)",
    "emergency_stop_failed": "the live bot's kill-switch exchange path check (red_flags.checks.emergency_stop_s)",
    "win_rate_low": "each closed trade, once red_flags.win_rate_window trades have closed",
    "drawdown_over_40pct": "every equity update",
    "monitoring_down": "the live bot's metrics-scrape check (red_flags.checks.monitoring_s; only with "
                       "--metrics-port)",
    "alerts_not_received": "every alert delivery (alert.sent / alert.failed), the heartbeat included",
    "backup_failed": "the live bot's state store write/read-back (red_flags.checks.backup_s)",
    "unauthorized_access": "every denied control-API or kill-switch request (red_flags.max_unauthorized_attempts; "
                           "null: no flag)",
}


@dataclass(frozen=True, slots=True)
class RedFlag:
    flag: str  # a key of events.RED_FLAGS
    detail: str


@dataclass(frozen=True, slots=True)
class LastCheck:
    ts_ms: int
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"ts_ms": self.ts_ms, "ok": self.ok, "detail": self.detail}


class RedFlagMonitor:
    def __init__(self, config: RedFlags) -> None:
        self.config = config
        self._wins: deque[bool] = deque(maxlen=config.win_rate_window)
        self._denied: deque[int] = deque()  # when each denied request counted came (ms)
        self._last: dict[str, LastCheck] = {}

    def last_checks(self) -> dict[str, LastCheck | None]:
        """Each observed flag's last check (None: not checked yet)."""
        return {flag: self._last.get(flag) for flag in OBSERVED_FLAGS}

    def check(self, flag: str, ok: bool, detail: str, now_ms: int) -> RedFlag | None:
        """A check's outcome for `flag` (one of CHECKED_FLAGS or any observed flag)."""
        if flag not in RED_FLAGS:
            raise ValueError(f"unknown red flag {flag!r}; known: {', '.join(RED_FLAGS)}")
        before = self._last.get(flag)
        self._last[flag] = LastCheck(now_ms, ok, detail)
        if ok or (before is not None and not before.ok):
            return None
        return RedFlag(flag, detail)

    def trade_closed(self, pnl: float, now_ms: int) -> RedFlag | None:
        self._wins.append(pnl > 0)
        n, window = len(self._wins), self.config.win_rate_window
        rate = sum(self._wins) / n
        if n < window:
            self._last["win_rate_low"] = LastCheck(now_ms, True, f"{n} of {window} trades in the window: "
                                                                 f"win rate {rate:.1%} not judged yet")
            return None
        low = rate < self.config.min_win_rate
        return self.check("win_rate_low", not low, f"rolling win rate {rate:.1%} over the last {n} trades "
                                                    f"(min {self.config.min_win_rate:.0%})", now_ms)

    def equity(self, equity: float, peak: float, now_ms: int) -> RedFlag | None:
        drawdown = (peak - equity) / peak * 100 if peak > 0 else 0.0
        over = drawdown > self.config.max_drawdown_pct
        return self.check("drawdown_over_40pct", not over, f"drawdown {drawdown:.2f}% from peak {peak:.2f} "
                                                           f"(max {self.config.max_drawdown_pct:g}%)", now_ms)

    def access_denied(self, what: str, now_ms: int) -> RedFlag | None:
        allowed = self.config.max_unauthorized_attempts
        if allowed is None:
            return None
        self._denied.append(now_ms)
        minutes = self.config.unauthorized_window_minutes
        if minutes is not None:  # a sliding window: requests older than it no longer count
            while self._denied[0] <= now_ms - minutes * 60_000:
                self._denied.popleft()
        within = "" if minutes is None else f" within {minutes:g} min"
        over = len(self._denied) > allowed
        return self.check("unauthorized_access", not over, f"{len(self._denied)} denied request(s){within}, "
                                                           f"last: {what} (allowed {allowed})", now_ms)
