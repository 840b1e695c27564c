"""benchmarks/bench_testnet.py must fail when the testnet it times does nothing (issue 10 item 6).

The testnet runs in its own process, so the no-op is installed there by a `sitecustomize` on
PYTHONPATH (the bench passes its environment to the server it starts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, str(ROOT / "benchmarks" / "bench_testnet.py"), "--orders", "20", "--concurrency", "4",
         "--subscribers", "2", "--seconds", "0.5"]

# Orders answered FILLED without being booked, matched or logged.
BOOKS_NOTHING = '''
from harness.testnet.engine import Engine
from harness.testnet.model import Order

def place_nothing(self, api_key, symbol, side, type_, qty, **kw):
    m = self.market(symbol)
    return Order(order_id=1, client_id="noop", api_key=api_key, symbol=m.spec.symbol, side=side.upper(),
                 type=type_.upper(), time_in_force="GTC", qty=qty, price=None, reduce_only=False,
                 time=self.now_ms(), status="FILLED", executed_qty=qty, cum_quote=qty * m.price)

Engine.place_order = place_nothing
'''

PUSHES_NOTHING = '''
from harness.testnet.server import TestnetServer

TestnetServer.push_klines = lambda self: None
'''


def run_bench(tmp_path: Path, patch: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if patch is not None:
        (tmp_path / "sitecustomize.py").write_text(patch)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    return subprocess.run(BENCH, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_the_testnet_figures_stand_with_the_real_testnet(tmp_path):
    done = run_bench(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orders/s sequential" in done.stdout and "messages/s delivered" in done.stdout


@pytest.mark.parametrize(("patch", "why"), [(BOOKS_NOTHING, "booked 0 fills for 110 MARKET orders sent"),
                                            (PUSHES_NOTHING, "pushed nothing that moved")])
def test_the_testnet_figures_fail_when_the_testnet_does_nothing(tmp_path, patch, why):
    done = run_bench(tmp_path, patch)
    assert done.returncode != 0, done.stdout
    assert why in done.stderr and "measures nothing" in done.stderr, done.stdout + done.stderr
