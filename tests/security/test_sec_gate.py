"""The security gate's checks each pass, fail and say "not verified" when they should - with the
real bandit, pip-audit (against a local OSV-compatible server) and trivy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sec_osv import OsvFixtureServer
from sec_support import ROOT

from harness.evidence import sha256_file
from harness.security import bandit, pip_audit, repo, trivy
from harness.security.config import BanditConfig, PipAuditConfig, SecurityConfig, TrivyConfig, load_security_config
from harness.security.gate import CHECK_NAMES, EXIT_FAIL, EXIT_NOT_VERIFIED, EXIT_OK, exit_code, run_checks
from harness.security.model import FAIL, NOT_VERIFIED, PASS, CheckResult
from harness.services import require_services


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp


# ------------------------------------------------------------------------------------------ bandit


def test_bandit_fails_on_a_real_finding_and_passes_once_fixed(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"pkg/run.py": "import subprocess\n\ndef go(cmd):\n"
                                          "    return subprocess.call(cmd, shell=True)\n"})
    cfg = BanditConfig(paths=["pkg"])
    failed = bandit.run_bandit(cfg, root)
    assert failed.verdict == FAIL
    assert [(f.rule, f.path, f.line) for f in failed.counted] == [("B602", "pkg/run.py", 4)]
    (root / "pkg/run.py").write_text("import subprocess  # nosec B404 - argv lists only\n\ndef go(argv):\n"
                                     "    return subprocess.call(argv)  # nosec B603 - argv from our own config\n")
    fixed = bandit.run_bandit(cfg, root)
    assert fixed.verdict == PASS and fixed.counts["counted"] == 0
    assert {f.rule: f.suppressed for f in fixed.findings} == {"B404": "argv lists only",
                                                               "B603": "argv from our own config"}


def test_bandit_counts_a_bare_nosec_as_a_finding(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"pkg/y.py": "import yaml\n\ndef load(t):\n    return yaml.load(t)  # nosec\n"})
    result = bandit.run_bandit(BanditConfig(paths=["pkg"]), root)
    assert result.verdict == FAIL
    assert [f.rule for f in result.counted] == ["nosec-unreviewed"]
    assert [f.rule for f in result.findings if f.suppressed] == ["B506"]


def test_bandit_low_findings_are_reported_not_counted(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"pkg/a.py": "def f(x):\n    assert x\n"})
    result = bandit.run_bandit(BanditConfig(paths=["pkg"]), root)
    assert result.verdict == PASS and [(f.rule, f.counted) for f in result.findings] == [("B101", False)]
    strict = bandit.run_bandit(BanditConfig(paths=["pkg"], fail_severity="LOW"), root)
    assert strict.verdict == FAIL


def test_bandit_missing_paths_are_not_a_pass(tmp_path: Path) -> None:
    assert bandit.run_bandit(BanditConfig(paths=["nowhere"]), tmp_path).verdict == NOT_VERIFIED


def test_bandit_on_this_tree_has_no_unreviewed_medium_or_high() -> None:
    result = bandit.run_bandit(load_security_config().bandit, ROOT)
    assert result.verdict == PASS, [(f.rule, f.path, f.line, f.message) for f in result.counted]
    assert all(f.suppressed and len(f.suppressed) > 5 for f in result.findings if f.suppressed)


# --------------------------------------------------------------------------------------- pip-audit


def _pins(tmp: Path, *lines: str, **cfg: Any) -> PipAuditConfig:
    (tmp / "requirements.txt").write_text("\n".join(lines) + "\n")
    return PipAuditConfig.model_validate({"requirements": ["requirements.txt"], "service": "osv", "timeout_s": 5,
                                          **cfg})


def test_pip_audit_fails_on_a_known_vulnerable_pin(tmp_path: Path, osv_server: OsvFixtureServer) -> None:
    cfg = _pins(tmp_path, "certifi==2024.8.30", "requests==2.19.1", osv_url=osv_server.url)
    result = pip_audit.run_pip_audit(cfg, tmp_path)
    assert result.verdict == FAIL, result.summary
    [finding] = result.counted
    ids = {finding.rule, *finding.properties["aliases"]}  # pip-audit leads with the PYSEC id when there is one
    assert {"GHSA-x84v-xcm2-53pg", "CVE-2018-18074"} <= ids and "CVE-2018-18074" in finding.message
    assert (finding.path, finding.line) == ("requirements.txt", 2)
    assert finding.properties["fix_versions"] == ["2.20.0"]
    assert result.counts == {"packages": 2, "audited": 2, "skipped": 0, "vulnerabilities": 1, "ignored": 0}
    assert {q["package"]["name"] for q in osv_server.queries} == {"certifi", "requests"}


def test_pip_audit_passes_when_every_pin_is_audited_and_clean(tmp_path: Path, osv_server: OsvFixtureServer) -> None:
    cfg = _pins(tmp_path, "requests==2.32.3", osv_url=osv_server.url)
    result = pip_audit.run_pip_audit(cfg, tmp_path)
    assert result.verdict == PASS and result.counts["audited"] == 1


def test_pip_audit_reviewed_ignore_is_recorded_not_counted(tmp_path: Path, osv_server: OsvFixtureServer) -> None:
    cfg = _pins(tmp_path, "requests==2.19.1", osv_url=osv_server.url,
                ignore=[{"id": "CVE-2018-18074", "reason": "no redirects to http here"}])
    result = pip_audit.run_pip_audit(cfg, tmp_path)
    assert result.verdict == PASS and result.findings[0].suppressed == "no redirects to http here"


def test_pip_audit_service_errors_are_not_verified(tmp_path: Path, osv_server: OsvFixtureServer) -> None:
    osv_server.mode = "error"
    cfg = _pins(tmp_path, "requests==2.19.1", osv_url=osv_server.url)
    result = pip_audit.run_pip_audit(cfg, tmp_path)
    assert result.verdict == NOT_VERIFIED and "answered with an error" in result.reasons[0]


def test_pip_audit_unreachable_service_is_not_verified(tmp_path: Path) -> None:
    from harness.services import free_loopback_port

    cfg = _pins(tmp_path, "requests==2.19.1", osv_url=f"http://127.0.0.1:{free_loopback_port()}/v1/query")
    result = pip_audit.run_pip_audit(cfg, tmp_path)
    assert result.verdict == NOT_VERIFIED and "unreachable" in result.reasons[0]


def test_skipped_packages_are_not_verified_never_a_pass() -> None:
    """pip-audit's own verdict for 0 of 49 audited is "No known vulnerabilities found", exit 0."""
    skipped = [{"name": f"pkg{i}", "skip_reason": f"Dependency not found on PyPI and could not be audited: pkg{i}"}
               for i in range(49)]
    result = pip_audit.judge_report(skipped, PipAuditConfig(), [ROOT / "constraints.txt"], ROOT,
                                    {"thresholds": {"endpoint": "x"}})
    assert result.verdict == NOT_VERIFIED and result.reasons[0].startswith("49 of 49 packages not audited")
    one_skipped = [*skipped[:1], {"name": "requests", "version": "2.32.3", "vulns": []}]
    assert pip_audit.judge_report(one_skipped, PipAuditConfig(), [ROOT / "constraints.txt"], ROOT,
                                  {"thresholds": {"endpoint": "x"}}).verdict == NOT_VERIFIED


