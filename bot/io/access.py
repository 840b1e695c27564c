"""Role-based access to the control API and the kill switch (risk_safety_checklist D1 "Access Control").

Roles and their permissions are configuration (`config/access.yaml`); principals - a name, a
role and the sha256 of the principal's token - live in the principals file (mode 0600; path from
--principals, env GAMEDAY_PRINCIPALS_FILE, else `principals_file` in access.yaml), written by
`python -m bot access add NAME --role ROLE`, which prints the token once and stores only its hash.

Why a plain sha256 is enough: every token is 256 bits from `secrets` (never a password a person
chose), so nobody can search its preimage, and a slow password hash (bcrypt, argon2) would add
no protection - only a cost per request an unauthenticated flood could exploit. A stolen
principals file therefore does not give away any token. Checking compares the digest of the
presented token with every principal's digest by `hmac.compare_digest`, never stopping early.

The tokens of earlier versions still work (`legacy_tokens` in access.yaml): the control token
(GAMEDAY_CONTROL_TOKEN, `run --token-file`) becomes principal `legacy-control-token`, the
kill-switch token file (--auth-token-file, GAMEDAY_KILL_TOKEN_FILE, state/kill_token; the
token or `sha256:<hex>`) principal `legacy-kill-token`, each with `legacy_tokens.role`; the same
token in both is one principal. The running bot, its control API and the standalone CLI all
decide with the same `Access`, so a role means the same with the bot up or down.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.io.credentials import auth_file_path
from bot.io.secrets import CredentialError, read_private_file

PERMISSIONS: dict[str, str] = {
    "killswitch": "engage and clear the kill switch",
    "resume": "resume trading after a halt that needs a manual resume",
    "restart": "restart the bot process",
    "status.read": "read the bot's status",
    "metrics.read": "read the bot's metrics",
    "audit.read": "read the audit log",
    "ramp.advance": "approve the capital ramp's next stage (its evidence is checked by the bot)",
    "checks.run": "run a red-flag check now (a failed check engages the kill switch, as a periodic one does)",
}
PRINCIPALS_ENV = "GAMEDAY_PRINCIPALS_FILE"
CONTROL_TOKEN_ENV = "GAMEDAY_CONTROL_TOKEN"
LEGACY_CONTROL, LEGACY_KILL = "legacy-control-token", "legacy-kill-token"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
TOKEN_PREFIX = "gd_"
PRINCIPALS_VERSION = 1


class AccessError(Exception):
    """Access configuration or principals unusable; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleConfig(_Strict):
    title: str = Field(min_length=1)
    permissions: list[str]


class LegacyTokens(_Strict):
    enabled: bool = True
    role: str = "system_admin"


class RateLimit(_Strict):
    requests_per_minute: int = Field(ge=1, le=100_000)
    anonymous_per_minute: int = Field(ge=1, le=1_000_000)
    max_clients: int = Field(ge=16, le=1_000_000)


class Cors(_Strict):
    allow_origins: list[str] = []
    max_age_s: int = Field(ge=0, le=86_400)


class ControlApiConfig(_Strict):
    rate_limit: RateLimit
    max_body_bytes: int = Field(ge=1024, le=1_048_576)
    idle_timeout_s: float = Field(gt=0, le=3600)
    body_timeout_s: float = Field(gt=0, le=600)
    reason_max_bytes: int = Field(ge=32, le=16_384)
    audit_page_max: int = Field(ge=1, le=10_000)
    audit_page_max_bytes: int = Field(ge=4096, le=16_777_216)
    cors: Cors


class AccessConfig(_Strict):
    roles: dict[str, RoleConfig]
    principals_file: str = Field(min_length=1)
    legacy_tokens: LegacyTokens
    control_api: ControlApiConfig

    def roles_with(self, permission: str) -> list[str]:
        return [name for name, role in self.roles.items() if permission in role.permissions]


_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def _config_problems(config: AccessConfig, file: str) -> list[str]:
    out: list[str] = []
    for name, role in config.roles.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
            out.append(f"{file}: roles.{name}: bad role id (got {name!r}; expected lower-case letters, digits, _)")
        for i, perm in enumerate(role.permissions):
            if perm not in PERMISSIONS:
                close = difflib.get_close_matches(perm, list(PERMISSIONS), n=1)
                hint = f", did you mean '{close[0]}'?" if close else ""
                out.append(f"{file}: roles.{name}.permissions[{i}]: unknown permission{hint} "
                           f"(got {perm!r}; expected one of {', '.join(PERMISSIONS)})")
    if config.legacy_tokens.role not in config.roles:
        out.append(f"{file}: legacy_tokens.role: unknown role (got {config.legacy_tokens.role!r}; "
                   f"expected one of {', '.join(config.roles)})")
    for i, origin in enumerate(config.control_api.cors.allow_origins):
        if not _ORIGIN_RE.fullmatch(origin):
            what = "a wildcard is never allowed" if "*" in origin else "not an origin"
            out.append(f"{file}: control_api.cors.allow_origins[{i}]: {what} (got {origin!r}; "
                       "expected an exact origin such as https://ops.example.com)")
    return out


