"""config/checklist.yaml: every claim it makes resolves (harness/checklist.py), and its items and
the scenarios' `covers:` tell the same story, both ways."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from harness.checklist import (
    SCAN_NAMES,
    ChecklistError,
    check_test_reference,
    load_checklist,
    reference_problems,
)
from harness.scenario import known_profiles, load_scenario

ROOT = Path(__file__).resolve().parents[2]
CHECKLIST = ROOT / "config" / "checklist.yaml"


def catalog_covers() -> dict[str, tuple[str, ...]]:
    return {s.id: s.covers for s in (load_scenario(p) for p in sorted((ROOT / "scenarios").rglob("*.yaml")))}


def test_every_verified_by_reference_resolves():
    problems = reference_problems(load_checklist(CHECKLIST), root=ROOT, scenario_covers=catalog_covers(),
                                  profiles=known_profiles())
    assert problems == []


def test_every_checklist_scenario_exists_and_every_covers_is_listed():
    items = load_checklist(CHECKLIST)
    ids = sorted((i.id for i in items), key=len, reverse=True)
    listed = {i.id: set(i.verified_by.get("scenarios") or []) for i in items}
    covered: dict[str, set[str]] = defaultdict(set)
    for sid, covers in catalog_covers().items():
        for cited in covers:
            item = next(i for i in ids if cited == i or cited.startswith(i + "."))
            covered[item].add(sid)
    problems = [f"{item}: listed but not covering it: {sorted(listed[item] - covered[item])}; covering it but "
                f"not listed: {sorted(covered[item] - listed[item])}"
                for item in listed if listed[item] != covered[item]]
    assert problems == []


def test_the_header_documents_the_allowed_forms():
    header = CHECKLIST.read_text().split("items:", 1)[0]
    for key in ("scenarios:", "tests:", "scans:", "validation:", "drills:", "manual:", "none:"):
        assert f"#   {key}" in header, key
    assert all(name in header for name in SCAN_NAMES)


BAD = """
items:
  - id: C2.drawdown
    verified_by:
      scenarios: [drawdown-critical-halts-futures, no-such-scenario, key-revoked-stops-trading]
      tests: [tests/runtime/test_startup.py, tests/core/test_breakers.py::test_nope,
              tests/core/test_breakers.py, tests/core/test_events.py::test_event_problems_names_what_is_wrong,
              "tests/core/test_events.py::test_optional_nullable_and_enum_fields[fields0-0]"]
      scans: [bandit, trivvy-secret]
      validation: [futures, prod]
  - id: D3.credential_leak
    verified_by:
      scenarios: [key-revoked-stops-trading]
  - id: D1.secrets
    verified_by: {}
  - id: D1.access_control
    verified_by:
      none: ""
  - id: D2.network
    verified_by:
      none: "later"
      manual: {by: auditor, what: checks TLS}
  - id: D2.container
    verified_by:
      manual: {by: auditor}
      attested: yes
