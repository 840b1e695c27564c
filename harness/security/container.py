"""container-hardening: Dockerfile.hardened and docker-compose.hardened.yml, property by property.

What risk_safety_checklist D2 and the pets checklist's "Docker security" ask, each checked on the
files as written (trivy 0.59 has no Compose scanner, and its Dockerfile checks do not cover all of
these):

Dockerfile: multi-stage; every base image pinned (exact tag or digest, never `latest`); the final
USER is the configured UID, not root, and that user has no login shell; a HEALTHCHECK on the
control API's health route; no ENV/ARG carrying a secret; no ADD from a URL.
Compose, every service: read-only root filesystem; `no-new-privileges`; `cap_drop: ALL` and no
`cap_add`; a tmpfs /tmp mounted noexec,nosuid; CPU and memory limits; not privileged, no host
network; published ports bound to loopback only; images pinned. Across services: an internal
network, Redis only on internal networks with `requirepass` from a Docker secret and AOF on, the
bot running as the configured UID with its secrets as Docker secrets and no secret in
`environment`.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.security.config import ContainerConfig
from harness.security.model import CheckResult, Finding, judge, not_verified

NAME = "container-hardening"
SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|ENCRYPTION_KEY)", re.IGNORECASE)
NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")
LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")
TMP = "/tmp"  # nosec B108 - the mount point looked for in compose files; nothing is written there


@dataclass
class Item:
    id: str
    ok: bool
    detail: str
    path: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "detail": self.detail, "path": self.path, "line": self.line}


# --------------------------------------------------------------------------------- Dockerfile


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their first line number; continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = lineno
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    if buffer:
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


def check_dockerfile(text: str, path: str, cfg: ContainerConfig) -> list[Item]:
    ins = parse_dockerfile(text)
    items: list[Item] = []

    def add(id_: str, ok: bool, detail: str, line: int | None = None) -> None:
        items.append(Item(f"dockerfile.{id_}", ok, detail, path, line))

    froms = [i for i in ins if i.keyword == "FROM"]
    stages: set[str] = set()
    for f in froms:
        words = [w for w in f.args.split() if not w.startswith("--")]
        image = words[0] if words else ""
        if image.lower() not in stages:  # FROM <an earlier stage> needs no pin
            add("pinned_base", _pinned(image), f"FROM {image}: " + (
                "exact tag or digest" if _pinned(image) else "not pinned (use an exact version tag or @sha256:digest)"),
                f.line)
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
    copies_from_stage = any(i.keyword == "COPY" and "--from=" in i.args for i in ins)
    add("multi_stage", len(froms) >= 2 and copies_from_stage,
        f"{len(froms)} stage(s); the final stage {'copies' if copies_from_stage else 'does not copy'} "
        "from a build stage",
        froms[-1].line if froms else None)
    final_start = froms[-1].line if froms else 0
    final = [i for i in ins if i.line >= final_start]
    users = [i for i in final if i.keyword == "USER"]
    user_line = users[-1].line if users else None
    user = users[-1].args.split(":")[0].strip() if users else "root (no USER)"
    created = _created_users(final)
    uid = user if user.isdigit() else created.get(user, ("?", ""))[0]
    add("non_root", user not in ("root", "0", "root (no USER)") and uid == str(cfg.uid),
        f"final USER {user} (uid {uid}; expected {cfg.uid})", user_line)
    shell = next((sh for name, (u, sh) in created.items() if u == str(cfg.uid) or name == user), None)
    add("no_login_shell", shell in NOLOGIN,
        f"uid {cfg.uid} login shell: {shell or 'not created with useradd -s'} (expected one of {', '.join(NOLOGIN)})",
        next((i.line for i in final if i.keyword == "RUN" and "useradd" in i.args), None))
    health = [i for i in final if i.keyword == "HEALTHCHECK"]
    hc = health[-1] if health else None
    on_health = hc is not None and not hc.args.upper().startswith("NONE") and cfg.health_path in hc.args
    add("healthcheck", on_health,
        f"HEALTHCHECK {'on' if on_health else 'missing or not on'} {cfg.health_path}", hc.line if hc else None)
    leaks = [i for i in ins if i.keyword in ("ENV", "ARG") and _secret_assignments(i.args)]
    add("no_secret_in_env", not leaks, "no ENV/ARG holds a secret" if not leaks else
        f"{leaks[0].keyword} {', '.join(_secret_assignments(leaks[0].args))} bakes a secret into the image",
        leaks[0].line if leaks else None)
    remote = [i for i in ins if i.keyword == "ADD" and re.search(r"https?://", i.args)]
    add("no_remote_add", not remote, "no ADD from a URL" if not remote else "ADD from a URL (unverified download)",
        remote[0].line if remote else None)
    return items


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False  # no tag at all (host:port/image has the colon before a slash)
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def _created_users(instructions: list[Instruction]) -> dict[str, tuple[str, str]]:
    """name -> (uid, login shell) for every `useradd` in RUN instructions."""
    out: dict[str, tuple[str, str]] = {}
    for i in instructions:
        if i.keyword != "RUN":
            continue
        for command in re.split(r"&&|;", i.args):
            try:
                words = shlex.split(command)
            except ValueError:
                continue
            if not words or words[0] != "useradd":
                continue
            uid, shell, name = "?", "", words[-1]
            for k, w in enumerate(words):
                nxt = words[k + 1] if k + 1 < len(words) else ""
                if w in ("-u", "--uid"):
                    uid = nxt
                elif w in ("-s", "--shell"):
                    shell = nxt
            out[name] = (uid, shell)
    return out


def _secret_assignments(args: str) -> list[str]:
    names: list[str] = []
    for pair in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args):
        if SECRET_NAME.search(pair[0]) and not pair[0].upper().endswith(("_FILE", "_DIR", "_PATH")):
            names.append(pair[0])
    return names


# ------------------------------------------------------------------------------------ Compose


def _service_lines(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    in_services = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if re.match(r"^services:\s*$", line):
            in_services = True
            continue
        if in_services and re.match(r"^\S", line):
            in_services = False
        match = re.match(r"^  ([A-Za-z0-9_.-]+):\s*$", line)
        if in_services and match:
            out[match[1]] = lineno
    return out


def check_compose(text: str, path: str, cfg: ContainerConfig) -> list[Item]:
    items: list[Item] = []
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return [Item("compose.parse", False, f"not valid YAML: {exc}", path)]
    services: dict[str, Any] = doc.get("services") or {}
    networks: dict[str, Any] = {k: (v or {}) for k, v in (doc.get("networks") or {}).items()}
    secrets_top: dict[str, Any] = doc.get("secrets") or {}
    lines = _service_lines(text)

    def add(id_: str, ok: bool, detail: str, service: str | None = None) -> None:
        items.append(Item(f"compose.{id_}", ok, detail, path, lines.get(service or "", None)))

    if not services:
        add("services", False, "no services")
        return items
    for name, svc in services.items():
        svc = svc or {}
        add(f"{name}.read_only", svc.get("read_only") is True, f"read_only: {svc.get('read_only')}", name)
        opts = [str(o).replace("=", ":") for o in svc.get("security_opt") or []]
        add(f"{name}.no_new_privileges", any(o in ("no-new-privileges:true", "no-new-privileges") for o in opts),
            f"security_opt: {opts or 'none'}", name)
        drops = [str(c).upper() for c in svc.get("cap_drop") or []]
        adds = svc.get("cap_add") or []
        add(f"{name}.cap_drop_all", "ALL" in drops and not adds,
            f"cap_drop: {drops or 'none'}; cap_add: {adds or 'none'}", name)
        tmp = _tmpfs_options(svc.get("tmpfs"))
        add(f"{name}.tmpfs_tmp", tmp is not None and {"noexec", "nosuid"} <= tmp,
            f"{TMP} tmpfs options: {sorted(tmp) if tmp is not None else 'no tmpfs ' + TMP} (need noexec, nosuid)",
            name)
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        cpus, memory = limits.get("cpus") or svc.get("cpus"), limits.get("memory") or svc.get("mem_limit")
        add(f"{name}.limits", bool(cpus) and bool(memory), f"cpus: {cpus}, memory: {memory}", name)
        mode = str(svc.get("network_mode") or "")
        add(f"{name}.isolation", svc.get("privileged") is not True and mode != "host" and svc.get("pid") != "host",
            f"privileged: {svc.get('privileged', False)}, network_mode: {mode or 'default'}", name)
        bad_ports = [p for p in _ports(svc.get("ports")) if p[0] not in LOOPBACK]
        shown = ", ".join(f"{h or 'all interfaces'}:{p}" for h, p in _ports(svc.get("ports"))) or "none"
        add(f"{name}.ports_loopback", not bad_ports,
            f"published ports: {shown}" + ("" if not bad_ports else " (bind them to 127.0.0.1)"), name)
        image = svc.get("image")
        if image and not svc.get("build"):
            add(f"{name}.pinned_image", _pinned(str(image)), f"image {image}", name)
        leaked = [k for k, v in _environment(svc.get("environment")).items()
                  if SECRET_NAME.search(k) and v and not k.upper().endswith(("_FILE", "_DIR", "_PATH"))]
        add(f"{name}.no_secret_in_environment", not leaked,
            "no secret in environment" if not leaked else f"environment holds {leaked} (use Docker secrets)", name)

    internal = sorted(n for n, spec in networks.items() if spec.get("internal") is True)
    add("internal_network", bool(internal), f"internal networks: {internal or 'none'}")
    redis = services.get(cfg.redis_service)
    if redis is None:
        add("redis.present", False, f"no service {cfg.redis_service!r}")
    else:
        joined = _service_networks(redis)
        add("redis.internal_only", bool(joined) and set(joined) <= set(internal) and not _ports(redis.get("ports")),
            f"{cfg.redis_service} networks: {joined or 'default (not internal)'}; published ports: "
            f"{len(_ports(redis.get('ports')))}", cfg.redis_service)
        command = _command_text(redis)
        redis_secrets = [_secret_name(s) for s in redis.get("secrets") or []]
        requirepass = "requirepass" in command and any(f"/run/secrets/{s}" in command for s in redis_secrets)
        add("redis.requirepass", requirepass,
            "requirepass from a Docker secret" if requirepass else "no requirepass read from a Docker secret",
            cfg.redis_service)
        aof = re.search(r"--appendonly\s+yes|appendonly\s+yes", command) is not None
        add("redis.aof", aof, "appendonly yes" if aof else "AOF not enabled (--appendonly yes)", cfg.redis_service)
    bot = services.get(cfg.bot_service)
    if bot is None:
        add("bot.present", False, f"no service {cfg.bot_service!r}")
    else:
        user = str(bot.get("user") or "")
        add("bot.user", user.split(":")[0] == str(cfg.uid), f"user: {user or 'image default'} (expected {cfg.uid})",
            cfg.bot_service)
        used = [_secret_name(s) for s in bot.get("secrets") or []]
        undefined = [s for s in used if s not in secrets_top]
        add("bot.docker_secrets", bool(used) and not undefined,
            f"secrets: {used or 'none'}" + (f"; not defined at top level: {undefined}" if undefined else ""),
            cfg.bot_service)
    return items


def _tmpfs_options(value: Any) -> set[str] | None:
    entries = [value] if isinstance(value, str) else list(value or [])
    for entry in entries:
        target, _, options = str(entry).partition(":")
        if target.rstrip("/") == TMP:
            return {o.strip() for o in options.split(",") if o.strip()}
    return None


def _ports(value: Any) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for entry in value or []:
        if isinstance(entry, dict):
            out.append((entry.get("host_ip"), str(entry.get("published", entry.get("target")))))
            continue
        text = str(entry)
        match = re.match(r"^(\[[^\]]+\]|[^:]+):(\d[\d-]*):(\d[\d-]*(?:/\w+)?)$", text)
        if match:
            out.append((match[1], match[2]))
        else:
            out.append((None, text.split(":")[0]))
    return out


def _environment(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for entry in value or []:
        k, _, v = str(entry).partition("=")
        out[k] = v
    return out


def _service_networks(svc: dict[str, Any]) -> list[str]:
    nets = svc.get("networks") or []
    return list(nets) if isinstance(nets, dict | list) else []


def _command_text(svc: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = svc.get(key)
        parts += [value] if isinstance(value, str) else [str(v) for v in value or []]
    return " ".join(parts)


def _secret_name(entry: Any) -> str:
    return str(entry.get("source")) if isinstance(entry, dict) else str(entry)


# ---------------------------------------------------------------------------------------- check


def run_container(cfg: ContainerConfig, root: Path) -> CheckResult:
    started = time.monotonic()
    items: list[Item] = []
    missing = [f for f in (cfg.dockerfile, cfg.compose) if not (root / f).is_file()]
    if missing:
        return not_verified(NAME, "gameday", f"not found: {missing}")
    items += check_dockerfile((root / cfg.dockerfile).read_text(encoding="utf-8"), cfg.dockerfile, cfg)
    items += check_compose((root / cfg.compose).read_text(encoding="utf-8"), cfg.compose, cfg)
    findings = [Finding(i.id, "HIGH", i.detail, i.path, i.line) for i in items if not i.ok]
    verdict = judge(len(findings), 0, [])
    summary = (f"{len(items) - len(findings)} of {len(items)} properties hold in {cfg.dockerfile} and {cfg.compose}"
               + (f"; failing: {', '.join(f.rule for f in findings)}" if findings else ""))
    return CheckResult(NAME, "gameday", verdict, summary, findings=findings, duration_s=time.monotonic() - started,
                       items=[i.to_dict() for i in items], counts={"properties": len(items), "failing": len(findings)},
                       thresholds={"uid": cfg.uid, "health_path": cfg.health_path})
