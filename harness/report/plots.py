"""Plots rendered offline with matplotlib (Agg) to inline SVG: text stays text, no network, no JS.

- reaction time against SLA per control (every timed expectation of current scenario evidence);
- one scenario's timeline: the drawdown the breaker measured and realised P&L from its events,
  with fault injections, breaker trips, halts and kill-switch events marked;
- the drill history over time.

Only what the event stream carries is plotted: drawdown readings come with the drawdown
breaker's events (value, threshold), realised P&L with position.closed (pnl); the stream holds
no equity samples, so no equity curve is drawn and the captions say so.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.report.readiness import Reaction  # noqa: E402
from harness.report.units import duration  # noqa: E402

GREEN, RED, AMBER, GREY, BLUE, INK = "#1a7f37", "#c62828", "#b26a00", "#6e7781", "#0b5cad", "#1f2328"
_RC: dict[Any, Any] = {  # (Any keys: matplotlib types rc names as literals)
    "svg.fonttype": "none",  # text as <text>, searchable and crisp
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "text.parse_math": False,  # a "$" in a name is a dollar sign
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": GREY,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
}


def to_svg(fig: Figure, name: str, tight: bool = True) -> str:
    """The figure as an inline <svg> element (no XML prolog); ids salted per plot so several
    plots can share one page. `tight` crops to the drawn extent (one extra draw: a figure with
    fixed margins passes False)."""
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": f"gameday-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight" if tight else None)
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


# --------------------------------------------------------------------------------------------
# Reaction time against SLA
# --------------------------------------------------------------------------------------------

CAP_PCT = 200.0


def reaction_plot(reactions: Sequence[Reaction]) -> str | None:
    """Observed reaction as a share of its SLA, one row per control; None when nothing is timed."""
    if not reactions:
        return None
    controls: list[str] = []
    for r in reactions:
        if r.item not in controls:
            controls.append(r.item)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(9.0, 0.42 * len(controls) + 1.3))
        for row, control in enumerate(controls):
            mine = [r for r in reactions if r.item == control]
            for k, r in enumerate(mine):
                jitter = ((k % 5) - 2) * 0.06
                if r.observed_ms is None:
                    ax.plot(CAP_PCT, row + jitter, marker="x", color=RED, markersize=7, linestyle="none")
                    continue
                pct = 100.0 * r.observed_ms / r.sla_ms if r.sla_ms else 0.0
                shown = min(pct, CAP_PCT)
                if r.verdict == "pass":
                    ax.plot(shown, row + jitter, marker="o", color=GREEN, markersize=5, alpha=0.75, linestyle="none")
                else:
                    ax.plot(shown, row + jitter, marker="x", color=RED, markersize=7, linestyle="none")
            timed = [r for r in mine if r.observed_ms is not None and r.sla_ms]
            if timed:
                w = max(timed, key=lambda r: r.observed_ms / r.sla_ms)  # type: ignore[operator]
                label = f"worst {duration(w.observed_ms)} of {duration(w.sla_ms)}"
            else:
                label = "never reacted"
            missed = any(r.verdict != "pass" for r in mine)
            ax.annotate(label, (1.0, row), xycoords=("axes fraction", "data"), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=8, color=RED if missed else INK,
                        fontweight="bold" if missed else "normal")
        ax.axvline(100, color=RED, linestyle="--", linewidth=1)
        ax.annotate("SLA", (100, 1.0), xycoords=("data", "axes fraction"), xytext=(3, 2), textcoords="offset points",
                    color=RED, fontsize=8, va="bottom")
        ax.set_yticks(range(len(controls)), controls)
        ax.set_ylim(len(controls) - 0.5, -0.7)
        ax.set_xlim(-4, CAP_PCT + 6)
        ax.set_xticks([0, 25, 50, 75, 100, 150, 200], ["0%", "25%", "50%", "75%", "100%", "150%", "\u2265200%"])
        ax.set_xlabel("reaction time as a share of its SLA (o met, x missed or never came)")
        ax.grid(axis="x", color="#d0d7de", linewidth=0.6)
        return to_svg(fig, "reactions")


# --------------------------------------------------------------------------------------------
# One scenario's timeline
# --------------------------------------------------------------------------------------------

_ROWS: Sequence[tuple[str, tuple[str, ...]]] = (
    ("fault injected", ()),
    ("breakers", ("breaker.warning", "breaker.tripped", "breaker.reset")),
    ("trading", ("trading.paused", "trading.halted", "trading.resumed", "sizing.reduced")),
    ("kill switch", ("killswitch.engaged", "killswitch.cleared", "killswitch.rejected")),
    ("orders", ("order.placed", "order.filled", "order.rejected", "order.unknown", "orders.cancelled")),
    ("account", ("position.opened", "position.closed", "account.flat", "state.restored")),
    ("feed / exchange", ("feed.stale", "feed.recovered", "exchange.down", "exchange.up")),
)
_STYLE: Mapping[str, tuple[str, str]] = {
    "breaker.warning": ("^", AMBER), "breaker.tripped": ("v", RED), "breaker.reset": ("o", GREEN),
    "trading.paused": ("s", AMBER), "trading.halted": ("s", RED), "trading.resumed": ("s", GREEN),
    "killswitch.engaged": ("D", INK), "killswitch.cleared": ("D", GREEN), "killswitch.rejected": ("X", RED),
    "account.flat": ("P", BLUE),
}
_MARKED = ("breaker.tripped", "trading.halted", "killswitch.engaged", "account.flat")


@dataclass(frozen=True)
class Timeline:
    svg: str
    drawdown_points: int
    pnl_points: int


def _time_unit(span_ms: float) -> tuple[float, str]:
    if span_ms <= 120_000:
        return 1_000.0, "s"
    if span_ms <= 7_200_000:
        return 60_000.0, "min"
    return 3_600_000.0, "h"


def timeline_plot(record: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Timeline:
    steps = [s for s in record.get("steps", []) if isinstance(s.get("injected_ms"), int)]
    stamps = [e["ts_ms"] for e in events] + [s["injected_ms"] for s in steps]
    t0 = min(stamps) if stamps else 0
    span = (max(stamps) - t0) if stamps else 1
    scale, unit = _time_unit(span)

    def x(ts: int) -> float:
        return (ts - t0) / scale

    drawdown = [(x(e["ts_ms"]), float(e["value"]), float(e.get("threshold") or 0))
                for e in events if e["name"] in ("breaker.warning", "breaker.tripped")
                and e.get("breaker") == "drawdown" and isinstance(e.get("value"), int | float)]
    pnl: list[tuple[float, float]] = []
    total = 0.0
    for e in events:
        if e["name"] == "position.closed" and isinstance(e.get("pnl"), int | float):
            total += float(e["pnl"])
            pnl.append((x(e["ts_ms"]), total))
    panels = [p for p in ("drawdown", "pnl") if (drawdown if p == "drawdown" else pnl)]
    heights = [1.4] * len(panels) + [2.2]
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(len(heights), 1, sharex=True, figsize=(9.0, sum(heights) + 0.6),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        axs = [a[0] for a in axes]
        marks = [(x(e["ts_ms"]), e["name"]) for e in events if e["name"] in _MARKED]
        for ax in axs:
            for at, name in marks:
                ax.axvline(at, color=_STYLE[name][1], linestyle=":", linewidth=0.9, alpha=0.8)
            for s in steps:
                ax.axvline(x(s["injected_ms"]), color=GREY, linestyle="-", linewidth=0.6, alpha=0.6)
        k = 0
        if "drawdown" in panels:
            ax = axs[k]
            k += 1
            ax.plot([d[0] for d in drawdown], [d[1] for d in drawdown], marker="o", color=RED, linewidth=1)
            for level in sorted({d[2] for d in drawdown if d[2]}):
                ax.axhline(level, color=AMBER, linestyle="--", linewidth=0.8)
                ax.annotate(f"threshold {level:g}%", (1.0, level), xycoords=("axes fraction", "data"),
                            xytext=(4, 0), textcoords="offset points", fontsize=7, va="center", color=AMBER)
            ax.set_ylabel("drawdown %\n(breaker readings)")
            ax.invert_yaxis()
        if "pnl" in panels:
            ax = axs[k]
            k += 1
            ax.step([0.0] + [p[0] for p in pnl], [0.0] + [p[1] for p in pnl], where="post", color=BLUE)
            ax.axhline(0, color=GREY, linewidth=0.6)
            ax.set_ylabel("realised P&L\n(position.closed)")
        ax = axs[-1]
        labels = [r[0] for r in _ROWS]
        for n, s in enumerate(steps):  # labels staggered: steps often come close together
            ax.plot(x(s["injected_ms"]), 0, marker="|", markersize=14, color=INK, linestyle="none")
            ax.annotate(str(s.get("id")), (x(s["injected_ms"]), 0), xytext=(3, 5 - 9 * (n % 2)),
                        textcoords="offset points", fontsize=7, color=INK)
        points: dict[tuple[int, str, str], list[float]] = {}  # one artist per row and style: fast to draw
        for e in events:
            row = next((n for n, (_, names) in enumerate(_ROWS) if e["name"] in names), None)
            if row is None:
                continue
            marker, color = _STYLE.get(e["name"], (".", GREY))
            points.setdefault((row, marker, color), []).append(x(e["ts_ms"]))
            if e["name"] in _MARKED:
                ax.annotate(e["name"].split(".")[1], (x(e["ts_ms"]), row), xytext=(3, -9),
                            textcoords="offset points", fontsize=7, color=color)
        for (row, marker, color), xs in points.items():
            ax.plot(xs, [row] * len(xs), marker=marker, color=color, markersize=6, linestyle="none")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.7)
        ax.set_xlabel(f"time since the first event or fault ({unit})")
        ax.grid(axis="x", color="#d0d7de", linewidth=0.6)
        fig.subplots_adjust(left=0.17, right=0.9, top=0.97, bottom=0.6 / (sum(heights) + 0.6), hspace=0.15)
        return Timeline(to_svg(fig, f"timeline-{record.get('scenario')}", tight=False), len(drawdown), len(pnl))


# --------------------------------------------------------------------------------------------
# Drill history
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrillPoint:
    when: datetime
    kind: str  # "randomized drill" | "real-time scenarios"
    runs: int
    failures: int


def drill_plot(points: Sequence[DrillPoint]) -> str | None:
    dated = sorted(points, key=lambda p: p.when)
    if not dated:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(9.0, 2.8))
        for kind, marker in (("randomized drill", "o"), ("real-time scenarios", "s")):
            mine = [p for p in dated if p.kind == kind]
            if not mine:
                continue
            days = [float(mdates.date2num(p.when)) for p in mine]  # type: ignore[no-untyped-call]
            ax.plot(days, [p.failures for p in mine], marker=marker, linestyle="-", color=INK, linewidth=0.8,
                    label=kind, markersize=0)
            for day, p in zip(days, mine, strict=True):
                ax.plot(day, p.failures, marker=marker, color=RED if p.failures else GREEN, markersize=7,
                        linestyle="none")
                ax.annotate(f"{p.failures}/{p.runs}", (day, p.failures), xytext=(4, 4),
                            textcoords="offset points", fontsize=7, color=INK)
        ax.xaxis_date()
        ax.set_ylabel("failures (of runs)")
        ax.set_ylim(bottom=-0.5, top=max(1, max(p.failures for p in dated)) * 1.3 + 0.5)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(axis="y", color="#d0d7de", linewidth=0.6)
        fig.autofmt_xdate()
        return to_svg(fig, "drills")
