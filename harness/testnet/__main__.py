"""python -m harness.testnet --port P [--seed N] [--key KEY:SECRET ...]"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.testnet.server import ListenError, run_testnet


def _key(value: str) -> tuple[str, str]:
    key, sep, secret = value.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError(f"--key must be KEY:SECRET (both non-empty), got {value!r}")
    return key, secret


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535, got {value!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0-65535 (0 = any free port), got {value!r}")
    return n


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fee fraction like 0.0004, got {value!r}") from None
    if not 0 <= x < 0.1:
        raise argparse.ArgumentTypeError(f"a fee is a fraction in [0, 0.1), got {value!r}")
    return x


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The testnet's arguments (pass a subparser to reuse them, e.g. for `gameday testnet`)."""
    p = parser or argparse.ArgumentParser(prog="python -m harness.testnet",
                                          description="Local Binance USD-M testnet (REST + WebSocket + admin API).")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8900,
                   help="TCP port for REST, WebSocket and admin (default 8900; 0 = any free port)")
    p.add_argument("--seed", type=int, default=0, help="market generator seed (default 0)")
    p.add_argument("--key", action="append", type=_key, default=[], metavar="KEY:SECRET",
                   help="a trading key (futures on, withdrawals off, loopback IPs only); repeatable")
    p.add_argument("--bar-ms", type=_positive, default=300_000, help="bar interval in market time (default 5m)")
    p.add_argument("--bar-real-ms", type=_positive, default=None,
                   help="real time per bar (default: same as --bar-ms; e.g. 1000 = a bar a second)")
    p.add_argument("--tick-ms", type=_positive, default=250, help="market step / kline push period (default 250)")
    p.add_argument("--vol-bps", type=float, default=15.0, help="bar volatility in the normal regime (bps)")
    p.add_argument("--spread-bps", type=float, default=2.0, help="quoted spread (bps)")
    p.add_argument("--maker-fee", type=_fraction, default=0.0002)
    p.add_argument("--taker-fee", type=_fraction, default=0.0005)
    p.add_argument("--balance", type=float, default=10_000.0, help="starting USDT wallet per key")
    p.add_argument("--weight-limit", type=_positive, default=2400, help="request weight per IP per minute")
    p.add_argument("--order-limit", type=_positive, default=1200, help="new orders per key per minute")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tick_ms > 1000:
        print(f"error: --tick-ms must be <= 1000 (klines update at least once a second), got {args.tick_ms}",
              file=sys.stderr)
        return 2
    if args.bar_real_ms is not None and args.bar_real_ms < args.tick_ms:
        print(f"error: --bar-real-ms ({args.bar_real_ms}) must be >= --tick-ms ({args.tick_ms})", file=sys.stderr)
        return 2
    try:
        run_testnet(host=args.host, port=args.port, seed=args.seed, keys=args.key, bar_ms=args.bar_ms,
                    bar_real_ms=args.bar_real_ms, tick_ms=args.tick_ms, vol_bps=args.vol_bps,
                    spread_bps=args.spread_bps, maker_fee=args.maker_fee, taker_fee=args.taker_fee,
                    starting_balance=args.balance, weight_limit_1m=args.weight_limit,
                    order_limit_1m=args.order_limit)
    except ListenError as exc:
        print(f"error: {exc} (pick another --port, or 0 for any free port)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
