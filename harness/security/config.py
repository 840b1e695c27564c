"""config/security.yaml: the security gate's thresholds and inputs, validated at the door.

A mistake is reported as `security.yaml: <dotted.key>: <what> (got <value>; expected <range>)`,
one line per problem (bot.config.Problem), and nothing runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.config import ConfigError, Problem, config_dir

Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BanditConfig(_Strict):
    paths: list[str] = ["bot", "harness"]
    fail_severity: Literal["LOW", "MEDIUM", "HIGH"] = "MEDIUM"
    max_findings: NonNegative = 0
    timeout_s: Positive = 300


class IgnoredVuln(_Strict):
    id: Annotated[str, Field(min_length=3)]
    reason: Annotated[str, Field(min_length=10)]


class PipAuditConfig(_Strict):
    requirements: Annotated[list[str], Field(min_length=1)] = ["constraints.txt"]
    service: Literal["osv", "pypi"] = "osv"
    osv_url: str | None = None
    timeout_s: Annotated[int, Field(gt=0)] = 15
    max_findings: NonNegative = 0
    ignore: list[IgnoredVuln] = []


class TrivyImageConfig(_Strict):
    enabled: bool = True
    dockerfile: str = "Dockerfile.hardened"
    tag: str = "gameday-bot:security-scan"


class TrivyConfig(_Strict):
    version: str = "0.59.1"
    docker_image: str = "aquasec/trivy:0.59.1"
    tool_venv: str = ".tools/trivy-venv"
    cache_dir: str = ".tools/trivy-cache"
    fail_severities: Annotated[list[Severity], Field(min_length=1)] = ["HIGH", "CRITICAL"]
    max_findings: NonNegative = 0
    config_files: Annotated[list[str], Field(min_length=1)] = ["Dockerfile.hardened", "docker-compose.hardened.yml"]
    secret_config: str = "config/trivy-secret.yaml"
    skip_dirs: list[str] = [".git", ".venv", ".tools", "reports", "state", "secrets", ".hypothesis", ".mypy_cache",
                            ".ruff_cache", ".pytest_cache"]
    image: TrivyImageConfig = TrivyImageConfig()
    timeout_s: Positive = 600


class ContainerConfig(_Strict):
    dockerfile: str = "Dockerfile.hardened"
    compose: str = "docker-compose.hardened.yml"
    uid: NonNegative = 1000
    bot_service: str = "bot"
    redis_service: str = "redis"
    health_path: str = "/health"


class SshdConfig(_Strict):
    config: str = "/etc/ssh/sshd_config"
    use_sshd_t: bool = True
    require_fail2ban: bool = True


class FirewallConfig(_Strict):
    allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = [22, 80, 443]


class TlsHost(_Strict):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 443
    server_name: str | None = None


class TlsConfig(_Strict):
    hosts: list[TlsHost] = []
    min_days_left: NonNegative = 14
    ca_file: str | None = None
    timeout_s: Positive = 5


class RedisCheckConfig(_Strict):
    url: str | None = None
    password_secret: str = "GAMEDAY_REDIS_PASSWORD"
    persistence: Literal["aof", "rdb", "any"] = "any"


class PasswordRules(_Strict):
    min_length: Annotated[int, Field(ge=8)] = 32
    min_entropy_bits: Annotated[float, Field(ge=0)] = 128
    min_shannon_bits_per_char: Annotated[float, Field(ge=0, le=8)] = 3.0
    max_repeated_substring: Annotated[int, Field(ge=1)] = 5


class DatabaseConfig(_Strict):
    password_secret: str = "DB_PASSWORD"
    rules: PasswordRules = PasswordRules()


class BackupsConfig(_Strict):
    path: str | None = None
    max_age_hours: Positive = 26
    encrypted_suffixes: list[str] = [".gpg", ".age", ".enc"]


class HostConfig(_Strict):
    sshd: SshdConfig = SshdConfig()
    firewall: FirewallConfig = FirewallConfig()
    tls: TlsConfig = TlsConfig()
    redis: RedisCheckConfig = RedisCheckConfig()
    database: DatabaseConfig = DatabaseConfig()
    backups: BackupsConfig = BackupsConfig()


class SecurityConfig(_Strict):
    bandit: BanditConfig = BanditConfig()
    pip_audit: PipAuditConfig = PipAuditConfig()
    trivy: TrivyConfig = TrivyConfig()
    container: ContainerConfig = ContainerConfig()
    host: HostConfig = HostConfig()


def default_path() -> Path:
    return config_dir() / "security.yaml"


def load_security_config(path: str | Path | None = None) -> SecurityConfig:
    """Read and validate; ConfigError lists every problem (file, key, value, allowed range)."""
    p = Path(path) if path is not None else default_path()
    name = p.name
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(name, "(file)", "cannot read it", str(p), f"a readable file ({exc.strerror})")]) \
            from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise ConfigError([Problem(name, where, "not valid YAML", str(getattr(exc, "problem", exc)),
                                   "a YAML mapping")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(name, "(top level)", "wrong type", type(data).__name__, "a mapping")])
    try:
        return SecurityConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(name, e) for e in exc.errors()]) from None


def _problem(name: str, error: Any) -> Problem:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    got = repr(error.get("input"))[:80]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _model_at(error["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else "a known key"
        return Problem(name, key, "unknown key", got, f"one of {allowed}")
    if kind == "literal_error":
        return Problem(name, key, "not an allowed value", got, f"one of {ctx.get('expected')}")
    for bound, text in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if bound in ctx:
            return Problem(name, key, "out of range", got, f"{text} {ctx[bound]}")
    if "min_length" in ctx:
        return Problem(name, key, "too short", got, f"at least {ctx['min_length']} item(s)/character(s)")
    return Problem(name, key, error["msg"].lower(), got, _expected_type(error["loc"]))


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = SecurityConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        model = next((a for a in (inner or ()) if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _expected_type(loc: tuple[Any, ...]) -> str:
    parent = _model_at(loc[:-1])
    if parent is None or not isinstance(loc[-1], str) or loc[-1] not in parent.model_fields:
        return "see config/security.yaml's comments"
    annotation = parent.model_fields[loc[-1]].annotation
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))
