"""One loader for every secret the bot needs (risk_safety_checklist D1, pets Wallet Security).

A secret is looked up by name (e.g. `GAMEDAY_API_SECRET`) in these sources, first hit wins:

1. `env`      the process environment;
2. `docker`   Docker secrets: a file per secret in `GAMEDAY_SECRETS_DIR` (default `/run/secrets`),
              named as the secret or in lower case (`/run/secrets/gameday_api_secret`);
3. `vault`    HashiCorp Vault KV v2 via hvac (extra `vault`), when `VAULT_ADDR` is set: the
              secret `GAMEDAY_VAULT_PATH` (default `gameday`) in mount `GAMEDAY_VAULT_MOUNT`
              (default `secret`), token from `VAULT_TOKEN` (env or a Docker secret);
4. `fernet`   a Fernet-encrypted file (`GAMEDAY_ENCRYPTED_SECRETS`) holding `NAME=VALUE` lines,
              decrypted with `ENCRYPTION_KEY` (looked up in the sources above, or in `.env`);
5. `dotenv`   a `.env` file (`GAMEDAY_DOTENV`, default `./.env`) - refused, with the fix, unless
              only its owner can read it (mode 0600 or stricter).

Every value handed out is registered with bot.io.redaction, so it is masked wherever the bot
writes. Messages and exceptions name the source and the fix, never a value.
`python -m bot secrets keygen | encrypt | list` makes the key and the encrypted file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from bot.io.redaction import register_secret

SECRETS_DIR_ENV, DEFAULT_SECRETS_DIR = "GAMEDAY_SECRETS_DIR", "/run/secrets"
DOTENV_ENV, DEFAULT_DOTENV = "GAMEDAY_DOTENV", ".env"
ENCRYPTED_ENV = "GAMEDAY_ENCRYPTED_SECRETS"
ENCRYPTION_KEY_NAME = "ENCRYPTION_KEY"
VAULT_ADDR_ENV, VAULT_TOKEN_NAME = "VAULT_ADDR", "VAULT_TOKEN"
VAULT_PATH_ENV, VAULT_MOUNT_ENV = "GAMEDAY_VAULT_PATH", "GAMEDAY_VAULT_MOUNT"
VAULT_NAMESPACE_ENV, VAULT_CACERT_ENV = "VAULT_NAMESPACE", "VAULT_CACERT"
REDIS_PASSWORD_NAME = "GAMEDAY_REDIS_PASSWORD"


class CredentialError(Exception):
    """A secret missing or unsafe; the message says which and how to fix it (never the value)."""


def read_private_file(path: str | os.PathLike[str], what: str) -> str:
    """The text of a regular file only its owner can read; CredentialError otherwise.

    A one-line file is a secret in itself (a token): its stripped text is registered for redaction.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise CredentialError(f"{what} {p}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CredentialError(f"{what} {p}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise CredentialError(f"{what} {p} is readable by group/others (mode {mode:04o}); "
                              f"run: chmod 600 {p}")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{what} {p}: cannot read it ({type(exc).__name__})") from None
    if "\n" not in text.strip():
        register_secret(text.strip())
    return text


def parse_env_lines(text: str, where: str) -> dict[str, str]:
    """`NAME=VALUE` lines (blank lines and `#` comments skipped, `export ` and one pair of
    surrounding quotes allowed); a malformed line is an error naming its line number."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not name.replace("_", "").isalnum():
            raise CredentialError(f"{where}:{lineno}: expected NAME=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


class SecretSource(Protocol):
    """Where secrets may come from. `get` returns None when this source does not have the name."""

    name: str

    def get(self, key: str) -> str | None: ...

    def describe(self) -> str: ...


@dataclass
class EnvSource:
    env: Mapping[str, str]
    name: str = "env"

    def get(self, key: str) -> str | None:
        return self.env.get(key) or None

    def describe(self) -> str:
        return "the environment"


@dataclass
class DockerSecretsSource:
    """Docker (and Kubernetes) secrets: one file per secret; the files are mounted read-only by the
    engine, so their mode is not checked (it is the engine's, typically 0444 inside the container)."""

    directory: Path
    name: str = "docker"

    def get(self, key: str) -> str | None:
        for candidate in dict.fromkeys((key, key.lower())):
            path = self.directory / candidate
            if path.is_file():
                try:
                    value = path.read_text().strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise CredentialError(f"Docker secret {path}: cannot read it ({type(exc).__name__})") from None
                return value or None
        return None

    def describe(self) -> str:
        return f"Docker secrets in {self.directory}"


@dataclass
class DotEnvSource:
    path: Path
    name: str = "dotenv"
    _values: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        text = read_private_file(self.path, ".env file")
        self._values = parse_env_lines(text, str(self.path))

    def get(self, key: str) -> str | None:
        return self._values.get(key) or None

    def describe(self) -> str:
        return f".env file {self.path}"


@dataclass
class FernetFileSource:
    """`NAME=VALUE` lines encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256)."""

    path: Path
    key: str
    name: str = "fernet"
    _values: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from cryptography.fernet import Fernet, InvalidToken

        register_secret(self.key)
        try:
            fernet = Fernet(self.key.encode())
        except (ValueError, TypeError):
            raise CredentialError(f"{ENCRYPTION_KEY_NAME} is not a Fernet key (32 url-safe base64-encoded bytes); "
                                  "make one with: python -m bot secrets keygen") from None
        token = read_private_file(self.path, "encrypted secrets file").strip().encode()
        try:
            plain = fernet.decrypt(token).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise CredentialError(f"encrypted secrets file {self.path}: cannot decrypt it with {ENCRYPTION_KEY_NAME} "
                                  "(wrong key, or the file was altered)") from None
        self._values = parse_env_lines(plain, f"{self.path} (decrypted)")

    def get(self, key: str) -> str | None:
        return self._values.get(key) or None

    def describe(self) -> str:
        return f"encrypted file {self.path}"


@dataclass
class VaultSource:
    """One KV v2 secret read once (lazily) with hvac; its keys are the secret names."""

    url: str
    token: str
    path: str = "gameday"
    mount: str = "secret"
    namespace: str | None = None
    verify: bool | str = True
    timeout_s: float = 5.0
    name: str = "vault"
    _values: dict[str, str] | None = field(default=None, repr=False)

    def _read(self) -> dict[str, str]:
        try:
            import hvac  # type: ignore[import-untyped]
            import hvac.exceptions  # type: ignore[import-untyped]
            import requests
        except ImportError:
            raise CredentialError(f"{VAULT_ADDR_ENV} is set but hvac is not installed: "
                                  "pip install 'gameday[vault]'") from None
        register_secret(self.token)
        where = f"Vault {self.url} {self.mount}/{self.path}"
        client = hvac.Client(url=self.url, token=self.token, namespace=self.namespace, verify=self.verify,
                             timeout=self.timeout_s)
        try:
            reply = client.secrets.kv.v2.read_secret_version(path=self.path, mount_point=self.mount,
                                                             raise_on_deleted_version=True)
        except hvac.exceptions.Forbidden:
            raise CredentialError(f"{where}: permission denied (check {VAULT_TOKEN_NAME} and its policy)") from None
        except hvac.exceptions.InvalidPath:
            raise CredentialError(f"{where}: no such secret (check {VAULT_PATH_ENV} / {VAULT_MOUNT_ENV})") from None
        except hvac.exceptions.VaultError as exc:
            raise CredentialError(f"{where}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise CredentialError(f"{where}: unreachable ({type(exc).__name__})") from None
        data = (reply or {}).get("data", {}).get("data")
        if not isinstance(data, dict):
            raise CredentialError(f"{where}: the reply holds no KV v2 data")
        return {str(k): str(v) for k, v in data.items() if v is not None}

    def get(self, key: str) -> str | None:
        if self._values is None:
            self._values = self._read()
        return self._values.get(key) or None

    def describe(self) -> str:
        return f"Vault {self.url} {self.mount}/{self.path}"


@dataclass
class SecretLoader:
    """Secrets by name from an ordered list of sources; every value handed out is registered for
    redaction."""

    sources: list[SecretSource]

    def get(self, key: str) -> str | None:
        for source in self.sources:
            value = source.get(key)
            if value:
                register_secret(value)
                return value
        return None

    def where(self, key: str) -> str | None:
        """The source that has `key` (its description), or None."""
        for source in self.sources:
            if source.get(key):
                return source.describe()
        return None

    def require(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise CredentialError(f"{key} is in none of: {self.describe()}")
        return value

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.sources)


def default_loader(env: Mapping[str, str] | None = None, *,
                   vault_factory: Callable[..., SecretSource] | None = None) -> SecretLoader:
    """The sources the environment configures, in precedence order (see the module docstring).

    A `.env` file that exists but is readable by others is refused here, whether or not the
    secret asked for later would come from it: such a file is itself the problem to fix.
    """
    env = os.environ if env is None else env
    sources: list[SecretSource] = [EnvSource(env)]
    secrets_dir = Path(env.get(SECRETS_DIR_ENV) or DEFAULT_SECRETS_DIR)
    if secrets_dir.is_dir():
        sources.append(DockerSecretsSource(secrets_dir))
    dotenv_path = Path(env.get(DOTENV_ENV) or DEFAULT_DOTENV)
    dotenv = DotEnvSource(dotenv_path) if dotenv_path.exists() else None
    early = SecretLoader(list(sources) + ([dotenv] if dotenv else []))
    vault_addr = (env.get(VAULT_ADDR_ENV) or "").strip()
    if vault_addr:
        token = early.get(VAULT_TOKEN_NAME)
        if not token:
            raise CredentialError(f"{VAULT_ADDR_ENV} is set but {VAULT_TOKEN_NAME} is in none of: {early.describe()}")
        kwargs: dict[str, Any] = {
            "url": vault_addr, "token": token, "path": env.get(VAULT_PATH_ENV) or "gameday",
            "mount": env.get(VAULT_MOUNT_ENV) or "secret", "namespace": env.get(VAULT_NAMESPACE_ENV) or None,
            "verify": env.get(VAULT_CACERT_ENV) or True,
        }
        sources.append((vault_factory or VaultSource)(**kwargs))
    encrypted = (env.get(ENCRYPTED_ENV) or "").strip()
    if encrypted:
        key = SecretLoader(list(sources) + ([dotenv] if dotenv else [])).get(ENCRYPTION_KEY_NAME)
        if not key:
            raise CredentialError(f"{ENCRYPTED_ENV} is set but {ENCRYPTION_KEY_NAME} is in none of: "
                                  f"{early.describe()}; make one with: python -m bot secrets keygen")
        sources.append(FernetFileSource(Path(encrypted), key))
    if dotenv is not None:
        sources.append(dotenv)
    return SecretLoader(sources)


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def encrypt_env_file(plain: Path, out: Path, key: str) -> int:
    """Encrypt the `NAME=VALUE` file `plain` into `out` (mode 0600); returns the number of secrets."""
    from cryptography.fernet import Fernet

    text = plain.read_text()
    count = len(parse_env_lines(text, str(plain)))
    try:
        token = Fernet(key.encode()).encrypt(text.encode())
    except (ValueError, TypeError):
        raise CredentialError(f"{ENCRYPTION_KEY_NAME} is not a Fernet key; make one with: "
                              "python -m bot secrets keygen") from None
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(token + b"\n")
    os.chmod(out, 0o600)
    return count


def redis_url_with_password(url: str, loader: SecretLoader | None = None,
                            env: Mapping[str, str] | None = None) -> str:
    """A Redis URL with its password: the URL's own, else GAMEDAY_REDIS_PASSWORD from the loader
    (so a compose file passes `redis://redis:6379/0` and the password stays a Docker secret)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.password or query.get("password"):
        register_secret(unquote(parts.password or "") or query.get("password"))
        return url
    password = (loader or default_loader(env)).get(REDIS_PASSWORD_NAME)
    if not password:
        return url
    if parts.scheme == "unix":
        return parts._replace(query=urlencode({**query, "password": password})).geturl()
    host = parts.netloc.rpartition("@")[2]
    user = quote(unquote(parts.username or ""), safe="")
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}").geturl()
