"""The real bot process and the Trader on CcxtExchange, against the testnet over sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from rt_support import (
    BTC,
    KEY,
    SECRET,
    TOKEN,
    BotProcess,
    admin,
    bot_env,
    open_testnet,
    read_events,
    wait_for_events,
    wait_healthy,
    write_private,
)

from bot.config import load_policy
from bot.core.clock import WallClock
from bot.core.events import Event, EventBus
from bot.io.audit_trail import AuditTrail
from bot.io.credentials import make_verifier
from bot.io.exchange_ccxt import CcxtExchange
from bot.io.state import open_store
from bot.runtime import Trader, TraderConfig


def _run_args(handle: Any, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--events", str(tmp / "events.jsonl"),
            "--state", str(tmp / "state" / "bot.db"), "--audit", str(tmp / "state" / "audit.jsonl"), *extra]


def _without_alert_lines(err: str) -> list[str]:
    """stderr less the log channel's alert lines and the note on unconfigured alert channels."""
    return [line for line in err.strip().splitlines() if not line.startswith(("ALERT [", "bot: alerts: "))]


@pytest.mark.parametrize("permissions,ip_allowlist,why", [
    ({"enableWithdrawals": True}, ["127.0.0.1"], "withdrawals are enabled"),
    ({"permitsUniversalTransfer": True}, ["127.0.0.1"], "universal transfer"),
    ({}, [], "no IP restriction"),
])
async def test_bot_refuses_a_too_powerful_key(tmp_path: Path, permissions: dict[str, bool], ip_allowlist: list[str],
                                              why: str) -> None:
    async with open_testnet() as handle:
        await admin(handle, "POST", "keys", {"api_key": "strong", "secret": "s3cret-value",
                                              "permissions": permissions, "ip_allowlist": ip_allowlist})
        async with BotProcess(_run_args(handle, tmp_path), tmp_path, bot_env("strong", "s3cret-value")) as bot:
            code, out, err = await bot.finish(timeout=30)
        assert code == 3
        lines = _without_alert_lines(err)
        assert len(lines) == 1 and lines[0].startswith("startup refused:") and why in lines[0], err
        # no alert channel is configured here, so the refusal alert went to the log channel
        assert [line for line in err.splitlines() if line.startswith("ALERT [critical] bot refused to start")], err
        assert "s3cret-value" not in err + out
        [refused] = [e for e in read_events(tmp_path / "events.jsonl") if e["name"] == "startup.refused"]
        assert why in refused["reason"]
        assert not [r for r in handle.engine.read_order_log() if r.get("api_key") == "strong" and r.get("order_id")]


async def test_bot_refuses_a_revoked_key_and_a_world_readable_key_file(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        await admin(handle, "POST", "keys/revoke", {"api_key": KEY})
        async with BotProcess(_run_args(handle, tmp_path), tmp_path, bot_env()) as bot:
            code, _, err = await bot.finish(timeout=30)
        assert code == 3 and len(_without_alert_lines(err)) == 1 and "AuthError" in err
        key_file = tmp_path / "api.key"
        key_file.write_text(f"GAMEDAY_API_KEY={KEY}\nGAMEDAY_API_SECRET={SECRET}\n")
        key_file.chmod(0o644)
        env = {k: v for k, v in bot_env().items() if k not in ("GAMEDAY_API_KEY", "GAMEDAY_API_SECRET")}
        async with BotProcess(_run_args(handle, tmp_path, "--key-file", str(key_file)), tmp_path, env) as bot:
            code, _, err = await bot.finish(timeout=30)
        assert code == 2 and "chmod 600" in err and SECRET not in err


async def test_bot_adopts_a_position_opened_while_it_was_down(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.02)  # opened while the bot was down
        events_file = tmp_path / "events.jsonl"
        async with BotProcess(_run_args(handle, tmp_path, "--no-entries"), tmp_path, bot_env()) as bot:
            events = await wait_for_events(
                events_file, lambda ev: any(e["name"] == "position.opened" for e in ev), proc=bot)
            code, _, err = await bot.terminate()
        assert code == 0, err
        reconciled = next(e for e in events if e["name"] == "order.reconciled")
        assert reconciled["qty"] == 0.02 and reconciled["status"] == "position_adopted"
        opened = next(e for e in events if e["name"] == "position.opened")
        assert opened["reason"] == "reconciled" and opened["qty"] == 0.02
        assert SECRET not in (tmp_path / "state" / "audit.jsonl").read_text() + events_file.read_text()
        assert open_store(str(tmp_path / "state" / "bot.db")).get("bot") is not None  # state persisted


async def test_running_bot_obeys_a_kill_switch_engaged_by_the_cli(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "SELL", "MARKET", 0.01)
        events_file = tmp_path / "events.jsonl"
        marker = tmp_path / "state" / "EMERGENCY_STOP"
        async with BotProcess(_run_args(handle, tmp_path, "--no-entries", "--marker", str(marker)),
                              tmp_path, bot_env()) as bot:
            await wait_for_events(events_file, lambda ev: any(e["name"] == "position.opened" for e in ev), proc=bot)
            marker.write_text(json.dumps({"version": 1, "engaged": True, "mode": "immediate", "reason": "drill",
                                          "actor": "operator:test", "engaged_at_ms": 1, "deadline_ms": None,
                                          "flatten_requested": True}))
            events = await wait_for_events(events_file, lambda ev: any(e["name"] == "account.flat" for e in ev),
                                           proc=bot)
            code, _, err = await bot.terminate()
        assert code == 0, err
        engaged = next(e for e in events if e["name"] == "killswitch.engaged")
        assert engaged["actor"] == "operator:test" and engaged["mode"] == "immediate"
        assert all(abs(p.qty) < 1e-12 for p in handle.engine.accounts[KEY].positions.values())


async def test_running_bot_serves_the_control_api(tmp_path: Path) -> None:
    import socket

    import aiohttp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with open_testnet() as handle:
        events_file = tmp_path / "events.jsonl"
        env = bot_env(GAMEDAY_CONTROL_TOKEN=TOKEN)
        write_private(tmp_path / "state" / "kill_token", TOKEN)  # the configured kill-switch token
        args = _run_args(handle, tmp_path, "--no-entries", "--control-port", str(port), "--store-check-ms", "250")
        async with BotProcess(args, tmp_path, env) as bot, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(http, base)
            async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "x"},
                                 headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
            async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "drill", "actor": "op"},
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200 and (await r.json())["accepted"] is True
            events = await wait_for_events(events_file, lambda ev: any(e["name"] == "killswitch.engaged" for e in ev),
                                           proc=bot)
            code, _, err = await bot.terminate()
        assert code == 0, err
        assert any(e["name"] == "killswitch.rejected" for e in events)
        assert json.loads((tmp_path / "state" / "EMERGENCY_STOP").read_text())["mode"] == "pause"


