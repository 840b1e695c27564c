"""pytest fixtures for the services of DESIGN.md "Services": ``gameday_redis``, ``gameday_toxiproxy``,
``toxiproxy_clean``.

A service that cannot be provided skips the test with the reason and how to provide it, or fails it when
``GAMEDAY_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import pytest

from harness.services import REQUIRE_ENV, ProvisionResult, ServiceHandle, provide, require_services
from harness.toxiproxy.client import ToxiproxyClient, ToxiproxyError

__all__ = ["gameday_redis", "gameday_toxiproxy", "obtain_service", "toxiproxy_clean", "unavailable_outcome"]


def unavailable_outcome(result: ProvisionResult, env: Mapping[str, str] | None = None) -> None:
    """Skip (or, with GAMEDAY_REQUIRE_SERVICES=1, fail) the current test because the service is missing."""
    env = os.environ if env is None else env
    if require_services(env):
        pytest.fail(f"{result.reason} [{REQUIRE_ENV}=1 turns this skip into a failure]", pytrace=False)
    pytest.skip(result.reason)


def obtain_service(service: str, env: Mapping[str, str] | None = None) -> ServiceHandle:
    """The fixture logic: a handle from the chain, or skip/fail with the reason."""
    result = provide(service, env)
    if result.handle is None:
        unavailable_outcome(result, env)
    assert result.handle is not None
    return result.handle


@pytest.fixture(scope="session")
def gameday_redis() -> Iterator[ServiceHandle]:
    """Redis for the session (``.url`` is a redis:// URL; use harness.services.make_redis_client)."""
    handle = obtain_service("redis")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def gameday_toxiproxy() -> Iterator[ServiceHandle]:
    """A Toxiproxy API for the session (``.url`` is its http:// address)."""
    handle = obtain_service("toxiproxy")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def toxiproxy_clean(gameday_toxiproxy: ServiceHandle) -> Iterator[ToxiproxyClient]:
    """A client for the session's Toxiproxy; after the test: /reset, and proxies the test created are deleted.

    The cleanup runs however the test ends; a cleanup failure is reported as an error of this test.
    """
    client = ToxiproxyClient(gameday_toxiproxy.url)
    before = set(client.proxies())
    try:
        yield client
    finally:
        errors: list[str] = []
        try:
            client.reset()
        except ToxiproxyError as exc:
            errors.append(str(exc))
        try:
            for name in set(client.proxies()) - before:
                try:
                    client.delete_proxy(name)
                except ToxiproxyError as exc:
                    if exc.status != 404:
                        errors.append(str(exc))
        except ToxiproxyError as exc:
            errors.append(str(exc))
        if errors:
            pytest.fail("toxiproxy cleanup failed: " + "; ".join(errors), pytrace=False)
