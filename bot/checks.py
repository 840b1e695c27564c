"""The live bot's periodic red-flag checks (pets checklist "RED FLAGS - STOP IMMEDIATELY").

Each check answers (ok, detail), or None when it could not judge (e.g. the exchange is
unreachable: that is the outage breaker's to handle, not proof the kill switch is broken). An
outcome goes to `Trader.observe_check`: a failure engages the kill switch with the flag as reason,
emits `redflag.raised` and so reaches the alert router. Every check is read-only towards the
venue: the emergency-stop check reads open orders with the bot's key (the kill switch's own
authenticated path), it never cancels anything.

Intervals are `red_flags.checks` of risk_policy.yaml; the private-key log scan runs at
leak_detection.yaml `scan_interval_s.log`. `alerts_not_received` is not polled here: the runtime
judges it on every alert (alert.failed with no fallback left, alert.sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bot.core.selftest import breaker_self_test
from bot.io.exchange import ExchangeError, RetryableError, UnknownOutcomeError
from bot.io.leak_watch import Fingerprint, LeakPlaces, LeakWatch, load_leak_config
from bot.io.state import StateStoreError

Outcome = tuple[bool, str] | None
PROBE_KEY = "redflag-backup-probe"


def red_flag_checks(trader: Any, metrics_server: Any, creds: Any, own_files: Sequence[Path]) -> RedFlagChecks:
    """The live bot's checks: the leak watch for its secret on the log places of leak_detection.yaml
    and on the files the bot itself writes (`own_files`: its audit log, its event stream)."""
    config = load_leak_config()
    # repos and drop folders are the harness's watch; the bot reads what it and its logger write
    places = LeakPlaces(logs=[*config.resolve(Path.cwd()).logs, *own_files])
    watch = LeakWatch([Fingerprint.of(creds.api_key[:6], creds.secret)], places)
    return RedFlagChecks(trader, metrics_server=metrics_server, leak_watch=watch,
                         leak_interval_ms=config.scan_interval_ms["log"])


class RedFlagChecks:
    """Runs each check when due (`run_due`) or on request (`run`), and reports it to the trader."""

    def __init__(self, trader: Any, *, metrics_server: Any = None, leak_watch: LeakWatch | None = None,
                 leak_interval_ms: int = 10_000) -> None:
        self.trader = trader
        self.metrics_server = metrics_server
        self.leak_watch = leak_watch
        self._leaks: list[str] = []  # a finding is reported once by the watch; the flag stays failed
        cfg = trader.policy.red_flags.checks
        self._started_ms = trader.clock.now_ms()
        # check name (= the red flag it judges) -> (interval ms, the check)
        self.checks: dict[str, tuple[int, Callable[[], Awaitable[Outcome]]]] = {
            "breaker_not_working": (round(cfg.breaker_self_test_s * 1000), self.breaker_self_test),
            "emergency_stop_failed": (round(cfg.emergency_stop_s * 1000), self.emergency_stop),
            "backup_failed": (round(cfg.backup_s * 1000), self.backup),
        }
        if metrics_server is not None:  # no metrics endpoint: nothing scrapes the bot, nothing to judge
            self.checks["monitoring_down"] = (round(cfg.monitoring_s * 1000), self.monitoring)
        if leak_watch is not None:
            self.checks["private_key_logged"] = (leak_interval_ms, self.key_in_logs)
        self._next_ms = {name: self._started_ms for name in self.checks}  # every check once at start

    async def run_due(self) -> None:
        now = self.trader.clock.now_ms()
        for name, (every, _) in self.checks.items():
            if now >= self._next_ms[name]:
                self._next_ms[name] = now + every
                await self.run(name)

    async def run(self, name: str) -> Outcome:
        """Run the check `name` (KeyError if there is none) and report its outcome."""
        _, check = self.checks[name]
        try:
            outcome = await check()
        except Exception as exc:  # a check that cannot run proves nothing works: fail closed
            outcome = (False, f"check {name} raised {type(exc).__name__}: {str(exc)[:200]}")
        if outcome is not None:
            self.trader.observe_check(name, *outcome)
        return outcome

    async def breaker_self_test(self) -> Outcome:
        return breaker_self_test(self.trader.engine.board, self.trader.clock.now_ms())

    async def emergency_stop(self) -> Outcome:
        symbol = self.trader.config.symbol
        try:
            orders = await self.trader.exchange.fetch_open_orders(symbol)
        except (RetryableError, UnknownOutcomeError):
            return None
        except ExchangeError as exc:
            return False, (f"the kill switch's exchange path refused an authenticated read of {symbol}'s open "
                           f"orders: {type(exc).__name__}: {str(exc)[:200]}")
        return True, f"kill switch path reachable: {len(orders)} open order(s) of {symbol} readable with the key"

    async def backup(self) -> Outcome:
        store, now = self.trader.store, self.trader.clock.now_ms()
        try:
            store.put(PROBE_KEY, {"ts_ms": now})
            back = store.get(PROBE_KEY)
        except StateStoreError as exc:
            return False, f"state store write/read-back failed: {str(exc)[:200]}"
        if back != {"ts_ms": now}:
            return False, f"state store read back {back!r} after writing ts_ms={now}"
        return True, "state store written and read back"

    async def monitoring(self) -> Outcome:
        now = self.trader.clock.now_ms()
        last = self.metrics_server.scraped_ms
        silent_ms = now - (self._started_ms if last is None else last)
        limit_ms = round(self.trader.policy.red_flags.checks.monitoring_silent_s * 1000)
        if silent_ms > limit_ms:
            seen = "never scraped" if last is None else "last scraped"
            return False, f"metrics {seen}: silent for {silent_ms / 1000:.0f} s (max {limit_ms / 1000:g} s)"
        return True, "metrics never scraped yet (within the window)" if last is None else "metrics scraped recently"

    async def key_in_logs(self) -> Outcome:
        assert self.leak_watch is not None  # registered only with a watch
        self._leaks += [f"{f.key_id} at {f.to_fields()['where']}" for f in self.leak_watch.scan("log")]
        if self._leaks:
            return False, f"key material in the bot's logs: {', '.join(self._leaks[:3])}"
        return True, "no key material in the bot's logs"
