"""Fuzz the live control API from its own OpenAPI file (schemathesis): every operation, valid and
invalid inputs, with and without credentials. No 5xx, every status code, header and body as documented."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

from bot.io.access import Access, Principal, load_access_config, token_digest
from bot.io.control import OPENAPI_FILE, ControlServer
from tests.runtime.sim_world import World

CONFIG = load_access_config()
ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"


class LiveServer:
    """A sim trader behind a real control API, in its own event loop on a thread."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0
        self.world: World | None = None
        self.server: ControlServer | None = None
        self._stop: asyncio.Event | None = None
        self.restarts: list[str] = []  # who asked for a restart (a real bot re-executes itself)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        access = Access(CONFIG, [Principal("fuzz-admin", "system_admin", token_digest(ADMIN_TOKEN))])
        self.world = World(self.workdir)
        self.world.trader.verify = access.killswitch_verifier()
        self.world.give_position(0.05)
        await self.world.trader.start()
        # a limit the fuzzer does not reach: it is here to exercise the handlers (the limit has its own tests)
        settings_ = CONFIG.control_api.model_copy(
            update={"rate_limit": CONFIG.control_api.rate_limit.model_copy(
                update={"requests_per_minute": 100_000, "anonymous_per_minute": 100_000})})
        self.server = ControlServer(self.world.trader, access, settings=settings_, on_restart=self.restarts.append)
        self.port = await self.server.start()
        self.ready.set()
        await self._stop.wait()
        await self.server.stop()

    def __enter__(self) -> LiveServer:
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError("the control API did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(20)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


schema = schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI_FILE.read_text()))


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_control_api_behaves_as_its_openapi_file_says(case: Any, live: LiveServer) -> None:
    case.call_and_validate(base_url=f"http://127.0.0.1:{live.port}",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
