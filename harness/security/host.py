"""Host and database readiness (`gameday security --host`): the machine the bot runs on.

Each check is evidence for its checklist item and each reads what the host really has; where the
host has nothing to read (no sshd, no ufw, nothing configured), the answer is `not verified`.

- host.sshd       PermitRootLogin no, PasswordAuthentication no, KbdInteractiveAuthentication no
                  (pets "SSH hardened": root login and password auth off, key-only), from `sshd -T`
                  (the effective configuration) when sshd runs, else parsed from sshd_config with
                  its Include files; every Match block that turns one of them back on fails; and
                  fail2ban installed.
- host.firewall   `ufw status verbose`: active, incoming default deny (or reject), and no ALLOW rule
                  for a port outside `allowed_ports` (pets "Firewall configured").
- host.tls        each configured host's certificate: trusted, and more than `min_days_left` days
                  before it expires (pets "Certificate expiry monitored").
- host.redis      `CONFIG GET` on the configured Redis: an unauthenticated client is refused,
                  requirepass is strong, and AOF or RDB persistence is on (pets "Redis password set").
- host.db_password the database password: long, random (estimated entropy, no repeated runs) and
                  in no tracked file (pets "Database password strong").
- host.backups    the newest file under the backup path is recent, not empty, and encrypted
                  (pets "Database backups configured").
Password strength is judged by harness.security.passwords. Secrets are read through bot.io.secrets
and never reach the evidence.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.io.secrets import SecretLoader
from harness.security.config import (
    BackupsConfig,
    DatabaseConfig,
    FirewallConfig,
    PasswordRules,
    RedisCheckConfig,
    SshdConfig,
    TlsConfig,
)
from harness.security.model import CheckResult, Finding, judge, not_verified
from harness.security.passwords import password_problems
from harness.security.proc import run

TOOL = "gameday"
SSHD_REQUIRED = {  # keyword (lower case) -> (display name, default when unset)
    "permitrootlogin": ("PermitRootLogin", "prohibit-password"),
    "passwordauthentication": ("PasswordAuthentication", "yes"),
    "kbdinteractiveauthentication": ("KbdInteractiveAuthentication", "yes"),
}
SSHD_ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}


def _result(name: str, findings: list[Finding], unverified: list[str], items: list[dict[str, Any]], started: float,
            **kw: Any) -> CheckResult:
    verdict = judge(len([f for f in findings if f.counted]), 0, unverified)
    parts = [str(i["detail"]) for i in items] + unverified
    return CheckResult(name, TOOL, verdict, "; ".join(parts) or "nothing checked", reasons=unverified,
                       findings=findings, items=items, duration_s=time.monotonic() - started, **kw)


def _item(items: list[dict[str, Any]], findings: list[Finding], rule: str, ok: bool, detail: str,
          path: str | None = None, line: int | None = None, severity: str = "HIGH") -> None:
    items.append({"id": rule, "ok": ok, "detail": detail, "path": path, "line": line})
    if not ok:
        findings.append(Finding(rule, severity, detail, path, line))


# ------------------------------------------------------------------------------------------ sshd


@dataclass
class Setting:
    value: str
    file: str
    line: int


@dataclass
class MatchBlock:
    criteria: str
    file: str
    line: int
    settings: dict[str, Setting] = field(default_factory=dict)


@dataclass
class SshdParse:
    settings: dict[str, Setting] = field(default_factory=dict)   # global: the first value wins
    matches: list[MatchBlock] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_sshd_config(path: Path, include_base: Path | None = None) -> SshdParse:
    """sshd_config semantics: keywords case-insensitive, the first value obtained wins, `Include`
    globs (relative ones under `include_base`, /etc/ssh for the real file) are read in place, and a
    `Match` block lasts until the next Match or the end of its file (an Include inside a Match
    belongs to that Match)."""
    out = SshdParse()
    base = include_base or path.parent
    _parse_file(path, base, out, None, depth=0)
    return out


def _parse_file(path: Path, base: Path, out: SshdParse, match: MatchBlock | None, depth: int) -> None:
    if depth > 16:
        out.problems.append(f"{path}: Include nested too deep")
        return
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        out.problems.append(f"{path}: cannot read it ({exc.strerror})")
        return
    out.files.append(str(path))
    current = match
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        keyword, value = parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
        keyword = SSHD_ALIASES.get(keyword, keyword)
        if keyword == "match":
            current = None if value.lower() == "all" else MatchBlock(value, str(path), lineno)
            if current is not None:
                out.matches.append(current)
            continue
        if keyword == "include":
            for pattern in value.split():
                full = pattern if os.path.isabs(pattern) else str(base / pattern)
                for included in sorted(glob.glob(full)):
                    _parse_file(Path(included), base, out, current, depth + 1)
            continue
        target = current.settings if current is not None else out.settings
        target.setdefault(keyword, Setting(value, str(path), lineno))


def parse_sshd_t(output: str) -> dict[str, str]:
    """`sshd -T` prints the effective configuration, one `keyword value` per line, lower case."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        keyword, _, value = line.strip().partition(" ")
        if keyword:
            values.setdefault(SSHD_ALIASES.get(keyword.lower(), keyword.lower()), value.strip())
    return values


