"""Figures, verdicts and the evidence set of a validation run (schema `gameday.validation/v1`).

Per market the figures come from that market's own paper account; the aggregate pools them:
trades, wins, gross profit and loss, fees and paper days are summed (so win rate and profit
factor are over every trade), the Sharpe ratio is computed over every market's per-bar returns
together, and the max drawdown is the worst market's. Each threshold of the profile's
`validation:` section is judged on the aggregate: `min_*` passes at or above its limit,
`max_*` at or below; a figure that is undefined (no trades, flat equity) fails a threshold that
asks for it. The run passes only when at least one threshold is set and every set one passes.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bot.core.policy import Validation
from harness.evidence import TreeState, write_manifest
from harness.validate.metrics import DAY_MS, bar_returns, max_drawdown_pct, sharpe, trade_stats

SCHEMA = "gameday.validation/v1"
RESULT_FILE = "validation.json"
OUTPUTS = (RESULT_FILE, "manifest.json", "equity", "trades")

DEFINITIONS = {
    "trades": "closed positions (round trips); P&L net of fees and slippage",
    "win_rate": "trades with P&L > 0 / all trades (break-even is not a win)",
    "profit_factor": "gross profit / gross loss; 'inf' with no losing trade, null with no trade",
    "sharpe": "annualised: per-bar simple returns of equity marked to market at each bar close, "
              "mean / std (ddof 1) x sqrt(365 days / bar length); risk-free rate 0; null when undefined",
    "max_drawdown_pct": "largest fall of that equity curve (incl. unrealised P&L) from its running peak, "
                        "% of the peak",
    "paper_days": "days of market the bot traded on paper (bars x bar length); simulated market time, "
                  "not calendar time against a live feed",
    "fees_paid": "fees the venue charged (taker/maker per the policy)",
    "slippage_paid": "what taking fills lost to the policy's slippage and impact model beyond the touch",
    "aggregate": "sums over markets (trades, wins, gross P&L, fees, days); Sharpe over all markets' "
                 "per-bar returns; max drawdown = the worst market's",
}

# threshold key -> (figure it judges, direction)
THRESHOLDS: dict[str, tuple[str, Literal["min", "max"]]] = {
    "min_trades": ("trades", "min"),
    "min_win_rate": ("win_rate", "min"),
    "min_profit_factor": ("profit_factor", "min"),
    "min_sharpe": ("sharpe", "min"),
    "max_drawdown_pct": ("max_drawdown_pct", "max"),
    "min_paper_days": ("paper_days", "min"),
}


@dataclass(frozen=True)
class MarketRun:
    """What one market's paper session left: its curve, its trades, its activity."""

    description: dict[str, Any]
    bar_ms: int
    starting_equity: float
    equity: Sequence[float]
    equity_ts: Sequence[int]
    trades: Sequence[Mapping[str, Any]]
    fees_paid: float
    slippage_paid: float
    activity: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.description["name"])

    @property
    def bars(self) -> int:
        return len(self.equity) - 1


def market_figures(run: MarketRun) -> dict[str, Any]:
    return _figures([run], sharpe(bar_returns(run.equity), run.bar_ms), max_drawdown_pct(run.equity))


def aggregate_figures(runs: Sequence[MarketRun]) -> dict[str, Any]:
    if not runs:
        raise ValueError("a validation needs at least one market")
    bar_ms = {r.bar_ms for r in runs}
    if len(bar_ms) != 1:
        raise ValueError(f"markets of one validation share one bar length, got {sorted(bar_ms)}")
    returns = np.concatenate([bar_returns(r.equity) for r in runs])
    return _figures(runs, sharpe(returns, next(iter(bar_ms))), max(max_drawdown_pct(r.equity) for r in runs))


