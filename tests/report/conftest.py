"""A gallery of evidence sets of every kind the report reads, built once per module: real sim runs
of catalog scenarios with their event streams, a failing record, JUnit results, a security gate,
a validation, drills on three days, a tampered set, and an attestation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from report_support import (
    COMMIT,
    ROOT,
    ago,
    config_copy,
    junit,
    record,
    run_scenario,
    sarif,
    validation_doc,
    write_set,
)

from harness.report.attest import attest
from harness.report.checklist import load_checklist
from harness.report.config import load_report_config

REAL = ("scenarios/breakers/drawdown/critical-halts-futures.yaml",
        "scenarios/killswitch/immediate-flattens-futures.yaml")


@dataclass(frozen=True)
class Gallery:
    root: Path
    config: Path
    sets: tuple[Path, ...]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Gallery:
    root = tmp_path_factory.mktemp("gallery")
    cfg = config_copy(root)
    runs = [run_scenario(ROOT / p, started=ago(minutes=30)) for p in REAL]
    failing = record("ws-lag-pauses-entries", ["C2.latency"], "fail", started=ago(minutes=29), expectations=[
        {"text": "trading.paused within 6s after lag", "sla_ms": 6000, "observed_ms": 7400, "verdict": "fail",
         "message": "trading.paused came 7400 ms after lag was injected; expected within 6s = 6000 ms"},
        {"text": "never order.placed{reduce_only=false} after lag", "sla_ms": None, "observed_ms": 1200,
         "verdict": "fail", "message": "breached"}])
    run = write_set(root / "runs" / "20260601T113000Z-c0ffee0",
                    records=[r for r, _ in runs] + [failing],
                    junit_xml=junit([("tests.core.test_sizing", "test_kelly_caps", "passed"),
                                     ("tests.core.test_sizing", "test_zone_block[Z4]", "passed"),
                                     ("tests.core.test_killswitch", "test_immediate_flattens", "failed")]),
                    streams={r["scenario"]: events for r, events in runs}, created=ago(minutes=28))
    security = write_set(root / "security", created=ago(hours=2), security={
        "schema": "gameday.security/v1", "git_commit": COMMIT, "created_at": ago(hours=2).isoformat(),
        "checks": [{"name": "bandit", "verdict": "pass", "summary": "0 medium+ after 2 reviewed suppressions",
                    "findings": 0},
                   {"name": "pip-audit", "verdict": "not verified",
                    "summary": "vulnerability service unreachable: 0 of 49 packages audited", "findings": None},
                   {"name": "trivy-secret", "verdict": "fail", "summary": "1 secret in fixtures/", "findings": 1}]},
        sarif_doc=sarif([{"ruleId": "aws-access-key-id", "level": "error",
                          "message": {"text": "AWS access key in fixtures/leak.txt"},
                          "locations": [{"physicalLocation": {"artifactLocation": {"uri": "fixtures/leak.txt"},
                                                              "region": {"startLine": 3}}}]},
                         {"ruleId": "B311", "level": "note", "message": {"text": "random is not for security"},
                          "suppressions": [{"kind": "inSource"}]}], tool="trivy"))
    validation = write_set(root / "validation", validation=validation_doc("pets", "fail", started=ago(hours=3),
                                                                          win_rate=0.52))
    drills = []
    for days, violations in ((3, 0), (2, 2), (1, 0)):
        drills.append(write_set(root / "drills" / f"d{days}", created=ago(days=days), drill={
            "schema": "gameday.drill/v1", "git_commit": COMMIT, "started_at": ago(days=days).isoformat(),
            "seed": days, "profiles": ["futures", "pets"], "bars": 80, "schedules": 200, "checks": 900,
            "violation_count": violations, "harness_error_count": 0,
            "violations_by_invariant": {"halt-entry": violations} if violations else {}}))
    tampered = write_set(root / "tampered", records=[record("drawdown-warning-pets", ["PETS.circuit_breakers"], "fail",
                                                            profile="pets")])
    lines = (tampered / "evidence.jsonl").read_text().replace('"verdict": "fail"', '"verdict": "pass"')
    (tampered / "evidence.jsonl").write_text(lines)
    attest(cfg, load_checklist(cfg), load_report_config(cfg), "PETS.signoff.monitoring", "Ola Ops",
           "test alert received in #ops-alerts", "30", now=ago(days=1))
    return Gallery(root, cfg, (run, security, validation, *drills, tampered))
