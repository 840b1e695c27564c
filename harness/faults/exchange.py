"""Exchange faults, through the exchange engine's own fault controls (sim: in-process; net: the
testnet's admin API, the same engine) or the bot's transport.

- exchange_outage: for `duration` REST requests are not answered (scope rest|all: the client
  gets a 503 / connection error) and the WebSocket is silent (scope ws|all). net: the REST and/or
  WebSocket proxy disabled.
- http_errors: the next `count` REST requests (any path) answer `status` with `code` and a
  Retry-After header. HTTP carries Retry-After in whole seconds (RFC 9110 delay-seconds), so in
  both modes the header says `retry_after` rounded UP to the second (never sooner than asked),
  as the engine's own rate limiter does.
- order_reject: the next `count` new orders are rejected with `code`.
- unknown_outcome: the next `count` orders reach the book but their reply is lost (503 -1007).
- clock_skew: the bot's clock is `offset` ahead of the exchange's (negative: behind); requests
  outside recvWindow are rejected with -1021 until the bot resyncs.
- stale_book: the market-data feed stops for `duration` (no book, no kline updates).
- malformed_fill: the next `count` order reports that carry a fill give a non-finite price (sim:
  the bot's transport; the testnet server never sends a non-finite number).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.faults.contract import DURATION, DrillFacts, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.inject import disable, now_ms

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


def retry_after_s(retry_after_ms: float | None) -> int | None:
    """The Retry-After header's whole seconds for the param (rounded up), or None for no header."""
    return None if retry_after_ms is None else math.ceil(retry_after_ms / 1000)


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


def exchange_outage_net(run: NetRun, p: dict[str, Any]) -> Injected:
    proxies = {"rest": ("rest",), "ws": ("ws",), "all": ("rest", "ws")}[p["scope"]]
    return Injected(now_ms(), disable(run, *proxies), p["duration"])


async def http_errors(world: SimWorld, step: ActiveStep) -> None:
    p = step.params
    world.xe.fail_next("*", int(p["count"]), int(p["status"]), p.get("code"),
                       retry_after_s=retry_after_s(p.get("retry_after")))

    def cleanup() -> None:
        left = sum(f["remaining"] for f in world.xe.faults()["fail_next"] if f["path"] == "*")
        _unused(world, step, f"HTTP {p['status']} replies", left)

    step.on_cleanup(cleanup)


def http_errors_net(run: NetRun, p: dict[str, Any]) -> Injected:
    body: dict[str, Any] = {"path": "*", "count": p["count"], "status": p["status"]}
    if p["code"] is not None:
        body["code"] = p["code"]
    retry = retry_after_s(p["retry_after"])
    if retry is not None:
        body["retry_after_s"] = retry
    run.stack.admin("fail", body)
    return Injected(now_ms())


async def order_reject(world: SimWorld, step: ActiveStep) -> None:
    world.xe.reject_next_orders(int(step.params["count"]), int(step.params["code"]))
    step.on_cleanup(lambda: _unused(world, step, "rejections", world.xe.faults()["reject_next"]))


def order_reject_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("reject", {"count": p["count"], "code": p["code"]})
    return Injected(now_ms())


async def unknown_outcome(world: SimWorld, step: ActiveStep) -> None:
    world.xe.unknown_outcome_next(int(step.params["count"]))
    step.on_cleanup(lambda: _unused(world, step, "lost replies", world.xe.faults()["unknown_outcome_next"]))


def unknown_outcome_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("unknown_outcome", {"count": p["count"]})
    return Injected(now_ms())


# offset = bot clock - exchange clock: the exchange's clock runs -offset ahead of true time.
async def clock_skew(world: SimWorld, step: ActiveStep) -> None:
    world.xe.set_clock_skew(-int(step.params["offset"]))


def clock_skew_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("clock_skew", {"offset_ms": -int(p["offset"])})
    return Injected(now_ms(), lambda: run.stack.admin("clock_skew", {"offset_ms": 0}))


async def stale_book(world: SimWorld, step: ActiveStep) -> None:
    world.feed.stall(world.now, world.now + int(step.params["duration"]))


def stale_book_net(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("feed/stall", {"duration_ms": p["duration"]})
    return Injected(now_ms(), lambda: run.stack.admin("feed/reset", {}), p["duration"])


async def malformed_fill(world: SimWorld, step: ActiveStep) -> None:
    world.net.malformed_fills += int(step.params["count"])
    step.on_cleanup(lambda: _unused(world, step, "malformed fill reports", world.net.malformed_fills))


COUNT = P("int", required=False, default=1, ge=1)
KINDS = (
    kind("exchange_outage", "exchange", "the exchange stops answering", sim=exchange_outage,
         net=exchange_outage_net, duration=DURATION,
         scope=P("enum", required=False, default="all", choices=("rest", "ws", "all")),
         drill=DrillFacts(thresholds={"duration": ("exchange_outage.major_after_minutes",)}, blinds_bars=2)),
    kind("http_errors", "exchange", "REST calls answer with an HTTP error", sim=http_errors, net=http_errors_net,
         status=P("int", ge=400, le=599, doc="HTTP status"),
         code=P("int", required=False, doc="exchange error code in the body"),
         count=P("int", required=False, default=1, ge=1, doc="how many calls fail"),
         retry_after=P("duration", required=False, ge=0, doc="Retry-After header (whole seconds, rounded up)"),
         drill=DrillFacts(samples={"status": (429, 503, 418, 500), "code": (-1003, -1001),
                                   "retry_after": ("5s", "20s", "1m")}, blinds_bars=2)),
    kind("order_reject", "exchange", "new orders are rejected with code", sim=order_reject, net=order_reject_net,
         code=P("int", doc="exchange error code"), count=COUNT,
         drill=DrillFacts(samples={"code": (-2019, -2021, -2010)}, blinds_bars=2)),
    kind("unknown_outcome", "exchange", "order requests time out after reaching the book", sim=unknown_outcome,
         net=unknown_outcome_net, count=COUNT, drill=DrillFacts(blinds_bars=2)),
    kind("clock_skew", "exchange", "the bot's clock is off from the exchange's", sim=clock_skew, net=clock_skew_net,
         offset=P("offset", nonzero=True, doc="bot clock minus exchange clock"),
         drill=DrillFacts(samples={"offset": ("3s", "-3s", "30s", "-1s")}, blinds_bars=None)),
    kind("stale_book", "exchange", "the order book stops updating", sim=stale_book, net=stale_book_net,
         duration=DURATION,
         drill=DrillFacts("C2.latency", {"duration": ("circuit_breakers.latency.websocket.max_lag_seconds",)},
                          blinds_bars=2)),
    kind("malformed_fill", "exchange", "the exchange reports fills with a non-finite price", sim=malformed_fill,
         net=None, count=P("int", required=False, default=1, ge=1, doc="how many fill reports"),
         not_in={"net": "the testnet server never sends a non-finite number (a JSON reply cannot carry NaN)"},
         drill=DrillFacts(blinds_bars=2)),
)
