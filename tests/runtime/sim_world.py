"""A small in-process world for Trader tests: virtual clock, testnet engine, SimExchange."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import load_policy
from bot.core.clock import VirtualClock
from bot.core.events import Event, EventBus
from bot.core.market import Bar, BookTick
from bot.io.audit_trail import AuditTrail
from bot.io.state import StateStore, open_store
from bot.runtime import Trader, TraderConfig
from harness.sim.transport import SimDisk
from harness.testnet.engine import Engine as ExchangeEngine
from harness.testnet.sim import SimExchange

SYMBOL = "BTCUSDT"
BAR_MS = 300_000
TOKEN = "operator-token-for-tests-only"


@dataclass
class World:
    dir: Path
    profile: str = "futures"
    trade_entries: bool = False
    feed_alive: bool = True  # the kline stream keeps updating between bar closes
    vol_bps: float = 5.0  # the exchange's random walk (its kline history too)
    clock: VirtualClock = field(default_factory=lambda: VirtualClock(1_767_571_200_000))
    events: list[Event] = field(default_factory=list)
    audit_disk: SimDisk = field(default_factory=SimDisk)  # `.full = True`: its writes fail with ENOSPC
    marker_disk: SimDisk = field(default_factory=SimDisk)
    verify: Callable[[str | None], bool | str] | None = None  # the kill switch's check (default: TOKEN)

    def __post_init__(self) -> None:
        self.policy = load_policy(self.profile).policy
        costs = self.policy.execution_costs
        self.exchange_engine = ExchangeEngine(self.clock, seed=3, vol_bps=self.vol_bps, bar_ms=BAR_MS,
                                              maker_fee=max(costs.maker_fee, 0), taker_fee=costs.taker_fee)
        self.exchange_engine.create_key("test-key", "test-secret-not-real")
        self.store: StateStore = open_store(self.dir / "state.db")
        self.trader = self.new_trader()

    def new_trader(self) -> Trader:
        bus = EventBus()
        bus.subscribe(self.events.append)
        exchange = SimExchange(self.exchange_engine, "test-key", "test-secret-not-real", clock=self.clock)
        audit = AuditTrail(self.dir / "audit.jsonl", now_ms=self.clock.now_ms, disk=self.audit_disk,
                           verify_chain=True)
        return Trader(self.policy, exchange, self.store, audit, self.clock, bus, disk=self.marker_disk,
                      verify=self.verify or (lambda credential: credential == TOKEN),
                      config=TraderConfig(symbol=SYMBOL, bar_ms=BAR_MS, trade_entries=self.trade_entries),
                      marker_path=self.dir / "EMERGENCY_STOP")

    async def bars(self, count: int) -> None:
        for _ in range(count):
            close_at = self.clock.now_ms() + BAR_MS
            while (deadline := self.trader.next_deadline_ms()) is not None and deadline < close_at:
                self.clock.advance_to(max(deadline, self.clock.now_ms()))
                if self.feed_alive:
                    await self.trader.on_feed_alive(self.clock.now_ms())
                await self.trader.on_timer()
            self.clock.advance_to(close_at)
            candle = self.exchange_engine.advance_bar(SYMBOL)
            bid, ask = self.exchange_engine.book(SYMBOL)
            await self.trader.on_book(BookTick(self.clock.now_ms(), bid, ask))
            await self.trader.on_bar(Bar(self.clock.now_ms(), candle.open, candle.high, candle.low, candle.close))

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def of(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    def give_position(self, qty: float) -> None:
        """Someone (or an earlier run) opened a position on the bot's account."""
        side = "BUY" if qty > 0 else "SELL"
        self.exchange_engine.place_order("test-key", SYMBOL, side, "MARKET", abs(qty))

    def position(self) -> float:
        account = self.exchange_engine.accounts["test-key"]
        return account.position(SYMBOL).qty
