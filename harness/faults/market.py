"""Market faults: the harness arranges the exposure it needs and moves the price.

Whatever the bot's own strategy is doing, these first let the bot settle: an entry of its own
resting on the book (post-only under pets) is filled by moving the price to it, an order or an
adoption in flight is waited for (the account must hold what the bot last said it holds).

- drawdown: top the bot's position (its own, or a new one) up to leveraged exposure on its
  account (the bot adopts it at its next reconcile), then gap the price once so the account's
  REAL equity (wallet + unrealised) is depth_pct below the day's peak. Leverage is chosen so the
  move stays well under the one-bar price_move limit: this tests drawdown, not the gap breaker.
  Established at the gap.
- loss_streak / winning_trade: `count` times: take the bot's position (the strategy's own, else
  one the harness opens and the bot adopts), then move the price through its stop and entry
  (loss) or its take profit (win). A trade the bot closes by itself with the other sign starts
  the count again. Established when the count-th trade in a row has closed with the wanted sign
  (position.closed pnl < 0 / > 0).
- spread_spike: the exchange quotes `bps` wide for `duration`.
- atr_spike: bars whose true range drives the ATR to `multiple` x its baseline (the same Wilder
  ATR and rolling baseline the policy defines), held for `duration`; close-to-close unchanged.
  With `over: N` the ATR ramps there in N equal steps, one a bar (a volatility expansion whose
  bars stay narrow enough not to reach a position's stop), then holds for `duration`.
- price_gap: the price jumps `pct` at once and the bar closes there.
"""

from __future__ import annotations

import math
from typing import Any

from harness.runner import (
    HARNESS_ORDER_PREFIX,
    P_BAR,
    P_PHASE,
    START_MS,
    SYMBOL,
    ActiveStep,
    FaultError,
    SimWorld,
)

ADOPT_BARS = 3  # how long the bot may take to adopt exposure (it reconciles every minute)
TRADE_FRACTION = 0.15  # notional of each streak trade, as a fraction of equity
BEYOND = 0.003  # how far past the stop / take profit the price goes (fraction of entry)


def _max_move_pct(world: SimWorld) -> float:
    check = world.policy.circuit_breakers.volatility.price_move
    return float(check.max_move_pct) if check.enabled else 20.0


