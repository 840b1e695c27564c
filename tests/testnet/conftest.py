"""Fixtures for the testnet tests; `async def` tests run in a fresh event loop (asyncio.run)."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from bot.core.clock import VirtualClock
from harness.testnet.engine import Engine

KEY, SECRET = "test-key", "test-secret"
T0 = 1_700_000_000_000


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), timeout=30))
        return True
    return None


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def engine(vclock: VirtualClock) -> Engine:
    e = Engine(vclock, seed=1, history_bars=50, maker_fee=0.0002, taker_fee=0.0005)
    e.create_key(KEY, SECRET)
    return e
