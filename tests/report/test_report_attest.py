"""`gameday attest` and config/report.yaml: a named person attests a manual item, audited in a
hash chain; a hand-edited entry, a broken chain or a bad expiry never counts; config problems
name file, key, value and the allowed range."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml
from report_support import NOW, ago, config_copy

from bot.config import ConfigError
from bot.io.audit import verify
from harness import cli
from harness.report.attest import AttestError, attest, load_attestations, parse_expiry
from harness.report.checklist import load_checklist
from harness.report.config import load_report_config

ITEM = "PETS.signoff.security_audit"


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return config_copy(tmp_path)


def test_the_pets_sign_off_list_is_in_the_checklist_as_manual_items():
    items = {i.id: i for i in load_checklist(Path(__file__).resolve().parents[2] / "config")}
    signoff = {k: v for k, v in items.items() if k.startswith("PETS.signoff.")}
    assert sorted(signoff) == sorted(f"PETS.signoff.{n}" for n in (
        "developer_review", "security_audit", "paper_trading", "stakeholders", "emergency_contacts", "monitoring"))
    assert all(i.manual is not None and i.manual.by and i.manual.what for i in signoff.values())


def test_attest_from_the_command_line_records_audit_then_yaml(cfg, capsys):
    code = cli.main(["attest", ITEM, "--by", "Sam Auditor", "--note", "report 2026-06 reviewed", "--expires", "30",
                     "--config", str(cfg)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"attested {ITEM} by Sam Auditor (for the role auditor)" in out
    doc = yaml.safe_load((cfg / "attestations.yaml").read_text())
    entry = doc["attestations"][0]
    assert (entry["item"], entry["by"], entry["role"], entry["note"]) == (ITEM, "Sam Auditor", "auditor",
                                                                         "report 2026-06 reviewed")
    assert verify(cfg / "attestations.audit.jsonl").ok
    audit = json.loads((cfg / "attestations.audit.jsonl").read_text().splitlines()[0])
    assert (audit["actor"], audit["action"], audit["details"]["item"]) == ("Sam Auditor", "checklist.attested", ITEM)
    assert entry["audit"] == {"seq": 1, "hash": audit["hash"]}
    book = load_attestations(cfg)
    assert book.problems == [] and book.latest(ITEM).by == "Sam Auditor"  # type: ignore[union-attr]


@pytest.mark.parametrize(("argv", "message"), [
    (["C2.drawdown", "--by", "X Y"], "is verified by scenarios, tests, not by a person"),
    (["PETS.signoff.security_audi", "--by", "X Y"], f"did you mean {ITEM}?"),
    ([ITEM, "--by", "   "], "--by: the name of the person"),
    ([ITEM, "--by", "42"], "--by: the name of the person"),
    ([ITEM, "--by", "X Y", "--expires", "0"], "between 1 and 365 days"),
    ([ITEM, "--by", "X Y", "--expires", "2001-01-01"], "must be after today"),
    ([ITEM, "--by", "X Y", "--expires", "next week"], "expected a date (YYYY-MM-DD) or a number of days"),
])
def test_a_bad_attestation_is_refused_with_the_reason_and_nothing_is_written(cfg, capsys, argv, message):
    code = cli.main(["attest", *argv, "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (cfg / "attestations.audit.jsonl").exists()
    assert yaml.safe_load((cfg / "attestations.yaml").read_text())["attestations"] == []


def test_expiry_defaults_and_limits_come_from_config(cfg):
    config = load_report_config(cfg)
    today = date(2026, 6, 1)
    assert parse_expiry(None, today, config) == date(2026, 8, 30)  # default_expiry_days: 90
    assert parse_expiry("365", today, config) == date(2027, 6, 1)
    assert parse_expiry("2026-06-02", today, config) == date(2026, 6, 2)
    with pytest.raises(AttestError, match="at most 365 days ahead"):
        parse_expiry("2027-06-02", today, config)


def test_a_hand_edited_entry_or_a_broken_chain_does_not_count(cfg):
    items, config = load_checklist(cfg), load_report_config(cfg)
    attest(cfg, items, config, ITEM, "Sam Auditor", now=ago(days=2))
    attest(cfg, items, config, "PETS.signoff.monitoring", "Ola Ops", now=ago(days=1))
    assert len(load_attestations(cfg).attestations) == 2
    text = (cfg / "attestations.yaml").read_text()
    (cfg / "attestations.yaml").write_text(text.replace("Ola Ops", "Someone Else"))
    book = load_attestations(cfg)
    assert [a.by for a in book.attestations] == ["Sam Auditor"]
    assert any("differs from audit record 2 (edited by hand?)" in p for p in book.problems)
    (cfg / "attestations.yaml").write_text(text)
    lines = (cfg / "attestations.audit.jsonl").read_text().splitlines(keepends=True)
    (cfg / "attestations.audit.jsonl").write_text(lines[0].replace("Sam Auditor", "Sam Auditer", 1) + lines[1])
    book = load_attestations(cfg)
    assert book.attestations == []
    assert any("attestations.audit.jsonl:1:" in p for p in book.problems)
    (cfg / "attestations.audit.jsonl").unlink()
    book = load_attestations(cfg)
    assert book.attestations == [] and "is missing" in book.problems[0]


def test_an_attestation_is_dated_by_the_clock_and_kept_with_the_commit(cfg):
    items, config = load_checklist(cfg), load_report_config(cfg)
    given = attest(cfg, items, config, ITEM, "Sam  Auditor", "  spaced   note ", "2026-07-01", now=NOW)
    assert (given.by, given.note, given.expires, given.at) == ("Sam Auditor", "spaced note", date(2026, 7, 1), NOW)
    assert given.commit  # the checkout's HEAD (or "unknown" outside git)


# --------------------------------------------------------------------------------------------
# config/report.yaml
# --------------------------------------------------------------------------------------------


def _broken(cfg: Path, edit) -> str:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "report.yaml").read_text())
    edit(doc)
    (cfg / "report.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        load_report_config(cfg)
    return str(info.value)


def test_report_config_problems_name_file_key_value_and_range(cfg):
    assert load_report_config(cfg).freshness["scans"].same_commit_days == 1
    msg = _broken(cfg, lambda d: d["freshness"]["scans"].update(same_commit_days=-1))
    assert "report.yaml: freshness.scans.same_commit_days: out of range (got -1; expected a number of days" in msg
    msg = _broken(cfg, lambda d: d["freshness"].update(gamedays=d["freshness"].pop("game_days")))
    assert "freshness.gamedays: unknown key" in msg and "freshness.game_days: missing key" in msg
    msg = _broken(cfg, lambda d: d["freshness"]["tests"].update(other_commit_days="never"))
    assert "freshness.tests.other_commit_days: wrong type (got 'never'" in msg
    msg = _broken(cfg, lambda d: d["attestations"].update(default_expiry_days=400))
    assert "attestations.default_expiry_days: longer than the maximum (got 400; expected at most" in msg
    (cfg / "report.yaml").unlink()
    with pytest.raises(ConfigError, match="report.yaml: \\(file\\): file not found"):
        load_report_config(cfg)


def test_a_checklist_with_an_unknown_evidence_form_is_refused(cfg):
    doc = yaml.safe_load((cfg / "checklist.yaml").read_text())
    doc["items"][0]["verified_by"] = {"scenario": ["x"]}
    doc["items"][1]["verified_by"] = {"manual": {"by": "risk manager"}}
    (cfg / "checklist.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        load_checklist(cfg)
    assert "items[0] (C1.sizing).verified_by.scenario: unknown form" in str(info.value)
    assert "items[1] (C1.exits).verified_by.manual: wrong shape" in str(info.value)
