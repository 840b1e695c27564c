"""The bot says what it is doing: banner, bot.started / bot.stopped, a SIGTERM message, the reconcile floor."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rt_support import BotProcess, admin, bot_env, open_testnet, read_events, wait_for_events

from bot.config import RequestBudget
from bot.core.clock import VirtualClock
from bot.core.events import EventBus, event_problems
from bot.lifecycle import Lifecycle, banner_lines
from bot.live import reconcile_floor_problem


def _run_args(handle: Any, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--events", str(tmp / "events.jsonl"),
            "--state", str(tmp / "state" / "bot.db"), "--audit", str(tmp / "state" / "audit.jsonl"),
            "--marker", str(tmp / "state" / "EMERGENCY_STOP"), "--no-entries", *extra]


def test_the_floor_is_computed_from_the_weights_of_one_reconcile() -> None:
    budget = RequestBudget()  # 2400 weight/min, account (5) + positionRisk (5), half the budget for reconciles
    assert budget.reconcile_floor_ms() == 500
    assert RequestBudget(reconcile_share=1.0).reconcile_floor_ms() == 250
    assert RequestBudget(weight_limit_per_minute=1200).reconcile_floor_ms() == 1000
    # the old documented minimum, 100 ms, is 600 reconciles a minute: 6000 weight, 2.5x the whole limit
    assert 600 * budget.reconcile_weight / budget.weight_limit_per_minute == 2.5


def test_the_floor_refuses_one_below_it_and_accepts_it() -> None:
    budget = RequestBudget()
    assert reconcile_floor_problem(500, budget) is None
    problem = reconcile_floor_problem(499, budget)
    assert problem is not None and "floor of 500 ms" in problem and "--reconcile-ms 500 or more" in problem
    assert "GET /fapi/v3/account (5)" in problem


def test_a_budget_that_makes_no_sense_is_refused() -> None:
    with pytest.raises(ValueError, match="reconcile_share"):
        RequestBudget(reconcile_share=0)


def test_the_cli_refuses_a_reconcile_below_the_floor(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bot", "run", "--exchange", "testnet", "--testnet-url",
                           "http://127.0.0.1:9", "--reconcile-ms", "100"], capture_output=True, text=True,
                          cwd=tmp_path, env=bot_env(), timeout=60, check=False)
    assert done.returncode == 2
    assert "--reconcile-ms 100 is below the floor of 500 ms" in done.stderr


def test_the_banner_shows_an_engaged_kill_switch_a_halt_and_the_breakers() -> None:
    status = {"trading": "halted", "killswitch": "engaged", "position": "flat", "equity": 1000.0,
              "kill": {"engaged": True, "mode": "immediate", "actor": "alice", "reason": "drill"},
              "board": {"state": "halted", "size_factor": 0.0, "requires_manual_resume": True,
                        "reasons": ["daily_loss: -3.1% <= -3%"]},
              "bookkeeping": {"audit_problem": None, "state_store_problem": None}}
    text = "\n".join(banner_lines(status))
    assert "KILL SWITCH ENGAGED: mode immediate, by alice: drill" in text
    assert "TRADING HALTED (needs a manual resume): daily_loss: -3.1% <= -3%" in text
    assert "breakers restored: state halted" in text
    calm = banner_lines({**status, "kill": {"engaged": False}, "board": {"state": "active", "size_factor": 1.0}})
    assert calm[0] == "kill switch: clear" and not any("HALTED" in line for line in calm)


def test_bot_stopped_carries_the_signal_and_the_exit_code() -> None:
    bus, out = EventBus(), io.StringIO()
    seen: list[Any] = []
    bus.subscribe(seen.append)
    life = Lifecycle(bus, VirtualClock(0), out)
    life.on_signal(signal.SIGTERM)
    life.on_signal(signal.SIGTERM)  # said once
    life.stopped(0)
    life.stopped(0)
    assert out.getvalue().count("SIGTERM received: stopping cleanly") == 1
    stopped = [e for e in seen if e.name == "bot.stopped"]
    assert len(stopped) == 1 and stopped[0].fields == {"reason": "signal SIGTERM", "exit_code": 0,
                                                        "signal": "SIGTERM"}
    assert event_problems(stopped[0]) == []


async def test_the_real_process_announces_start_and_stop_and_says_so_on_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "state" / "EMERGENCY_STOP"
    marker.parent.mkdir(parents=True)
    marker.write_text("stop\n")  # hand-written: engages immediate at start
    async with open_testnet() as handle, BotProcess(_run_args(handle, tmp_path), tmp_path, bot_env()) as bot:
        events = await wait_for_events(tmp_path / "events.jsonl",
                                       lambda ev: any(e["name"] == "bot.started" for e in ev), proc=bot, timeout=40)
        code, _, err = await bot.terminate()
    started = next(e for e in events if e["name"] == "bot.started")
    assert started["killswitch"] == "engaged" and started["trading"] == "halted"
    assert "bot: KILL SWITCH ENGAGED: mode immediate" in err
    assert "bot: SIGTERM received: stopping cleanly" in err
    assert code == 0, err
    stopped = [e for e in read_events(tmp_path / "events.jsonl") if e["name"] == "bot.stopped"]
    assert len(stopped) == 1
    assert (stopped[0]["reason"], stopped[0]["exit_code"], stopped[0]["signal"]) == ("signal SIGTERM", 0, "SIGTERM")
    assert "bot: stopped (signal SIGTERM), exit code 0" in err


async def test_a_refused_start_is_a_bot_stopped_with_its_exit_code(tmp_path: Path) -> None:
    async with open_testnet() as handle:
        await admin(handle, "POST", "keys", {"api_key": "strong", "secret": "s3cret-value",
                                              "ip_allowlist": ["127.0.0.1"],
                                              "permissions": {"enableWithdrawals": True}})
        async with BotProcess(_run_args(handle, tmp_path), tmp_path, bot_env("strong", "s3cret-value")) as bot:
            code, _, _ = await bot.finish(timeout=30)
    assert code == 3
    stopped = [e for e in read_events(tmp_path / "events.jsonl") if e["name"] == "bot.stopped"]
    assert [(e["reason"], e["exit_code"], e["signal"]) for e in stopped] == [("startup refused", 3, None)]
