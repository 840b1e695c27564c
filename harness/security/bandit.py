"""bandit over the project's code, with reviewed suppressions only.

bandit runs twice (in parallel): as configured, and with `--ignore-nosec`. The difference is what
`# nosec` comments suppressed; each of those is recorded (SARIF `suppressions`) with the reason
written next to it. A suppression must name the test ids it silences and give a reason
(`# nosec B113 - timeout is computed`): a bare `# nosec`, or one without a reason, is itself a
counted finding (`nosec-unreviewed`), because it would hide every future issue on that line.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.security.config import BanditConfig
from harness.security.model import CheckResult, Finding, judge, not_verified, severity_at_least
from harness.security.proc import Ran, package_version, python_module, run

NAME = "bandit"
# `# nosec B101,B102 - reason` (bandit accepts `nosec: B101` too); the reason is required here.
REVIEWED = re.compile(r"#\s*nosec:?\s+(?P<ids>B\d{3}(?:\s*,\s*B\d{3})*)\s*(?:-|—|:)\s*(?P<reason>\S.{5,})$")
NOSEC = re.compile(r"#\s*nosec\b")


def run_bandit(cfg: BanditConfig, root: Path) -> CheckResult:
    version = package_version("bandit")
    if version is None:
        return not_verified(NAME, NAME, "bandit is not installed in this environment (pip install -e '.[dev]')")
    paths = [p for p in cfg.paths if (root / p).exists()]
    missing = sorted(set(cfg.paths) - set(paths))
    if not paths:
        return not_verified(NAME, NAME, f"none of the configured paths exist under {root}: {cfg.paths}")
    base = [*python_module("bandit"), "-r", *paths, "-f", "json", "-q"]
    with ThreadPoolExecutor(2) as pool:
        normal_f = pool.submit(run, base, cwd=root, timeout_s=cfg.timeout_s)
        everything_f = pool.submit(run, [*base, "--ignore-nosec"], cwd=root, timeout_s=cfg.timeout_s)
        normal, everything = normal_f.result(), everything_f.result()
    parsed = [_parse(r) for r in (normal, everything)]
    for ran, data in zip((normal, everything), parsed, strict=True):
        if isinstance(data, str):
            return not_verified(NAME, NAME, data, command=ran.argv, duration_s=ran.duration_s, tool_version=version)
    data_normal, data_all = parsed[0], parsed[1]
    assert isinstance(data_normal, dict) and isinstance(data_all, dict)  # nosec B101 - narrowed above
    unverified = [f"bandit could not scan {e.get('filename')}: {e.get('reason')}"
                  for e in data_normal.get("errors", [])]
    if missing:
        unverified.append(f"configured paths missing: {missing}")

    comments = _nosec_comments(root, {r["filename"] for r in data_all["results"]} | _python_files(root, paths))
    findings: list[Finding] = []
    active = {(r["filename"], r["line_number"], r["test_id"]) for r in data_normal["results"]}
    for r in data_all["results"]:
        key = (r["filename"], r["line_number"], r["test_id"])
        severity = r["issue_severity"].upper()
        finding = Finding(
            rule=r["test_id"], severity=severity, message=f"{r['test_name']}: {r['issue_text']}",
            path=r["filename"], line=r["line_number"],
            counted=severity_at_least(severity, cfg.fail_severity), help_uri=r.get("more_info"),
            properties={"confidence": r["issue_confidence"], "cwe": (r.get("issue_cwe") or {}).get("id")})
        if key not in active:
            finding.suppressed = _reason_for(comments, r) or "suppressed by # nosec"
        findings.append(finding)
    for (path, line), (text, reviewed) in sorted(comments.items()):
        if not reviewed:
            findings.append(Finding("nosec-unreviewed", "MEDIUM",
                                    f"suppression without test ids and a reason: {text!r} "
                                    "(write `# nosec BXXX - why this is safe`)", path, line))
    counted = [f for f in findings if f.counted and not f.suppressed]
    suppressed = [f for f in findings if f.suppressed]
    below = [f for f in findings if not f.counted and not f.suppressed]
    verdict = judge(len(counted), cfg.max_findings, unverified)
    totals = data_normal.get("metrics", {}).get("_totals", {})
    summary = (f"{len(counted)} {cfg.fail_severity.lower()}+ finding(s) (allowed {cfg.max_findings}), "
               f"{len(below)} below the threshold, {len(suppressed)} reviewed suppression(s); "
               f"{totals.get('loc', '?')} lines in {', '.join(paths)}")
    return CheckResult(NAME, NAME, verdict, summary, reasons=unverified, findings=findings, tool_version=version,
                       command=normal.argv, duration_s=max(normal.duration_s, everything.duration_s),
                       thresholds={"fail_severity": cfg.fail_severity, "max_findings": cfg.max_findings},
                       counts={"counted": len(counted), "below_threshold": len(below),
                               "suppressed": len(suppressed), "loc": totals.get("loc")})


def _parse(ran: Ran) -> dict[str, Any] | str:
    if ran.returncode is None:
        return f"bandit {ran.problem}"
    try:
        data = json.loads(ran.stdout)
    except ValueError:
        return f"bandit exited {ran.returncode} without a JSON report: {ran.tail()}"
    if not isinstance(data, dict) or "results" not in data:
        return f"bandit's report has no results: {ran.tail()}"
    return data


def _python_files(root: Path, paths: list[str]) -> set[str]:
    out: set[str] = set()
    for p in paths:
        target = root / p
        files = [target] if target.is_file() else target.rglob("*.py")
        out |= {f.relative_to(root).as_posix() for f in files}
    return out


def _nosec_comments(root: Path, files: set[str]) -> dict[tuple[str, int], tuple[str, bool]]:
    """(file, line) -> (comment, reviewed?) for every `# nosec` comment in the scanned files."""
    out: dict[tuple[str, int], tuple[str, bool]] = {}
    for name in sorted(files):
        try:
            source = (root / name).read_text(encoding="utf-8")
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (OSError, UnicodeDecodeError, SyntaxError, tokenize.TokenError):
            continue
        for tok in tokens:
            if tok.type == tokenize.COMMENT and NOSEC.search(tok.string):
                text = tok.string[NOSEC.search(tok.string).start():].strip()  # type: ignore[union-attr]
                out[(name, tok.start[0])] = (text, REVIEWED.search(text) is not None)
    return out


def _reason_for(comments: dict[tuple[str, int], tuple[str, bool]], result: dict[str, Any]) -> str | None:
    lines = result.get("line_range") or [result["line_number"]]
    for line in range(min(lines), max(lines) + 1):
        found = comments.get((result["filename"], line))
        if found is None:
            continue
        match = REVIEWED.search(found[0])
        if match and result["test_id"] in re.split(r"\s*,\s*", match["ids"]):
            return match["reason"].strip()
        return None  # a suppression, but not a reviewed one for this test
    return None
