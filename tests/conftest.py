"""Every event any test makes the bot emit must follow the event schema (bot/core/events.py).

`EventBus.emit` does not check (it is on the hot path); here, for the test session only, it is
wrapped: a test during which the bot emitted an undeclared event, a missing or undeclared field,
or a value of the wrong type fails, naming the event. Scenario runs are checked by the harness
itself (harness/collect.py), in every mode. A test that feeds a subscriber malformed events on
purpose (to prove it survives them) says so with `@pytest.mark.off_schema`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.core.events import Event, EventBus, event_problems

_PROBLEMS: list[str] = []
_emit = EventBus.emit


def _checked_emit(self: EventBus, name: str, ts_ms: int, **fields: Any) -> Event:
    event = _emit(self, name, ts_ms, **fields)
    _PROBLEMS.extend(event_problems(event))
    return event


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "off_schema: the test emits malformed events on purpose")
    EventBus.emit = _checked_emit  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    EventBus.emit = _emit  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    del _PROBLEMS[:]
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    result = yield
    if item.get_closest_marker("off_schema") is not None:
        del _PROBLEMS[:]
    if _PROBLEMS:
        seen = list(dict.fromkeys(_PROBLEMS))
        del _PROBLEMS[:]
        pytest.fail("the bot emitted events outside the schema (bot/core/events.py):\n  " + "\n  ".join(seen[:10]),
                    pytrace=False)
    return result
