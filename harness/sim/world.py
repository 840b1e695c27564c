"""The world of one sim run: exchange engine, feed, transport, the bot process, the agenda.

Faults act through this object (harness/faults/*: `async def sim(world, step)`); the runner
(harness/sim/runner.py) builds one per scenario and runs it to its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.clock import VirtualClock
from bot.core.events import Event, EventBus
from bot.core.market import Bar, BookTick, IncrementalATR, RollingMean
from bot.io.alerts import AlertRouter, Redactor
from bot.io.audit_trail import AuditTrail
from bot.io.state import open_bot_store
from bot.runtime import StartupRefused, Trader, TraderConfig
from harness.expect import RunRecord
from harness.faults import FAULTS, FaultError
from harness.runbooks.sim import watch_for_leaks
from harness.scenario import Scenario
from harness.sim.alerts import SimAlerts, sim_alert_config
from harness.sim.constants import (
    API_KEY,
    API_SECRET,
    HARNESS_ORDER_PREFIX,
    OPERATOR_TOKEN,
    P_BAR,
    P_DELIVERY,
    P_PHASE,
    P_STEP,
    START_MS,
    STUCK_POLL_MS,
    SYMBOL,
    operator_access,
)
from harness.sim.outcome import duplicate_orders
from harness.sim.steps import ActiveStep
from harness.sim.transport import Feed, Network, SimDisks, SimStore, SimTransport
from harness.testnet.engine import Engine
from harness.testnet.errors import BinanceError
from harness.testnet.market import Candle, load_csv
from harness.testnet.model import Account as ExchangeAccount


@dataclass(order=True)
class _Item:
    ts: int
    prio: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)


class SimWorld:
    """Exchange, feed, bot and agenda of one sim run. Faults act through this object."""

    def __init__(self, scenario: Scenario, params: dict[str, dict[str, Any]], policy: Any,
                 workdir: Path) -> None:
        self.scenario = scenario
        self.params = params
        self.policy = policy
        self.workdir = workdir
        self.bar_ms = scenario.bar_ms
        self.clock = VirtualClock(START_MS)
        market = scenario.market
        costs = policy.execution_costs
        self.candles: list[Candle] | None = None
        start_price = market.start_price
        if market.generator == "fixture":
            assert market.file is not None
            self.candles = load_csv(market.file)
            if not self.candles:
                raise FaultError(f"fixture {market.file} holds no bars")
            start_price = self.candles[0].open
        self.xe = Engine(self.clock, seed=scenario.seed, vol_bps=market.vol_bps, bar_ms=self.bar_ms,
                         start_prices={SYMBOL: start_price}, maker_fee=max(costs.maker_fee, 0.0),
                         taker_fee=costs.taker_fee, starting_balance=scenario.account.equity)
        self.api_key, self.api_secret = API_KEY, API_SECRET  # the key the bot trades on (rotated by a runbook)
        self.bot_keys = {API_KEY}  # every key the bot has traded on in this run
        self.xe.create_key(API_KEY, API_SECRET)
        self.net = Network()
        self.feed = Feed()
        self.events: list[Event] = []
        self._watchers: list[Callable[[Event], None]] = []
        self._agenda: list[_Item] = []
        self._seq = itertools.count()
        self._last_feed_e = START_MS - 1
        self._last_timer_ms = -1
        self._stuck_noted = False
        self._playing_bar = False
        self.bar_index = 0
        self.bar_overrides: dict[int, Callable[[float], tuple[float, float, float, float]]] = {}
        self.inference: list[tuple[int, int, float]] = []  # (start, end, ms)
        self.model_output: list[tuple[int, int, dict[str, Any]]] = []  # (start, end, signal fields)
        vol = policy.circuit_breakers.volatility.atr
        self.atr = IncrementalATR(vol.atr_periods)
        self.atr_baseline = RollingMean(vol.baseline_periods)
        self.atr_ratio_before: float | None = None
        self._day = -1
        self._day_peak = scenario.account.equity
        self.notes: list[str] = []
        self.trader: Trader | None = None
        self.bus: EventBus | None = None  # the running bot's event bus
        self.store: SimStore | None = None
        self.audit: AuditTrail | None = None
        self.disks = SimDisks()
        self.transport: SimTransport | None = None
        self.restarts = 0
        self.alerts = SimAlerts(self, sim_alert_config())
        if scenario.duration is not None:
            self.end_ms = START_MS + scenario.duration.to_ms(self.bar_ms)
        else:
            bars = market.bars if market.bars is not None else len(self.candles or [])
            if self.candles is not None:
                bars = min(bars, len(self.candles))
            self.end_ms = START_MS + bars * self.bar_ms
        self.xe.add_listener(self._on_price_change)

    # --- scheduling -------------------------------------------------------------------------

    def at(self, ts_ms: int, fn: Callable[[], Any], prio: int = P_PHASE) -> None:
        """Run `fn` (sync or async) when virtual time reaches ts_ms (or now, if that has passed)."""
        heapq.heappush(self._agenda, _Item(max(int(ts_ms), self.now), prio, next(self._seq), fn))

    def watch(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call fn(event) for every bot event from now on; returns the unsubscribe function."""
        self._watchers.append(fn)
        return lambda: self._watchers.remove(fn) if fn in self._watchers else None

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    def emit(self, name: str, **fields: Any) -> None:
        """An event on the bot's bus (so its alerting hears it), or straight into the record when
        no bot process is running."""
        if self.bus is not None:
            self.bus.emit(name, self.now, **fields)
        else:
            self._record(Event(name, self.now, fields))

    def _record(self, event: Event) -> None:
        self.events.append(event)
        for fn in list(self._watchers):
            fn(event)

    # --- the exchange as the harness sees it ---------------------------------------------------

    @property
    def account(self) -> ExchangeAccount:
        return self.xe.accounts[self.api_key]

    def price(self) -> float:
        return self.xe.mark_price(SYMBOL)

    def exchange_qty(self) -> float:
        return self.account.position(SYMBOL).qty

    def real_equity(self) -> float:
        """Wallet + unrealised P&L on the exchange: the account's real equity."""
        acct = self.account
        return acct.wallet + self.xe.unrealized_pnl(acct)

    def day_peak(self) -> float:
        self._sample_equity()
        return self._day_peak

    def _sample_equity(self) -> None:
        equity = self.real_equity()
        day = self.now // 86_400_000
        if day != self._day:
            self._day, self._day_peak = day, equity
        self._day_peak = max(self._day_peak, equity)

    def place_for_bot(self, side: str, qty: float) -> Any:
        """Open exposure on the bot's account (as another process or an earlier run would)."""
        step = self.xe.markets[SYMBOL].spec.step_size
        qty = math.floor(qty / step + 1e-9) * step
        if qty <= 0:
            raise FaultError(f"the exposure needed rounds to zero (step {step})")
        try:
            return self.xe.place_order(self.api_key, SYMBOL, side, "MARKET", round(qty, 3),
                                       client_id=f"{HARNESS_ORDER_PREFIX}{next(self._seq)}")
        except BinanceError as exc:
            raise FaultError(f"the exchange refused the harness's {side} {qty:.3f} {SYMBOL} on the bot's "
                             f"account: HTTP {exc.status} code {exc.code} {exc.msg}") from None

    def stop_pct(self, entry: float) -> float:
        """The stop distance the bot's exit policy gives at the current ATR (fraction of entry)."""
        sl = self.policy.exits.stop_loss
        atr = self.atr.value
        raw = sl.atr_multiplier * atr / entry if atr is not None else sl.min_pct
        return float(min(max(raw, sl.min_pct), sl.max_pct))

    # --- the feed -----------------------------------------------------------------------------

    def _on_price_change(self, symbol: str) -> None:
        if symbol != SYMBOL or self._playing_bar:
            return
        self.publish_book()

    def publish_book(self) -> None:
        bid, ask = self.xe.book(SYMBOL)
        now = self.now
        self._sample_equity()
        tick = BookTick(now, bid, ask)
        self._publish(now, lambda t: t.on_book(tick, event_ts_ms=now))

    def _publish(self, e: int, deliver: Callable[[Trader], Awaitable[None]]) -> None:
        if self.feed.stalled(e):
            self.feed.dropped += 1
            return

        async def run() -> None:
            trader = self.trader
            if trader is not None:
                await deliver(trader)
                self._last_feed_e = max(self._last_feed_e, e)

        self.at(e + self.feed.lag_at(e), run, P_DELIVERY)

    async def _keepalive(self) -> None:
        trader = self.trader
        if trader is None:
            return
        e = self.feed.latest_event(self.now, self._last_feed_e)
        if e is not None:
            self._last_feed_e = e
            await trader.on_feed_alive(e)

    # --- bars ---------------------------------------------------------------------------------

    def _play_bar(self, k: int) -> Candle:
        m = self.xe.market(SYMBOL)
        override = self.bar_overrides.pop(k, None)
        self._playing_bar = True
        try:
            if m.path is not None or m.frozen:
                return self.xe.roll_bar(SYMBOL)
            if override is not None:
                o, h, low, c = override(m.price)
                return self.xe.apply_bar(SYMBOL, o, h, low, c)
            if self.candles is not None:
                src = self.candles[(k - 1) % len(self.candles)]
                scale = m.price / src.open
                return self.xe.apply_bar(SYMBOL, src.open * scale, src.high * scale, src.low * scale,
                                         src.close * scale, src.volume)
            return self.xe.advance_bar(SYMBOL)
        finally:
            self._playing_bar = False

    async def _bar_close(self, k: int) -> None:
        candle = self._play_bar(k)
        self.bar_index = k
        bar = Bar(self.now, candle.open, candle.high, candle.low, candle.close, candle.volume)
        before = self.atr_baseline.mean if self.atr_baseline.full else None
        atr = self.atr.update(bar)
        if atr is not None:
            self.atr_baseline.update(atr)
            self.atr_ratio_before = atr / before if before else None
        self.publish_book()
        e = self.now
        self._publish(e, lambda t: t.on_bar(bar, event_ts_ms=e))
        if k * self.bar_ms + START_MS + self.bar_ms <= self.end_ms:
            self.at(START_MS + (k + 1) * self.bar_ms, lambda: self._bar_close(k + 1), P_BAR)

    # --- the bot ------------------------------------------------------------------------------

    def _verify(self, credential: str | None) -> bool | str:
        return operator_access().killswitch_verifier()(credential)

    def _new_trader(self) -> Trader:
        self.store = SimStore(open_bot_store(self.workdir / "state.db"))
        self.store.full = self.disks.state_full
        self.audit = AuditTrail(self.workdir / "audit.jsonl", now_ms=self.clock.now_ms, disk=self.disks.audit,
                                verify_chain=True)
        bus = EventBus()
        bus.subscribe(self._record)
        self.bus = bus
        self.transport = SimTransport(self.xe, self.clock, self.net, self.api_key, self.api_secret)
        config = TraderConfig(symbol=SYMBOL, bar_ms=self.bar_ms, trade_entries=self.scenario.account.strategy)
        trader = Trader(self.policy, self.transport, self.store, self.audit, self.clock, bus,
                        verify=self._verify, config=config, marker_path=self.workdir / "EMERGENCY_STOP",
                        disk=self.disks.marker)
        # The bot's alerting, every channel delivered to an in-memory receiver on virtual time.
        router = AlertRouter(self.alerts.config, self.clock, bus, available=self.alerts.receivers,
                             redactor=Redactor([self.api_secret, OPERATOR_TOKEN], env={}),
                             equity=lambda: trader.engine.equity if hasattr(trader, "engine") else None)
        bus.subscribe(router)
        self.alerts.attach(router)
        return trader

    def set_state_full(self, full: bool) -> None:
        self.disks.state_full = full
        if self.store is not None:
            self.store.full = full

    async def start_bot(self) -> bool:
        """Start a bot process; False when it refused to start (startup.refused was emitted)."""
        trader = self._new_trader()
        try:
            await trader.start()
        except StartupRefused as exc:
            self.notes.append(f"the bot refused to start at {self.now - START_MS} ms: {exc}")
            self._close_io()
            self.trader = None
            return False
        self._wrap_inference(trader)
        self.trader = trader
        self._last_timer_ms = -1
        return True

    async def stop_bot(self) -> None:
        """The bot process ends (its in-memory state is gone; the store and marker remain)."""
        trader, self.trader = self.trader, None
        if trader is not None:
            await trader.close()
            await trader.exchange.close()
        self._close_io()

    async def crash_bot(self) -> None:
        """The bot process dies at once: no last save, and what its audit trail kept only in
        memory is gone (its spill files stay for the next process)."""
        trader, self.trader = self.trader, None
        if trader is not None:
            await trader.exchange.close()
        if self.audit is not None:
            self.audit.abandon()
            self.audit = None
        self._close_io()

    def _close_io(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.audit is not None:
            for kept in self.audit.close():
                self.notes.append(f"an audit record was not written when the bot stopped: {kept.action} "
                                  f"({kept.error[:120]})")
            self.audit = None

    def _wrap_inference(self, trader: Trader) -> None:
        strategy = trader.engine.strategy
        update = strategy.update

        def timed_update(bar: Bar) -> Any:
            now = self.clock.now_ms()
            slow = max((ms for s, e, ms in self.inference if s <= now < e), default=0.0)
            if slow > 0:
                self.clock.advance_to(now + round(slow))
            signal = update(bar)
            for start, end, fields in self.model_output:
                if start <= now < end:
                    signal = dataclasses.replace(signal, **fields)
            return signal

        strategy.update = timed_update  # type: ignore[method-assign]

    def require_trader(self, what: str) -> Trader:
        if self.trader is None:
            raise FaultError(f"{what} needs a running bot, and the bot is not running "
                             "(it refused to start or has not started yet: inject after 0 bars)")
        return self.trader

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> RunRecord:
        scenario = self.scenario
        steps = [ActiveStep(s, self.params.get(s.id, {}), FAULTS[s.fault].unfolds) for s in scenario.steps]
        try:
            self._open_inherited_position()
            for active in steps:
                ts = START_MS + active.step.at.to_ms(self.bar_ms)
                if ts <= START_MS:
                    await self._inject(active)
            await self.start_bot()
            if self.trader is not None:
                self.publish_book()
            watch_for_leaks(self)
            for active in steps:
                ts = START_MS + active.step.at.to_ms(self.bar_ms)
                if ts > START_MS:
                    self.at(ts, functools.partial(self._inject, active), P_STEP)
            if START_MS + self.bar_ms <= self.end_ms:
                self.at(START_MS + self.bar_ms, lambda: self._bar_close(1), P_BAR)
            await self._loop()
        finally:
            for active in steps:
                for fn in reversed(active.cleanups):
                    fn()
        end_state = self._end_state()
        await self.stop_bot()
        return RunRecord(events=list(self.events), steps=[a.timing() for a in steps], bar_ms=self.bar_ms,
                         time_scale=1.0, end_state=end_state, start_ms=START_MS, end_ms=self.end_ms,
                         notes=self.notes)

    async def _inject(self, active: ActiveStep) -> None:
        active.injected_ms = self.now
        active.first_event = len(self.events)
        if active.unfolds:
            active.pending = f"{active.step.fault} was injected and its condition not yet reached"
        kind = FAULTS[active.step.fault]
        fault = kind.sim
        if fault is None:  # the loader refuses the kind in a sim scenario; a hand-built one lands here
            active.fail(f"fault {active.step.fault!r} has no sim implementation: {kind.not_in.get('sim', '')}")
            return
        try:
            await fault(self, active)
        except FaultError as exc:
            active.fail(str(exc))

    async def _loop(self) -> None:
        budget = 4000 * (1 + (self.end_ms - START_MS) // self.bar_ms) + 100_000
        while budget > 0:
            budget -= 1
            t = self._agenda[0].ts if self._agenda else math.inf
            deadline = self._trader_deadline()
            if deadline is not None:
                t = min(t, deadline)
            alerts_due = self.alerts.next_deadline_ms()
            if alerts_due is not None:
                t = min(t, max(alerts_due, self.now))
            if t > self.end_ms:
                break
            if t > self.now:
                self.clock.advance_to(int(t))
            self.alerts.pump()
            await self._keepalive()
            if self._agenda and self._agenda[0].ts <= self.now:
                item = heapq.heappop(self._agenda)
                result = item.fn()
                if asyncio.iscoroutine(result):
                    await result
                continue
            deadline = self._trader_deadline()
            if self.trader is not None and deadline is not None and deadline <= self.now:
                self._last_timer_ms = self.now
                await self.trader.on_timer()
        else:
            raise RuntimeError(f"the sim loop made no progress at {self.now - START_MS} ms "
                               "(a deadline that never moves?)")
        if self.end_ms > self.now:
            self.clock.advance_to(self.end_ms)

    def _trader_deadline(self) -> int | None:
        if self.trader is None:
            return None
        # With no feed fault anywhere, every wake-up hands the bot a fresh message (_keepalive), so
        # the stale-feed watchdog cannot fire and need not wake the loop every few seconds.
        d = self.trader.next_deadline_ms(feed_watchdog=bool(self.feed.windows))
        if d is None:
            return None
        if d <= self._last_timer_ms:
            # A deadline on_timer() already served and that did not move: poll instead of spinning.
            if not self._stuck_noted:
                self._stuck_noted = True
                self.notes.append(f"the bot kept reporting a past deadline ({d - START_MS} ms) after "
                                  f"on_timer() at {self._last_timer_ms - START_MS} ms; the driver polled "
                                  f"every {STUCK_POLL_MS} ms from then on")
            return self._last_timer_ms + STUCK_POLL_MS
        return d

    # --- setup and results --------------------------------------------------------------------

    def _open_inherited_position(self) -> None:
        pos = self.scenario.account.position
        if pos is None:
            return
        price = self.price()
        notional = pos.notional if pos.notional is not None else \
            self.scenario.account.equity * (pos.qty_pct or 0.0) / 100
        if pos.entry_offset_pct:
            self.xe.set_price(SYMBOL, price * (1 + pos.entry_offset_pct / 100))
        self.place_for_bot("BUY" if pos.side == "long" else "SELL", notional / self.price())
        if pos.entry_offset_pct:
            self.xe.set_price(SYMBOL, price)

    def _end_state(self) -> dict[str, Any]:
        if self.trader is not None:
            status = self.trader.status()
            state = {k: status[k] for k in ("trading", "killswitch", "position")}
        else:
            marker = (self.workdir / "EMERGENCY_STOP").exists()
            state = {"trading": "halted", "killswitch": "engaged" if marker else "clear",
                     "position": "open" if abs(self.exchange_qty()) > 1e-12 else "flat"}
            self.notes.append("the bot was not running at the end: end state trading=halted")
        state["duplicate_orders"] = "some" if self.duplicate_orders() else "none"
        unconfirmed = self.alerts.unconfirmed(self.events)
        state["unconfirmed_alerts"] = "some" if unconfirmed else "none"
        if unconfirmed:
            self.notes.append(f"alert.sent without a receipt at the receiver: {unconfirmed[:5]}")
        return state

    def duplicate_orders(self) -> list[str]:
        """Orders sent again while an earlier order's outcome was unknown (or re-sent under the
        same client id), from the bot's events and the exchange's own order log."""
        return duplicate_orders(self.xe.order_log, self.events, self.bot_keys)
