"""The bot's brain: market data, fills and operator commands in; order intents out.

Pure and synchronous. Every input first feeds the breaker board (so a breaker judges every
event, on real equity), then exits are planned before entries, and every order passes the risk
gate. Exits, stops and flattening are never blocked by a halt. Arithmetic that fails while
accounting for a fill halts trading (fail closed) instead of letting orders through.

Resting entries: whenever new entries are forbidden - any kill-switch mode, a pause or halt of
the board (breakers, exchange outage, state store down, fail-closed), or the zone the market is
in being blocked - every entry order still working is cancelled (`CancelOrder`, one per order,
once); protective and reduce-only orders are never touched. A latency backoff does not cancel:
it throttles new order traffic to a slow venue (a cancel is more traffic) and lifts in seconds;
it says nothing against the entry already booked. An entry that fills after entries were
forbidden (the cancel lost the race) is alerted and then managed like any position, with its
exits, and flattened if the state asks for a flatten.

An entry the strategy wanted and a check refused emits `order.refused{rule, side, qty, reason}`
(rules: bot.core.risk.REFUSAL_RULES), at most once per bar per rule. A refused manual resume
emits `resume.refused{by, actor, reason}`.

Snapshot (version 2): board, kill switch, peak equity, order sequence, the strategy's measured
outcomes and the open position's exit plan (side, qty, levels, entry ATR, bars held). A
restarted engine gives the plan back to the position reconciliation finds when it is the same
position: same side and a size no larger than saved (a partial close outside the bot leaves
the same stop). A different side or a larger size is not the position the plan was made for:
it gets a fresh plan from the exchange's entry price and the current (warmed) ATR, with an
alert. Version 1 snapshots (no plan) are still read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.breakers.base import (
    BarClosed,
    BookUpdate,
    EquityUpdate,
    ExchangeStatus,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    StoreStatus,
    TradeClosed,
)
from bot.core.breakers.board import BoardStatus, BreakerBoard, ResumeResult
from bot.core.clock import Clock
from bot.core.costs import entry_allowed_by_edge
from bot.core.events import EventBus
from bot.core.exits import ExitState, check_exit, plan_exits
from bot.core.killswitch import KillResult, KillStatus, KillSwitch
from bot.core.market import Bar, BookTick, IncrementalATR
from bot.core.policy import Policy, Zone
from bot.core.ramp import (
    AdvanceEvidence,
    RampState,
    advance_problems,
    advanced,
    capital_cap,
    flag_raised,
    hot_wallet_limit,
    trade_closed,
)
from bot.core.redflags import RedFlag, RedFlagMonitor
from bot.core.risk import Decision, GateContext, OrderIntent, Purpose, RefusalRule, RiskGate, Side
from bot.core.sizing import SizeDecision, size_position, zone_for
from bot.core.strategy import Signal, Strategy

SNAPSHOT_VERSION = 2
_ID_PREFIX = "gd-"  # client ids: gd-<run>-<purpose[:2]>-<seq>
READABLE_SNAPSHOTS = (1, 2)
_EPS = 1e-12
# Why sizing gave no quantity, as an order.refused rule (anything else: the size rounds to 0).
_SIZE_RULES: dict[str, RefusalRule] = {
    "zone_blocked": "zone", "zone_multiplier": "zone", "no_edge": "edge", "invalid_input": "invalid",
    "max_position_pct": "cap", "max_total_exposure_pct": "exposure", "size_factor": "state",
}


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    intent: OrderIntent
    type: Literal["market", "limit"]
    time_in_force: Literal["GTC", "IOC", "GTX"] = "GTC"
    sized_by: str | None = None  # an entry: the sizing constraint that set its size (kelly, max_position_pct, ...)


@dataclass(frozen=True, slots=True)
class CancelAll:
    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one working entry order (by client id); nothing else on the book is touched."""

    symbol: str
    client_id: str
    reason: str


Intent = PlaceOrder | CancelAll | CancelOrder


@dataclass(frozen=True, slots=True)
class Fill:
    client_id: str
    side: Side
    qty: float
    price: float
    fee: float
    ts_ms: int


