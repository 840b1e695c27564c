"""The fault catalog's implementations, one module per family.

Sim implementations are `async def fault(world, step)`: `world` is the run's
`harness.sim.world.SimWorld` (exchange engine, feed, transport, bot, agenda), `step` its
`harness.sim.steps.ActiveStep` (resolved params; `establish(ts)` for a fault that unfolds,
`fail(why)` / raising `FaultError` when it cannot be injected, `on_cleanup(fn)` for undo work that
always runs). Every fault changes what the bot sees - prices, spreads, fills, errors, feed timing,
credentials - and never touches a breaker. Which kinds exist, their params and modes is the one
table `harness.scenario.FAULTS`; `SIM_FAULTS` must cover every kind whose modes include sim.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from harness.faults import alerts, credentials, exchange, latency, market, operator, process
from harness.faults.contract import FaultError

__all__ = ["SIM_FAULTS", "FaultError", "SimFault"]

SimFault = Callable[[Any, Any], Awaitable[None]]

SIM_FAULTS: dict[str, SimFault] = {
    **market.SIM, **latency.SIM, **exchange.SIM, **credentials.SIM, **process.SIM, **operator.SIM,
    **alerts.SIM,
}
