"""Provisioning of the services tests and net-mode scenarios need: Redis and Toxiproxy.

Each service comes from the first source that works (DESIGN.md, "Services"):

1. ``env``: an address in the environment (``GAMEDAY_REDIS_URL``, ``GAMEDAY_TOXIPROXY_URL``), used when it
   answers (Redis PING / Toxiproxy GET /version);
2. ``local-binary``: ``redis-server`` / ``toxiproxy-server`` found on PATH, started on a free loopback port
   and stopped by the handle;
3. ``docker``: through testcontainers, tried only when a Docker engine answers ``GET /_ping`` within 2 s
   (:func:`harness.docker_engine.docker_ping`; testcontainers is imported only after that);
4. ``embedded``: for Toxiproxy only, the project's own server (:class:`EmbeddedToxiproxyThread`).

Every step that does not work leaves a reason; :func:`describe_chain` prints them for ``gameday services``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests

from harness.docker_engine import docker_ping

if TYPE_CHECKING:
    import redis

REDIS_ENV = "GAMEDAY_REDIS_URL"
TOXIPROXY_ENV = "GAMEDAY_TOXIPROXY_URL"
REQUIRE_ENV = "GAMEDAY_REQUIRE_SERVICES"
STARTUP_TIMEOUT_S = 10.0
REDIS_IMAGE = "redis:7-alpine"
TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"

HOW_TO = {
    "redis": (
        f"set {REDIS_ENV}=redis://HOST:PORT/0, or install redis-server (apt-get install -y redis-server), "
        "or run a Docker engine with `pip install testcontainers`"
    ),
    "toxiproxy": (
        f"set {TOXIPROXY_ENV}=http://HOST:8474, or put toxiproxy-server on PATH, "
        "or run a Docker engine with `pip install testcontainers`"
    ),
}

__all__ = [
    "Attempt",
    "ProvisionResult",
    "ServiceHandle",
    "ServiceUnavailable",
    "describe_chain",
    "free_loopback_port",
    "make_redis_client",
    "provide",
    "provide_redis",
    "provide_toxiproxy",
    "redact_url",
    "require_services",
]


class ServiceUnavailable(Exception):
    """One source could not provide the service (the message is the reason)."""


@dataclass
class ServiceHandle:
    """A provided service: where it is, where it came from, and how to give it back."""

    service: str
    url: str
    source: str
    detail: str = ""
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        if port is None:
            raise ValueError(f"{self.service} URL {self.url!r} has no port")
        return port

    def stop(self) -> None:
        """Stop what this handle started (nothing for an address from the environment). Idempotent."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> ServiceHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Attempt:
    source: str
    ok: bool
    reason: str


@dataclass
class ProvisionResult:
    service: str
    handle: ServiceHandle | None
    attempts: list[Attempt]

    @property
    def reason(self) -> str:
        """Why the service could not be provided (every step's reason) and how to provide it."""
        if self.handle is not None:
            return f"{self.service} from {self.handle.source}: {self.handle.url}"
        steps = "; ".join(f"{a.source}: {a.reason}" for a in self.attempts)
        return f"{self.service} unavailable ({steps}). To provide it: {HOW_TO[self.service]}"


# --------------------------------------------------------------------------------------------- helpers


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_redis_client(url: str, *, timeout: float = 1.0, **kwargs: Any) -> redis.Redis:
    """A Redis client with explicit timeouts and no retries (redis-py otherwise retries for seconds)."""
    import redis  # here, not at the top: a sim-only session (every xdist worker too) never loads redis-py
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs.setdefault("socket_timeout", timeout)
    kwargs.setdefault("socket_connect_timeout", timeout)
    kwargs.setdefault("retry", Retry(NoBackoff(), 0))
    kwargs.setdefault("retry_on_timeout", False)
    kwargs.setdefault("health_check_interval", 0)
    return redis.Redis.from_url(url, **kwargs)


def _redis_ping(url: str, timeout: float = 1.0) -> None:
    import redis

    client = make_redis_client(url, timeout=timeout)
    try:
        if not client.ping():
            raise ServiceUnavailable(f"{redact_url(url)} did not answer PING")
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"{redact_url(url)} did not answer PING: {exc}") from None
    finally:
        client.close()


