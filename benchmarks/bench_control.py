"""Control API under abuse: the real bot process (`python -m bot run --control-port`) on a local testnet.

    .venv/bin/python benchmarks/bench_control.py [--calls 1000] [--big 30] [--big-bytes 1000000]

- `--calls` wrong-token `POST /killswitch` calls from one client, back to back: wall time, how many
  were answered 429 (rate limited) and how many 401;
- `--big` unauthenticated calls each carrying a `--big-bytes` reason: bytes the audit log grew by;
- the body of one rejected (wrong-token) kill switch, as the caller sees it.
The bot authenticates with one legacy token (GAMEDAY_CONTROL_TOKEN, state/kill_token), so the same
command measures any version of the bot. Exits 1 when the figures measure nothing: a wrong token
admitted, a flood never answered 429, unauthenticated calls not audited, or big reasons kept whole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.io.access import load_access_config  # noqa: E402
from harness.testnet.server import start_testnet  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret-not-real"
TOKEN = "bench-operator-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(calls: int, big: int, big_bytes: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-control-"))
    (work / "state").mkdir()
    token_file = work / "state" / "kill_token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = _free_port()
    handle = await start_testnet(keys=[(KEY, SECRET)], seed=3, tick_ms=100, bar_real_ms=1000, history_bars=50)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
    # PYTHONPATH given to this script stays behind the checkout (a test's sitecustomize patches the bot)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update({"GAMEDAY_API_KEY": KEY, "GAMEDAY_API_SECRET": SECRET, "GAMEDAY_CONTROL_TOKEN": TOKEN,
                "PYTHONPATH": path})
    audit = work / "state" / "audit.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--exchange", "testnet", "--testnet-url", handle.rest_url,
        "--no-entries", "--events", str(work / "events.jsonl"), "--state", str(work / "state" / "bot.db"),
        "--audit", str(audit), "--marker", str(work / "state" / "EMERGENCY_STOP"),
        "--auth-token-file", str(token_file), "--control-port", str(port), cwd=work, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, object] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/health") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise SystemExit("the bot's control API never answered")
            bad = {"Authorization": "Bearer not-the-token"}
            async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "probe"},
                                 headers=bad) as r:
                out["rejected_kill_status"] = r.status
                out["rejected_kill_body"] = await r.text()
            statuses: dict[int, int] = {}
            started = time.perf_counter()
            for _ in range(calls):
                async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "flood"},
                                     headers=bad) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            out["flood_s"] = round(time.perf_counter() - started, 2)
            out["flood_statuses"] = dict(sorted(statuses.items()))
            before = audit.stat().st_size
            reason = "x" * big_bytes
            big_statuses: dict[int, int] = {}
            # from another loopback address: the flood above does not use up its rate-limit bucket
            other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=other) as second:
                for _ in range(big):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with second.post(f"{base}/killswitch",
                                               json={"mode": "immediate", "reason": reason}) as r:
                            await r.read()
                            big_statuses[r.status] = big_statuses.get(r.status, 0) + 1
            out["big_statuses"] = dict(sorted(big_statuses.items()))
            out["big_audit_bytes"] = audit.stat().st_size - before
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await handle.stop()
    return out


def problems(out: dict[str, Any], calls: int, big: int, big_bytes: int, per_minute: int) -> list[str]:
    """What makes the figures measure nothing: a wrong token let through, a flood never rate
    limited, big reasons kept whole, or unauthenticated calls never audited."""
    found = []
    if out["rejected_kill_status"] not in (401, 403):
        found.append(f"a wrong-token kill switch was answered {out['rejected_kill_status']}, not refused")
    flood: dict[int, int] = out["flood_statuses"]
    if any(status < 400 for status in flood):
        found.append(f"wrong-token calls were admitted: {flood}")
    if calls > per_minute and not flood.get(429):
        found.append(f"{calls} calls against a limit of {per_minute} per minute drew no 429: nothing rate limits")
    grown: int = out["big_audit_bytes"]
    if big and grown <= 0:
        found.append(f"{big} unauthenticated calls left no audit record")
    if big and grown >= big * big_bytes // 10:
        found.append(f"the audit log grew {grown} bytes for {big} reasons of {big_bytes}: reasons are not cut")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--big", type=int, default=30)
    parser.add_argument("--big-bytes", type=int, default=1_000_000)
    args = parser.parse_args()
    out = asyncio.run(measure(args.calls, args.big, args.big_bytes))
    print(f"{args.calls} wrong-token POST /killswitch: {out['flood_s']} s, statuses {out['flood_statuses']}")
    print(f"{args.big} unauthenticated calls with a {args.big_bytes}-byte reason: audit log grew "
          f"{out['big_audit_bytes']} bytes (statuses {out['big_statuses']})")
    print(f"rejected kill switch: HTTP {out['rejected_kill_status']} {out['rejected_kill_body']}")
    print(json.dumps(out, sort_keys=True))
    found = problems(out, args.calls, args.big, args.big_bytes,
                     load_access_config().control_api.rate_limit.requests_per_minute)
    for problem in found:
        print(f"FAIL: {problem}: the figures measure nothing")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