@dataclass(frozen=True, slots=True)
class EngineStatus:
    trading: Literal["active", "reduced", "paused", "halted"]
    killswitch: KillStatus
    board: BoardStatus
    position_qty: float
    entry_price: float
    equity: float
    peak_equity: float
    flattening: bool

    @property
    def trading_summary(self) -> str:
        """active | paused | halted, counting the kill switch (what scenarios' `final` checks)."""
        if self.killswitch.engaged:
            return "paused" if self.killswitch.mode == "pause" else "halted"
        return "active" if self.trading == "reduced" else self.trading


class Engine:
    def __init__(self, policy: Policy, clock: Clock, bus: EventBus, *, symbol: str, equity: float,
                 verify: Callable[[str | None], bool], qty_step: float = 0.001, run_id: str = "0",
                 trade_entries: bool = True, bar_ms: int = 300_000) -> None:
        self.policy = policy
        self.clock = clock
        self.bus = bus
        self.symbol = symbol
        self.qty_step = qty_step
        self.trade_entries = trade_entries
        self.bar_ms = bar_ms
        self.board = BreakerBoard(policy, bus, clock)
        self.killswitch = KillSwitch(policy, bus, clock, verify)
        self.board.held = lambda: self.killswitch.status().engaged
        self.gate = RiskGate(policy)
        self.ramp_state = RampState(0, clock.now_ms())  # a new bot starts at the first stage
        self.red_flags = RedFlagMonitor(policy.red_flags)
        self.atr = IncrementalATR(policy.circuit_breakers.volatility.atr.atr_periods)
        self.strategy = Strategy.for_policy(policy, atr=self.atr)
        self.wallet = equity
        self.peak_equity = equity
        self.position_qty = 0.0
        self.entry_price = 0.0
        self.exit_state: ExitState | None = None
        self.mark = 0.0
        self.bid = 0.0
        self.ask = 0.0
        self._trade_pnl = 0.0
        self._trade_reason = "exit"
        self._in_flight: dict[str, OrderIntent] = {}
        self._resting: dict[str, tuple[float, float]] = {}  # working limit entries: id -> (unfilled qty, price)
        self._cancelling: set[str] = set()  # entries a CancelOrder was issued for
        self._blocked_zone: Zone | None = None  # the market's zone, while it is a blocked one
        self._refused: dict[str, int] = {}  # order.refused rule -> ts of the bar it was last emitted on
        self._saved_plan: dict[str, Any] | None = None  # a restored snapshot's position plan
        self._catch_up = False  # the first bar after a restored plan counts the bars missed
        self._flattening = False
        self._flat_announced = False
        self._seq = 0
        self._run_id = run_id

    # --- market data ------------------------------------------------------------------------

    def on_book(self, tick: BookTick) -> list[Intent]:
        self.board.observe(BookUpdate(tick))
        if not tick.is_sane():
            return self._safety_intents()
        self.bid, self.ask, self.mark = tick.bid, tick.ask, tick.mid
        self._observe_equity()
        return self._safety_intents() or self._tick_exit()

    def on_bar(self, bar: Bar, *, infer: Callable[[Bar], Any] | None = None) -> list[Intent]:
        """A closed bar. `infer` wraps the strategy call so the runtime can time it."""
        self.board.observe(BarClosed(bar))
        if not bar.is_sane():
            return self._safety_intents()
        atr = self.atr.update(bar)
        self.mark = bar.close
        if self._resting:
            self._blocked_zone = self._zone_if_blocked(atr, bar.close)
        self._observe_equity()
        intents = self._safety_intents()
        signal = (infer or self.strategy.update)(bar)
        if self.exit_state is not None and not self._flattening:
            if self._catch_up:
                self._catch_up = False
                self.exit_state.catch_up(bar.ts_ms, self.bar_ms)
            hit = check_exit(self.exit_state, bar, atr)
            if hit is not None and not self._exit_in_flight():
                purpose: Purpose = "stop" if hit.reason == "stop" else (
                    "take_profit" if hit.reason == "take_profit" else "exit")
                self._trade_reason = hit.reason
                intents.extend(self._close_position(purpose))
        if (self.trade_entries and signal.side is not None and abs(self.position_qty) < _EPS
                and not self._in_flight and atr is not None):
            intents.extend(self._entry(signal, atr, bar.ts_ms))
        return intents

    def warm_up(self, bars: list[Bar]) -> int:
        """Closed bars from before the start (exchange klines, oldest first) seed the ATR, so
        stops, sizing and the volatility exit have a real ATR from the first minute. Only a
        fresh ATR is seeded; returns how many bars were used."""
        if self.atr.value is not None:
            return 0
        used = 0
        for bar in bars:
            if bar.is_sane():
                self.atr.update(bar)
                used += 1
        return used

    def on_feed_lag(self, lag_ms: float) -> list[Intent]:
        self.board.observe(FeedLag(self.clock.now_ms(), lag_ms))
        return self._safety_intents()

    def on_inference(self, ms: float) -> list[Intent]:
        self.board.observe(InferenceTiming(self.clock.now_ms(), ms))
        return self._safety_intents()

    def on_order_latency(self, kind: Literal["placement", "fill"], ms: float) -> list[Intent]:
        self.board.observe(OrderLatency(self.clock.now_ms(), kind, ms))
        return self._safety_intents()

    def on_timer(self) -> list[Intent]:
        now = self.clock.now_ms()
        self.board.on_timer(now)
        if self.killswitch.on_timer(now):
            self._trade_reason = "killswitch"
            return self._flatten("kill switch graceful timeout")
        return self._safety_intents()

    def on_store_status(self, down: bool) -> list[Intent]:
        self.board.observe(StoreStatus(self.clock.now_ms(), down))
        return self._safety_intents()

    def on_exchange_status(self, down: bool, scope: str) -> list[Intent]:
        """The venue became unreachable or reachable again (exchange-outage decision matrix)."""
        self.board.observe(ExchangeStatus(self.clock.now_ms(), down, scope))
        return self._safety_intents()

    def next_deadline_ms(self) -> int | None:
        kill = self.killswitch.status()
        kill_deadline = None if kill.flatten_requested else kill.deadline_ms  # already acted on
        deadlines = [d for d in (self.board.next_deadline_ms(), kill_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    # --- orders and fills -------------------------------------------------------------------

    def on_fill(self, fill: Fill) -> list[Intent]:
        """Account for a fill; a fill whose numbers cannot be accounted for halts trading."""
        try:
            self._account(fill)
        except (ArithmeticError, ValueError, TypeError) as exc:
            self.board.fail_closed(f"P&L arithmetic failed on fill {fill.client_id}: {exc}")
        self._in_flight.pop(fill.client_id, None)
        if abs(self.position_qty) < _EPS:
            self._flattening = False
        return self._safety_intents()

    def on_order_done(self, client_id: str) -> None:
        """The order is no longer working (rejected, cancelled, expired, or never placed)."""
        intent = self._in_flight.pop(client_id, None)
        self._resting.pop(client_id, None)
        self._cancelling.discard(client_id)
        if intent is not None and intent.purpose == "flatten":
            self._flattening = False

    def on_orders_cancelled(self) -> None:
        for client_id in [c for c, i in self._in_flight.items() if not i.risk_reducing]:
            del self._in_flight[client_id]
        self._resting.clear()
        self._cancelling.clear()

    def reconcile_position(self, qty: float, entry: float) -> bool:
        """The exchange's position (signed qty, entry price). When it is not the engine's, adopt
        it (True). When it is, a restored plan waiting for a position it never found is dropped:
        it must not be handed to a position opened later."""
        if self.position_differs(qty):
            self.adopt_position(qty, entry if qty else 0.0)
            return True
        self._saved_plan = None
        return False

    def adopt_position(self, qty: float, entry: float) -> None:
        """Reconciliation found a position the engine did not know: manage it with exits."""
        if not (math.isfinite(qty) and math.isfinite(entry) and entry > 0):
            self.board.fail_closed(f"exchange reported an unusable position: qty={qty!r} entry={entry!r}")
            return
        saved, self._saved_plan = self._saved_plan, None
        self.position_qty, self.entry_price = qty, entry
        self._trade_pnl = 0.0
        if abs(qty) < _EPS:
            self.exit_state = None
            return
        side: Side = "buy" if qty > 0 else "sell"
        now = self.clock.now_ms()
        state, plan_kind = self._restored_plan(saved, side, qty), "restored"
        if state is None:
            plan = plan_exits(side, entry, self.atr.value, self.policy.exits)
            state, plan_kind = ExitState.from_plan(plan, self.atr.value, self.policy.exits, now), "new"
            if saved is not None:
                self.bus.emit("bot.alert", now, severity="warning", key="position.plan_differs",
                              title=f"position {qty} differs from the saved one ({saved.get('qty')}, "
                                    f"{saved.get('side')}): new exit plan, stop {plan.stop:.2f}")
            if self.atr.value is None:
                self.bus.emit("bot.alert", now, severity="warning", key="position.adopted_without_atr",
                              title=f"position {qty} adopted without an ATR: stop at the "
                                    f"{self.policy.exits.stop_loss.min_pct:.2%} floor ({plan.stop:.2f})")
        self._catch_up = plan_kind == "restored"
        self.exit_state = state
        self.bus.emit("position.opened", now, symbol=self.symbol, qty=qty, entry=entry, exit=None, pnl=None,
                      reason="reconciled", plan=plan_kind, stop=state.stop, take_profit=state.take_profit)

    def _restored_plan(self, saved: dict[str, Any] | None, side: Side, qty: float) -> ExitState | None:
        """The saved exit plan, when it was made for this position (see the module docstring)."""
        if saved is None or saved.get("side") != side:
            return None
        try:
            if abs(qty) > float(saved["qty"]) + self.qty_step / 2:
                return None
            return ExitState.from_dict(saved, self.policy.exits)
        except (KeyError, TypeError, ValueError) as exc:
            self.bus.emit("bot.alert", self.clock.now_ms(), severity="warning", key="position.plan_unusable",
                          title=f"saved exit plan unusable ({exc}): planning afresh")
            return None

    def set_wallet(self, wallet: float) -> None:
        """The exchange's wallet balance (reconciliation)."""
        if math.isfinite(wallet):
            self.wallet = wallet
            self._observe_equity()

    # --- operator ---------------------------------------------------------------------------

    def engage_killswitch(self, mode: str, reason: str, actor: str, credential: str | None
                          ) -> tuple[KillResult, list[Intent]]:
        result = self.killswitch.engage(mode, reason, actor, credential)
        if not result.accepted:
            return result, []
        if result.cancel_all or result.flatten:
            self._trade_reason = "killswitch"
            return result, self._flatten(f"kill switch {mode}: {reason}")
        # graceful / pause: no flatten yet, but the entries resting on the book go now
        return result, self._cancel_resting_entries(self.board.status(), self.killswitch.status())

    def clear_killswitch(self, actor: str, credential: str | None) -> KillResult:
        was_engaged = self.killswitch.status().engaged
        result = self.killswitch.clear(actor, credential)
        if result.accepted and was_engaged and self.board.status().state in ("active", "reduced"):
            self.bus.emit("trading.resumed", self.clock.now_ms(), by="operator", actor=actor)
        return result

    def manual_resume(self, actor: str) -> ResumeResult:
        result = self.board.manual_resume(actor, self.clock.now_ms())
        if not result.accepted:
            self.bus.emit("resume.refused", self.clock.now_ms(), by="operator", actor=actor, reason=result.reason)
        return result

    def raise_red_flag(self, flag: RedFlag | None) -> list[Intent]:
        """A red flag the runtime observed (a failed check, a denied request): stop now. None (a
        check that passed, or a flag already raised) changes nothing and asks for nothing."""
        if flag is None:
            return []
        self._flag(flag)
        return self._safety_intents()

    def _flag(self, flag: RedFlag | None) -> None:
        if flag is None:
            return
        now = self.clock.now_ms()
        self.killswitch.engage_for_safety(f"red flag {flag.flag}: {flag.detail}", "redflag")  # stop first
        self._flat_announced = False  # a new engagement is confirmed flat anew, even with nothing open
        self._trade_reason = "killswitch"
        self.ramp_state = flag_raised(self.ramp_state, flag.flag)
        self.bus.emit("redflag.raised", now, flag=flag.flag, detail=flag.detail)

    def advance_ramp(self, evidence: AdvanceEvidence) -> list[str]:
        """Move to the next capital ramp stage, or say why not (ramp.advanced / ramp.refused)."""
        ramp, now = self.policy.capital_ramp, self.clock.now_ms()
        stage = ramp.stages[self.ramp_state.stage].name
        problems = advance_problems(ramp, self.ramp_state, evidence, now)
        if problems:
            self.bus.emit("ramp.refused", now, stage=stage, actor=evidence.approver, reason="; ".join(problems))
            return problems
        self.ramp_state = advanced(self.ramp_state, now)
        self.bus.emit("ramp.advanced", now, stage=ramp.stages[self.ramp_state.stage].name, previous=stage,
                      actor=evidence.approver or "")
        return []

    def status(self) -> EngineStatus:
        board = self.board.status()
        return EngineStatus(board.state, self.killswitch.status(), board, self.position_qty,
                            self.entry_price, self.equity, self.peak_equity, self._flattening)

    @property
    def equity(self) -> float:
        return self.wallet + self.position_qty * (self.mark - self.entry_price) if self.mark else self.wallet

    # --- persistence ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        position = None
        if self.exit_state is not None and abs(self.position_qty) > _EPS:
            position = {"qty": abs(self.position_qty), **self.exit_state.to_dict()}
        return {"v": SNAPSHOT_VERSION, "board": self.board.snapshot(),
                "killswitch": self.killswitch.snapshot(), "peak_equity": self.peak_equity,
                "seq": self._seq, "strategy": self.strategy.snapshot(), "position": position,
                "ramp": self.ramp_state.to_dict()}

    def restore(self, data: dict[str, Any]) -> None:
        """Load a snapshot (version 1 or 2). The position plan waits for reconciliation to find
        the position (adopt_position); a bad plan is refused here, with the rest."""
        version = data.get("v")
        if version not in READABLE_SNAPSHOTS:
            raise ValueError(f"engine snapshot version {version!r}, expected one of {READABLE_SNAPSHOTS}")
        position = data.get("position") if version >= 2 else None
        ramp = RampState.from_dict(data["ramp"], self.policy.capital_ramp) if "ramp" in data else None
        if position is not None:
            ExitState.from_dict(position, self.policy.exits)  # validate now: corrupt state refuses to trade
            float(position["qty"])
        self.board.restore(data["board"])
        self.killswitch.restore(data["killswitch"])
        self.peak_equity = float(data["peak_equity"])
        self._seq = int(data["seq"])
        if version >= 2:
            self.strategy.restore(data["strategy"])
        self._saved_plan = position
        if ramp is not None:  # older snapshots hold none: the ramp starts at its first stage
            self.ramp_state = ramp

    # --- internals --------------------------------------------------------------------------

    def _observe_equity(self) -> None:
        equity = self.equity
        if equity > self.peak_equity:
            self.peak_equity = equity
        self.board.observe(EquityUpdate(self.clock.now_ms(), equity))
        self._flag(self.red_flags.equity(equity, self.peak_equity, self.clock.now_ms()))

    def _safety_intents(self) -> list[Intent]:
        """Flatten while an emergency or the kill switch asks for it. With nothing open the
        request still cancels (orders we may not know of) and is confirmed flat, once."""
        board = self.board.status()
        kill = self.killswitch.status()
        wants = board.flatten_requested or kill.flatten_requested
        if not wants:
            self._flat_announced = False
            if self._resting and len(self._cancelling) < len(self._resting):
                return self._cancel_resting_entries(board, kill)
            return []
        if self._flattening:
            return []
        self._trade_reason = "emergency" if board.flatten_requested else "killswitch"
        # name who asks: a kill switch's flatten (a retry after a rejection) has no board reasons
        why = "; ".join(board.reasons) if board.flatten_requested else f"kill switch {kill.mode}: {kill.reason}"
        if abs(self.position_qty) > _EPS or self._in_flight:
            return self._flatten("flatten requested: " + why)
        if self._flat_announced:
            return []
        self._flat_announced = True
        return [CancelAll(self.symbol, "flatten requested with nothing open: " + why)]

    def _cancel_resting_entries(self, board: BoardStatus, kill: KillStatus) -> list[Intent]:
        """While entries are forbidden, cancel each working entry once (not a backoff: see the
        module docstring)."""
        blocked = self.gate.entries_blocked(board, kill, self.clock.now_ms())
        if blocked is not None and blocked.rule != "backoff":
            reason = blocked.reason
        elif self._blocked_zone is not None:
            reason = f"entry denied: zone {self._blocked_zone} is blocked"
        else:
            return []
        out: list[Intent] = []
        for client_id in self._resting:
            if client_id not in self._cancelling:
                self._cancelling.add(client_id)
                out.append(CancelOrder(self.symbol, client_id, reason))
        return out

    def _zone_if_blocked(self, atr: float | None, price: float) -> Zone | None:
        zones = self.policy.position_sizing.zones
        if not zones.enabled or atr is None:
            return None
        zone = zone_for(atr / price * 100, zones)
        return zone if zone in zones.blocked else None

    def _flatten(self, reason: str) -> list[Intent]:
        self._flat_announced = True
        intents: list[Intent] = [CancelAll(self.symbol, reason)]
        self.on_orders_cancelled()
        self._flattening = True
        intents.extend(self._close_position("flatten"))
        if len(intents) == 1:
            self._flattening = False
        return intents

    def _close_position(self, purpose: Purpose) -> list[Intent]:
        qty = abs(self.position_qty)
        if qty < _EPS:
            return []
        side: Side = "sell" if self.position_qty > 0 else "buy"
        intent = OrderIntent(self._next_id(purpose), self.symbol, side, qty, None, True, purpose)
        return self._gated(PlaceOrder(intent, "market"))

    def exit_now(self) -> list[Intent]:
        """A protective exit was refused: close the position at market now (reduce-only),
        rather than leave it unprotected until the next bar."""
        if self.exit_state is None or self._flattening or self._exit_in_flight():
            return []
        return self._close_position("exit")  # the trade keeps the reason it was exited for

    def _tick_exit(self) -> list[Intent]:
        """Stop and take profit judged on the book too, so they work between bars and when only
        REST prices arrive."""
        state = self.exit_state
        if state is None or self._flattening or self._exit_in_flight():
            return []
        long = state.side == "buy"
        price = self.bid if long else self.ask
        if (price <= state.stop) if long else (price >= state.stop):
            self._trade_reason = "stop"
            return self._close_position("stop")
        if (price >= state.take_profit) if long else (price <= state.take_profit):
            self._trade_reason = "take_profit"
            return self._close_position("take_profit")
        return []

    def _exit_in_flight(self) -> bool:
        return any(i.risk_reducing for i in self._in_flight.values())

    def _entry(self, signal: Signal, atr: float, bar_ts: int) -> list[Intent]:
        """The strategy wants an entry: size it, pass the risk gate, check its edge after costs.
        Each refusal names its rule (order.refused)."""
        side: Side = "buy" if signal.side == "buy" else "sell"
        status = self.board.status()
        price = self.mark
        size = size_position(self.policy, equity=self._equity_at_risk(), price=price, atr=atr, win_prob=signal.win_prob,
                             payoff=signal.payoff, open_exposure=self._open_exposure(),
                             size_factor=status.size_factor)
        qty = math.floor(size.qty / self.qty_step + 1e-9) * self.qty_step
        if qty <= 0:
            # nothing to place; name the first reason: a state that forbids entries comes before size
            blocked = self.gate.entries_blocked(status, self.killswitch.status(), self.clock.now_ms())
            if blocked is not None:
                return self._refuse(blocked.rule or "state", side, 0.0, blocked.reason, bar_ts)
            rule = self._size_rule(size)
            reason = size.reason if size.blocked else f"size {size.qty:.6f} rounds to 0 at qty step {self.qty_step}"
            staged = f" ({size.binding_constraint} of the capital ramp stage cap {self._equity_at_risk():.2f})"
            return self._refuse(rule, side, 0.0, reason + (staged if rule == "stage" else ""), bar_ts)
        post_only = self.policy.orders.post_only
        limit = self.policy.orders.entry_type == "limit" or post_only
        limit_price = (self.bid if side == "buy" else self.ask) if limit else None
        if limit and not limit_price:
            return self._refuse("invalid", side, qty, "limit entry without a book price to rest at", bar_ts)
        intent = OrderIntent(self._next_id("entry"), self.symbol, side, qty, limit_price, False, "entry",
                             post_only=post_only)
        decision = self._check(intent)
        if not decision.allowed:
            if decision.fail_closed:
                self.board.fail_closed(decision.reason)
            return self._refuse(decision.rule or "invalid", side, qty, decision.reason, bar_ts)
        edge_check = entry_allowed_by_edge(self.policy.execution_costs, signal.expected_edge, qty * price,
                                           atr / price * 10_000, post_only, signal.expected_move)
        if not edge_check.allowed:
            return self._refuse("edge", side, qty, edge_check.reason, bar_ts)
        return self._admit(PlaceOrder(intent, "limit" if limit else "market", "GTX" if post_only else "GTC",
                                      size.binding_constraint))

    def _size_rule(self, size: SizeDecision) -> RefusalRule:
        if (size.binding_constraint in ("max_position_pct", "max_total_exposure_pct")
                and self._equity_at_risk() < self.equity):
            return "stage"  # the caps were taken of the stage's equity at risk, not of equity
        return _SIZE_RULES.get(size.binding_constraint, "size") if size.blocked else "size"

    def _refuse(self, rule: RefusalRule, side: Side, qty: float, reason: str, bar_ts: int) -> list[Intent]:
        if self._refused.get(rule) != bar_ts:
            self._refused[rule] = bar_ts
            self.bus.emit("order.refused", self.clock.now_ms(), rule=rule, side=side, qty=qty, reason=reason)
            if rule == "hot_wallet":
                self.bus.emit("bot.alert", self.clock.now_ms(), severity="critical", key="hot_wallet.over_share",
                              title=reason + " - rebalancing hot/cold is the operator's step (docs/production.md)")
        return []

    def _gated(self, order: PlaceOrder) -> list[Intent]:
        decision = self._check(order.intent)
        if not decision.allowed:
            if decision.fail_closed:
                self.board.fail_closed(decision.reason)
            return []
        return self._admit(order)

    def _admit(self, order: PlaceOrder) -> list[Intent]:
        intent = order.intent
        self._in_flight[intent.client_id] = intent
        if order.type == "limit" and not intent.risk_reducing and intent.price:
            self._resting[intent.client_id] = (intent.qty, intent.price)
            self._blocked_zone = None  # the gate has just judged the zone: not blocked
        return [order]

    def _check(self, intent: OrderIntent) -> Decision:
        atr = self.atr.value
        zone = zone_for(atr / self.mark * 100, self.policy.position_sizing.zones) if atr and self.mark else None
        ctx = GateContext(equity=self.equity, position_qty=self.position_qty,
                          position_notional=abs(self.position_qty) * self.mark,
                          open_exposure=self._open_exposure(), mark_price=self.mark,
                          board=self.board.status(), killswitch=self.killswitch.status(),
                          now_ms=self.clock.now_ms(), zone=zone,
                          capital_cap=capital_cap(self.policy.capital_ramp, self.ramp_state),
                          venue_balance=self.wallet, hot_wallet_limit=hot_wallet_limit(self.policy.capital_ramp))
        return self.gate.check(intent, ctx)

    def _equity_at_risk(self) -> float:
        cap = capital_cap(self.policy.capital_ramp, self.ramp_state)
        return self.equity if cap is None else min(self.equity, cap)

    def _open_exposure(self) -> float:
        exposure = abs(self.position_qty) * self.mark
        for qty, price in self._resting.values():
            exposure += qty * price
        return exposure

    def _account(self, fill: Fill) -> None:
        values = (fill.qty, fill.price, fill.fee)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values) or fill.qty <= 0 \
                or fill.price <= 0:
            raise ArithmeticError(f"unusable fill numbers qty={fill.qty!r} price={fill.price!r} fee={fill.fee!r}")
        signed = fill.qty if fill.side == "buy" else -fill.qty
        old = self.position_qty
        new = old + signed
        realised = 0.0
        if abs(old) < _EPS or (old > 0) == (signed > 0):
            self.entry_price = (self.entry_price * abs(old) + fill.price * fill.qty) / abs(new)
        else:
            closed = min(abs(signed), abs(old))
            realised = closed * (fill.price - self.entry_price) * (1 if old > 0 else -1)
            if abs(new) < _EPS:
                new = 0.0
            elif (new > 0) != (old > 0):
                self.entry_price = fill.price
        self.wallet += realised - fill.fee
        self._trade_pnl += realised - fill.fee
        self.position_qty = new
        resting = self._resting.get(fill.client_id)
        if resting is not None:
            left = resting[0] - fill.qty
            if left > self.qty_step / 2:
                self._resting[fill.client_id] = (left, resting[1])
            else:
                del self._resting[fill.client_id]
        now = self.clock.now_ms()
        if fill.client_id in self._cancelling:
            if fill.client_id not in self._resting:
                self._cancelling.discard(fill.client_id)
            self.bus.emit("bot.alert", now, severity="warning", key="entry.filled_after_ban",
                          title=f"entry {fill.client_id} filled {fill.qty} after entries were forbidden (the "
                                "cancel lost the race): the position is managed with its exits")
        if abs(old) < _EPS and abs(new) > _EPS:
            side: Side = "buy" if new > 0 else "sell"
            plan = plan_exits(side, self.entry_price, self.atr.value, self.policy.exits)
            self.exit_state = ExitState.from_plan(plan, self.atr.value, self.policy.exits, now)
            self.bus.emit("position.opened", now, symbol=self.symbol, qty=new, entry=self.entry_price,
                          exit=None, pnl=None, reason="entry", plan="new", stop=plan.stop,
                          take_profit=plan.take_profit)
        elif abs(old) > _EPS and abs(new) < _EPS:
            pnl = self._trade_pnl
            self.bus.emit("position.closed", now, symbol=self.symbol, qty=old, entry=self.entry_price,
                          exit=fill.price, pnl=round(pnl, 8), reason=self._trade_reason)
            self.exit_state = None
            self.entry_price = 0.0
            self._trade_pnl = 0.0
            self._trade_reason = "exit"
            self.board.observe(TradeClosed(now, pnl))
            self.ramp_state = trade_closed(self.ramp_state)
            self._flag(self.red_flags.trade_closed(pnl, now))
        if not math.isfinite(self.wallet):
            raise ArithmeticError(f"wallet became {self.wallet!r}")
        self._observe_equity()

    def _next_id(self, purpose: str) -> str:
        self._seq += 1
        return f"{_ID_PREFIX}{self._run_id}-{purpose[:2]}-{self._seq}"

    def orphaned_entry(self, client_id: str, reduce_only: bool) -> bool:
        """An entry order of this bot (any run: gd-<run>-en-<seq>) that this engine does not track:
        left resting by an earlier process, so nothing would size or manage what it opens."""
        if reduce_only or client_id in self._in_flight or not client_id.startswith(_ID_PREFIX):
            return False
        return client_id.split("-")[2:3] == ["en"]

    def position_differs(self, qty: float) -> bool:
        """The exchange's signed position `qty` is not the engine's (by more than half a qty step)."""
        return abs(qty - self.position_qty) > self.qty_step / 2
