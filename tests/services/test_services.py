"""The service chain of DESIGN.md "Services": env address, local binary, Docker, embedded."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness import services
from harness.docker_engine import docker_ping
from harness.pytest_services import obtain_service, unavailable_outcome
from harness.services import (
    HOW_TO,
    ProvisionResult,
    ServiceHandle,
    describe_chain,
    make_redis_client,
    provide_redis,
    provide_toxiproxy,
)
from harness.toxiproxy.server import EmbeddedToxiproxyThread

ROOT = Path(__file__).resolve().parents[2]
HAS_REDIS_SERVER = shutil.which("redis-server") is not None
needs_redis_server = pytest.mark.skipif(
    not HAS_REDIS_SERVER, reason="redis-server not on PATH (apt-get install redis-server)"
)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment where nothing is provided: empty PATH, no env addresses, no Docker engine."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return {"PATH": str(empty), "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"}


def _answers_ping(url: str) -> bool:
    client = make_redis_client(url, timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# --------------------------------------------------------------------------------------------- redis


@needs_redis_server
def test_local_redis_server_is_started_and_stopped() -> None:
    env = {"PATH": os.environ["PATH"], "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = provide_redis(env)
    handle = result.handle
    assert handle is not None, result.reason
    assert handle.source == "local-binary"
    assert handle.host == "127.0.0.1"
    assert [a.source for a in result.attempts] == ["env", "local-binary"]
    assert result.attempts[0].reason == "GAMEDAY_REDIS_URL is not set"
    client = make_redis_client(handle.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()
    handle.stop()
    assert not _answers_ping(handle.url)
    handle.stop()  # idempotent


@needs_redis_server
def test_env_address_takes_precedence_and_is_not_stopped() -> None:
    own = services.redis_from_binary(os.environ)
    try:
        env = {"PATH": os.environ["PATH"], "GAMEDAY_REDIS_URL": own.url}
        result = provide_redis(env)
        assert result.handle is not None
        assert (result.handle.source, result.handle.url) == ("env", own.url)
        assert [a.source for a in result.attempts] == ["env"]
        result.handle.stop()
        assert _answers_ping(own.url)  # an address from the environment is not ours to stop
    finally:
        own.stop()


@needs_redis_server
def test_dead_env_address_falls_through_with_its_reason() -> None:
    env = {"PATH": os.environ["PATH"], "GAMEDAY_REDIS_URL": f"redis://127.0.0.1:{_dead_port()}/0"}
    result = provide_redis(env)
    try:
        assert result.handle is not None
        assert result.handle.source == "local-binary"
        assert not result.attempts[0].ok
        assert "did not answer PING" in result.attempts[0].reason
    finally:
        if result.handle is not None:
            result.handle.stop()


def test_nothing_available_explains_every_step(bare_env: dict[str, str]) -> None:
    result = provide_redis(bare_env)
    assert result.handle is None
    reasons = {a.source: a.reason for a in result.attempts}
    assert reasons["env"] == "GAMEDAY_REDIS_URL is not set"
    assert reasons["local-binary"] == "redis-server not found on PATH"
    assert "no Docker engine" in reasons["docker"]
    assert reasons["embedded"] == "there is no embedded Redis"
    assert HOW_TO["redis"] in result.reason


def test_redis_client_has_explicit_timeouts_and_no_retries() -> None:
    client = make_redis_client(f"redis://127.0.0.1:{_dead_port()}/0", timeout=0.25)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25
    assert kwargs["socket_connect_timeout"] == 0.25
    assert client.get_retry().get_retries() == 0
    with pytest.raises(redis.ConnectionError):
        client.ping()


# --------------------------------------------------------------------------------------------- toxiproxy


def test_toxiproxy_env_address_takes_precedence(bare_env: dict[str, str]) -> None:
    with EmbeddedToxiproxyThread() as server:
        result = provide_toxiproxy({**bare_env, "GAMEDAY_TOXIPROXY_URL": f"127.0.0.1:{server.port}"})
        assert result.handle is not None
        assert (result.handle.source, result.handle.url) == ("env", server.url)
        assert "version" in result.handle.detail


def test_toxiproxy_falls_back_to_embedded(bare_env: dict[str, str]) -> None:
    result = provide_toxiproxy(bare_env)
    handle = result.handle
    assert handle is not None
    try:
        assert handle.source == "embedded"
        reasons = {a.source: a.reason for a in result.attempts}
        assert reasons["local-binary"] == "toxiproxy-server not found on PATH"
        assert "no Docker engine" in reasons["docker"]
        assert services._toxiproxy_version(handle.url)
    finally:
        handle.stop()
    with pytest.raises(services.ServiceUnavailable):
        services._toxiproxy_version(handle.url, 0.5)


def test_toxiproxy_binary_is_preferred_to_embedded(bare_env: dict[str, str], tmp_path: Path) -> None:
    """A toxiproxy-server on PATH is started with -host/-port and stopped after (a stand-in script here)."""
    fake = Path(bare_env["PATH"]) / "toxiproxy-server"
    fake.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            args = sys.argv[1:]
            host, port = args[args.index("-host") + 1], int(args[args.index("-port") + 1])
            from harness.toxiproxy.server import run_toxiproxy
            run_toxiproxy(host, port)
            """
        )
    )
    fake.chmod(0o755)
    result = provide_toxiproxy(bare_env)
    handle = result.handle
    assert handle is not None, result.reason
    try:
        assert handle.source == "local-binary"
        assert services._toxiproxy_version(handle.url)
    finally:
        handle.stop()
    with pytest.raises(services.ServiceUnavailable):
        services._toxiproxy_version(handle.url, 0.5)


