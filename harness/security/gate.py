"""`gameday security`: run the checks, print one verdict line each, write a sealed evidence set.

The evidence set (HELPERS "Evidence sets") is one directory: `security.sarif` (SARIF 2.1.0),
`security.json` (schema gameday.security/v1: every check's verdict, summary, reasons, findings,
thresholds, timings) and `manifest.json` (harness.evidence.write_manifest: sha256 of each file and
the tree state). By default it is a new set under `reports/runs/` (harness.evidence.reserve_set),
beside the scenario runs, where `gameday report` finds every kind of evidence.

Exit codes: 0 nothing failed (checks that could not run are printed NOT VERIFIED and recorded as
such, but do not fail: a machine without a network or a Docker engine cannot make CI red); 1 at
least one check failed (a real finding); 2 bad config or arguments; 3 nothing failed but
something was not verified and `--require-verified` was given (for a release machine that must
prove every check).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.config import ConfigError
from bot.io import redaction
from bot.io.secrets import CredentialError, default_loader
from harness.security import bandit, container, host, pip_audit, repo, trivy
from harness.security.config import SecurityConfig, default_path, load_security_config
from harness.security.model import (
    CHECK_NAMES,
    FAIL,
    GATE_CHECKS,
    HOST_CHECKS,
    NOT_VERIFIED,
    PASS,
    CheckResult,
    not_verified,
)
from harness.security.sarif import to_sarif

SCHEMA = "gameday.security/v1"
SARIF_FILE, JSON_FILE = "security.sarif", "security.json"
OUTPUTS = (SARIF_FILE, JSON_FILE, "manifest.json")
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_VERIFIED = 0, 1, 2, 3


def run_checks(cfg: SecurityConfig, root: Path, *, names: tuple[str, ...] = GATE_CHECKS,
               env: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Every named check, in CHECK_NAMES order; independent tools run in parallel."""
    wanted = [n for n in CHECK_NAMES if n in names]
    trivy_names = [n for n in wanted if n.startswith("trivy-")]
    jobs: dict[str, Callable[[], CheckResult | list[CheckResult]]] = {}
    if "bandit" in wanted:
        jobs["bandit"] = lambda: bandit.run_bandit(cfg.bandit, root)
    if "pip-audit" in wanted:
        jobs["pip-audit"] = lambda: pip_audit.run_pip_audit(cfg.pip_audit, root)
    if trivy_names:
        jobs["trivy"] = lambda: _trivy(cfg, root, trivy_names, env)
    if "container-hardening" in wanted:
        jobs["container-hardening"] = lambda: container.run_container(cfg.container, root)
    if "git-dotenv" in wanted:
        jobs["git-dotenv"] = lambda: repo.run_git_dotenv(root)
    host_names = [n for n in wanted if n.startswith("host.")]
    if host_names:
        jobs["host"] = lambda: _host(cfg, root, host_names, env)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        done: dict[str, CheckResult] = {}
        for future in futures.values():
            value = future.result()
            for result in value if isinstance(value, list) else [value]:
                done[result.name] = result
    return [done[n] for n in wanted]


def _trivy(cfg: SecurityConfig, root: Path, names: list[str], env: Mapping[str, str] | None) -> list[CheckResult]:
    found = trivy.locate(cfg.trivy, root, env)
    located = found if isinstance(found, trivy.Trivy) else None
    out: list[CheckResult] = []
    for name in names:
        if name == "trivy-image":
            out.append(trivy.run_image(cfg.trivy, root, located, env))
        elif located is None:
            out.append(trivy.unavailable(name, found if isinstance(found, list) else []))
        elif name == "trivy-config":
            out.append(trivy.run_config(cfg.trivy, root, located))
        else:
            out.append(trivy.run_secret(cfg.trivy, root, located))
    return out


def _host(cfg: SecurityConfig, root: Path, names: list[str], env: Mapping[str, str] | None) -> list[CheckResult]:
    problem = ""
    try:
        loader = default_loader(env)
    except CredentialError as exc:
        loader = None
        problem = str(exc)
    runs: dict[str, Callable[[], CheckResult]] = {
        "host.sshd": lambda: host.check_sshd(cfg.host.sshd),
        "host.firewall": lambda: host.check_firewall(cfg.host.firewall),
        "host.tls": lambda: host.check_tls(cfg.host.tls),
        "host.backups": lambda: host.check_backups(cfg.host.backups),
    }
    if loader is not None:
        runs["host.redis"] = lambda: host.check_redis(cfg.host.redis, loader, cfg.host.database.rules)
        runs["host.db_password"] = lambda: host.check_db_password(cfg.host.database, loader, root)
    out = []
    for name in names:
        if name in runs:
            out.append(runs[name]())
        else:
            out.append(not_verified(name, "gameday", f"the secret loader refused: {problem}"))
    return out


