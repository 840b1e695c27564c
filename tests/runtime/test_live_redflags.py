"""The real bot process runs its red-flag checks: against the local testnet over sockets."""

from __future__ import annotations

from pathlib import Path

from rt_support import SECRET, BotProcess, bot_env, open_testnet, wait_for_events


async def test_the_running_bot_finds_its_secret_in_its_own_log_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "bot.log"  # leak_detection.yaml places.logs, relative to the working directory
    log.parent.mkdir()
    log.write_text(f"an earlier run printed secret={SECRET}\n")
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
    assert SECRET not in out + err + (tmp_path / "events.jsonl").read_text()
