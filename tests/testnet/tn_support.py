"""Helpers shared by the testnet tests (imported as a plain module, like tests/core's support)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from harness.testnet.ccxt_client import make_ccxt_client
from harness.testnet.engine import Engine
from harness.testnet.gate import sign_payload
from harness.testnet.model import Reply
from harness.testnet.server import TestnetHandle, start_testnet

KEY, SECRET = "test-key", "test-secret"
BTC = "BTC/USDT:USDT"


def signed_call(engine: Engine, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                key: str = KEY, secret: str = SECRET, ip: str = "127.0.0.1", ts: int | None = None,
                recv_window: int = 10_000) -> Reply:
    """Call Engine.handle exactly as a signing client would."""
    query = {"timestamp": str(engine.now_ms() if ts is None else ts),
             **{k: str(v) for k, v in (params or {}).items()}, "recvWindow": str(recv_window)}
    payload = urlencode(query)
    return engine.handle(method, path, query, api_key=key, ip=ip, payload=payload,
                         signature=sign_payload(secret, payload))


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


@contextlib.asynccontextmanager
async def open_testnet_client(key: str = KEY, secret: str = SECRET, **kwargs: Any) -> AsyncIterator[
        tuple[TestnetHandle, Any]]:
    async with open_testnet(**kwargs) as handle:
        ex = make_ccxt_client(handle.rest_url, handle.ws_url, key, secret, enable_rate_limit=False)
        try:
            yield handle, ex
        finally:
            await ex.close()


async def admin(handle: TestnetHandle, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{handle.admin_url}/{name}", json=body) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise AssertionError(f"admin {method} {name} -> {resp.status}: {data}")
        return data["result"]
