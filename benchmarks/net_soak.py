"""Net catalog soak: the net scenarios N times in a row on a loaded machine, margins per SLA.

    .venv/bin/python benchmarks/net_soak.py [--runs 20] [-n 2] [-k EXPR] [--load sim-gate|none] [--report DIR]

Each run is `GAMEDAY_REQUIRE_SERVICES=1 gameday run -m net` (with `-n N` when given) in its own
process, writing its own sealed evidence set under DIR (default reports/soak). Beside the runs a
load generator runs the sim gate (`gameday run -m "gate and not net"`) in a loop until the last
run ends. From every run's evidence.jsonl it prints, per SLA (scenario + expectation), the smallest
margin across runs (sla - observed), the largest observed time, the threshold and the allowance
of the run with that margin (a calibrated allowance varies per run: its range; its basis below),
then each failure and each run's wall time. Exit 1 when any run failed, was
not sealed complete, or judged no timed SLA at all (a soak that measured nothing).
Not part of `make bench`: 20 runs take about an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GAMEDAY = [sys.executable, "-m", "harness.cli"]
PASSING = ("pass", "skip")


@dataclass
class Sla:
    """One timed expectation across the runs."""

    threshold_ms: int | None
    allowance: str | None
    margins: list[int] = field(default_factory=list)
    observed: list[int] = field(default_factory=list)
    allowance_ms: list[int] = field(default_factory=list)  # per run: a calibrated one follows the load
    basis: str | None = None  # where the allowance of the smallest margin came from

    def made(self) -> str:
        """`sla = threshold + allowance` of the run with the smallest margin (allowances: min-max)."""
        worst = self.margins.index(min(self.margins))
        low, high = min(self.allowance_ms), max(self.allowance_ms)
        spread = f" ({low}-{high})" if low != high else ""
        return (f"{self.threshold_ms + self.allowance_ms[worst] if self.threshold_ms is not None else '-'} = "
                f"{self.threshold_ms} + {self.allowance or '-'} {self.allowance_ms[worst]}{spread}")


@dataclass
class Soak:
    slas: dict[tuple[str, str], Sla] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)

    def add_run(self, run: int, records: list[dict[str, Any]]) -> None:
        for rec in records:
            if rec.get("verdict") not in PASSING:
                self.failures.append(f"run {run}: {rec['scenario']}: {rec.get('message', '')}")
            for exp in rec.get("expectations", []):
                if exp.get("verdict") not in PASSING:
                    self.failures.append(f"run {run}: {rec['scenario']}: {exp['text']}: {exp.get('message', '')}")
                if exp.get("margin_ms") is None:
                    continue
                key = (rec["scenario"], exp["text"])
                sla = self.slas.setdefault(key, Sla(exp["threshold_ms"], exp["allowance"]))
                if not sla.margins or exp["margin_ms"] < min(sla.margins):
                    sla.basis = exp.get("allowance_basis")
                sla.margins.append(exp["margin_ms"])
                sla.observed.append(exp["observed_ms"])
                sla.allowance_ms.append(exp["allowance_ms"])


def read_set(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """(evidence records, sealed complete) of one evidence set."""
    records = [json.loads(line) for line in (path / "evidence.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    return records, bool(manifest.get("complete"))


def new_set(root: Path, before: set[str]) -> Path | None:
    runs = root / "runs"
    made = sorted(p for p in runs.iterdir() if p.name not in before) if runs.is_dir() else []
    return made[-1] if made else None


def env() -> dict[str, str]:
    return {**os.environ, "GAMEDAY_REQUIRE_SERVICES": "1", "GAMEDAY_PROGRESS": "off"}


class SimGateLoad:
    """The sim gate in a loop, each run into a throwaway report root, until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            tmp = tempfile.mkdtemp(prefix="soak-load-")
            self.proc = subprocess.Popen([*GAMEDAY, "run", "-m", "gate and not net", "-q", "--report", tmp],
                                         cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
            self.runs += 1

    def __enter__(self) -> SimGateLoad:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
        self.thread.join(timeout=30)


def soak(runs: int, workers: str | None, report: Path, keyword: str | None = None) -> Soak:
    result = Soak()
    for run in range(1, runs + 1):
        before = {p.name for p in (report / "runs").iterdir()} if (report / "runs").is_dir() else set()
        argv = [*GAMEDAY, "run", "-m", "net", "-q", "--report", str(report), *(["-n", workers] if workers else []),
                *(["-k", keyword] if keyword else [])]
        start = time.monotonic()
        code = subprocess.run(argv, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, check=False).returncode
        wall = time.monotonic() - start
        result.walls.append(wall)
        path = new_set(report, before)
        if path is None:
            result.failures.append(f"run {run}: exit {code}, no evidence set")
        else:
            records, complete = read_set(path)
            result.add_run(run, records)
            if code != 0 or not complete:
                result.failures.append(f"run {run}: exit {code}, complete={complete} ({path})")
        print(f"run {run}/{runs}: exit {code}, {wall:.1f} s, {path}", flush=True)
    return result


def print_summary(result: Soak, load_runs: int | None) -> None:
    print(f"\n{'scenario':<40} {'expectation':<52} {'min margin':>10} {'max obs':>8} "
          f"{'sla = threshold + allowance':>36}")
    for (scenario, text), sla in sorted(result.slas.items(), key=lambda kv: min(kv[1].margins)):
        print(f"{scenario[:40]:<40} {text[:52]:<52} {min(sla.margins):>8}ms {max(sla.observed):>6}ms "
              f"{sla.made():>36}")
    bases = sorted({sla.basis for sla in result.slas.values() if sla.basis})
    if bases:
        print("\nallowance basis at the smallest margins:\n  " + "\n  ".join(bases))
    walls = result.walls
    print(f"\nruns: {len(walls)}, failures: {len(result.failures)}, timed SLAs: {len(result.slas)}, "
          f"wall min/median/max: {min(walls):.1f}/{sorted(walls)[len(walls) // 2]:.1f}/{max(walls):.1f} s"
          + (f", sim gate load runs beside: {load_runs}" if load_runs is not None else ""))
    for failure in result.failures:
        print(f"FAIL {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="consecutive net catalog runs (default 20)")
    parser.add_argument("-n", dest="workers", default=None, help="pytest-xdist workers per net run (default: serial)")
    parser.add_argument("-k", dest="keyword", default=None, help="only net scenarios matching EXPR (pytest -k)")
    parser.add_argument("--load", choices=("sim-gate", "none"), default="sim-gate",
                        help="what runs beside (default: the sim gate in a loop)")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "soak",
                        help="reports root of the net runs' evidence sets (default reports/soak)")
    args = parser.parse_args(argv)
    if args.load == "sim-gate":
        with SimGateLoad() as load:
            result = soak(args.runs, args.workers, args.report, args.keyword)
        load_runs: int | None = load.runs
    else:
        result, load_runs = soak(args.runs, args.workers, args.report, args.keyword), None
    print_summary(result, load_runs)
    return 1 if result.failures or not result.slas else 0


if __name__ == "__main__":
    raise SystemExit(main())
