"""Market faults: the harness arranges the exposure it needs and moves the price.

Whatever the bot's own strategy is doing, drawdown and the trades (harness/faults/trades.py) first
let the bot settle in sim mode: an entry of its own resting on the book (post-only under pets) is
filled by moving the price to it, an order or an adoption in flight is waited for (the account must
hold what the bot last said it holds). Net mode does not settle a running strategy's orders yet
(net scenarios run these kinds with `strategy: off`).

- drawdown: the account's REAL equity (wallet + unrealised) falls `depth_pct` below the day's
  peak - the highest equity the bot could have seen today (sim: sampled at every book tick; net:
  at every price change of the testnet engine since the run began). The harness arranges the
  exposure itself, in both modes: it opens leveraged exposure on the bot's account in the
  direction of what the bot holds (long when flat), waits until the bot has adopted it (its next
  reconcile: position.opened reason reconciled), then moves the price once so equity is at the
  depth. Leverage is chosen so the move stays well under the one-bar price_move limit: this tests
  drawdown, not the gap breaker. A scenario needs no `account.position` for it. Established at the
  price move.
- spread_spike: the exchange quotes `bps` wide for `duration`.
- atr_spike: sim: bars whose true range drives the ATR to `multiple` x its baseline (the same
  Wilder ATR and rolling baseline the policy defines), held for `duration`; close-to-close
  unchanged. With `over: N` the ATR ramps there in N equal steps, one a bar (a volatility
  expansion whose bars stay narrow enough not to reach a position's stop), then holds. net: the
  price swings bar over bar by `multiple` x the per-bar volatility for `duration`, growing to it
  over `over` bars (the bot's ATR is not visible from outside it).
- price_gap: the price jumps `pct` at once and the bar closes there.

loss_streak and winning_trade (the same family) are in harness/faults/trades.py.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

from harness.faults.contract import DURATION, DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.inject import mark_price, now_ms, position_qty, real_equity
from harness.sim.constants import HARNESS_ORDER_PREFIX, P_BAR, P_PHASE, START_MS, SYMBOL
from harness.testnet.errors import BinanceError

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


ADOPT_BARS = 3  # sim: how long the bot may take to adopt exposure (it reconciles every minute)
ADOPT_TIMEOUT_S = 10.0  # net: at least; and three of the bot's reconcile periods (run.reconcile_ms)
MAX_LEVERAGE = 8.0  # of the exposure a drawdown arranges


def max_move_pct(policy: Any) -> float:
    """The one-bar price_move limit (20 % when the check is off)."""
    check = policy.circuit_breakers.volatility.price_move
    return float(check.max_move_pct) if check.enabled else 20.0


def drawdown_leverage(depth: float, max_move: float) -> float:
    """Exposure (x equity) for a drawdown of depth % by one move far under the price_move limit."""
    move_pct = min(3.0, 0.4 * max_move)
    leverage = max(depth / move_pct, 1.0)
    if leverage > MAX_LEVERAGE:
        leverage, move_pct = MAX_LEVERAGE, depth / MAX_LEVERAGE
        if move_pct >= 0.8 * max_move:
            raise FaultError(f"drawdown {depth}% needs a {move_pct:.2f}% move even at {MAX_LEVERAGE:g}x, too close "
                             f"to the one-bar price_move limit of {max_move}%")
    return leverage


def drawdown_goal(depth: float, peak: float, equity: float, price: float, qty: float, tick: float,
                  max_move: float) -> float | None:
    """The price at which equity is depth % under peak (one tick past), None if it already is."""
    target = peak * (1 - depth / 100)
    if equity <= target:
        return None
    goal = price - (equity - target) / qty - math.copysign(tick, qty)
    move = abs(goal / price - 1) * 100
    if goal <= 0 or move >= max_move:
        raise FaultError(f"drawdown {depth}%: needs a {move:.2f}% move, at or past the price_move limit {max_move}%")
    return goal


def check_depth(depth: float, peak: float, reached: float) -> None:
    target = peak * (1 - depth / 100)
    if reached > target * (1 + 1e-9):
        raise FaultError(f"drawdown {depth}%: equity {reached:.2f} after the move, wanted <= {target:.2f} "
                         f"(peak {peak:.2f})")


# ------------------------------------------------------------------------------------------ sim


def when_settled(world: SimWorld, step: ActiveStep, what: str, then: Any) -> None:
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
    max_move = max_move_pct(world.policy)
    leverage = drawdown_leverage(depth, max_move)
    step.pending = f"drawdown {depth}%: waiting for the bot's orders to settle"
    when_settled(world, step, "drawdown", lambda: _arrange(world, step, depth, leverage, max_move))


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
        when_settled(world, step, "drawdown", lambda: _gap_to_depth(world, step, depth, max_move, peak))
    else:
        _gap_to_depth(world, step, depth, max_move, peak)


def _gap_to_depth(world: SimWorld, step: ActiveStep, depth: float, max_move: float, peak: float) -> None:
    if step.error is not None:
        return
    qty = world.exchange_qty()
    if abs(qty) < 1e-9:
        step.fail("drawdown: the exposure was closed before the price move")
        return
    try:
        goal = drawdown_goal(depth, peak, world.real_equity(), world.price(), qty,
                             world.xe.markets[SYMBOL].spec.tick_size, max_move)
        if goal is not None:
            step.pending = f"drawdown {depth}%: price moved, equity not yet at the depth"
            world.xe.set_price(SYMBOL, goal)
            check_depth(depth, peak, world.real_equity())
    except FaultError as exc:
        step.fail(str(exc))
        return
    step.establish(world.now)


def bot_plan(world: SimWorld) -> dict[str, Any] | None:
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
    plan, qty = bot_plan(world), world.exchange_qty()
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
    max_move = max_move_pct(world.policy)
    world.xe.jump_price(SYMBOL, pct)
    world.xe.freeze(SYMBOL, True)  # the bar closes at the gapped price
    next_close = START_MS + math.ceil((world.now - START_MS) / world.bar_ms) * world.bar_ms

    def thaw() -> None:
        world.xe.freeze(SYMBOL, False)

    world.at(next_close, thaw, P_BAR + 1)
    step.on_cleanup(thaw)
    if abs(pct) >= max_move:
        world.notes.append(f"{step.id}: a {pct}% gap is at or past the price_move limit {max_move}%")


# ------------------------------------------------------------------------------------------ net


def place_for_bot_net(run: NetRun, side: str, qty: float, what: str) -> Any:
    """Open exposure on the bot's account on the in-thread testnet engine and wait until the bot
    has adopted it; the position.opened event. FaultError when refused or not adopted in time."""
    testnet = run.stack.testnet
    assert testnet is not None
    engine = testnet.handle.engine
    spec = engine.market(run.symbol).spec
    qty = max(math.floor(qty / spec.step_size + 1e-9) * spec.step_size,
              math.ceil(spec.min_notional * 1.2 / mark_price(run) / spec.step_size) * spec.step_size)
    qty = round(qty, spec.quantity_precision)
    since = run.follower.count()
    try:
        testnet.call(partial(engine.place_order, run.api_key, run.symbol, side, "MARKET", qty,
                             client_id=f"{HARNESS_ORDER_PREFIX}{now_ms()}-{since}"))
    except BinanceError as exc:
        raise FaultError(f"{what}: the testnet refused the harness's {side} {qty} {run.symbol} on the bot's "
                         f"account: HTTP {exc.status} code {exc.code} {exc.msg}") from None
    timeout = max(ADOPT_TIMEOUT_S, 3 * run.reconcile_ms / 1000)
    adopted = run.follower.wait_for(
        lambda e: e.name == "position.opened" and e.fields.get("reason") == "reconciled", since=since,
        timeout=timeout)
    if adopted is None:
        raise FaultError(f"{what}: the bot did not adopt the {side} {qty} {run.symbol} opened on its account "
                         f"within {timeout:.0f} s (no position.opened{{reason=reconciled}}; bot "
                         f"{'running' if run.bot.alive() else 'down'})")
    return adopted


def drawdown_net(run: NetRun, p: dict[str, Any]) -> Injected:
    depth = float(p["depth_pct"])
    if run.policy is None:
        raise FaultError("drawdown: no policy loaded, so the price_move limit is unknown")
    max_move = max_move_pct(run.policy)
    leverage = drawdown_leverage(depth, max_move)
    equity, price, held = real_equity(run), mark_price(run), position_qty(run)
    peak = run.equity_peak.peak(equity)  # before the harness's exposure: the bot cannot see that yet
    add = leverage * equity / price - abs(held)
    notes = []
    if add >= 0.001:
        place_for_bot_net(run, "BUY" if held >= 0 else "SELL", add, "drawdown")
        notes.append(f"drawdown: {'BUY' if held >= 0 else 'SELL'} {add:.3f} opened on the bot's account, adopted")
    qty = position_qty(run)
    if abs(qty) < 1e-9:
        raise FaultError("drawdown: the exposure was closed before the price move")
    testnet = run.stack.testnet
    assert testnet is not None
    tick = testnet.handle.engine.market(run.symbol).spec.tick_size
    before = mark_price(run)
    goal = drawdown_goal(depth, peak, real_equity(run), before, qty, tick, max_move)
    if goal is not None:
        run.stack.admin("price", {"symbol": run.symbol, "price": goal})
        check_depth(depth, peak, real_equity(run))
        notes.append(f"drawdown: price {before:.2f} -> {goal:.2f} (peak equity {peak:.2f})")
    return Injected(now_ms(), notes=notes)


def spread_spike_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("spread", {"bps": p["bps"], "symbol": run.symbol, "duration_ms": p["duration"]})
    return Injected(now_ms(), lambda: run.stack.admin("spread/reset", {"symbol": run.symbol}), p["duration"])


def price_gap_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("price/jump", {"symbol": run.symbol, "pct": p["pct"]})
    return Injected(now_ms())


def atr_spike_net(run: NetRun, p: dict[str, Any]) -> Injected:
    """Swing the price bar over bar by multiple x the per-bar volatility for the duration (growing
    to it over `over` bars first)."""
    price = mark_price(run)
    bar_real = max(run.bar_real_ms, 1)
    amplitude = price * run.vol_bps / 10_000 * p["multiple"] * 2
    prices = swing_path(price, amplitude, max(2, round(p["duration"] / bar_real)), int(p.get("over") or 1))
    run.stack.admin("price/path", {"symbol": run.symbol, "prices": prices, "step_ms": bar_real})
    return Injected(now_ms())


def swing_path(price: float, amplitude: float, hold_bars: int, over: int) -> list[float]:
    """One price a bar, alternating above and below `price`: the swing grows in `over` equal steps
    to `amplitude` (over 1: at once), then holds for `hold_bars`."""
    return [price + (1 if i % 2 == 0 else -1) * amplitude * min(1.0, (i + 1) / over)
            for i in range(over - 1 + hold_bars)]


KINDS = (
    kind("drawdown", "market", "equity falls depth_pct from its peak", sim=drawdown, net=drawdown_net,
         unfolds=True, depth_pct=P("number", gt=0, doc="percent below the equity peak"),
         drill=DrillFacts("C2.drawdown", {"depth_pct": ("circuit_breakers.drawdown.threshold_pct",
                                                        "circuit_breakers.drawdown.warning_pct",
                                                        "circuit_breakers.drawdown.emergency_pct",
                                                        "circuit_breakers.drawdown.peak.threshold_pct")},
                          samples={"depth_pct": (1.0, 2.5, 4.0, 6.0)}, reserve_bars=5)),
    kind("spread_spike", "market", "the book's spread widens to bps", sim=spread_spike, net=spread_spike_net,
         bps=P("number", gt=0, doc="spread in basis points"), duration=DURATION,
         drill=DrillFacts("C2.volatility", {"bps": ("circuit_breakers.volatility.spread.max_spread_bps",
                                                    "circuit_breakers.volatility.spread.warning_bps")})),
    kind("atr_spike", "market", "ATR jumps to multiple x its baseline (with `over: N`, ramps there over N "
         "bars, then holds for duration)", sim=atr_spike, net=atr_spike_net,
         multiple=P("number", gt=0, doc="ATR over baseline"), duration=DURATION,
         over=P("int", required=False, ge=1, doc="bars the ATR takes to get there (default 1: at once)"),
         drill=DrillFacts("C2.volatility", {"multiple": ("circuit_breakers.volatility.atr.spike_threshold",)})),
    kind("price_gap", "market", "the price moves pct in one bar", sim=price_gap, net=price_gap_net,
         pct=P("number", nonzero=True, doc="signed move in percent"),
         drill=DrillFacts("C2.volatility", {"pct": ("circuit_breakers.volatility.price_move.max_move_pct",)},
                          samples={"pct": (3.0, -3.0, 6.0, -12.0)})),
)
