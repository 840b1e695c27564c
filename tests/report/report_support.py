"""Evidence sets for the report's tests, built the way producers build them: real sim runs of
catalog scenarios, and records that follow the schemas (evidence, junit, security, validation,
drill, event streams), sealed with the harness's own manifest writer."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import yaml

from bot.config import load_policy
from bot.core.policy import policy_value
from harness.evidence import TreeState, build_evidence, iso_z, write_manifest
from harness.expect import judge
from harness.scenario import load_scenario, resolve_all
from harness.sim.runner import simulate

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
COMMIT = "c0ffee" + "0" * 34
OTHER = "bad0" + "1" * 36


@functools.lru_cache(maxsize=4)
def digest(profile: str = "futures") -> str:
    return load_policy(profile, directory=CONFIG).digest


def config_copy(tmp: Path) -> Path:
    """The project's config in a scratch directory (attestations get written there)."""
    out = tmp / "config"
    shutil.copytree(CONFIG, out, ignore=shutil.ignore_patterns("attestations.audit.jsonl"))
    (out / "attestations.yaml").write_text("attestations: []\n", encoding="utf-8")
    return out


def run_scenario(path: Path, commit: str = COMMIT,
                 started: datetime = NOW) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A real sim run of one scenario file: its evidence record, and its event stream as issue 10
    will keep it (one Event.to_dict() per event)."""
    scenario = load_scenario(path, profiles=None, checklist_ids=None)
    loaded = load_policy(scenario.profile, directory=CONFIG)

    def lookup(p: str) -> float:
        return policy_value(loaded.policy, p)  # type: ignore[return-value]

    params = resolve_all(scenario, lookup)
    run = simulate(scenario, params, loaded.policy)
    evidence = build_evidence(scenario, judge(scenario, run), run, config_digest=loaded.digest,
                              started_at=started, duration_s=0.01, tree=TreeState(commit, False, None))
    return evidence, [e.to_dict() for e in run.events]


def record(scenario: str, covers: Sequence[str] = ("C2.drawdown",), verdict: str = "pass", *,
           commit: str = COMMIT, profile: str = "futures", config_digest: str | None = None, mode: str = "sim",
           time_scale: float = 1.0, started: datetime = NOW,
           expectations: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A gameday.evidence/v1 record as harness.evidence.build_evidence writes one."""
    exps = list(expectations) if expectations is not None else [
        {"text": "trading.halted within 1 bar after dd", "sla_ms": 300_000,
         "observed_ms": 0 if verdict == "pass" else None, "verdict": verdict if verdict != "error" else "error",
         "message": ""}]
    return {"schema": "gameday.evidence/v1", "scenario": scenario, "covers": list(covers), "mode": mode,
            "profile": profile, "seed": 1, "time_scale": time_scale, "git_commit": commit,
            "config_digest": config_digest or digest(profile), "started_at": iso_z(started), "duration_s": 0.01,
            "steps": [{"id": "dd", "fault": "drawdown", "params": {"depth_pct": 3.5},
                       "injected_ms": 1_000_000, "established_ms": 1_000_000, "error": None}],
            "expectations": exps, "verdict": verdict, "events_count": 3, "message": f"scenario {scenario}: {verdict}"}


def junit(cases: Iterable[tuple[str, str, str]], stamp: datetime = NOW) -> str:
    """pytest-style JUnit XML; outcome: passed | failed | error | skipped."""
    body = []
    for classname, name, outcome in cases:
        inner = {"failed": '<failure message="assert 1 == 2">boom</failure>',
                 "error": '<error message="fixture broke">trace</error>',
                 "skipped": '<skipped type="pytest.skip" message="no docker">skip</skipped>'}.get(outcome, "")
        body.append(f"<testcase classname={quoteattr(classname)} name={quoteattr(name)} time=\"0.01\">{inner}"
                    "</testcase>")
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" '
            f'errors="0" failures="0" skipped="0" tests="{len(body)}" time="1.0" timestamp="{stamp.isoformat()}">'
            + "".join(body) + "</testsuite></testsuites>")


def sarif(results: Sequence[Mapping[str, Any]], tool: str = "bandit") -> dict[str, Any]:
    return {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "runs": [{"tool": {"driver": {"name": tool, "rules": []}}, "results": list(results),
                      "invocations": [{"executionSuccessful": True}]}]}


def write_set(directory: Path, *, records: Sequence[Mapping[str, Any]] = (), junit_xml: str | None = None,
              security: Mapping[str, Any] | None = None, sarif_doc: Mapping[str, Any] | None = None,
              validation: Mapping[str, Any] | None = None, drill: Mapping[str, Any] | None = None,
              streams: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, stream_layout: str = "events",
              commit: str = COMMIT, created: datetime = NOW, seal: bool = True) -> Path:
    """One evidence set; `stream_layout` "events" (events/<id>.jsonl) or "net" (net/<id>/events.jsonl)."""
    directory.mkdir(parents=True, exist_ok=True)
    if records:
        (directory / "evidence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if junit_xml is not None:
        (directory / "junit.xml").write_text(junit_xml, encoding="utf-8")
    for name, doc in (("security.json", security), ("security.sarif", sarif_doc), ("validation.json", validation),
                      ("drill.json", drill)):
        if doc is not None:
            (directory / name).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    for sid, events in (streams or {}).items():
        path = directory / "events" / f"{sid}.jsonl" if stream_layout == "events" else \
            directory / "net" / sid / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    if seal:
        manifest = write_manifest(directory, TreeState(commit, False, None), complete=True, exit_status=0)
        doc = json.loads(manifest.read_text())
        doc["created_at"] = iso_z(created)
        manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return directory


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def checklist(cfg: Path, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Replace the config copy's checklist with these (id, verified_by) items."""
    doc = {"items": [{"id": i, "source": "risk_safety_checklist.md" if not i.startswith("PETS") else
                      "pets_security_checklist.md", "section": f"section of {i}", "text": f"what {i} asks",
                      "verified_by": dict(vb)} for i, vb in items]}
    (cfg / "checklist.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def validation_doc(profile: str = "pets", verdict: str = "pass", *, config_digest: str | None = None,
                   commit: str = COMMIT, started: datetime = NOW, win_rate: float = 0.61) -> dict[str, Any]:
    """validation.json as `gameday validate` writes it (harness.validate.result.document), trimmed
    to what a reader uses."""
    return {"schema": "gameday.validation/v1", "profile": profile, "config_digest": config_digest or digest(profile),
            "git_commit": commit, "started_at": iso_z(started), "duration_s": 1.2,
            "aggregate": {"trades": 132, "win_rate": win_rate, "profit_factor": 1.41},
            "verdicts": [{"threshold": "min_trades", "figure": "trades", "limit": 100, "value": 132, "verdict": "pass"},
                         {"threshold": "min_win_rate", "figure": "win_rate", "limit": 0.6, "value": win_rate,
                          "verdict": "pass" if win_rate >= 0.6 else "fail"},
                         {"threshold": "min_sharpe", "figure": "sharpe", "limit": None, "value": 0.8,
                          "verdict": "not_set"}],
            "verdict": verdict, "reason": "met all 2 thresholds set" if verdict == "pass" else
            "missed 1 of 2 thresholds set: min_win_rate"}
