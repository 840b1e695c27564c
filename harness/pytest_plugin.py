"""The gameday pytest plugin (registered through the `pytest11` entry point)."""

from __future__ import annotations

import pytest

MARKERS = {
    "gate": "runs on every merge: fast, deterministic controls checks",
    "drill": "game-day drill: production thresholds, real time",
    "slow": "takes more than a few seconds",
    "net": "needs real processes and services (Redis, Toxiproxy, testnet server)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
