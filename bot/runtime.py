"""The asyncio shell around the core: feeds it, carries out its intents on an Exchange.

The same `Trader` runs in sim mode (virtual clock, in-process exchange, driven bar by bar by
the harness) and as the real bot process (wall clock, ccxt, driven by `bot.live`). It never
sleeps: anything that must wait (Retry-After, a ban, resolving an unknown outcome, the stale-feed
deadline) becomes a deadline, and the driver calls `on_timer()` at `next_deadline_ms()`.

Safety before bookkeeping. The kill switch, exits and flattening never wait for, and are never
stopped by, the audit log, the marker file or the state store: the bot acts, then records, and a
recording that failed is reported (a critical alert, `OperatorOutcome.record_error`) and done later
(`AuditTrail` keeps the records and `on_timer` retries). While the audit log or the state store
cannot be written, no new entries are made (fail closed); exits go on.

Lost state. Every snapshot the bot saves carries a `generation` (one more than the last), and each
save is witnessed by a `state.saved{generation, key, store}` audit record - the audit log survives
where a store does not (a deleted or emptied bot.db, a lost WAL, a Redis restarted empty or from an
old dump). At start, a store that holds no snapshot, or an older one, while the audit log says a
newer one was saved - or a store that is damaged or not a database at all - is lost state, not a
first start: the bot comes up halted with manual resume required (`state.lost`, `trading.halted`,
a critical alert, a `state.lost` audit record saying what is missing). Halted rather than refused:
a halted bot still adopts and protects the positions it finds, obeys the kill switch and can
flatten; a bot that refuses to run leaves an open position unmanaged. An operator inspects (the
audit log shows what was saved last) and resumes. The marker file still engages the kill switch.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from bot.config import policy_digest
from bot.core.clock import Clock
from bot.core.engine import CancelAll, CancelOrder, Engine, Fill, Intent, PlaceOrder
from bot.core.events import Event, EventBus
from bot.core.killswitch import MODE_RANK
from bot.core.market import Bar, BookTick
from bot.core.policy import Policy
from bot.core.ramp import AdvanceEvidence
from bot.core.risk import OrderIntent
from bot.io.audit import iso_utc
from bot.io.audit_anchor import SNAPSHOT_FIELD, head_fields
from bot.io.audit_trail import AuditTrail, Witness
from bot.io.disk import REAL_DISK, Disk
from bot.io.exchange import (
    AuthError,
    ClockSkewError,
    Exchange,
    ExchangeError,
    NotFoundError,
    OrderRejectedError,
    OrderRequest,
    OrderState,
    RateLimitedError,
    RetryableError,
    UnknownOutcomeError,
)
from bot.io.key_age import ages_at
from bot.io.marker import read_marker, remove_marker, write_marker
from bot.io.production import observed_check, validation_problem
from bot.io.state import CorruptStateError, StateStore, StateStoreError

PERSISTED_EVENTS = frozenset({"breaker.tripped", "breaker.reset", "trading.halted", "trading.paused",
                              "trading.resumed", "killswitch.engaged", "killswitch.cleared",
                              "sizing.reduced", "position.opened", "position.closed", "redflag.raised",
                              "ramp.advanced"})


class StartupRefused(Exception):
    """The bot will not trade: the reason says why and what to fix."""


@dataclass(frozen=True)
class OperatorOutcome:
    """What an operator request (kill switch, clear, resume) came to.

    `accepted` says whether the bot acted; `reason` is the core's explanation (why it was refused,
    or what was done); `record_error` is set when the action was taken but recording it (audit
    log, state store, marker file) failed. Truthy when accepted.
    """

    accepted: bool
    reason: str
    record_error: str | None = None

    def __bool__(self) -> bool:
        return self.accepted


@dataclass(frozen=True)
class TraderConfig:
    symbol: str = "BTCUSDT"
    bar_ms: int = 300_000
    state_key: str = "bot"
    actor: str = "bot"
    reconcile_every_ms: int = 60_000
    heartbeat_ms: int = 30_000  # countdownCancelAll is renewed this often, armed for 3x
    retry_initial_ms: int = 500
    retry_max_ms: int = 30_000
    resolve_attempts: int = 20
    outage_probe_ms: int = 10_000
    store_check_ms: int = 0  # ping the state store this often (0: only on writes); live: 250
    rest_fallback_ms: int = 1_000  # while the WebSocket is silent, poll the book over REST this often
    qty_step: float = 0.001
    trade_entries: bool = True
    audit_retry_ms: int = 1_000  # while audit records are kept, try to write them this often
    real_money: bool = False  # the real venue (not a testnet or simulator): the capital ramp decides


@dataclass
class _Retry:
    order: PlaceOrder
    attempts: int = 0


@dataclass
class _Pending:
    """An order whose outcome we must learn by querying (unknown outcome, or not yet filled)."""

    order: PlaceOrder
    placed_ms: int
    unknown: bool
    attempts: int = 0
    filled: float = 0.0
    due_ms: int = 0


@dataclass
class FeedState:
    last_event_ms: int | None = None
    stale: bool = False
    lag_ms: float = 0.0
    messages: int = 0


@dataclass
class Trader:
    policy: Policy
    exchange: Exchange
    store: StateStore
    audit: AuditTrail
    clock: Clock
    bus: EventBus
    verify: Any  # Callable[[str | None], bool]: the kill-switch credential check
    config: TraderConfig = field(default_factory=TraderConfig)
    marker_path: Path | None = None
    disk: Disk = REAL_DISK  # the marker file's writes
    # Called with ("inference" | "placement" | "fill", milliseconds) as each is measured (metrics).
    observe_latency: Callable[[str, float], None] | None = None
    # name -> (kind, issued) of the credentials whose age GET /status shows (config/key_metadata.yaml)
    key_issued: Mapping[str, tuple[str, datetime]] = field(default_factory=dict)
    engine: Engine = field(init=False)
    feed: FeedState = field(default_factory=FeedState)
    _retries: list[_Retry] = field(default_factory=list)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _blocked_until_ms: int = 0
    _exchange_down: bool = False
    _dirty: bool = False
    _next_reconcile_ms: int = 0
    _next_heartbeat_ms: int | None = None
    _time_offset_ms: int = 0
    _started: bool = False
    _deferred_intents: list[Intent] = field(default_factory=list)
    _cancel_pending: CancelAll | None = None
    _entry_cancels: dict[str, CancelOrder] = field(default_factory=dict)  # entry cancels to retry
    _orphans_checked: bool = False
    _rate_alert_quiet_until_ms: int = 0
    _cancel_failures: int = 0
    _store_down: bool = False
    _store_error: str | None = None
    _next_store_check_ms: int = 0
    _next_rest_book_ms: int = 0
    _generation: int = 0  # of the last snapshot saved (or found, or witnessed)
    _bookkeeping_down: bool = False  # what the engine was last told (state store or audit log down)
    _audit_alerted: bool = False
    _next_audit_retry_ms: int = 0
    _marker_unsaved: bool = False  # the kill switch is engaged and its marker file could not be written
    _next_marker_retry_ms: int = 0
    _flat_unconfirmed: bool = False  # a flatten's check of the account failed: read again once reachable

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the audit chain and the key, restore state (or find it lost), obey the marker
        file, reconcile. Raises StartupRefused."""
        now = self.clock.now_ms()
        self._announce_repairs(now)
        if self.audit.chain_error is not None:
            self._refuse(f"the audit log's chain is broken ({self.audit.chain_error}): the bot does not extend a "
                         "chain it cannot vouch for - keep the file for inspection and move it aside (a new chain "
                         "starts; the records kept meanwhile are appended late); the kill switch "
                         "(python -m bot killswitch) acts without it")
        restrictions = await self.exchange.fetch_api_restrictions()
        problems = [name for name, on in (
            ("withdrawals are enabled", restrictions.enable_withdrawals),
            ("internal transfers are enabled", restrictions.enable_internal_transfer),
            ("universal transfer is permitted", restrictions.permits_universal_transfer),
            ("there is no IP restriction", not restrictions.ip_restrict)) if on]
        if problems:
            self._refuse("API key too powerful: " + ", ".join(problems)
                         + " - disable them on the exchange and restrict the key to this host's IP")
        balance = await self.exchange.fetch_balance()
        self.engine = Engine(self.policy, self.clock, self.bus, symbol=self.config.symbol,
                             equity=balance.wallet, verify=self.verify, qty_step=self.config.qty_step,
                             run_id=format(now % 36**6, "x"), trade_entries=self.config.trade_entries,
                             bar_ms=self.config.bar_ms)
        self.bus.subscribe(self._on_event)
        restored = self._restore_state(now)
        self._check_ramp_allows_the_venue()
        marker = read_marker(self.marker_path, now) if self.marker_path is not None else None
        if marker is not None:  # the marker wins for the kill switch, whatever the store held
            current = self.engine.killswitch.status()
            if not current.engaged or current.mode is None or MODE_RANK[marker["mode"]] > MODE_RANK[current.mode]:
                self.engine.killswitch.restore(marker)
        if restored or marker is not None:
            status = self.engine.status()
            self.bus.emit("state.restored", now, breakers=status.board.to_dict(),
                          killswitch=status.killswitch.to_dict())
        self._audit_changed(now)
        for age in ages_at(self.key_issued, self.policy.key_management, now):  # rotation due: say so at start
            if age.overdue:
                self.bus.emit("bot.alert", now, severity="warning", key=f"key.rotation_overdue.{age.name}",
                              title=age.line())
        self._started = True
        await self._warm_up()
        await self.reconcile()
        self._persist(force=True)

    def _check_ramp_allows_the_venue(self) -> None:
        """Real money only past the paper stages, and only with the declared capital the hot-wallet
        share is measured against."""
        if not self.config.real_money:
            return
        ramp = self.policy.capital_ramp
        stage = ramp.stages[self.engine.ramp_state.stage]
        if stage.paper:
            self._refuse(f"capital ramp stage {stage.name} is a paper stage: the real venue needs the next stage, "
                         "approved by a Risk Manager with its evidence (POST /ramp/advance on the paper bot)")
        if ramp.declared_capital_usd is None:
            self._refuse("capital_ramp.declared_capital_usd is not set: the bot cannot hold the hot wallet to "
                         f"{ramp.hot_wallet_max_share:.0%} of capital it does not know - declare it in config")

    async def close(self) -> None:
        if self._started:
            self._persist(force=True)

    def status(self) -> dict[str, Any]:
        s = self.engine.status()
        ramp = self.engine.ramp_state
        stage = self.policy.capital_ramp.stages[ramp.stage]
        return {"trading": s.trading_summary, "killswitch": "engaged" if s.killswitch.engaged else "clear",
                "ramp": {"stage": stage.name, "stage_index": ramp.stage, "max_capital_usd": stage.max_capital_usd,
                         "paper": stage.paper, "since_ms": ramp.since_ms, "trades": ramp.trades,
                         "red_flag": ramp.red_flag},
                "red_flags": {flag: None if last is None else last.to_dict()
                              for flag, last in self.engine.red_flags.last_checks().items()},
                "key_age": [a.to_dict() for a in ages_at(self.key_issued, self.policy.key_management,
                                                         self.clock.now_ms())],
                "position": "open" if abs(s.position_qty) > 1e-12 else "flat",
                "equity": s.equity, "peak_equity": s.peak_equity, "board": s.board.to_dict(),
                "kill": s.killswitch.to_dict(),
                "bookkeeping": {"audit_problem": self.audit.problem if self.audit.down else None,
                                "audit_records_kept": self.audit.pending,
                                "state_store_problem": self._store_error if self._store_down else None,
                                "state_generation": self._generation}}

    # --- inputs -----------------------------------------------------------------------------

    async def on_book(self, tick: BookTick, event_ts_ms: int | None = None) -> None:
        intents = self._feed_message(event_ts_ms if event_ts_ms is not None else tick.ts_ms)
        intents += self.engine.on_book(tick)
        await self._execute(intents)

    async def on_bar(self, bar: Bar, event_ts_ms: int | None = None) -> None:
        intents = self._feed_message(event_ts_ms if event_ts_ms is not None else bar.ts_ms)
        started = self.clock.now_ms()

        def infer(b: Bar) -> Any:
            signal = self.engine.strategy.update(b)
            took = self.clock.now_ms() - started
            self._observed("inference", took)
            intents.extend(self.engine.on_inference(took))
            return signal

        intents += self.engine.on_bar(bar, infer=infer)
        await self._execute(intents)
        await self._poll_pending()

    async def on_feed_alive(self, event_ts_ms: int) -> None:
        """A market-data message that carries no closed bar or book change (a kline update in
        progress, a mark price): proof the feed is alive, with its event time for the lag."""
        await self._execute(self._feed_message(event_ts_ms))

    async def on_timer(self) -> None:
        now = self.clock.now_ms()
        intents: list[Intent] = []
        limit_ms = self.policy.circuit_breakers.latency.websocket.max_lag_seconds * 1000
        if self.feed.last_event_ms is not None:
            silent = now - self.feed.last_event_ms
            if silent >= limit_ms:
                if not self.feed.stale:
                    self.feed.stale = True
                    self.bus.emit("feed.stale", now, lag_ms=silent)
                intents += self.engine.on_feed_lag(silent)
        intents += self.engine.on_timer()
        await self._execute(intents)
        if self.feed.stale and self.config.rest_fallback_ms and now >= self._next_rest_book_ms:
            await self._rest_fallback(now)
        if (self.config.store_check_ms or self._store_down) and now >= self._next_store_check_ms:
            self._next_store_check_ms = now + (self.config.store_check_ms or self.config.outage_probe_ms)
            self._check_store()
        if self.audit.down and now >= self._next_audit_retry_ms:
            self._next_audit_retry_ms = now + self.config.audit_retry_ms
            self.audit.retry()
            self._audit_changed(now)
        if self._marker_unsaved and now >= self._next_marker_retry_ms:
            self._next_marker_retry_ms = now + self.config.audit_retry_ms
            if self._save_marker() is None:
                self.bus.emit("bot.alert", now, severity="info", key="marker.written",
                              title=f"kill-switch marker {self.marker_path} written at last")
        await self._poll_pending()
        if self._cancel_pending is not None and now >= self._blocked_until_ms:
            pending_cancel, self._cancel_pending = self._cancel_pending, None
            await self._cancel_all(pending_cancel)
        if self._entry_cancels and now >= self._blocked_until_ms:
            cancels, self._entry_cancels = self._entry_cancels, {}
            for cancel in cancels.values():
                await self._cancel_entry(cancel)
        if self._retries and now >= self._blocked_until_ms and self._cancel_pending is None:
            retries, self._retries = self._retries, []
            for retry in retries:
                await self._place(retry.order, retry.attempts)
        if now >= self._next_reconcile_ms:
            await self.reconcile()
        if self._deferred_intents:
            deferred, self._deferred_intents = self._deferred_intents, []
            await self._execute(deferred)
        if self._next_heartbeat_ms is not None and now >= self._next_heartbeat_ms:
            await self._heartbeat()
        self._persist()

    def next_deadline_ms(self, *, feed_watchdog: bool = True) -> int | None:
        """When `on_timer()` must run next. `feed_watchdog=False` leaves out the stale-feed check:
        for a driver that knows its feed is healthy and hands over a message at every wake-up
        (the sim runner between feed faults), which is what a live stream looks like to the bot."""
        candidates: list[float] = [self._next_reconcile_ms]
        engine_deadline = self.engine.next_deadline_ms()
        if engine_deadline is not None:
            candidates.append(engine_deadline)
        if feed_watchdog and self.feed.last_event_ms is not None and not self.feed.stale:
            limit_ms = self.policy.circuit_breakers.latency.websocket.max_lag_seconds * 1000
            candidates.append(self.feed.last_event_ms + math.ceil(limit_ms))
        if self._retries or self._cancel_pending is not None or self._entry_cancels:
            candidates.append(self._blocked_until_ms)
        candidates.extend(p.due_ms for p in self._pending.values())
        if self._next_heartbeat_ms is not None:
            candidates.append(self._next_heartbeat_ms)
        if self._deferred_intents:
            candidates.append(self.clock.now_ms())
        if self.config.store_check_ms or self._store_down:
            candidates.append(self._next_store_check_ms)
        if self.audit.down:
            candidates.append(self._next_audit_retry_ms)
        if self._marker_unsaved:
            candidates.append(self._next_marker_retry_ms)
        if self.feed.stale and self.config.rest_fallback_ms:
            candidates.append(self._next_rest_book_ms)
        return int(min(candidates))

    def record_inference(self, ms: float) -> None:
        self.engine.on_inference(ms)

    # --- operator ---------------------------------------------------------------------------

    async def engage_killswitch(self, mode: str, reason: str, actor: str, credential: str | None,
                                via: Mapping[str, Any] | None = None) -> OperatorOutcome:
        """Halt (in memory, then the marker file so the halt survives a crash), cancel and flatten;
        only then the state store and the audit log. A failure of any of the three is reported, and
        never stops or delays the action. `via`: how the request came (the control API's source,
        route, principal, role), kept in the same record."""
        result, intents = self.engine.engage_killswitch(mode, reason, actor, credential)
        details: dict[str, Any] = {"mode": mode, "reason": reason, "accepted": result.accepted, "why": result.reason}
        if via is not None:
            details["via"] = dict(via)
        if not result.accepted:
            outcome = OperatorOutcome(False, result.reason, self.record(actor, "killswitch.rejected", details))
            if result.unauthorized:
                self.access_denied(f"kill switch {mode} by {actor}: {result.reason}")
            return outcome
        marker_problem = self._save_marker()
        await self._execute(intents)
        return self._acted(f"kill switch {mode}", result.reason,
                           [marker_problem, self._persist(), self.record(actor, "killswitch.engage", details)])

    async def apply_external_killswitch(self, snapshot: dict[str, Any]) -> None:
        """A kill switch engaged outside this process (the standalone CLI wrote the marker and the
        store while we run): adopt it, announce it, and act on it now."""
        before = self.engine.killswitch.status()
        self.engine.killswitch.restore(snapshot)
        status = self.engine.killswitch.status()
        if not status.engaged or (before.engaged and before.mode == status.mode):
            return
        now = self.clock.now_ms()
        self.bus.emit("killswitch.engaged", now, mode=status.mode, reason=status.reason, actor=status.actor)
        await self._execute(self.engine.on_timer())
        self._acted(f"kill switch {status.mode} (marker file)", status.reason or "",
                    [self._persist(), self.record(status.actor or "marker", "killswitch.adopt",
                                                   {"mode": status.mode, "reason": status.reason})])

    async def clear_killswitch(self, actor: str, credential: str | None) -> OperatorOutcome:
        result = self.engine.clear_killswitch(actor, credential)
        details = {"accepted": result.accepted, "why": result.reason}
        if not result.accepted:
            outcome = OperatorOutcome(False, result.reason, self.record(actor, "killswitch.rejected", details))
            if result.unauthorized:
                self.access_denied(f"kill switch clear by {actor}: {result.reason}")
            return outcome
        problems: list[str | None] = []
        self._marker_unsaved = False
        if self.marker_path is not None:
            try:
                remove_marker(self.marker_path)
            except OSError as exc:
                problems.append(f"marker {self.marker_path} could not be removed ({exc}): a restart engages "
                                "the kill switch again")
        problems += [self._persist(force=True), self.record(actor, "killswitch.clear", details)]
        return self._acted("kill switch cleared", result.reason, problems)

    async def manual_resume(self, actor: str) -> OperatorOutcome:
        result = self.engine.manual_resume(actor)
        problems = [self._persist(force=True),
                    self.record(actor, "trading.resume", {"accepted": result.accepted, "why": result.reason})]
        if not result.accepted:
            return OperatorOutcome(False, result.reason, "; ".join(p for p in problems if p) or None)
        return self._acted("trading resumed", result.reason, problems)

    async def advance_ramp(self, actor: str, validation: str | None) -> OperatorOutcome:
        """A Risk Manager's approval to move to the next capital ramp stage (the control API checks
        the role): granted only with the stage's evidence, `validation` being the path of a passed
        `gameday validate` result for this very policy."""
        missing = validation_problem(validation, policy_digest(self.policy))
        before = self.engine.ramp_state
        problems = self.engine.advance_ramp(AdvanceEvidence(actor, missing))
        stages = self.policy.capital_ramp.stages
        why = "; ".join(problems) or "evidence complete"
        details = {"from": stages[before.stage].name, "to": stages[self.engine.ramp_state.stage].name,
                   "validation": validation, "accepted": not problems, "why": why}
        recorded = [self._persist(force=True), self.record(actor, "ramp.advance", details)]
        if problems:
            return OperatorOutcome(False, why, "; ".join(p for p in recorded if p) or None)
        return self._acted("capital ramp advanced", f"stage {details['to']} (from {details['from']})", recorded)

    def _acted(self, what: str, reason: str, problems: list[str | None]) -> OperatorOutcome:
        """The outcome of an accepted operator request; a recording that failed is alerted."""
        errors = [p for p in problems if p]
        if not errors:
            return OperatorOutcome(True, reason)
        text = "; ".join(errors)
        self.bus.emit("bot.alert", self.clock.now_ms(), severity="critical", key="recording.failed",
                      title=f"{what}: acted; recording failed: {text[:300]}")
        return OperatorOutcome(True, reason, text)

    # --- reconciliation ---------------------------------------------------------------------

    async def _warm_up(self) -> None:
        """Seed the engine's ATR from the exchange's closed klines, so a position found at start
        gets an ATR-based stop (not the floor) and the volatility exit has its measure at once."""
        periods = self.policy.circuit_breakers.volatility.atr.atr_periods
        now = self.clock.now_ms()
        try:
            bars = await self.exchange.fetch_klines(self.config.symbol, self.config.bar_ms, max(100, 5 * periods))
        except (ExchangeError, ValueError) as exc:  # ValueError: a bar length with no kline interval
            self.bus.emit("bot.alert", now, severity="warning", key="klines.unavailable",
                          title=f"klines unavailable, ATR warms from live bars: {str(exc)[:160]}")
            return
        self.engine.warm_up([b for b in bars if b.ts_ms <= now])

    async def reconcile(self) -> None:
        now = self.clock.now_ms()
        self._next_reconcile_ms = now + self.config.reconcile_every_ms
        try:
            balance = await self.exchange.fetch_balance()
            positions = await self.exchange.fetch_positions(self.config.symbol)
        except ClockSkewError as exc:
            await self._resync_time(exc)  # our clock, not the exchange, is off: resync, retry soon
            self._next_reconcile_ms = now + self.config.retry_initial_ms
            return
        except RateLimitedError as exc:
            wait_ms = int((exc.retry_after_s or self.config.outage_probe_ms / 1000) * 1000)
            self._blocked_until_ms = max(self._blocked_until_ms, now + wait_ms)
            self._escalate_if_banned(exc, "reconcile")
            self._next_reconcile_ms = now + wait_ms
            return
        except ExchangeError as exc:
            self._mark_down("rest", exc)
            self._next_reconcile_ms = now + (self.config.outage_probe_ms if self._exchange_down
                                             else self.config.reconcile_every_ms)
            return
        self._mark_up("rest")
        if self._flat_unconfirmed:
            await self._confirm_flat()
        if not self._orphans_checked:
            await self._cancel_orphaned_entries()
        qty = sum(p.qty for p in positions)
        self.engine.set_wallet(balance.wallet)
        entry = positions[0].entry_price if positions else 0.0
        if self._pending and self.engine.position_differs(qty):
            await self._clear_the_way_to_adopt(qty)
        if not self._pending and self.engine.reconcile_position(qty, entry):
            self.bus.emit("order.reconciled", now, client_id=None, side=None, qty=qty, price=entry,
                          reduce_only=None, code=None, status="position_adopted")
            await self._execute(self.engine.on_timer())

    async def _clear_the_way_to_adopt(self, qty: float) -> None:
        """The exchange holds a position the engine does not know while orders of the bot are working.
        Adoption waits for them (a fill of its own must not be counted twice), but an entry may rest
        for hours (post-only), and the position must not go that long without exits. So the working
        orders are looked up now: a fill of the bot's own explains the difference. What is still
        unexplained the bot did not open, and its resting entries, sized for an account without it,
        are cancelled (their fills accounted): nothing is then in the way of adopting it."""
        now = self.clock.now_ms()
        for pending in self._pending.values():
            if pending.attempts == 0:  # a lookup backing off after errors keeps its back-off
                pending.due_ms = min(pending.due_ms, now)
        await self._poll_pending()
        if not self.engine.position_differs(qty):
            return
        for client_id, pending in list(self._pending.items()):
            if not pending.order.intent.risk_reducing and not pending.unknown:
                await self._cancel_entry(CancelOrder(
                    self.config.symbol, client_id,
                    f"a position the bot did not open ({qty:g}) is on the account: it is adopted with exits "
                    "first, and this entry was sized for the account without it"))

    async def _cancel_orphaned_entries(self) -> None:
        """Entries an earlier process left resting (a crash, a restart) are cancelled once, at the
        first reconcile: this process did not size them for the state it finds and does not track
        them, so their fill would open a position no one decided on now. Orders of others and
        reduce-only orders are left alone."""
        try:
            orders = await self.exchange.fetch_open_orders(self.config.symbol)
        except ExchangeError:
            return  # tried again at the next reconcile
        self._orphans_checked = True
        for order in orders:
            if self.engine.orphaned_entry(order.client_id, order.reduce_only):
                await self._cancel_entry(CancelOrder(self.config.symbol, order.client_id,
                                                     "an entry left resting by an earlier run of the bot"))

    # --- carrying out intents ---------------------------------------------------------------

    async def _execute(self, intents: list[Intent]) -> None:
        flatten = False
        for intent in intents:
            if isinstance(intent, CancelAll):
                flatten = True
                await self._cancel_all(intent)
            elif isinstance(intent, CancelOrder):
                await self._cancel_entry(intent)
            else:
                await self._place(intent)
        if flatten and not any(isinstance(i, PlaceOrder) for i in intents):
            await self._confirm_flat()
        self._persist()

    async def _cancel_all(self, intent: CancelAll) -> None:
        """Cancel every resting order; on failure it is retried (after Retry-After) before any
        flatten order goes out: cancels first, so nothing re-opens what the flatten closes."""
        if self.clock.now_ms() < self._blocked_until_ms:
            self._cancel_pending = intent
            return
        # The count is the bot's own: orders it had working (the venue's reply carries none, and
        # reading the book first would delay the cancel by a round trip).
        count = len(self._pending)
        try:
            await self.exchange.cancel_all_orders(intent.symbol)
        except ExchangeError as exc:
            self._cancel_failures += 1
            self._cancel_pending = intent
            if isinstance(exc, AuthError):
                # A refused key will not heal in a second: stop new risk, say so once, probe slowly.
                self._blocked_until_ms = max(self._blocked_until_ms, self.clock.now_ms() + self.config.outage_probe_ms)
                self.engine.board.fail_closed(f"exchange refused our credentials: {str(exc)[:160]}")
            elif isinstance(exc, RateLimitedError):
                wait_ms = int((exc.retry_after_s or self._backoff_ms(0) / 1000) * 1000)
                self._blocked_until_ms = max(self._blocked_until_ms, self.clock.now_ms() + wait_ms)
                self._escalate_if_banned(exc, "cancel-all")
            else:
                self._blocked_until_ms = max(self._blocked_until_ms, self.clock.now_ms() + self._backoff_ms(1))
                self._mark_down("rest", exc)
            if self._cancel_failures == 1:
                self.bus.emit("bot.alert", self.clock.now_ms(), severity="critical", key="cancel_all.failed",
                              title=f"cancel-all failed during flatten, retrying: {str(exc)[:160]}")
            return
        self._cancel_pending = None
        self._cancel_failures = 0
        self.engine.on_orders_cancelled()
        self._pending = {k: p for k, p in self._pending.items() if p.order.intent.risk_reducing}
        self._entry_cancels.clear()
        self.record(self.config.actor, "orders.cancel_all", {"count": count, "reason": intent.reason})
        self.bus.emit("orders.cancelled", self.clock.now_ms(), count=count, scope="all", client_id=None,
                      reason=intent.reason)

    async def _cancel_entry(self, intent: CancelOrder) -> None:
        """Cancel one working entry. The exchange's answer is the order's final state, so a fill
        that beat the cancel (partly or wholly) is accounted, never lost; an order that is no
        longer open is looked up. A failure is retried after the back-off."""
        now = self.clock.now_ms()
        if now < self._blocked_until_ms:
            self._entry_cancels[intent.client_id] = intent
            return
        pending = self._pending.get(intent.client_id)
        try:
            state = await self.exchange.cancel_order(intent.symbol, intent.client_id)
        except NotFoundError:
            # Not open any more: filled, expired, or never booked. The order's own record says which.
            if pending is not None:
                pending.due_ms = now
                await self._poll_pending()
            else:
                self.engine.on_order_done(intent.client_id)
            return
        except ExchangeError as exc:
            self._entry_cancels[intent.client_id] = intent
            if isinstance(exc, RateLimitedError):
                wait_ms = int((exc.retry_after_s or self._backoff_ms(0) / 1000) * 1000)
                self._blocked_until_ms = max(self._blocked_until_ms, now + wait_ms)
                self._escalate_if_banned(exc, "entry cancel")
            else:
                self._blocked_until_ms = max(self._blocked_until_ms, now + self._backoff_ms(1))
                if not isinstance(exc, AuthError):
                    self._mark_down("rest", exc)
            return
        self._mark_up("rest")
        if pending is not None:
            await self._apply_state(pending, state)
        else:
            self.engine.on_order_done(intent.client_id)
        self.record(self.config.actor, "order.cancel",
                     {"client_id": intent.client_id, "status": state.status, "filled": state.filled_qty,
                      "reason": intent.reason})
        self.bus.emit("orders.cancelled", self.clock.now_ms(), count=1 if state.status == "canceled" else 0,
                      scope="entries", client_id=intent.client_id, reason=intent.reason)

    async def _place(self, order: PlaceOrder, attempts: int = 0) -> None:
        intent = order.intent
        request = OrderRequest(intent.symbol, intent.side, intent.qty, order.type, intent.client_id,
                               intent.price, order.time_in_force, intent.reduce_only)
        started = self.clock.now_ms()
        if started < self._blocked_until_ms or (self._cancel_pending is not None and intent.purpose == "flatten"):
            self._defer(order, attempts)
            return
        try:
            state = await self.exchange.create_order(request)
        except ClockSkewError as exc:
            await self._resync_time(exc)
            if attempts < 1:
                await self._place(order, attempts + 1)
            else:
                self._give_up(order, exc)
            return
        except RateLimitedError as exc:
            wait_ms = int((exc.retry_after_s or self._backoff_ms(attempts) / 1000) * 1000)
            self._blocked_until_ms = max(self._blocked_until_ms, self.clock.now_ms() + wait_ms)
            self._escalate_if_banned(exc, f"{intent.purpose} order")
            self._defer(order, attempts + 1)
            return
        except UnknownOutcomeError as exc:
            self._emit_order("order.unknown", intent, code=exc.code)
            self._pending[intent.client_id] = _Pending(order, started, unknown=True, due_ms=self.clock.now_ms())
            await self._poll_pending()
            return
        except OrderRejectedError as exc:
            self._emit_order("order.rejected", intent, code=exc.code)
            self.engine.on_order_done(intent.client_id)
            if intent.risk_reducing:
                self.bus.emit("bot.alert", self.clock.now_ms(), severity="critical", key="order.protective_rejected",
                              title=f"{intent.purpose} order rejected ({exc.code}): reconciling, then "
                                    "exiting at market")
                await self.reconcile()
                if intent.purpose != "flatten" and attempts < 3:
                    for retry in self.engine.exit_now():
                        if isinstance(retry, PlaceOrder):
                            await self._place(retry, attempts + 1)
            return
        except AuthError as exc:
            self._emit_order("order.rejected", intent, code=exc.code)
            self.engine.on_order_done(intent.client_id)
            self.engine.board.fail_closed(f"exchange refused our credentials: {exc}")
            return
        except (RetryableError, ExchangeError) as exc:
            self._mark_down("rest", exc)
            self._defer(order, attempts + 1)
            return
        self._mark_up("rest")
        latency = self.clock.now_ms() - started
        self._observed("placement", latency)
        await self._execute(self.engine.on_order_latency("placement", latency))
        self.record(self.config.actor, "order.place",
                     {"client_id": intent.client_id, "side": intent.side, "qty": intent.qty, "price": intent.price,
                      "reduce_only": intent.reduce_only, "purpose": intent.purpose})
        extra: dict[str, Any] = {}
        if intent.purpose == "entry":
            equity = self.engine.equity
            price = intent.price if intent.price is not None else self.engine.mark
            extra["qty_pct"] = round(intent.qty * price / equity * 100, 4) if equity > 0 else None
            extra["sized_by"] = order.sized_by
        self._emit_order("order.placed", intent, type=order.type, purpose=intent.purpose,
                         post_only=intent.post_only, **extra)
        pending = _Pending(order, started, unknown=False)
        self._pending[intent.client_id] = pending
        await self._apply_state(pending, state)
        if intent.risk_reducing or self._pending:
            self._arm_heartbeat()

    def _escalate_if_banned(self, exc: RateLimitedError, what: str) -> None:
        """A 429 is a warning to back off (alerted once per wait); a 418 is an IP ban: nothing
        gets through until Retry-After, and a human must know now."""
        if not exc.banned:
            now = self.clock.now_ms()
            if now >= self._rate_alert_quiet_until_ms:
                self._rate_alert_quiet_until_ms = self._blocked_until_ms
                self.bus.emit("bot.alert", now, severity="warning", key="exchange.rate_limited",
                              title=f"rate limited ({exc.status} {exc.code}) on {what}; backing off "
                                    f"{(self._blocked_until_ms - now) / 1000:g} s as Retry-After asks")
            return
        self._mark_down("rest", exc)
        position = abs(self.engine.position_qty) > 1e-12
        self.bus.emit("bot.alert", self.clock.now_ms(), severity="critical", key="exchange.banned",
                      title=f"ESCALATION: exchange ban (418) on {what}; retry after {exc.retry_after_s} s"
                            + ("; position still open" if position else ""))

    def _defer(self, order: PlaceOrder, attempts: int) -> None:
        if order.intent.risk_reducing and attempts <= 50:
            self._retries.append(_Retry(order, attempts))
            self._blocked_until_ms = max(self._blocked_until_ms, self.clock.now_ms() + self._backoff_ms(attempts))
        else:
            self.engine.on_order_done(order.intent.client_id)

    def _give_up(self, order: PlaceOrder, exc: Exception) -> None:
        self._emit_order("order.rejected", order.intent, code=getattr(exc, "code", None))
        self.engine.on_order_done(order.intent.client_id)

    def _backoff_ms(self, attempts: int) -> int:
        return int(min(self.config.retry_initial_ms * 2 ** attempts, self.config.retry_max_ms))

    async def _poll_pending(self) -> None:
        now = self.clock.now_ms()
        for client_id, pending in list(self._pending.items()):
            if pending.due_ms > now:
                continue
            try:
                state = await self.exchange.fetch_order(self.config.symbol, client_id)
            except NotFoundError:
                del self._pending[client_id]
                self._emit_order("order.reconciled", pending.order.intent, status="not_found")
                self.engine.on_order_done(client_id)
                continue
            except ExchangeError:
                pending.attempts += 1
                if pending.attempts >= self.config.resolve_attempts:
                    del self._pending[client_id]
                    self.bus.emit("bot.alert", now, severity="critical", key="order.outcome_unknown",
                                  title=f"order {client_id} outcome still unknown after {pending.attempts} queries")
                    self.engine.on_order_done(client_id)
                else:
                    pending.due_ms = now + self._backoff_ms(pending.attempts)
                continue
            if pending.unknown:
                pending.unknown = False
                self._emit_order("order.reconciled", pending.order.intent, status=state.status)
            await self._apply_state(pending, state)

    async def _apply_state(self, pending: _Pending, state: OrderState) -> None:
        intent = pending.order.intent
        new_fill = state.filled_qty - pending.filled
        if new_fill > 1e-12:
            pending.filled = state.filled_qty
            price = state.avg_price if state.avg_price is not None else math.nan
            maker = pending.order.time_in_force == "GTX"
            costs = self.policy.execution_costs
            fee_rate = costs.maker_fee if maker else costs.taker_fee
            fill = Fill(intent.client_id, intent.side, new_fill, price, new_fill * price * fee_rate,
                        self.clock.now_ms())
            if pending.order.type == "market":
                took = self.clock.now_ms() - pending.placed_ms
                self._observed("fill", took)
                await self._execute(self.engine.on_order_latency("fill", took))
            self._emit_order("order.filled", intent, qty=new_fill, price=price)
            await self._execute(self.engine.on_fill(fill))
            if intent.purpose == "flatten" and abs(self.engine.position_qty) < 1e-12:
                await self._confirm_flat()
        if state.status in ("filled", "canceled", "rejected", "expired"):
            self._pending.pop(intent.client_id, None)
            if state.status != "filled":
                self.engine.on_order_done(intent.client_id)
        else:
            pending.due_ms = self.clock.now_ms() + (250 if pending.order.type == "market" else self.config.bar_ms)

    async def _confirm_flat(self) -> None:
        try:  # both reads at once: the kill switch's time to flat pays one round trip here, not two
            positions, orders = await asyncio.gather(self.exchange.fetch_positions(self.config.symbol),
                                                     self.exchange.fetch_open_orders(self.config.symbol))
        except ExchangeError as exc:
            # Either read failing leaves the account unknown, never flat: ask again at the next
            # reconcile that reaches the exchange.
            self._flat_unconfirmed = True
            self._mark_down("rest", exc)
            return
        self._flat_unconfirmed = False
        if not any(abs(p.qty) > 1e-12 for p in positions) and not orders:
            self.bus.emit("account.flat", self.clock.now_ms())
            self.record(self.config.actor, "account.flat", {})

    async def _heartbeat(self) -> None:
        """Dead-man switch: while orders rest, the exchange cancels them unless we renew the
        countdown (3 x heartbeat_ms, renewed every heartbeat_ms): a bot that dies leaves no entry
        on the book for long. Off once nothing rests."""
        self._next_heartbeat_ms = None
        countdown = 3 * self.config.heartbeat_ms if self._pending else 0
        try:
            await self.exchange.countdown_cancel_all(self.config.symbol, countdown)
        except ExchangeError:
            pass  # renewed at the next beat; past 3 beats the exchange cancels, as it should
        if self._pending:
            self._next_heartbeat_ms = self.clock.now_ms() + self.config.heartbeat_ms

    def _arm_heartbeat(self) -> None:
        """Start the dead-man countdown now (at the next timer), unless it is already running."""
        if self._next_heartbeat_ms is not None:
            return
        self._next_heartbeat_ms = self.clock.now_ms()

    async def _resync_time(self, exc: ClockSkewError) -> None:
        try:
            server = await self.exchange.fetch_time_ms()
        except ExchangeError:
            return
        self._time_offset_ms = server - self.clock.now_ms()
        resync = getattr(self.exchange, "set_time_offset_ms", None)
        if resync is not None:
            resync(self._time_offset_ms)
        self.bus.emit("bot.alert", self.clock.now_ms(), severity="warning", key="clock.resynced",
                      title=f"clock outside recvWindow ({exc.code}); resynced by {self._time_offset_ms} ms")

    # --- feed -------------------------------------------------------------------------------

    def _feed_message(self, event_ts_ms: int) -> list[Intent]:
        now = self.clock.now_ms()
        lag = max(0, now - event_ts_ms)
        self.feed.messages += 1
        self.feed.lag_ms = lag
        if self.feed.last_event_ms is None or event_ts_ms > self.feed.last_event_ms:
            self.feed.last_event_ms = event_ts_ms
        limit_ms = self.policy.circuit_breakers.latency.websocket.max_lag_seconds * 1000
        if self.feed.stale and lag < limit_ms:
            self.feed.stale = False
            self.bus.emit("feed.recovered", now, lag_ms=lag)
        elif not self.feed.stale and lag >= limit_ms:
            self.feed.stale = True
            self.bus.emit("feed.stale", now, lag_ms=lag)
        return self.engine.on_feed_lag(lag)

    # --- bookkeeping ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.name in PERSISTED_EVENTS:
            self._dirty = True
        if event.name == "redflag.raised":  # the kill switch is engaged: make it survive a crash, then record
            self._save_marker()
            self.record("redflag", "redflag.raised", dict(event.fields))
        observed = observed_check(event)
        if observed is not None:
            self.observe_check(*observed)

    def observe_check(self, flag: str, ok: bool, detail: str) -> None:
        """A red-flag check's outcome (a self-test, the backup, monitoring, a log scan, alert delivery):
        a failure engages the kill switch at once; its flatten runs on the next timer tick."""
        verdict = self.engine.red_flags.check(flag, ok, detail, self.clock.now_ms())
        self._deferred_intents.extend(self.engine.raise_red_flag(verdict))

    def access_denied(self, what: str) -> None:
        """A request refused for its credentials (the control API, the kill switch): past
        red_flags.max_unauthorized_attempts it is the red flag unauthorized_access."""
        verdict = self.engine.red_flags.access_denied(what, self.clock.now_ms())
        self._deferred_intents.extend(self.engine.raise_red_flag(verdict))

    def _persist(self, force: bool = False) -> str | None:
        """Save the snapshot when it changed (or `force`); None when saved or unchanged, else why not."""
        if not (self._dirty or force):
            return None
        if self._store_down:
            return f"state store: {self._store_error}"
        try:
            self._save_snapshot()
        except StateStoreError as exc:
            self._set_store_down(exc)
            return f"state store: {exc}"
        return None

    def _save_snapshot(self) -> None:
        """One more generation, witnessed in the audit log once the store has it (module docstring)."""
        generation = self._generation + 1
        # the audit chain's head goes with every snapshot: an anchor a rewrite of the log cannot reach
        self.store.put(self.config.state_key, {**self.engine.snapshot(), "generation": generation,
                                               SNAPSHOT_FIELD: head_fields(self.audit.head)})
        self._generation = generation
        self._dirty = False
        self.record(self.config.actor, "state.saved",
                     {"generation": generation, "key": self.config.state_key, "store": self._store_name()})

    def _store_name(self) -> str:
        return str(getattr(self.store, "name", type(self.store).__name__))

    def _check_store(self) -> None:
        if not self._store_down:
            try:
                self.store.ping()
            except StateStoreError as exc:
                self._set_store_down(exc)
            return
        try:  # a write is the probe: a full disk still answers a ping
            self._save_snapshot()
        except StateStoreError as exc:
            self._store_error = str(exc)
            return
        self._store_down = False
        self.bus.emit("bot.alert", self.clock.now_ms(), severity="info", key="state_store.up",
                      title="state store writable again")
        self._bookkeeping_changed()

    def _set_store_down(self, exc: Exception) -> None:
        """No new risk while breaker state cannot be persisted (fail closed); exits go on."""
        self._dirty = True
        self._store_error = str(exc)
        if self._store_down:
            return
        self._store_down = True
        now = self.clock.now_ms()
        self._next_store_check_ms = now + (self.config.store_check_ms or self.config.outage_probe_ms)
        self.bus.emit("bot.alert", now, severity="critical", key="state_store.down",
                      title=f"state store cannot be written, new entries stopped: {str(exc)[:160]}")
        self._bookkeeping_changed()

    def _bookkeeping_changed(self) -> None:
        """Tell the engine whether its state can be recorded (the state store and the audit log):
        while either cannot, no new entries (the state-store breaker); exits go on."""
        down = self._store_down or self.audit.down
        if down != self._bookkeeping_down:
            self._bookkeeping_down = down
            self._deferred_intents.extend(self.engine.on_store_status(down))

    def record(self, actor: str, action: str, details: dict[str, Any]) -> str | None:
        """Append an audit record (the one way the bot and its control API audit); never raises.
        None when written, else why not (the record is kept and written late)."""
        now = self.clock.now_ms()
        error = self.audit.record(actor, action, details, now)
        self._audit_changed(now)
        return None if error is None else f"audit: {error}"

    def _announce_repairs(self, now: int) -> None:
        for repair in self.audit.take_repairs():
            self.bus.emit("audit.repaired", now, cut_bytes=repair.cut_bytes, cut_sha256=repair.cut_sha256)
            self.bus.emit("bot.alert", now, severity="warning", key="audit.repaired",
                          title=f"audit log: a torn last line was cut ({repair.cut_bytes} bytes after record "
                                f"{repair.after_seq}, sha256 {repair.cut_sha256[:16]}, kept in {repair.saved_to})")

    def _audit_changed(self, now: int) -> None:
        """Announce repairs; alert when the audit log stops or starts taking records again."""
        self._announce_repairs(now)
        if self.audit.down and not self._audit_alerted:
            self._audit_alerted = True
            self._next_audit_retry_ms = now + self.config.audit_retry_ms
            where = "in memory" if self.audit.spill_problem else "in memory and in a spill file beside the log"
            self.bus.emit("bot.alert", now, severity="critical", key="audit.down",
                          title=f"audit log cannot be written ({str(self.audit.problem)[:200]}): records are kept "
                                f"{where} and written late; new entries stopped; retrying every "
                                f"{self.config.audit_retry_ms / 1000:g} s")
        elif not self.audit.down and self._audit_alerted:
            self._audit_alerted = False
            self.bus.emit("bot.alert", now, severity="info", key="audit.up",
                          title="audit log writable again: the records kept were appended late (audit.late)")
        self._bookkeeping_changed()

    # --- state at start -----------------------------------------------------------------------

    def _restore_state(self, now: int) -> bool:
        """Restore the saved snapshot; True when one was restored. State found lost (module
        docstring) halts trading, manual resume required. An unreachable store refuses the start."""
        key = self.config.state_key
        witness, witness_problem = self.audit.last_saved(key)
        problem: str | None = None
        saved: dict[str, Any] | None = None
        try:
            saved = self.store.get(key)
        except CorruptStateError as exc:
            problem = f"the stored state is damaged: {exc}" + self._set_aside(key, now)
        except StateStoreError as exc:
            self._refuse(f"state store unreachable: {exc}")
        found = None if saved is None else saved.get("generation", 0)
        if saved is not None:
            try:
                if type(found) is not int or found < 0:
                    raise ValueError(f"generation {found!r} is not a whole number >= 0")
                self.engine.restore(saved)
            except (KeyError, ValueError, TypeError) as exc:
                problem = f"the stored state does not restore ({type(exc).__name__}: {exc})" + self._set_aside(key, now)
                found = None
        expected = witness.generation if witness is not None else None
        if problem is None and witness is not None:
            if saved is None:
                problem = (f"{self._store_name()} holds no state under '{key}', but the audit log says generation "
                           f"{expected} was saved {self._witnessed(witness)}")
            elif isinstance(found, int) and found < witness.generation:
                problem = (f"{self._store_name()}:{key} holds generation {found}, older than generation {expected} "
                           f"saved {self._witnessed(witness)}: newer state was lost (a lost WAL, a restored "
                           "backup, a Redis restarted from an old dump?)")
        if problem is None and saved is None and witness_problem is not None:
            problem = f"{self._store_name()} holds no state under '{key}', and whether it ever did cannot be told: " \
                      + witness_problem
        self._generation = max(found if isinstance(found, int) else 0, expected or 0)
        if problem is not None:
            self._state_lost(now, problem, expected, found if isinstance(found, int) else None)
        return saved is not None and isinstance(found, int)

    @staticmethod
    def _witnessed(witness: Witness) -> str:
        where = f"record {witness.seq}" if witness.seq is not None else "a record not yet written"
        return f"at {iso_utc(witness.ts_ms)} ({where})"

    def _set_aside(self, key: str, now: int) -> str:
        """Keep a damaged value under another key before a new snapshot replaces it."""
        aside = f"{key}.damaged-{now}"
        try:
            moved = self.store.set_aside(key, aside)
        except StateStoreError as exc:
            return f" (it could not be set aside: {str(exc)[:160]})"
        return f" (kept as '{aside}')" if moved else ""

    def _state_lost(self, now: int, reason: str, expected: int | None, found: int | None) -> None:
        key, store = self.config.state_key, self._store_name()
        self.bus.emit("state.lost", now, reason=reason, store=store, key=key, expected_generation=expected,
                      found_generation=found)
        self.engine.board.fail_closed(f"state lost: {reason}; inspect, then resume manually")
        self.bus.emit("bot.alert", now, severity="critical", key="state.lost",
                      title=f"STATE LOST: trading halted until an operator resumes: {reason[:240]}")
        self.record(self.config.actor, "state.lost", {"reason": reason, "store": store, "key": key,
                                                      "expected_generation": expected, "found_generation": found})

    async def _rest_fallback(self, now: int) -> None:
        """WebSocket silent but REST may work: keep prices (and so exits and drawdown) current."""
        self._next_rest_book_ms = now + self.config.rest_fallback_ms
        try:
            top = await self.exchange.fetch_book_top(self.config.symbol)
        except ExchangeError as exc:
            self._mark_down("all", exc)
            return
        self._mark_up("rest")
        await self._execute(self.engine.on_book(BookTick(top.ts_ms, top.bid, top.ask)))

    def _mark_down(self, scope: Literal["rest", "ws", "all"], exc: Exception) -> None:
        if self._exchange_down:
            return
        self._exchange_down = True
        now = self.clock.now_ms()
        self.bus.emit("exchange.down", now, scope=scope, error=str(exc)[:200])
        if abs(self.engine.position_qty) > 1e-12:
            self.bus.emit("bot.alert", now, severity="critical", key="exchange.unreachable_with_position",
                          title="URGENT: exchange unreachable with a position open - positions cannot be read "
                                "or closed; manual intervention may be needed")
        # Probe again soon rather than at the next routine reconcile.
        self._next_reconcile_ms = min(self._next_reconcile_ms, now + self.config.outage_probe_ms)
        self._deferred_intents.extend(self.engine.on_exchange_status(True, scope))

    def _mark_up(self, scope: Literal["rest", "ws", "all"]) -> None:
        if self._exchange_down:
            self._exchange_down = False
            self.bus.emit("exchange.up", self.clock.now_ms(), scope=scope, error=None)
            self._deferred_intents.extend(self.engine.on_exchange_status(False, scope))

    def _observed(self, kind: str, ms: float) -> None:
        if self.observe_latency is not None:
            self.observe_latency(kind, ms)

    def _emit_order(self, name: str, intent: OrderIntent, **extra: Any) -> None:
        fields: dict[str, Any] = {"client_id": intent.client_id, "side": intent.side, "qty": intent.qty,
                                  "price": intent.price, "reduce_only": intent.reduce_only, "code": None}
        fields.update(extra)
        self.bus.emit(name, self.clock.now_ms(), **fields)

    def _refuse(self, reason: str) -> None:
        now = self.clock.now_ms()
        self.bus.emit("startup.refused", now, reason=reason)
        self.audit.record(self.config.actor, "startup.refused", {"reason": reason}, now)
        raise StartupRefused(reason)

    def _save_marker(self) -> str | None:
        """Write the marker of the engaged kill switch; on failure it is retried on the timer."""
        self._marker_unsaved = False
        if self.marker_path is None or not self.engine.killswitch.status().engaged:
            return None
        try:
            write_marker(self.marker_path, self.engine.killswitch.snapshot(), self.disk)
        except OSError as exc:
            self._marker_unsaved = True
            self._next_marker_retry_ms = self.clock.now_ms() + self.config.audit_retry_ms
            return f"marker {self.marker_path}: {exc}"
        return None