# --------------------------------------------------------------------------------------------- docker


@pytest.fixture
def fake_docker_engine(tmp_path: Path) -> Iterator[str]:
    """A unix socket answering GET /_ping with 200 OK, like a Docker engine."""
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    threading.Thread(target=serve, daemon=True).start()
    yield path
    server.close()


@pytest.fixture
def silent_tcp() -> Iterator[int]:
    """Accepts connections and never answers (a wedged engine)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_docker_ping_missing_socket() -> None:
    ok, reason = docker_ping({"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert not ok
    assert reason == "no Docker engine: /nonexistent/docker.sock does not exist"


def test_docker_ping_is_bounded_to_two_seconds(silent_tcp: int) -> None:
    ok, reason = docker_ping({"DOCKER_HOST": f"tcp://127.0.0.1:{silent_tcp}"})
    assert not ok
    assert reason == f"Docker engine at tcp://127.0.0.1:{silent_tcp} did not answer /_ping within 2 s"


def test_docker_ping_refused_and_unsupported() -> None:
    ok, reason = docker_ping({"DOCKER_HOST": f"tcp://127.0.0.1:{_dead_port()}"})
    assert not ok and "no Docker engine" in reason
    ok, reason = docker_ping({"DOCKER_HOST": "ssh://user@host"})
    assert not ok and "only unix:// and tcp://" in reason


def test_docker_answering_without_testcontainers_says_so(fake_docker_engine: str) -> None:
    env = {"DOCKER_HOST": f"unix://{fake_docker_engine}", "PATH": ""}
    ok, reason = docker_ping(env)
    assert ok, reason
    assert "answered /_ping" in reason
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        result = provide_redis(env)
        docker_reason = {a.source: a.reason for a in result.attempts}["docker"]
        assert "answered /_ping" in docker_reason
        assert "testcontainers is not installed" in docker_reason
    else:  # pragma: no cover - depends on the environment
        pytest.skip("testcontainers is installed; the missing-package reason cannot be observed")


# --------------------------------------------------------------------------------------------- describe + fixtures


def test_describe_chain_lists_every_step(bare_env: dict[str, str]) -> None:
    lines = describe_chain(bare_env)
    text = "\n".join(lines)
    assert lines[0] == "redis: UNAVAILABLE (tests needing it will skip)"
    assert "  [no] local-binary: redis-server not found on PATH" in lines
    assert f"  to provide it: {HOW_TO['redis']}" in lines
    assert any(line.startswith("toxiproxy: embedded http://127.0.0.1:") for line in lines)
    assert "[ok] embedded" in text
    strict = describe_chain({**bare_env, "GAMEDAY_REQUIRE_SERVICES": "1"})
    assert strict[0] == "redis: UNAVAILABLE (tests needing it will fail)"


def test_unavailable_skips_or_fails_with_the_reason(bare_env: dict[str, str]) -> None:
    result = ProvisionResult("redis", None, provide_redis(bare_env).attempts)
    with pytest.raises(pytest.skip.Exception) as skipped:
        unavailable_outcome(result, {})
    assert "redis unavailable" in str(skipped.value)
    assert HOW_TO["redis"] in str(skipped.value)
    with pytest.raises(pytest.fail.Exception) as failed:
        unavailable_outcome(result, {"GAMEDAY_REQUIRE_SERVICES": "1"})
    assert "GAMEDAY_REQUIRE_SERVICES=1" in str(failed.value)
    with pytest.raises(pytest.fail.Exception):
        obtain_service("redis", {**bare_env, "GAMEDAY_REQUIRE_SERVICES": "1"})
    handle = obtain_service("toxiproxy", bare_env)
    assert isinstance(handle, ServiceHandle)
    handle.stop()


@pytest.mark.parametrize(("require", "outcome", "exit_code"), [("", "1 skipped", 0), ("1", "1 error", 1)])
def test_fixture_in_a_real_pytest_run(
    tmp_path: Path, bare_env: dict[str, str], require: str, outcome: str, exit_code: int
) -> None:
    """A missing service skips the test; with GAMEDAY_REQUIRE_SERVICES=1 the fixture fails (an error at setup)."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.pytest_services"]\n')
    (tmp_path / "test_needs_redis.py").write_text("def test_it(gameday_redis):\n    assert gameday_redis.url\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
    env.update(bare_env)
    env["GAMEDAY_REQUIRE_SERVICES"] = require
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert result.returncode == exit_code
    assert "redis-server not found on PATH" in result.stdout
