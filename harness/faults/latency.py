"""Latency faults: market data late, a slow model, slow order replies.

- ws_lag: every market-data message published during `duration` reaches the bot `lag` late; its
  event time E stays the true one, so the bot can measure the lag. sim: the feed delivers late;
  net: a Toxiproxy `latency` toxic (downstream) on the WebSocket proxy, removed after duration.
- ws_disconnect: the WebSocket connection drops for `duration` (net: the proxy disabled, open
  sockets closed, new ones refused). Sim mode has no connection to drop.
- inference_latency: during `duration` each call of the bot's model (its strategy update) takes
  `ms` (sim: virtual time). Net mode has no wire to slow: the model runs inside the bot process.
- order_latency: from injection on, order replies arrive `placement_ms` after the request and a
  market order's fill becomes visible `fill_ms` after it was sent. net: a Toxiproxy `latency`
  toxic upstream on the REST proxy (every request pays placement_ms); a fill delay apart from the
  placement delay cannot be made on the wire, so fill_ms > 0 is an ERROR there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.faults.contract import DURATION, DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.inject import disable, now_ms

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


async def ws_lag(world: SimWorld, step: ActiveStep) -> None:
    lag, duration = int(step.params["lag"]), int(step.params["duration"])
    world.feed.lag(world.now, world.now + duration, lag)


def ws_lag_net(run: NetRun, p: dict[str, Any]) -> Injected:
    toxi, proxy = run.stack.toxi, run.stack.proxy_name("ws")
    assert toxi is not None
    name = toxi.add_latency(proxy, int(p["lag"]), 0, "downstream", name="gameday_ws_lag")
    return Injected(now_ms(), lambda: toxi.remove_toxic(proxy, name), p["duration"])


def ws_disconnect_net(run: NetRun, p: dict[str, Any]) -> Injected:
    return Injected(now_ms(), disable(run, "ws"), p["duration"])


async def inference_latency(world: SimWorld, step: ActiveStep) -> None:
    ms, duration = float(step.params["ms"]), int(step.params["duration"])
    window = (world.now, world.now + duration, ms)
    world.inference.append(window)
    step.on_cleanup(lambda: world.inference.remove(window) if window in world.inference else None)


async def order_latency(world: SimWorld, step: ActiveStep) -> None:
    world.net.placement_ms = float(step.params["placement_ms"] or 0.0)
    world.net.fill_ms = float(step.params["fill_ms"] or 0.0)

    def cleanup() -> None:
        world.net.placement_ms = world.net.fill_ms = 0.0

    step.on_cleanup(cleanup)


def order_latency_net(run: NetRun, p: dict[str, Any]) -> Injected:
    if p["fill_ms"]:
        raise FaultError("order_latency fill_ms: the testnet fills market orders in the request that places "
                         "them, so a fill delay apart from the placement delay cannot be made on the wire; "
                         "use placement_ms (REST latency) in net mode")
    if not p["placement_ms"]:
        raise FaultError("order_latency with placement_ms 0 injects nothing")
    toxi, proxy = run.stack.toxi, run.stack.proxy_name("rest")
    assert toxi is not None
    # Upstream: each request reaches the exchange placement_ms late (a reply is one chunk later).
    name = toxi.add_latency(proxy, round(p["placement_ms"]), 0, "upstream", name="gameday_rest_latency")
    return Injected(now_ms(), lambda: toxi.remove_toxic(proxy, name))


LATENCY = "C2.latency"
KINDS = (
    kind("ws_lag", "latency", "market data arrives lag late", sim=ws_lag, net=ws_lag_net,
         lag=P("duration", gt=0, doc="delay of each message"), duration=DURATION,
         drill=DrillFacts(LATENCY, {"lag": ("circuit_breakers.latency.websocket.max_lag_seconds",)},
                          blinds_bars=2)),
    kind("ws_disconnect", "latency", "the WebSocket connection drops", sim=None, net=ws_disconnect_net,
         duration=DURATION, not_in={"sim": "the in-process feed has no connection to drop (use stale_book)"}),
    kind("inference_latency", "latency", "the strategy's inference takes ms", sim=inference_latency, net=None,
         ms=P("ms", gt=0, doc="inference time"), duration=DURATION,
         not_in={"net": "inference runs inside the bot process; there is no wire to slow (run it in sim mode)"},
         drill=DrillFacts(LATENCY, {"ms": ("circuit_breakers.latency.inference.p95_ms",
                                          "circuit_breakers.latency.inference.p99_ms")})),
    kind("order_latency", "latency", "orders are acknowledged / filled late", sim=order_latency,
         net=order_latency_net,
         placement_ms=P("ms", required=False, default=0.0, ge=0, doc="placement delay"),
         fill_ms=P("ms", required=False, default=0.0, ge=0, doc="fill delay (sim only: net ERRORs on > 0)"),
         drill=DrillFacts(LATENCY, {"placement_ms": ("circuit_breakers.latency.order_placement.max_ms",),
                                    "fill_ms": ("circuit_breakers.latency.order_fill.max_ms",)},
                          blinds_bars=None)),
)
