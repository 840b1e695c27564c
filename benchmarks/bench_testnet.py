"""Testnet server performance: order round trips through async ccxt, and WebSocket kline fan-out.

Run: ``.venv/bin/python benchmarks/bench_testnet.py [--orders 1000] [--concurrency 8] [--subscribers 10]``.
The testnet runs in its own process (``python -m harness.testnet --port 0``) so client and server do
not share an event loop. It prints:
- order round trip (create_order MARKET through unmodified async ccxt): median / p99 / max ms over
  ``--orders`` sequential orders, and sequential orders/s;
- sustained orders/s with ``--concurrency`` orders in flight;
- kline fan-out: ``--subscribers`` raw WebSocket clients on ``btcusdt@kline_5m`` with the market
  ticking every ``--tick-ms``; messages/s delivered in total and delivery latency (receive time
  minus the event time ``E``; same host, same wall clock).
Not a timed test: the figures are for reading, not for asserting.

A testnet that books nothing, or pushes nothing, would be fast, so the figures stand only when the
testnet's own order log (admin API) holds a fill for every order sent, and when every subscriber
received klines and they carried a moving price. Otherwise the benchmark exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.testnet.ccxt_client import make_ccxt_client  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"
SYMBOL = "BTC/USDT:USDT"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_server(tick_ms: int) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [sys.executable, "-m", "harness.testnet", "--port", "0", "--seed", "1", "--key", f"{KEY}:{SECRET}",
           "--weight-limit", "100000000", "--order-limit", "100000000", "--balance", "1000000000",
           "--tick-ms", str(tick_ms), "--bar-real-ms", "1000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    rest = ws = ""
    assert proc.stdout is not None
    while not (rest and ws):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"testnet exited with {proc.wait()}")
        if line.startswith("testnet REST"):
            rest = line.split()[-1]
        elif line.startswith("testnet WS"):
            ws = line.split()[-1]
    return proc, rest, ws


async def fills_booked(rest: str) -> int:
    """The fills the testnet's order log holds for the bench key."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"{rest}/__admin/orders", params={"api_key": KEY}) as reply:
        reply.raise_for_status()
        return sum(1 for rec in (await reply.json())["result"] if rec["event"] == "filled")


def check_fills(booked: int, sent: int) -> None:
    if booked != sent:
        raise SystemExit(f"the testnet booked {booked} fills for {sent} MARKET orders sent: "
                         "the timed orders did nothing; the figure measures nothing")


def check_fanout(counts: list[int], closes: set[str]) -> None:
    if not counts or min(counts) == 0 or len(closes) < 2:
        raise SystemExit(f"kline fan-out: per-subscriber messages {counts}, {len(closes)} distinct close price(s): "
                         "the testnet pushed nothing that moved; the figure measures nothing")


async def bench_orders(rest: str, ws: str, orders: int, concurrency: int) -> None:
    ex = make_ccxt_client(rest, ws, KEY, SECRET, enable_rate_limit=False)
    try:
        await ex.load_markets()
        for i in range(50):  # warm-up: connections, code paths
            await ex.create_order(SYMBOL, "market", "buy" if i % 2 else "sell", 0.01)
        latencies = []
        started = time.perf_counter()
        for i in range(orders):
            t0 = time.perf_counter()
            await ex.create_order(SYMBOL, "market", "buy" if i % 2 else "sell", 0.01)
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
        print(f"order round trip (async ccxt, {orders} sequential MARKET orders):")
        print(f"  median {statistics.median(latencies):.2f} ms   p99 {percentile(latencies, 99):.2f} ms   "
              f"max {max(latencies):.2f} ms   -> {orders / elapsed:.0f} orders/s sequential")

        sem = asyncio.Semaphore(concurrency)
        total = orders * 2

        async def one(i: int) -> None:
            async with sem:
                await ex.create_order(SYMBOL, "market", "buy" if i % 2 else "sell", 0.01)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - started
        print(f"sustained: {total} orders, {concurrency} in flight -> {total / elapsed:.0f} orders/s")
    finally:
        await ex.close()
    check_fills(await fills_booked(rest), 50 + orders + total)


async def bench_fanout(ws_url: str, subscribers: int, seconds: float) -> None:
    latencies: list[float] = []
    counts = [0] * subscribers
    closes: set[str] = set()
    stop_at = 0.0

    async def subscriber(index: int, session: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with session.ws_connect(ws_url) as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline_5m"], "id": 1}))
            await ws.receive()  # {"result": null, "id": 1}
            ready.set()
            while True:
                # a bounded wait: a testnet that stops pushing must end the window, not hang it
                wait_s = max(stop_at - time.monotonic(), 0.0) if stop_at else seconds
                try:
                    msg = await ws.receive(timeout=wait_s)
                except TimeoutError:
                    if stop_at:
                        return
                    continue
                now_ms = time.time() * 1000
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                if stop_at and time.monotonic() >= stop_at:
                    return
                data = json.loads(msg.data)
                if data.get("e") == "kline" and stop_at:
                    counts[index] += 1
                    closes.add(data["k"]["c"])
                    latencies.append(now_ms - data["E"])

    async with aiohttp.ClientSession() as session:
        events = [asyncio.Event() for _ in range(subscribers)]
        tasks = [asyncio.create_task(subscriber(i, session, events[i])) for i in range(subscribers)]
        await asyncio.gather(*(e.wait() for e in events))
        await asyncio.sleep(0.2)
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*tasks)
    check_fanout(counts, closes)
    total = sum(counts)
    print(f"kline fan-out to {subscribers} WebSocket subscribers over {seconds:.0f} s:")
    print(f"  {total / seconds:.0f} messages/s delivered ({total / seconds / subscribers:.0f} per subscriber)   "
          f"latency (receive - E) median {statistics.median(latencies):.2f} ms   "
          f"p99 {percentile(latencies, 99):.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--tick-ms", type=int, default=10, help="market tick (one kline push per tick)")
    parser.add_argument("--seconds", type=float, default=3.0, help="fan-out measurement window")
    args = parser.parse_args(argv)
    proc, rest, ws = start_server(args.tick_ms)
    try:
        print(f"testnet at {rest} (separate process), tick {args.tick_ms} ms")
        asyncio.run(bench_orders(rest, ws, args.orders, args.concurrency))
        asyncio.run(bench_fanout(ws, args.subscribers, args.seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
