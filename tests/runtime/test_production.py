"""The production start protocol on a running sim trader: the ramp advanced over the control API by a
Risk Manager with evidence only, audited, kept across a restart; red flags stop the bot at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import policy_digest
from bot.core.events import Event
from bot.core.ramp import DAY_MS
from bot.core.redflags import CHECKED_FLAGS
from tests.runtime.sim_world import World
from tests.runtime.test_control import audit_records, auth, serving


def validation_file(tmp_path: Path, world: World, **overrides: Any) -> str:
    doc = {"schema": "gameday.validation/v1", "profile": world.profile, "config_digest": policy_digest(world.policy),
           "verdict": "pass", "reason": "met all thresholds set", **overrides}
    path = tmp_path / "validation.json"
    path.write_text(json.dumps(doc))
    return str(path)


async def test_a_risk_manager_advances_the_ramp_with_evidence_only_audited_and_kept(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world, position=0) as (base, _), aiohttp.ClientSession() as http:
        url = base + "/ramp/advance"
        async with http.post(url, json={"validation": validation_file(tmp_path, world)}, headers=auth("admin")) as r:
            assert r.status == 403  # a System Admin is not the Risk Manager
        async with http.post(url, json={}, headers=auth("risk-officer")) as r:
            refused = await r.json()
            assert r.status == 409 and "min_days" in refused["reason"] and "no validation result" in refused["reason"]
        world.clock.advance_to(world.clock.now_ms() + 14 * DAY_MS)  # the futures paper stage's min_days
        async with http.post(url, json={"validation": validation_file(tmp_path, world)},
                             headers=auth("risk-officer")) as r:
            answer = await r.json()
            assert r.status == 200, answer
            assert answer["status"]["ramp"]["stage"] == "start_500"
            assert answer["status"]["ramp"]["max_capital_usd"] == 500.0
    advances = [r for r in audit_records(world) if r["action"] == "ramp.advance"]
    assert [a["details"]["accepted"] for a in advances] == [False, True]
    assert advances[1]["actor"] == "risk-officer" and advances[1]["details"]["to"] == "start_500"
    assert [e.fields["stage"] for e in world.of("ramp.advanced")] == ["start_500"]
    await world.trader.close()
    world.trader = world.new_trader()  # a restart: the stage comes back from the state store
    await world.trader.start()
    assert world.trader.status()["ramp"]["stage"] == "start_500"


@pytest.mark.parametrize("overrides,needle", [
    ({"verdict": "fail", "reason": "missed 2 of 5 thresholds"}, "verdict fail"),
    ({"config_digest": "sha256:0000"}, "validate the policy the bot runs"),
    ({"schema": "something/else"}, "not a validation result"),
])
async def test_a_validation_that_is_not_a_pass_of_this_policy_is_no_evidence(
        tmp_path: Path, overrides: dict[str, Any], needle: str) -> None:
    world = World(tmp_path)
    await world.trader.start()
    world.clock.advance_to(world.clock.now_ms() + 14 * DAY_MS)
    outcome = await world.trader.advance_ramp("risk-officer", validation_file(tmp_path, world, **overrides))
    assert not outcome.accepted and needle in outcome.reason
    assert world.trader.status()["ramp"]["stage"] == "paper"


async def test_an_unauthorized_kill_switch_request_is_a_red_flag_on_pets(tmp_path: Path) -> None:
    world = World(tmp_path, profile="pets")
    world.give_position(0.05)
    await world.trader.start()
    outcome = await world.trader.engage_killswitch("pause", "not an operator", "mallory", "wrong-token")
    assert not outcome.accepted
    assert [e.fields["flag"] for e in world.of("redflag.raised")] == ["unauthorized_access"]
    kill = world.trader.status()["kill"]
    assert kill["engaged"] and kill["mode"] == "immediate" and kill["reason"].startswith("red flag unauthorized_access")
    assert (tmp_path / "EMERGENCY_STOP").exists()  # the stop survives a crash
    await world.bars(2)
    assert world.position() == 0  # flattened
    assert world.trader.status()["red_flags"]["unauthorized_access"]["ok"] is False


async def test_an_unauthorized_request_is_no_red_flag_on_futures(tmp_path: Path) -> None:
    world = World(tmp_path)
    await world.trader.start()
    await world.trader.engage_killswitch("pause", "not an operator", "mallory", "wrong-token")
    assert not world.of("redflag.raised") and not world.trader.status()["kill"]["engaged"]


@pytest.mark.parametrize("flag", CHECKED_FLAGS)
async def test_each_failed_check_stops_the_bot_and_flattens(tmp_path: Path, flag: str) -> None:
    world = World(tmp_path, profile="pets")
    world.give_position(0.05)
    await world.trader.start()
    world.trader.observe_check(flag, True, "fine")
    assert not world.trader.status()["kill"]["engaged"]
    world.trader.observe_check(flag, False, "the check failed")
    assert world.trader.status()["kill"]["reason"] == f"red flag {flag}: the check failed"
    await world.bars(2)
    assert world.position() == 0
    assert [r["details"]["flag"] for r in audit_records(world) if r["action"] == "redflag.raised"] == [flag]


async def test_an_alert_that_reached_nobody_is_the_alerts_not_received_flag(tmp_path: Path) -> None:
    world = World(tmp_path, profile="pets")
    await world.trader.start()
    fields = {"id": "a1", "channel": "webhook", "severity": "critical", "title": "t", "key": "k", "attempts": 3,
              "error": "connection refused"}
    world.trader.bus.emit("alert.failed", world.clock.now_ms(), **fields, fallback="log")
    assert not world.of("redflag.raised")  # a fallback still carries it
    world.trader.bus.emit("alert.failed", world.clock.now_ms(), **fields, fallback=None)
    assert [e.fields["flag"] for e in world.of("redflag.raised")] == ["alerts_not_received"]


def test_observed_events_map_to_their_flags() -> None:
    from bot.io.production import observed_check
    assert observed_check(Event("credential.leak_detected", 1, {"key_id": "k1"}))[:2] == (  # type: ignore[index]
        "private_key_logged", False)
    assert observed_check(Event("alert.sent", 1, {"key": "k", "channel": "slack"}))[:2] == (  # type: ignore[index]
        "alerts_not_received", True)
    assert observed_check(Event("order.placed", 1, {})) is None


async def test_the_real_venue_is_refused_at_a_paper_stage_and_without_declared_capital(tmp_path: Path) -> None:
    from dataclasses import replace

    from bot.core.ramp import RampState
    from bot.runtime import StartupRefused

    world = World(tmp_path)
    world.trader.config = replace(world.trader.config, real_money=True)
    with pytest.raises(StartupRefused, match="paper stage"):
        await world.trader.start()
    world.store.put("bot", {**world.trader.engine.snapshot(), "ramp": RampState(1, 0).to_dict(), "generation": 1})
    world.trader = world.new_trader()
    world.trader.config = replace(world.trader.config, real_money=True)
    with pytest.raises(StartupRefused, match="declared_capital_usd"):
        await world.trader.start()