def _explain(err: Mapping[str, Any], file: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = str(err["type"])
    got = err.get("input")
    shown = repr(got) if isinstance(got, str) else str(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _model_at(tuple(err["loc"][:-1]))
        allowed = sorted(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f", did you mean '{close[0]}'?" if close else ""
        return f"{file}: {loc}: unknown key{hint} (got {shown}; expected one of {', '.join(allowed)})"
    if kind == "missing":
        return f"{file}: {loc}: missing key (got nothing; see config/access.yaml for the defaults)"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"{file}: {loc}: out of range (got {shown}; expected a number {bounds[kind]} {limit})"
    return f"{file}: {loc}: {str(err['msg']).lower()} (got {shown})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys are allowed at `loc` (for "did you mean")."""
    model: Any = AccessConfig
    mapping_key = False
    for part in loc:
        if mapping_key:  # a role's own name: the model is already the role's
            mapping_key = False
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif typing.get_origin(annotation) is dict:
            model, mapping_key = typing.get_args(annotation)[1], True
        else:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) and not mapping_key else None


def access_config_path(directory: Path | None = None) -> Path:
    from bot.config import config_dir

    return (directory or config_dir()) / "access.yaml"


def load_access_config(path: Path | None = None) -> AccessConfig:
    """config/access.yaml, validated; AccessError naming file, key, value and the allowed range."""
    path = path or access_config_path()
    file = path.name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AccessError([f"{path}: cannot read it ({exc.strerror}); copy config/access.yaml from the "
                           "project"]) from None
    except yaml.YAMLError as exc:
        raise AccessError([f"{file}: (syntax): cannot parse ({' '.join(str(exc).split())}; expected valid YAML)"]
                          ) from None
    if not isinstance(data, dict):
        raise AccessError([f"{file}: (top level): wrong type (got {type(data).__name__}; expected a mapping)"])
    try:
        config = AccessConfig.model_validate(data)
    except ValidationError as exc:
        raise AccessError([_explain(e, file) for e in exc.errors()]) from None
    problems = _config_problems(config, file)
    if problems:
        raise AccessError(problems)
    return config


# --------------------------------------------------------------------------- principals


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """256 random bits; the prefix lets secret scanners recognise a leaked gameday token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    sha256: str
    source: str = "principals file"
    created: str | None = None

    @property
    def fingerprint(self) -> str:
        """Names the token in logs and audit records without revealing anything usable."""
        return self.sha256[:12]


def principals_path(flag: str | os.PathLike[str] | None, config: AccessConfig,
                    env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """(path, explicit): explicit when given by flag or env (then it must exist)."""
    env = os.environ if env is None else env
    if flag is not None:
        return Path(flag), True
    if env.get(PRINCIPALS_ENV):
        return Path(env[PRINCIPALS_ENV]), True
    return Path(config.principals_file), False


def read_principals(path: Path, config: AccessConfig) -> list[Principal]:
    """The principals of a 0600 file; AccessError with file, entry and fix otherwise."""
    try:
        text = read_private_file(path, "principals file")
    except CredentialError as exc:
        raise AccessError([str(exc)]) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AccessError([f"{path}: cannot parse ({' '.join(str(exc).split())})"]) from None
    if not isinstance(data, dict) or set(data) - {"version", "principals"}:
        raise AccessError([f"{path}: expected a mapping with keys version, principals "
                           "(write it with python -m bot access add)"])
    if data.get("version") != PRINCIPALS_VERSION:
        raise AccessError([f"{path}: version: got {data.get('version')!r}; expected {PRINCIPALS_VERSION}"])
    entries = data.get("principals") or []
    if not isinstance(entries, list):
        raise AccessError([f"{path}: principals: expected a list"])
    problems: list[str] = []
    out: list[Principal] = []
    names: set[str] = set()
    digests: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{path}: principals[{i}]"
        if not isinstance(entry, dict) or not {"name", "role", "sha256"} <= set(entry) \
                or set(entry) - {"name", "role", "sha256", "created"}:
            problems.append(f"{where}: expected keys name, role, sha256 (and created)")
            continue
        name, role, digest = str(entry["name"]), str(entry["role"]), str(entry["sha256"]).lower()
        if not NAME_RE.fullmatch(name):
            problems.append(f"{where}.name: bad name (got {name!r}; expected {NAME_RE.pattern})")
        if role not in config.roles:
            problems.append(f"{where}.role: unknown role (got {role!r}; expected one of {', '.join(config.roles)})")
        if not _HEX64.fullmatch(digest):
            problems.append(f"{where}.sha256: not a sha256 hex digest (64 hex digits)")
        if name in names:
            problems.append(f"{where}.name: {name!r} appears twice")
        if digest in digests:
            problems.append(f"{where}.sha256: the same token is given to two principals")
        names.add(name)
        digests.add(digest)
        created = entry.get("created")
        out.append(Principal(name, role, digest, "principals file", None if created is None else str(created)))
    if problems:
        raise AccessError(problems)
    return out


def _write_principals(path: Path, principals: list[Principal]) -> None:
    """Atomically, 0600, fsynced (file and directory)."""
    body = {"version": PRINCIPALS_VERSION,
            "principals": [{"name": p.name, "role": p.role, "sha256": p.sha256,
                            **({"created": p.created} if p.created else {})} for p in principals]}
    text = ("# gameday principals, written by `python -m bot access`: tokens are stored as sha256 only.\n"
            + yaml.safe_dump(body, sort_keys=False))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def change_principals(path: Path, config: AccessConfig,
                      change: Callable[[list[Principal]], list[Principal]]) -> list[Principal]:
    """Read (an absent file is empty), change, write back; serialised across processes."""
    with _locked(path):
        current = read_principals(path, config) if path.exists() else []
        updated = change(current)
        _write_principals(path, updated)
        return updated


def add_principal(path: Path, config: AccessConfig, name: str, role: str, *, replace: bool = False) -> str:
    """Create (or with replace=True rotate) a principal; returns its new token, which is stored nowhere."""
    if not NAME_RE.fullmatch(name) or name.startswith("legacy-"):
        raise AccessError([f"principal name {name!r}: expected {NAME_RE.pattern}, not starting with 'legacy-'"])
    if role not in config.roles:
        raise AccessError([f"role {role!r}: unknown; expected one of {', '.join(config.roles)}"])
    token = new_token()
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def change(current: list[Principal]) -> list[Principal]:
        exists = any(p.name == name for p in current)
        if exists and not replace:
            raise AccessError([f"principal {name!r} already exists in {path}; "
                               f"rotate its token with: python -m bot access rotate {name}"])
        if replace and not exists:
            raise AccessError([f"principal {name!r} is not in {path}; add it with: "
                               f"python -m bot access add {name} --role ROLE"])
        kept = [p for p in current if p.name != name]
        return [*kept, Principal(name, role, token_digest(token), created=created)]

    change_principals(path, config, change)
    return token


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """What an access check came to. `code` is machine-readable, `reason` says what is wrong."""

    principal: Principal | None
    allowed: bool
    code: Literal["ok", "missing_credential", "unknown_credential", "forbidden"]
    reason: str

    @property
    def status(self) -> int:
        return {"ok": 200, "forbidden": 403}.get(self.code, 401)


class Access:
    """The principals known now and the roles of the configuration."""

    def __init__(self, config: AccessConfig, principals: list[Principal], problems: list[str] | None = None) -> None:
        self.config = config
        self.principals = list(principals)
        self.problems = list(problems or [])  # why some source of principals is missing

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        digest = token_digest(token).encode()
        found: Principal | None = None
        for principal in self.principals:  # every digest is compared: no early exit
            if hmac.compare_digest(digest, principal.sha256.encode()) and found is None:
                found = principal
        return found

    def permits(self, principal: Principal, permission: str) -> bool:
        role = self.config.roles.get(principal.role)
        return role is not None and permission in role.permissions

    def decide(self, token: str | None, permission: str) -> Decision:
        if not token:
            return Decision(None, False, "missing_credential", "missing credentials")
        principal = self.authenticate(token)
        if principal is None:
            return Decision(None, False, "unknown_credential", "bad credentials: the token matches no principal")
        if not self.permits(principal, permission):
            return Decision(principal, False, "forbidden", self.forbidden_reason(principal, permission))
        return Decision(principal, True, "ok", f"{principal.name} ({principal.role}) may {PERMISSIONS[permission]}")

    def forbidden_reason(self, principal: Principal, permission: str) -> str:
        holders = ", ".join(self.config.roles_with(permission)) or "none"
        return (f"principal {principal.name} (role {principal.role}) lacks permission '{permission}' "
                f"({PERMISSIONS[permission]}; roles with it: {holders})")

    def killswitch_verifier(self) -> Callable[[str | None], bool | str]:
        """The kill switch core's `verify(credential)`: True, or a text naming the refusal."""

        def verify(credential: str | None) -> bool | str:
            decision = self.decide(credential, "killswitch")
            if decision.allowed:
                return True
            return "bad credentials" if decision.code == "unknown_credential" else decision.reason

        return verify


def legacy_principals(config: AccessConfig, control_token: str | None,
                      kill_token_file: str | os.PathLike[str] | None,
                      env: Mapping[str, str] | None = None) -> tuple[list[Principal], list[str]]:
    """The principals standing for the tokens of earlier versions, and why one is absent."""
    if not config.legacy_tokens.enabled:
        return [], []
    role = config.legacy_tokens.role
    out: list[Principal] = []
    problems: list[str] = []
    path = auth_file_path(kill_token_file, env)
    try:
        configured = read_private_file(path, "kill-switch token file").strip()
    except CredentialError as exc:
        configured = ""
        problems.append(str(exc))
    if configured:
        digest = configured[len("sha256:"):].strip().lower() if configured.startswith("sha256:") \
            else token_digest(configured)
        if _HEX64.fullmatch(digest):
            out.append(Principal(LEGACY_KILL, role, digest, f"kill-switch token file {path}"))
        else:
            problems.append(f"kill-switch token file {path}: 'sha256:' must be followed by 64 hex digits")
    if control_token:
        digest = token_digest(control_token)
        if all(p.sha256 != digest for p in out):
            out.append(Principal(LEGACY_CONTROL, role, digest, "control token"))
    return out, problems


@dataclass
class AccessSource:
    """Access that follows the principals file: re-read when it changes (add, rotate, remove
    take effect without a restart). A change that cannot be read keeps the last good set and
    says so once (`problem`)."""

    config: AccessConfig
    path: Path
    legacy: list[Principal] = field(default_factory=list)
    legacy_problems: list[str] = field(default_factory=list)
    explicit: bool = False
    _seen: tuple[int, int, int] | None = None
    _file_principals: list[Principal] = field(default_factory=list)
    _access: Access | None = None
    problem: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def load(self) -> None:
        """First load: a principals file that exists but is unusable is an error (AccessError)."""
        seen = self._stat()
        if seen is None and self.explicit:
            raise AccessError([f"principals file {self.path} not found; create it with: "
                               f"python -m bot access add NAME --role ROLE --principals {self.path}"])
        self._file_principals = read_principals(self.path, self.config) if seen is not None else []
        self._seen = seen
        self._rebuild()

    def _rebuild(self) -> None:
        file_digests = {p.sha256 for p in self._file_principals}
        legacy = [p for p in self.legacy if p.sha256 not in file_digests]
        self._access = Access(self.config, [*self._file_principals, *legacy], self.legacy_problems)

    def current(self) -> Access:
        seen = self._stat()
        if seen != self._seen:
            try:
                self._file_principals = read_principals(self.path, self.config) if seen is not None else []
                self.problem = None
            except AccessError as exc:
                self.problem = f"principals file changed but cannot be used, keeping the previous set: {exc}"
            self._seen = seen
            self._rebuild()
        assert self._access is not None
        return self._access

    def killswitch_verifier(self) -> Callable[[str | None], bool | str]:
        """Like Access.killswitch_verifier, with the principals as they are at each call."""
        return lambda credential: self.current().killswitch_verifier()(credential)


def open_access(*, principals: str | os.PathLike[str] | None = None, control_token: str | None = None,
                kill_token_file: str | os.PathLike[str] | None = None, config: AccessConfig | None = None,
                env: Mapping[str, str] | None = None) -> AccessSource:
    """Everything the bot and the CLI authenticate against; AccessError when unusable."""
    config = config or load_access_config()
    path, explicit = principals_path(principals, config, env)
    legacy, problems = legacy_principals(config, control_token, kill_token_file, env)
    source = AccessSource(config, path, legacy, problems, explicit)
    source.load()
    return source


# --------------------------------------------------------------------------- python -m bot access


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="access_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--principals", type=Path, help=f"principals file (else env {PRINCIPALS_ENV}, else "
                                                       "principals_file of config/access.yaml)")
        p.add_argument("--audit", type=Path, default=Path("state/audit.jsonl"),
                       help="audit log that records the change (default state/audit.jsonl)")

    add = commands.add_parser("add", help="create a principal; its token is printed once, only its hash is kept")
    add.add_argument("name")
    add.add_argument("--role", required=True)
    add.add_argument("--token-file", type=Path, help="write the token to this new file (mode 0600) instead of "
                                                     "printing it")
    common(add)
    rotate = commands.add_parser("rotate", help="give a principal a new token (the old one stops working)")
    rotate.add_argument("name")
    rotate.add_argument("--token-file", type=Path, help="write the new token to this new file (mode 0600)")
    common(rotate)
    remove = commands.add_parser("remove", help="remove a principal (its token stops working)")
    remove.add_argument("name")
    common(remove)
    listing = commands.add_parser("list", help="principals: name, role, token fingerprint (never a token)")
    common(listing)
    commands.add_parser("roles", help="the roles of config/access.yaml and their permissions")
    check = commands.add_parser("check", help="validate config/access.yaml and the principals file")
    check.add_argument("--principals", type=Path)


def _local_actor() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"local:uid{os.getuid()}"


def _emit_token(token: str, out_file: Path | None) -> None:
    if out_file is None:
        print(token)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")


def main_access(args: argparse.Namespace) -> int:
    from bot.io.audit import AuditLog

    err = sys.stderr
    try:
        config = load_access_config()
        if args.access_command == "roles":
            for name, role in config.roles.items():
                print(f"{name:<14} {role.title:<14} {', '.join(role.permissions)}")
            return 0
        path, explicit = principals_path(args.principals, config)
        if args.access_command == "check":
            count = len(read_principals(path, config)) if path.exists() else 0
            print(f"access: config/access.yaml ok ({len(config.roles)} roles); {path}: {count} principals")
            return 0
        if args.access_command == "list":
            for p in read_principals(path, config) if path.exists() else []:
                print(f"{p.name:<24} {p.role:<14} sha256:{p.fingerprint}…  created {p.created or '-'}")
            return 0
        token_file = getattr(args, "token_file", None)
        if token_file is not None and token_file.exists():
            print(f"access: {token_file} exists; the token goes only into a new file", file=err)
            return 2
        args.audit.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            audit = AuditLog(args.audit)
        except Exception as exc:
            print(f"access: cannot open the audit log {args.audit} ({exc}); a principal change is never "
                  "made unaudited", file=err)
            return 2
        try:
            return _change(args, config, path, audit, token_file, err)
        finally:
            audit.close()
    except AccessError as exc:
        for problem in exc.problems:
            print(f"access: {problem}", file=err)
        return 2


def _change(args: argparse.Namespace, config: AccessConfig, path: Path, audit: Any, token_file: Path | None,
            err: Any) -> int:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    command = args.access_command
    if command == "remove":
        removed: list[Principal] = []

        def drop(current: list[Principal]) -> list[Principal]:
            removed.extend(p for p in current if p.name == args.name)
            if not removed:
                raise AccessError([f"principal {args.name!r} is not in {path}"])
            return [p for p in current if p.name != args.name]

        change_principals(path, config, drop)
        details: dict[str, Any] = {"name": args.name, "role": removed[0].role, "fingerprint": removed[0].fingerprint,
                                   "file": str(path)}
        message = f"access: removed {args.name}; its token no longer works"
        token = None
    else:
        role = args.role if command == "add" else next(
            (p.role for p in (read_principals(path, config) if path.exists() else []) if p.name == args.name), "")
        if command == "rotate" and not role:
            raise AccessError([f"principal {args.name!r} is not in {path}"])
        token = add_principal(path, config, args.name, role, replace=command == "rotate")
        details = {"name": args.name, "role": role, "fingerprint": token_digest(token)[:12], "file": str(path)}
        where = f"written to {token_file} (mode 0600)" if token_file else "printed above, shown this once: store it now"
        message = (f"access: {'added' if command == 'add' else 'rotated'} {args.name} (role {role}, "
                   f"sha256:{details['fingerprint']}…) in {path}; token {where}")
    try:
        audit.append(_local_actor(), f"access.{command}", details, now_ms)
    except Exception as exc:
        if token is not None:
            _emit_token(token, token_file)
        print(f"{message}\naccess: changed, but the audit write failed: {exc}", file=err)
        return 1
    if token is not None:
        _emit_token(token, token_file)
    print(message, file=err)
    return 0
