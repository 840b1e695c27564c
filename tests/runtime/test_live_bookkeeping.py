"""The real bot process when its bookkeeping fails: a hand-written marker, a bot.db that is not a
database, an audit chain broken inside, a full disk under an immediate kill."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rt_support import BTC, KEY, TOKEN, BotProcess, bot_env, open_testnet, read_events, wait_for_events, write_private

from bot.io.audit import AuditLog, verify
from harness.services import require_services


def _args(handle: Any, tmp: Path, *extra: str, state_dir: Path | None = None) -> list[str]:
    state = state_dir or tmp / "state"
    return ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--events", str(tmp / "events.jsonl"),
            "--state", str(state / "bot.db"), "--audit", str(state / "audit.jsonl"), "--marker",
            str(state / "EMERGENCY_STOP"), "--no-entries", *extra]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _control(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.05)
        async with http.request(method, f"http://127.0.0.1:{port}{path}", json=body,
                                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return r.status, await r.json()


async def test_a_hand_written_marker_makes_the_running_bot_flatten_with_the_reason(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "SELL", "MARKET", 0.01)
        events_file = tmp_path / "events.jsonl"
        async with BotProcess(_args(handle, tmp_path), tmp_path, bot_env()) as bot:
            await wait_for_events(events_file, lambda ev: any(e["name"] == "position.opened" for e in ev), proc=bot)
            hand_written = tmp_path / "state" / "hand-written"
            hand_written.write_text('{"engaged": true}')
            hand_written.rename(tmp_path / "state" / "EMERGENCY_STOP")  # never seen half-written
            events = await wait_for_events(events_file, lambda ev: any(e["name"] == "account.flat" for e in ev),
                                           proc=bot)
            code, _, err = await bot.terminate()
        assert code == 0 and "Traceback" not in err, err
        engaged = next(e for e in events if e["name"] == "killswitch.engaged")
        assert engaged["mode"] == "immediate" and "not a complete kill-switch snapshot" in engaged["reason"]
        assert all(abs(p.qty) < 1e-12 for p in handle.engine.accounts[KEY].positions.values())


async def test_a_bot_db_that_is_not_a_database_brings_the_bot_up_halted_with_an_event(tmp_path: Path) -> None:
    port = _port()
    write_private(tmp_path / "state" / "kill_token", TOKEN)
    (tmp_path / "state" / "bot.db").write_bytes(b"this is not a database\n" * 64)
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.01)
        args = _args(handle, tmp_path, "--control-port", str(port))
        async with BotProcess(args, tmp_path, bot_env(GAMEDAY_CONTROL_TOKEN=TOKEN)) as bot:
            status, body = await _control(port, "GET", "/status")
            code, _, err = await bot.terminate()
    assert status == 200 and body["trading"] == "halted" and body["position"] == "open"
    assert "not a database" in body["bookkeeping"]["state_store_problem"]
    assert code == 0 and "Traceback" not in err, err
    [lost] = [e for e in read_events(tmp_path / "events.jsonl") if e["name"] == "state.lost"]
    assert "file is not a database" in lost["reason"]
    assert (tmp_path / "state" / "bot.db").read_bytes() == b"this is not a database\n" * 64  # left as found


async def test_an_audit_chain_broken_inside_refuses_bot_run_in_one_line_naming_the_line(tmp_path: Path) -> None:
    audit = tmp_path / "state" / "audit.jsonl"
    audit.parent.mkdir(parents=True)
    log = AuditLog(audit)
    for i in range(6):
        log.append("bot", "order.place", {"i": i}, 1_767_571_200_000 + i)
    log.close()
    audit.write_bytes(audit.read_bytes().replace(b'"i":2', b'"i":8'))
    async with open_testnet() as handle:
        async with BotProcess(_args(handle, tmp_path), tmp_path, bot_env()) as bot:
            code, _, err = await bot.finish(timeout=30)
    # besides the refusal, stderr holds only the alert channels' setup note and the log channel's alert
    lines = [line for line in err.strip().splitlines() if not line.startswith(("bot: alerts:", "ALERT "))]
    assert code == 3 and len(lines) == 1 and lines[0].startswith("startup refused: ") and "Traceback" not in err
    assert "audit.jsonl:3: hash does not match" in lines[0]
    [refused] = [e for e in read_events(tmp_path / "events.jsonl") if e["name"] == "startup.refused"]
    assert "audit.jsonl:3" in refused["reason"]


async def test_an_immediate_kill_through_the_control_api_with_the_state_disk_full_answers_200_and_flattens(
        tmp_path: Path) -> None:
    if os.geteuid() != 0:
        why = "a full disk for the real bot process needs root to mount a tmpfs"
        if require_services():
            pytest.fail(why)
        pytest.skip(why)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)  # noqa: S603,S607
    try:
        port = _port()
        write_private(tmp_path / "state" / "kill_token", TOKEN)
        async with open_testnet() as handle:
            handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.02)
            args = [*_args(handle, tmp_path, "--control-port", str(port), state_dir=disk), "--auth-token-file",
                    str(tmp_path / "state" / "kill_token")]
            async with BotProcess(args, tmp_path, bot_env(GAMEDAY_CONTROL_TOKEN=TOKEN)) as bot:
                await wait_for_events(tmp_path / "events.jsonl",
                                      lambda ev: any(e["name"] == "position.opened" for e in ev), proc=bot)
                with contextlib.suppress(OSError), open(disk / "filler", "wb", buffering=0) as fh:
                    while True:
                        fh.write(b"\0" * 4096)
                status, body = await _control(port, "POST", "/killswitch",
                                              {"mode": "immediate", "reason": "disk full drill", "actor": "op"})
                flat = all(abs(p.qty) < 1e-12 for p in handle.engine.accounts[KEY].positions.values())
                (disk / "filler").unlink()
                events = await wait_for_events(
                    tmp_path / "events.jsonl",
                    lambda ev: any(e["name"] == "bot.alert" and "marker" in e["title"] and "written at last" in
                                   e["title"] for e in ev), proc=bot)
                code, _, err = await bot.terminate()
        assert status == 200 and body["accepted"] is True, body
        assert flat, "flat when the kill switch answered"
        titles = [e["title"] for e in events if e["name"] == "bot.alert" and e["severity"] == "critical"]
        assert any("kill switch immediate: acted; recording failed: " in t and "No space left" in t for t in titles)
        assert json.loads((disk / "EMERGENCY_STOP").read_text())["mode"] == "immediate"
        assert code == 0 and "Traceback" not in err, err
        assert verify(disk / "audit.jsonl").ok
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)  # noqa: S603,S607
