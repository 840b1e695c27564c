"""Evidence records and the manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime

from bot.core.events import Event
from harness.evidence import (
    EVIDENCE_KEYS,
    TreeState,
    append_evidence,
    build_evidence,
    git_commit,
    iso_z,
    read_evidence,
    tree_state,
    verify_set,
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
                        tree=TreeState("deadbeef", True, "sha256:d1ff"))
    assert tuple(ev) == EVIDENCE_KEYS
    assert ev["schema"] == "gameday.evidence/v1"
    assert ev["started_at"] == "2026-03-01T12:00:00.250Z"
    assert (ev["scenario"], ev["covers"], ev["profile"], ev["seed"]) == ("ks-immediate", ["C2.kill_switch"],
                                                                        "pets", 3)
    assert (ev["git_commit"], ev["config_digest"], ev["duration_s"]) == ("deadbeef", "sha256:abc", 0.0412)
    assert (ev["git_dirty"], ev["git_diff_digest"]) == (True, "sha256:d1ff")
    assert ev["steps"] == [{"id": "ks", "fault": "kill_switch", "params": params, "injected_ms": 3_000_000,
                            "established_ms": None, "error": None}]
    assert ev["expectations"] == [{"text": "account.flat within 10s after ks", "kind": "event", "sla_ms": 10_000,
                                   "observed_ms": 4_000, "threshold_ms": 10_000, "allowance": None,
                                   "allowance_ms": 0, "allowance_basis": None, "margin_ms": 6_000, "verdict": "pass",
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
    tree = TreeState("cafe", False, None)
    path = write_manifest(tmp_path, tree, complete=True, exit_status=0)
    manifest = json.loads(path.read_text())
    expected = hashlib.sha256((tmp_path / "evidence.jsonl").read_bytes()).hexdigest()
    assert manifest["files"] == {"evidence.jsonl": f"sha256:{expected}",
                                 "sub/report.md": "sha256:" + hashlib.sha256(b"# report\n").hexdigest()}
    assert (manifest["schema"], manifest["set"], manifest["records"]) == ("gameday.manifest/v1", tmp_path.name, 1)
    assert (manifest["git_commit"], manifest["git_dirty"], manifest["git_diff_digest"]) == ("cafe", False, None)
    assert (manifest["complete"], manifest["exit_status"]) == (True, 0) and manifest["created_at"].endswith("Z")
    again = json.loads(write_manifest(tmp_path, tree, complete=True, exit_status=0).read_text())
    assert "manifest.json" not in again["files"] and again["files"] == manifest["files"]
    assert verify_set(tmp_path) == []


def test_verify_set_finds_every_change_after_sealing(tmp_path):
    append_evidence(tmp_path, {"scenario": "x"})
    (tmp_path / "junit.xml").write_text("<testsuites/>")
    (tmp_path / "results.txt").write_text("table\n")
    write_manifest(tmp_path, TreeState("cafe", False, None), complete=True, exit_status=0)
    assert verify_set(tmp_path) == []
    append_evidence(tmp_path, {"scenario": "y"})  # what plain pytest used to do to reports/latest
    (tmp_path / "late.txt").write_text("x")
    (tmp_path / "junit.xml").unlink()
    problems = verify_set(tmp_path)
    assert problems == [f"{tmp_path}/junit.xml: listed in the manifest but missing",
                        f"{tmp_path}/late.txt: not in the manifest (added after sealing)",
                        f"{tmp_path}/evidence.jsonl: sha256 differs from the manifest (changed after sealing)"]
    (tmp_path / "manifest.json").unlink()
    assert verify_set(tmp_path) == [f"{tmp_path}/manifest.json: missing: the set was never sealed"]


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                   capture_output=True)


def test_tree_state_records_uncommitted_changes_with_a_digest(tmp_path):
    assert tree_state(str(tmp_path)) == TreeState("unknown", None, None)
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "x")
    tree_state.cache_clear()
    git_commit.cache_clear()
    clean = tree_state(str(tmp_path))
    assert len(clean.commit) == 40 and (clean.dirty, clean.diff_digest) == (False, None)
    (tmp_path / "a.py").write_text("x = 2\n")
    tree_state.cache_clear()
    dirty = tree_state(str(tmp_path))
    assert dirty.commit == clean.commit and dirty.dirty is True and dirty.diff_digest.startswith("sha256:")
    (tmp_path / "a.py").write_text("x = 3\n")
    tree_state.cache_clear()
    assert tree_state(str(tmp_path)).diff_digest != dirty.diff_digest  # the digest is of the change
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "new.txt").write_text("untracked\n")
    tree_state.cache_clear()
    assert tree_state(str(tmp_path)).dirty is True  # an untracked file is a change too
    tree_state.cache_clear()


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