def overall(results: list[CheckResult]) -> str:
    verdicts = {r.verdict for r in results}
    return FAIL if FAIL in verdicts else NOT_VERIFIED if NOT_VERIFIED in verdicts else PASS


def exit_code(results: list[CheckResult], require_verified: bool) -> int:
    verdict = overall(results)
    if verdict == FAIL:
        return EXIT_FAIL
    if verdict == NOT_VERIFIED and require_verified:
        return EXIT_NOT_VERIFIED
    return EXIT_OK


def verdict_line(r: CheckResult) -> str:
    label = {PASS: "pass", FAIL: "FAIL", NOT_VERIFIED: "NOT VERIFIED"}[r.verdict]
    why = r.summary if r.verdict != NOT_VERIFIED else (r.reasons[0] if r.reasons else r.summary)
    return f"{r.name:<20} {label:<13} {why}  ({r.duration_s:.1f} s)"


def default_out(root: Path) -> Path:
    from harness.evidence import reserve_set, tree_state

    return reserve_set(root / "reports", tree_state(str(root)))


def write_evidence(out: Path, results: list[CheckResult], meta: dict[str, Any], root: Path) -> Path:
    """security.sarif + security.json + manifest.json in `out` (only these three are replaced).
    Every string is redacted for the secrets the checks loaded."""
    from harness.evidence import iso_z, tree_state, utc_now, write_json_atomic, write_manifest

    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    tree = tree_state(str(root))
    report = {"schema": SCHEMA, "git_commit": tree.commit, "created_at": iso_z(utc_now()), **meta,
              "verdict": overall(results), "checks": [r.to_dict() for r in results]}
    write_json_atomic(out / JSON_FILE, redaction.redact_obj(report))
    write_json_atomic(out / SARIF_FILE, redaction.redact_obj(to_sarif(results, root)))
    return write_manifest(out, tree, complete=True, exit_status=meta.get("exit_code"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="evidence directory (default: a new set under reports/runs/)")
    p.add_argument("--host", action="store_true",
                   help="also check this host: sshd, firewall, TLS expiry, Redis, database password, backups")
    p.add_argument("--only", metavar="NAMES", default=None,
                   help=f"comma-separated checks to run (of {', '.join(CHECK_NAMES)})")
    p.add_argument("--config", metavar="FILE", type=Path, default=None,
                   help="security config (default config/security.yaml)")
    p.add_argument("--root", metavar="DIR", type=Path, default=None, help="the tree to scan (default: the project)")
    p.add_argument("--require-verified", action="store_true",
                   help="exit 3 when nothing failed but a check could not be verified")


def cmd_security(args: argparse.Namespace) -> int:
    from harness.cli import project_root

    root = (args.root or project_root()).resolve()
    names = GATE_CHECKS + (HOST_CHECKS if args.host else ())
    if args.only:
        picked = tuple(n.strip() for n in args.only.split(",") if n.strip())
        unknown = [n for n in picked if n not in CHECK_NAMES]
        if unknown:
            print(f"security: --only: unknown check(s) {unknown}; expected some of {', '.join(CHECK_NAMES)}")
            return EXIT_USAGE
        names = picked
    try:
        cfg = load_security_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return EXIT_USAGE
    config_file = Path(args.config or default_path())
    started = time.monotonic()
    with redaction.install():
        results = run_checks(cfg, root, names=names)
        duration = time.monotonic() - started
        code = exit_code(results, args.require_verified)
        out = args.out or default_out(root)
        meta = {"root": str(root), "host_checks": args.host, "config_file": str(config_file),
                "config_digest": "sha256:" + hashlib.sha256(config_file.read_bytes()).hexdigest(),
                "duration_s": round(duration, 3), "exit_code": code, "require_verified": args.require_verified}
        manifest = write_evidence(out, results, meta, root)
        for r in results:
            print(verdict_line(r))
        counts = {v: sum(r.verdict == v for r in results) for v in (PASS, FAIL, NOT_VERIFIED)}
        print(f"security: {overall(results).upper()} ({counts[PASS]} pass, {counts[FAIL]} fail, "
              f"{counts[NOT_VERIFIED]} not verified) in {duration:.1f} s; exit {code}; evidence {out} "
              f"(manifest {manifest.name})")
    return code
