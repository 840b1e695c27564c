"""`gameday drill` arguments, apart from the drill itself so that building the CLI parser does
not import hypothesis (imported before `pytest.main`, pytest could not rewrite its asserts)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

DEFAULT_OUT = "reports/latest/drills"
PROFILES = ("futures", "pets")
MIN_BARS = 40
RUNBOOKS = ("credential_leak", "exchange_outage", "kill_switch")  # runbooks/*.yaml
ATR_HISTORY_BARS = 112  # atr_periods + baseline_periods + 2 (futures and pets)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _jobs(text: str) -> int:
    """N, or `auto` (as pytest -n): one process per core, at most 8."""
    if text.strip() == "auto":
        return max(1, min(os.cpu_count() or 1, 8))
    return _positive(text)


def _bars(text: str) -> int:
    value = _positive(text)
    if value < MIN_BARS:
        raise argparse.ArgumentTypeError(f"at least {MIN_BARS} bars (room for faults to unfold), got {value}")
    return value


def _seed(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise argparse.ArgumentTypeError(f"expected a non-negative whole number, got {text!r}")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--random", dest="n", type=_positive, metavar="N",
                   help="how many randomized fault schedules to generate and run")
    p.add_argument("--seed", type=_seed, metavar="S",
                   help="seed: the same seed gives the same schedules and results")
    p.add_argument("--profile", choices=("futures", "pets", "both"), default="both",
                   help="policy profile(s) to drill (default both)")
    p.add_argument("--bars", type=_bars, default=80, metavar="B",
                   help=f"market length of each schedule in bars (default 80, >= {MIN_BARS}; atr_spike needs "
                        f">= {ATR_HISTORY_BARS + 4})")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where scenario files for failures are written (default {DEFAULT_OUT})")
    p.add_argument("-n", "--jobs", dest="jobs", type=_jobs, default=_jobs("auto"), metavar="N",
                   help="worker processes, or 'auto': one per core (the default, at most 8); the schedules, "
                        "results and the one drill record do not depend on it")
    p.add_argument("--no-shrink", dest="shrink", action="store_false",
                   help="write failing schedules as found, without shrinking")
    runbook = p.add_argument_group("runbook drill (harness.runbooks.drill), instead of --random")
    runbook.add_argument("--runbook", choices=RUNBOOKS, help="drill this runbook on the local testnet")
    runbook.add_argument("--operator", metavar="NAME", help="who answers the human steps")
    runbook.add_argument("--operator-script", type=_existing_file, metavar="FILE",
                         help="answer the human steps from this script (runbooks/operators/*.yaml), unattended")
    runbook.add_argument("--time-scale", type=_positive_float, default=1.0, metavar="X",
                         help="time scale of the drill (default 1.0: production time)")
    runbook.add_argument("--report", default="reports", metavar="DIR",
                         help="evidence root: the drill writes DIR/runs/<utc>-<commit>/ (default reports)")


def mode_problem(args: argparse.Namespace) -> str | None:
    """Either a randomized drill (--random and --seed) or a runbook drill (--runbook and --operator)."""
    if args.runbook is not None:
        if args.n is not None:
            return "--runbook and --random are two kinds of drill: give one"
        if not args.operator:
            return "--runbook needs --operator NAME (who answers the human steps)"
        return None
    if args.n is None or args.seed is None:
        return "give --random N --seed S (a randomized drill) or --runbook NAME --operator WHO (a runbook drill)"
    return None


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


