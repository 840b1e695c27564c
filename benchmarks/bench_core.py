"""Core hot-path benchmarks: plain perf_counter_ns timing, median / p99 ns per event.

Run: .venv/bin/python benchmarks/bench_core.py [--events N] [--profile futures|pets]

Each benchmark is a function `(policy, n_events) -> list[int]` of per-event durations in ns,
registered in BENCHMARKS; more (e.g. the engine's full on_bar path) are added the same way.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import load_policy  # noqa: E402
from bot.core.breakers.base import (  # noqa: E402
    BarClosed,
    BookUpdate,
    BreakerInput,
    EquityUpdate,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    TradeClosed,
)
from bot.core.breakers.board import BreakerBoard  # noqa: E402
from bot.core.clock import VirtualClock  # noqa: E402
from bot.core.engine import Engine, Fill, PlaceOrder  # noqa: E402
from bot.core.events import EventBus  # noqa: E402
from bot.core.market import Bar, BookTick  # noqa: E402
from bot.core.policy import Policy  # noqa: E402

Benchmark = Callable[[Policy, int], list[int]]


def mixed_stream(n: int, seed: int = 7) -> list[BreakerInput]:
    """Book ticks and equity marks dominate, a bar every 300 events, feed-lag samples, rare
    inference / order timings and closed trades - a calm market that trips nothing."""
    rng = random.Random(seed)
    out: list[BreakerInput] = []
    ts, price, equity = 1_700_000_000_000, 60_000.0, 10_000.0
    bar_open = price
    hi = lo = price
    last_pnl = 1.0
    for i in range(n):
        ts += 100
        price *= 1 + rng.gauss(0, 0.0001)
        hi, lo = max(hi, price), min(lo, price)
        r = rng.random()
        if i % 300 == 299:
            out.append(BarClosed(Bar(ts, bar_open, hi, lo, price)))
            bar_open = hi = lo = price
        elif r < 0.45:
            half = price * rng.uniform(0.5, 3.0) / 20_000
            out.append(BookUpdate(BookTick(ts, price - half, price + half)))
        elif r < 0.80:
            equity *= 1 + rng.gauss(0, 0.00005)
            out.append(EquityUpdate(ts, equity))
        elif r < 0.95:
            out.append(FeedLag(ts, rng.uniform(5, 400)))
        elif r < 0.98:
            out.append(InferenceTiming(ts, rng.uniform(5, 80)))
        elif r < 0.995:
            out.append(OrderLatency(ts, "placement" if rng.random() < 0.5 else "fill", rng.uniform(20, 300)))
        else:  # wins and single losses: never a losing streak
            last_pnl = rng.uniform(1, 20) if last_pnl < 0 or rng.random() < 0.6 else -rng.uniform(1, 20)
            out.append(TradeClosed(ts, last_pnl))
    return out


def bench_breaker_board(policy: Policy, n: int) -> list[int]:
    """Steady state: the stream trips nothing, so this is the cost every event pays."""
    stream = mixed_stream(n)
    clock = VirtualClock(stream[0].ts_ms)
    bus = EventBus()
    events: list[str] = []
    bus.subscribe(lambda e: events.append(e.name))
    board = BreakerBoard(policy, bus, clock)
    for x in stream[: min(2000, n)]:  # warm-up (ATR, baseline, caches)
        board.observe(x)
    observe = board.observe
    now = time.perf_counter_ns
    out = [0] * n
    gc.disable()
    try:
        for i, x in enumerate(stream):
            t0 = now()
            observe(x)
            out[i] = now() - t0
    finally:
        gc.enable()
    if board.status().state != "active":
        raise SystemExit(f"benchmark stream tripped the board: {events} {board.status().reasons}")
    prove_the_board_judges(board, policy, events, stream[-1].ts_ms)
    return out


def prove_the_board_judges(board: BreakerBoard, policy: Policy, events: list[str], ts: int) -> None:
    """A calm stream changes nothing, so a board that does nothing would time the same: the timed
    board must then trip on a losing streak at the policy's limit, or the figure is void."""
    for i in range(policy.circuit_breakers.consecutive_losses.max_consecutive_losses):
        board.observe(TradeClosed(ts + 100 * (i + 1), -10.0))
    if "breaker.tripped" not in events or board.status().state == "active":
        raise SystemExit("the timed BreakerBoard did not trip on a losing streak at max_consecutive_losses "
                         f"(events {events}, state {board.status().state}): it judged nothing, the figure "
                         "measures nothing")


def bench_engine_on_bar(policy: Policy, n: int) -> list[int]:
    """The full per-bar path: breakers, ATR, strategy, exits, sizing, costs, risk gate. Orders
    the engine emits are filled at once at the bar close, so entries and exits both happen."""
    rng = random.Random(11)
    clock = VirtualClock(1_767_571_200_000)
    engine = Engine(policy, clock, EventBus(), symbol="BTCUSDT", equity=10_000.0, verify=lambda c: False)
    price = 60_000.0
    bars: list[tuple[Bar, BookTick]] = []
    for i in range(n + 500):
        ts = clock.now_ms() + (i + 1) * 300_000
        # swings the crossover strategy can profit from, so it keeps an edge and keeps trading
        trend = 60_000.0 * (1 + 0.04 * math.sin(2 * math.pi * i / 240))
        close = max(1.0, trend * (1 + rng.gauss(0, 0.0008)))
        high, low = max(price, close) * (1 + abs(rng.gauss(0, 0.0005))), min(price, close) * (
            1 - abs(rng.gauss(0, 0.0005)))
        bars.append((Bar(ts, price, high, low, close), BookTick(ts, close - 0.5, close + 0.5)))
        price = close
    out: list[int] = []
    fills = 0
    now = time.perf_counter_ns
    gc.disable()
    try:
        for i, (bar, tick) in enumerate(bars):
            clock.advance_to(bar.ts_ms)
            intents = engine.on_book(tick)
            t0 = now()
            intents += engine.on_bar(bar)
            elapsed = now() - t0
            if i >= 500:
                out.append(elapsed)
            for intent in intents:
                if isinstance(intent, PlaceOrder):
                    o = intent.intent
                    engine.on_fill(Fill(o.client_id, o.side, o.qty, bar.close, o.qty * bar.close * 0.0004, bar.ts_ms))
                    fills += 1
    finally:
        gc.enable()
    if fills < n // 200:
        raise SystemExit(f"the engine barely traded ({fills} fills in {n} bars): the path was not exercised")
    return out


BENCHMARKS: dict[str, Benchmark] = {
    "breaker_board.observe (mixed stream)": bench_breaker_board,
    "engine.on_bar (full path, per bar)": bench_engine_on_bar,
}


def timer_overhead_ns(n: int = 100_000) -> int:
    now = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = now()
        samples.append(now() - t0)
    return int(statistics.median(samples))


def report(name: str, ns: list[int], overhead: int) -> str:
    ordered = sorted(ns)
    med = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{name:45s} n={len(ns):>7}  median {med:>6} ns  p99 {p99:>7} ns  max {ordered[-1]:>8} ns "
            f"(timer overhead ~{overhead} ns included)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--profile", action="append", choices=["futures", "pets"])
    args = ap.parse_args(argv)
    overhead = timer_overhead_ns()
    for profile in args.profile or ["futures", "pets"]:
        policy = load_policy(profile).policy
        for name, bench in BENCHMARKS.items():
            print(f"[{profile}] " + report(name, bench(policy, args.events), overhead))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
