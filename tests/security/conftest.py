"""Fixtures of the security tests: a clean redaction registry per test, and a local
OSV-compatible server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sec_support import FIXTURES

from bot.io import redaction


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets registered by one test must not be redacted in the next one."""
    yield
    redaction._REGISTRY.clear()


@pytest.fixture
def osv_server() -> Iterator[OsvFixtureServer]:  # noqa: F821 - defined in sec_osv
    from sec_osv import OsvFixtureServer

    server = OsvFixtureServer(FIXTURES / "osv")
    server.start()
    try:
        yield server
    finally:
        server.stop()
