"""Crash test: a process appending large audit records is killed with SIGKILL in the middle of an
append (it wrote the first 64 KiB of a 2 MiB record); the kill switch CLI then still flattens the
account: it cuts the torn line, records the repair, and acts. Before the fix it refused ("refusing to
act unaudited"). How often random kills tear the log: benchmarks/bench_bookkeeping.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from rt_support import BTC, KEY, ROOT, TOKEN, BotProcess, bot_env, open_testnet, write_private

from bot.io.audit import verify

WRITER = """
import os, sys, time
from bot.io.audit import AuditLog

real_write, records = os.write, []

def write(fd, data):  # the 4th large record goes out in pieces; the process is killed after the first
    if len(data) >= 1024 * 1024:
        records.append(fd)
        if len(records) >= 4:
            written = real_write(fd, bytes(data[:65536]))
            print("mid-append", flush=True)
            time.sleep(60)
            return written
    return real_write(fd, data)

os.write = write
log = AuditLog(sys.argv[1])
blob = "x" * (2 * 1024 * 1024)
i = 0
while True:
    i += 1
    log.append("bot", "crash.test", {"i": i, "blob": blob}, 1_767_571_200_000 + i)
"""


def kill_mid_append(audit: Path) -> None:
    """SIGKILL a process while it is in the middle of appending a 2 MiB record (its 4th)."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(audit)], cwd=ROOT,  # noqa: S603
                              env=bot_env(), stdout=subprocess.PIPE)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == b"mid-append"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert not audit.read_bytes().endswith(b"\n"), "the kill left a torn last line"


async def test_kill_9_mid_append_then_the_kill_switch_cli_still_flattens(tmp_path: Path) -> None:
    state = tmp_path / "state"
    audit = state / "audit.jsonl"
    state.mkdir()
    kill_mid_append(audit)
    whole = audit.read_bytes()
    torn_bytes = len(whole) - (whole.rfind(b"\n") + 1)
    write_private(state / "kill_token", TOKEN)
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.03)
        args = ["killswitch", "--mode", "immediate", "--reason", "crash drill", "--audit", str(audit),
                "--state", str(state / "bot.db"), "--marker", str(state / "EMERGENCY_STOP"),
                "--auth-token-file", str(state / "kill_token"), "--exchange", "testnet",
                "--testnet-url", handle.rest_url, "--timeout", "15"]
        async with BotProcess(args, tmp_path, bot_env(GAMEDAY_KILL_TOKEN=TOKEN)) as cli:
            code, out, err = await cli.finish(timeout=60)
        assert code == 0, err
        assert "account flat" in out and "torn last line was cut" in err
        assert all(abs(p.qty) < 1e-12 for p in handle.engine.accounts[KEY].positions.values())
    result = verify(audit)
    assert result.ok and len(result.repairs) == 1 and result.repairs[0][1]["cut_bytes"] == torn_bytes
    tail = [json.loads(line)["action"] for line in audit.read_text().splitlines()[-4:]]
    assert tail == ["audit.repaired", "killswitch.engage", "killswitch.flatten", "account.flat"]