def check_sshd(cfg: SshdConfig, *, include_base: Path | None = None, which: Callable[[str], str | None] = shutil.which,
               fail2ban_present: bool | None = None) -> CheckResult:
    started = time.monotonic()
    config = Path(cfg.config)
    sshd = which("sshd")
    if not config.exists() and sshd is None:
        return not_verified("host.sshd", TOOL, f"no sshd on this host ({config} absent, no sshd binary): "
                            "nothing to check here; on the server, run gameday security --host there")
    findings: list[Finding] = []
    items: list[dict[str, Any]] = []
    unverified: list[str] = []
    effective: dict[str, Setting] = {}
    source = str(config)
    parsed = parse_sshd_config(config, include_base) if config.exists() else None
    if cfg.use_sshd_t and sshd is not None:
        ran = run([sshd, "-T", "-f", str(config)], cwd=Path("/"), timeout_s=30)
        if ran.returncode == 0:
            effective = {k: Setting(v, "sshd -T", 0) for k, v in parse_sshd_t(ran.stdout).items()}
            source = "sshd -T"
        else:
            items.append({"id": "sshd.source", "ok": True,
                          "detail": f"sshd -T failed ({ran.problem or ran.tail(1)}); read {config} instead"})
    if not effective:
        if parsed is None:
            return not_verified("host.sshd", TOOL, f"{config} does not exist and sshd -T did not answer")
        unverified += parsed.problems
        effective = dict(parsed.settings)
    for key, (display, default) in SSHD_REQUIRED.items():
        setting = effective.get(key)
        value = setting.value.lower() if setting else default
        where = f"{setting.file}:{setting.line}" if setting and setting.line else (setting.file if setting else
                                                                                    f"unset (default {default})")
        _item(items, findings, f"sshd.{display}", value == "no", f"{display} {value} ({where}; expected no)",
              setting.file if setting and setting.line else source, setting.line if setting else None)
    for block in parsed.matches if parsed else []:
        for key, (display, _) in SSHD_REQUIRED.items():
            setting = block.settings.get(key)
            if setting is not None:
                _item(items, findings, f"sshd.match.{display}", setting.value.lower() == "no",
                      f"Match {block.criteria} ({block.file}:{block.line}) sets {display} {setting.value}",
                      setting.file, setting.line)
    if cfg.require_fail2ban:
        present = fail2ban_present if fail2ban_present is not None else (
            which("fail2ban-client") is not None or Path("/etc/fail2ban/jail.conf").exists())
        _item(items, findings, "sshd.fail2ban", present, "fail2ban " + ("installed" if present else "not installed"),
              severity="MEDIUM")
    files = parsed.files if parsed else []
    return _result("host.sshd", findings, unverified, items, started,
                   counts={"source": source, "files": files})


