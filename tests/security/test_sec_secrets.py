"""One secret loader (bot.io.secrets): env, Docker secrets, Vault (recorded replies), Fernet-encrypted
file, `.env` refused unless 0600; bot.io.credentials' public functions built on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import responses
from cryptography.fernet import Fernet
from sec_support import FIXTURES, ROOT

from bot.io import redaction
from bot.io.credentials import (
    CredentialError,
    load_api_credentials,
    load_verifier,
    presented_token,
    read_private_file,
)
from bot.io.secrets import (
    DockerSecretsSource,
    SecretLoader,
    VaultSource,
    default_loader,
    encrypt_env_file,
    redis_url_with_password,
)

KEY, SECRET = "GAMEDAYFAKE-key-1234", "GAMEDAYFAKE-secret-abcdef-0000"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment that points every file source into `tmp` (nothing of the machine's leaks in)."""
    return {"GAMEDAY_SECRETS_DIR": str(tmp / "run-secrets"), "GAMEDAY_DOTENV": str(tmp / ".env"), **extra}


def test_environment_first(tmp_path: Path) -> None:
    creds = load_api_credentials(env=_env(tmp_path, GAMEDAY_API_KEY=KEY, GAMEDAY_API_SECRET=SECRET))
    assert (creds.api_key, creds.secret) == (KEY, SECRET)
    assert SECRET not in repr(creds)


def test_docker_secrets_by_name_or_lower_case(tmp_path: Path) -> None:
    _write(tmp_path / "run-secrets" / "gameday_api_key", KEY + "\n", 0o444)
    _write(tmp_path / "run-secrets" / "GAMEDAY_API_SECRET", SECRET + "\n", 0o444)
    creds = load_api_credentials(env=_env(tmp_path))
    assert (creds.api_key, creds.secret) == (KEY, SECRET)
    assert default_loader(_env(tmp_path)).where("GAMEDAY_API_KEY") == f"Docker secrets in {tmp_path / 'run-secrets'}"


def test_dotenv_is_read_only_when_private(tmp_path: Path) -> None:
    text = f"# comment\nexport GAMEDAY_API_KEY={KEY}\nGAMEDAY_API_SECRET='{SECRET}'\n"
    dotenv = _write(tmp_path / ".env", text, 0o644)
    with pytest.raises(CredentialError) as refused:
        load_api_credentials(env=_env(tmp_path))
    assert "chmod 600" in str(refused.value) and SECRET not in str(refused.value)
    dotenv.chmod(0o600)
    creds = load_api_credentials(env=_env(tmp_path))
    assert (creds.api_key, creds.secret) == (KEY, SECRET)


def test_a_loose_dotenv_refuses_even_when_the_environment_has_the_secret(tmp_path: Path) -> None:
    _write(tmp_path / ".env", "OTHER=x\n", 0o640)
    with pytest.raises(CredentialError, match="readable by group/others"):
        load_api_credentials(env=_env(tmp_path, GAMEDAY_API_KEY=KEY, GAMEDAY_API_SECRET=SECRET))


def test_malformed_dotenv_names_the_line(tmp_path: Path) -> None:
    _write(tmp_path / ".env", "GOOD=1\nthis is not an assignment\n")
    with pytest.raises(CredentialError, match=r"\.env:2: expected NAME=VALUE"):
        default_loader(_env(tmp_path))


def test_precedence_env_then_docker_then_dotenv(tmp_path: Path) -> None:
    _write(tmp_path / "run-secrets" / "gameday_api_key", "from-docker-GAMEDAYFAKE")
    _write(tmp_path / ".env", "GAMEDAY_API_KEY=from-dotenv-GAMEDAYFAKE\nGAMEDAY_API_SECRET=dotenv-secret-GAMEDAYFAKE\n")
    loader = default_loader(_env(tmp_path, GAMEDAY_API_SECRET="env-secret-GAMEDAYFAKE"))
    assert loader.get("GAMEDAY_API_KEY") == "from-docker-GAMEDAYFAKE"
    assert loader.get("GAMEDAY_API_SECRET") == "env-secret-GAMEDAYFAKE"
    assert [s.name for s in loader.sources] == ["env", "docker", "dotenv"]


