"""The live driver: the real bot process (`python -m bot run`).

Wall clock; policy from a profile; `CcxtExchange` on the real venue or a testnet; the state
store (`--state PATH|redis://…`); the audit log; the kill-switch marker file; a `Trader`.
It runs the market feed (ccxt.pro) and a timer loop (`on_timer` at `next_deadline_ms()`, at
least every 200 ms), serialising every call into the Trader with one lock. Every bot event is
written as one JSON line to `--events FILE` (or stdout), flushed per line, so another process
can follow it. SIGTERM / SIGINT stop it cleanly (state persisted, connections closed).

Startup: the audit log is opened (a torn last line is cut and `audit.repaired` announced) and its
whole chain verified; a chain broken inside makes the bot refuse (`startup.refused`, exit code 3,
one line on stderr naming the line) - the kill switch CLI still acts. The key's restrictions are
checked next; a key that can withdraw or transfer, or has no IP restriction, refuses the same way,
and so does a key the exchange refuses, or an unusable reply. State that was lost (bot.runtime)
brings the bot up halted. Open orders and positions are reconciled (a position opened while the
bot was down is adopted). Audit records that could not be written by the end are printed on
stderr, one JSON object per line, so none is lost silently.

While running, the marker file is watched: a kill switch engaged by the standalone CLI
(`python -m bot killswitch`) takes effect at once; a clear by the CLI (marker removed, store
entry cleared) is honoured too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from bot.checks import RedFlagChecks, red_flag_checks
from bot.config import RequestBudget
from bot.core.clock import WallClock
from bot.core.events import Event, EventBus
from bot.core.market import Bar, BookTick
from bot.io.access import CONTROL_TOKEN_ENV, AccessError, open_access
from bot.io.audit_anchor import AnchorError, audit_hmac_key
from bot.io.audit_trail import AuditTrail
from bot.io.credentials import load_api_credentials
from bot.io.exchange import ExchangeError, RetryableError, UnknownOutcomeError
from bot.io.feed import TIMEFRAME_MS, MarketFeed
from bot.io.key_age import KeyMetadataError, load_key_metadata
from bot.io.marker import read_marker
from bot.io.redaction import redact_obj
from bot.io.secrets import CredentialError, read_private_file
from bot.io.state import StateStoreError, open_bot_store
from bot.lifecycle import Lifecycle
from bot.runtime import StartupRefused, Trader, TraderConfig

EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 2, 3, 4
EXIT_RESTART = 75  # internal: a restart was requested through the control API; main_run re-executes
METRICS_TOKEN_ENV = "GAMEDAY_METRICS_TOKEN"
TIMER_MAX_S = 0.2
TIMER_MIN_S = 0.01


class EventWriter:
    """One JSON object per line per bot event, flushed per line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.count = 0

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(redact_obj(event.to_dict()), default=str, separators=(",", ":")) + "\n")
        self.stream.flush()
        self.count += 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="futures", help="config/profiles/NAME.yaml (default: futures)")
    parser.add_argument("--exchange", choices=["testnet", "binance"], default="testnet",
                        help="testnet (needs --testnet-url) or the real Binance USD-M venue")
    parser.add_argument("--testnet-url", help="testnet REST base URL, e.g. http://127.0.0.1:8900")
    parser.add_argument("--ws-url", help="testnet WebSocket URL (default: the REST URL's host, ws://…/ws)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--timeframe", default="5m", choices=sorted(TIMEFRAME_MS, key=TIMEFRAME_MS.__getitem__))
    parser.add_argument("--events", type=Path, help="append bot events here as JSON lines (default: stdout)")
    parser.add_argument("--state", default="state/bot.db", help="SQLite path or redis://… (default: state/bot.db)")
    parser.add_argument("--audit", type=Path, default=Path("state/audit.jsonl"), help="audit log (JSONL)")
    parser.add_argument("--marker", type=Path, help="kill-switch marker file (default: policy kill_switch.marker_file)")
    parser.add_argument("--key-file", type=Path, help="API key file (mode 0600); else env GAMEDAY_API_KEY/SECRET")
    parser.add_argument("--auth-token-file", type=Path,
                        help="configured kill-switch token (0600); else env GAMEDAY_KILL_TOKEN_FILE, "
                             "else state/kill_token")
    parser.add_argument("--no-entries", action="store_true", help="manage exits only; open no new positions")
    parser.add_argument("--startup-attempts", type=int, default=5,
                        help="tries to reach the exchange at start before giving up (exit 4)")
    parser.add_argument("--time-scale", type=_positive_float, default=1.0,
                        help="multiply every time threshold of the policy (bot.config.scale_time); "
                             "game-day gates run production logic faster (default 1.0)")
    parser.add_argument("--control-port", type=int, default=None,
                        help="serve the control API (health, status, kill switch, resume, restart, audit) on "
                             "127.0.0.1:PORT for the principals of --principals and the legacy tokens "
                             "(0 = any free port)")
    parser.add_argument("--principals", type=Path,
                        help="principals file (python -m bot access add); else env GAMEDAY_PRINCIPALS_FILE, else "
                             "principals_file of config/access.yaml")
    parser.add_argument("--token-file", type=Path, help="legacy control API token file (mode 0600); else env "
                        "GAMEDAY_CONTROL_TOKEN")
    parser.add_argument("--store-check-ms", type=int, default=250,
                        help="ping the state store this often; losing it stops new entries (default 250)")
    parser.add_argument("--alerts", type=Path, default=None,
                        help="alert routing and channels (default: config/alerts.yaml); channel secrets come "
                             "from the environment / secrets loader, see the file")
    parser.add_argument("--alert-heartbeat-seconds", type=_positive_float, default=None,
                        help="send the alert heartbeat this often instead of the file's heartbeat.every_seconds")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0 = any free port); read-only "
                             f"token from env {METRICS_TOKEN_ENV} or --metrics-token-file")
    parser.add_argument("--metrics-token-file", type=Path, help=f"metrics token file (mode 0600); else env "
                        f"{METRICS_TOKEN_ENV}")
    parser.add_argument("--reconcile-ms", type=int, default=TraderConfig.reconcile_every_ms,
                        help="reconcile orders and positions with the exchange this often; a position "
                             f"opened outside the bot is adopted then (default {TraderConfig.reconcile_every_ms}; "
                             f"at least {RequestBudget().reconcile_floor_ms()}: the exchange's request-weight budget)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def control_token(token_file: Path | None, env: dict[str, str] | None = None) -> str | None:
    """The control API token: --token-file (0600) first, else env GAMEDAY_CONTROL_TOKEN."""
    env = dict(os.environ) if env is None else env
    if token_file is not None:
        return read_private_file(token_file, "control token file").strip() or None
    return env.get(CONTROL_TOKEN_ENV) or None


def metrics_token(token_file: Path | None, env: dict[str, str] | None = None) -> str | None:
    """The metrics (read-only) token: --metrics-token-file (0600) first, else env GAMEDAY_METRICS_TOKEN."""
    env = dict(os.environ) if env is None else env
    if token_file is not None:
        return read_private_file(token_file, "metrics token file").strip() or None
    return env.get(METRICS_TOKEN_ENV) or None


def ws_url_for(rest_url: str) -> str:
    base = rest_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + "/ws"
    return "ws://" + base.removeprefix("http://") + "/ws"


def main_run(args: argparse.Namespace) -> int:
    """`python -m bot run`: returns the process exit code."""
    from bot.config import ConfigError, config_dir, load_policy, scale_time

    if args.exchange == "testnet" and not args.testnet_url:
        print("run: --exchange testnet needs --testnet-url URL", file=sys.stderr)
        return EXIT_USAGE
    floor_problem = reconcile_floor_problem(args.reconcile_ms, RequestBudget())
    if floor_problem is not None:
        print(f"run: {floor_problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        policy = scale_time(load_policy(args.profile).policy, args.time_scale)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        args.access = open_access(principals=args.principals, kill_token_file=args.auth_token_file,
                                  control_token=control_token(args.token_file) if args.control_port is not None
                                  else None)
    except (AccessError, CredentialError) as exc:
        print(f"run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.control_port is not None and not args.access.current().principals:
        print("run: --control-port needs a principal: python -m bot access add NAME --role ROLE, or the legacy "
              f"{CONTROL_TOKEN_ENV} / --token-file PATH (0600)", file=sys.stderr)
        return EXIT_USAGE
    args.metrics_token = None
    if args.metrics_port is not None:
        try:
            args.metrics_token = metrics_token(args.metrics_token_file)
        except CredentialError as exc:
            print(f"run: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not args.metrics_token:
            print(f"run: --metrics-port needs a token: set {METRICS_TOKEN_ENV} or pass --metrics-token-file PATH "
                  "(0600)", file=sys.stderr)
            return EXIT_USAGE
    from bot.io.alerts import load_alert_config

    try:
        args.alert_config = load_alert_config(args.alerts)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:  # when each credential was issued: its age is checked at start and shown in GET /status
        args.key_issued = load_key_metadata(config_dir() / "key_metadata.yaml")
    except KeyMetadataError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        creds = load_api_credentials(args.key_file)
        args.audit_hmac_key = audit_hmac_key()
    except (CredentialError, AnchorError) as exc:
        print(f"run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stream: IO[str]
    if args.events is not None:
        args.events.parent.mkdir(parents=True, exist_ok=True)
        stream = open(args.events, "a", buffering=1)  # noqa: SIM115 - closed below
    else:
        stream = sys.stdout
    try:
        code = asyncio.run(_run(args, policy, creds, stream))
    finally:
        if stream is not sys.stdout:
            stream.close()
    if code == EXIT_RESTART:  # state is saved and every file closed: become a fresh bot process
        os.execv(sys.executable, [sys.executable, "-m", "bot", *getattr(args, "argv", sys.argv[1:])])
    return code


def reconcile_floor_problem(reconcile_ms: int, budget: RequestBudget) -> str | None:
    """Why `--reconcile-ms` is too short for the exchange's request-weight budget (None: it is not)."""
    floor = budget.reconcile_floor_ms()
    if reconcile_ms >= floor:
        return None
    return (f"--reconcile-ms {reconcile_ms} is below the floor of {floor} ms: {budget.explain_floor()}; "
            f"polling faster earns a 429 and then an IP ban. Use --reconcile-ms {floor} or more")


async def _run(args: argparse.Namespace, policy: Any, creds: Any, stream: IO[str]) -> int:
    clock = WallClock()
    bus = EventBus()
    bus.subscribe(EventWriter(stream))
    life = Lifecycle(bus, clock, sys.stderr)
    code = EXIT_USAGE
    try:
        code = await _serve(args, policy, creds, clock, bus, life)
    finally:
        life.stopped(code)
    return code


async def _serve(args: argparse.Namespace, policy: Any, creds: Any, clock: WallClock, bus: EventBus,
                 life: Lifecycle) -> int:
    from bot.config import ConfigError
    from bot.io.alerts import AlertService
    from bot.io.exchange_ccxt import CcxtExchange
    from bot.io.metrics import BotMetrics, MetricsServer

    try:  # alerting first: a refused start is an alert too
        heartbeat = None if args.alert_heartbeat_seconds is None else round(args.alert_heartbeat_seconds * 1000)
        alerts = AlertService.build(args.alert_config, bus, clock, heartbeat_ms=heartbeat,
                                    known_secrets=(creds.secret, args.metrics_token))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    if alerts.notes:
        print(f"bot: alerts: {'; '.join(alerts.notes)}", file=sys.stderr, flush=True)
    alerts.start()
    metrics = BotMetrics()
    metrics.bind_alerts(alerts.router)
    bus.subscribe(metrics)
    metrics_server: MetricsServer | None = None
    # SIGTERM/SIGINT stop the bot cleanly from the first moment, also while it is still starting
    # (restoring state, reconciling): never the default action that kills it mid-write.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _stop_on_signal, life, sig, stopping)
    verify = args.access.killswitch_verifier()
    marker = Path(args.marker or policy.kill_switch.marker_file)
    if args.exchange == "testnet":
        exchange = CcxtExchange(creds.api_key, creds.secret, rest_url=args.testnet_url,
                                ws_url=args.ws_url or ws_url_for(args.testnet_url))
    else:
        exchange = CcxtExchange(creds.api_key, creds.secret)
    audit = None
    store = None
    control: Any = None
    try:
        audit = AuditTrail(_with_parent(args.audit), now_ms=clock.now_ms, verify_chain=True,
                           hmac_key=args.audit_hmac_key)
        store = open_bot_store(_with_parent(args.state))
        config = TraderConfig(symbol=args.symbol, bar_ms=TIMEFRAME_MS[args.timeframe],
                              trade_entries=not args.no_entries, store_check_ms=max(0, args.store_check_ms),
                              reconcile_every_ms=args.reconcile_ms,
                              real_money=args.exchange == "binance",
                              # the outage re-probe is a time threshold too: scaled with the policy
                              outage_probe_ms=max(250, round(TraderConfig.outage_probe_ms * args.time_scale)))
        trader = Trader(policy, exchange, store, audit, clock, bus, verify, config=config, marker_path=marker,
                        key_issued=args.key_issued)
        metrics.bind(trader)
        alerts.router.equity = lambda: trader.engine.equity if hasattr(trader, "engine") else None
        alerts.router.audit_head = lambda: audit.head if audit is not None else None
        if args.metrics_port is not None:
            metrics_server = MetricsServer(metrics, args.metrics_token, "127.0.0.1", args.metrics_port)
            print(f"bot: metrics on http://127.0.0.1:{await metrics_server.start()}/metrics", file=sys.stderr,
                  flush=True)
        code = await _start(trader, args, bus, audit, clock, stopping)
        if code != EXIT_OK:
            return code
        if stopping.is_set():
            await trader.close()
            return EXIT_OK
        driver = LiveDriver(trader, exchange, bus, clock, marker, store, timeframe=args.timeframe,
                            stopping=stopping, on_signal=life.on_signal,
                            checks=red_flag_checks(trader, metrics_server, creds,
                                                   [p for p in (args.audit, args.events) if p is not None]))
        if args.control_port is not None:
            from bot.io.control import ControlServer

            control = ControlServer(trader, args.access, "127.0.0.1", args.control_port,
                                    on_restart=driver.request_restart, checks=driver.checks)
            port = await control.start()
            print(f"bot: control API on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
        life.started(trader.status(), symbol=args.symbol, exchange=args.exchange, pid=os.getpid())
        print(f"bot: running {args.symbol} {args.timeframe} on {args.exchange} "
              f"(state {args.state}, audit {args.audit}, marker {marker}, time scale {args.time_scale})",
              file=sys.stderr, flush=True)
        await driver.run()
        if driver.restart_by is not None:
            trader.record(driver.restart_by, "bot.restart", {"via": "control-api"})
        await trader.close()
        if driver.restart_by is not None:
            life.detail = f"restart requested by {driver.restart_by}"
            print(f"bot: restart requested by {driver.restart_by}; starting again", file=sys.stderr, flush=True)
            return EXIT_RESTART
        return EXIT_OK
    except (StateStoreError, OSError) as exc:
        print(f"run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if control is not None:
            with contextlib.suppress(Exception):
                await control.stop()
        if not await alerts.stop():
            print(f"bot: {alerts.router.pending()} alert deliveries were still pending at exit", file=sys.stderr)
        if metrics_server is not None:
            with contextlib.suppress(Exception):
                await metrics_server.stop()
        with contextlib.suppress(Exception):
            await exchange.close()
        if store is not None:
            store.close()
        if audit is not None:
            for kept in audit.close():
                print(f"bot: audit record not written ({kept.error[:120]}): " + kept.line().decode().strip(),
                      file=sys.stderr)


async def _start(trader: Trader, args: argparse.Namespace, bus: EventBus, audit: AuditTrail, clock: WallClock,
                 stopping: asyncio.Event) -> int:
    attempts = max(1, args.startup_attempts)
    for attempt in range(attempts):
        if stopping.is_set():
            print("bot: stopped before trading started", file=sys.stderr)
            return EXIT_OK
        try:
            await trader.start()
            return EXIT_OK
        except StartupRefused as exc:
            print(f"startup refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except (RetryableError, UnknownOutcomeError) as exc:
            if attempt + 1 < attempts:
                with contextlib.suppress(TimeoutError):  # a stop request ends the wait at once
                    await asyncio.wait_for(stopping.wait(), timeout=min(2.0 ** attempt, 10.0))
                continue
            reason = f"exchange unreachable after {attempts} attempts: {exc}"
            code = EXIT_UNREACHABLE
        except ExchangeError as exc:  # the key refused, an unusable reply: a human must act
            reason = f"cannot verify the exchange account: {type(exc).__name__}: {exc}"
            code = EXIT_REFUSED
        break
    now = clock.now_ms()
    bus.emit("startup.refused", now, reason=reason)
    audit.record(trader.config.actor, "startup.refused", {"reason": reason}, now)
    print(f"startup refused: {reason}", file=sys.stderr)
    return code


def _stop_on_signal(life: Lifecycle, signum: int, stopping: asyncio.Event) -> None:
    life.on_signal(signum)
    stopping.set()


class LiveDriver:
    """Runs the feed and the timer loop around a started Trader until SIGTERM/SIGINT or `stop()`."""

    def __init__(self, trader: Trader, exchange: Any, bus: EventBus, clock: WallClock, marker: Path,
                 store: Any, *, timeframe: str = "5m", stopping: asyncio.Event | None = None,
                 on_signal: Callable[[int], None] | None = None, checks: RedFlagChecks | None = None) -> None:
        self.trader = trader
        self.checks = checks  # the periodic red-flag checks, run between timer ticks
        self.exchange = exchange
        self.bus = bus
        self.clock = clock
        self.marker = marker
        self.store = store
        self.lock = asyncio.Lock()
        self.stopping = stopping or asyncio.Event()
        self.feed = MarketFeed(exchange.client, trader.config.symbol, timeframe=timeframe,
                               on_bar=self._on_bar, on_book=self._on_book, on_status=self._feed_status)
        # None: the first tick looks at the marker once more - one written between the trader's start
        # (which read it) and now is obeyed; one it already obeyed is a no-op (same mode)
        self._marker_seen: tuple[int, int] | None = None
        self.restart_by: str | None = None
        self.on_signal = on_signal  # told which signal stopped the driver

    def _signalled(self, signum: int) -> None:
        if self.on_signal is not None:
            self.on_signal(signum)
        self.stop()

    def stop(self) -> None:
        self.stopping.set()

    def request_restart(self, actor: str) -> None:
        """Stop cleanly; `main_run` then executes the same command again."""
        self.restart_by = actor
        self.stop()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signalled, sig)
        feed = asyncio.create_task(self._feed_forever())
        try:
            await self._timer_loop()
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def _feed_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.feed.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. markets not loadable yet: try again shortly
                self._feed_status(False, f"feed: {type(exc).__name__}: {str(exc)[:200]}")
                await asyncio.sleep(1.0)

    async def _timer_loop(self) -> None:
        while not self.stopping.is_set():
            deadline = self.trader.next_deadline_ms()
            delay = TIMER_MAX_S if deadline is None else (deadline - self.clock.now_ms()) / 1000
            delay = min(TIMER_MAX_S, max(TIMER_MIN_S, delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            if self.stopping.is_set():
                break
            await self._guarded(self._watch_marker())
            if self.checks is not None:
                await self._guarded(self.checks.run_due())
            await self._guarded(self.trader.on_timer())

    async def _on_bar(self, bar: Bar, event_ts_ms: int) -> None:
        await self._guarded(self.trader.on_bar(bar, event_ts_ms))

    async def _on_book(self, tick: BookTick, event_ts_ms: int) -> None:
        await self._guarded(self.trader.on_book(tick, event_ts_ms))

    async def _guarded(self, call: Awaitable[None]) -> None:
        async with self.lock:
            try:
                await call
            except Exception as exc:  # a bug must not kill the process holding positions: fail closed
                text = f"runtime error {type(exc).__name__}: {str(exc)[:200]}"
                print(f"bot: {text}", file=sys.stderr, flush=True)
                self.bus.emit("bot.alert", self.clock.now_ms(), severity="critical", key="bot.error",
                              title=f"bot error, trading halted (fail closed): {text}")
                self.trader.engine.board.fail_closed(text)

    def _feed_status(self, up: bool, error: str | None) -> None:
        self.bus.emit("exchange.up" if up else "exchange.down", self.clock.now_ms(), scope="ws", error=error)

    # --- the standalone kill switch's marker ------------------------------------------------

    def _marker_stat(self) -> tuple[int, int] | None:
        for stat in (os.stat, os.lstat):  # lstat: a dangling symlink is a marker too
            try:
                st = stat(self.marker)
            except OSError:
                continue
            return st.st_mtime_ns, st.st_size
        return None

    async def _watch_marker(self) -> None:
        """Adopt a kill switch the standalone CLI engaged (marker written; a marker that is not a
        complete snapshot engages immediate, bot.io.marker) or cleared (marker removed and the store
        says cleared) while this process runs."""
        seen = self._marker_stat()
        if seen == self._marker_seen:
            return
        self._marker_seen = seen
        ks = self.trader.engine.killswitch
        now = self.clock.now_ms()
        snapshot = read_marker(self.marker, now)
        if snapshot is not None:
            await self.trader.apply_external_killswitch(snapshot)
            return
        if not ks.status().engaged:
            return
        try:  # marker removed: honour it only when the store says an operator cleared it
            saved = self.store.get(self.trader.config.state_key)
        except StateStoreError:
            return
        stored = (saved or {}).get("killswitch")
        if isinstance(stored, dict) and stored.get("engaged") is False:
            ks.restore(stored)
            self.bus.emit("killswitch.cleared", now, actor="operator (killswitch CLI)")


def _with_parent(target: str | Path) -> str | Path:
    """Create the parent directory of a file path (not of a redis:// URL)."""
    text = str(target)
    if "://" not in text:
        Path(text).parent.mkdir(parents=True, exist_ok=True)
    return target

