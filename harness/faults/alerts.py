"""Alert-channel faults, on the receivers of the bot's alert channels: in sim mode the run's
in-memory receivers on virtual time (harness/sim/alerts.py), in net mode the Toxiproxy proxy in
front of each real receiver (harness/net/receivers.py).

- alert_sink_outage: for `duration` the receiver of `channel` (or of every delivering channel:
  `all`) refuses connections; the bot's attempts fail at once (net: the proxy disabled).
- alert_sink_latency: for `duration` the receiver answers `ms` late; an answer later than the
  channel's timeout is a timeout for the bot (net: a `latency` toxic, downstream).
The log channel (the bot's own stderr) has no receiver to break.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.faults.contract import DURATION, DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.inject import disable, now_ms

if TYPE_CHECKING:
    from harness.net.runner import NetRun
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


ALERT_CHANNELS = ("slack", "webhook", "email", "sms")  # config/alerts.yaml's delivering channels


def _proxies(p: dict[str, Any]) -> tuple[str, ...]:
    """The run's proxy names (one per delivering channel) in front of the channel's receiver."""
    return ALERT_CHANNELS if p["channel"] == "all" else (p["channel"],)


def alert_sink_outage_net(run: NetRun, p: dict[str, Any]) -> Injected:
    return Injected(now_ms(), disable(run, *_proxies(p)), p["duration"])


def alert_sink_latency_net(run: NetRun, p: dict[str, Any]) -> Injected:
    toxi = run.stack.toxi
    assert toxi is not None
    added = []
    for short in _proxies(p):
        proxy = run.stack.proxy_name(short)
        added.append((proxy, toxi.add_latency(proxy, round(p["ms"]), 0, "downstream", name="gameday_alert_latency")))

    def revert() -> None:
        for proxy, name in added:
            toxi.remove_toxic(proxy, name)

    return Injected(now_ms(), revert, p["duration"])


CHANNEL = P("enum", required=False, default="all", choices=(*ALERT_CHANNELS, "all"))
KINDS = (
    kind("alert_sink_outage", "alerts", "an alert channel's receiver stops answering", sim=alert_sink_outage,
         net=alert_sink_outage_net, duration=DURATION, channel=CHANNEL, drill=DrillFacts("PETS.monitoring")),
    kind("alert_sink_latency", "alerts", "an alert channel's receiver answers ms late", sim=alert_sink_latency,
         net=alert_sink_latency_net, ms=P("ms", gt=0, doc="added to each answer"), duration=DURATION,
         channel=CHANNEL, drill=DrillFacts("PETS.monitoring")),
)
