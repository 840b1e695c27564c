"""What a security check returns: a verdict, findings, and why it could or could not judge.

Verdicts: `pass` (the check did its whole job and nothing is over the threshold), `fail` (at least
one finding over the threshold; a real finding wins over anything left unchecked) and `not
verified` (the check could not do its job: a service unreachable, packages skipped, a binary or
an engine missing). Nothing that was not checked is ever a pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, NOT_VERIFIED = "pass", "fail", "not verified"
GATE_CHECKS = ("bandit", "pip-audit", "trivy-config", "trivy-secret", "trivy-image", "container-hardening",
               "git-dotenv")
HOST_CHECKS = ("host.sshd", "host.firewall", "host.tls", "host.redis", "host.db_password", "host.backups")
CHECK_NAMES = GATE_CHECKS + HOST_CHECKS  # what config/checklist.yaml `scans:` may cite
VERDICTS = (PASS, FAIL, NOT_VERIFIED)
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")


def severity_at_least(severity: str, floor: str) -> bool:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return rank.get(severity.upper(), 0) >= rank[floor.upper()]


@dataclass
class Finding:
    rule: str                      # B506, GHSA-…, DS002, aws-access-key-id, sshd.PermitRootLogin
    severity: str                  # UNKNOWN | LOW | MEDIUM | HIGH | CRITICAL
    message: str                   # never a secret value
    path: str | None = None        # relative to the scanned tree, or absolute for host files
    line: int | None = None
    counted: bool = True           # over the threshold: counts against the gate
    suppressed: str | None = None  # the reviewed suppression's reason, when suppressed
    help_uri: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckResult:
    name: str                      # the check's name, cited by config/checklist.yaml `scans:`
    tool: str                      # the SARIF run it belongs to: bandit | pip-audit | trivy | gameday
    verdict: str
    summary: str                   # the one line `gameday security` prints after the verdict
    reasons: list[str] = field(default_factory=list)   # why not verified, or what limits the verdict
    findings: list[Finding] = field(default_factory=list)
    tool_version: str | None = None
    command: list[str] | None = None
    duration_s: float = 0.0
    thresholds: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)  # what was checked, one entry each

    @property
    def counted(self) -> list[Finding]:
        return [f for f in self.findings if f.counted and not f.suppressed]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["findings"] = [f.to_dict() for f in self.findings]
        return out


def judge(counted: int, max_findings: int, unverified: list[str]) -> str:
    """fail when the counted findings exceed the allowance, else not verified when anything could
    not be checked, else pass."""
    if counted > max_findings:
        return FAIL
    if unverified:
        return NOT_VERIFIED
    return PASS


def not_verified(name: str, tool: str, reason: str, **kw: Any) -> CheckResult:
    return CheckResult(name, tool, NOT_VERIFIED, reason, reasons=[reason], **kw)
