"""Evidence records and the manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime

from bot.core.events import Event
from harness.evidence import (
    EVIDENCE_KEYS,
    append_evidence,
    build_evidence,
    git_commit,
    iso_z,
    read_evidence,
    write_manifest,
)
from harness.expect import RunRecord, StepTiming, judge
from harness.scenario import load_scenario

SCENARIO = """
scenario: ks-immediate
covers: [C2.kill_switch]
mode: sim
profile: pets
seed: 3
steps:
  - {id: ks, at: 10 bars, fault: kill_switch, params: {mode: immediate}}
expect:
  - {event: account.flat, after: ks, within: 10s}
"""


def test_build_evidence_follows_the_schema(write_scenario):
    s = load_scenario(write_scenario("ks.yaml", SCENARIO), profiles=None, checklist_ids=None)
    params = {"mode": "immediate", "reason": "gameday drill", "credentials": "valid"}
    run = RunRecord([Event("account.flat", 3_004_000, {})],
                    [StepTiming("ks", "kill_switch", params, 3_000_000)], bar_ms=300_000)
    j = judge(s, run)
    started = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    ev = build_evidence(s, j, run, config_digest="sha256:abc", started_at=started, duration_s=0.0412,
                        git="deadbeef")
    assert tuple(ev) == EVIDENCE_KEYS
    assert ev["schema"] == "gameday.evidence/v1"
    assert ev["started_at"] == "2026-03-01T12:00:00.250Z"
    assert (ev["scenario"], ev["covers"], ev["profile"], ev["seed"]) == ("ks-immediate", ["C2.kill_switch"],
                                                                        "pets", 3)
    assert (ev["git_commit"], ev["config_digest"], ev["duration_s"]) == ("deadbeef", "sha256:abc", 0.0412)
    assert ev["steps"] == [{"id": "ks", "fault": "kill_switch", "params": params, "injected_ms": 3_000_000,
                            "established_ms": None, "error": None}]
    assert ev["expectations"] == [{"text": "account.flat within 10s after ks", "sla_ms": 10_000,
                                   "observed_ms": 4_000, "verdict": "pass",
                                   "message": "seen 4000 ms after establishment"}]
    assert ev["verdict"] == "pass" and ev["events_count"] == 1
    json.dumps(ev)  # serialisable as is


def test_append_evidence_appends_lines_and_creates_the_directory(tmp_path):
    target = tmp_path / "a" / "b"
    path = append_evidence(target, {"scenario": "one", "n": 1})
    append_evidence(target, {"scenario": "two", "when": datetime(2026, 1, 1, tzinfo=UTC)})
    assert path == target / "evidence.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert read_evidence(target) == [{"scenario": "one", "n": 1},
                                     {"scenario": "two", "when": "2026-01-01T00:00:00.000Z"}]


def test_manifest_hashes_every_file(tmp_path):
    append_evidence(tmp_path, {"scenario": "x"})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "report.md").write_text("# report\n")
    path = write_manifest(tmp_path, git="cafe")
    manifest = json.loads(path.read_text())
    expected = hashlib.sha256((tmp_path / "evidence.jsonl").read_bytes()).hexdigest()
    assert manifest["files"] == {"evidence.jsonl": f"sha256:{expected}",
                                 "sub/report.md": "sha256:" + hashlib.sha256(b"# report\n").hexdigest()}
    assert manifest["git_commit"] == "cafe" and manifest["created_at"].endswith("Z")
    again = json.loads(write_manifest(tmp_path, git="cafe").read_text())
    assert "manifest.json" not in again["files"] and again["files"] == manifest["files"]


def test_git_commit_is_the_head_or_unknown(tmp_path):
    assert git_commit(str(tmp_path)) == "unknown"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    git_commit.cache_clear()
    assert git_commit(str(tmp_path)) == head


def test_iso_z_converts_to_utc():
    from datetime import timedelta, timezone

    moment = datetime(2026, 3, 1, 14, 0, 0, 5_000, tzinfo=timezone(timedelta(hours=2)))
    assert iso_z(moment) == "2026-03-01T12:00:00.005Z"
