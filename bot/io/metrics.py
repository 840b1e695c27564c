"""Prometheus metrics of a running bot (prometheus_client), and a loopback server for them.

`BotMetrics` has its own CollectorRegistry. It is fed two ways:
- the event bus (it is a subscriber): orders placed / filled / rejected / unknown, trades won
  and lost, realised P&L, breaker trips, alerts sent / failed with their delivery time and the
  last confirmed delivery per channel, exchange and feed status;
- the Trader's latency hook (`observe_latency`): inference, order placement and fill latency
  histograms;
and reads the rest when it is scraped (`bind(trader)`, `bind_alerts(router)`): equity, wallet,
unrealised P&L, position, each breaker's level and whether it acts, the trading state, the kill
switch, feed lag, state store, alert queue depth / suppressed / dropped, and overall health.

`exposition(metrics, accept)` returns the text a scraper gets (Prometheus text, or OpenMetrics
when the Accept header asks for it): a control API can mount it as its own /metrics route.
`MetricsServer` serves it on 127.0.0.1 only, behind its own read-only bearer token, on a port
separate from the control API (`python -m bot run --metrics-port`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bot.core.clock import WallClock
from bot.core.events import Event

if TYPE_CHECKING:
    from bot.io.alerts import AlertRouter
    from bot.runtime import Trader

LEVELS = {"ok": 0, "warning": 1, "critical": 2, "emergency": 3}
TRADING_STATES = ("active", "reduced", "paused", "halted")
KILL_MODES = ("immediate", "graceful", "pause")
ORDER_EVENTS = {"order.placed": "placed", "order.filled": "filled", "order.rejected": "rejected",
                "order.unknown": "unknown"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _ScrapeTime(Collector):
    """What is read from the bot when scraped (families are always yielded, so the names are known)."""

    def __init__(self, metrics: BotMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        trader = m.trader
        engine = getattr(trader, "engine", None) if trader is not None else None
        equity = GaugeMetricFamily("gameday_equity", "Real equity: wallet + unrealised P&L (quote currency)")
        wallet = GaugeMetricFamily("gameday_wallet", "Wallet balance (quote currency)")
        unreal = GaugeMetricFamily("gameday_unrealized_pnl", "Unrealised P&L of the open position (quote currency)")
        peak = GaugeMetricFamily("gameday_peak_equity", "Highest equity seen, the drawdown reference (quote)")
        position = GaugeMetricFamily("gameday_position_qty", "Open position (signed base quantity)")
        level = GaugeMetricFamily("gameday_breaker_level", "Breaker level: 0 ok, 1 warning, 2 critical, 3 emergency",
                                  labels=["breaker", "check"])
        acting = GaugeMetricFamily("gameday_breaker_tripped", "1 while the breaker acts (pause, halt, backoff...)",
                                   labels=["breaker", "check"])
        state = GaugeMetricFamily("gameday_trading_state", "1 for the current trading state",
                                  labels=["state"])
        size = GaugeMetricFamily("gameday_size_factor", "Position-size multiplier the breakers allow")
        kill = GaugeMetricFamily("gameday_killswitch_engaged", "1 while the kill switch is engaged",
                                 labels=["mode"])
        lag = GaugeMetricFamily("gameday_feed_lag_seconds", "Market-data lag of the last message")
        store = GaugeMetricFamily("gameday_state_store_up", "1 while the state store answers")
        healthy = GaugeMetricFamily("gameday_healthy",
                                    "1 when the bot runs with exchange, state store and feed all working")
        if engine is not None:
            status = engine.status()
            unrealised = status.equity - engine.wallet
            equity.add_metric([], status.equity)
            wallet.add_metric([], engine.wallet)
            unreal.add_metric([], unrealised)
            peak.add_metric([], status.peak_equity)
            position.add_metric([], status.position_qty)
            store_up = 1.0
            for v in engine.board.verdicts:
                level.add_metric([v.breaker, v.check], LEVELS.get(v.level, 0))
                acting.add_metric([v.breaker, v.check], 1.0 if v.action is not None else 0.0)
                if v.breaker == "state_store" and v.action is not None:
                    store_up = 0.0
            for name in TRADING_STATES:
                state.add_metric([name], 1.0 if status.trading == name else 0.0)
            size.add_metric([], status.board.size_factor)
            ks = status.killswitch
            for mode in KILL_MODES:
                kill.add_metric([mode], 1.0 if ks.engaged and ks.mode == mode else 0.0)
            lag.add_metric([], trader.feed.lag_ms / 1000)  # type: ignore[union-attr]
            store.add_metric([], store_up)
            ok = store_up and m.exchange_up and not trader.feed.stale  # type: ignore[union-attr]
            healthy.add_metric([], 1.0 if ok else 0.0)
        else:
            healthy.add_metric([], 0.0)
        yield from (equity, wallet, unreal, peak, position, level, acting, state, size, kill, lag, store, healthy)
        queue = GaugeMetricFamily("gameday_alert_queue_depth", "Alert deliveries waiting or in flight")
        suppressed = CounterMetricFamily("gameday_alerts_suppressed", "Alerts held back by dedup or the rate limit")
        dropped = CounterMetricFamily("gameday_alerts_dropped", "Alert deliveries dropped because the queue was full")
        router = m.router
        if router is not None:
            queue.add_metric([], router.pending())
            suppressed.add_metric([], router.stats.suppressed)
            dropped.add_metric([], router.stats.dropped)
        yield from (queue, suppressed, dropped)


@dataclass
class _Families:
    orders: Counter
    trades: Counter
    realized: Gauge
    trips: Counter
    alerts_sent: Counter
    alerts_failed: Counter
    delivery: Histogram
    last_success: Gauge
    exchange_up: Gauge
    feed_stale: Gauge
    latency: dict[str, Histogram]


class BotMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.trader: Trader | None = None
        self.router: AlertRouter | None = None
        self.exchange_up = True
        self.f = _Families(
            orders=Counter("gameday_orders", "Orders by outcome", ["event"], registry=r),
            trades=Counter("gameday_trades", "Closed trades by result", ["result"], registry=r),
            realized=Gauge("gameday_realized_pnl", "Realised P&L of closed trades since start (quote)", registry=r),
            trips=Counter("gameday_breaker_trips", "Breaker trips", ["breaker", "check", "level"], registry=r),
            alerts_sent=Counter("gameday_alerts_sent", "Alerts whose delivery the channel confirmed",
                                ["channel", "severity"], registry=r),
            alerts_failed=Counter("gameday_alerts_failed", "Alert deliveries that failed on a channel",
                                  ["channel", "severity"], registry=r),
            delivery=Histogram("gameday_alert_delivery_seconds", "From the condition to the confirmed delivery",
                               ["channel"], buckets=DELIVERY_BUCKETS, registry=r),
            last_success=Gauge("gameday_alert_last_success_timestamp_seconds",
                               "When a channel last confirmed an alert (unix time)", ["channel"], registry=r),
            exchange_up=Gauge("gameday_exchange_up", "1 while the exchange answers", registry=r),
            feed_stale=Gauge("gameday_feed_stale", "1 while market data is older than the lag limit", registry=r),
            latency={kind: Histogram(f"gameday_{name}_latency_seconds", f"{text} latency", buckets=LATENCY_BUCKETS,
                                     registry=r)
                     for kind, name, text in (("inference", "inference", "Model inference"),
                                              ("placement", "order_placement", "Order placement (request to ack)"),
                                              ("fill", "order_fill", "Market order fill (request to fill)"))},
        )
        self.f.exchange_up.set(1)
        self.f.feed_stale.set(0)
        for event in ORDER_EVENTS.values():
            self.f.orders.labels(event)
        for result in ("win", "loss"):
            self.f.trades.labels(result)
        r.register(_ScrapeTime(self))

    def bind(self, trader: Trader) -> None:
        """Read equity, breakers, trading and kill-switch state from this Trader when scraped, and
        take its latency measurements."""
        self.trader = trader
        trader.observe_latency = self.observe_latency

    def bind_alerts(self, router: AlertRouter) -> None:
        self.router = router
        for channel in router.available:
            self.f.alerts_sent.labels(channel, "info")
            self.f.alerts_failed.labels(channel, "info")

    def observe_latency(self, kind: str, ms: float) -> None:
        histogram = self.f.latency.get(kind)
        if histogram is not None:
            histogram.observe(max(0.0, ms) / 1000)

    def __call__(self, event: Event) -> None:
        f, fields = self.f, event.fields
        name = event.name
        if name in ORDER_EVENTS:
            f.orders.labels(ORDER_EVENTS[name]).inc()
        elif name == "position.closed":
            pnl = fields.get("pnl")
            if isinstance(pnl, int | float):
                f.trades.labels("win" if pnl > 0 else "loss").inc()
                f.realized.inc(pnl)
        elif name == "breaker.tripped":
            f.trips.labels(str(fields.get("breaker")), str(fields.get("check")), str(fields.get("level"))).inc()
        elif name == "alert.sent":
            channel, severity = str(fields.get("channel")), str(fields.get("severity"))
            f.alerts_sent.labels(channel, severity).inc()
            delivery = fields.get("delivery_ms")
            if isinstance(delivery, int | float):
                f.delivery.labels(channel).observe(delivery / 1000)
            f.last_success.labels(channel).set(event.ts_ms / 1000)
        elif name == "alert.failed":
            f.alerts_failed.labels(str(fields.get("channel")), str(fields.get("severity"))).inc()
        elif name in ("exchange.down", "exchange.up"):
            self.exchange_up = name == "exchange.up"
            f.exchange_up.set(1 if self.exchange_up else 0)
        elif name in ("feed.stale", "feed.recovered"):
            f.feed_stale.set(1 if name == "feed.stale" else 0)


def exported_names(metrics: BotMetrics) -> set[str]:
    """Every series name a scrape of these metrics can hold (counter `_total`, histogram
    `_bucket` / `_sum` / `_count`): what dashboards and alert rules may refer to."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def exposition(metrics: BotMetrics, accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: Prometheus text, or OpenMetrics if `accept` asks for it."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(metrics.registry), content_type


@dataclass
class MetricsServer:
    """GET /metrics on a loopback port, for holders of the read-only metrics token only."""

    metrics: BotMetrics
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    now_ms: Callable[[], int] = field(default=WallClock().now_ms)
    scraped_ms: int | None = None  # the last authorised scrape (the monitoring_down red flag)
    _runner: web.AppRunner | None = None

    async def start(self) -> int:
        if self.host not in LOOPBACK:
            raise ValueError(f"metrics bind loopback only (got {self.host!r}); scrape through a TLS proxy")
        if not self.token:
            raise ValueError("the metrics server needs a token")
        app = web.Application()
        app.add_routes([web.get("/metrics", self._metrics)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return web.json_response({"error": "missing or bad metrics token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        self.scraped_ms = self.now_ms()
        body, content_type = exposition(self.metrics, request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response
