"""Exchange API credentials and kill-switch tokens: where they come from and how they are checked.

- API key/secret: `GAMEDAY_API_KEY` / `GAMEDAY_API_SECRET` from the secret loader
  (bot.io.secrets: env, Docker secrets, Vault, Fernet-encrypted file, `.env`), or a key file
  (`KEY=VALUE` lines with those two names) that only its owner may read (mode 0600 or stricter).
- Kill-switch tokens. The *configured* token (what the bot accepts) is a 0600 file holding the
  token itself or `sha256:<hex digest of the token>`: `--auth-token-file`, else env
  `GAMEDAY_KILL_TOKEN_FILE`, else `state/kill_token`. The *presented* token (what an operator
  hands the kill switch) is read from `--token-file` (0600) or `GAMEDAY_KILL_TOKEN` (secret loader).
  Verification is `hmac.compare_digest`, never `==`.

Secrets never appear in messages or exceptions: errors name the file and the fix only. Every
value loaded here is registered with bot.io.redaction.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.io.redaction import register_secret
from bot.io.secrets import CredentialError, SecretLoader, default_loader, parse_env_lines, read_private_file

KEY_ENV, SECRET_ENV = "GAMEDAY_API_KEY", "GAMEDAY_API_SECRET"
TOKEN_ENV = "GAMEDAY_KILL_TOKEN"
AUTH_FILE_ENV = "GAMEDAY_KILL_TOKEN_FILE"
DEFAULT_AUTH_FILE = "state/kill_token"


@dataclass(frozen=True)
class ApiCredentials:
    api_key: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"ApiCredentials(api_key={self.api_key[:4]}…, secret=***)"


def load_api_credentials(key_file: str | os.PathLike[str] | None = None,
                         env: Mapping[str, str] | None = None,
                         loader: SecretLoader | None = None) -> ApiCredentials:
    if key_file is not None:
        where = f"key file {key_file}"
        values = parse_env_lines(read_private_file(key_file, "key file"), where)
        key, secret = values.get(KEY_ENV, ""), values.get(SECRET_ENV, "")
    else:
        loader = loader or default_loader(env)
        where = loader.describe()
        key, secret = loader.get(KEY_ENV) or "", loader.get(SECRET_ENV) or ""
    missing = [n for n, v in ((KEY_ENV, key), (SECRET_ENV, secret)) if not v]
    if missing:
        raise CredentialError(f"{' and '.join(missing)} missing from {where}; set them in the environment, "
                              "a Docker secret or .env (mode 0600), or pass --key-file PATH (mode 0600)")
    register_secret(key)
    register_secret(secret)
    return ApiCredentials(key, secret)


def presented_token(token_file: str | os.PathLike[str] | None = None,
                    env: Mapping[str, str] | None = None) -> str | None:
    """The operator's token: --token-file (0600) first, else GAMEDAY_KILL_TOKEN from the secret loader;
    None if neither."""
    if token_file is not None:
        return read_private_file(token_file, "token file").strip() or None
    return default_loader(env).get(TOKEN_ENV)


def auth_file_path(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(path if path is not None else env.get(AUTH_FILE_ENV) or DEFAULT_AUTH_FILE)


def make_verifier(configured: str | None) -> Callable[[str | None], bool]:
    """verify(credential) -> bool by constant-time comparison with the configured token.

    `configured` is the token, or `sha256:<hex>` of it; None (nothing configured) rejects everything.
    """
    if configured is not None:
        configured = configured.strip()
    if not configured:
        return lambda credential: False
    if configured.startswith("sha256:"):
        digest = configured[len("sha256:"):].strip().lower()

        def verify_digest(credential: str | None) -> bool:
            if not credential:
                return False
            computed = hashlib.sha256(credential.encode()).hexdigest()
            return hmac.compare_digest(computed.encode(), digest.encode())

        return verify_digest
    expected = configured.encode()

    def verify(credential: str | None) -> bool:
        if not credential:
            return False
        return hmac.compare_digest(credential.encode(), expected)

    return verify


def load_verifier(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[Callable[[str | None], bool], str | None]:
    """(verify, problem): problem says why nothing is configured (then verify rejects everything)."""
    p = auth_file_path(path, env)
    try:
        return make_verifier(read_private_file(p, "kill-switch token file")), None
    except CredentialError as exc:
        return make_verifier(None), str(exc)
