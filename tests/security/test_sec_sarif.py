"""security.sarif is valid SARIF 2.1.0 (the official JSON schema, vendored in fixtures/schemas/),
one run per tool, and a not-verified check cannot be read as a clean run."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from sec_support import ROOT

from harness.security.gate import write_evidence
from harness.security.model import FAIL, NOT_VERIFIED, PASS, CheckResult, Finding
from harness.security.sarif import to_sarif

SCHEMA = json.loads((ROOT / "fixtures" / "schemas" / "sarif-2.1.0.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def _checks() -> list[CheckResult]:
    return [
        CheckResult("bandit", "bandit", FAIL, "1 finding", tool_version="1.9.4", command=["bandit", "-r", "bot"],
                    findings=[Finding("B602", "HIGH", "subprocess_popen_with_shell_equals_true: shell=True",
                                      "bot/x.py", 4, help_uri="https://bandit.readthedocs.io/b602"),
                              Finding("B101", "LOW", "assert_used: assert", "bot/y.py", 2, counted=False),
                              Finding("B113", "MEDIUM", "request_without_timeout", "bot/z.py", 9,
                                      suppressed="timeout is computed")]),
        CheckResult("pip-audit", "pip-audit", NOT_VERIFIED, "0 of 49 audited",
                    reasons=["the vulnerability service https://api.osv.dev/v1/query is unreachable"]),
        CheckResult("trivy-config", "trivy", PASS, "clean", tool_version="0.59.1"),
        CheckResult("trivy-image", "trivy", NOT_VERIFIED, "no Docker", reasons=["no Docker engine"]),
        CheckResult("host.sshd", "gameday", FAIL, "root login",
                    findings=[Finding("sshd.PermitRootLogin", "HIGH", "PermitRootLogin yes",
                                      "/etc/ssh/sshd_config", 3)]),
    ]


def test_the_gate_sarif_validates_against_the_official_schema(tmp_path: Path) -> None:
    write_evidence(tmp_path, _checks(), {}, ROOT)
    sarif = json.loads((tmp_path / "security.sarif").read_text())
    errors = sorted(VALIDATOR.iter_errors(sarif), key=str)
    assert not errors, [e.message for e in errors[:5]]
    assert [run["tool"]["driver"]["name"] for run in sarif["runs"]] == ["bandit", "pip-audit", "trivy", "gameday"]


def test_verdicts_findings_and_suppressions_in_sarif() -> None:
    runs = {r["tool"]["driver"]["name"]: r for r in to_sarif(_checks(), ROOT)["runs"]}
    levels = {(r["ruleId"], r["level"]) for r in runs["bandit"]["results"]}
    assert levels == {("B602", "error"), ("B101", "note"), ("B113", "warning")}
    [suppressed] = [r for r in runs["bandit"]["results"] if "suppressions" in r]
    assert suppressed["suppressions"][0]["justification"] == "timeout is computed"
    [invocation] = runs["pip-audit"]["invocations"]
    assert invocation["executionSuccessful"] is False and runs["pip-audit"]["results"] == []
    assert "unreachable" in invocation["toolExecutionNotifications"][0]["message"]["text"]
    assert [i["executionSuccessful"] for i in runs["trivy"]["invocations"]] == [True, False]
    location = runs["gameday"]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "file:///etc/ssh/sshd_config"}


def test_the_schema_check_can_fail() -> None:
    sarif = to_sarif(_checks(), ROOT)
    sarif["runs"][0]["results"][0]["level"] = "critical"  # not a SARIF level
    del sarif["runs"][1]["tool"]["driver"]["name"]
    messages = [e.message for e in VALIDATOR.iter_errors(sarif)]
    assert any("'critical' is not one of" in m for m in messages)
    assert any("'name' is a required property" in m for m in messages)
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate({"version": "2.0.0", "runs": []})
