"""Alert-channel faults, on the run's in-memory receivers (harness/sim/alerts.py).

- alert_sink_outage: for `duration` the receiver of `channel` (or of every delivering channel:
  `all`) refuses connections; the bot's attempts fail at once.
- alert_sink_latency: for `duration` the receiver answers `ms` late; an answer later than the
  channel's timeout is a timeout for the bot.
The log channel (the bot's own stderr) has no receiver to break.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.faults.contract import FaultError

if TYPE_CHECKING:
    from harness.sim.alerts import MemoryReceiver
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld



def _receivers(world: SimWorld, step: ActiveStep) -> list[MemoryReceiver]:
    channel = step.params["channel"]
    receivers = world.alerts.receivers
    if channel == "all":
        return [r for name, r in receivers.items() if name != "log"]
    if channel not in receivers:
        raise FaultError(f"{step.step.fault}: the alert config has no channel {channel!r} "
                         f"(channels: {', '.join(sorted(receivers))})")
    return [receivers[channel]]


async def alert_sink_outage(world: SimWorld, step: ActiveStep) -> None:
    window = (world.now, world.now + int(step.params["duration"]))
    for receiver in _receivers(world, step):
        receiver.outages.append(window)


async def alert_sink_latency(world: SimWorld, step: ActiveStep) -> None:
    window = (world.now, world.now + int(step.params["duration"]), round(float(step.params["ms"])))
    for receiver in _receivers(world, step):
        receiver.slow.append(window)


SIM: dict[str, Any] = {"alert_sink_outage": alert_sink_outage, "alert_sink_latency": alert_sink_latency}