# -------------------------------------------------------------------------------------- firewall

UFW_APPS = {"openssh": {22}, "nginx full": {80, 443}, "nginx http": {80}, "nginx https": {443},
            "apache full": {80, 443}, "apache": {80}, "apache secure": {443}, "www": {80}, "www secure": {443},
            "www full": {80, 443}}


@dataclass
class UfwStatus:
    active: bool
    incoming: str | None
    rules: list[tuple[str, str, str]]


def parse_ufw(output: str) -> UfwStatus:
    status = re.search(r"^Status:\s*(\w+)", output, re.MULTILINE)
    default = re.search(r"^Default:\s*(\w+)\s*\(incoming\)", output, re.MULTILINE)
    rules: list[tuple[str, str, str]] = []
    table = False
    for line in output.splitlines():
        if re.match(r"^To\s+Action\s+From", line):
            table = True
            continue
        if not table or not line.strip() or set(line.strip()) <= {"-", " "}:
            continue
        cols = re.split(r"\s{2,}", line.strip())
        if len(cols) >= 3:
            rules.append((cols[0], cols[1], cols[2]))
    return UfwStatus(bool(status and status[1].lower() == "active"), default[1].lower() if default else None, rules)


def _rule_ports(target: str) -> set[int] | None:
    """The ports a ufw `To` column opens; None when it opens everything or cannot be told."""
    text = re.sub(r"\s*\(v6\)\s*$", "", target).strip()
    app = re.sub(r"\s*\(.*\)$", "", text).strip().lower()
    if app in UFW_APPS:
        return UFW_APPS[app]
    spec = text.split()[0] if text else ""
    spec = re.sub(r"\(.*\)", "", spec)
    match = re.match(r"^([\d,:]+)(?:/\w+)?$", spec)
    if not match:
        return None
    ports: set[int] = set()
    for part in match[1].split(","):
        if ":" in part:
            lo, hi = part.split(":", 1)
            ports |= set(range(int(lo), int(hi) + 1))
        elif part:
            ports.add(int(part))
    return ports


def check_firewall(cfg: FirewallConfig, output: str | None = None, problem: str | None = None) -> CheckResult:
    started = time.monotonic()
    if output is None:
        if problem is None:
            ufw = shutil.which("ufw")
            if ufw is None:
                return not_verified("host.firewall", TOOL, "ufw is not installed: the default-deny policy cannot be "
                                    "read (nftables/iptables rule sets are not interpreted)")
            ran = run([ufw, "status", "verbose"], cwd=Path("/"), timeout_s=30)
            if ran.returncode != 0:
                return not_verified("host.firewall", TOOL, f"ufw status verbose failed: {ran.problem or ran.tail()}")
            output = ran.stdout
        else:
            return not_verified("host.firewall", TOOL, problem)
    status = parse_ufw(output)
    findings: list[Finding] = []
    items: list[dict[str, Any]] = []
    _item(items, findings, "firewall.active", status.active, f"ufw {'active' if status.active else 'inactive'}")
    _item(items, findings, "firewall.default_deny", status.incoming in ("deny", "reject"),
          f"incoming default {status.incoming or 'unknown'} (expected deny)")
    allowed = set(cfg.allowed_ports)
    for to, action, source in status.rules:
        if not action.upper().startswith(("ALLOW", "LIMIT")) or "OUT" in action.upper():
            continue
        ports = _rule_ports(to)
        if ports is None:
            _item(items, findings, "firewall.rule", False, f"{action} {to} from {source}: opens ports that cannot be "
                  f"told (expected only {sorted(allowed)})")
        elif not ports <= allowed:
            extra = sorted(ports - allowed)
            _item(items, findings, "firewall.rule", False,
                  f"{action} {to} from {source} opens {extra[:5]}{'…' if len(extra) > 5 else ''} "
                  f"(allowed: {sorted(allowed)})")
    items.append({"id": "firewall.rules", "ok": True, "detail": f"{len(status.rules)} rule(s) read"})
    return _result("host.firewall", findings, [], items, started)


