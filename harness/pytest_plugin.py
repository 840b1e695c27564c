"""The gameday pytest plugin (registered through the `pytest11` entry point)."""

from __future__ import annotations

import pytest

import harness.pytest_services as _services
from harness import collect as _collect
from harness import runner as _runner  # noqa: F401  (registers RUNNERS["sim"])
from harness.net import runner as _net_runner  # noqa: F401 - registers RUNNERS["net"]

# Scenario collection, running, evidence and the end-of-session table (harness/collect.py).
pytest_addoption = _collect.pytest_addoption
pytest_collect_file = _collect.pytest_collect_file
pytest_runtest_makereport = _collect.pytest_runtest_makereport
pytest_terminal_summary = _collect.pytest_terminal_summary

MARKERS = {
    "gate": "runs on every merge: fast, deterministic controls checks",
    "drill": "game-day drill: production thresholds, real time",
    "slow": "takes more than a few seconds",
    "net": "needs real processes and services (Redis, Toxiproxy, testnet server)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # Service fixtures (gameday_redis, gameday_toxiproxy, toxiproxy_clean) for scenarios and tests.
    if not config.pluginmanager.is_registered(_services):
        config.pluginmanager.register(_services, "harness.pytest_services")
