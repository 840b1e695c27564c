"""pip-audit over the pinned dependencies (constraints.txt), judged on what it really audited.

pip-audit exits 0 with "No known vulnerabilities found" when it could not audit anything (every
package skipped because the vulnerability service did not answer): that is not a pass. The gate
reads pip-audit's JSON: every package it skipped, and a service it could not reach, make the
verdict `not verified`; a known vulnerability (not on the reviewed ignore list) makes it `fail`.

`osv_url` points pip-audit at any OSV-compatible `/v1/query` endpoint (an internal mirror; the
tests use a local fixture server), with `service: osv`.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from harness.security.config import PipAuditConfig
from harness.security.model import CheckResult, Finding, judge, not_verified
from harness.security.proc import package_version, python_module, run

NAME = "pip-audit"
DEFAULT_OSV_URL = "https://api.osv.dev/v1/query"


def run_pip_audit(cfg: PipAuditConfig, root: Path) -> CheckResult:
    version = package_version("pip-audit")
    if version is None:
        return not_verified(NAME, NAME, "pip-audit is not installed in this environment (pip install -e '.[dev]')")
    requirements = [root / r for r in cfg.requirements]
    missing = [str(r) for r in requirements if not r.is_file()]
    if missing:
        return not_verified(NAME, NAME, f"requirements file(s) not found: {missing}", tool_version=version)
    service = cfg.service
    endpoint = (cfg.osv_url or DEFAULT_OSV_URL) if service == "osv" else "https://pypi.org/pypi/<name>/<version>/json"
    with tempfile.TemporaryDirectory(prefix="gameday-pip-audit-") as tmp:
        out = Path(tmp) / "pip-audit.json"
        argv = [*python_module("pip_audit"), "--progress-spinner", "off", "--format", "json", "--desc", "on",
                "--aliases", "on", "--no-deps", "--disable-pip", "--timeout", str(cfg.timeout_s),
                "--vulnerability-service", service, "--cache-dir", str(Path(tmp) / "cache"), "--output", str(out)]
        if service == "osv" and cfg.osv_url:
            argv += ["--osv-url", cfg.osv_url]
        for r in cfg.requirements:
            argv += ["--requirement", r]
        ran = run(argv, cwd=root, timeout_s=cfg.timeout_s * 40 + 60)
        report = out.read_text(encoding="utf-8") if out.is_file() else None
    common: dict[str, Any] = {"tool_version": version, "command": ran.argv, "duration_s": ran.duration_s,
                              "thresholds": {"max_findings": cfg.max_findings, "service": service,
                                             "endpoint": endpoint}}
    if ran.returncode is None:
        return not_verified(NAME, NAME, f"pip-audit {ran.problem}", **common)
    if report is None:
        return not_verified(NAME, NAME, f"pip-audit produced no report (exit {ran.returncode}): "
                            f"{_service_problem(ran.stderr, endpoint)}", **common)
    try:
        data = json.loads(report)
        dependencies = data["dependencies"]
    except (ValueError, KeyError, TypeError):
        return not_verified(NAME, NAME, f"pip-audit's report is not the JSON it documents: {report[:200]!r}", **common)
    return judge_report(dependencies, cfg, requirements, root, common)


def judge_report(dependencies: list[dict[str, Any]], cfg: PipAuditConfig, requirements: list[Path], root: Path,
                 common: dict[str, Any]) -> CheckResult:
    pins = _pin_lines(requirements, root)
    ignored = {i.id: i.reason for i in cfg.ignore}
    audited = [d for d in dependencies if "skip_reason" not in d]
    skipped = [d for d in dependencies if "skip_reason" in d]
    findings: list[Finding] = []
    for dep in audited:
        for vuln in dep.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            reason = next((ignored[i] for i in ids if i in ignored), None)
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            path, line = pins.get(_canonical(dep["name"]), (cfg.requirements[0], None))
            findings.append(Finding(
                rule=vuln["id"], severity="HIGH",
                message=f"{dep['name']} {dep['version']}: {vuln['id']}"
                        f"{' (' + ', '.join(vuln.get('aliases', [])) + ')' if vuln.get('aliases') else ''}"
                        f"; fixed in {fixes}: {(vuln.get('description') or '').strip()[:300]}",
                path=path, line=line, suppressed=reason,
                properties={"package": dep["name"], "version": dep["version"], "aliases": vuln.get("aliases", []),
                            "fix_versions": vuln.get("fix_versions", [])}))
    unverified: list[str] = []
    if not dependencies:
        unverified.append("pip-audit found no packages to audit")
    if skipped:
        sample = "; ".join(d["skip_reason"] for d in skipped[:2])
        unverified.append(f"{len(skipped)} of {len(dependencies)} packages not audited (the vulnerability service "
                          f"did not answer for them), e.g. {sample}")
    counted = [f for f in findings if not f.suppressed]
    verdict = judge(len(counted), cfg.max_findings, unverified)
    vulnerable = sorted({f.properties["package"] for f in counted})
    noun = "vulnerability" if len(counted) == 1 else "vulnerabilities"
    summary = (f"audited {len(audited)} of {len(dependencies)} pinned packages against "
               f"{common['thresholds']['endpoint']}: {len(counted)} known {noun}"
               f"{' in ' + ', '.join(vulnerable) if vulnerable else ''}"
               f"{f', {len(findings) - len(counted)} reviewed and ignored' if len(findings) > len(counted) else ''}")
    return CheckResult(NAME, NAME, verdict, summary, reasons=unverified, findings=findings,
                       counts={"packages": len(dependencies), "audited": len(audited), "skipped": len(skipped),
                               "vulnerabilities": len(counted), "ignored": len(findings) - len(counted)},
                       **common)


def _service_problem(stderr: str, endpoint: str) -> str:
    """One line saying why pip-audit produced no report (a traceback's gist, not the traceback)."""
    causes = ((r"Failed to resolve '([^']+)'|NameResolutionError", "cannot resolve the host"),
              (r"Connection refused|ConnectionRefusedError", "connection refused"),
              (r"timed out|ConnectTimeout|ReadTimeout", "timed out"),
              (r"HTTPError|ServiceError|\b5\d\d\b", "the service answered with an error"),
              (r"ConnectionError|Could not connect", "cannot connect"))
    for pattern, what in causes:
        if re.search(pattern, stderr):
            return f"the vulnerability service {endpoint} is unreachable ({what})"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin_lines(requirements: list[Path], root: Path) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for path in requirements:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[.*\])?\s*==", line)
            if match:
                out.setdefault(_canonical(match[1]), (rel, lineno))
    return out