# ------------------------------------------------------------------------------------------ TLS


def certificate_expiry(host: str, port: int, server_name: str, ca_file: str | None,
                       timeout_s: float) -> datetime:
    """notAfter of the peer certificate after a verified handshake (ssl.SSLCertVerificationError if
    it is not trusted, expired or for another name)."""
    from cryptography import x509

    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, port), timeout=timeout_s) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server sent no certificate")
    return x509.load_der_x509_certificate(der).not_valid_after_utc


def check_tls(cfg: TlsConfig, now: datetime | None = None) -> CheckResult:
    started = time.monotonic()
    if not cfg.hosts:
        return not_verified("host.tls", TOOL, "no TLS hosts configured (host.tls.hosts in config/security.yaml)")
    now = now or datetime.now(UTC)
    findings: list[Finding] = []
    items: list[dict[str, Any]] = []
    unverified: list[str] = []
    for h in cfg.hosts:
        name = h.server_name or h.host
        where = f"{h.host}:{h.port}"
        try:
            expires = certificate_expiry(h.host, h.port, name, cfg.ca_file, cfg.timeout_s)
        except ssl.SSLCertVerificationError as exc:
            _item(items, findings, "tls.trusted", False, f"{where}: certificate not accepted: {exc.verify_message}",
                  severity="CRITICAL")
            continue
        except (OSError, ssl.SSLError) as exc:
            unverified.append(f"{where}: unreachable or no TLS ({type(exc).__name__}: {exc})")
            continue
        days = (expires - now).total_seconds() / 86400
        _item(items, findings, "tls.expiry", days >= cfg.min_days_left,
              f"{where}: expires {expires:%Y-%m-%d} ({days:.1f} days left; need >= {cfg.min_days_left})")
    return _result("host.tls", findings, unverified, items, started,
                   thresholds={"min_days_left": cfg.min_days_left})


# ---------------------------------------------------------------------------------------- redis


def check_redis(cfg: RedisCheckConfig, loader: SecretLoader, rules: PasswordRules) -> CheckResult:
    import redis

    from harness.services import make_redis_client, redact_url

    started = time.monotonic()
    if not cfg.url:
        return not_verified("host.redis", TOOL, "no Redis configured (host.redis.url in config/security.yaml)")
    where = redact_url(cfg.url)
    findings: list[Finding] = []
    items: list[dict[str, Any]] = []
    unverified: list[str] = []
    refused = f"{where}: unauthenticated commands refused (requirepass set)"
    anonymous = make_redis_client(cfg.url, timeout=2.0)
    try:
        anonymous.config_get("requirepass")
        _item(items, findings, "redis.requirepass", False,
              f"{where}: an unauthenticated client may run CONFIG (requirepass not set)", severity="CRITICAL")
        client = anonymous
    except redis.AuthenticationError:
        items.append({"id": "redis.requirepass", "ok": True, "detail": refused})
        client = None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            items.append({"id": "redis.requirepass", "ok": True, "detail": refused})
            client = None
        else:
            anonymous.close()
            return not_verified("host.redis", TOOL, f"{where}: CONFIG GET refused ({exc}); is CONFIG renamed?")
    except redis.RedisError as exc:
        anonymous.close()
        return not_verified("host.redis", TOOL, f"{where}: unreachable ({type(exc).__name__}: {exc})")
    if client is None:
        anonymous.close()
        password = loader.get(cfg.password_secret)
        if not password:
            unverified.append(f"persistence and password strength not read: {cfg.password_secret} is in none of: "
                              f"{loader.describe()}")
        else:
            client = make_redis_client(cfg.url, timeout=2.0, password=password)
    if client is not None:
        try:
            values = client.config_get("requirepass")
            values.update(client.config_get("appendonly"))
            values.update(client.config_get("save"))
        except redis.RedisError as exc:
            unverified.append(f"{where}: CONFIG GET with the password failed ({type(exc).__name__})")
            values = None
        finally:
            client.close()
        if values is not None:
            secret = values.get("requirepass", "")
            if secret:
                weak = password_problems(secret, rules)
                _item(items, findings, "redis.password_strength", not weak,
                      "requirepass " + ("strong" if not weak else "weak: " + "; ".join(weak)))
            aof = values.get("appendonly") == "yes"
            rdb = bool((values.get("save") or "").strip())
            ok = {"aof": aof, "rdb": rdb, "any": aof or rdb}[cfg.persistence]
            _item(items, findings, "redis.persistence", ok,
                  f"appendonly {values.get('appendonly')}, save {values.get('save')!r} (need {cfg.persistence})")
    return _result("host.redis", findings, unverified, items, started, thresholds={"persistence": cfg.persistence})