def test_pip_audit_offline_on_this_machine_says_so() -> None:
    """Without the vulnerability service (this machine), the constraints are not verified - not passed."""
    result = pip_audit.run_pip_audit(load_security_config().pip_audit.model_copy(update={"timeout_s": 5}), ROOT)
    if result.verdict != NOT_VERIFIED:
        pytest.skip(f"the vulnerability service answered here: {result.summary}")
    assert result.reasons


# ------------------------------------------------------------------------------------------- trivy


@pytest.fixture(scope="module")
def trivy_bin() -> trivy.Trivy:
    found = trivy.locate(TrivyConfig(), ROOT)
    if isinstance(found, trivy.Trivy):
        return found
    why = "no trivy: " + "; ".join(found) + " (make tools installs it)"
    if require_services():
        pytest.fail(why)
    pytest.skip(why)


def test_trivy_config_is_clean_on_the_hardened_files(trivy_bin: trivy.Trivy) -> None:
    result = trivy.run_config(load_security_config().trivy, ROOT, trivy_bin)
    assert result.verdict == PASS, result.summary
    assert result.counts["files_scanned"] >= 1 and "Dockerfile.hardened" in result.summary
    assert "no Compose scanner" in result.summary  # said, not hidden


def test_trivy_config_fails_on_a_root_latest_dockerfile(tmp_path: Path, trivy_bin: trivy.Trivy) -> None:
    root = _tree(tmp_path, {"Dockerfile.hardened": "FROM python:latest\nRUN pip install requests\nCMD [\"python\"]\n"})
    cfg = TrivyConfig(config_files=["Dockerfile.hardened"], skip_dirs=[])
    result = trivy.run_config(cfg, root, trivy_bin)
    assert result.verdict == FAIL
    assert "DS002" in {f.rule for f in result.counted}  # running as root: HIGH


