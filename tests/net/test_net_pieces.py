"""Net-mode runner pieces: the events follower, process cleanup, the proxies the bot is pointed at."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness.net.bot_process import BotProcess, EventFollower, process_group_alive
from harness.net.runner import SCALE_ENV, end_offset_for, tick_ms_for, time_scale_for
from harness.net.stack import NetStack, StackError
from harness.scenario import load_scenario
from harness.services import make_redis_client

NET_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "net"


def _line(name: str, ts: int, **fields: object) -> bytes:
    return (json.dumps({"name": name, "ts_ms": ts, **fields}) + "\n").encode()


def test_follower_reads_complete_lines_in_order_and_waits_for_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path, poll_s=0.002).start()
    try:
        with open(path, "ab") as fh:
            fh.write(_line("trading.paused", 1, reason="x"))
            whole = _line("alert.sent", 2, severity="critical", title="t")
            fh.write(whole[:10])
            fh.flush()
            first = follower.wait_for(lambda e: e.name == "trading.paused", timeout=2)
            assert first is not None and first.fields == {"reason": "x"}
            assert follower.count() == 1  # the half line is not an event yet
            fh.write(whole[10:])
            fh.write(b"not json\n")
        alert = follower.wait_for(lambda e: e.name == "alert.sent", timeout=2)
        assert alert is not None and alert.ts_ms == 2 and alert.fields["severity"] == "critical"
    finally:
        follower.stop()
    assert [e.name for e in follower.events] == ["trading.paused", "alert.sent"]
    assert follower.garbage == ["not json"]
    assert follower.wait_for(lambda e: e.name == "feed.stale", timeout=0.05) is None


def test_stop_leaves_no_process_of_the_group_behind(tmp_path: Path) -> None:
    """A bot that ignores SIGTERM and has a child: stop() still leaves nothing running."""
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, subprocess, sys, time\n"
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                      "print('up', flush=True)\n"
                      "time.sleep(60)\n")
    proc = BotProcess([], dict(os.environ), tmp_path, tmp_path / "bot.log")
    # start the stub the way BotProcess starts the bot: its own session / process group
    proc.proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.proc.stdout is not None and proc.proc.stdout.readline() == b"up\n"
    pgid = proc.proc.pid
    assert process_group_alive(pgid)
    started = time.monotonic()
    proc.stop(timeout=0.5)
    deadline = time.monotonic() + 5
    while process_group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_group_alive(pgid)
    assert time.monotonic() - started < 5


def test_crashing_a_bot_that_is_not_running_is_an_error(tmp_path: Path) -> None:
    from harness.net.bot_process import BotProcessError

    proc = BotProcess([], dict(os.environ), tmp_path, tmp_path / "bot.log")
    with pytest.raises(BotProcessError):
        proc.kill(signal.SIGKILL)


def test_the_control_url_is_the_one_the_current_process_announced(tmp_path: Path) -> None:
    """The bot binds its control port itself; the harness follows what the running process printed,
    not an older process's line in the same appended log, nor a port it guessed."""
    log = tmp_path / "bot.log"
    log.write_bytes(b"bot: control API on http://127.0.0.1:41001\nbot: stopped\n")
    proc = BotProcess(["--version"], dict(os.environ), tmp_path, log)
    proc.start()
    proc.wait_exit(10)
    assert proc.announced_control_url() is None  # this process announced nothing yet
    with open(log, "ab") as fh:
        fh.write(b"bot: control API on http://127.0.0.1:41002\n")
    assert proc.announced_control_url() == "http://127.0.0.1:41002"
    with open(log, "ab") as fh:  # an exec restart (same process) binds again and says so
        fh.write(b"bot: control API on http://127.0.0.1:41003\n")
    assert proc.announced_control_url() == "http://127.0.0.1:41003"


def test_time_scale_override_and_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(NET_DIR / "ws-lag-pauses.yaml")
    assert time_scale_for(scenario, {}) == scenario.time_scale
    assert time_scale_for(scenario, {SCALE_ENV: "1"}) == 1.0
    with pytest.raises(StackError):
        time_scale_for(scenario, {SCALE_ENV: "fast"})
    assert tick_ms_for(100) == 20 and tick_ms_for(5000) == 250


