"""Fault and outage state: spreads, feed stalls and lag, path failures, rejects, lost replies, skew.

A mixin of `Engine` (harness.testnet.engine). Request handling (harness.testnet.gate) and
order placement (harness.testnet.matching) consume the state these methods set.
"""

from __future__ import annotations

import math
from typing import Any

from harness.testnet.model import FeedState, PathFault


class FaultControls:
    """The fault methods the harness calls (each is undone by `reset_faults`)."""

    def widen_spread(self, bps: float, *, symbol: str | None = None, duration_ms: int | None = None) -> None:
        """Fault: quote a spread of `bps` (for `duration_ms`, or until reset)."""
        if not (math.isfinite(bps) and bps >= 0):
            raise ValueError(f"spread bps must be >= 0, got {bps!r}")
        targets = [self.market(symbol)] if symbol else list(self.markets.values())
        until = None if duration_ms is None else self.now_ms() + int(duration_ms)
        for m in targets:
            m.wide_spread_bps, m.wide_until_ms = float(bps), until
            m.update_id += 1
            self._match_resting(m.spec.symbol)
            for cb in list(self._listeners):
                cb(m.spec.symbol)
        self._schedule_poll(until)

    def reset_spread(self, symbol: str | None = None) -> None:
        targets = [self.market(symbol)] if symbol else list(self.markets.values())
        for m in targets:
            m.wide_spread_bps = m.wide_until_ms = None
            m.update_id += 1
            for cb in list(self._listeners):
                cb(m.spec.symbol)

    def stall_feed(self, duration_ms: int | None = None) -> None:
        """Fault: the market-data feed withholds messages (for `duration_ms`, or until reset)."""
        self._feed_stalled = True
        self._feed_stalled_until = None if duration_ms is None else self.now_ms() + int(duration_ms)

    def set_feed_lag(self, lag_ms: int, duration_ms: int | None = None) -> None:
        """Fault: deliver every feed message `lag_ms` late (E keeps the true event time)."""
        if lag_ms < 0:
            raise ValueError(f"lag_ms must be >= 0, got {lag_ms}")
        self._feed_lag_ms = int(lag_ms)
        self._feed_lag_until = None if duration_ms is None else self.now_ms() + int(duration_ms)

    def reset_feed(self) -> None:
        self._feed_stalled, self._feed_stalled_until = False, None
        self._feed_lag_ms, self._feed_lag_until = 0, None

    def feed_state(self) -> FeedState:
        now = self.now_ms()
        if self._feed_stalled_until is not None and now >= self._feed_stalled_until:
            self._feed_stalled, self._feed_stalled_until = False, None
        if self._feed_lag_until is not None and now >= self._feed_lag_until:
            self._feed_lag_ms, self._feed_lag_until = 0, None
        return FeedState(self._feed_stalled, self._feed_lag_ms)

    def fail_next(self, path: str, count: int, status: int, code: int | None = None, *, msg: str | None = None,
                  retry_after_s: float | None = None, method: str | None = None) -> None:
        """Fault: the next `count` requests matching `path` ("*", exact, or glob) fail with this reply.

        `code=None` means a non-JSON (HTML) error page, as a proxy in front of the exchange sends.
        """
        if count <= 0:
            raise ValueError(f"count must be > 0, got {count}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        self._path_faults.append(PathFault(path, method, int(count), int(status), code, msg, retry_after_s))

    def reject_next_orders(self, count: int, code: int = -2019, msg: str | None = None) -> None:
        """Fault: the next `count` new orders are rejected with `code` (HTTP 400)."""
        if count <= 0:
            raise ValueError(f"count must be > 0, got {count}")
        self._reject_next.extend([(int(code), msg)] * int(count))

    def unknown_outcome_next(self, count: int, mode: str = "503") -> None:
        """Fault: the next `count` orders are booked but their reply is lost.

        mode "503": answered 503 -1007 (send status unknown); "drop": the connection is dropped.
        """
        if count <= 0:
            raise ValueError(f"count must be > 0, got {count}")
        if mode not in ("503", "drop"):
            raise ValueError(f"mode must be '503' or 'drop', got {mode!r}")
        self._unknown_next.extend([mode] * int(count))

    def set_clock_skew(self, offset_ms: int) -> None:
        """Fault: the exchange's clock runs `offset_ms` ahead (negative: behind) of the true clock."""
        self.clock_skew_ms = int(offset_ms)

    def set_rate_limits(self, *, weight_limit_1m: int | None = None, order_limit_1m: int | None = None,
                        ban_after_429: int | None = None, ban_ms: int | None = None) -> None:
        if weight_limit_1m is not None:
            self.weight_limit_1m = int(weight_limit_1m)
        if order_limit_1m is not None:
            self.order_limit_1m = int(order_limit_1m)
        if ban_after_429 is not None:
            self.ban_after_429 = int(ban_after_429)
        if ban_ms is not None:
            self.ban_ms = int(ban_ms)

    def reset_faults(self) -> None:
        """Clear every injected fault (keys, balances, positions and orders stay)."""
        self._path_faults.clear()
        self._reject_next.clear()
        self._unknown_next.clear()
        self.clock_skew_ms = 0
        self.reset_feed()
        self.reset_spread()
        self._ips.clear()
        for m in self.markets.values():
            m.path, m.frozen = None, False

    def faults(self) -> dict[str, Any]:
        feed = self.feed_state()
        return {
            "clock_skew_ms": self.clock_skew_ms,
            "fail_next": [{"path": f.pattern, "method": f.method, "remaining": f.remaining, "status": f.status,
                           "code": f.code, "retry_after_s": f.retry_after_s} for f in self._path_faults],
            "reject_next": len(self._reject_next),
            "unknown_outcome_next": len(self._unknown_next),
            "feed": {"stalled": feed.stalled, "lag_ms": feed.lag_ms},
            "spread_bps": {s: m.spread_bps for s, m in self.markets.items()},
            "paths": {s: len(m.path) for s, m in self.markets.items() if m.path},
            "banned_ips": [ip for ip, st in self._ips.items() if st.banned_until_ms > self.now_ms()],
        }

    def _schedule_poll(self, at_ms: int | None) -> None:
        call_at = getattr(self.clock, "call_at", None)
        if at_ms is not None and call_at is not None:
            call_at(at_ms, self.poll)
