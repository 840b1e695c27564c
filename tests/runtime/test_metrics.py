"""Prometheus metrics: what a scrape says about a real Trader, and the bot process's own metrics port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from rt_support import BotProcess, bot_env, open_testnet
from sim_world import SYMBOL, TOKEN, World

from bot.core.market import BookTick
from bot.io.metrics import BotMetrics, exposition


def _samples(metrics: BotMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = exposition(metrics)
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_a_scrape_tells_equity_breakers_trading_state_orders_and_latencies(tmp_path: Path) -> None:
    world = World(tmp_path)
    metrics = BotMetrics()
    world.trader.bus.subscribe(metrics)
    metrics.bind(world.trader)
    before = _samples(metrics)
    assert _value(before, "gameday_healthy") == 0, "not started: not healthy"
    world.give_position(0.05)
    await world.trader.start()
    await world.bars(2)
    s = _samples(metrics)
    assert _value(s, "gameday_healthy") == 1
    assert _value(s, "gameday_equity") == world.trader.engine.equity
    assert _value(s, "gameday_unrealized_pnl") == world.trader.engine.equity - world.trader.engine.wallet != 0
    assert _value(s, "gameday_position_qty") == 0.05
    assert _value(s, "gameday_trading_state", state="active") == 1
    assert _value(s, "gameday_breaker_level", breaker="drawdown", check="intraday") == 0
    # a 5% fall of a 0.05 BTC position at 60k on 10k equity: past the 3% critical drawdown
    price = world.exchange_engine.mark_price(SYMBOL)
    world.exchange_engine.set_price(SYMBOL, price * 0.88)
    bid, ask = world.exchange_engine.book(SYMBOL)
    await world.trader.on_book(BookTick(world.clock.now_ms(), bid, ask))
    s = _samples(metrics)
    assert _value(s, "gameday_breaker_level", breaker="drawdown", check="intraday") >= 2
    assert _value(s, "gameday_breaker_tripped", breaker="drawdown", check="intraday") == 1
    assert _value(s, "gameday_trading_state", state="halted") == 1
    assert _value(s, "gameday_breaker_trips_total", breaker="drawdown", check="intraday",
                  level=world.of("breaker.tripped")[0].fields["level"]) >= 1
    assert await world.trader.engage_killswitch("immediate", "drill", "ops", TOKEN)
    await world.bars(1)
    s = _samples(metrics)
    assert _value(s, "gameday_killswitch_engaged", mode="immediate") == 1
    assert _value(s, "gameday_orders_total", event="placed") >= 1
    assert _value(s, "gameday_orders_total", event="filled") >= 1
    assert _value(s, "gameday_trades_total", result="loss") == 1
    assert _value(s, "gameday_realized_pnl") < 0
    assert _value(s, "gameday_order_placement_latency_seconds_count") >= 1
    assert _value(s, "gameday_inference_latency_seconds_count") >= 1
    assert _value(s, "gameday_position_qty") == 0


def test_alert_events_feed_the_alert_metrics() -> None:
    from bot.core.events import Event

    metrics = BotMetrics()
    metrics(Event("alert.sent", 1_767_571_200_000, {"channel": "slack", "severity": "critical", "delivery_ms": 120}))
    metrics(Event("alert.failed", 1_767_571_200_500, {"channel": "email", "severity": "critical"}))
    s = _samples(metrics)
    assert _value(s, "gameday_alerts_sent_total", channel="slack", severity="critical") == 1
    assert _value(s, "gameday_alerts_failed_total", channel="email", severity="critical") == 1
    assert _value(s, "gameday_alert_delivery_seconds_count", channel="slack") == 1
    assert _value(s, "gameday_alert_delivery_seconds_bucket", channel="slack", le="0.25") == 1
    assert _value(s, "gameday_alert_delivery_seconds_bucket", channel="slack", le="0.1") == 0
    assert _value(s, "gameday_alert_last_success_timestamp_seconds", channel="slack") == 1_767_571_200.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_bot_serves_metrics_on_its_own_port_to_its_own_token_only(tmp_path: Path) -> None:
    port = _free_port()
    async with open_testnet() as handle:
        events = tmp_path / "events.jsonl"
        args = ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--events", str(events),
                "--state", str(tmp_path / "bot.db"), "--audit", str(tmp_path / "audit.jsonl"), "--no-entries",
                "--metrics-port", str(port)]
        env = bot_env(GAMEDAY_METRICS_TOKEN="metrics-read-only-token")
        async with BotProcess(args, tmp_path, env) as bot, aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/metrics"
            body = ""
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url, headers={"Authorization": "Bearer metrics-read-only-token"}) as r:
                        if r.status == 200:
                            body = await r.text()
                            if "\ngameday_healthy 1.0" in body:  # started: exchange, store, feed ok
                                break
                await asyncio.sleep(0.05)
            async with http.get(url) as r:
                assert r.status == 401
            async with http.get(url, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with http.get(url, headers={"Authorization": "Bearer metrics-read-only-token",
                                              "Accept": "application/openmetrics-text; version=1.0.0"}) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await r.text()).rstrip().endswith("# EOF")
            code, _, err = await bot.terminate()
        assert code == 0, err
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"gameday_equity", "gameday_healthy", "gameday_trading_state", "gameday_alerts_sent"} <= names, names
    assert 'gameday_trading_state{state="active"} 1.0' in body, [x for x in body.splitlines() if "trading" in x]


async def test_metrics_port_without_a_token_is_a_usage_error(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        args = ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--metrics-port", "0",
                "--state", str(tmp_path / "bot.db"), "--audit", str(tmp_path / "audit.jsonl")]
        async with BotProcess(args, tmp_path, bot_env()) as bot:
            code, _, err = await bot.finish(timeout=30)
    assert code == 2 and "--metrics-port needs a token: set GAMEDAY_METRICS_TOKEN" in err
