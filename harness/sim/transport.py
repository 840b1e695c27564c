"""What sits between the sim bot and its exchange: the market-data feed's timing, the REST
transport with its faults (outages, slow replies, lost fills, clock resync), and the bot's disk and
state store that can fill up. Faults open windows on these; the world consults them.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bot.core.clock import VirtualClock
from bot.io.disk import Disk
from bot.io.exchange import OrderRequest, OrderState, error_from_binance
from bot.io.state import JsonObject, StateStore, StateStoreError
from harness.sim.constants import API_KEY, API_SECRET
from harness.testnet.engine import Engine
from harness.testnet.sim import SimExchange

# --------------------------------------------------------------------------------------------
# The market-data transport
# --------------------------------------------------------------------------------------------


@dataclass
class FeedWindow:
    start: int
    end: int  # exclusive
    kind: str  # "stall" (messages withheld and lost) | "lag" (delivered lag_ms late)
    lag_ms: int = 0


class Feed:
    """When a market-data message published at event time e reaches the bot (or that it does not)."""

    def __init__(self) -> None:
        self.windows: list[FeedWindow] = []
        self.dropped = 0

    def stall(self, start: int, end: int) -> FeedWindow:
        w = FeedWindow(start, end, "stall")
        self.windows.append(w)
        return w

    def lag(self, start: int, end: int, lag_ms: int) -> FeedWindow:
        w = FeedWindow(start, end, "lag", int(lag_ms))
        self.windows.append(w)
        return w

    def remove(self, w: FeedWindow) -> None:
        if w in self.windows:
            self.windows.remove(w)

    def stalled(self, e: int) -> bool:
        return any(w.kind == "stall" and w.start <= e < w.end for w in self.windows)

    def lag_at(self, e: int) -> int:
        return max((w.lag_ms for w in self.windows if w.kind == "lag" and w.start <= e < w.end), default=0)

    def latest_event(self, now: int, after: int) -> int | None:
        """The newest event time e in (after, now] whose message has arrived by `now` (a message of
        the continuous kline stream), or None."""
        if not self.windows:
            return now if now > after else None
        points = sorted({after + 1, *(w.start for w in self.windows), *(w.end for w in self.windows)})
        points = [p for p in points if after < p <= now]
        best: int | None = None
        bounds = points + [now + 1]
        for a, b in itertools.pairwise(bounds):
            if self.stalled(a):
                continue
            e = min(b - 1, now - self.lag_at(a))
            if e >= a and (best is None or e > best):
                best = e
        return best


# --------------------------------------------------------------------------------------------
# The bot's exchange client, over the in-process engine, with transport faults
# --------------------------------------------------------------------------------------------


class _ClientClock:
    """The bot-side clock an exchange client signs with: virtual time plus its resync offset."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.offset_ms = 0

    def now_ms(self) -> int:
        return self.clock.now_ms() + self.offset_ms


@dataclass
class Network:
    """Transport faults shared by every client the bot process opens (survives restarts)."""

    rest_down: list[tuple[int, int]] = field(default_factory=list)
    placement_ms: float = 0.0
    fill_ms: float = 0.0
    malformed_fills: int = 0
    hidden_fills: dict[str, int] = field(default_factory=dict)  # client id -> fill visible at
    rest_failures: int = 0
    malformed_sent: int = 0

    def down(self, now: int) -> bool:
        return any(s <= now < e for s, e in self.rest_down)


class SimTransport(SimExchange):
    """`SimExchange` plus what sits between a bot and a venue: outages, slow replies, resync."""

    def __init__(self, engine: Engine, clock: VirtualClock, net: Network, api_key: str = API_KEY,
                 api_secret: str = API_SECRET) -> None:
        self._client_clock = _ClientClock(clock)
        super().__init__(engine, api_key, api_secret, clock=self._client_clock)
        self.virtual = clock
        self.net = net

    def set_time_offset_ms(self, offset_ms: int) -> None:
        """Client-side time sync (what ccxt's load_time_difference does)."""
        self._client_clock.offset_ms = int(offset_ms)

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                    signed: bool = True) -> Any:
        if self.net.down(self.virtual.now_ms()):
            await asyncio.sleep(0)
            self.net.rest_failures += 1
            raise error_from_binance(503, None, "Service Unavailable: the exchange is not answering "
                                                "(gameday exchange_outage)")
        return await super()._call(method, path, params, signed=signed)

    async def create_order(self, request: OrderRequest) -> OrderState:
        started = self.virtual.now_ms()
        try:
            state = await super().create_order(request)
        finally:
            if self.net.placement_ms > 0:
                self.virtual.advance_to(max(self.virtual.now_ms(), started + round(self.net.placement_ms)))
        if (self.net.fill_ms > self.net.placement_ms and request.type == "market"
                and state.filled_qty > 0):
            self.net.hidden_fills[request.client_id] = started + round(self.net.fill_ms)
        return self._seen(state)

    async def fetch_order(self, symbol: str, client_id: str) -> OrderState:
        return self._seen(await super().fetch_order(symbol, client_id))

    def _seen(self, state: OrderState) -> OrderState:
        due = self.net.hidden_fills.get(state.client_id)
        if due is not None:
            if self.virtual.now_ms() < due:
                return replace(state, status="new", filled_qty=0.0, avg_price=None)
            del self.net.hidden_fills[state.client_id]
        if self.net.malformed_fills > 0 and state.filled_qty > 0:
            self.net.malformed_fills -= 1
            self.net.malformed_sent += 1
            return replace(state, avg_price=math.nan)
        return state


# --------------------------------------------------------------------------------------------
# The bot's disk (the disk_full fault)
# --------------------------------------------------------------------------------------------


class SimDisk(Disk):
    """The real disk until `full`; then every write fails as a full disk's does (ENOSPC)."""

    def __init__(self) -> None:
        self.full = False

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device (gameday disk_full)")
        return super().write(fd, data)


class SimStore:
    """The bot's state store on that disk: while `full`, writes fail the way SQLite's do on a full
    disk ("database or disk is full"); reads and pings still work."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.full = False

    def _write(self, key: str) -> None:
        if self.full:
            raise StateStoreError(f"{self.name}:{key}: database or disk is full (gameday disk_full)")

    def get(self, key: str) -> JsonObject | None:
        return self.inner.get(key)

    def put(self, key: str, value: JsonObject) -> None:
        self._write(key)
        self.inner.put(key, value)

    def update(self, key: str, fn: Callable[[JsonObject | None], JsonObject]) -> JsonObject:
        self._write(key)
        return self.inner.update(key, fn)

    def delete(self, key: str) -> None:
        self._write(key)
        self.inner.delete(key)

    def set_aside(self, key: str, new_key: str) -> bool:
        self._write(key)
        return self.inner.set_aside(key, new_key)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


@dataclass
class SimDisks:
    audit: SimDisk = field(default_factory=SimDisk)  # the audit log and its spill files
    marker: SimDisk = field(default_factory=SimDisk)  # the kill-switch marker file
    state_full: bool = False  # the state store
