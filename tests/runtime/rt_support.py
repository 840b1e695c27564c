"""Helpers shared by the runtime tests (imported as a plain module): a testnet, the bot as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from harness.testnet.server import TestnetHandle, start_testnet

KEY, SECRET = "rt-key", "rt-secret"
BTC = "BTCUSDT"
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "operator-token-0123456789"


@contextlib.asynccontextmanager
async def open_testnet(**kwargs: Any) -> AsyncIterator[TestnetHandle]:
    opts: dict[str, Any] = {"keys": [(KEY, SECRET)], "seed": 3, "tick_ms": 50, "bar_real_ms": 1000,
                            "history_bars": 100}
    opts.update(kwargs)
    handle = await start_testnet(**opts)
    try:
        yield handle
    finally:
        await handle.stop()


async def admin(handle: TestnetHandle, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{handle.admin_url}/{name}", json=body) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise AssertionError(f"admin {method} {name} -> {resp.status}: {data}")
        return data["result"]


def bot_env(key: str = KEY, secret: str = SECRET, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
    env.update({"GAMEDAY_API_KEY": key, "GAMEDAY_API_SECRET": secret,
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    env.update(extra)
    return env


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


class BotProcess:
    """`python -m bot ARGS` as a child process; always reaped (killed if still running at exit)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.args, self.cwd, self.env = args, cwd, env
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> BotProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *self.args, cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    async def finish(self, timeout: float = 20.0) -> tuple[int, str, str]:
        assert self.proc is not None
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()

    async def terminate(self, timeout: float = 15.0) -> tuple[int, str, str]:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.finish(timeout)


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_for_events(path: Path, predicate: Callable[[list[dict[str, Any]]], bool], *,
                          timeout: float = 20.0, proc: BotProcess | None = None) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        events = read_events(path)
        if predicate(events):
            return events
        if proc is not None and proc.proc is not None and proc.proc.returncode is not None:
            raise AssertionError(f"bot exited {proc.proc.returncode} early; events: {events}")
        if loop.time() > end:
            raise AssertionError(f"timed out waiting; events so far: {events}")
        await asyncio.sleep(0.05)


async def wait_healthy(http: aiohttp.ClientSession, base: str, tries: int = 200) -> None:
    """Until the control API at `base` answers /health (the bot process is still starting)."""
    for _ in range(tries):
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/health") as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.05)
