"""report.html / report.md / readiness.json / attestation.json from the gallery of sets, and the
report `gameday run` writes at its end."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest
from report_support import COMMIT, NOW, ROOT, digest

from harness.report.build import write_report
from harness.report.checklist import load_checklist
from harness.report.intoto import PREDICATE_TYPE, STATEMENT_TYPE
from harness.report.sets import load_set


@pytest.fixture(scope="module")
def outputs(gallery, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(list(gallery.sets), out, config_dir=gallery.config, commit=COMMIT, now=NOW)


def ids(gallery) -> list[str]:
    return [i.id for i in load_checklist(gallery.config)]


def test_report_md_lists_every_checklist_id_and_the_summary(gallery, outputs):
    md = outputs.md.read_text()
    missing = [i for i in ids(gallery) if f"| {i} |" not in md]
    assert not missing, missing
    r = outputs.readiness
    assert md.startswith(f"## Readiness: {r.verified} of {r.total} checklist items verified by current evidence")
    for heading in ("Failed", "Stale", "Manual: human attestations, not measured evidence", "Not run"):
        assert re.search(rf"^### .* {re.escape(heading)} \(\d+\)$", md, re.M), heading
    assert "- **C2.latency**: ws-lag-pauses-entries: failed: trading.paused within 6s after lag: 7.4 s of 6 s" in md
    assert "- `tampered`: tampered: evidence.jsonl: sha256 differs from the manifest" in md
    assert "- **PETS.signoff.monitoring**: attested by Ola Ops (trading ops)" in md
    header = r"^\| ✅ Verified \| ❌ Failed \| ⌛ Stale \| ⚪ Not run \| ✍️ Manual \|\n"
    assert re.search(header + r"\|---\|---\|---\|---\|---\|\n\|( \d+ \|){5}$", md, re.M), "one GitHub table"


def test_report_html_is_one_self_contained_page_with_every_id_status_and_human_units(gallery, outputs):
    html = outputs.html.read_text()
    for i in ids(gallery):
        assert f'id="item-{i}"' in html, i
    assert "default-src 'none'" in html  # no network at view time, enforced by the page itself
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "an external resource"
    assert not re.search(r"<(script|link|iframe|img)\b", html)
    assert html.count("<svg") >= 4  # reaction vs SLA, two scenario timelines, drill history
    # statuses carry text, not colour only
    for label in ("Verified", "Failed", "Stale", "Not run", "Manual"):
        assert f"</span> {label}</span>" in html
    # observed vs SLA in human units, the commit and the config digest with each piece of evidence
    assert "0 ms of 1 bar (5 min)" in html
    assert "7.4 s of 6 s" in html
    assert COMMIT[:10] in html and digest("futures")[:19] in html  # shown shortened
    # sim runs that kept no event stream say so; the kept ones are plotted from their events
    assert "No event stream kept for" in html and "ws-lag-pauses-entries" in html
    assert "events from events/drawdown-critical-halts-futures.jsonl" in html
    assert "The stream holds no equity samples, so no equity curve is drawn." in html
    # security findings from security.sarif, verdicts from security.json
    assert "AWS access key in fixtures/leak.txt" in html and "fixtures/leak.txt:3" in html
    assert "vulnerability service unreachable" in html and "Not verified" in html
    # the drill history across sets
    assert html.count("randomized drill") >= 3


def test_readiness_json_is_the_machine_readable_version(gallery, outputs):
    doc = json.loads(outputs.json.read_text())
    assert doc["schema"] == "gameday.readiness/v1"
    assert doc["target"] == {"commit": COMMIT, "config_digests": outputs.readiness.target.digests}
    assert [i["id"] for i in doc["items"]] == ids(gallery)
    by_id = {i["id"]: i for i in doc["items"]}
    items = load_checklist(gallery.config)
    # whatever the checklist cites, an item citing a failed reference of the gallery is failed
    for kind, ref in (("scenarios", "ws-lag-pauses-entries"), ("tests", "tests/core/test_killswitch.py"),
                      ("validation", "pets"), ("scans", "trivy-secret")):
        for item in items:
            if ref in item.refs.get(kind, ()):
                assert by_id[item.id]["status"] == "failed", (item.id, kind, ref)
    sizing = next(i for i in items if i.id == "C1.sizing")
    if dict(sizing.refs) == {"tests": ("tests/core/test_sizing.py",)}:
        assert by_id["C1.sizing"]["status"] == "verified"
    assert by_id["PETS.signoff.monitoring"]["status"] == "manual"
    assert by_id["PETS.signoff.monitoring"]["attestation"]["by"] == "Ola Ops"
    r = doc["readiness"]
    assert r["verified"] == sum(1 for i in doc["items"] if i["status"] == "verified")
    assert r["total"] == len(ids(gallery))
    trust = {s["name"]: s["trust"] for s in doc["sets"]}
    assert trust["tampered"] == "tampered" and trust["20260601T113000Z-c0ffee0"] == "sealed"
    assert [d["failures"] for d in doc["drills"]] == [0, 2, 0]  # newest first
    assert {c["name"]: c["verdict"] for c in doc["security"]["checks"]} == {
        "bandit": "pass", "pip-audit": "not_verified", "trivy-secret": "fail"}


def test_attestation_json_is_an_in_toto_statement_with_a_test_result_predicate(gallery, outputs):
    assert outputs.attestation is not None
    st = json.loads(outputs.attestation.read_text())
    assert set(st) == {"_type", "subject", "predicateType", "predicate"}
    assert st["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == PREDICATE_TYPE == "https://in-toto.io/attestation/test-result/v0.1"
    # every file of every trusted set, each with the sha256 of its bytes; nothing of the tampered set
    trusted = [s for s in gallery.sets if load_set(s).counted]
    names = {s["name"]: s["digest"] for s in st["subject"]}
    for s in trusted:
        for f in sorted(x for x in s.rglob("*") if x.is_file() and x.name != "manifest.json"):
            rel = f.relative_to(s).as_posix()
            key = next(k for k in names if k.endswith(f"{s.name}/{rel}"))
            assert names[key] == {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    assert not any(k.startswith("tampered/") for k in names)
    assert all(set(d) == {"sha256"} and re.fullmatch(r"[0-9a-f]{64}", d["sha256"]) for d in names.values())
    pred = st["predicate"]
    assert set(pred) >= {"result", "configuration", "passedTests", "warnedTests", "failedTests"}
    assert pred["result"] == "FAILED"  # an item failed
    assert "checklist:C2.latency" in pred["failedTests"]
    assert {f"checklist:{i.item.id}" for i in outputs.readiness.by_status("verified")} <= set(pred["passedTests"])
    assert "checklist:PETS.signoff.monitoring" in pred["warnedTests"]  # a human act, not a measured pass
    assert "scenario:drawdown-critical-halts-futures" in pred["passedTests"]
    assert "test:tests.core.test_killswitch::test_immediate_flattens" in pred["failedTests"]
    assert "scan:pip-audit" in pred["warnedTests"] and "scan:trivy-secret" in pred["failedTests"]
    commit = next(c for c in pred["configuration"] if "gitCommit" in c.get("digest", {}))
    assert commit["digest"] == {"gitCommit": COMMIT}
    configs = [c for c in pred["configuration"] if "sha256" in c.get("digest", {})]
    assert {c["annotations"]["profile"] for c in configs} == set(outputs.readiness.target.digests)
    for c in pred["configuration"]:
        assert c.get("uri") or c.get("digest") or c.get("content")  # a ResourceDescriptor's minimum


def test_github_step_summary_gets_the_markdown_appended(gallery, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = write_report(list(gallery.sets), tmp_path / "out", config_dir=gallery.config, commit=COMMIT, now=NOW)
    assert summary.read_text() == "earlier step\n" + out.md.read_text()


def test_gameday_run_writes_the_report_into_its_sealed_set_and_gameday_report_reads_it(tmp_path):
    evidence = tmp_path / "run"
    files = [str(ROOT / "scenarios/breakers/drawdown/critical-halts-futures.yaml"),
             str(ROOT / "scenarios/safety/withdraw-enabled-key-refuses-start.yaml")]
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", *files, "--report", str(evidence), "--", "-q",
                          "-p", "no:randomly"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    root, evidence = evidence, (evidence / "latest").resolve()  # the set the run sealed
    assert f"report: {evidence / 'report.html'}" in run.stdout
    assert re.search(r"readiness: \d+ of \d+ checklist items verified by current evidence", run.stdout)
    assert load_set(evidence).trust == "sealed"  # the report's own files do not break the seal
    doc = json.loads((evidence / "readiness.json").read_text())
    statuses = {i["id"]: i["status"] for i in doc["items"]}
    assert statuses["D1.key_rotation"] == "not_run"  # key-revoked-stops-trading was not in this run
    # no unit tests in this run: an item whose scenario passed is not verified, but it is not untried
    partly = [i["id"] for i in doc["items"]
              if i["status"] != "verified"
              and any(ref["status"] == "verified" for f in i["evidence"] for ref in f["references"])]
    assert "C2.drawdown" in partly
    assert f"({len(partly)} of these partly: some of their evidence verified, the rest missing)" in run.stdout
    assert f"{len(partly)} of the items not verified are partly" in (evidence / "report.md").read_text()
    again = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(evidence), "--out", str(tmp_path / "o")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "o" / "report.html").is_file() and (tmp_path / "o" / "attestation.json").is_file()
    assert (root / "runs").is_dir() and not (root / "report.html").exists()
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(tmp_path / "nothing-here")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a directory" in bad.stderr