def _when_settled(world: SimWorld, step: ActiveStep, what: str, then: Any) -> None:
    """Call then() once the account holds what the bot last said it holds (position.opened /
    position.closed): an entry of its own resting on the book is filled first (the market comes to
    it), an order or an adoption in flight is waited for, at most ADOPT_BARS bars."""
    started, done = world.now, {"flag": False}

    def attempt() -> None:
        if done["flag"] or step.error is not None:
            return
        resting = _resting_entries(world)
        if resting:
            _fill_resting(world, resting)
        why = "its resting entry was filled and the bot has not said so" if resting else _in_flight(world)
        if why is None:
            done["flag"] = True
            unsubscribe()
            then()
        elif world.now - started >= ADOPT_BARS * world.bar_ms:
            done["flag"] = True
            unsubscribe()
            step.fail(f"{what}: the bot did not settle within {ADOPT_BARS} bars: {why}")
        else:
            world.at(min(world.now + world.bar_ms // 5, started + ADOPT_BARS * world.bar_ms), attempt, P_PHASE)

    def on_event(event: Any) -> None:
        if event.name in ("position.opened", "position.closed", "order.filled"):
            world.at(world.now, attempt, P_PHASE)

    unsubscribe = world.watch(on_event)
    step.on_cleanup(unsubscribe)
    attempt()


async def drawdown(world: SimWorld, step: ActiveStep) -> None:
    depth = float(step.params["depth_pct"])
    world.require_trader("drawdown")
    max_move = _max_move_pct(world)
    move_pct = min(3.0, 0.4 * max_move)
    leverage = max(depth / move_pct, 1.0)
    if leverage > 8.0:
        leverage, move_pct = 8.0, depth / 8.0
        if move_pct >= 0.8 * max_move:
            raise FaultError(f"drawdown {depth}% needs a {move_pct:.2f}% move even at 8x, too close to the "
                             f"one-bar price_move limit of {max_move}%")
    step.pending = f"drawdown {depth}%: waiting for the bot's orders to settle"
    _when_settled(world, step, "drawdown", lambda: _arrange(world, step, depth, leverage, max_move))


def _arrange(world: SimWorld, step: ActiveStep, depth: float, leverage: float, max_move: float) -> None:
    """Top the bot's position (its own, or none) up to `leverage` x equity, then gap."""
    equity, price, held = world.real_equity(), world.price(), world.exchange_qty()
    # The peak as the bot has seen it: equity while the harness's exposure is in flight (placed,
    # not yet adopted) is equity the bot cannot observe, so it must not raise the peak.
    peak = world.day_peak()
    side = "BUY" if held >= 0 else "SELL"
    add = leverage * equity / price - abs(held)
    step.pending = f"drawdown {depth}%: waiting for the bot to adopt the exposure"
    if add >= 0.001:
        world.place_for_bot(side, add)
        _when_settled(world, step, "drawdown", lambda: _gap_to_depth(world, step, depth, max_move, peak))
    else:
        _gap_to_depth(world, step, depth, max_move, peak)


def _gap_to_depth(world: SimWorld, step: ActiveStep, depth: float, max_move: float, peak: float) -> None:
    if step.error is not None:
        return
    qty = world.exchange_qty()
    if abs(qty) < 1e-9:
        step.fail("drawdown: the exposure was closed before the price move")
        return
    equity, price = world.real_equity(), world.price()
    target = peak * (1 - depth / 100)
    if equity <= target:
        step.establish(world.now)
        return
    tick = world.xe.markets[SYMBOL].spec.tick_size
    goal = price - (equity - target) / qty - math.copysign(tick, qty)
    move = abs(goal / price - 1) * 100
    if goal <= 0 or move >= max_move:
        step.fail(f"drawdown {depth}%: needs a {move:.2f}% move, at or past the price_move limit {max_move}%")
        return
    step.pending = f"drawdown {depth}%: price moved, equity not yet at the depth"
    world.xe.set_price(SYMBOL, goal)
    reached = world.real_equity()
    if reached <= target * (1 + 1e-9):
        step.establish(world.now)
    else:
        step.fail(f"drawdown {depth}%: equity {reached:.2f} after the move, wanted <= {target:.2f} "
                  f"(peak {peak:.2f})")


async def loss_streak(world: SimWorld, step: ActiveStep) -> None:
    _trades(world, step, win=False)


async def winning_trade(world: SimWorld, step: ActiveStep) -> None:
    _trades(world, step, win=True)


def _trades(world: SimWorld, step: ActiveStep, *, win: bool) -> None:
    """Each trade is whatever the bot holds or is about to: its own position (the strategy's), its
    resting entry (filled: the market comes to it), else a position the harness opens on its
    account; then the price goes through that position's stop (loss) or take profit (win). A
    trade the bot closes by itself with the other sign starts the streak again: count is trades
    in a row as the bot sees them."""
    fault = step.step.fault
    world.require_trader(fault)
    count = int(step.params["count"])
    kind = "winning" if win else "losing"
    state = {"done": 0, "closed": 0, "driving": 0}

    def on_event(event: Any) -> None:
        if event.name != "position.closed" or step.error is not None or step.established_ms is not None:
            return
        pnl = event.fields.get("pnl")
        good = isinstance(pnl, int | float) and (pnl > 0 if win else pnl < 0)
        driven, state["driving"] = state["driving"], 0
        state["closed"] += 1
        if driven and not good:
            step.fail(f"{fault}: trade {state['done'] + 1} closed with pnl {pnl!r}, not a {kind} trade")
            return
        if not good:
            world.notes.append(f"{step.id}: the bot closed a trade by itself with pnl {pnl!r} "
                               f"({event.fields.get('reason')}): the {kind} streak starts again")
        state["done"] = state["done"] + 1 if good else 0
        if state["done"] >= count:
            unsubscribe()
            step.establish(event.ts_ms)
        elif state["closed"] >= 3 * count + 3:
            step.fail(f"{fault}: {state['closed']} trades closed, never {count} {kind} ones in a row")
        elif driven:
            world.at(world.now, next_trade, P_PHASE)

    unsubscribe = world.watch(on_event)
    step.on_cleanup(unsubscribe)

    def next_trade() -> None:
        if world.trader is None:
            step.fail(f"{fault}: the bot stopped running")
        elif step.error is None and step.established_ms is None:
            step.pending = f"{state['done']} of {count} {kind} trades closed"
            _when_settled(world, step, fault, take)

    def take() -> None:
        if step.error is not None or step.established_ms is not None:
            return
        plan = _bot_plan(world)
        if plan is None:
            world.place_for_bot("BUY", max(TRADE_FRACTION * world.real_equity() / world.price(), 0.002))
            _when_settled(world, step, fault, take)
        else:
            drive(plan)

    def drive(plan: dict[str, Any]) -> None:
        qty, entry = float(plan["qty"]), float(plan["entry"])
        sign = 1.0 if qty > 0 else -1.0
        stop = plan.get("stop") or entry * (1 - sign * world.stop_pct(entry))
        take_profit = plan.get("take_profit") or \
            entry * (1 + sign * world.policy.exits.take_profit.risk_multiple * world.stop_pct(entry))
        # A loss goes past the stop and the entry both (a trailed stop may be in profit).
        worst = min(stop, entry) if sign > 0 else max(stop, entry)
        goal = take_profit + sign * BEYOND * entry if win else worst - sign * BEYOND * entry
        state["driving"] = drive_no = state["closed"] + 1

        def check() -> None:
            if step.error is None and state["driving"] == drive_no:
                step.fail(f"{fault}: the bot did not close trade {state['done'] + 1} within 3 bars "
                          f"of the price passing its {'take profit' if win else 'stop'}")

        world.at(world.now + 3 * world.bar_ms, check, P_PHASE)
        world.xe.set_price(SYMBOL, goal)

    next_trade()


def _bot_plan(world: SimWorld) -> dict[str, Any] | None:
    """The position the bot last said it holds (its position.opened fields: qty, entry, stop,
    take_profit), or None when its last word was position.closed (or it never opened one)."""
    for event in reversed(world.events):
        if event.name == "position.closed":
            return None
        if event.name == "position.opened":
            return dict(event.fields)
    return None


def _resting_entries(world: SimWorld) -> list[Any]:
    """The bot's entries working on the book (its own limit orders: post-only under pets)."""
    return [o for o in world.xe.open_orders(world.api_key, SYMBOL)
            if not o.reduce_only and not str(o.client_id or "").startswith(HARNESS_ORDER_PREFIX)]


def _fill_resting(world: SimWorld, orders: list[Any]) -> None:
    """The market comes to the bot's resting entry: the price moves through its limit, it fills."""
    order = orders[0]
    bid, ask = world.xe.book(SYMBOL)
    through = ask - bid + 2 * world.xe.markets[SYMBOL].spec.tick_size
    world.xe.set_price(SYMBOL, order.price - through if order.side == "BUY" else order.price + through)


def _in_flight(world: SimWorld) -> str | None:
    """None when the account holds what the bot last said it holds; else what is in flight."""
    plan, qty = _bot_plan(world), world.exchange_qty()
    known = 0.0 if plan is None else float(plan["qty"])
    if abs(qty - known) < world.xe.markets[SYMBOL].spec.step_size / 2:
        return None
    return (f"the account holds {qty:g} {SYMBOL}, the bot last said {known:g} (an order or an adoption "
            "in flight)")


async def spread_spike(world: SimWorld, step: ActiveStep) -> None:
    bps, duration = float(step.params["bps"]), int(step.params["duration"])
    world.xe.widen_spread(bps, symbol=SYMBOL, duration_ms=duration)
    step.on_cleanup(lambda: world.xe.reset_spread(SYMBOL))


async def atr_spike(world: SimWorld, step: ActiveStep) -> None:
    multiple, duration = float(step.params["multiple"]), int(step.params["duration"])
    over = int(step.params.get("over") or 1)
    atr_policy = world.policy.circuit_breakers.volatility.atr
    if not world.atr_baseline.full or world.atr.value is None or not world.atr_baseline.mean:
        need = atr_policy.atr_periods + atr_policy.baseline_periods
        raise FaultError(f"atr_spike needs an ATR baseline ({need} bars of history: atr_periods "
                         f"{atr_policy.atr_periods} + baseline_periods {atr_policy.baseline_periods}); "
                         f"injected after {world.bar_index} bars - inject at or after {need + 1} bars")
    target = multiple * world.atr_baseline.mean
    start = world.atr.value
    periods = atr_policy.atr_periods
    first = world.bar_index + 1
    # `over` bars of ramp (the ATR rises by an equal step each bar, reaching the target at the
    # over-th), then the target is held for `duration`: over 1 is the old one-bar jump.
    bars = over - 1 + max(1, math.ceil(duration / world.bar_ms))

    def spike(goal: float) -> Any:
        def bar(price: float) -> tuple[float, float, float, float]:
            prev = world.atr.value or goal
            true_range = max(prev + periods * (goal - prev), prev * 0.1)
            half = min(true_range / 2, price * 0.45)
            return price, price + half, price - half, price

        return bar

    for j, k in enumerate(range(first, first + bars)):
        world.bar_overrides[k] = spike(start + (target - start) * min(1.0, (j + 1) / over))

    def cleanup() -> None:
        for k in range(first, first + bars):
            world.bar_overrides.pop(k, None)

    step.on_cleanup(cleanup)


async def price_gap(world: SimWorld, step: ActiveStep) -> None:
    pct = float(step.params["pct"])
    max_move = _max_move_pct(world)
    world.xe.jump_price(SYMBOL, pct)
    world.xe.freeze(SYMBOL, True)  # the bar closes at the gapped price
    next_close = START_MS + math.ceil((world.now - START_MS) / world.bar_ms) * world.bar_ms

    def thaw() -> None:
        world.xe.freeze(SYMBOL, False)

    world.at(next_close, thaw, P_BAR + 1)
    step.on_cleanup(thaw)
    if abs(pct) >= max_move:
        world.notes.append(f"{step.id}: a {pct}% gap is at or past the price_move limit {max_move}%")


SIM: dict[str, Any] = {
    "drawdown": drawdown, "loss_streak": loss_streak, "winning_trade": winning_trade,
    "spread_spike": spread_spike, "atr_spike": atr_spike, "price_gap": price_gap,
}