def test_trivy_config_with_nothing_recognised_is_not_verified(tmp_path: Path, trivy_bin: trivy.Trivy) -> None:
    root = _tree(tmp_path, {"app.conf": "nothing = here\n"})
    result = trivy.run_config(TrivyConfig(config_files=["app.conf"], skip_dirs=[]), root, trivy_bin)
    assert result.verdict == NOT_VERIFIED and "did not recognise app.conf" in result.reasons[0]


def test_trivy_secret_finds_a_real_looking_key_but_allows_the_marked_fakes(tmp_path: Path,
                                                                          trivy_bin: trivy.Trivy) -> None:
    shutil.copy(ROOT / "config" / "trivy-secret.yaml", _tree(tmp_path, {"config/.keep": ""}) / "config")
    shutil.copy(ROOT / "fixtures" / "secrets" / "fake-keys.env", tmp_path / "fake-keys.env")
    cfg = TrivyConfig(skip_dirs=[])
    clean = trivy.run_secret(cfg, tmp_path, trivy_bin)
    assert clean.verdict == PASS, [f.message for f in clean.findings]
    leaked = "AKIA" + "Q3EGRIXHFNLK2P7Z"  # the shape of an AWS key id, built here so the tree holds none
    (tmp_path / "fake-keys.env").write_text((tmp_path / "fake-keys.env").read_text() + f"REAL={leaked}\n")
    caught = trivy.run_secret(cfg, tmp_path, trivy_bin)
    assert caught.verdict == FAIL
    [finding] = caught.counted
    assert (finding.rule, finding.path, finding.line) == ("aws-access-key-id", "fake-keys.env", 7)
    report = json.dumps([f.to_dict() for f in caught.findings])
    assert leaked not in report  # trivy's masked match only


def test_trivy_secret_on_this_tree_is_clean(trivy_bin: trivy.Trivy) -> None:
    result = trivy.run_secret(load_security_config().trivy, ROOT, trivy_bin)
    assert result.verdict == PASS, [(f.rule, f.path, f.line) for f in result.findings]