def _figures(runs: Sequence[MarketRun], sharpe_ratio: float | None, drawdown_pct: float) -> dict[str, Any]:
    stats = trade_stats([float(t["pnl"]) for r in runs for t in r.trades])
    bars = sum(r.bars for r in runs)
    start = sum(r.starting_equity for r in runs)
    final = sum(float(r.equity[-1]) for r in runs)
    return {
        "bars": bars,
        "paper_days": sum(r.bars * r.bar_ms for r in runs) / DAY_MS,
        "trades": stats.trades,
        "wins": stats.wins,
        "losses": stats.losses,
        "win_rate": stats.win_rate,
        "profit_factor": stats.profit_factor,
        "gross_profit": stats.gross_profit,
        "gross_loss": stats.gross_loss,
        "net_pnl": stats.net_pnl,
        "fees_paid": sum(r.fees_paid for r in runs),
        "slippage_paid": sum(r.slippage_paid for r in runs),
        "sharpe": sharpe_ratio,
        "max_drawdown_pct": drawdown_pct,
        "starting_equity": start,
        "final_equity": final,
        "return_pct": (final / start - 1.0) * 100.0,
    }


def judge(figures: Mapping[str, Any], thresholds: Validation) -> tuple[list[dict[str, Any]], str, str]:
    """A verdict per threshold, the overall verdict and a one-line reason."""
    verdicts: list[dict[str, Any]] = []
    for key, (figure, direction) in THRESHOLDS.items():
        limit = getattr(thresholds, key)
        value = figures.get(figure)
        entry: dict[str, Any] = {"threshold": key, "figure": figure, "limit": limit, "value": value}
        if limit is None:
            entry["verdict"] = "not_set"
        elif value is None:
            entry["verdict"] = "fail"
            entry["why"] = f"{figure} is undefined ({'no trades' if not figures.get('trades') else 'no variation'})"
        else:
            ok = value >= limit if direction == "min" else value <= limit
            entry["verdict"] = "pass" if ok else "fail"
        verdicts.append(entry)
    judged = [v["threshold"] for v in verdicts if v["verdict"] != "not_set"]
    failed = [v["threshold"] for v in verdicts if v["verdict"] == "fail"]
    unset = [v["threshold"] for v in verdicts if v["verdict"] == "not_set"]
    not_set = f"; not set in this profile: {', '.join(unset)}" if unset else ""
    if not judged:
        return verdicts, "fail", "no threshold is set in the profile's validation section: nothing to pass"
    if failed:
        return verdicts, "fail", f"missed {len(failed)} of {len(judged)} thresholds set: {', '.join(failed)}{not_set}"
    return verdicts, "pass", f"met all {len(judged)} thresholds set: {', '.join(judged)}{not_set}"


def document(*, profile: str, config_digest: str, git: str, started_at: str, duration_s: float,
             cpu_s: float, command: str, runs: Sequence[MarketRun], thresholds: Validation,
             execution: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    aggregate = aggregate_figures(runs)
    verdicts, verdict, reason = judge(aggregate, thresholds)
    bars = aggregate["bars"]
    return {
        "schema": SCHEMA,
        "profile": profile,
        "config_digest": config_digest,
        "git_commit": git,
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "command": command,
        "plan": dict(plan),
        "execution": dict(execution),
        "definitions": DEFINITIONS,
        "markets": [{**r.description, "figures": market_figures(r), "activity": r.activity,
                     "artifacts": {"equity": f"equity/{r.name}.csv", "trades": f"trades/{r.name}.csv"}}
                    for r in runs],
        "aggregate": aggregate,
        "thresholds": thresholds.model_dump(),
        "verdicts": verdicts,
        "verdict": verdict,
        "reason": reason,
        "performance": {"bars": bars, "wall_s": round(duration_s, 3), "cpu_s": round(cpu_s, 3),
                        "bars_per_s_wall": round(bars / duration_s, 1) if duration_s > 0 else None,
                        "bars_per_s_cpu": round(bars / cpu_s, 1) if cpu_s > 0 else None},
    }


def json_safe(value: Any) -> Any:
    """Infinities as the strings 'inf' / '-inf' (JSON has no such number); NaN is a bug."""
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("a figure came out NaN")
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def foreign_files(out: Path) -> list[str]:
    """Files in `out` that a validation did not write (a sealed set holds only its own)."""
    if not out.exists():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS)


