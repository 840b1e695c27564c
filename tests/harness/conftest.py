"""Fixtures for the harness tests: pytester for collection runs, scenario file writers."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import hypothesis  # noqa: F401 - see pytest_configure
import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The `pytester` fixture. Not `pytest_plugins = ["pytester"]`: pytest refuses that in a
    # conftest below the rootdir when the whole suite runs (`pytest tests`). A plugin
    # registered here still gets its options (pytest_addoption is a historic hook).
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
    # pytester's in-process runs drop the modules first imported during a run; hypothesis is one
    # (its pytest plugin imports it at the end of every session): imported here, once, it stays.

WriteScenario = Callable[[str, str], Path]


@pytest.fixture
def write_scenario(tmp_path: Path) -> WriteScenario:
    """write_scenario("name.yaml", yaml_text) -> path (the text is dedented)."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
