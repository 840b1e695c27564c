"""The breaker board: every input goes to the breakers that judge it; verdicts combine.

- Trading state = worst of active < reduced < paused < halted (pause actions -> paused,
  halt actions -> halted, any size factor < 1 -> reduced). Size factor = product of the
  breakers' factors. Flatten is requested while any verdict's action is flatten_and_halt.
- Backoff does not change the state; it sets `entries_allowed_at_ms`.
- Events are emitted only on transitions, synchronously inside the `observe` that causes them.
- Malformed inputs (NaN, non-positive price, bid > ask, ...) are rejected at the door and
  counted; they never reach a breaker and never halt the bot.
- Fail closed: an exception inside a breaker (or a non-finite number out of it) halts
  trading with reason "risk arithmetic failed in <breaker>: <error>", manual resume required.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.breakers.base import (
    LEVEL_RANK,
    BarClosed,
    BookUpdate,
    Breaker,
    BreakerInput,
    BreakerVerdict,
    EquityUpdate,
    ExchangeStatus,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    StoreStatus,
    TimerTick,
    TradeClosed,
    input_problem,
)
from bot.core.breakers.consecutive_losses import ConsecutiveLossesBreaker
from bot.core.breakers.drawdown import IntradayDrawdown, PeakDrawdown
from bot.core.breakers.latency import InferenceLatencyBreaker, OrderLatencyBreaker, WebsocketLagBreaker
from bot.core.breakers.outage import ExchangeOutageBreaker, StateStoreBreaker
from bot.core.breakers.volatility import AtrSpikeBreaker, PriceMoveBreaker, SpreadBreaker
from bot.core.clock import Clock
from bot.core.events import EventBus
from bot.core.policy import HALT_ACTIONS, PAUSE_ACTIONS, Policy

TradingState = Literal["active", "reduced", "paused", "halted"]
STATE_RANK: dict[str, int] = {"active": 0, "reduced": 1, "paused": 2, "halted": 3}
_STATES: tuple[TradingState, ...] = ("active", "reduced", "paused", "halted")
SNAPSHOT_VERSION = 1
_NEVER = math.inf


@dataclass(frozen=True, slots=True)
class BoardStatus:
    state: TradingState
    size_factor: float
    flatten_requested: bool
    requires_manual_resume: bool
    reasons: tuple[str, ...]
    entries_allowed_at_ms: int
    rejected_inputs: int
    last_rejection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "size_factor": self.size_factor,
                "flatten_requested": self.flatten_requested,
                "requires_manual_resume": self.requires_manual_resume, "reasons": list(self.reasons),
                "entries_allowed_at_ms": self.entries_allowed_at_ms,
                "rejected_inputs": self.rejected_inputs, "last_rejection": self.last_rejection}


@dataclass(frozen=True, slots=True)
class ResumeResult:
    accepted: bool
    reason: str
    status: BoardStatus


def build_breakers(policy: Policy) -> list[Breaker]:
    """One instance per enabled check, in a fixed order (the snapshot keys are their `key`)."""
    cb = policy.circuit_breakers
    out: list[Breaker] = []
    if cb.drawdown.enabled:
        out.append(IntradayDrawdown(cb.drawdown))
        if cb.drawdown.peak.enabled:
            out.append(PeakDrawdown(cb.drawdown))
    if cb.consecutive_losses.enabled:
        out.append(ConsecutiveLossesBreaker(cb.consecutive_losses))
    vol = cb.volatility
    if vol.spread.enabled:
        out.append(SpreadBreaker(vol.spread))
    if vol.atr.enabled:
        out.append(AtrSpikeBreaker(vol.atr))
    if vol.price_move.enabled:
        out.append(PriceMoveBreaker(vol.price_move))
    lat = cb.latency
    if lat.websocket.enabled:
        out.append(WebsocketLagBreaker(lat.websocket))
    if lat.inference.enabled:
        out.append(InferenceLatencyBreaker(lat.inference))
    if lat.order_placement.enabled:
        out.append(OrderLatencyBreaker("placement", lat.order_placement, lat.backoff))
    if lat.order_fill.enabled:
        out.append(OrderLatencyBreaker("fill", lat.order_fill, lat.backoff))
    out.append(ExchangeOutageBreaker(policy.exchange_outage))
    out.append(StateStoreBreaker())
    return out


_INPUT_TYPES: tuple[type, ...] = (EquityUpdate, TradeClosed, BookUpdate, BarClosed, FeedLag,
                                  InferenceTiming, OrderLatency, TimerTick, ExchangeStatus, StoreStatus)


class BreakerBoard:
    def __init__(self, policy: Policy, bus: EventBus, clock: Clock,
                 breakers: list[Breaker] | None = None) -> None:
        self.policy = policy
        self._bus = bus
        self._clock = clock
        # Something outside the board that also stops trading (the kill switch): while it holds,
        # the board's own lifting is not announced as trading.resumed - trading has not resumed.
        self.held: Callable[[], bool] | None = None
        self.breakers: list[Breaker] = build_breakers(policy) if breakers is None else breakers
        self._verdicts: list[BreakerVerdict] = [b.verdict for b in self.breakers]
        self._faults: dict[str, str] = {}  # breaker key (or "engine", "board") -> fail-closed reason
        self._routes: dict[type, tuple[tuple[int, Breaker], ...]] = {
            t: tuple((i, b) for i, b in enumerate(self.breakers) if t in b.inputs) for t in _INPUT_TYPES
        }
        self._rejected = 0
        self._last_rejection: str | None = None
        self._next_deadline: float = _NEVER
        self._status = BoardStatus("active", 1.0, False, False, (), 0, 0)
        self._recompute()

    # --- the hot path ----------------------------------------------------------------------

    def observe(self, x: BreakerInput) -> BoardStatus:
        """Route one input to its breakers; emit transition events; return the status."""
        route = self._routes.get(type(x))
        if route is None or input_problem(x) is not None:
            return self._reject(x)
        ts: int = x.ts_ms
        changed = False
        if ts >= self._next_deadline:
            changed = self._expire(ts)
        for i, b in route:
            try:
                v = b.observe(x)
                if v is None:
                    continue
                _check_verdict(v)
            except Exception as exc:  # fail closed
                changed = self._fault(i, b, exc) or changed
                continue
            self._apply(i, v, "cooldown")
            changed = True
        if changed:
            self._settle()
        return self._status

    def on_timer(self, now_ms: int) -> BoardStatus:
        return self.observe(TimerTick(now_ms))

    def status(self) -> BoardStatus:
        return self._status

    def next_deadline_ms(self) -> int | None:
        """The earliest time at which time alone may change the board (a cooldown auto-lift)."""
        d = self._next_deadline
        return None if d == _NEVER else int(d)

    def fail_closed(self, reason: str) -> BoardStatus:
        """Halt, manual resume required: the caller's own risk arithmetic failed (P&L, equity,
        position accounting, the pre-trade gate). Emits trading.halted unless already halted so."""
        if "engine" not in self._faults:
            self._faults["engine"] = reason
            self._settle()
        return self._status

    @property
    def verdicts(self) -> tuple[BreakerVerdict, ...]:
        return tuple(self._verdicts)

    # --- operator --------------------------------------------------------------------------

    def manual_resume(self, actor: str, now_ms: int) -> ResumeResult:
        """Reset every latched breaker, only if all of them accept (cooldowns passed)."""
        latched = [(i, b) for i, b in enumerate(self.breakers) if b.latched]
        if not latched and not self._faults:
            return ResumeResult(False, f"nothing to resume: trading is {self._status.state}",
                                self._status)
        blockers = [r for _, b in latched if (r := b.reset_blocker(now_ms)) is not None]
        if blockers:
            return ResumeResult(False, "resume refused: " + "; ".join(blockers), self._status)
        ts = self._clock.now_ms()
        by_key = {b.key: b for b in self.breakers}
        for key in list(self._faults):  # what failed before: the operator clears it
            del self._faults[key]
            faulted = by_key.get(key)
            if faulted is not None:
                self._bus.emit("breaker.reset", ts, breaker=faulted.name, check=faulted.check, by="operator",
                               actor=actor)
        for i, b in latched:
            try:
                b.manual_reset(now_ms)
                _check_verdict(b.verdict)
            except Exception as exc:  # what fails now stays failed: the reset is not applied
                self._fault(i, b, exc)
                continue
            self._apply(i, b.verdict, "operator", actor=actor)
        self._settle(by="operator", actor=actor)
        still = "" if self._status.state in ("active", "reduced") else (
            f"; still {self._status.state}: " + "; ".join(self._status.reasons))
        return ResumeResult(True, f"resumed by {actor}{still}", self._status)

    # --- persistence -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "breakers": {b.key: b.snapshot() for b in self.breakers},
            "faults": dict(self._faults),
            "rejected_inputs": self._rejected,
            "status": self._status.to_dict(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a snapshot silently: a halted board stays halted; no event is emitted."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"breaker snapshot version {data.get('version')!r}; expected {SNAPSHOT_VERSION}")
        saved = data["breakers"]
        keys = {b.key: i for i, b in enumerate(self.breakers)}
        missing = [k for k in saved if k not in keys]
        if missing:
            raise ValueError(f"snapshot holds breakers this policy does not enable: {missing}")
        for b in self.breakers:
            if b.key in saved:
                b.restore(saved[b.key])
        self._verdicts = [b.verdict for b in self.breakers]
        self._faults = {str(k): str(v) for k, v in data.get("faults", {}).items()}
        self._rejected = int(data.get("rejected_inputs", 0))
        self._recompute()

    # --- internals -------------------------------------------------------------------------

    def _reject(self, x: object) -> BoardStatus:
        self._rejected += 1
        self._last_rejection = input_problem(x) or f"unknown input type {type(x).__name__}"
        self._status = _replace_rejections(self._status, self._rejected, self._last_rejection)
        return self._status

    def _expire(self, ts: int) -> bool:
        tick = TimerTick(ts)
        changed = False
        for i, b in enumerate(self.breakers):
            deadline = b.deadline_ms
            if deadline is None or ts < deadline:
                continue
            try:
                v = b.observe(tick)
                if v is not None:
                    _check_verdict(v)
            except Exception as exc:
                changed = self._fault(i, b, exc) or changed
                continue
            if v is not None:
                self._apply(i, v, "cooldown")
                changed = True
        self._next_deadline = self._min_deadline()
        return changed

    def _min_deadline(self) -> float:
        out = _NEVER
        for b in self.breakers:
            d = b.deadline_ms
            if d is not None and d < out:
                out = d
        return out

    def _fault(self, i: int, b: Breaker, exc: Exception) -> bool:
        if b.key in self._faults:
            return False
        reason = f"risk arithmetic failed in {b.name}: {type(exc).__name__}: {exc}"
        self._faults[b.key] = reason
        self._bus.emit("breaker.tripped", self._clock.now_ms(), breaker=b.name, check=b.check,
                       level="critical", value=None, threshold=None, action="halt_trading", error=reason)
        return True

    def _apply(self, i: int, new: BreakerVerdict, by: str, actor: str | None = None) -> None:
        old = self._verdicts[i]
        self._verdicts[i] = new
        ts = self._clock.now_ms()
        emit = self._bus.emit
        if new.action is not None:
            if (old.action is None or new.action != old.action
                    or LEVEL_RANK[new.level] > LEVEL_RANK[old.level]):
                emit("breaker.tripped", ts, breaker=new.breaker, check=new.check, level=new.level,
                     value=new.value, threshold=new.threshold, action=new.action)
            return
        if old.action is not None or (old.size_factor < 1.0 and new.size_factor >= 1.0):
            extra = {"actor": actor} if actor is not None else {}
            emit("breaker.reset", ts, breaker=new.breaker, check=new.check, by=by, **extra)
        if new.level == "warning" and (old.level != "warning" or new.size_factor != old.size_factor):
            emit("breaker.warning", ts, breaker=new.breaker, check=new.check, level=new.level,
                 value=new.value, threshold=new.threshold)

    def _settle(self, by: str = "cooldown", actor: str | None = None) -> None:
        """Recompute the combined status and emit the state transitions it implies."""
        old = self._status
        try:
            self._recompute()
        except Exception as exc:  # the board's own arithmetic: fail closed, until an operator resumes
            reason = f"risk arithmetic failed in board: {type(exc).__name__}: {exc}"
            self._faults.setdefault("board", reason)
            self._status = BoardStatus("halted", 0.0, False, True, (self._faults["board"],), 0, self._rejected,
                                       self._last_rejection)
        new = self._status
        ts = self._clock.now_ms()
        emit = self._bus.emit
        if new.size_factor < old.size_factor and new.state != "halted":
            emit("sizing.reduced", ts, factor=new.size_factor, reason="; ".join(new.reasons))
        if new.state == old.state:
            if new.state == "halted" and new.requires_manual_resume and not old.requires_manual_resume:
                emit("trading.halted", ts, reason="; ".join(new.reasons), requires_manual_resume=True)
            return
        if new.state == "halted":
            emit("trading.halted", ts, reason="; ".join(new.reasons),
                 requires_manual_resume=new.requires_manual_resume)
        elif new.state == "paused":
            emit("trading.paused", ts, reason="; ".join(new.reasons))
        elif STATE_RANK[old.state] >= STATE_RANK["paused"] and not (self.held is not None and self.held()):
            extra = {"actor": actor} if actor is not None else {}
            emit("trading.resumed", ts, by=by, **extra)

    def _recompute(self) -> None:
        rank = 0
        factor = 1.0
        flatten = False
        manual = False
        allowed_at = 0
        reasons: list[str] = []
        for v in self._verdicts:
            action = v.action
            if action is not None:
                if action in HALT_ACTIONS:
                    rank = 3
                    manual = manual or v.requires_manual_resume
                    flatten = flatten or action == "flatten_and_halt"
                elif action in PAUSE_ACTIONS:
                    rank = max(rank, 2)
                reasons.append(v.describe())
            elif v.size_factor < 1.0:
                reasons.append(v.describe())
            factor *= v.size_factor
        for reason in self._faults.values():
            rank, manual = 3, True
            reasons.append(reason)
        if factor < 1.0:
            rank = max(rank, 1)
        for b in self.breakers:
            allowed_at = max(allowed_at, b.entries_allowed_at_ms)
        if not (math.isfinite(factor) and 0.0 <= factor <= 1.0):
            raise ArithmeticError(f"combined size factor {factor} out of [0, 1]")
        self._status = BoardStatus(_STATES[rank], factor, flatten, manual, tuple(reasons), allowed_at,
                                   self._rejected, self._last_rejection)
        self._next_deadline = self._min_deadline()


def _check_verdict(v: BreakerVerdict) -> None:
    if not (math.isfinite(v.value) and math.isfinite(v.threshold)
            and math.isfinite(v.size_factor) and 0.0 <= v.size_factor <= 1.0):
        raise ArithmeticError(f"non-finite or out-of-range verdict {v.describe()}")


def _replace_rejections(s: BoardStatus, count: int, last: str | None) -> BoardStatus:
    return BoardStatus(s.state, s.size_factor, s.flatten_requested, s.requires_manual_resume,
                       s.reasons, s.entries_allowed_at_ms, count, last)

