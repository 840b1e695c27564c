"""One engage through the control API is one audit record: the engage record carries the access."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.runtime.sim_world import World
from tests.runtime.test_control import audit_records, auth, serving


def _about_the_call(world: World) -> list[dict]:
    """Records of the request itself (the orders it caused and the snapshots are audited as their own actions)."""
    return [r for r in audit_records(world) if r["action"] == "api.access" or r["action"].startswith("killswitch.")]


async def test_one_engage_writes_one_record_with_who_and_from_where(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        before = len(_about_the_call(world))
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "drill"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 200
            assert "audit" not in await r.json()
    new = _about_the_call(world)[before:]
    assert [r["action"] for r in new] == ["killswitch.engage"]
    details = new[0]["details"]
    assert new[0]["actor"] == "risk-officer"
    assert (details["mode"], details["reason"], details["accepted"]) == ("immediate", "drill", True)
    assert details["via"] == {"source": "127.0.0.1", "route": "POST /killswitch", "principal": "risk-officer",
                              "role": "risk_manager"}


async def test_a_refused_engage_is_one_record_and_a_denied_one_is_still_audited(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "first"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 200
        before = len(_about_the_call(world))
        async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "weaker"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 409
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "not mine"},
                             headers=auth("ops")) as r:
            assert r.status == 403
    new = _about_the_call(world)[before:]
    assert [(r["action"], r["actor"]) for r in new] == [("killswitch.rejected", "risk-officer"),
                                                         ("killswitch.rejected", "ops")]
    assert new[0]["details"]["via"]["route"] == "POST /killswitch" and new[0]["details"]["accepted"] is False
    assert new[1]["details"]["status"] == 403 and new[1]["details"]["role"] == "trading_ops"


async def test_a_malformed_engage_is_still_one_access_record(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        before = len(_about_the_call(world))
        async with http.post(f"{base}/killswitch", json={"mode": "sideways", "reason": "x"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 400
    new = _about_the_call(world)[before:]
    assert [(r["action"], r["details"]["status"]) for r in new] == [("api.access", 400)]