def test_no_trivy_anywhere_is_not_verified(tmp_path: Path) -> None:
    found = trivy.locate(TrivyConfig(tool_venv="none"), tmp_path, env={"PATH": str(tmp_path),
                                                                      "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert isinstance(found, list) and len(found) == 3
    assert trivy.unavailable("trivy-secret", found).verdict == NOT_VERIFIED


def test_image_scan_without_docker_is_not_verified() -> None:
    result = trivy.run_image(TrivyConfig(), ROOT, None, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.verdict == NOT_VERIFIED and "not built or scanned" in result.reasons[0]


# -------------------------------------------------------------------------------------- git-dotenv


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})


def test_git_dotenv_fails_on_a_committed_env_even_after_removal(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text(".env\n")
    _git(tmp_path, "add", ".gitignore")
    _git(tmp_path, "commit", "-qm", "ignore")
    assert repo.run_git_dotenv(tmp_path).verdict == PASS
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".env").write_text("X=1\n")
    _git(tmp_path, "add", "-f", "sub/.env")
    _git(tmp_path, "commit", "-qm", "oops")
    tracked = repo.run_git_dotenv(tmp_path)
    assert tracked.verdict == FAIL and {f.rule for f in tracked.counted} == {"dotenv.tracked", "dotenv.in_history"}
    _git(tmp_path, "rm", "-q", "--cached", "sub/.env")
    _git(tmp_path, "commit", "-qm", "remove")
    assert [f.rule for f in repo.run_git_dotenv(tmp_path).counted] == ["dotenv.in_history"]


def test_git_dotenv_fails_when_not_ignored_or_loose(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / ".env").write_text("X=1\n")
    (tmp_path / ".env").chmod(0o644)
    result = repo.run_git_dotenv(tmp_path)
    assert {f.rule for f in result.counted} == {"dotenv.not_ignored", "dotenv.mode"}


def test_git_dotenv_outside_git_is_not_verified(tmp_path: Path) -> None:
    assert repo.run_git_dotenv(tmp_path).verdict == NOT_VERIFIED


def test_git_dotenv_on_this_repository() -> None:
    assert repo.run_git_dotenv(ROOT).verdict == PASS


# ------------------------------------------------------------------------------- verdicts and CLI


def _result(verdict: str) -> CheckResult:
    return CheckResult("x", "gameday", verdict, "")


def test_exit_codes_fail_on_findings_not_on_an_offline_machine() -> None:
    assert exit_code([_result(PASS), _result(NOT_VERIFIED)], require_verified=False) == EXIT_OK
    assert exit_code([_result(PASS), _result(NOT_VERIFIED)], require_verified=True) == EXIT_NOT_VERIFIED
    assert exit_code([_result(FAIL), _result(NOT_VERIFIED)], require_verified=False) == EXIT_FAIL
    assert exit_code([_result(PASS)], require_verified=True) == EXIT_OK


def test_run_checks_keeps_the_order_and_names(tmp_path: Path) -> None:
    results = run_checks(SecurityConfig(), ROOT, names=("git-dotenv", "container-hardening"))
    assert [r.name for r in results] == ["container-hardening", "git-dotenv"]
    assert set(CHECK_NAMES) >= {"bandit", "pip-audit", "trivy-config", "trivy-secret", "trivy-image",
                                "container-hardening", "git-dotenv", "host.sshd", "host.firewall", "host.tls",
                                "host.redis", "host.db_password", "host.backups"}


def _gameday(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "security", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_writes_a_sealed_evidence_set_and_fails_on_a_finding(tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    done = _gameday("--out", str(out), "--only", "container-hardening,git-dotenv,trivy-image")
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("trivy-image") and "NOT VERIFIED" in lines[0]
    assert lines[1].startswith("container-hardening") and " pass " in lines[1]
    assert lines[-1].startswith("security: NOT VERIFIED (2 pass, 0 fail, 1 not verified)")
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"security.json", "security.sarif"}
    assert all(sha256_file(out / name) == digest for name, digest in manifest["files"].items())
    report = json.loads((out / "security.json").read_text())
    assert report["schema"] == "gameday.security/v1" and report["verdict"] == NOT_VERIFIED
    assert [c["verdict"] for c in report["checks"]] == [NOT_VERIFIED, PASS, PASS]
    schema = json.loads((ROOT / "fixtures" / "schemas" / "sarif-2.1.0.json").read_text())
    jsonschema.Draft7Validator(schema).validate(json.loads((out / "security.sarif").read_text()))
    assert _gameday("--out", str(out), "--only", "trivy-image", "--require-verified").returncode == EXIT_NOT_VERIFIED

    bad = _tree(tmp_path / "tree", {"pkg/x.py": "import pickle\n\ndef f(b):\n    return pickle.loads(b)\n"})
    (bad / "sec.yaml").write_text("bandit: {paths: [pkg]}\n")
    failed = _gameday("--root", str(bad), "--config", str(bad / "sec.yaml"), "--only", "bandit",
                      "--out", str(tmp_path / "bad"))
    assert failed.returncode == EXIT_FAIL and failed.stdout.startswith("bandit") and "FAIL" in failed.stdout


def test_cli_rejects_bad_config_and_unknown_checks(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("trivy:\n  fail_severities: [SEVERE]\n")
    done = _gameday("--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "bad.yaml: trivy.fail_severities.0: not an allowed value (got 'SEVERE'" in done.stdout
    unknown = _gameday("--only", "bandit,sqlmap", "--out", str(tmp_path / "o"))
    assert unknown.returncode == 2 and "sqlmap" in unknown.stdout


def test_trivy_comes_from_its_docker_image_when_an_engine_answers(tmp_path: Path) -> None:
    """A Docker engine that answers /_ping within 2 s wins over any binary (the image is pinned)."""
    sock_path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    try:
        found = trivy.locate(TrivyConfig(), ROOT, env={"DOCKER_HOST": f"unix://{sock_path}", "PATH": str(tmp_path)})
    finally:
        thread.join(5)
        server.close()
    assert isinstance(found, trivy.Trivy) and found.source == "docker"
    argv = found.argv(tmp_path, "fs", ".")
    assert argv[:3] == [str(docker), "run", "--rm"] and f"{tmp_path}:/src:ro" in argv
    assert "aquasec/trivy:0.59.1" in argv and argv[-2:] == ["fs", "."]