"""


def test_each_false_claim_is_named(tmp_path):
    path = tmp_path / "checklist.yaml"
    path.write_text(BAD)
    problems = reference_problems(load_checklist(path), root=ROOT, scenario_covers=catalog_covers(),
                                  profiles=known_profiles())
    f = str(path)
    assert problems == [
        f"{f}:5: C2.drawdown: verified_by.scenarios: no-such-scenario: no such scenario in the catalog",
        f"{f}:5: C2.drawdown: verified_by.scenarios: key-revoked-stops-trading: the scenario does not list "
        "C2.drawdown in its covers: (it covers D1.key_rotation)",
        f"{f}:5: C2.drawdown: verified_by.tests: tests/runtime/test_startup.py: no such test file",
        f"{f}:5: C2.drawdown: verified_by.tests: tests/core/test_breakers.py::test_nope: tests/core/test_breakers.py "
        "has no test_nope",
        f"{f}:5: C2.drawdown: verified_by.scans: trivvy-secret: unknown scan (known: {', '.join(sorted(SCAN_NAMES))})",
        f"{f}:5: C2.drawdown: verified_by.validation: prod: unknown profile (known: futures, pets)",
        f"{f}:13: D3.credential_leak: verified_by.scenarios: key-revoked-stops-trading: the scenario does not list "
        "D3.credential_leak in its covers: (it covers D1.key_rotation)",
        f"{f}:15: D1.secrets: verified_by: expected a mapping with one or more of scenarios, tests, scans, "
        "validation, drills, manual, none; an item with no machine evidence says verified_by: {none: \"why\"}",
        f"{f}:18: D1.access_control: verified_by.none: expected the reason no machine evidence exists yet (text)",
        f"{f}:21: D2.network: verified_by: none: means no evidence; it cannot stand beside manual",
        f"{f}:25: D2.container: verified_by.attested: unknown key (allowed: scenarios, tests, scans, validation, "
        "drills, manual, none)",
        f"{f}:25: D2.container: verified_by.manual: expected {{by: <role>, what: <what the human attests>}} "
        "(got {'by': 'auditor'})",
    ]


def test_check_test_reference_resolves_paths_functions_classes_and_parameters(tmp_path):
    (tmp_path / "t.py").write_text("class TestA:\n    def test_b(self): pass\n\nasync def test_c(): pass\n")
    assert check_test_reference(tmp_path, "t.py") is None
    assert check_test_reference(tmp_path, "t.py::TestA::test_b") is None
    assert check_test_reference(tmp_path, "t.py::test_c[case-1]") is None
    assert check_test_reference(tmp_path, "t.py::TestA::test_x") == "t.py has no TestA::test_x"
    assert check_test_reference(tmp_path, "t.py::test_b") == "t.py has no test_b"
    assert check_test_reference(tmp_path, "u.py") == "no such test file"


def test_a_malformed_checklist_is_an_error_with_file_and_line(tmp_path):
    path = tmp_path / "checklist.yaml"
    path.write_text("items:\n  - id: C2.drawdown\n    verified: {}\n  - id: c2\n  - id: C2.drawdown\n")
    with pytest.raises(ChecklistError) as err:
        load_checklist(path)
    assert str(err.value).splitlines() == [
        f"{path}:3: items[0].verified: unknown key (allowed: id, source, section, text, verified_by)",
        f"{path}:4: items[1].id: expected an id like C2.drawdown or PETS.wallet (got 'c2')",
        f"{path}:5: items[2].id: duplicate id 'C2.drawdown' (first at line 2)",
    ]
    with pytest.raises(ChecklistError, match="not found"):
        load_checklist(tmp_path / "missing.yaml")


def test_a_drill_citation_must_be_a_runbook_whose_drill_covers_the_item_and_is_scheduled(tmp_path):
    from harness.checklist import drill_reference_problem

    assert drill_reference_problem(ROOT, "credential_leak", "D1.key_rotation") is None
    assert "no such runbook" in (drill_reference_problem(ROOT, "credential_leek", "D3.credential_leak") or "")
    assert "does not cover D1.key_rotation" in (drill_reference_problem(ROOT, "exchange_outage", "D1.key_rotation")
                                                or "")
    # a workflow that drills at a reduced time scale, or with a human, or on no schedule, is no evidence
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "credential_leak.yaml").write_text("runbook: credential_leak\n")
    flows = tmp_path / ".github" / "workflows"
    flows.mkdir(parents=True)
    good = ("on:\n  schedule: [{cron: '1 1 * * *'}]\njobs:\n  d:\n    steps:\n      - run: |\n"
            "          for rb in credential_leak kill_switch; do\n"
            "            gameday drill --runbook \"$rb\" --operator-script x.yaml --time-scale 1; done\n")
    for text, ok in [(good, True), (good.replace("--time-scale 1", "--time-scale 0.1"), False),
                     (good.replace(" --operator-script x.yaml", " --operator ann"), False),
                     (good.replace("  schedule: [{cron: '1 1 * * *'}]", "  workflow_dispatch: {}"), False)]:
        (flows / "game-day.yml").write_text(text)
        problem = drill_reference_problem(tmp_path, "credential_leak", "D3.credential_leak")
        assert (problem is None) is ok, (text, problem)
        if not ok:
            assert "does not run it on its schedule" in (problem or "")
