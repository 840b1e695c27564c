"""SARIF 2.1.0 for the security gate: one run per tool (bandit, pip-audit, trivy, gameday).

Each check is an invocation of its tool's run: `executionSuccessful` is false when the check could
not do its job (`not verified`), with the reason as a tool execution notification, so a reader of
the SARIF alone cannot take "no results" for "nothing found". Findings over the threshold are
`error`; those below are `warning` (medium and up) or `note`; reviewed suppressions carry
`suppressions[].justification`. Rules carry `security-severity` for code-scanning dashboards.
tests/security/test_sarif.py validates the output against the SARIF 2.1.0 JSON schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.security.model import NOT_VERIFIED, CheckResult, Finding, severity_at_least

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
TOOLS: dict[str, dict[str, str]] = {
    "bandit": {"informationUri": "https://bandit.readthedocs.io/"},
    "pip-audit": {"informationUri": "https://github.com/pypa/pip-audit"},
    "trivy": {"informationUri": "https://trivy.dev/"},
    "gameday": {},
}
SECURITY_SEVERITY = {"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "3.0", "UNKNOWN": "0.0"}


def _level(f: Finding) -> str:
    if f.counted and not f.suppressed:
        return "error"
    return "warning" if severity_at_least(f.severity, "MEDIUM") else "note"


def _location(f: Finding) -> list[dict[str, Any]]:
    if not f.path:
        return []
    path = Path(f.path)
    artifact: dict[str, Any] = ({"uri": path.as_uri()} if path.is_absolute()
                                else {"uri": path.as_posix(), "uriBaseId": "SRCROOT"})
    physical: dict[str, Any] = {"artifactLocation": artifact}
    if f.line and f.line >= 1:
        physical["region"] = {"startLine": f.line}
    return [{"physicalLocation": physical}]


def _run(tool: str, checks: list[CheckResult], root: Path) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for check in checks:
        for f in check.findings:
            if f.rule not in rules:
                rule: dict[str, Any] = {
                    "id": f.rule, "shortDescription": {"text": f.message.split(":")[0][:200] or f.rule},
                    "properties": {"security-severity": SECURITY_SEVERITY.get(f.severity, "0.0"),
                                   "tags": ["security", check.name]}}
                if f.help_uri:
                    rule["helpUri"] = f.help_uri
                rules[f.rule] = rule
            result: dict[str, Any] = {
                "ruleId": f.rule, "ruleIndex": list(rules).index(f.rule), "level": _level(f),
                "message": {"text": f.message}, "locations": _location(f),
                "properties": {"check": check.name, "severity": f.severity, "counted": f.counted and not f.suppressed,
                               **{k: v for k, v in f.properties.items() if v is not None}},
            }
            if f.suppressed:
                result["suppressions"] = [{"kind": "inSource", "status": "accepted", "justification": f.suppressed}]
            results.append(result)
    invocations = []
    for check in checks:
        notifications = [{"level": "error" if check.verdict == NOT_VERIFIED else "note", "message": {"text": reason}}
                         for reason in check.reasons]
        invocation: dict[str, Any] = {
            "executionSuccessful": check.verdict != NOT_VERIFIED,
            "toolExecutionNotifications": notifications,
            "properties": {"check": check.name, "verdict": check.verdict, "summary": check.summary,
                           "duration_s": round(check.duration_s, 3), "thresholds": check.thresholds,
                           "counts": check.counts},
        }
        if check.command:
            invocation["commandLine"] = " ".join(check.command)
        invocations.append(invocation)
    version = next((c.tool_version for c in checks if c.tool_version), None)
    driver: dict[str, Any] = {"name": tool, **TOOLS.get(tool, {}), "rules": list(rules.values())}
    if version:
        driver["version"] = version
    return {
        "tool": {"driver": driver},
        "invocations": invocations,
        "originalUriBaseIds": {"SRCROOT": {"uri": root.resolve().as_uri() + "/"}},
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"checks": [{"name": c.name, "verdict": c.verdict} for c in checks]},
    }


def to_sarif(checks: list[CheckResult], root: Path) -> dict[str, Any]:
    order = [t for t in TOOLS if any(c.tool == t for c in checks)]
    order += sorted({c.tool for c in checks} - set(order))
    return {"$schema": SCHEMA_URI, "version": "2.1.0",
            "runs": [_run(tool, [c for c in checks if c.tool == tool], root) for tool in order]}
