"""Market faults: the harness arranges the exposure it needs and moves the price.

- drawdown: open leveraged exposure on the bot's account (the bot adopts it at its next
  reconcile), then gap the price once so the account's REAL equity (wallet + unrealised) is
  depth_pct below the day's peak. Leverage is chosen so the move stays well under the one-bar
  price_move limit: this tests drawdown, not the gap breaker. Established at the gap.
- loss_streak / winning_trade: `count` times: give the bot a position, wait until it has adopted
  it, then move the price through its stop (loss) or its take profit (win). Established when the
  count-th trade has closed with the wanted sign (position.closed pnl < 0 / > 0).
- spread_spike: the exchange quotes `bps` wide for `duration`.
- atr_spike: bars whose true range drives the ATR to `multiple` x its baseline (the same Wilder
  ATR and rolling baseline the policy defines), held for `duration`; close-to-close unchanged.
- price_gap: the price jumps `pct` at once and the bar closes there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.faults.contract import FaultError
from harness.sim.constants import P_BAR, P_PHASE, START_MS, SYMBOL

ADOPT_BARS = 3  # how long the bot may take to adopt exposure (it reconciles every minute)
TRADE_FRACTION = 0.15  # notional of each streak trade, as a fraction of equity
BEYOND = 0.003  # how far past the stop / take profit the price goes (fraction of entry)

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld



def _max_move_pct(world: SimWorld) -> float:
    check = world.policy.circuit_breakers.volatility.price_move
    return float(check.max_move_pct) if check.enabled else 20.0


def _after_adoption(world: SimWorld, step: ActiveStep, then: Any, what: str) -> None:
    """Call then() once the bot has adopted the exposure just opened on its account."""
    started = world.now
    done = {"flag": False}

    def on_event(event: Any) -> None:
        if event.name == "position.opened" and event.fields.get("reason") == "reconciled" and not done["flag"]:
            done["flag"] = True
            unsubscribe()
            world.at(world.now, then, P_PHASE)

    unsubscribe = world.watch(on_event)

    def check() -> None:
        if not done["flag"] and step.error is None:
            unsubscribe()
            step.fail(f"{what}: the bot did not adopt the position opened on its account within "
                      f"{ADOPT_BARS} bars (no position.opened{{reason=reconciled}} since "
                      f"{started - START_MS} ms)")

    world.at(started + ADOPT_BARS * world.bar_ms, check, P_PHASE)


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
    equity, price, held = world.real_equity(), world.price(), world.exchange_qty()
    # The peak as the bot has seen it: equity while the harness's exposure is in flight (placed,
    # not yet adopted) is equity the bot cannot observe, so it must not raise the peak.
    peak = world.day_peak()
    side = "BUY" if held >= 0 else "SELL"
    add = leverage * equity / price - abs(held)
    step.pending = f"drawdown {depth}%: waiting for the bot to adopt the exposure"
    if add >= 0.001:
        world.place_for_bot(side, add)
        _after_adoption(world, step, lambda: _gap_to_depth(world, step, depth, max_move, peak), "drawdown")
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
    world.require_trader(step.step.fault)
    count = int(step.params["count"])
    kind = "winning" if win else "losing"
    state = {"done": 0, "waits": 0}

    def open_next() -> None:
        if step.error is not None or world.trader is None:
            if world.trader is None:
                step.fail(f"{step.step.fault}: the bot stopped running")
            return
        if abs(world.exchange_qty()) > 1e-9:  # wait until the bot is flat
            state["waits"] += 1
            if state["waits"] > 20:
                step.fail(f"{step.step.fault}: the bot's account never went flat for the next trade")
                return
            world.at(world.now + world.bar_ms, open_next, P_PHASE)
            return
        step.pending = f"{state['done']} of {count} {kind} trades closed"
        equity, price = world.real_equity(), world.price()
        order = world.place_for_bot("BUY", max(TRADE_FRACTION * equity / price, 0.002))
        entry = order.avg_price
        _after_adoption(world, step, lambda: move(entry), step.step.fault)

    def move(entry: float) -> None:
        if step.error is not None:
            return
        stop = world.stop_pct(entry)
        if win:
            multiple = world.policy.exits.take_profit.risk_multiple
            goal = entry * (1 + multiple * stop + BEYOND)
        else:
            goal = entry * (1 - stop - BEYOND)
        moved_at = world.now

        def on_event(event: Any) -> None:
            if event.name != "position.closed":
                return
            unsubscribe()
            pnl = event.fields.get("pnl")
            if not isinstance(pnl, int | float) or (pnl <= 0 if win else pnl >= 0):
                step.fail(f"{step.step.fault}: trade {state['done'] + 1} closed with pnl {pnl!r}, "
                          f"not a {kind} trade")
                return
            state["done"] += 1
            if state["done"] >= count:
                step.establish(event.ts_ms)
            else:
                world.at(world.now, open_next, P_PHASE)

        unsubscribe = world.watch(on_event)

        def check() -> None:
            if step.error is None and step.established_ms is None and state["done"] < count:
                unsubscribe()
                step.fail(f"{step.step.fault}: the bot did not close trade {state['done'] + 1} within 3 bars "
                          f"of the price passing its {'take profit' if win else 'stop'}")

        world.at(moved_at + 3 * world.bar_ms, check, P_PHASE)
        world.xe.set_price(SYMBOL, goal)

    open_next()


async def spread_spike(world: SimWorld, step: ActiveStep) -> None:
    bps, duration = float(step.params["bps"]), int(step.params["duration"])
    world.xe.widen_spread(bps, symbol=SYMBOL, duration_ms=duration)
    step.on_cleanup(lambda: world.xe.reset_spread(SYMBOL))


async def atr_spike(world: SimWorld, step: ActiveStep) -> None:
    multiple, duration = float(step.params["multiple"]), int(step.params["duration"])
    atr_policy = world.policy.circuit_breakers.volatility.atr
    if not world.atr_baseline.full or world.atr.value is None or not world.atr_baseline.mean:
        need = atr_policy.atr_periods + atr_policy.baseline_periods
        raise FaultError(f"atr_spike needs an ATR baseline ({need} bars of history: atr_periods "
                         f"{atr_policy.atr_periods} + baseline_periods {atr_policy.baseline_periods}); "
                         f"injected after {world.bar_index} bars - inject at or after {need + 1} bars")
    target = multiple * world.atr_baseline.mean
    periods = atr_policy.atr_periods
    first = world.bar_index + 1
    bars = max(1, math.ceil(duration / world.bar_ms))

    def spike(price: float) -> tuple[float, float, float, float]:
        prev = world.atr.value or target
        true_range = max(prev + periods * (target - prev), prev * 0.1)
        half = min(true_range / 2, price * 0.45)
        return price, price + half, price - half, price

    for k in range(first, first + bars):
        world.bar_overrides[k] = spike

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
