"""Dockerfile.hardened and docker-compose.hardened.yml have every property D2 asks for, read from the
files themselves; and each property check fails when the file loses that property."""

from __future__ import annotations

import re

import pytest
import yaml
from sec_support import ROOT

from harness.security.config import ContainerConfig
from harness.security.container import check_compose, check_dockerfile, parse_dockerfile, run_container
from harness.security.model import FAIL, PASS

CFG = ContainerConfig()
DOCKERFILE = (ROOT / "Dockerfile.hardened").read_text()
COMPOSE = (ROOT / "docker-compose.hardened.yml").read_text()


def _failing(items: list) -> set[str]:  # type: ignore[type-arg]
    return {i.id for i in items if not i.ok}


def test_the_hardened_files_pass_every_property() -> None:
    result = run_container(CFG, ROOT)
    assert result.verdict == PASS, result.summary
    ids = {i["id"] for i in result.items}
    for wanted in ("dockerfile.multi_stage", "dockerfile.pinned_base", "dockerfile.non_root",
                   "dockerfile.no_login_shell", "dockerfile.healthcheck", "compose.bot.read_only",
                   "compose.bot.no_new_privileges",
                   "compose.bot.cap_drop_all", "compose.bot.tmpfs_tmp", "compose.bot.limits",
                   "compose.bot.ports_loopback", "compose.internal_network", "compose.redis.requirepass",
                   "compose.redis.aof", "compose.redis.internal_only", "compose.bot.docker_secrets",
                   "compose.bot.user"):
        assert wanted in ids


def test_dockerfile_as_parsed() -> None:
    ins = parse_dockerfile(DOCKERFILE)
    froms = [i.args for i in ins if i.keyword == "FROM"]
    assert len(froms) == 2 and all(re.search(r"python:\d+\.\d+\.\d+-slim", f) for f in froms)
    [user] = [i.args for i in ins if i.keyword == "USER"]
    assert user == "1000:1000"
    [health] = [i.args for i in ins if i.keyword == "HEALTHCHECK"]
    assert "http://127.0.0.1:8901/health" in health and "--retries=3" in health
    assert any("useradd" in i.args and "--uid 1000" in i.args and "/usr/sbin/nologin" in i.args for i in ins)


def test_compose_as_parsed() -> None:
    doc = yaml.safe_load(COMPOSE)
    bot, redis = doc["services"]["bot"], doc["services"]["redis"]
    for svc in (bot, redis):
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in svc["security_opt"]
        assert any(t.startswith("/tmp:") and "noexec" in t and "nosuid" in t for t in svc["tmpfs"])
        assert svc["deploy"]["resources"]["limits"]["cpus"] and svc["deploy"]["resources"]["limits"]["memory"]
    assert all(p.startswith("127.0.0.1:") for p in bot["ports"]) and "ports" not in redis
    assert doc["networks"]["backend"]["internal"] is True and redis["networks"] == ["backend"]
    assert "requirepass" in redis["command"][0] and "--appendonly yes" in redis["command"][0]
    assert set(bot["secrets"]) <= set(doc["secrets"]) and "environment" not in redis


DOCKERFILE_BREAKS = {
    "dockerfile.pinned_base": ("FROM python:3.11.11-slim-bookworm AS runtime", "FROM python:latest AS runtime"),
    "dockerfile.multi_stage": ("COPY --from=build /opt/bot /opt/bot", "COPY . /opt/bot"),
    "dockerfile.non_root": ("USER 1000:1000", "USER root"),
    "dockerfile.no_login_shell": ("--shell /usr/sbin/nologin", "--shell /bin/bash"),
    "dockerfile.healthcheck": ("http://127.0.0.1:8901/health", "http://127.0.0.1:8901/status"),
    "dockerfile.no_secret_in_env": ("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=1 GAMEDAY_API_SECRET=abc"),
    "dockerfile.no_remote_add": ("COPY bot ./bot", "ADD https://example.invalid/bot.tgz ./bot"),
}


@pytest.mark.parametrize("prop", sorted(DOCKERFILE_BREAKS))
def test_each_dockerfile_property_can_fail(prop: str) -> None:
    old, new = DOCKERFILE_BREAKS[prop]
    assert old in DOCKERFILE
    assert _failing(check_dockerfile(DOCKERFILE.replace(old, new, 1), "Dockerfile.hardened", CFG)) == {prop}


COMPOSE_BREAKS = {
    "compose.bot.read_only": (lambda d: d["services"]["bot"].update(read_only=False)),
    "compose.bot.no_new_privileges": (lambda d: d["services"]["bot"].update(security_opt=[])),
    "compose.bot.cap_drop_all": (lambda d: d["services"]["bot"].update(cap_add=["NET_ADMIN"])),
    "compose.bot.tmpfs_tmp": (lambda d: d["services"]["bot"].update(tmpfs=["/tmp:size=64m"])),
    "compose.bot.limits": (lambda d: d["services"]["bot"]["deploy"]["resources"]["limits"].pop("memory")),
    "compose.bot.ports_loopback": (lambda d: d["services"]["bot"].update(ports=["8901:18901"])),
    "compose.bot.isolation": (lambda d: d["services"]["bot"].update(privileged=True)),
    "compose.bot.user": (lambda d: d["services"]["bot"].update(user="0:0")),
    "compose.bot.docker_secrets": (lambda d: d["secrets"].pop("gameday_api_secret")),
    "compose.bot.no_secret_in_environment": (
        lambda d: d["services"]["bot"]["environment"].update(GAMEDAY_API_SECRET="GAMEDAYFAKE")),
    "compose.redis.pinned_image": (lambda d: d["services"]["redis"].update(image="redis:latest")),
    "compose.redis.aof": (lambda d: d["services"]["redis"].update(
        command=[d["services"]["redis"]["command"][0].replace("--appendonly yes", "--appendonly no")])),
    "compose.redis.requirepass": (lambda d: d["services"]["redis"].update(
        command=["exec redis-server --appendonly yes"])),
}


@pytest.mark.parametrize("prop", sorted(COMPOSE_BREAKS))
def test_each_compose_property_can_fail(prop: str) -> None:
    doc = yaml.safe_load(COMPOSE)
    COMPOSE_BREAKS[prop](doc)
    assert _failing(check_compose(yaml.safe_dump(doc), "docker-compose.hardened.yml", CFG)) == {prop}


def test_internal_network_and_redis_isolation_can_fail() -> None:
    doc = yaml.safe_load(COMPOSE)
    doc["networks"]["backend"].pop("internal")
    assert _failing(check_compose(yaml.safe_dump(doc), "c.yml", CFG)) == {"compose.internal_network",
                                                                           "compose.redis.internal_only"}
    doc = yaml.safe_load(COMPOSE)
    doc["services"]["redis"]["ports"] = ["127.0.0.1:6379:6379"]
    assert _failing(check_compose(yaml.safe_dump(doc), "c.yml", CFG)) == {"compose.redis.internal_only"}


def test_a_broken_file_fails_the_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile.hardened").write_text(DOCKERFILE.replace("USER 1000:1000", "USER root"))
    (tmp_path / "docker-compose.hardened.yml").write_text(COMPOSE)
    result = run_container(CFG, tmp_path)
    assert result.verdict == FAIL and [f.rule for f in result.findings] == ["dockerfile.non_root"]
    assert result.findings[0].line == DOCKERFILE.splitlines().index("USER 1000:1000") + 1
