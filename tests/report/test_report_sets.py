"""Evidence sets as the report finds and trusts them: a manifest that does not match makes a set
tampered and never counted; sets holding only some files are read for what they hold."""

from __future__ import annotations

import json

import pytest
from report_support import COMMIT, NOW, junit, record, sarif, validation_doc, write_set

from harness.report.sets import SetError, find_sets, load_set, read_stream


def test_a_sealed_set_is_read_for_what_it_holds(tmp_path):
    s = write_set(tmp_path / "run", records=[record("a"), record("b", verdict="fail")],
                  junit_xml=junit([("tests.core.test_sizing", "test_a", "passed"),
                                   ("tests.core.test_sizing", "test_b", "skipped")]),
                  streams={"a": [{"name": "trading.halted", "ts_ms": 5, "reason": "x"},
                                 {"name": "breaker.tripped", "ts_ms": 2, "breaker": "drawdown"}]})
    got = load_set(s)
    assert got.trust == "sealed" and got.counted and got.problems == []
    assert got.commit == COMMIT and got.created_at == NOW
    assert [r["scenario"] for r in got.records] == ["a", "b"]
    assert [(c.name, c.outcome) for c in got.testcases] == [("test_a", "passed"), ("test_b", "skipped")]
    assert [e["name"] for e in read_stream(got.streams["a"])] == ["breaker.tripped", "trading.halted"]  # by time


@pytest.mark.parametrize("damage", ["edit", "delete", "add", "add-nested-file", "escape"])
def test_a_set_whose_manifest_does_not_match_is_tampered_and_not_counted(tmp_path, damage):
    s = write_set(tmp_path / "run", records=[record("a", verdict="fail")], streams={"a": [{"name": "x", "ts_ms": 1}]},
                  stream_layout="net")
    if damage == "edit":  # the classic: turn a failure into a pass
        text = (s / "evidence.jsonl").read_text().replace('"verdict": "fail"', '"verdict": "pass"')
        (s / "evidence.jsonl").write_text(text)
        why = "evidence.jsonl: sha256 differs"
    elif damage == "delete":
        (s / "net" / "a" / "events.jsonl").unlink()
        why = "net/a/events.jsonl: listed in the manifest but missing"
    elif damage == "add":
        (s / "junit.xml").write_text(junit([("tests.core.test_sizing", "test_a", "passed")]))
        why = "junit.xml: not in the manifest"
    elif damage == "add-nested-file":
        (s / "net" / "a" / "extra.jsonl").write_text("{}\n")
        why = "net/a/extra.jsonl: not in the manifest"
    else:
        manifest = json.loads((s / "manifest.json").read_text())
        manifest["files"]["../outside.txt"] = "sha256:" + "0" * 64
        (s / "manifest.json").write_text(json.dumps(manifest))
        why = "outside the set"
    got = load_set(s)
    assert got.trust == "tampered" and not got.counted
    assert any(why in p for p in got.problems), got.problems
    assert got.records == []  # never read further


def test_unsealed_and_unreadable_sets_are_shown_not_counted(tmp_path):
    unsealed = load_set(write_set(tmp_path / "u", records=[record("a")], seal=False))
    assert unsealed.trust == "unsealed" and "no manifest.json" in unsealed.problems[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "evidence.jsonl").write_text(json.dumps(record("a")) + "\nnot json\n" + json.dumps({"schema": "x"}) + "\n")
    (bad / "security.json").write_text("[1, 2]")
    write_set(bad)
    got = load_set(bad)
    assert got.trust == "unreadable" and not got.counted
    assert any("evidence.jsonl:2: not JSON" in p for p in got.problems)
    assert any("evidence.jsonl:3: not a gameday.evidence/v1 record" in p for p in got.problems)
    assert any("security.json: expected a JSON object" in p for p in got.problems)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "manifest.json").write_text(json.dumps({"schema": "something/v9", "files": {}}))
    assert load_set(wrong).trust == "tampered"


def test_the_reports_own_outputs_and_nested_sets_do_not_break_the_seal(tmp_path):
    run = write_set(tmp_path / "latest", records=[record("a")])
    for name in ("report.html", "report.md", "readiness.json", "attestation.json"):
        (run / name).write_text("written after sealing, by the report")
    drill = write_set(run / "drills", drill={"schema": "gameday.drill/v1", "schedules": 3})
    assert load_set(run).trust == "sealed"
    write_set(run, records=[record("b")])  # the next run in the same directory seals the old report too...
    for name in ("report.html", "readiness.json"):
        (run / name).write_text("...and its report then replaces it")
    again = load_set(run)
    assert again.trust == "sealed" and not any(k.startswith(("report.", "readiness")) for k in again.files)
    assert [p.name for p in find_sets([tmp_path])] == ["latest", "drills"]
    assert load_set(drill).drill == {"schema": "gameday.drill/v1", "schedules": 3}


def test_sets_holding_only_some_files_are_found_and_read(tmp_path):
    write_set(tmp_path / "runs" / "20260601T000000Z-c0ffee0" / "only-scan",
              security={"checks": [{"name": "bandit", "verdict": "pass"}]})
    write_set(tmp_path / "runs" / "x" / "only-sarif",
              sarif_doc=sarif([{"ruleId": "B105", "level": "warning", "message": {"text": "hardcoded password"},
                                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "bot/x.py"},
                                                                    "region": {"startLine": 7}}}]}]))
    write_set(tmp_path / "runs" / "y", validation=validation_doc("pets", "pass"))
    (tmp_path / "latest").symlink_to(tmp_path / "runs" / "y")
    found = find_sets([tmp_path / "runs", tmp_path / "latest"])
    assert [p.name for p in found] == ["only-scan", "only-sarif", "y"]  # the symlink is the same set
    scan, sarif_set, validation = (load_set(p) for p in found)
    assert [(c.name, c.verdict) for c in scan.scans] == [("bandit", "pass")]
    assert [(f.tool, f.rule, f.level, f.location) for f in sarif_set.findings] == [
        ("bandit", "B105", "warning", "bot/x.py:7")]
    assert [(v.profile, v.verdict) for v in validation.validation] == [("pets", "pass")]


def test_a_directory_without_sets_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetError, match="no evidence set here"):
        find_sets([tmp_path / "empty"])
    with pytest.raises(SetError, match="not a directory"):
        find_sets([tmp_path / "missing"])
