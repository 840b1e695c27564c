"""The live bot's periodic red-flag checks (bot/checks.py) on a sim trader: each passes on a healthy
bot and, shown failing on a broken part, engages the kill switch with its flag as reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from bot.checks import RedFlagChecks
from bot.core.breakers.base import BreakerVerdict
from bot.core.breakers.consecutive_losses import ConsecutiveLossesBreaker
from bot.io.leak_watch import Fingerprint, LeakPlaces, LeakWatch
from bot.io.state import StateStoreError
from tests.runtime.sim_world import World
from tests.runtime.test_control import auth, serving


class _Scraped:
    scraped_ms: int | None = None


class _DeadStore:
    def put(self, key: str, value: Any) -> None:
        raise StateStoreError("redis: connection refused")


async def _started(tmp_path: Path) -> World:
    world = World(tmp_path, profile="pets")
    await world.trader.start()
    return world


def _flag_raised(world: World) -> list[str]:
    return [e.fields["flag"] for e in world.of("redflag.raised")]


async def test_a_healthy_bot_passes_every_check_and_keeps_trading(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "bot.log").write_text("bot: running BTCUSDT\n")
    watch = LeakWatch([Fingerprint.of("test-k", "test-secret-not-real")], LeakPlaces(logs=[tmp_path / "logs"]))
    checks = RedFlagChecks(world.trader, metrics_server=_Scraped(), leak_watch=watch)
    await checks.run_due()
    last = world.trader.status()["red_flags"]
    assert {name: last[name]["ok"] for name in checks.checks} == {
        "breaker_not_working": True, "emergency_stop_failed": True, "backup_failed": True, "monitoring_down": True,
        "private_key_logged": True}
    assert not world.trader.status()["kill"]["engaged"] and not _flag_raised(world)


async def test_a_breaker_that_never_trips_fails_the_self_test(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    board = world.trader.engine.board
    broken = next(b for b in board.breakers if isinstance(b, ConsecutiveLossesBreaker))
    broken.observe = lambda x: None  # type: ignore[method-assign]  # a breaker that sees nothing
    outcome = await RedFlagChecks(world.trader).run("breaker_not_working")
    assert outcome is not None and not outcome[0] and "consecutive_losses.streak" in outcome[1]
    assert _flag_raised(world) == ["breaker_not_working"]
    assert world.trader.status()["kill"]["reason"].startswith("red flag breaker_not_working")
    assert all(isinstance(v, BreakerVerdict) and v.level == "ok" for v in board.verdicts)  # the live board untouched


async def test_a_revoked_key_fails_the_emergency_stop_check_without_cancelling_anything(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    world.exchange_engine.revoke_key("test-key")
    outcome = await RedFlagChecks(world.trader).run("emergency_stop_failed")
    assert outcome is not None and not outcome[0] and "AuthError" in outcome[1]
    assert _flag_raised(world) == ["emergency_stop_failed"]


async def test_a_store_that_cannot_be_written_fails_the_backup_check(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    world.trader.store = _DeadStore()  # type: ignore[assignment]
    outcome = await RedFlagChecks(world.trader).run("backup_failed")
    assert outcome == (False, "state store write/read-back failed: redis: connection refused")
    assert _flag_raised(world) == ["backup_failed"]


async def test_metrics_silent_past_the_window_is_monitoring_down_and_just_inside_it_is_not(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    window_ms = round(world.policy.red_flags.checks.monitoring_silent_s * 1000)
    server = _Scraped()
    checks = RedFlagChecks(world.trader, metrics_server=server)
    server.scraped_ms = world.clock.now_ms()
    world.clock.advance(window_ms)
    assert await checks.run("monitoring_down") == (True, "metrics scraped recently")
    world.clock.advance(1)
    outcome = await checks.run("monitoring_down")
    assert outcome is not None and not outcome[0] and "last scraped" in outcome[1]
    assert _flag_raised(world) == ["monitoring_down"]


async def test_the_secret_in_the_bots_own_log_is_private_key_logged_and_stays_failed(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    log = tmp_path / "logs" / "bot.log"
    log.parent.mkdir()
    log.write_text("ok\n")
    watch = LeakWatch([Fingerprint.of("test-k", "test-secret-not-real")], LeakPlaces(logs=[log.parent]))
    checks = RedFlagChecks(world.trader, leak_watch=watch)
    assert (await checks.run("private_key_logged") or (None,))[0] is True
    log.write_text("ok\ndebug: secret=test-secret-not-real\n")
    first, again = await checks.run("private_key_logged"), await checks.run("private_key_logged")
    assert first is not None and not first[0] and "test-k" in first[1] and "test-secret-not-real" not in first[1]
    assert again == first  # the watch reports a finding once; the flag does not turn ok again
    assert _flag_raised(world) == ["private_key_logged"]


async def test_checks_run_at_start_then_at_their_interval(tmp_path: Path) -> None:
    world = await _started(tmp_path)
    checks = RedFlagChecks(world.trader)
    await checks.run_due()
    first = world.trader.status()["red_flags"]["backup_failed"]["ts_ms"]
    world.clock.advance(round(world.policy.red_flags.checks.backup_s * 1000) - 1)
    await checks.run_due()
    assert world.trader.status()["red_flags"]["backup_failed"]["ts_ms"] == first
    world.clock.advance(1)
    await checks.run_due()
    assert world.trader.status()["red_flags"]["backup_failed"]["ts_ms"] == first + round(
        world.policy.red_flags.checks.backup_s * 1000)


async def test_post_checks_runs_one_check_now_and_an_unknown_name_lists_the_known(tmp_path: Path) -> None:
    world = World(tmp_path)  # futures: the 403 below is no red flag there (pets: unauthorized_access)
    async with serving(world, position=0) as (base, server), aiohttp.ClientSession() as http:
        server.checks = RedFlagChecks(world.trader)
        async with http.post(f"{base}/checks/backup_failed", headers=auth("ops")) as r:
            answer = await r.json()
            assert r.status == 200, answer
        assert answer["ok"] is True and answer["last_check"]["ok"] is True and answer["killswitch"] == "clear"
        world.trader.store = _DeadStore()  # type: ignore[assignment]
        async with http.post(f"{base}/checks/backup_failed", headers=auth("risk-officer")) as r:
            failed = await r.json()
        assert failed["ok"] is False and failed["killswitch"] == "engaged" and failed["actor"] == "risk-officer"
        async with http.post(f"{base}/checks/no_such_check", headers=auth("ops")) as r:
            unknown = await r.json()
            assert r.status == 404 and unknown["error"] == "unknown_check"
        assert unknown["checks"] == ["backup_failed", "breaker_not_working", "emergency_stop_failed"]
        async with http.post(f"{base}/checks/backup_failed", headers=auth("quant")) as r:
            assert r.status == 403  # a Quant Analyst reads status, runs nothing
    assert _flag_raised(world) == ["backup_failed"]
