"""Every item judged only by current evidence: the commit and config digest, the freshness
windows, each verified_by form, and what a failure, a skip or a missing record does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_support import (
    COMMIT,
    NOW,
    OTHER,
    ago,
    checklist,
    config_copy,
    digest,
    junit,
    record,
    validation_doc,
    write_set,
)

from harness.report.build import collect
from harness.report.readiness import Readiness, junit_matcher
from harness.report.sets import JUnitCase


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return config_copy(tmp_path)


def judged(cfg: Path, *sets: Path, commit: str = COMMIT) -> Readiness:
    return collect(list(sets), config_dir=cfg, commit=commit, now=NOW)


def status(r: Readiness, item: str) -> str:
    return next(x.status for x in r.items if x.item.id == item)


def result(r: Readiness, item: str) -> Any:
    return next(x for x in r.items if x.item.id == item)


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


def test_scenarios_verified_only_when_every_cited_one_passed_at_this_commit_and_config(cfg, tmp_path):
    checklist(cfg, [("C2.drawdown", {"scenarios": ["a", "b"]})])
    one = write_set(tmp_path / "one", records=[record("a")])
    assert status(judged(cfg, one), "C2.drawdown") == "not_run"  # b never ran
    both = write_set(tmp_path / "both", records=[record("a"), record("b")])
    r = judged(cfg, both)
    assert status(r, "C2.drawdown") == "verified"
    assert (r.verified, r.total) == (1, 1)
    bad = write_set(tmp_path / "bad", records=[record("a"), record("b", verdict="fail")])
    assert status(judged(cfg, bad), "C2.drawdown") == "failed"
    err = write_set(tmp_path / "err", records=[record("a"), record("b", verdict="error")])
    assert status(judged(cfg, err), "C2.drawdown") == "failed"  # an error is never a pass


def test_evidence_from_another_commit_or_config_is_stale_not_verified(cfg, tmp_path):
    checklist(cfg, [("C2.drawdown", {"scenarios": ["a"]})])
    old = write_set(tmp_path / "old", records=[record("a", commit=OTHER)], commit=OTHER)
    r = judged(cfg, old)
    assert status(r, "C2.drawdown") == "stale"
    assert "not the target" in result(r, "C2.drawdown").forms[0].proofs[0].currency
    drifted = write_set(tmp_path / "drift", records=[record("a", config_digest="sha256:" + "ab" * 32)])
    r = judged(cfg, drifted)
    assert status(r, "C2.drawdown") == "stale"
    assert "config digest" in result(r, "C2.drawdown").forms[0].proofs[0].currency
    # pets evidence is judged against the pets digest, not the futures one
    pets = write_set(tmp_path / "pets", records=[record("a", profile="pets")])
    assert status(judged(cfg, pets), "C2.drawdown") == "verified"
    wrong = write_set(tmp_path / "wrong", records=[record("a", profile="pets", config_digest=digest("futures"))])
    assert status(judged(cfg, wrong), "C2.drawdown") == "stale"


def test_a_failure_at_another_commit_is_stale_and_the_newest_current_record_decides(cfg, tmp_path):
    checklist(cfg, [("C2.drawdown", {"scenarios": ["a"]})])
    old_fail = write_set(tmp_path / "f", records=[record("a", verdict="fail", commit=OTHER)], commit=OTHER)
    assert status(judged(cfg, old_fail), "C2.drawdown") == "stale"
    early_fail = write_set(tmp_path / "e", records=[record("a", verdict="fail", started=ago(hours=2))])
    late_pass = write_set(tmp_path / "l", records=[record("a", started=ago(hours=1))])
    r = judged(cfg, early_fail, late_pass)
    assert status(r, "C2.drawdown") == "verified"
    assert "earlier current run failed" in result(r, "C2.drawdown").forms[0].proofs[0].summary
    late_fail = write_set(tmp_path / "lf", records=[record("a", verdict="fail", started=ago(minutes=5))])
    assert status(judged(cfg, early_fail, late_pass, late_fail), "C2.drawdown") == "failed"


def test_real_time_game_day_evidence_counts_across_commits_within_its_window(cfg, tmp_path):
    checklist(cfg, [("C2.latency", {"scenarios": ["net-ws-lag-pauses"]})])
    fresh = write_set(tmp_path / "fresh", records=[record("net-ws-lag-pauses", commit=OTHER, mode="net",
                                                          time_scale=1.0, started=ago(days=6.9))], commit=OTHER)
    assert status(judged(cfg, fresh), "C2.latency") == "verified"
    old = write_set(tmp_path / "old", records=[record("net-ws-lag-pauses", commit=OTHER, mode="net",
                                                      time_scale=1.0, started=ago(days=7.1))], commit=OTHER)
    r = judged(cfg, old)
    assert status(r, "C2.latency") == "stale"
    assert "past the 7-day window" in result(r, "C2.latency").forms[0].proofs[0].currency
    scaled = write_set(tmp_path / "scaled", records=[record("net-ws-lag-pauses", commit=OTHER, mode="net",
                                                            time_scale=0.1, started=ago(hours=1))], commit=OTHER)
    assert status(judged(cfg, scaled), "C2.latency") == "stale"  # a time-scaled gate run is no game day


def test_freshness_windows_come_from_config(cfg, tmp_path):
    checklist(cfg, [("C2.drawdown", {"scenarios": ["a"]})])
    doc = yaml.safe_load((cfg / "report.yaml").read_text())
    doc["freshness"]["scenarios"] = {"same_commit_days": 1, "other_commit_days": 3}
    (cfg / "report.yaml").write_text(yaml.safe_dump(doc))
    same_old = write_set(tmp_path / "s", records=[record("a", started=ago(days=2))])
    assert status(judged(cfg, same_old), "C2.drawdown") == "stale"
    other_recent = write_set(tmp_path / "o", records=[record("a", commit=OTHER, started=ago(days=2))], commit=OTHER)
    assert status(judged(cfg, other_recent), "C2.drawdown") == "verified"


def test_an_unknown_target_commit_never_matches_unknown_evidence(cfg, tmp_path):
    checklist(cfg, [("C2.drawdown", {"scenarios": ["a"]})])
    s = write_set(tmp_path / "u", records=[record("a", commit="unknown")], commit="unknown")
    assert status(judged(cfg, s, commit="unknown"), "C2.drawdown") == "stale"


# --------------------------------------------------------------------------------------------
# Tests (junit.xml)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "hits", "misses"), [
    ("tests/core/test_sizing.py", [("tests.core.test_sizing", "test_a"), ("tests.core.test_sizing.TestK", "test_b")],
     [("tests.core.test_sizing_extra", "test_a"), ("tests.core", "test_sizing")]),
    ("tests/core", [("tests.core.test_sizing", "test_a")], [("tests.corex.test", "t"), ("tests", "core")]),
    ("tests/core/test_sizing.py::test_a",
     [("tests.core.test_sizing", "test_a"), ("tests.core.test_sizing", "test_a[1]")],
     [("tests.core.test_sizing", "test_ab"), ("tests.core.test_sizing.K", "test_a")]),
    ("tests/x.py::TestK::test_b[2]", [("tests.x.TestK", "test_b[2]")],
     [("tests.x.TestK", "test_b[1]"), ("tests.x", "test_b[2]")]),
])
def test_a_tests_reference_matches_junit_cases_by_module_class_and_name(ref, hits, misses):
    match = junit_matcher(ref)
    assert all(match(JUnitCase(c, n, "passed", 0.0)) for c, n in hits)
    assert not any(match(JUnitCase(c, n, "passed", 0.0)) for c, n in misses)


def test_tests_count_only_when_they_ran_and_passed_in_a_trusted_set(cfg, tmp_path):
    checklist(cfg, [("C1.sizing", {"tests": ["tests/core/test_sizing.py"]})])
    ok = write_set(tmp_path / "ok", junit_xml=junit([("tests.core.test_sizing", "test_a", "passed"),
                                                     ("tests.core.test_sizing", "test_b", "passed")]))
    r = judged(cfg, ok)
    assert status(r, "C1.sizing") == "verified"
    assert "2 tests (tests/core/test_sizing.py)" in result(r, "C1.sizing").reason
    failed = write_set(tmp_path / "f", junit_xml=junit([("tests.core.test_sizing", "test_a", "passed"),
                                                        ("tests.core.test_sizing", "test_b", "failed")]))
    assert status(judged(cfg, failed), "C1.sizing") == "failed"
    errored = write_set(tmp_path / "e", junit_xml=junit([("tests.core.test_sizing", "test_a", "error")]))
    assert status(judged(cfg, errored), "C1.sizing") == "failed"
    skipped = write_set(tmp_path / "s", junit_xml=junit([("tests.core.test_sizing", "test_a", "passed"),
                                                         ("tests.core.test_sizing", "test_b", "skipped")]))
    assert status(judged(cfg, skipped), "C1.sizing") == "not_run"
    elsewhere = write_set(tmp_path / "x", junit_xml=junit([("tests.core.test_exits", "test_a", "passed")]))
    assert status(judged(cfg, elsewhere), "C1.sizing") == "not_run"
    other = write_set(tmp_path / "o", junit_xml=junit([("tests.core.test_sizing", "test_a", "passed")]), commit=OTHER)
    assert status(judged(cfg, other), "C1.sizing") == "stale"
    unsealed = write_set(tmp_path / "u", junit_xml=junit([("tests.core.test_sizing", "test_a", "passed")]), seal=False)
    assert status(judged(cfg, unsealed), "C1.sizing") == "not_run"


# --------------------------------------------------------------------------------------------
# Scans, validation
# --------------------------------------------------------------------------------------------


def security(*checks: tuple[str, str], commit: str = COMMIT, at: Any = NOW) -> dict[str, Any]:
    return {"schema": "gameday.security/v1", "git_commit": commit, "created_at": at.isoformat(),
            "checks": [{"name": n, "verdict": v, "summary": f"{n} said {v}", "findings": 0} for n, v in checks]}


def test_scans_pass_fail_and_not_verified_is_never_a_pass(cfg, tmp_path):
    checklist(cfg, [("D2.image_scan", {"scans": ["trivy-config", "pip-audit"]}), ("D1.secrets", {"scans": ["bandit"]})])
    s = write_set(tmp_path / "s", security=security(("trivy-config", "pass"), ("pip-audit", "not verified"),
                                                     ("bandit", "fail")))
    r = judged(cfg, s)
    assert status(r, "D2.image_scan") == "not_run"
    assert "not verified" in result(r, "D2.image_scan").reason
    assert status(r, "D1.secrets") == "failed"
    good = write_set(tmp_path / "g", security=security(("trivy-config", "pass"), ("pip-audit", "passed")))
    assert status(judged(cfg, good), "D2.image_scan") == "verified"


def test_a_scan_older_than_a_day_is_stale_even_at_this_commit(cfg, tmp_path):
    checklist(cfg, [("D1.secrets", {"scans": ["bandit"]})])
    day_old = write_set(tmp_path / "d", security=security(("bandit", "pass"), at=ago(hours=25)), created=ago(hours=25))
    assert status(judged(cfg, day_old), "D1.secrets") == "stale"
    recent = write_set(tmp_path / "r", security=security(("bandit", "pass"), at=ago(hours=23)))
    assert status(judged(cfg, recent), "D1.secrets") == "verified"


def test_validation_by_profile_verdict_and_config_digest(cfg, tmp_path):
    checklist(cfg, [("PETS.trading_logic", {"validation": ["pets"]})])
    ok = judged(cfg, write_set(tmp_path / "p", validation=validation_doc("pets", "pass")))
    assert status(ok, "PETS.trading_logic") == "verified"
    bad = judged(cfg, write_set(tmp_path / "f", validation=validation_doc("pets", "fail", win_rate=0.52)))
    assert status(bad, "PETS.trading_logic") == "failed"
    proof = result(bad, "PETS.trading_logic").forms[0].proofs[0]
    assert proof.summary == "failed: missed 1 of 2 thresholds set: min_win_rate"
    assert ("fail", "win_rate: 0.52 (at least 0.6)") in proof.lines and not any("sharpe" in t for _, t in proof.lines)
    drifted = validation_doc("pets", "pass", config_digest=digest("futures"))
    assert status(judged(cfg, write_set(tmp_path / "d", validation=drifted)), "PETS.trading_logic") == "stale"
    futures = validation_doc("futures", "pass")
    assert status(judged(cfg, write_set(tmp_path / "o", validation=futures)), "PETS.trading_logic") == "not_run"


def test_an_item_citing_nothing_is_not_run_and_says_why(cfg, tmp_path):
    checklist(cfg, [("D1.secrets", {}), ("D2.network", {"none": "needs a TLS scan the security gate will add"})])
    r = judged(cfg, write_set(tmp_path / "s", records=[record("a")]))
    assert status(r, "D1.secrets") == "not_run" and "no evidence is cited" in result(r, "D1.secrets").reason
    assert result(r, "D2.network").reason == "needs a TLS scan the security gate will add"


# --------------------------------------------------------------------------------------------
# Manual items
# --------------------------------------------------------------------------------------------


def test_manual_items_need_a_current_attestation_and_never_count_toward_the_figure(cfg, tmp_path):
    from harness.report.attest import attest
    from harness.report.checklist import load_checklist
    from harness.report.config import load_report_config

    checklist(cfg, [("PETS.signoff.monitoring", {"manual": {"by": "trading ops", "what": "alerts received"}}),
                    ("C2.drawdown", {"scenarios": ["a"]})])
    s = write_set(tmp_path / "s", records=[record("a")])
    r = judged(cfg, s)
    assert status(r, "PETS.signoff.monitoring") == "not_run"
    assert "awaiting attestation (trading ops)" in result(r, "PETS.signoff.monitoring").reason
    items, config = load_checklist(cfg), load_report_config(cfg)
    attest(cfg, items, config, "PETS.signoff.monitoring", "Ola Ops", "test alert seen in #ops", "30", now=ago(days=1))
    r = judged(cfg, s)
    assert status(r, "PETS.signoff.monitoring") == "manual"
    assert (r.verified, r.total, r.counts["manual"]) == (1, 2, 1)  # shown apart, not counted
    assert "attested by Ola Ops (trading ops)" in result(r, "PETS.signoff.monitoring").reason
    expired = collect([s], config_dir=cfg, commit=COMMIT, now=NOW.replace(month=8))
    assert status(expired, "PETS.signoff.monitoring") == "stale"
    # the item now asks for something else: the old attestation no longer answers it
    checklist(cfg, [("PETS.signoff.monitoring", {"manual": {"by": "trading ops", "what": "alerts AND pages received"}}),
                    ("C2.drawdown", {"scenarios": ["a"]})])
    r = judged(cfg, s)
    assert status(r, "PETS.signoff.monitoring") == "stale"
    assert "asks for something else" in result(r, "PETS.signoff.monitoring").reason


# --------------------------------------------------------------------------------------------
# Property: the figure never counts an item without current, passing evidence for every reference
# --------------------------------------------------------------------------------------------

_RECORDS = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["pass", "fail", "error"]),
                              st.booleans(), st.integers(0, 72)), max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=st.lists(_RECORDS, min_size=1, max_size=3))
def test_property_verified_means_every_cited_scenario_newest_current_record_passed(cfg, tmp_path_factory, sets):
    checklist(cfg, [("C2.drawdown", {"scenarios": ["a", "b"]}), ("C2.volatility", {"scenarios": ["c"]})])
    base = tmp_path_factory.mktemp("sets")
    dirs = []
    for n, recs in enumerate(sets):
        records = [record(sid, verdict=v, commit=COMMIT if same else OTHER, started=ago(hours=h))
                   for sid, v, same, h in recs]
        if records:
            dirs.append(write_set(base / f"s{n}", records=records))
    if not dirs:
        return
    r = judged(cfg, *dirs)
    flat = [(sid, v, same, h) for recs in sets for sid, v, same, h in recs]
    for item, refs in (("C2.drawdown", ("a", "b")), ("C2.volatility", ("c",))):
        oracle = []
        for ref in refs:
            current = [(h, v) for sid, v, same, h in flat if sid == ref and same]
            oracle.append(bool(current) and min(current)[1] == "pass" if len({h for h, _ in current}) == len(current)
                          else None)
        got = status(r, item)
        if None in oracle:  # two current records at the same instant: which is newest is a tie
            continue
        assert (got == "verified") == all(oracle), (item, got, oracle, flat)
    assert r.verified == sum(1 for x in r.items if x.status == "verified")


def test_a_runbook_drill_counts_at_production_time_scale_only(cfg, tmp_path):
    checklist(cfg, [("D3.credential_leak", {"drills": ["credential_leak"]})])
    assert status(judged(cfg), "D3.credential_leak") == "not_run"
    real = write_set(tmp_path / "real", records=[record("drill-credential-leak", ("D3.credential_leak",),
                                                        mode="net", time_scale=1.0, started=ago(days=1))])
    r = judged(cfg, real)
    assert status(r, "D3.credential_leak") == "verified"
    form = result(r, "D3.credential_leak").forms[0]
    assert (form.kind, form.label, form.proofs[0].ref) == ("drills", "Runbook drills", "credential_leak")
    scaled = write_set(tmp_path / "scaled", records=[record("drill-credential-leak", ("D3.credential_leak",),
                                                            mode="net", time_scale=0.1, started=ago(hours=1))])
    r = judged(cfg, scaled)
    assert status(r, "D3.credential_leak") == "not_run"
    assert "ran only at time scale 0.1" in result(r, "D3.credential_leak").forms[0].proofs[0].summary
    failed = write_set(tmp_path / "failed", records=[record("drill-credential-leak", ("D3.credential_leak",), "fail",
                                                            mode="net", time_scale=1.0, started=ago(hours=2))])
    assert status(judged(cfg, failed), "D3.credential_leak") == "failed"