@pytest.mark.parametrize("mode", ["503", "drop"])
async def test_unknown_outcome_never_produces_a_duplicate(tmp_path: Path, mode: str) -> None:
    policy = load_policy("futures").policy
    async with open_testnet() as handle:
        exchange = CcxtExchange(KEY, SECRET, rest_url=handle.rest_url, ws_url=handle.ws_url)
        bus = EventBus()
        seen: list[Event] = []
        bus.subscribe(seen.append)
        store = open_store(str(tmp_path / "bot.db"))
        clock = WallClock()
        audit = AuditTrail(tmp_path / "audit.jsonl", now_ms=clock.now_ms)
        trader = Trader(policy, exchange, store, audit, clock, bus, make_verifier(TOKEN),
                        config=TraderConfig(symbol=BTC, trade_entries=False), marker_path=tmp_path / "STOP")
        try:
            handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.02)
            await trader.start()
            assert any(e.name == "position.opened" for e in seen)
            await admin(handle, "POST", "unknown_outcome", {"count": 1, "mode": mode})
            assert await trader.engage_killswitch("immediate", "drill", "operator:test", TOKEN)
            names = [e.name for e in seen]
            assert "order.unknown" in names and "order.reconciled" in names and "account.flat" in names
            unknown = next(e for e in seen if e.name == "order.unknown")
            client_id = unknown.fields["client_id"]
            booked = {r["order_id"] for r in handle.engine.read_order_log()
                      if r.get("client_id") == client_id and r.get("order_id")}
            assert len(booked) == 1  # queried by client id, never sent again
            posts = [r for r in handle.engine.read_request_log()
                     if r["method"] == "POST" and r["path"] == "/fapi/v1/order"]
            assert len(posts) == 1
            assert all(abs(p.qty) < 1e-12 for p in handle.engine.accounts[KEY].positions.values())
        finally:
            await trader.close()
            await exchange.close()
            store.close()
            audit.close()


