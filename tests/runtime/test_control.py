"""The control API of a running bot: auth, kill switch, resume, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bot.io.control import ControlServer
from tests.runtime.sim_world import TOKEN, World


def test_control_api_kill_switch_resume_and_auth(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        world.give_position(0.05)
        await world.trader.start()
        server = ControlServer(world.trader, TOKEN)
        port = await server.start()
        base = f"http://127.0.0.1:{port}"
        good = {"Authorization": f"Bearer {TOKEN}"}
        bad = {"Authorization": "Bearer nope"}
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/health") as r:
                    assert r.status == 200
                async with http.get(f"{base}/status", headers=bad) as r:
                    assert r.status == 401
                async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "x"},
                                     headers=bad) as r:
                    assert r.status == 401
                assert world.position() == 0.05, "a rejected kill changes nothing"
                async with http.post(f"{base}/killswitch", json={"mode": "sideways"}, headers=good) as r:
                    assert r.status == 400 and "immediate, graceful or pause" in (await r.json())["error"]
                async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "drill",
                                                                 "actor": "risk"}, headers=good) as r:
                    assert r.status == 200 and (await r.json())["status"]["trading"] == "halted"
                assert world.position() == 0
                async with http.post(f"{base}/killswitch/clear", json={"actor": "risk"}, headers=good) as r:
                    assert r.status == 200
                async with http.post(f"{base}/resume", json={"actor": "risk"}, headers=bad) as r:
                    assert r.status == 401
                async with http.post(f"{base}/resume", json={"actor": "risk"}, headers=good) as r:
                    assert r.status == 409, "nothing is halted by a breaker: nothing to resume"
                async with http.get(f"{base}/status", headers=good) as r:
                    body = await r.json()
                    assert body["killswitch"] == "clear" and body["trading"] == "active"
        finally:
            await server.stop()

    asyncio.run(scenario())
    assert [e.fields.get("actor") for e in world.of("killswitch.rejected")] == ["control-api"]