def test_fernet_file_decrypts_with_the_key_and_refuses_otherwise(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    plain = _write(tmp_path / "plain.env", f"GAMEDAY_API_KEY={KEY}\nGAMEDAY_API_SECRET={SECRET}\n")
    enc = tmp_path / "secrets.enc"
    assert encrypt_env_file(plain, enc, key) == 2
    assert oct(enc.stat().st_mode & 0o777) == "0o600" and SECRET.encode() not in enc.read_bytes()
    env = _env(tmp_path, GAMEDAY_ENCRYPTED_SECRETS=str(enc), ENCRYPTION_KEY=key)
    creds = load_api_credentials(env=env)
    assert (creds.api_key, creds.secret) == (KEY, SECRET)
    assert default_loader(env).where("GAMEDAY_API_SECRET") == f"encrypted file {enc}"

    with pytest.raises(CredentialError, match="wrong key, or the file was altered"):
        default_loader({**env, "ENCRYPTION_KEY": Fernet.generate_key().decode()})
    with pytest.raises(CredentialError, match="not a Fernet key"):
        default_loader({**env, "ENCRYPTION_KEY": "not-a-key"})
    with pytest.raises(CredentialError, match="ENCRYPTION_KEY is in none of"):
        default_loader({k: v for k, v in env.items() if k != "ENCRYPTION_KEY"})
    token = bytearray(enc.read_bytes())
    token[40] = ord("A") if token[40] != ord("A") else ord("B")
    enc.write_bytes(bytes(token))
    with pytest.raises(CredentialError, match="altered"):
        default_loader(env)


def test_encryption_key_may_come_from_a_private_dotenv(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    enc = tmp_path / "secrets.enc"
    encrypt_env_file(_write(tmp_path / "plain", f"DB_PASSWORD={SECRET}\n"), enc, key)
    _write(tmp_path / ".env", f"ENCRYPTION_KEY={key}\n")
    assert default_loader(_env(tmp_path, GAMEDAY_ENCRYPTED_SECRETS=str(enc))).get("DB_PASSWORD") == SECRET


VAULT = "http://127.0.0.1:8200"
VAULT_TOKEN = "hvs.GAMEDAYFAKE-vault-token-000"


@responses.activate
def test_vault_kv2_read_from_a_recorded_reply(tmp_path: Path) -> None:
    reply = json.loads((FIXTURES / "vault" / "kv2-read-gameday.json").read_text())
    route = responses.get(f"{VAULT}/v1/secret/data/gameday", json=reply, status=200)
    creds = load_api_credentials(env=_env(tmp_path, VAULT_ADDR=VAULT, VAULT_TOKEN=VAULT_TOKEN))
    assert (creds.api_key, creds.secret) == ("GAMEDAYFAKE-vault-api-key", "GAMEDAYFAKE-vault-api-secret-0000")
    assert route.call_count == 1  # read once, both names from the one reply
    assert responses.calls[0].request.headers["X-Vault-Token"] == VAULT_TOKEN


@responses.activate
def test_vault_refusals_name_the_path_never_the_token(tmp_path: Path) -> None:
    forbidden = json.loads((FIXTURES / "vault" / "kv2-forbidden.json").read_text())
    responses.get(f"{VAULT}/v1/kv/data/trading", json=forbidden, status=403)
    responses.get(f"{VAULT}/v1/secret/data/missing", json={"errors": []}, status=404)
    env = _env(tmp_path, VAULT_ADDR=VAULT, VAULT_TOKEN=VAULT_TOKEN, GAMEDAY_VAULT_MOUNT="kv",
               GAMEDAY_VAULT_PATH="trading")
    with pytest.raises(CredentialError) as denied:
        load_api_credentials(env=env)
    assert "kv/trading: permission denied" in str(denied.value) and VAULT_TOKEN not in str(denied.value)
    source = VaultSource(VAULT, VAULT_TOKEN, path="missing")
    with pytest.raises(CredentialError, match="no such secret"):
        source.get("X")


def test_vault_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="VAULT_TOKEN is in none of"):
        default_loader(_env(tmp_path, VAULT_ADDR=VAULT))


def test_vault_unreachable_is_a_clear_error() -> None:
    source = VaultSource("http://127.0.0.1:9", VAULT_TOKEN, timeout_s=1)
    with pytest.raises(CredentialError, match="unreachable"):
        source.get("GAMEDAY_API_KEY")


def test_missing_names_every_source(tmp_path: Path) -> None:
    (tmp_path / "run-secrets").mkdir()
    with pytest.raises(CredentialError) as missing:
        load_api_credentials(env=_env(tmp_path, GAMEDAY_API_KEY=KEY))
    text = str(missing.value)
    assert "GAMEDAY_API_SECRET missing from the environment; Docker secrets in" in text and KEY not in text


def test_credentials_public_functions_keep_working(tmp_path: Path) -> None:
    keyfile = _write(tmp_path / "keys", f"GAMEDAY_API_KEY={KEY}\nGAMEDAY_API_SECRET={SECRET}\n")
    assert load_api_credentials(keyfile).secret == SECRET
    keyfile.chmod(0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        load_api_credentials(keyfile)
    token = _write(tmp_path / "token", "GAMEDAYFAKE-operator-token\n")
    assert presented_token(token) == "GAMEDAYFAKE-operator-token"
    assert presented_token(env=_env(tmp_path, GAMEDAY_KILL_TOKEN="GAMEDAYFAKE-env-token")) == "GAMEDAYFAKE-env-token"
    assert presented_token(env=_env(tmp_path)) is None
    verify, problem = load_verifier(token)
    assert problem is None and verify("GAMEDAYFAKE-operator-token") and not verify("wrong")
    assert read_private_file(token, "token file").strip() == "GAMEDAYFAKE-operator-token"


def test_everything_handed_out_is_registered_for_redaction(tmp_path: Path) -> None:
    _write(tmp_path / "run-secrets" / "db_password", "GAMEDAYFAKE-db-password-0000")
    loader = SecretLoader([DockerSecretsSource(tmp_path / "run-secrets")])
    assert redaction.redact("pw=GAMEDAYFAKE-db-password-0000") == "pw=GAMEDAYFAKE-db-password-0000"
    loader.get("DB_PASSWORD")
    assert redaction.redact("pw=GAMEDAYFAKE-db-password-0000") == "pw=***"


def test_redis_password_from_a_secret(tmp_path: Path) -> None:
    env = _env(tmp_path, GAMEDAY_REDIS_PASSWORD="p@ss/word GAMEDAYFAKE")
    assert redis_url_with_password("redis://redis:6379/0", env=env) == "redis://:p%40ss%2Fword%20GAMEDAYFAKE@redis:6379/0"
    assert redis_url_with_password("redis://:own@redis:6379/0", env=env) == "redis://:own@redis:6379/0"
    unix = redis_url_with_password("unix:///run/redis.sock?db=1", env=env)
    assert unix.endswith("db=1&password=p%40ss%2Fword+GAMEDAYFAKE")
    assert redis_url_with_password("redis://redis:6379/0", env=_env(tmp_path)) == "redis://redis:6379/0"


def test_secrets_cli_keygen_encrypt_list(tmp_path: Path) -> None:
    def bot(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "secrets", *args], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, **_env(tmp_path), **env}, timeout=60)

    key = bot("keygen").stdout.strip()
    Fernet(key.encode())  # a valid Fernet key
    plain = _write(tmp_path / "plain", f"GAMEDAY_API_SECRET={SECRET}\n")
    done = bot("encrypt", "--in", str(plain), "--out", str(tmp_path / "s.enc"), ENCRYPTION_KEY=key)
    assert done.returncode == 0, done.stderr
    listed = bot("list", "GAMEDAY_API_SECRET", "DB_PASSWORD", ENCRYPTION_KEY=key,
                 GAMEDAY_ENCRYPTED_SECRETS=str(tmp_path / "s.enc"))
    assert listed.stdout.splitlines() == [f"GAMEDAY_API_SECRET: encrypted file {tmp_path / 's.enc'}",
                                          "DB_PASSWORD: not set"]
    assert SECRET not in listed.stdout + listed.stderr and key not in listed.stderr
    refused = bot("list", GAMEDAY_ENCRYPTED_SECRETS=str(tmp_path / "s.enc"))
    assert refused.returncode == 2 and "python -m bot secrets keygen" in refused.stderr


def test_live_bot_refuses_a_loose_dotenv(tmp_path: Path) -> None:
    _write(tmp_path / ".env", f"GAMEDAY_API_KEY={KEY}\nGAMEDAY_API_SECRET={SECRET}\n", 0o644)
    done = subprocess.run([sys.executable, "-m", "bot", "run", "--exchange", "testnet", "--testnet-url",
                           "http://127.0.0.1:9"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **_env(tmp_path)})
    assert done.returncode == 2 and "chmod 600" in done.stderr and SECRET not in done.stderr + done.stdout