# ------------------------------------------------------------------------------ database password


def _tracked_files_containing(root: Path, needle: str) -> list[str]:
    listed = run(["git", "ls-files", "-z"], cwd=root, timeout_s=60)
    if listed.returncode != 0:
        return []
    data = needle.encode()
    hits: list[str] = []
    for name in filter(None, listed.stdout.split("\0")):
        try:
            if data in (root / name).read_bytes():
                hits.append(name)
        except OSError:
            continue
    return hits


def check_db_password(cfg: DatabaseConfig, loader: SecretLoader, root: Path) -> CheckResult:
    started = time.monotonic()
    password = loader.get(cfg.password_secret)
    if not password:
        return not_verified("host.db_password", TOOL, f"{cfg.password_secret} is in none of: {loader.describe()}")
    findings: list[Finding] = []
    items: list[dict[str, Any]] = []
    weak = password_problems(password, cfg.rules)
    _item(items, findings, "db_password.strength", not weak,
          f"{cfg.password_secret} from {loader.where(cfg.password_secret)}: "
          + ("long and random" if not weak else "weak: " + "; ".join(weak)))
    hits = _tracked_files_containing(root, password)
    _item(items, findings, "db_password.not_in_code", not hits,
          "in no tracked file" if not hits else f"appears in tracked file(s) {hits[:5]}: rotate it",
          severity="CRITICAL")
    return _result("host.db_password", findings, [], items, started,
                   thresholds=cfg.rules.model_dump())


# -------------------------------------------------------------------------------------- backups


def check_backups(cfg: BackupsConfig, now: float | None = None) -> CheckResult:
    started = time.monotonic()
    if not cfg.path:
        return not_verified("host.backups", TOOL,
                            "no backup path configured (host.backups.path in config/security.yaml)")
    base = Path(cfg.path)
    findings: list[Finding] = []
    items: list[dict[str, Any]] = []
    if not base.is_dir():
        _item(items, findings, "backups.present", False, f"{base}: no such directory")
        return _result("host.backups", findings, [], items, started)
    files = [p for p in base.rglob("*") if p.is_file()]
    if not files:
        _item(items, findings, "backups.present", False, f"{base}: no backup file")
        return _result("host.backups", findings, [], items, started)
    newest = max(files, key=lambda p: p.stat().st_mtime)
    st = newest.stat()
    age_h = ((now if now is not None else time.time()) - st.st_mtime) / 3600
    _item(items, findings, "backups.recent", age_h <= cfg.max_age_hours,
          f"newest {newest.name}: {age_h:.1f} h old (need <= {cfg.max_age_hours:g} h)", str(newest))
    _item(items, findings, "backups.not_empty", st.st_size > 0, f"{newest.name}: {st.st_size} bytes", str(newest))
    if cfg.encrypted_suffixes:
        encrypted = newest.name.endswith(tuple(cfg.encrypted_suffixes))
        _item(items, findings, "backups.encrypted", encrypted,
              f"{newest.name}: {'encrypted' if encrypted else 'not encrypted'} (suffixes {cfg.encrypted_suffixes})",
              str(newest))
    return _result("host.backups", findings, [], items, started,
                   thresholds={"max_age_hours": cfg.max_age_hours}, counts={"files": len(files)})
