"""`gameday report DIR... [--out DIR]`: evidence sets in, readiness report out.

Writes to OUT: report.html (one self-contained page), report.md (the summary, also appended to
$GITHUB_STEP_SUMMARY when that is set), readiness.json (gameday.readiness/v1) and
attestation.json (an in-toto Statement v1, predicate test-result v0.1, whose subjects are the
files of the trusted sets).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from bot.config import config_dir as default_config_dir
from bot.config import known_profiles, load_policy
from harness.evidence import git_commit, iso_z
from harness.report import intoto, plots
from harness.report.attest import load_attestations
from harness.report.checklist import SOURCES, load_checklist
from harness.report.config import load_report_config
from harness.report.production import (
    ProductionView,
    flag_word,
    load_status,
    production_document,
    production_view,
    rows_by_state,
)
from harness.report.readiness import LABELS, Readiness, Target, evaluate, is_real_time
from harness.report.sets import EvidenceSet, Finding, ScanCheck, find_sets, load_set, read_stream
from harness.report.units import age, duration, short_commit, short_digest

READINESS_SCHEMA = "gameday.readiness/v1"
HTML, MD, JSON_OUT, ATTESTATION = "report.html", "report.md", "readiness.json", "attestation.json"


@dataclass(frozen=True)
class Outputs:
    html: Path
    md: Path
    json: Path
    attestation: Path | None
    readiness: Readiness


@dataclass
class TimelineView:
    scenario: str
    set_name: str
    verdict: str
    svg: str | None
    caption: str


@dataclass
class DrillRow:
    when: datetime | None
    set_name: str
    commit: str
    kind: str
    runs: int
    failures: int
    detail: str


@dataclass
class SecurityView:
    checks_set: EvidenceSet | None = None
    checks: list[ScanCheck] = field(default_factory=list)
    findings_set: EvidenceSet | None = None
    findings: list[Finding] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)


def target_for(config_dir: Path, commit: str | None) -> Target:
    digests = {p: load_policy(p, directory=config_dir).digest for p in known_profiles(config_dir)}
    return Target(commit or git_commit(), digests)


def _display_name(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        return root.name if rel == Path(".") else f"{root.name}/{rel.as_posix()}"
    return path.name


def collect(roots: Sequence[Path], *, config_dir: Path | None = None, commit: str | None = None,
            now: datetime | None = None) -> Readiness:
    """Read the config and the sets and judge every item (no output written)."""
    cfg_dir = config_dir or default_config_dir()
    items = load_checklist(cfg_dir)
    config = load_report_config(cfg_dir)
    book = load_attestations(cfg_dir)
    target = target_for(cfg_dir, commit)
    sets = [load_set(p, _display_name(p, roots)) for p in find_sets(roots)]
    return evaluate(items, sets, target, config, book, now)


# --------------------------------------------------------------------------------------------
# Views the templates lay out
# --------------------------------------------------------------------------------------------


def timelines(readiness: Readiness) -> tuple[list[TimelineView], list[str]]:
    """The newest record of each scenario: a timeline when its set kept the event stream; the
    scenarios whose sets kept none, by id."""
    newest: dict[str, tuple[EvidenceSet, Mapping[str, Any]]] = {}
    for s in readiness.counted_sets:
        for r in s.records:
            old = newest.get(r["scenario"])
            if old is None or r["started_at"] > old[1]["started_at"]:
                newest[r["scenario"]] = (s, r)
    views: list[TimelineView] = []
    without: list[str] = []
    for scenario in sorted(newest):
        s, rec = newest[scenario]
        r = dict(rec)
        stream = s.streams.get(scenario)
        if stream is None:
            without.append(scenario)
            continue
        events = read_stream(stream)
        plot = plots.timeline_plot(r, events)
        notes = []
        notes.append(f"drawdown from {plot.drawdown_points} breaker reading{'s' if plot.drawdown_points != 1 else ''}"
                     if plot.drawdown_points else "no drawdown reading in the stream")
        notes.append(f"realised P&L from {plot.pnl_points} closed position{'s' if plot.pnl_points != 1 else ''}"
                     if plot.pnl_points else "no closed position")
        caption = (f"{len(events)} events from {stream.relative_to(s.path).as_posix()} ({s.name}); "
                   + "; ".join(notes) + ". The stream holds no equity samples, so no equity curve is drawn.")
        views.append(TimelineView(scenario, s.name, r["verdict"], plot.svg, caption))
    return views, without


def drill_rows(readiness: Readiness) -> list[DrillRow]:
    rows: list[DrillRow] = []
    for s in readiness.counted_sets:
        if s.drill is not None:
            d = s.drill
            failures = int(d.get("violation_count", 0)) + int(d.get("harness_error_count", 0))
            by = d.get("violations_by_invariant") or {}
            detail = (f"seed {d.get('seed')}, profiles {', '.join(d.get('profiles', []))}, "
                      f"{d.get('checks', 0)} invariant checks"
                      + (f"; violations: {', '.join(f'{k} {v}' for k, v in sorted(by.items()))}" if by else ""))
            rows.append(DrillRow(s.created_at, s.name, s.commit, "randomized drill", int(d.get("schedules", 0)),
                                 failures, detail))
        if s.records and all(is_real_time(r) for r in s.records):
            bad = [r["scenario"] for r in s.records if r["verdict"] != "pass"]
            rows.append(DrillRow(s.created_at, s.name, s.commit, "real-time scenarios", len(s.records), len(bad),
                                 ("not passed: " + ", ".join(bad)) if bad else "every scenario passed"))
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: r.when or floor, reverse=True)


def security_view(readiness: Readiness) -> SecurityView:
    floor = datetime.min.replace(tzinfo=UTC)
    view = SecurityView()
    with_checks = [s for s in readiness.counted_sets if s.scans]
    if with_checks:
        view.checks_set = max(with_checks, key=lambda s: s.scans_at or s.created_at or floor)
        view.checks = view.checks_set.scans
    with_sarif = [s for s in readiness.counted_sets if s.sarif_tools]
    if with_sarif:
        view.findings_set = max(with_sarif, key=lambda s: s.created_at or floor)
        order = {"error": 0, "warning": 1, "note": 2}
        view.findings = sorted(view.findings_set.findings, key=lambda f: (f.suppressed, order.get(f.level, 3), f.tool))
        view.tools = view.findings_set.sarif_tools
    return view


def sections(readiness: Readiness) -> list[tuple[str, str, list[Any]]]:
    out: list[tuple[str, str, list[Any]]] = []
    for source in dict.fromkeys(r.item.source for r in readiness.items):
        mine = [r for r in readiness.items if r.item.source == source]
        out.append((SOURCES.get(source, source), source, mine))
    return out


# --------------------------------------------------------------------------------------------
# readiness.json
# --------------------------------------------------------------------------------------------


def _t(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None


def readiness_document(readiness: Readiness, production: ProductionView | None = None) -> dict[str, Any]:
    items = []
    for r in readiness.items:
        items.append({
            "id": r.item.id, "source": r.item.source, "section": r.item.section, "text": r.item.text,
            "status": r.status, "reason": r.reason,
            "evidence": [{"form": f.kind, "status": f.status, "references": [
                {"kind": p.kind, "ref": p.ref, "status": p.status, "summary": p.summary, "commit": p.commit,
                 "config_digest": p.config_digest, "recorded_at": _t(p.when), "set": p.set_name,
                 "currency": p.currency, "details": [{"verdict": v, "text": t} for v, t in p.lines]}
                for p in f.proofs]} for f in r.forms],
            "attestation": None if r.attestation is None else {
                **r.attestation.details(), "audit": {"seq": r.attestation.seq, "hash": r.attestation.hash}},
        })
    security = security_view(readiness)
    return {
        "schema": READINESS_SCHEMA,
        "generated_at": iso_z(readiness.generated_at),
        "target": {"commit": readiness.target.commit, "config_digests": dict(readiness.target.digests)},
        "readiness": {"verified": readiness.verified, "total": readiness.total,
                      "percent": round(readiness.percent, 1), "counts": readiness.counts},
        "freshness": {k: {"same_commit_days": w.same_commit_days, "other_commit_days": w.other_commit_days}
                      for k, w in readiness.config.freshness.items()},
        "items": items,
        "sets": [{"name": s.name, "path": str(s.path), "trust": s.trust, "problems": s.problems,
                  "commit": s.commit, "created_at": _t(s.created_at), "contents": s.contents}
                 for s in readiness.sets],
        "attestation_problems": readiness.book.problems,
        "drills": [{"when": _t(d.when), "set": d.set_name, "commit": d.commit, "kind": d.kind, "runs": d.runs,
                    "failures": d.failures, "detail": d.detail} for d in drill_rows(readiness)],
        "production": production_document(production or production_view(readiness, None, None)),
        "security": {
            "checks_set": security.checks_set.name if security.checks_set else None,
            "checks": [{"name": c.name, "verdict": c.verdict, "summary": c.summary, "findings": c.findings}
                       for c in security.checks],
            "findings_set": security.findings_set.name if security.findings_set else None,
            "findings": [{"tool": f.tool, "rule": f.rule, "level": f.level, "message": f.message,
                          "location": f.location, "suppressed": f.suppressed} for f in security.findings],
        },
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _breakable(item_id: str) -> markupsafe.Markup:
    """An item id that may wrap after its dots (and only there)."""
    return markupsafe.Markup(".<wbr>").join(markupsafe.escape(part) for part in item_id.split("."))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(duration=duration, short_commit=short_commit, short_digest=short_digest, md=_md_cell,
                       breakable=_breakable,
                       iso=lambda m: m.strftime("%Y-%m-%d %H:%M UTC") if m else "unknown time")
    return env


def render(readiness: Readiness, production: ProductionView | None = None) -> tuple[str, str]:
    env = environment()
    lines, without = timelines(readiness)
    drills = drill_rows(readiness)
    points = [plots.DrillPoint(d.when, d.kind, d.runs, d.failures) for d in drills if d.when is not None]
    reactions = [x for r in readiness.items for x in r.reactions]
    context = {
        "r": readiness, "labels": LABELS, "sections": sections(readiness),
        "age": lambda m: age(m, readiness.generated_at),
        "reaction_svg": plots.reaction_plot(reactions), "reaction_count": len(reactions),
        "timelines": lines, "without_stream": without,
        "drills": drills, "drill_svg": plots.drill_plot(points),
        "security": security_view(readiness),
        "production": production or production_view(readiness, None, None), "flag_word": flag_word,
        "flag_counts": rows_by_state,
    }
    return env.get_template("report.html.j2").render(context), env.get_template("report.md.j2").render(context)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(roots: Sequence[Path], out: Path, *, config_dir: Path | None = None, commit: str | None = None,
                 now: datetime | None = None, bot_status: Path | None = None) -> Outputs:
    """`bot_status`: the saved body of the bot's GET /status (its ramp stage and red-flag checks)."""
    status = load_status(bot_status) if bot_status is not None else None
    readiness = collect(roots, config_dir=config_dir, commit=commit, now=now)
    production = production_view(readiness, status, bot_status)
    out.mkdir(parents=True, exist_ok=True)
    html, md = render(readiness, production)
    _write(out / HTML, html)
    _write(out / MD, md)
    _write(out / JSON_OUT, json.dumps(readiness_document(readiness, production), indent=2) + "\n")
    statement = intoto.statement(readiness)
    attestation: Path | None = None
    if statement["subject"]:
        attestation = out / ATTESTATION
        _write(attestation, json.dumps(statement, indent=2) + "\n")
    else:
        (out / ATTESTATION).unlink(missing_ok=True)  # an older one would attest files that are not these
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(md)
    return Outputs(out / HTML, out / MD, out / JSON_OUT, attestation, readiness)
