"""One paper-trading session: the real bot (`bot.runtime.Trader`: strategy, sizing, exits, cost
check, breakers, risk gate) on one market, against the testnet matching engine in-process
(`SimExchange`), under a `VirtualClock`.

Each bar is played at its close the way sim scenarios play bars: the engine walks the price
through open, the nearer extreme, the other extreme and close (resting post-only orders fill as
the price passes through, at their limit, with the maker fee), then the bot gets the book and
the closed bar. Between closes the bot's own deadlines (reconciliation, order polls, cooldowns)
are served, each preceded by a kline-stream keep-alive, as a live stream would deliver.

Costs are the policy's: the venue charges `execution_costs.taker_fee` / `maker_fee`, and every
taking fill is moved against the order by the policy's slippage (base + volatility term on the
current ATR) and market impact, beyond the touch (the book's 2 bps spread). Post-only orders
pay no slippage and no impact, as the cost model says.

A breaker that halts trading with a manual resume is resumed by the paper operator as soon as
the policy lets it (cooldown passed); every trip, halt and resume is counted in the result, so
the figures show how often the bot stopped itself as well as how it traded in between.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.clock import VirtualClock
from bot.core.costs import impact_bps, slippage_bps
from bot.core.events import Event, EventBus
from bot.core.market import Bar, BookTick, IncrementalATR
from bot.core.policy import Policy
from bot.io.audit_trail import AuditTrail
from bot.io.state import open_store
from bot.runtime import Trader, TraderConfig
from harness.testnet.engine import Engine
from harness.testnet.market import Candle
from harness.testnet.sim import SimExchange
from harness.validate.markets import CandleSource, Market

API_KEY = "gameday-paper-key"
API_SECRET = "gameday-paper-FAKE-secret-not-real"
OPERATOR = "paper-operator"
RESUME_RETRY_MS = 15 * 60_000  # how often the paper operator retries a refused manual resume
STUCK_POLL_MS = 1_000  # a deadline the bot served and did not move is polled at this pace
RECONCILE_MS = 3_600_000  # the paper venue cannot drift from the bot: hourly reconciliation is plenty


@dataclass
class SessionTally:
    """What the bot did, from its event stream."""

    trades: list[dict[str, Any]] = field(default_factory=list)
    exits: Counter[str] = field(default_factory=Counter)
    halt_reasons: Counter[str] = field(default_factory=Counter)
    breaker_trips: Counter[str] = field(default_factory=Counter)
    halts: int = 0
    pauses: int = 0
    orders_placed: int = 0
    orders_rejected: int = 0
    resumes: int = 0

    def on_event(self, event: Event) -> None:
        name = event.name
        if name == "position.closed":
            f = event.fields
            self.trades.append({"ts_ms": event.ts_ms, "qty": f.get("qty"), "entry": f.get("entry"),
                                "exit": f.get("exit"), "pnl": float(f["pnl"]), "reason": f.get("reason")})
            self.exits[str(f.get("reason"))] += 1
        elif name == "breaker.tripped":
            self.breaker_trips[f"{event.fields.get('breaker')}/{event.fields.get('level')}"] += 1
        elif name == "trading.halted":
            self.halts += 1
            self.halt_reasons[str(event.fields.get("reason"))[:120]] += 1
        elif name == "trading.paused":
            self.pauses += 1
        elif name == "order.placed":
            self.orders_placed += 1
        elif name == "order.rejected":
            self.orders_rejected += 1


class PaperSession:
    """A bot trading one market on its own paper account (call `start`, then `play` bars)."""

    def __init__(self, market: Market, policy: Policy, equity: float, workdir: Path) -> None:
        self.market = market
        self.policy = policy
        self.starting_equity = equity
        self.workdir = workdir
        self.source: CandleSource = market.source()
        self.bar_ms = market.bar_ms
        self.tally = SessionTally()
        self.equity_curve: list[float] = [equity]
        self.equity_ts: list[int] = []
        self.bars = 0
        self.slippage_paid = 0.0
        self._symbol = market.spec.symbol
        self._atr = IncrementalATR(policy.circuit_breakers.volatility.atr.atr_periods)
        self._last_close = 0.0
        self._next_resume_ms = 0
        self.clock: VirtualClock | None = None
        self.xe: Engine | None = None
        self.trader: Trader | None = None
        self._pending: list[Candle] = []

    # --- setup -----------------------------------------------------------------------------

    async def start(self) -> None:
        first = self.source.take(1)
        if not first:
            raise ValueError(f"market {self.market.name} has no bars")
        self._pending = first
        candle = first[0]
        self.clock = clock = VirtualClock(candle.open_time)
        self.equity_ts.append(candle.open_time)
        costs = self.policy.execution_costs
        self.xe = xe = Engine(clock, symbols=(self.market.spec,), start_prices={self._symbol: candle.open},
                              maker_fee=max(costs.maker_fee, 0.0), taker_fee=costs.taker_fee, bar_ms=self.bar_ms,
                              history_bars=0, starting_balance=self.starting_equity)
        xe.create_key(API_KEY, API_SECRET)
        xe.taker_fill_price = self._taker_fill_price
        bus = EventBus()
        bus.subscribe(self.tally.on_event)
        config = TraderConfig(symbol=self._symbol, bar_ms=self.bar_ms, reconcile_every_ms=RECONCILE_MS)
        self.trader = Trader(self.policy, SimExchange(xe, API_KEY, API_SECRET, clock=clock),
                             open_store(self.workdir / "state.db"),
                             AuditTrail(self.workdir / "audit.jsonl", now_ms=clock.now_ms),
                             clock, bus, verify=lambda credential: False, config=config,
                             marker_path=self.workdir / "EMERGENCY_STOP")
        await self.trader.start()

    def _taker_fill_price(self, symbol: str, sign: int, qty: float, touch: float) -> float:
        costs = self.policy.execution_costs
        atr = self._atr.value
        atr_bps = atr / self._last_close * 10_000 if atr is not None and self._last_close > 0 else 0.0
        bps = slippage_bps(costs, atr_bps, False) + impact_bps(costs, qty * touch, False)
        price = touch * (1.0 + sign * bps / 10_000)
        self.slippage_paid += qty * abs(price - touch)
        return price

    # --- playing bars ----------------------------------------------------------------------

    async def play(self, bars: int) -> int:
        """Play up to `bars` more bars (fewer when a recording runs out); returns how many."""
        candles = self._pending + self.source.take(bars - len(self._pending))
        self._pending = []
        for candle in candles:
            await self._bar(candle)
        return len(candles)

    async def _bar(self, candle: Candle) -> None:
        trader, clock, xe = self.trader, self.clock, self.xe
        assert trader is not None and clock is not None and xe is not None
        close_ms = candle.open_time + self.bar_ms
        served: int | None = None
        while True:
            deadline = trader.next_deadline_ms(feed_watchdog=False)
            if deadline is None or deadline >= close_ms:
                break
            due = max(deadline, clock.now_ms()) if served is None or deadline > served else served + STUCK_POLL_MS
            if due >= close_ms:
                break
            clock.advance_to(due)
            served = due
            await trader.on_feed_alive(due)
            await trader.on_timer()
        clock.advance_to(close_ms)
        played = xe.apply_bar(self._symbol, candle.open, candle.high, candle.low, candle.close, candle.volume)
        bar = Bar(close_ms, played.open, played.high, played.low, played.close, played.volume)
        self._atr.update(bar)
        self._last_close = bar.close
        bid, ask = xe.book(self._symbol)
        await trader.on_book(BookTick(close_ms, bid, ask))
        await trader.on_bar(bar)
        await self._operator(close_ms)
        account = xe.accounts[API_KEY]
        self.equity_curve.append(account.wallet + xe.unrealized_pnl(account))
        self.equity_ts.append(close_ms)
        self.bars += 1

    async def _operator(self, now: int) -> None:
        """The paper operator resumes a manual-resume halt once the policy allows it."""
        trader = self.trader
        assert trader is not None
        board = trader.engine.board.status()
        if board.state != "halted" or not board.requires_manual_resume or now < self._next_resume_ms:
            return
        outcome = await trader.manual_resume(OPERATOR)
        if outcome.accepted:
            self.tally.resumes += 1
            self._next_resume_ms = 0
        else:
            self._next_resume_ms = now + RESUME_RETRY_MS

    # --- results ---------------------------------------------------------------------------

    @property
    def fees_paid(self) -> float:
        assert self.xe is not None
        return self.xe.accounts[API_KEY].fees_paid

    @property
    def open_position(self) -> bool:
        assert self.xe is not None
        return abs(self.xe.accounts[API_KEY].position(self._symbol).qty) > 1e-12

    async def close(self) -> None:
        if self.trader is not None:
            await self.trader.close()
            await self.trader.exchange.close()
            self.trader.store.close()
            self.trader.audit.close()


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """Where sessions keep their state store and audit log: RAM-backed when the host has one
    (the audit log fsyncs every record; paper state is thrown away after the run)."""
    shm = Path("/dev/shm")  # nosec B108 - only the parent of a private TemporaryDirectory (unique, 0700)
    return tempfile.TemporaryDirectory(prefix="gameday-validate-",
                                       dir=str(shm) if shm.is_dir() else None)
