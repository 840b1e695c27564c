"""The pre-trade gate: every order intent passes here and gets allow/deny with a reason.

Risk-reducing orders (purpose exit / stop / take_profit / flatten, or reduce_only) are ALWAYS
allowed whatever the breaker, pause or kill-switch state, provided they really reduce: there
must be a position, the side must be opposite to it, and qty may not exceed |position| (a
reversal is an entry, not an exit). Their qty (and price, if given) must be finite and > 0.

Entries are denied, in this order, when: numbers are not finite/positive; the kill switch is
engaged (any mode); the board is halted or paused; a latency backoff has not elapsed; the
zone is unknown while zones are enabled, or blocked; the policy wants post-only orders and
the intent is not; the venue balance has reached the hot-wallet limit (capital_ramp
hot_wallet_max_share of the declared capital: the rest belongs in cold storage); the position
after the order would exceed max_position_pct of equity; total exposure would exceed
max_total_exposure_pct of equity. Under a capital ramp stage whose cap is below equity, the
percentages apply to the cap (the equity at risk), so notional stays within the cap too, and a
denial names rule `stage` instead of cap / exposure. Caps allow values up to and including the
cap. Any exception inside the check denies with `fail_closed=True`, and the engine halts.

Every denial of an entry names its `rule`, one of REFUSAL_RULES (the `order.refused` event's
vocabulary): invalid, killswitch, state, backoff, zone, post_only, hot_wallet, stage, cap, exposure;
the engine adds edge and size for entries its own checks refuse before the gate sees them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bot.core.breakers.board import BoardStatus
from bot.core.killswitch import KillStatus
from bot.core.policy import Policy, Zone

Side = Literal["buy", "sell"]
Purpose = Literal["entry", "exit", "stop", "take_profit", "flatten"]
RISK_REDUCING: frozenset[str] = frozenset({"exit", "stop", "take_profit", "flatten"})
RefusalRule = Literal["invalid", "killswitch", "state", "backoff", "zone", "post_only", "hot_wallet", "stage",
                      "cap", "exposure", "edge", "size"]
REFUSAL_RULES: tuple[RefusalRule, ...] = ("invalid", "killswitch", "state", "backoff", "zone", "post_only",
                                          "hot_wallet", "stage", "cap", "exposure", "edge", "size")
_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class OrderIntent:
    client_id: str
    symbol: str
    side: Side
    qty: float  # base-asset quantity, > 0
    price: float | None  # None: market order (valued at GateContext.mark_price)
    reduce_only: bool
    purpose: Purpose
    post_only: bool = False

    @property
    def risk_reducing(self) -> bool:
        return self.reduce_only or self.purpose in RISK_REDUCING


@dataclass(frozen=True, slots=True)
class GateContext:
    equity: float  # real equity (wallet + unrealised)
    position_qty: float  # signed position in this symbol (long > 0)
    position_notional: float  # |position| * mark, quote currency
    open_exposure: float  # total notional across symbols, incl. resting entry orders
    mark_price: float
    board: BoardStatus
    killswitch: KillStatus
    now_ms: int
    zone: Zone | None = None
    capital_cap: float | None = None  # the capital ramp stage's cap on equity at risk and notional
    venue_balance: float | None = None  # the wallet on the venue (the hot wallet)
    hot_wallet_limit: float | None = None  # venue balance at which entries stop (None: not declared)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    fail_closed: bool = False  # the gate itself failed: the engine must halt
    rule: RefusalRule | None = None  # which rule denied an entry (None: allowed, or not an entry)


def _positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


class RiskGate:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def check(self, intent: OrderIntent, ctx: GateContext) -> Decision:
        try:
            if intent.risk_reducing:
                return self._reducing(intent, ctx)
            return self._entry(intent, ctx)
        except Exception as exc:  # fail closed
            return Decision(False, f"risk gate failed: {type(exc).__name__}: {exc}", fail_closed=True,
                            rule="invalid")

    @staticmethod
    def entries_blocked(board: BoardStatus, killswitch: KillStatus, now_ms: int) -> Decision | None:
        """The denial every entry gets now whatever its size (kill switch, pause or halt, latency
        backoff), or None when the trading state lets entries through."""
        if killswitch.engaged:
            return Decision(False, f"entry denied: kill switch engaged ({killswitch.mode}) by "
                                   f"{killswitch.actor}: {killswitch.reason}", rule="killswitch")
        if board.state in ("halted", "paused"):
            return Decision(False, f"entry denied: trading {board.state}: " + "; ".join(board.reasons),
                            rule="state")
        if now_ms < board.entries_allowed_at_ms:
            return Decision(False, f"entry denied: latency backoff until ts {board.entries_allowed_at_ms} "
                                   f"({board.entries_allowed_at_ms - now_ms} ms left)", rule="backoff")
        return None

    def _reducing(self, o: OrderIntent, ctx: GateContext) -> Decision:
        what = "reduce-only" if o.reduce_only else o.purpose
        if not _positive(o.qty):
            return Decision(False, f"{what} denied: qty {o.qty} is not a finite positive number")
        if o.price is not None and not _positive(o.price):
            return Decision(False, f"{what} denied: price {o.price} is not a finite positive number")
        pos = ctx.position_qty
        if not math.isfinite(pos):
            return Decision(False, f"{what} denied: position qty {pos} is not finite")
        if pos == 0:
            return Decision(False, f"{what} denied: no {o.symbol} position to reduce")
        if (pos > 0) == (o.side == "buy"):
            return Decision(False, f"{what} denied: {o.side} {o.qty} would increase the "
                                   f"{'long' if pos > 0 else 'short'} position of {abs(pos)}")
        if o.qty > abs(pos) * (1 + _TOL):
            return Decision(False, f"{what} denied: qty {o.qty} exceeds the position {abs(pos)} "
                                   "(a reversal is an entry)")
        return Decision(True, f"{what} allowed: reduces |position| {abs(pos)} by {o.qty}")

    def _entry(self, o: OrderIntent, ctx: GateContext) -> Decision:
        for name, value in (("qty", o.qty), ("equity", ctx.equity), ("mark price", ctx.mark_price)):
            if not _positive(value):
                return Decision(False, f"entry denied: {name} {value} is not a finite positive number",
                                rule="invalid")
        if o.price is not None and not _positive(o.price):
            return Decision(False, f"entry denied: price {o.price} is not a finite positive number",
                            rule="invalid")
        for name, value in (("position qty", ctx.position_qty), ("position notional", ctx.position_notional),
                            ("open exposure", ctx.open_exposure)):
            if not math.isfinite(value):
                return Decision(False, f"entry denied: {name} {value} is not finite", rule="invalid")
        blocked = self.entries_blocked(ctx.board, ctx.killswitch, ctx.now_ms)
        if blocked is not None:
            return blocked
        zones = self.policy.position_sizing.zones
        if zones.enabled:
            if ctx.zone is None:
                return Decision(False, "entry denied: zone unknown while zones are enabled", rule="zone")
            if ctx.zone in zones.blocked:
                return Decision(False, f"entry denied: zone {ctx.zone} is blocked "
                                       f"(blocked: {', '.join(zones.blocked)})", rule="zone")
        if self.policy.orders.post_only and not o.post_only:
            return Decision(False, "entry denied: policy requires post-only orders (orders.post_only) "
                                   "and the intent is not post-only", rule="post_only")
        if ctx.hot_wallet_limit is not None:
            balance = ctx.venue_balance
            if balance is None or not math.isfinite(balance) or balance >= ctx.hot_wallet_limit:
                return Decision(False, f"entry denied: venue balance {balance} has reached the hot-wallet limit "
                                       f"{ctx.hot_wallet_limit:.2f} (capital_ramp.hot_wallet_max_share of the "
                                       "declared capital): move the excess to cold storage (docs/production.md)",
                                rule="hot_wallet")
        price = o.price if o.price is not None else ctx.mark_price
        notional = o.qty * price
        staged = ctx.capital_cap is not None and ctx.capital_cap < ctx.equity  # the stage binds, not equity
        equity = ctx.capital_cap if staged and ctx.capital_cap is not None else ctx.equity
        of_equity = f"equity at risk {equity:.2f} (capital ramp stage cap)" if staged else f"equity {equity:.2f}"
        signed = o.qty if o.side == "buy" else -o.qty
        pos = ctx.position_qty
        if pos == 0 or (pos > 0) == (signed > 0):
            new_position = abs(ctx.position_notional) + notional  # adds to the position
        else:
            new_position = abs(pos + signed) * price  # nets against it
        sizing = self.policy.position_sizing
        cap = sizing.max_position_pct * equity
        if new_position > cap * (1 + _TOL):
            return Decision(False, f"entry denied: position notional {new_position:.2f} would exceed "
                                   f"max_position_pct {sizing.max_position_pct:.2%} of {of_equity} ({cap:.2f})",
                            rule="stage" if staged else "cap")
        exposure_cap = sizing.max_total_exposure_pct * equity
        exposure = ctx.open_exposure + notional
        if exposure > exposure_cap * (1 + _TOL):
            return Decision(False, f"entry denied: total exposure {exposure:.2f} would exceed "
                                   f"max_total_exposure_pct {sizing.max_total_exposure_pct:.2%} of {of_equity} "
                                   f"({exposure_cap:.2f})", rule="stage" if staged else "exposure")
        return Decision(True, f"entry allowed: notional {notional:.2f}, position {new_position:.2f} "
                              f"<= {cap:.2f}, exposure {exposure:.2f} <= {exposure_cap:.2f}")
