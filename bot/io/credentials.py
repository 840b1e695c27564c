"""Exchange API credentials and kill-switch tokens: where they come from and how they are checked.

- API key/secret: env `GAMEDAY_API_KEY` / `GAMEDAY_API_SECRET`, or a key file (`KEY=VALUE` lines
  with those two names) that only its owner may read (mode 0600 or stricter).
- Kill-switch tokens. The *configured* token (what the bot accepts) is a 0600 file holding the
  token itself or `sha256:<hex digest of the token>`: `--auth-token-file`, else env
  `GAMEDAY_KILL_TOKEN_FILE`, else `state/kill_token`. The *presented* token (what an operator
  hands the kill switch) is read from `--token-file` (0600) or env `GAMEDAY_KILL_TOKEN`.
  Verification is `hmac.compare_digest`, never `==`.

Secrets never appear in messages or exceptions: errors name the file and the fix only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

KEY_ENV, SECRET_ENV = "GAMEDAY_API_KEY", "GAMEDAY_API_SECRET"
TOKEN_ENV = "GAMEDAY_KILL_TOKEN"
AUTH_FILE_ENV = "GAMEDAY_KILL_TOKEN_FILE"
DEFAULT_AUTH_FILE = "state/kill_token"


class CredentialError(Exception):
    """Credentials missing or unsafe; the message says which and how to fix it (never the secret)."""


@dataclass(frozen=True)
class ApiCredentials:
    api_key: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"ApiCredentials(api_key={self.api_key[:4]}…, secret=***)"


def read_private_file(path: str | os.PathLike[str], what: str) -> str:
    """The text of a file only its owner can read; CredentialError otherwise."""
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
        return p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{what} {p}: cannot read it ({type(exc).__name__})") from None


def load_api_credentials(key_file: str | os.PathLike[str] | None = None,
                         env: Mapping[str, str] | None = None) -> ApiCredentials:
    env = os.environ if env is None else env
    if key_file is not None:
        values: dict[str, str] = {}
        for lineno, line in enumerate(read_private_file(key_file, "key file").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep:
                raise CredentialError(f"key file {key_file}:{lineno}: expected NAME=VALUE "
                                      f"({KEY_ENV}=… and {SECRET_ENV}=…)")
            values[name.strip()] = value.strip().strip('"').strip("'")
        key, secret = values.get(KEY_ENV, ""), values.get(SECRET_ENV, "")
        where = f"key file {key_file}"
    else:
        key, secret = env.get(KEY_ENV, ""), env.get(SECRET_ENV, "")
        where = "the environment"
    missing = [n for n, v in ((KEY_ENV, key), (SECRET_ENV, secret)) if not v]
    if missing:
        raise CredentialError(f"{' and '.join(missing)} missing from {where}; set them in the environment "
                              "or pass --key-file PATH (mode 0600)")
    return ApiCredentials(key, secret)


def presented_token(token_file: str | os.PathLike[str] | None = None,
                    env: Mapping[str, str] | None = None) -> str | None:
    """The operator's token: --token-file (0600) first, else env GAMEDAY_KILL_TOKEN; None if neither."""
    env = os.environ if env is None else env
    if token_file is not None:
        return read_private_file(token_file, "token file").strip() or None
    return env.get(TOKEN_ENV) or None


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
