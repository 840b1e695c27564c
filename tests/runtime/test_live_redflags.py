"""The real bot process runs its red-flag checks: against the local testnet over sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rt_support import KEY, SECRET, TOKEN, BotProcess, admin, bot_env, open_testnet, wait_for_events, wait_healthy

from harness.services import free_loopback_port, make_redis_client


# leak_detection.yaml places.logs (relative to the working directory), or a file the bot itself writes
@pytest.mark.parametrize("leaked_in", ["logs/bot.log", "events.jsonl"])
async def test_the_running_bot_finds_its_secret_in_its_own_log_and_stops(tmp_path: Path, leaked_in: str) -> None:
    log = tmp_path / leaked_in
    log.parent.mkdir(exist_ok=True)
    planted = json.dumps({"name": "earlier.run", "printed": f"secret={SECRET}"})
    log.write_text(planted + "\n")
    async with open_testnet() as handle:
        args = ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--no-entries",
                "--events", str(tmp_path / "events.jsonl"), "--state", str(tmp_path / "state" / "bot.db"),
                "--audit", str(tmp_path / "state" / "audit.jsonl")]
        async with BotProcess(args, tmp_path, bot_env()) as bot:
            events = await wait_for_events(tmp_path / "events.jsonl",
                                           lambda ev: any(e["name"] == "killswitch.engaged" for e in ev), proc=bot)
            code, out, err = await bot.terminate()
    assert code == 0, err
    assert [e["flag"] for e in events if e["name"] == "redflag.raised"] == ["private_key_logged"]
    engaged = next(e for e in events if e["name"] == "killswitch.engaged")
    assert engaged["actor"] == "redflag" and engaged["reason"].startswith("red flag private_key_logged")
    assert "ALERT [emergency]" in err  # the alert router's log channel carried it
    assert SECRET not in out + err + (tmp_path / "events.jsonl").read_text().replace(planted, "")


async def test_post_checks_on_the_running_bot_with_redis_state_then_a_revoked_key_stops_it(
        tmp_path: Path, gameday_redis: Any) -> None:
    port = free_loopback_port()
    url = gameday_redis.url.rsplit("/", 1)[0] + "/13"  # a database of its own: the bot's keys are unprefixed
    client = make_redis_client(url)
    client.flushdb()
    async with open_testnet() as handle:
        args = ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--no-entries",
                "--events", str(tmp_path / "events.jsonl"), "--state", url,
                "--audit", str(tmp_path / "state" / "audit.jsonl"), "--control-port", str(port)]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with BotProcess(args, tmp_path, bot_env(GAMEDAY_CONTROL_TOKEN=TOKEN)) as bot, \
                aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(http, base)
            ran = {}
            for name in ("backup_failed", "emergency_stop_failed", "breaker_not_working"):
                async with http.post(f"{base}/checks/{name}", headers=headers) as r:
                    assert r.status == 200
                    ran[name] = await r.json()
            assert {name: a["ok"] for name, a in ran.items()} == dict.fromkeys(ran, True), ran
            assert client.exists("gameday:redflag-backup-probe")  # written to the real Redis and read back
            await admin(handle, "POST", "keys/revoke", {"api_key": KEY})
            async with http.post(f"{base}/checks/emergency_stop_failed", headers=headers) as r:
                failed = await r.json()
            assert failed["ok"] is False and "AuthError" in failed["detail"] and failed["killswitch"] == "engaged"
            events = await wait_for_events(tmp_path / "events.jsonl",
                                           lambda ev: any(e["name"] == "redflag.raised" for e in ev), proc=bot)
            code, _, err = await bot.terminate()
    assert code == 0, err
    assert [e["flag"] for e in events if e["name"] == "redflag.raised"] == ["emergency_stop_failed"]
    client.flushdb()