@pytest.mark.parametrize("path", sorted(NET_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_gate_net_scenarios_fit_in_ten_seconds(path: Path) -> None:
    """The merge gate stays fast; a longer net scenario is marked slow and runs with the full suite."""
    scenario = load_scenario(path)
    assert scenario.mode == "net" and "net" in scenario.tags
    if "gate" in scenario.tags:
        assert end_offset_for(scenario, scenario.time_scale) <= 10_000
    else:
        assert "slow" in scenario.tags


def test_a_restart_with_down_for_ends_the_run_that_much_later_and_is_established_when_it_finishes() -> None:
    """restart down_for: `within` counts from the new start, so the run's end moves by the downtime;
    the runner completes the fault (Injected.finish) and takes its time as the establishment."""
    import dataclasses

    from harness.expect import StepTiming
    from harness.faults.contract import FaultError
    from harness.net.runner import NetRun

    scenario = load_scenario(NET_DIR / "restart-down-stop-crossed.yaml")
    crash = scenario.step("crash")
    instant = dataclasses.replace(scenario, steps=tuple(
        dataclasses.replace(s, params={}) if s.id == "crash" else s for s in scenario.steps))
    assert end_offset_for(scenario, 1.0) - end_offset_for(instant, 1.0) == crash.params["down_for"].to_ms(300_000)
    assert end_offset_for(scenario, 0.5, {"crash": {"down_for": 250}}) - \
        end_offset_for(instant, 0.5, {"crash": {"down_for": 0}}) == 250

    timing = StepTiming("crash", "restart", {"down_for": 1000}, 5_000)
    assert NetRun._finish(None, timing, lambda: 6_020).established_ms == 6_020  # type: ignore[arg-type]

    def refused() -> int:
        raise FaultError("the bot would not start")

    failed = NetRun._finish(None, timing, refused)  # type: ignore[arg-type]
    assert failed.established_ms is None and failed.error == "FaultError: the bot would not start"


def test_stack_wires_the_bot_through_proxies_on_loopback(gameday_redis: object, gameday_toxiproxy: object) -> None:
    with NetStack(keys=(("K", "S"),)) as stack:
        for address in stack.listen.values():
            assert address.startswith("127.0.0.1:")
        ping = requests.get(f"{stack.bot_rest_url}/fapi/v1/ping", timeout=3)
        assert ping.status_code == 200
        client = make_redis_client(stack.bot_redis_url)
        assert client.ping()
        assert stack.toxi is not None
        stack.toxi.disable(stack.proxy_name("rest"))
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{stack.bot_rest_url}/fapi/v1/ping", timeout=3)
        stack.toxi.disable(stack.proxy_name("redis"))
        with pytest.raises(Exception):  # noqa: B017 - any redis connection error
            make_redis_client(stack.bot_redis_url).ping()
        listen = dict(stack.listen)
    for address in listen.values():  # proxies deleted: nothing listens any more
        host, port = address.split(":")
        with socket.socket() as sock:
            assert sock.connect_ex((host, int(port))) != 0


def test_disk_full_without_root_is_an_error_naming_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from harness.faults.contract import FaultError
    from harness.faults.process import disk_full_net
    from harness.net.runner import NetRun

    scenario = load_scenario(NET_DIR / "disk-full-kill-switch.yaml")
    context = SimpleNamespace(policy=SimpleNamespace(policy=None), params={}, evidence_dir=tmp_path)
    run = NetRun(scenario, context, scenario.time_scale, tmp_path)  # type: ignore[arg-type]
    assert run.audit_path.parent == tmp_path / "disk" and run.marker_path.parent == tmp_path / "disk"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    run._mount_disk()
    assert not run.disk_mounted and run.disk_problem is not None and "needs root" in run.disk_problem
    with pytest.raises(FaultError, match="needs root to mount a tmpfs"):
        disk_full_net(run, {"target": "all", "duration": 1000})