async def test_killswitch_cli_goes_through_the_running_bot_and_acts_alone_when_it_is_dead(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_private(tmp_path / "state" / "kill_token", TOKEN)
    write_private(tmp_path / "operator_token", TOKEN)
    cli = [sys.executable, "-m", "bot", "killswitch", "--mode", "immediate", "--reason", "drill", "--actor",
           "risk-officer", "--token-file", str(tmp_path / "operator_token"), "--control-url",
           f"http://127.0.0.1:{port}", "--state", str(tmp_path / "state" / "bot.db"), "--audit",
           str(tmp_path / "state" / "audit.jsonl"), "--marker", str(tmp_path / "state" / "EMERGENCY_STOP"),
           "--auth-token-file", str(tmp_path / "state" / "kill_token")]
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.01)
        events_file = tmp_path / "events.jsonl"
        args = _run_args(handle, tmp_path, "--no-entries", "--control-port", str(port))
        async with BotProcess(args, tmp_path, bot_env(GAMEDAY_CONTROL_TOKEN=TOKEN)) as bot:
            await wait_for_events(events_file, lambda ev: any(e["name"] == "position.opened" for e in ev), proc=bot)
            done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=60,
                                           cwd=tmp_path, env=bot_env())
            assert done.returncode == 0, done.stderr
            assert "through the running bot" in done.stdout
            events = await wait_for_events(events_file, lambda ev: any(e["name"] == "account.flat" for e in ev),
                                           proc=bot)
            await bot.terminate()
        engaged = [e for e in events if e["name"] == "killswitch.engaged"]
        # the actor is the principal of the token (the legacy kill token), never the claimed --actor
        assert engaged and engaged[0]["actor"] == "legacy-kill-token"
        # the bot is dead now: the same command acts on the exchange itself
        handle.engine.place_order(KEY, BTC, "SELL", "MARKET", 0.02)
        (tmp_path / "state" / "EMERGENCY_STOP").unlink()
        alone = [*cli, "--exchange", "testnet", "--testnet-url", handle.rest_url]
        done = await asyncio.to_thread(subprocess.run, alone, capture_output=True, text=True, timeout=60,
                                       cwd=tmp_path, env=bot_env())
        assert "acting directly" in done.stderr, done.stderr
        assert all(abs(p.qty) < 1e-12 for p in handle.engine.accounts[KEY].positions.values())


async def test_sigterm_while_the_bot_is_still_starting_stops_it_cleanly(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        handle.engine.fail_next("*", 10_000, 503, None)  # every startup attempt fails: it keeps retrying
        args = _run_args(handle, tmp_path, "--startup-attempts", "10")
        async with BotProcess(args, tmp_path, bot_env()) as bot:
            for _ in range(200):
                if any(r["status"] == 503 for r in handle.engine.read_request_log()):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the bot never reached the exchange")
            code, _, err = await bot.terminate(timeout=5)
        assert code == 0, err
        assert "stopped before trading started" in err


async def test_the_control_api_of_the_real_process_limits_floods_and_restarts_for_trading_ops(tmp_path: Path) -> None:
    import socket

    import aiohttp

    from bot.io.access import add_principal, load_access_config

    config = load_access_config()
    principals = tmp_path / "state" / "principals.yaml"
    ops = add_principal(principals, config, "ops", "trading_ops")
    quant = add_principal(principals, config, "quant", "quant_analyst")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with open_testnet() as handle:
        events_file = tmp_path / "events.jsonl"
        args = _run_args(handle, tmp_path, "--no-entries", "--control-port", str(port), "--principals",
                         str(principals), "--auth-token-file", str(tmp_path / "no-legacy-token"))
        async with BotProcess(args, tmp_path, bot_env()) as bot, aiohttp.ClientSession() as http:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/health") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.05)
            assert not any(e["name"] == "state.restored" for e in read_events(events_file)), "a first start"
            statuses = []
            started = asyncio.get_running_loop().time()
            for _ in range(150):  # config/access.yaml: 100 requests/minute per address and principal
                async with http.get(f"{base}/status", headers={"Authorization": "Bearer wrong"}) as r:
                    statuses.append(r.status)
            refilled = int((asyncio.get_running_loop().time() - started) * 100 / 60) + 1  # the bucket refills
            async with http.get(f"{base}/status", headers={"Authorization": f"Bearer {quant}"}) as r:
                assert r.status == 200, "an authenticated principal is not blocked by someone else's flood"
            async with http.post(f"{base}/restart", headers={"Authorization": f"Bearer {quant}"}) as r:
                assert r.status == 403
            pid = bot.proc.pid if bot.proc else None
            async with http.post(f"{base}/restart", headers={"Authorization": f"Bearer {ops}"}) as r:
                assert r.status == 202 and (await r.json())["actor"] == "ops"
            events = await wait_for_events(
                events_file, lambda ev: sum(e["name"] == "state.restored" for e in ev) >= 1, proc=bot, timeout=30)
            for _ in range(400):  # the same process (re-executed) serves again
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/status", headers={"Authorization": f"Bearer {quant}"}) as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the bot did not come back after the restart")
            assert bot.proc is not None and bot.proc.pid == pid and bot.proc.returncode is None
            code, _, err = await bot.terminate()
        assert code == 0, err
    assert statuses[:100] == [401] * 100 and 100 <= statuses.count(401) <= 100 + refilled
    assert statuses.count(429) == 150 - statuses.count(401) >= 50 - refilled
    assert "restart requested by ops" in err
    records = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    [restart] = [r for r in records if r["action"] == "bot.restart"]
    assert restart["actor"] == "ops"
    assert any(e["name"] == "state.restored" for e in events)
