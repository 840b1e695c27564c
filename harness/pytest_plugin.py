"""The gameday pytest plugin (registered through the `pytest11` entry point)."""

from __future__ import annotations

import pytest

import harness.pytest_services as _services
from harness import collect as _collect
from harness import progress
from harness import pytest_evidence as _evidence
from harness import shard as _shard
from harness.net import runner as _net_runner  # noqa: F401 - registers RUNNERS["net"]
from harness.sim import runner as _sim_runner  # noqa: F401 - registers RUNNERS["sim"]

# Scenario collection and running (harness/collect.py); the session's evidence set, its table
# and its seal (harness/pytest_evidence.py, a per-session plugin object registered at configure).
pytest_collect_file = _collect.pytest_collect_file
pytest_runtest_makereport = _collect.pytest_runtest_makereport
pytest_collection_modifyitems = _shard.pytest_collection_modifyitems


def pytest_addoption(parser: pytest.Parser) -> None:
    _collect.pytest_addoption(parser)
    _evidence.add_options(parser)
    _shard.add_options(parser)

MARKERS = {
    "gate": "runs on every merge: fast, deterministic controls checks",
    "drill": "game-day drill: production thresholds, real time",
    "slow": "takes more than a few seconds",
    "net": "needs real processes and services (Redis, Toxiproxy, testnet server)",
}


@pytest.hookimpl(tryfirst=True)  # the evidence set exists before junitxml reads --junitxml
def pytest_configure(config: pytest.Config) -> None:
    _evidence.configure(config)
    progress.use_pytest(config)  # a net scenario's live progress reaches the terminal through capture
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # Service fixtures (gameday_redis, gameday_toxiproxy, toxiproxy_clean) for scenarios and tests.
    if not config.pluginmanager.is_registered(_services):
        config.pluginmanager.register(_services, "harness.pytest_services")
