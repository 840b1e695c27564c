"""`gameday validate`: the strategy on paper over a set of markets, judged against the profile.

    gameday validate --profile pets [--markets trend_up crash ...] [--candles FILE ...]
                     [--bars N] [--max-bars N] [--bar 5m] [--seed S] [--equity X] [--out DIR]

Exit 0: every threshold set in the profile's `validation:` section is met; 1: one is missed
(or none is set); 2: bad input (config, markets, files, --out). The evidence set (validation.json,
per-market equity and trade CSVs, manifest.json) goes to DIR, by default
reports/runs/<UTC yyyymmddThhmmssZ>-<short commit>/.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

DEFAULT_REGIMES = ("trend_up", "trend_down", "range", "crash", "low_vol_chop")
SAMPLE_CANDLES = Path(__file__).resolve().parents[2] / "fixtures" / "market" / "btcusdt_5m_sample.csv"
DEFAULT_BARS = 8640  # 30 days of 5-minute bars per generated market


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, help="config/profiles/NAME.yaml whose validation: thresholds judge")
    p.add_argument("--markets", nargs="*", metavar="REGIME", default=None,
                   help=f"generated regimes to trade (default: {' '.join(DEFAULT_REGIMES)}); "
                        "commas work too; none given: recordings only")
    p.add_argument("--candles", nargs="*", metavar="FILE", type=Path, default=None,
                   help="recorded OHLCV files, CSV or Parquet (ts,open,high,low,close,volume; ts in ms); "
                        f"default: the shipped sample {SAMPLE_CANDLES.relative_to(SAMPLE_CANDLES.parents[2])}; "
                        "none given: generated markets only")
    p.add_argument("--bars", type=int, default=DEFAULT_BARS,
                   help=f"bars per generated market (default {DEFAULT_BARS}: 30 days of 5m bars)")
    p.add_argument("--max-bars", type=int, default=None,
                   help="the most bars a generated market plays while min_trades is not reached "
                        "(default 4 x --bars)")
    p.add_argument("--bar", default="5m", help="bar length of every market (default 5m); generated regimes keep "
                                                "their per-bar drift and volatility, sized for 5m bars")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated markets (default 1)")
    p.add_argument("--equity", type=float, default=10_000.0, help="starting paper equity per market (default 10000)")
    p.add_argument("--out", type=Path, default=None,
                   help="evidence directory (default reports/runs/<UTC>-<short commit>/)")


def _fail(message: str) -> int:
    print(f"gameday validate: {message}", file=sys.stderr)
    return 2


def cmd_validate(args: argparse.Namespace) -> int:
    from bot.config import ConfigError, load_policy
    from harness.cli import project_root
    from harness.evidence import iso_z, reserve_set, tree_state, utc_now
    from harness.testnet.market import REGIMES
    from harness.validate.markets import MarketError, bar_name, parse_bar, shown_path
    from harness.validate.result import document, foreign_files, table, write_set
    from harness.validate.run import Plan, build_markets, paper_trade

    try:
        loaded = load_policy(args.profile)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    regimes = DEFAULT_REGIMES if args.markets is None else tuple(
        r for item in args.markets for r in item.split(",") if r)
    candles = [SAMPLE_CANDLES] if args.candles is None else list(args.candles)
    if not regimes and not candles:
        return _fail("no market: give --markets REGIME ... and/or --candles FILE ...")
    if args.bars < 1:
        return _fail(f"--bars must be >= 1, got {args.bars}")
    max_bars = 4 * args.bars if args.max_bars is None else args.max_bars
    if max_bars < args.bars:
        return _fail(f"--max-bars ({max_bars}) must be >= --bars ({args.bars})")
    if not (args.equity > 0 and args.equity < float("inf")):
        return _fail(f"--equity must be a positive number, got {args.equity}")
    try:
        bar_ms = parse_bar(args.bar)
        unknown = [r for r in regimes if r not in REGIMES]
        if unknown:
            raise MarketError(f"--markets: unknown regime(s) {', '.join(unknown)}; expected some of "
                              f"{', '.join(REGIMES)}")
        markets = build_markets(regimes, candles, args.seed, bar_ms)
    except MarketError as exc:
        return _fail(str(exc))
    tree = tree_state()
    started = utc_now()
    out = args.out or reserve_set(project_root() / "reports", tree, started)
    foreign = foreign_files(out)
    if foreign:
        return _fail(f"--out {out}: holds files a validation did not write ({', '.join(foreign[:5])}); "
                     "give an empty or new directory")
    plan = Plan(markets=markets, bars=args.bars, max_bars=max_bars, equity=args.equity, bar_ms=bar_ms,
                seed=args.seed)
    policy = loaded.policy
    wall, cpu = time.perf_counter(), time.process_time()
    runs, rounds = paper_trade(plan, policy)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    costs = policy.execution_costs
    execution = {
        "venue": "harness.testnet matching engine in-process (SimExchange), one paper account per market",
        "bar": bar_name(bar_ms),
        "taker_fee": costs.taker_fee,
        "maker_fee": max(costs.maker_fee, 0.0),
        "slippage": f"every taking fill moved against the order by the policy's slippage "
                    f"({costs.slippage.model}: {costs.slippage.base_slippage_bps:g} bps + "
                    f"{costs.slippage.volatility_coefficient:g} x ATR bps) and market impact "
                    f"({costs.market_impact.bps_per_10k_usd:g} bps per 10k USD above "
                    f"{costs.market_impact.threshold_usd:g} USD), beyond the touch of a 2 bps spread",
        "entries": ("post-only (GTX) limit orders: maker fee, no slippage" if policy.orders.post_only
                    else f"{policy.orders.entry_type} orders"),
        "exits": "reduce-only market orders (taker fee + slippage)",
        "operator": "halts that need a manual resume are resumed as soon as the policy allows (counted "
                    "per market as operator_resumes)",
        "extension_rounds": rounds,
    }
    command = ["gameday", "validate", "--profile", args.profile, "--markets", *regimes,
               "--candles", *(shown_path(c) for c in candles), "--bars", str(args.bars), "--max-bars", str(max_bars),
               "--bar", args.bar, "--seed", str(args.seed), "--equity", f"{args.equity:g}"]
    doc = document(profile=args.profile, config_digest=loaded.digest, git=tree.commit, started_at=iso_z(started),
                   duration_s=wall, cpu_s=cpu, command=shlex.join(command), runs=runs,
                   thresholds=policy.validation, execution=execution, plan=plan.describe())
    path = write_set(out, doc, runs, tree)
    print("\n".join(table(doc)))
    print(f"evidence: {path} (sealed by {path.parent / 'manifest.json'})")
    return 0 if doc["verdict"] == "pass" else 1
