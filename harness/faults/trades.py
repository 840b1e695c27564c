"""Trades the harness hands the bot (market family): loss_streak and winning_trade.

`count` times: take the bot's position - the strategy's own, else a small long the harness opens on
its account and the bot adopts at its next reconcile - then move the price through its stop and
entry (loss) or its take profit (win) - the bot judges both on every book tick - until the bot
closes the trade. Established when the count-th trade in a row has closed with the wanted sign
(position.closed pnl < 0 / > 0). A trade not adopted or not closed in time is an ERROR.

sim: whatever the bot's strategy is doing, it settles first (harness/faults/market.py
`when_settled`); a trade the bot closes by itself with the other sign starts the count again, so
`count` is trades in a row as the bot sees them. The price goes straight past the stop / take
profit the bot announced (or the one at the current ATR). net: the harness's trades only, on a flat
account (net scenarios run these kinds with `strategy: off`); a trade closed with the other sign is
an ERROR. The bot's ATR is not visible from outside it, so the price walks in small steps (far
under the one-bar price_move limit) toward the widest stop / take profit the policy allows,
stopping as soon as the bot has closed; then goes back to where the trade started.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harness.faults.contract import DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.faults.market import bot_plan, place_for_bot_net, when_settled
from harness.net.inject import mark_price, position_qty, real_equity
from harness.sim.constants import P_PHASE, SYMBOL

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


TRADE_FRACTION = 0.15  # sim: notional of each streak trade, as a fraction of equity
BEYOND = 0.003  # how far past the stop / take profit the price goes (fraction of entry)


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
            when_settled(world, step, fault, take)

    def take() -> None:
        if step.error is not None or step.established_ms is not None:
            return
        plan = bot_plan(world)
        if plan is None:
            world.place_for_bot("BUY", max(TRADE_FRACTION * world.real_equity() / world.price(), 0.002))
            when_settled(world, step, fault, take)
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


# ------------------------------------------------------------------------------------------ net

STREAK_FRACTION = 0.05  # net: notional of each trade, as a fraction of equity (far from the drawdown limit)
STEP_PCT = 0.25  # net: each price step of the walk, % of entry
STEP_PAUSE_S = 0.05  # between steps: the bot sees each step as a book tick and acts on it at once
CLOSE_TIMEOUT_S = 5.0  # after the walk's last step
FLAT_TIMEOUT_S = 5.0


def loss_streak_net(run: NetRun, p: dict[str, Any]) -> Injected:
    return _trades_net(run, p, win=False)


def winning_trade_net(run: NetRun, p: dict[str, Any]) -> Injected:
    return _trades_net(run, p, win=True)


def _trades_net(run: NetRun, p: dict[str, Any], *, win: bool) -> Injected:
    fault = "winning_trade" if win else "loss_streak"
    kind_ = "winning" if win else "losing"
    count = int(p["count"])
    if run.policy is None:
        raise FaultError(f"{fault}: no policy loaded, so the bot's stop / take profit are unknown")
    exits = run.policy.exits
    # The stop is entry x stop_distance_pct (ATR-based, clamped to [min_pct, max_pct]); the take
    # profit risk_multiple times that. The bot's ATR is not visible from here, so the walk may go to
    # the widest level the policy allows, and stops as soon as the bot has closed - but never as far
    # as the one-bar price_move limit (that would test the gap breaker, not the streak).
    reach = exits.stop_loss.max_pct * (exits.take_profit.risk_multiple if win else 1.0) + BEYOND
    check = run.policy.circuit_breakers.volatility.price_move
    if check.enabled:
        reach = min(reach, 0.9 * check.max_move_pct / 100)
    notes: list[str] = []
    closed_ms: int | None = None
    for n in range(1, count + 1):
        trade = f"{fault}: trade {n} of {count}"
        _wait_flat(run, trade)
        start = mark_price(run)
        since = run.follower.count()
        adopted = place_for_bot_net(run, "BUY", STREAK_FRACTION * real_equity(run) / start, trade)
        entry = float(adopted.fields.get("entry") or start)
        goal = entry * (1 + reach if win else 1 - reach)
        closed = _walk_until_closed(run, goal, entry * STEP_PCT / 100, since)
        if closed is None:
            raise FaultError(f"{trade}: the bot did not close the adopted position within "
                             f"{CLOSE_TIMEOUT_S:.0f} s of the price reaching {goal:.2f} ({reach * 100:.2f}% "
                             f"{'above' if win else 'below'} its entry {entry:.2f}: past the widest "
                             f"{'take profit' if win else 'stop'} the policy allows, or as far as the "
                             f"price may go under the price_move limit)")
        pnl = closed.fields.get("pnl")
        if not isinstance(pnl, int | float) or (pnl <= 0 if win else pnl >= 0):
            raise FaultError(f"{trade}: the bot closed it ({closed.fields.get('reason')}) with pnl "
                             f"{pnl!r}, not a {kind_} trade")
        closed_ms = closed.ts_ms
        notes.append(f"trade {n}: BUY at {entry:.2f}, closed by the bot ({closed.fields.get('reason')}) "
                     f"at {closed.fields.get('exit')}, pnl {pnl:.2f}")
        run.stack.admin("price", {"symbol": run.symbol, "price": start})  # back where the trade started
    return Injected(closed_ms, notes=notes)


def _wait_flat(run: NetRun, trade: str) -> None:
    deadline = time.monotonic() + FLAT_TIMEOUT_S
    while True:
        qty = position_qty(run)
        if abs(qty) < 1e-12:
            return
        if time.monotonic() >= deadline:
            raise FaultError(f"{trade}: the bot's account holds {qty} {run.symbol}; it did not go "
                             f"flat within {FLAT_TIMEOUT_S:.0f} s, so the next trade cannot start")
        time.sleep(0.05)


def _walk_until_closed(run: NetRun, goal: float, step: float, since: int) -> Any:
    """Step the price toward goal, one step per pause, until the bot reports position.closed."""

    def is_closed(e: Any) -> bool:
        return bool(e.name == "position.closed")

    price = mark_price(run)
    while True:
        closed = run.follower.wait_for(is_closed, since=since, timeout=STEP_PAUSE_S)
        if closed is not None:
            return closed
        if not run.bot.alive():
            raise FaultError(f"the bot exited while the price walked to {goal:.2f}")
        if price == goal:
            return run.follower.wait_for(is_closed, since=since, timeout=CLOSE_TIMEOUT_S)
        price = min(price + step, goal) if goal > price else max(price - step, goal)
        run.stack.admin("price", {"symbol": run.symbol, "price": price})


STREAK = "C2.consecutive_losses"
KINDS = (
    kind("loss_streak", "market", "count consecutive losing trades", sim=loss_streak, net=loss_streak_net,
         unfolds=True, count=P("int", ge=1, doc="losing trades in a row"),
         drill=DrillFacts(STREAK, {"count": ("circuit_breakers.consecutive_losses.max_consecutive_losses",)},
                          trades=True, reserve_bars=4)),
    kind("winning_trade", "market", "count winning trades in a row (a win resets a loss streak)",
         sim=winning_trade, net=winning_trade_net, unfolds=True,
         count=P("int", required=False, default=1, ge=1, doc="winning trades"),
         drill=DrillFacts(STREAK, trades=True, reserve_bars=4)),
)
