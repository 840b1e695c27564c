"""Latency faults: market data late, a slow model, slow order replies (all in virtual time).

- ws_lag: every market-data message published during `duration` reaches the bot `lag` late;
  its event time E stays the true one, so the bot can measure the lag.
- inference_latency: during `duration` each call of the bot's model (its strategy update) takes
  `ms` of virtual time.
- order_latency: from injection on, order replies arrive `placement_ms` after the request and a
  market order's fill becomes visible `fill_ms` after it was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


async def ws_lag(world: SimWorld, step: ActiveStep) -> None:
    lag, duration = int(step.params["lag"]), int(step.params["duration"])
    world.feed.lag(world.now, world.now + duration, lag)


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


SIM: dict[str, Any] = {"ws_lag": ws_lag, "inference_latency": inference_latency, "order_latency": order_latency}

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld

