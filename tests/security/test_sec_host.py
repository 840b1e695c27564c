"""Host and database readiness checks on fixture files, a local TLS server and real redis-server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sec_support import FIXTURES

from bot.io.secrets import EnvSource, SecretLoader
from harness.security import host
from harness.security.config import (
    BackupsConfig,
    DatabaseConfig,
    FirewallConfig,
    PasswordRules,
    RedisCheckConfig,
    SshdConfig,
    TlsConfig,
    TlsHost,
)
from harness.security.model import FAIL, NOT_VERIFIED, PASS
from harness.security.passwords import password_problems
from harness.services import free_loopback_port, require_services

SSHD = FIXTURES / "host" / "sshd"
UFW = FIXTURES / "host" / "ufw"


def _no_sshd(name: str) -> str | None:
    return None


def _sshd(tree: str, fail2ban: bool = True) -> host.CheckResult:
    return host.check_sshd(SshdConfig(config=str(SSHD / tree / "sshd_config")), which=_no_sshd,
                           fail2ban_present=fail2ban)


# -------------------------------------------------------------------------------------------- sshd


def test_sshd_hardened_config_with_includes_passes() -> None:
    result = _sshd("hardened")
    assert result.verdict == PASS, result.summary
    assert any(f.endswith("10-hardening.conf") for f in result.counts["files"])


def test_sshd_drop_in_read_first_wins_and_fails() -> None:
    result = _sshd("cloud-init-override")
    assert result.verdict == FAIL
    [finding] = result.counted
    assert finding.rule == "sshd.PasswordAuthentication" and finding.path.endswith("50-cloud-init.conf")
    assert finding.line == 1


def test_sshd_match_block_that_reenables_passwords_fails() -> None:
    result = _sshd("match-reenables")
    assert [f.rule for f in result.counted] == ["sshd.match.PasswordAuthentication"]
    assert "Match User deploy Address 10.0.0.0/8" in result.counted[0].message


def test_sshd_defaults_are_not_hardened() -> None:
    result = _sshd("debian-default")
    assert {f.rule for f in result.counted} == {"sshd.PermitRootLogin", "sshd.PasswordAuthentication",
                                                "sshd.KbdInteractiveAuthentication"}
    assert "PermitRootLogin prohibit-password (unset (default prohibit-password)" in result.summary


def test_sshd_without_fail2ban_fails() -> None:
    assert [f.rule for f in _sshd("hardened", fail2ban=False).counted] == ["sshd.fail2ban"]


def _fake_sshd(tmp: Path, output: Path) -> str:
    script = tmp / "sshd"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -T ] || exit 1\ncat '{output}'\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize(("fixture", "verdict"), [("sshd-T-hardened.txt", PASS), ("sshd-T-root-login.txt", FAIL)])
def test_sshd_t_effective_configuration_is_preferred(tmp_path: Path, fixture: str, verdict: str) -> None:
    binary = _fake_sshd(tmp_path, SSHD / fixture)
    cfg = SshdConfig(config=str(SSHD / "debian-default" / "sshd_config"))  # the file alone would fail
    result = host.check_sshd(cfg, which=lambda name: binary if name == "sshd" else None, fail2ban_present=True)
    assert result.verdict == verdict and result.counts["source"] == "sshd -T"
    if verdict == FAIL:
        assert "PermitRootLogin without-password" in result.counted[0].message


def test_no_sshd_is_not_verified(tmp_path: Path) -> None:
    result = host.check_sshd(SshdConfig(config=str(tmp_path / "none")), which=_no_sshd)
    assert result.verdict == NOT_VERIFIED and "no sshd on this host" in result.reasons[0]


# ---------------------------------------------------------------------------------------- firewall


@pytest.mark.parametrize(("fixture", "verdict", "failing"), [
    ("active-deny.txt", PASS, set()),
    ("inactive.txt", FAIL, {"firewall.active", "firewall.default_deny"}),
    ("default-allow.txt", FAIL, {"firewall.default_deny"}),
    ("extra-port.txt", FAIL, {"firewall.rule"}),
])
def test_ufw_status_verbose(fixture: str, verdict: str, failing: set[str]) -> None:
    result = host.check_firewall(FirewallConfig(), (UFW / fixture).read_text())
    assert result.verdict == verdict and {f.rule for f in result.counted} == failing
    if fixture == "extra-port.txt":
        assert len(result.counted) == 2 and "6379" in result.counted[0].message


def test_firewall_without_ufw_is_not_verified() -> None:
    if shutil.which("ufw"):
        pytest.skip("ufw is installed here")
    assert host.check_firewall(FirewallConfig()).verdict == NOT_VERIFIED


# --------------------------------------------------------------------------------------------- TLS


def _certificate(tmp: Path, not_before: dt.datetime, not_after: dt.datetime) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsServer:
    """Accepts TLS connections on loopback and completes the handshake, until stopped."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[TlsServer, Path, dt.datetime]]:
    now = dt.datetime.now(dt.UTC)
    cert, key = _certificate(tmp_path, now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    server = TlsServer(cert, key)
    try:
        yield server, cert, now
    finally:
        server.stop()


TlsFixture = tuple[TlsServer, Path, dt.datetime]


def test_tls_expiry_passes_with_time_left_and_fails_near_expiry(tls_server: TlsFixture) -> None:
    server, cert, now = tls_server
    cfg = TlsConfig(hosts=[TlsHost(host="127.0.0.1", port=server.port, server_name="localhost")], ca_file=str(cert),
                    min_days_left=14)
    ok = host.check_tls(cfg)
    assert ok.verdict == PASS and ("29." in ok.summary or "30." in ok.summary), ok.summary
    soon = host.check_tls(cfg, now=now + dt.timedelta(days=20))  # 10 days left, 14 required
    assert soon.verdict == FAIL and soon.counted[0].rule == "tls.expiry"
    assert host.check_tls(cfg.model_copy(update={"min_days_left": 29})).verdict == PASS
    assert host.check_tls(cfg.model_copy(update={"min_days_left": 31})).verdict == FAIL


def test_tls_untrusted_or_expired_certificate_fails(tmp_path: Path, tls_server: TlsFixture) -> None:
    server, _, now = tls_server
    untrusted = host.check_tls(TlsConfig(hosts=[TlsHost(host="127.0.0.1", port=server.port,
                                                        server_name="localhost")]))
    assert untrusted.verdict == FAIL and "self-signed" in untrusted.counted[0].message
    cert, key = _certificate(tmp_path, now - dt.timedelta(days=60), now - dt.timedelta(days=1))
    expired_server = TlsServer(cert, key)
    try:
        expired = host.check_tls(TlsConfig(hosts=[TlsHost(host="127.0.0.1", port=expired_server.port,
                                                          server_name="localhost")], ca_file=str(cert)))
    finally:
        expired_server.stop()
    assert expired.verdict == FAIL and "expired" in expired.counted[0].message


def test_tls_nothing_configured_or_unreachable_is_not_verified() -> None:
    assert host.check_tls(TlsConfig()).verdict == NOT_VERIFIED
    down = host.check_tls(TlsConfig(hosts=[TlsHost(host="127.0.0.1", port=free_loopback_port())], timeout_s=1))
    assert down.verdict == NOT_VERIFIED and "unreachable" in down.reasons[0]


# ------------------------------------------------------------------------------------------- redis


STRONG = "Gq7" + secrets.token_urlsafe(32)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    binary = shutil.which("redis-server")
    if binary is None:
        if require_services():
            pytest.fail("redis-server not found (apt-get install -y redis-server)")
        pytest.skip("redis-server not found (apt-get install -y redis-server)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = free_loopback_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                                 "--save", "", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"redis://127.0.0.1:{port}/0"
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _loader(**env: str) -> SecretLoader:
    return SecretLoader([EnvSource(env)])


def test_redis_without_requirepass_fails(redis_server) -> None:  # type: ignore[no-untyped-def]
    url = redis_server("--appendonly", "yes")
    result = host.check_redis(RedisCheckConfig(url=url), _loader(), PasswordRules())
    assert result.verdict == FAIL and [f.rule for f in result.counted] == ["redis.requirepass"]


def test_redis_with_requirepass_and_aof_passes(redis_server) -> None:  # type: ignore[no-untyped-def]
    url = redis_server("--requirepass", STRONG, "--appendonly", "yes")
    result = host.check_redis(RedisCheckConfig(url=url), _loader(GAMEDAY_REDIS_PASSWORD=STRONG), PasswordRules())
    assert result.verdict == PASS, result.summary
    assert STRONG not in result.summary + repr(result.to_dict())


def test_redis_without_persistence_or_with_a_weak_password_fails(redis_server) -> None:  # type: ignore[no-untyped-def]
    url = redis_server("--requirepass", STRONG, "--appendonly", "no")
    result = host.check_redis(RedisCheckConfig(url=url), _loader(GAMEDAY_REDIS_PASSWORD=STRONG), PasswordRules())
    assert [f.rule for f in result.counted] == ["redis.persistence"]
    weak_url = redis_server("--requirepass", "redis123", "--appendonly", "yes")
    weak = host.check_redis(RedisCheckConfig(url=weak_url), _loader(GAMEDAY_REDIS_PASSWORD="redis123"),
                            PasswordRules())
    assert [f.rule for f in weak.counted] == ["redis.password_strength"] and "redis123" not in weak.summary


def test_redis_password_unknown_is_not_verified_but_requirepass_is_seen(redis_server) -> None:  # type: ignore[no-untyped-def]
    url = redis_server("--requirepass", STRONG)
    result = host.check_redis(RedisCheckConfig(url=url), _loader(), PasswordRules())
    assert result.verdict == NOT_VERIFIED and result.items[0]["ok"] and "GAMEDAY_REDIS_PASSWORD" in result.reasons[0]


def test_redis_unreachable_or_unconfigured_is_not_verified() -> None:
    down = host.check_redis(RedisCheckConfig(url=f"redis://127.0.0.1:{free_loopback_port()}/0"), _loader(),
                            PasswordRules())
    assert down.verdict == NOT_VERIFIED and "unreachable" in down.reasons[0]
    assert host.check_redis(RedisCheckConfig(), _loader(), PasswordRules()).verdict == NOT_VERIFIED


# ------------------------------------------------------------------------------- database password


@pytest.mark.parametrize(("password", "problem"), [
    (secrets.token_urlsafe(32), None),
    (secrets.token_hex(16), None),                     # 32 hex characters: 128 bits
    ("Tr0ub4dor&3", "characters (need >= 32)"),
    ("a" * 40, "bits per character"),
    ("Password123!" * 3, "repeats a"),
    ("0123456789" * 4, "repeats a"),
])
def test_password_rules(password: str, problem: str | None) -> None:
    found = password_problems(password, PasswordRules())
    assert (not found) if problem is None else any(problem in p for p in found), found


def test_db_password_check_reads_the_secret_and_the_tracked_files(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    strong = secrets.token_urlsafe(32)
    result = host.check_db_password(DatabaseConfig(), _loader(DB_PASSWORD=strong), tmp_path)
    assert result.verdict == PASS and strong not in result.summary
    (tmp_path / "settings.py").write_text(f'DB_PASSWORD = "{strong}"\n')
    subprocess.run(["git", "add", "settings.py"], cwd=tmp_path, check=True)
    leaked = host.check_db_password(DatabaseConfig(), _loader(DB_PASSWORD=strong), tmp_path)
    assert [f.rule for f in leaked.counted] == ["db_password.not_in_code"] and "settings.py" in leaked.summary
    assert host.check_db_password(DatabaseConfig(), _loader(), tmp_path).verdict == NOT_VERIFIED


# ----------------------------------------------------------------------------------------- backups


def test_backups_recent_nonempty_encrypted(tmp_path: Path) -> None:
    now = time.time()
    old = tmp_path / "db-2026-01-01.sql.gpg"
    old.write_bytes(b"x" * 10)
    os.utime(old, (now - 72 * 3600, now - 72 * 3600))
    cfg = BackupsConfig(path=str(tmp_path), max_age_hours=26)
    stale = host.check_backups(cfg, now=now)
    assert stale.verdict == FAIL and [f.rule for f in stale.counted] == ["backups.recent"]
    fresh = tmp_path / "daily" / "db-2026-01-04.sql.gpg"
    fresh.parent.mkdir()
    fresh.write_bytes(b"y" * 10)
    os.utime(fresh, (now - 3600, now - 3600))
    assert host.check_backups(cfg, now=now).verdict == PASS
    plain = tmp_path / "db-2026-01-04.sql"
    plain.write_bytes(b"")
    os.utime(plain, (now - 60, now - 60))
    assert {f.rule for f in host.check_backups(cfg, now=now).counted} == {"backups.not_empty", "backups.encrypted"}


def test_backups_missing_or_unconfigured(tmp_path: Path) -> None:
    assert host.check_backups(BackupsConfig(path=str(tmp_path / "none"))).verdict == FAIL
    assert host.check_backups(BackupsConfig(path=str(tmp_path))).verdict == FAIL  # empty
    assert host.check_backups(BackupsConfig()).verdict == NOT_VERIFIED
