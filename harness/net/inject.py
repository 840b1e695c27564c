"""What the net implementations of fault kinds (harness/faults/*) share: the wall clock in ms,
proxies switched off and on, a Redis client for the run's store, the testnet's mark price, the
bot's own CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from harness.faults.contract import FaultError, Revert

if TYPE_CHECKING:
    from harness.net.runner import NetRun


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def disable(run: NetRun, *short: str) -> Revert:
    """Disable the run's proxies named `short` (open connections closed, new ones refused)."""
    names = [run.stack.proxy_name(s) for s in short]
    toxi = run.stack.toxi
    assert toxi is not None
    for name in names:
        toxi.disable(name)

    def revert() -> None:
        for name in names:
            toxi.enable(name)

    return revert


def redis_client(run: NetRun) -> Any:
    from harness.services import make_redis_client

    handle = run.stack.redis
    if handle is None:
        raise FaultError("no Redis in this run's stack")
    return make_redis_client(f"redis://{handle.host}:{handle.port}/0", timeout=2.0)


def mark_price(run: NetRun) -> float:
    return float(run.stack.admin("state", method="GET")["markets"][run.symbol]["price"])


def real_equity(run: NetRun) -> float:
    """Wallet + unrealised P&L of the bot's account on the testnet."""
    acct = run.account()
    return float(acct["wallet"]) + float(acct["unrealized_pnl"])


def position_qty(run: NetRun) -> float:
    return float(run.account()["positions"].get(run.symbol, {}).get("qty", 0.0))


def run_cli(argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *argv], env=env, cwd=cwd, capture_output=True,  # noqa: S603
                          text=True, timeout=timeout, check=False)


FILLER = "gameday-disk-full.filler"  # the file disk_full fills the bot's tmpfs with (the runner mounts it)


class EquityPeak:
    """The highest real equity (wallet + unrealised) of the bot's account since the run began,
    sampled at every price change of the in-thread testnet engine - as sim mode samples the day's
    peak at every book tick. A net run lasts seconds to minutes, so the run is the day."""

    def __init__(self, engine: Any, api_key: str, symbol: str) -> None:
        self.engine, self.api_key, self.symbol = engine, api_key, symbol
        self.value = self._equity()

    def _equity(self) -> float:
        acct = self.engine.accounts[self.api_key]
        return float(acct.wallet + self.engine.unrealized_pnl(acct))

    def __call__(self, symbol: str) -> None:  # an engine listener: runs in the testnet's loop
        if symbol == self.symbol:
            self.value = max(self.value, self._equity())

    def peak(self, equity_now: float) -> float:
        self.value = max(self.value, equity_now)
        return self.value
