"""attestation.json: an in-toto Statement v1 with a test-result v0.1 predicate.

- subject: every file of every trusted set (name "<set>/<path>", digest {sha256: hex}), as its
  manifest lists it and as verified against the file;
- predicate.result: FAILED when any checklist item failed, WARNED when any is not verified by
  current evidence (stale, not run, or resting on a human attestation), else PASSED;
- predicate.configuration: resource descriptors of the target commit (digest gitCommit) and of
  each profile's config digest (digest sha256);
- passedTests / warnedTests / failedTests: "checklist:<id>" per item, then the results the
  subjects hold: "scenario:<id>" (newest record), "test:<classname>::<name>" (newest set),
  "scan:<name>", "validation:<profile>". Warned: skipped tests, scans not verified.
- url: the GitHub Actions run when GITHUB_SERVER_URL / GITHUB_REPOSITORY / GITHUB_RUN_ID are set.

Ready for `cosign attest --type https://in-toto.io/attestation/test-result/v0.1 --predicate`
(the predicate object) or GitHub's attestations (the whole statement).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any

from harness.report.readiness import Readiness

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"


def _hex(digest: str) -> str | None:
    algo, _, value = digest.partition(":")
    return value if algo == "sha256" and re.fullmatch(r"[0-9a-f]{64}", value) else None


def statement(readiness: Readiness) -> dict[str, Any]:
    subject = []
    for s in readiness.counted_sets:
        for rel, digest in sorted(s.files.items()):
            value = _hex(digest)
            if value is not None:
                subject.append({"name": f"{s.name}/{rel}", "digest": {"sha256": value}})
    passed: list[str] = []
    warned: list[str] = []
    failed: list[str] = []
    for r in readiness.items:
        bucket = {"verified": passed, "failed": failed}.get(r.status, warned)
        bucket.append(f"checklist:{r.item.id}")
    newest: dict[str, dict[str, Any]] = {}
    for s in readiness.counted_sets:
        for rec in s.records:
            old = newest.get(rec["scenario"])
            if old is None or rec["started_at"] > old["started_at"]:
                newest[rec["scenario"]] = rec
    for sid in sorted(newest):
        (passed if newest[sid]["verdict"] == "pass" else failed).append(f"scenario:{sid}")
    tests: dict[str, str] = {}
    floor = datetime.min.replace(tzinfo=UTC)
    for s in sorted(readiness.counted_sets, key=lambda x: x.created_at or floor):
        for case in s.testcases:
            tests[f"test:{case.classname}::{case.name}"] = case.outcome  # the newest set's outcome wins
    for name, outcome in sorted(tests.items()):
        {"passed": passed, "skipped": warned}.get(outcome, failed).append(name)
    for s in readiness.counted_sets:
        for check in s.scans:
            {"pass": passed, "fail": failed}.get(check.verdict, warned).append(f"scan:{check.name}")
        for v in s.validation:
            (passed if v.verdict == "pass" else failed).append(f"validation:{v.profile}")
    result = "FAILED" if failed else "WARNED" if warned else "PASSED"
    configuration: list[dict[str, Any]] = []
    commit = readiness.target.commit
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        descriptor: dict[str, Any] = {"name": "git commit", "digest": {"gitCommit": commit}}
        repo = _github_repo()
        if repo:
            descriptor["uri"] = f"git+{repo}@{commit}"
        configuration.append(descriptor)
    for profile, digest in sorted(readiness.target.digests.items()):
        value = _hex(digest)
        if value is not None:
            configuration.append({"name": f"config/profiles/{profile}.yaml (merged policy)",
                                  "digest": {"sha256": value},
                                  "annotations": {"profile": profile, "config_digest": digest}})
    predicate: dict[str, Any] = {"result": result, "configuration": configuration}
    url = _run_url()
    if url:
        predicate["url"] = url
    predicate.update(passedTests=passed, warnedTests=warned, failedTests=failed)
    return {"_type": STATEMENT_TYPE, "subject": subject, "predicateType": PREDICATE_TYPE, "predicate": predicate}


def _github_repo() -> str | None:
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"{server}/{repo}" if server and repo else None


def _run_url() -> str | None:
    repo, run = _github_repo(), os.environ.get("GITHUB_RUN_ID")
    return f"{repo}/actions/runs/{run}" if repo and run else None