def _toxiproxy_version(url: str, timeout: float = 2.0) -> str:
    session = requests.Session()
    session.trust_env = False
    try:
        response = session.get(f"{url}/version", timeout=(timeout, timeout))
    except requests.RequestException as exc:
        raise ServiceUnavailable(f"{url}/version did not answer: {exc}") from None
    finally:
        session.close()
    if response.status_code != 200:
        raise ServiceUnavailable(f"{url}/version answered HTTP {response.status_code}")
    try:
        return str(response.json()["version"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()


def _normalise_toxiproxy_url(value: str) -> str:
    url = value if "://" in value else f"http://{value}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ServiceUnavailable(f"{TOXIPROXY_ENV}={value!r} is not an http://HOST:PORT address")
    return f"{parts.scheme}://{parts.netloc}"


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _wait_until(check: Callable[[], None], proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with code {proc.returncode} before answering")
        try:
            check()
            return
        except ServiceUnavailable as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(f"{what} did not answer within {timeout:.0f} s ({last})")
        time.sleep(0.05)


def _start_process(argv: list[str], check: Callable[[], None], what: str) -> tuple[subprocess.Popen[bytes], str]:
    log = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        log.close()
        raise ServiceUnavailable(f"cannot run {argv[0]}: {exc}") from None
    try:
        _wait_until(check, proc, what, STARTUP_TIMEOUT_S)
    except ServiceUnavailable as exc:
        _terminate(proc)
        log.seek(0)
        tail = log.read()[-400:].decode("utf-8", "replace").strip().replace("\n", " | ")
        log.close()
        raise ServiceUnavailable(f"{exc}; output: {tail}" if tail else str(exc)) from None
    log.close()
    return proc, what


# --------------------------------------------------------------------------------------------- docker


def _require_testcontainers(env: Mapping[str, str]) -> str:
    ok, reason = docker_ping(env)
    if not ok:
        raise ServiceUnavailable(reason)
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        raise ServiceUnavailable(
            f"{reason}, but the Python package testcontainers is not installed (pip install testcontainers)"
        ) from None
    return reason


# --------------------------------------------------------------------------------------------- redis


def redis_from_env(env: Mapping[str, str]) -> ServiceHandle:
    url = env.get(REDIS_ENV, "").strip()
    if not url:
        raise ServiceUnavailable(f"{REDIS_ENV} is not set")
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ServiceUnavailable(f"{REDIS_ENV}={url!r} is not a redis:// URL")
    _redis_ping(url)
    return ServiceHandle("redis", url, "env", f"from {REDIS_ENV}")


def redis_from_binary(env: Mapping[str, str]) -> ServiceHandle:
    return _local_binary(
        "redis", "redis-server", env,
        lambda binary, port: [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1"],
        lambda port: f"redis://127.0.0.1:{port}/0",
        lambda url: _redis_ping(url, 0.5))


def _local_binary(service: str, name: str, env: Mapping[str, str], argv: Callable[[str, int], list[str]],
                  url_for: Callable[[int], str], answers: Callable[[str], None]) -> ServiceHandle:
    """Start `name` from PATH on a free loopback port and wait until it answers."""
    binary = shutil.which(name, path=env.get("PATH", os.defpath))
    if binary is None:
        raise ServiceUnavailable(f"{name} not found on PATH")
    last: ServiceUnavailable | None = None
    for _ in range(3):  # the free port can be taken between probe and bind; try a few
        port = free_loopback_port()
        url = url_for(port)
        try:
            proc, _ = _start_process(argv(binary, port), functools.partial(answers, url), f"{binary} on port {port}")
        except ServiceUnavailable as exc:
            last = exc
            continue
        return ServiceHandle(service, url, "local-binary", f"{binary} (pid {proc.pid})",
                             functools.partial(_terminate, proc))
    assert last is not None
    raise last


def redis_from_docker(env: Mapping[str, str]) -> ServiceHandle:
    reason = _require_testcontainers(env)
    try:
        from testcontainers.redis import RedisContainer
    except ImportError as exc:
        raise ServiceUnavailable(f"{reason}, but testcontainers.redis is unavailable: {exc}") from None
    container = RedisContainer(REDIS_IMAGE)
    try:
        container.start()
        url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        _redis_ping(url, 2.0)
    except Exception as exc:  # noqa: BLE001 - any container failure is a reason, not a crash
        with contextlib.suppress(Exception):
            container.stop()
        raise ServiceUnavailable(f"{REDIS_IMAGE} container did not start: {exc}") from None
    return ServiceHandle("redis", url, "docker", f"container {REDIS_IMAGE}", container.stop)


# --------------------------------------------------------------------------------------------- toxiproxy


def toxiproxy_from_env(env: Mapping[str, str]) -> ServiceHandle:
    value = env.get(TOXIPROXY_ENV, "").strip()
    if not value:
        raise ServiceUnavailable(f"{TOXIPROXY_ENV} is not set")
    url = _normalise_toxiproxy_url(value)
    version = _toxiproxy_version(url)
    return ServiceHandle("toxiproxy", url, "env", f"from {TOXIPROXY_ENV}, version {version}")


def toxiproxy_from_binary(env: Mapping[str, str]) -> ServiceHandle:
    return _local_binary(
        "toxiproxy", "toxiproxy-server", env,
        lambda binary, port: [binary, "-host", "127.0.0.1", "-port", str(port)],
        lambda port: f"http://127.0.0.1:{port}",
        lambda url: _toxiproxy_version(url, 0.5))


def toxiproxy_from_docker(env: Mapping[str, str]) -> ServiceHandle:
    reason = _require_testcontainers(env)
    if not sys.platform.startswith("linux"):
        raise ServiceUnavailable(f"{reason}, but Toxiproxy in Docker needs host networking (Linux engines only)")
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError as exc:
        raise ServiceUnavailable(f"{reason}, but testcontainers.core is unavailable: {exc}") from None
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    # Host networking: proxies created later listen on host ports and reach host upstreams directly,
    # so no port has to be mapped before the container starts.
    container = (
        DockerContainer(TOXIPROXY_IMAGE).with_kwargs(network_mode="host").with_command(f"-host 127.0.0.1 -port {port}")
    )
    try:
        container.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                version = _toxiproxy_version(url, 0.5)
                break
            except ServiceUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    except Exception as exc:  # noqa: BLE001
        with contextlib.suppress(Exception):
            container.stop()
        raise ServiceUnavailable(f"{TOXIPROXY_IMAGE} container did not start: {exc}") from None
    return ServiceHandle("toxiproxy", url, "docker", f"container {TOXIPROXY_IMAGE}, version {version}", container.stop)


def toxiproxy_embedded(env: Mapping[str, str]) -> ServiceHandle:
    from harness.toxiproxy.server import EmbeddedToxiproxyThread

    server = EmbeddedToxiproxyThread()
    try:
        server.start()
    except RuntimeError as exc:
        raise ServiceUnavailable(str(exc)) from None
    return ServiceHandle(
        "toxiproxy", server.url, "embedded", "harness.toxiproxy.server (in-process thread)", server.stop
    )


# --------------------------------------------------------------------------------------------- chains

Provider = Callable[[Mapping[str, str]], ServiceHandle]

CHAINS: dict[str, list[tuple[str, Provider]]] = {
    "redis": [
        ("env", redis_from_env),
        ("local-binary", redis_from_binary),
        ("docker", redis_from_docker),
    ],
    "toxiproxy": [
        ("env", toxiproxy_from_env),
        ("local-binary", toxiproxy_from_binary),
        ("docker", toxiproxy_from_docker),
        ("embedded", toxiproxy_embedded),
    ],
}


def provide(service: str, env: Mapping[str, str] | None = None) -> ProvisionResult:
    """Walk the chain for ``service``; the first source that works wins."""
    if service not in CHAINS:
        raise ValueError(f"unknown service {service!r}; expected one of {sorted(CHAINS)}")
    env = os.environ if env is None else env
    attempts: list[Attempt] = []
    for source, provider in CHAINS[service]:
        try:
            handle = provider(env)
        except ServiceUnavailable as exc:
            attempts.append(Attempt(source, False, str(exc)))
            continue
        attempts.append(Attempt(source, True, f"{redact_url(handle.url)} ({handle.detail})"))
        return ProvisionResult(service, handle, attempts)
    if service == "redis":
        attempts.append(Attempt("embedded", False, "there is no embedded Redis"))
    return ProvisionResult(service, None, attempts)


def provide_redis(env: Mapping[str, str] | None = None) -> ProvisionResult:
    return provide("redis", env)


def provide_toxiproxy(env: Mapping[str, str] | None = None) -> ProvisionResult:
    return provide("toxiproxy", env)


def require_services(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def describe_chain(env: Mapping[str, str] | None = None) -> list[str]:
    """For ``gameday services``: which source each service comes from, or why each step failed.

    Each service is really provisioned (and stopped again right after), so the answer is what a test run
    would get.
    """
    env = os.environ if env is None else env
    lines: list[str] = []
    for service, chain in CHAINS.items():
        result = provide(service, env)
        try:
            if result.handle is not None:
                lines.append(f"{service}: {result.handle.source} {redact_url(result.handle.url)}")
            else:
                mode = "fail" if require_services(env) else "skip"
                lines.append(f"{service}: UNAVAILABLE (tests needing it will {mode})")
            tried = {a.source for a in result.attempts}
            for attempt in result.attempts:
                mark = "ok" if attempt.ok else "no"
                lines.append(f"  [{mark}] {attempt.source}: {attempt.reason}")
            for source, _ in chain:
                if source not in tried:
                    lines.append(f"  [--] {source}: not tried")
            if result.handle is None:
                lines.append(f"  to provide it: {HOW_TO[service]}")
        finally:
            if result.handle is not None:
                result.handle.stop()
    return lines


def redact_url(url: str) -> str:
    """The URL without a password (for printing)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{unquote(parts.username or '')}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url