def write_set(out: Path, doc: Mapping[str, Any], runs: Sequence[MarketRun], tree: TreeState) -> Path:
    """validation.json, per-market equity and trade CSVs, then manifest.json over all of them."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    (out / "equity").mkdir()
    (out / "trades").mkdir()
    for r in runs:
        with open(out / "equity" / f"{r.name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(("ts_ms", "equity"))
            w.writerows(zip(r.equity_ts, (f"{e:.6f}" for e in r.equity), strict=True))
        with open(out / "trades" / f"{r.name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(("closed_ts_ms", "qty", "entry", "exit", "pnl", "reason"))
            w.writerows((t["ts_ms"], t["qty"], t["entry"], t["exit"], t["pnl"], t["reason"]) for t in r.trades)
    path = out / RESULT_FILE
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(json_safe(doc), fh, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    write_manifest(out, tree, complete=True, exit_status=0 if doc["verdict"] == "pass" else 1)
    return path


# --- the table ------------------------------------------------------------------------------


def _num(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def table(doc: Mapping[str, Any]) -> list[str]:
    head = (f"{'market':<22} {'bars':>7} {'days':>6} {'trades':>6} {'win %':>6} {'PF':>6} {'Sharpe':>7} "
            f"{'max DD %':>8} {'fees':>9} {'slippage':>9} {'net P&L':>10}")
    lines = [f"gameday validate: profile {doc['profile']} ({doc['config_digest'][:19]}), "
             f"commit {str(doc['git_commit'])[:12]}", head]

    def row(name: str, f: Mapping[str, Any]) -> str:
        win = f["win_rate"] * 100 if f["win_rate"] is not None else None
        return (f"{name:<22} {f['bars']:>7} {f['paper_days']:>6.1f} {f['trades']:>6} {_num(win, '.1f'):>6} "
                f"{_num(f['profit_factor'], '.2f'):>6} {_num(f['sharpe'], '.2f'):>7} "
                f"{f['max_drawdown_pct']:>8.2f} {f['fees_paid']:>9.2f} {f['slippage_paid']:>9.2f} "
                f"{f['net_pnl']:>10.2f}")

    for m in doc["markets"]:
        lines.append(row(str(m["name"])[:22], m["figures"]))
    lines.append(row("all markets", doc["aggregate"]))
    lines += ["", f"{'threshold':<20} {'limit':>8} {'value':>10}  verdict"]
    for v in doc["verdicts"]:
        value = v["value"]
        shown = _num(value, ".4g") if not isinstance(value, int) else str(value)
        lines.append(f"{v['threshold']:<20} {_num(v['limit'], 'g'):>8} {shown:>10}  "
                     f"{v['verdict'].upper().replace('_', ' ')}" + (f" ({v['why']})" if v.get("why") else ""))
    perf = doc["performance"]
    lines += ["", f"verdict: {doc['verdict'].upper()} - {doc['reason']}",
              f"{perf['bars']} bars in {perf['wall_s']:.1f} s wall / {perf['cpu_s']:.1f} s CPU "
              f"({_num(perf['bars_per_s_cpu'], '.0f')} bars/s CPU)"]
    return lines


class EvidenceError(ValueError):
    """A validation set that cannot be trusted; the message names the file and what is wrong."""


def read_validation(directory: str | Path) -> dict[str, Any]:
    """The validation.json of a sealed set, after checking the set against its manifest: every
    listed file present with its digest, nothing unlisted, the schema known. For readers that
    act on a verdict (the capital ramp, the readiness report)."""
    from harness.evidence import MANIFEST_FILE, sha256_file

    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        listed: dict[str, str] = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvidenceError(f"{directory / MANIFEST_FILE}: no usable manifest ({exc})") from None
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    problems = [f"{name}: listed but missing" for name in sorted(set(listed) - present)]
    problems += [f"{name}: not in the manifest" for name in sorted(present - set(listed))]
    problems += [f"{name}: digest differs from the manifest" for name in sorted(set(listed) & present)
                 if sha256_file(directory / name) != listed[name]]
    if problems:
        raise EvidenceError(f"{directory}: the set does not match its manifest: " + "; ".join(problems))
    try:
        doc: dict[str, Any] = json.loads((directory / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{directory / RESULT_FILE}: unreadable ({exc})") from None
    if doc.get("schema") != SCHEMA:
        raise EvidenceError(f"{directory / RESULT_FILE}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    return doc
