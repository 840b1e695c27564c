"""Alert delivery latency of the bot's real router and sinks against the harness's real local
receivers (aiohttp for Slack / webhook / SMS, aiosmtpd for email), judged against the 5 s SLA.

    .venv/bin/python benchmarks/bench_alerts.py [--alerts N] [--broken]

For N alerts, the time from the condition (the event's timestamp) to the moment the receiver had
the alert, per channel: median, p99, max. Two runs: every receiver up (emergency alerts: Slack +
email + SMS), and Slack's receiver answering 503 (critical alerts: the bot retries Slack, then its
webhook fallback delivers; email is unaffected). It fails (exit 1) when a receiver did not get
every alert the bot reported as sent, when nothing was delivered, or when p99 exceeds the SLA.
`--broken` swaps the sinks for ones that confirm without sending: the benchmark must then fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import load_policy  # noqa: E402
from bot.core.clock import WallClock  # noqa: E402
from bot.core.events import Event, EventBus  # noqa: E402
from bot.io.alerts import Alert, AlertService, load_alert_config  # noqa: E402
from harness.net.receivers import AlertReceivers  # noqa: E402


class _Pretend:
    """A sink that says it delivered and sends nothing (for --broken)."""

    async def send(self, alert: Alert) -> None:
        return None

    async def close(self) -> None:
        return None


async def _run(rx: AlertReceivers, count: int, broken: bool, slack_down: bool) -> tuple[list[Event], dict[str, int]]:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    clock = WallClock()
    service = AlertService.build(load_alert_config(), bus, clock, env=rx.bot_env(), heartbeat_ms=3_600_000)
    if broken:
        service.dispatcher.sinks = {name: _Pretend() for name in service.dispatcher.sinks}
    assert rx.http is not None
    rx.http.failing = {"slack": 503} if slack_down else {}
    service.start()
    raised: dict[str, int] = {}
    try:
        for i in range(count):
            now = clock.now_ms()
            bus.emit("bot.alert", now, severity="critical" if slack_down else "emergency", key=f"bench.{i}",
                     title=f"benchmark alert {i}")
            await asyncio.sleep(0.02)
        await service.dispatcher.drain(30)
    finally:
        await service.stop()
        rx.http.failing = {}
    for e in events:
        if e.name == "alert.sent":
            raised.setdefault(str(e.fields["id"]), e.ts_ms - int(e.fields["delivery_ms"]))
    return events, raised


def _figures(values: list[float]) -> str:
    if not values:
        return "no deliveries"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"n={len(values):4d}  median {statistics.median(values):7.1f} ms  p99 {p99:7.1f} ms  "
            f"max {ordered[-1]:7.1f} ms")


def _judge(name: str, rx: AlertReceivers, since: int, events: list[Event], raised: dict[str, int],
           sla_ms: float) -> list[str]:
    problems: list[str] = []
    receipts = rx.receipts()[since:]
    got = {(r.channel, r.alert_id): r for r in receipts}
    print(f"-- {name}")
    sent = [e for e in events if e.name == "alert.sent" and e.fields["channel"] != "log"]
    if not sent:
        problems.append(f"{name}: nothing was delivered")
    by_channel: dict[str, list[float]] = {}
    missing = []
    for e in sent:
        key = (str(e.fields["channel"]), str(e.fields["id"]))
        receipt = got.get(key)
        if receipt is None:
            missing.append(key)
            continue
        by_channel.setdefault(key[0], []).append(receipt.received_ms - raised[key[1]])
    for channel, values in sorted(by_channel.items()):
        print(f"   {channel:<8} condition -> receiver  {_figures(values)}")
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        if p99 > sla_ms:
            problems.append(f"{name}: {channel} p99 {p99:.0f} ms > SLA {sla_ms:.0f} ms")
    failed = [e for e in events if e.name == "alert.failed"]
    if failed:
        print(f"   alert.failed: {len(failed)} (channels {sorted({str(e.fields['channel']) for e in failed})})")
    if missing:
        problems.append(f"{name}: {len(missing)} alert.sent never reached the receiver, e.g. {missing[:3]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=100, help="alerts of each kind per run (default 100)")
    parser.add_argument("--broken", action="store_true", help="sinks that confirm without sending: must fail")
    args = parser.parse_args()
    sla_ms = load_policy("futures").policy.alerts.delivery_seconds * 1000
    problems: list[str] = []
    with AlertReceivers() as rx:
        for name, slack_down in (("all receivers up (emergency alerts: slack + email + sms)", False),
                                 ("slack receiver answers 503 (retry, then the webhook fallback)", True)):
            since = len(rx.receipts())
            events, raised = asyncio.run(_run(rx, args.alerts, args.broken, slack_down))
            problems += _judge(name, rx, since, events, raised, sla_ms)
    for problem in problems:
        print(f"FAIL {problem}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
