# Registers harness.pytest_services (see tests/toxiproxy/conftest.py for why not `pytest_plugins`).
import pytest

import harness.pytest_services as _services_plugin


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(_services_plugin):
        config.pluginmanager.register(_services_plugin, "harness.pytest_services")
