"""``python -m harness.toxiproxy``: run the embedded Toxiproxy-compatible server (``gameday toxiproxy``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.toxiproxy.server import DEFAULT_HOST, DEFAULT_PORT, run_toxiproxy


def build_parser(prog: str = "python -m harness.toxiproxy") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Embedded Toxiproxy-compatible server (HTTP API of Toxiproxy 2.12 + TCP proxies).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"API bind address (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"API port, 0 = ephemeral (default {DEFAULT_PORT})"
    )
    parser.add_argument("--config", metavar="FILE", help="JSON array of proxies to create at start (like /populate)")
    parser.add_argument("--seed", type=int, default=None, help="seed for toxicity rolls and jitter")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="let proxies listen on non-loopback addresses (implied when --host is not loopback)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    try:
        return run_toxiproxy(args.host, args.port, config=args.config, seed=args.seed, allow_remote=args.allow_remote)
    except OSError as exc:
        print(f"toxiproxy: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"toxiproxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
