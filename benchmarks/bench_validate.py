"""Paper-trading throughput of `gameday validate`: `.venv/bin/python benchmarks/bench_validate.py [--bars N]`.

Prints, per profile, bars per second (CPU and wall) of one long paper session per generated
regime (`--bars` bars each, default 20,000: ~69 days of 5-minute bars), the same figure for
the whole default market set as `gameday validate` plays it, and (--profile) where the time of
one session goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_policy  # noqa: E402
from bot.core.policy import Policy  # noqa: E402
from harness.testnet.market import REGIMES  # noqa: E402
from harness.validate.cli import DEFAULT_BARS, DEFAULT_REGIMES, SAMPLE_CANDLES  # noqa: E402
from harness.validate.markets import generated_market  # noqa: E402
from harness.validate.paper import PaperSession, scratch_dir  # noqa: E402
from harness.validate.run import Plan, build_markets, paper_trade  # noqa: E402

BAR_MS = 300_000


async def session(policy: Policy, regime: str, bars: int) -> tuple[float, float, int]:
    with scratch_dir() as tmp:
        s = PaperSession(generated_market(regime, 1, BAR_MS), policy, 10_000.0, Path(tmp))
        await s.start()
        wall, cpu = time.perf_counter(), time.process_time()
        played = await s.play(bars)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        trades = len(s.tally.trades)
        await s.close()
    return played / cpu, played / wall, trades


def regime_figures(policy: Policy, bars: int) -> dict[str, tuple[float, float, int]]:
    """One long session per regime. A bot that does nothing with its bars plays them fastest:
    the figures count only if the strategy traded somewhere over the regimes."""
    figures = {regime: asyncio.run(session(policy, regime, bars)) for regime in REGIMES}
    if not any(trades for _, _, trades in figures.values()):
        raise SystemExit(f"no trade in {len(figures)} regimes of {bars} bars: the bot played nothing, "
                         "the figure measures nothing")
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--bars", type=int, default=20_000, help="bars per long session (default 20000)")
    ap.add_argument("--profile", action="store_true", help="cProfile one session, print the top 25")
    args = ap.parse_args()
    for profile in ("futures", "pets"):
        policy = load_policy(profile).policy
        for regime, (cpu_rate, wall_rate, trades) in regime_figures(policy, args.bars).items():
            print(f"{profile:<8} {regime:<13} {args.bars} bars: {cpu_rate:7.0f} bars/s CPU, "
                  f"{wall_rate:7.0f} bars/s wall, {trades} trades")
        plan = Plan(build_markets(DEFAULT_REGIMES, [SAMPLE_CANDLES], 1, BAR_MS), DEFAULT_BARS, 4 * DEFAULT_BARS,
                    10_000.0, BAR_MS, 1)
        wall, cpu = time.perf_counter(), time.process_time()
        runs, _ = paper_trade(plan, policy)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        bars = sum(r.bars for r in runs)
        print(f"{profile:<8} default market set: {bars} bars in {wall:.2f} s wall / {cpu:.2f} s CPU "
              f"({bars / cpu:.0f} bars/s CPU)")
    if args.profile:
        policy = load_policy("pets").policy
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(session(policy, "range", args.bars))
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
