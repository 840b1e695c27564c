"""Exchange faults, through the exchange engine's own fault controls or the bot's transport.

- exchange_outage: for `duration` REST requests are not answered (scope rest|all: the client
  gets a 503 / connection error) and the WebSocket is silent (scope ws|all).
- http_errors: the next `count` REST requests (any path) answer `status` with `code` and
  Retry-After.
- order_reject: the next `count` new orders are rejected with `code`.
- unknown_outcome: the next `count` orders reach the book but their reply is lost (503 -1007).
- clock_skew: the bot's clock is `offset` ahead of the exchange's (negative: behind); requests
  outside recvWindow are rejected with -1021 until the bot resyncs.
- stale_book: the market-data feed stops for `duration` (no book, no kline updates).
- malformed_fill: the next `count` order reports that carry a fill give a non-finite price.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


def _unused(world: SimWorld, step: ActiveStep, what: str, left: int) -> None:
    if left:
        world.notes.append(f"{step.id}: {left} of {step.params.get('count')} {what} were never used "
                           "(the bot sent fewer requests than the fault was armed for)")


async def exchange_outage(world: SimWorld, step: ActiveStep) -> None:
    duration, scope = int(step.params["duration"]), step.params["scope"]
    start, end = world.now, world.now + duration
    if scope in ("rest", "all"):
        world.net.rest_down.append((start, end))
    if scope in ("ws", "all"):
        world.feed.stall(start, end)


async def http_errors(world: SimWorld, step: ActiveStep) -> None:
    p = step.params
    retry = p.get("retry_after")
    world.xe.fail_next("*", int(p["count"]), int(p["status"]), p.get("code"),
                       retry_after_s=None if retry is None else retry / 1000)

    def cleanup() -> None:
        left = sum(f["remaining"] for f in world.xe.faults()["fail_next"] if f["path"] == "*")
        _unused(world, step, f"HTTP {p['status']} replies", left)

    step.on_cleanup(cleanup)


async def order_reject(world: SimWorld, step: ActiveStep) -> None:
    world.xe.reject_next_orders(int(step.params["count"]), int(step.params["code"]))
    step.on_cleanup(lambda: _unused(world, step, "rejections", world.xe.faults()["reject_next"]))


async def unknown_outcome(world: SimWorld, step: ActiveStep) -> None:
    world.xe.unknown_outcome_next(int(step.params["count"]))
    step.on_cleanup(lambda: _unused(world, step, "lost replies", world.xe.faults()["unknown_outcome_next"]))


async def clock_skew(world: SimWorld, step: ActiveStep) -> None:
    # offset = bot clock - exchange clock: the exchange's clock runs -offset ahead of true time.
    world.xe.set_clock_skew(-int(step.params["offset"]))


async def stale_book(world: SimWorld, step: ActiveStep) -> None:
    world.feed.stall(world.now, world.now + int(step.params["duration"]))


async def malformed_fill(world: SimWorld, step: ActiveStep) -> None:
    world.net.malformed_fills += int(step.params["count"])
    step.on_cleanup(lambda: _unused(world, step, "malformed fill reports", world.net.malformed_fills))


SIM: dict[str, Any] = {
    "exchange_outage": exchange_outage, "http_errors": http_errors, "order_reject": order_reject,
    "unknown_outcome": unknown_outcome, "clock_skew": clock_skew, "stale_book": stale_book,
    "malformed_fill": malformed_fill,
}

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld

