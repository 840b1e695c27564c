"""The standalone kill switch: sync error handling (responses), authentication, and a real flatten."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from rt_support import BTC, KEY, ROOT, SECRET, TOKEN, BotProcess, bot_env, open_testnet, wait_for_events, write_private

from bot.__main__ import main as bot_main
from bot.config import load_policy
from bot.core.clock import WallClock
from bot.core.engine import Engine
from bot.core.events import EventBus
from bot.io.audit import verify as verify_audit
from bot.io.exchange import AuthError, OrderRequest, UnknownOutcomeError
from bot.io.exchange_ccxt import SyncCcxtExchange
from bot.io.state import open_store
from bot.killswitch_cli import Flattener
from harness.testnet.errors import BinanceError
from harness.testnet.server import build_engine

VENUE = "http://venue.test"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


class Venue:
    """A `responses` callback that serves sync ccxt from an in-process testnet engine, plus raw faults."""

    def __init__(self) -> None:
        self.engine = build_engine(seed=5, keys=[(KEY, SECRET)], history_bars=20)
        self.raw_faults: list[tuple[str, str, Any]] = []  # (method, path, exception or (status, body))
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(str(request.url))
        method = str(request.method)
        self.calls.append((method, url.path))
        for fault in self.raw_faults:
            if fault[0] == method and fault[1] == url.path:
                self.raw_faults.remove(fault)
                if isinstance(fault[2], Exception):
                    return 0, {}, fault[2]
                status, body = fault[2]
                return status, {"Content-Type": "text/plain"}, body
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        parts = [p for p in (url.query, body) if p]
        raw = "&".join(parts)
        payload = "&".join(p for p in raw.split("&") if not p.startswith("signature="))
        signature = next((p[len("signature="):] for p in raw.split("&") if p.startswith("signature=")), None)
        params = dict(parse_qsl(payload, keep_blank_values=True))
        try:
            reply = self.engine.handle(method, url.path, params, api_key=request.headers.get("X-MBX-APIKEY"),
                                       payload=payload, signature=signature)
        except BinanceError as err:
            if err.html:
                return err.status, {**err.headers, "Content-Type": "text/html"}, "<html>error</html>"
            return err.status, {**err.headers, "Content-Type": "application/json"}, json.dumps(err.body())
        return 200, {**reply.headers, "Content-Type": "application/json"}, json.dumps(reply.body)


@pytest.fixture
def venue() -> Any:
    v = Venue()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST", "DELETE", "PUT"):
            mock.add_callback(method, re.compile(re.escape(VENUE) + r"/.*"), callback=v)
        yield v


def _position_and_order(v: Venue, qty: float = 0.02) -> None:
    v.engine.place_order(KEY, BTC, "BUY", "MARKET", qty)
    bid, _ = v.engine.book(BTC)
    v.engine.place_order(KEY, BTC, "BUY", "LIMIT", 0.01, price=round(bid * 0.9, 1))


def _flatten(v: Venue, fake: FakeTime, **kw: Any) -> Any:
    ex = SyncCcxtExchange(KEY, SECRET, rest_url=VENUE)
    return Flattener(ex, [BTC], sleep=fake.sleep, monotonic=fake.monotonic, **kw).run()


def _is_flat(v: Venue) -> bool:
    acct = v.engine.accounts[KEY]
    return not v.engine.open_orders(KEY) and all(abs(p.qty) < 1e-12 for p in acct.positions.values())


def test_flatten_retries_a_connection_error(venue: Venue) -> None:
    _position_and_order(venue)
    fake = FakeTime()
    venue.raw_faults.append(("DELETE", "/fapi/v1/allOpenOrders", requests.ConnectionError("connection reset")))
    result = _flatten(venue, fake)
    assert result.flat and _is_flat(venue)
    assert fake.waits[0] == 0.25  # backoff_initial_s, then the cancel went through
    assert any("ExchangeUnavailableError" in e for e in result.errors)


def test_flatten_503_on_the_close_queries_and_never_resends_blindly(venue: Venue) -> None:
    _position_and_order(venue)
    fake = FakeTime()
    venue.engine.fail_next("/fapi/v1/order", 1, 503, -1001, method="POST")
    venue.engine.fail_next("/fapi/v3/positionRisk", 1, 503, -1001)
    result = _flatten(venue, fake)
    assert result.flat and _is_flat(venue)
    assert any("UnknownOutcomeError" in e for e in result.errors)
    closes = [r for r in venue.engine.read_order_log() if r.get("reduce_only") and r["event"] == "filled"]
    assert len(closes) == 1  # the 503 booked nothing; the next round closed exactly once
    # the close was queried by its client id before anything was sent again
    posts = [i for i, c in enumerate(venue.calls) if c == ("POST", "/fapi/v1/order")]
    queries = [i for i, c in enumerate(venue.calls) if c == ("GET", "/fapi/v1/order")]
    assert queries and posts[0] < queries[0] < posts[1]


def test_flatten_honours_retry_after_of_a_418_ban_and_cancels_first(venue: Venue) -> None:
    _position_and_order(venue)
    fake = FakeTime()
    venue.engine.fail_next("/fapi/v1/allOpenOrders", 1, 418, -1003, retry_after_s=7, method="DELETE")
    result = _flatten(venue, fake)
    assert result.flat and _is_flat(venue)
    assert fake.waits[0] == 7.0  # exactly the Retry-After, no earlier retry
    order = [c for c in venue.calls if c in (("DELETE", "/fapi/v1/allOpenOrders"), ("POST", "/fapi/v1/order"))]
    assert order[:3] == [("DELETE", "/fapi/v1/allOpenOrders")] * 2 + [("POST", "/fapi/v1/order")]


def test_flatten_gives_up_at_the_deadline_when_the_ban_outlasts_it(venue: Venue) -> None:
    _position_and_order(venue)
    fake = FakeTime()
    venue.engine.fail_next("/fapi/v1/allOpenOrders", 1, 418, -1003, retry_after_s=120, method="DELETE")
    result = _flatten(venue, fake, timeout_s=30)
    assert not result.flat and fake.waits == []
    assert "deadline" in result.errors[-1]


def test_flatten_stops_on_a_refused_key(venue: Venue) -> None:
    venue.engine.revoke_key(KEY)
    with pytest.raises(AuthError):
        _flatten(venue, FakeTime())


def test_a_200_reply_without_an_order_is_an_unknown_outcome(venue: Venue) -> None:
    venue.raw_faults.append(("POST", "/fapi/v1/order", (200, "OK")))
    ex = SyncCcxtExchange(KEY, SECRET, rest_url=VENUE)
    with pytest.raises(UnknownOutcomeError):
        ex.create_order(OrderRequest(BTC, "buy", 0.01, "market", "z-1"))


# --- the CLI ---------------------------------------------------------------------------------


def _cli_paths(tmp: Path) -> dict[str, Path]:
    return {"state": tmp / "state" / "bot.db", "audit": tmp / "state" / "audit.jsonl",
            "marker": tmp / "state" / "EMERGENCY_STOP", "auth": tmp / "state" / "kill_token"}


def _cli(tmp: Path, *extra: str) -> list[str]:
    p = _cli_paths(tmp)
    return ["killswitch", *extra, "--state", str(p["state"]), "--audit", str(p["audit"]),
            "--marker", str(p["marker"]), "--auth-token-file", str(p["auth"])]


def _audit_actions(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(r["action"], r["details"]) for r in map(json.loads, path.read_text().splitlines())]


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_bad_or_missing_token_is_rejected_audited_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str | None) -> None:
    p = _cli_paths(tmp_path)
    write_private(p["auth"], TOKEN + "\n")
    monkeypatch.delenv("GAMEDAY_KILL_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("GAMEDAY_KILL_TOKEN", token)
    assert bot_main(_cli(tmp_path, "--mode", "immediate", "--reason", "Security breach")) == 2
    assert "rejected" in capsys.readouterr().err
    assert not p["marker"].exists()
    [(action, details)] = _audit_actions(p["audit"])
    assert action == "killswitch.rejected" and details["accepted"] is False
    assert ("missing" if token is None else "bad credentials") in details["why"]
    assert open_store(str(p["state"])).get("bot") is None


def test_token_file_must_be_private_and_sha256_config_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    p = _cli_paths(tmp_path)
    write_private(p["auth"], "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest())
    loose = write_private(tmp_path / "op_token", TOKEN, mode=0o644)
    monkeypatch.delenv("GAMEDAY_KILL_TOKEN", raising=False)
    assert bot_main(_cli(tmp_path, "--mode", "pause", "--reason", "x", "--token-file", str(loose))) == 2
    assert "chmod 600" in capsys.readouterr().err
    loose.chmod(0o600)
    assert bot_main(_cli(tmp_path, "--mode", "pause", "--reason", "Investigating anomaly",
                         "--token-file", str(loose))) == 0
    marker = json.loads(p["marker"].read_text())
    assert marker["engaged"] and marker["mode"] == "pause" and marker["version"] == 1
    # a weaker mode never silently replaces a stricter one; clear works; status reports
    assert bot_main(_cli(tmp_path, "--clear", "--token-file", str(loose))) == 0
    assert not p["marker"].exists()
    capsys.readouterr()
    assert bot_main(_cli(tmp_path, "--status")) == 0
    assert json.loads(capsys.readouterr().out)["engaged"] is False
    actions = [a for a, _ in _audit_actions(p["audit"])]
    assert actions == ["killswitch.rejected", "killswitch.engage", "killswitch.clear", "killswitch.status"]
    assert verify_audit(p["audit"]).ok


async def test_immediate_flattens_the_account_with_the_bot_dead(tmp_path: Path) -> None:
    p = _cli_paths(tmp_path)
    write_private(p["auth"], TOKEN)
    policy = load_policy("futures").policy
    snapshot = Engine(policy, WallClock(), EventBus(), symbol=BTC, equity=10_000, verify=lambda c: False).snapshot()
    store = open_store(str(p["state"]))
    store.put("bot", snapshot)  # what a bot that ran before left behind
    store.close()
    async with open_testnet() as handle:
        engine = handle.engine
        engine.place_order(KEY, BTC, "BUY", "MARKET", 0.03)
        bid, _ = engine.book(BTC)
        engine.place_order(KEY, BTC, "BUY", "LIMIT", 0.01, price=round(bid * 0.9, 1))
        env = bot_env(GAMEDAY_KILL_TOKEN=TOKEN)
        args = _cli(tmp_path, "--mode", "immediate", "--reason", "Security breach", "--exchange", "testnet",
                    "--testnet-url", handle.rest_url, "--timeout", "15")
        async with BotProcess(args, tmp_path, env) as cli:
            code, out, err = await cli.finish(timeout=30)
        assert code == 0, err
        assert "account flat" in out
        assert engine.open_orders(KEY) == []
        assert all(abs(pos.qty) < 1e-12 for pos in engine.accounts[KEY].positions.values())
        closes = [r for r in engine.read_order_log() if r.get("reduce_only") and r["event"] == "filled"]
        assert len(closes) == 1

        marker = json.loads(p["marker"].read_text())
        assert (marker["version"], marker["engaged"], marker["mode"]) == (1, True, "immediate")
        assert marker["flatten_requested"] is True and marker["actor"] == "legacy-kill-token"
        saved = open_store(str(p["state"])).get("bot")
        assert saved is not None and saved["killswitch"]["engaged"] and saved["board"] == snapshot["board"]
        actions = _audit_actions(p["audit"])
        assert [a for a, _ in actions] == ["killswitch.engage", "killswitch.flatten", "account.flat"]
        assert actions[1][1]["flat"] is True
        assert actions[0][1]["claimed_actor"].startswith("operator:") and actions[0][1]["role"] == "system_admin"
        assert TOKEN not in p["audit"].read_text()
        verified = subprocess.run([sys.executable, "-m", "bot", "audit", "verify", str(p["audit"])],
                                  cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert verified.returncode == 0, verified.stderr

        # the bot, started next, comes up with the kill switch engaged
        events_file = tmp_path / "events.jsonl"
        run = ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--events", str(events_file),
               "--state", str(p["state"]), "--audit", str(p["audit"]), "--marker", str(p["marker"])]
        async with BotProcess(run, tmp_path, bot_env()) as bot:
            events = await wait_for_events(events_file, lambda ev: any(e["name"] == "state.restored" for e in ev),
                                           proc=bot)
            code, _, err = await bot.terminate()
        restored = next(e for e in events if e["name"] == "state.restored")
        assert restored["killswitch"]["engaged"] and restored["killswitch"]["mode"] == "immediate"
        assert code == 0, err
        assert not any(e["name"] == "order.placed" for e in events)


# --- the kill switch is never blocked by its own bookkeeping --------------------------------------


def _audit_log(tmp: Path, records: int = 4) -> Path:
    from bot.io.audit import AuditLog

    path = _cli_paths(tmp)["audit"]
    path.parent.mkdir(parents=True, exist_ok=True)
    log = AuditLog(path)
    for i in range(records):
        log.append("bot", "order.place", {"i": i}, 1_767_571_200_000 + i)
    log.close()
    return path


def test_a_chain_broken_inside_does_not_stop_the_cli_it_acts_and_says_it_could_not_audit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = _cli_paths(tmp_path)
    audit = _audit_log(tmp_path, 6)
    write_private(p["auth"], TOKEN)
    monkeypatch.setenv("GAMEDAY_KILL_TOKEN", TOKEN)
    audit.write_bytes(audit.read_bytes().replace(b'"i":4', b'"i":9'))  # the last-but-one record edited
    broken = audit.read_bytes()
    assert bot_main(_cli(tmp_path, "--mode", "pause", "--reason", "Investigating anomaly")) == 3
    err = capsys.readouterr().err
    assert "audit.jsonl:5: hash does not match" in err and "acting anyway" in err
    assert "acted; audit write failed: " in err and "kept in a spill file" in err
    assert json.loads(p["marker"].read_text())["mode"] == "pause"  # it acted
    assert audit.read_bytes() == broken  # and never extended a broken chain
    [spill] = list(audit.parent.glob("audit.jsonl.pending-*"))
    assert b'"action":"killswitch.engage"' in spill.read_bytes()


def test_with_the_audit_disk_full_the_cli_acts_exits_3_and_prints_what_it_could_not_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import os

    p = _cli_paths(tmp_path)
    audit = _audit_log(tmp_path)
    write_private(p["auth"], TOKEN)
    monkeypatch.setenv("GAMEDAY_KILL_TOKEN", TOKEN)
    marker = tmp_path / "elsewhere" / "EMERGENCY_STOP"
    real_write = os.write

    def audit_dir_full(fd: int, data: Any) -> int:  # the audit log's filesystem is full, the marker's is not
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(audit.parent)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", audit_dir_full)
    code = bot_main([*_cli(tmp_path, "--mode", "graceful", "--reason", "Model deployment"), "--marker", str(marker)])
    monkeypatch.setattr(os, "write", real_write)
    assert code == 3
    err = capsys.readouterr().err
    assert "acted; audit write failed: " in err and "No space left on device" in err
    unwritten = [json.loads(line.split("audit record not written: ", 1)[1]) for line in err.splitlines()
                 if "audit record not written: " in line]
    assert [r["action"] for r in unwritten] == ["killswitch.engage"] and TOKEN not in err
    assert json.loads(marker.read_text())["mode"] == "graceful"
    assert verify_audit(audit).ok


def test_a_hand_written_marker_counts_as_immediate_for_status_and_requests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    p = _cli_paths(tmp_path)
    write_private(p["auth"], TOKEN)
    monkeypatch.setenv("GAMEDAY_KILL_TOKEN", TOKEN)
    p["marker"].parent.mkdir(parents=True, exist_ok=True)
    p["marker"].write_text('{"engaged": true}')
    assert bot_main(_cli(tmp_path, "--status")) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["engaged"] is True and status["marker"]["mode"] == "immediate"
    assert "not a complete kill-switch snapshot" in status["marker"]["reason"]
    assert bot_main(_cli(tmp_path, "--mode", "pause", "--reason", "x")) == 1  # weaker than what the marker means
    assert "already engaged in immediate" in capsys.readouterr().err
# --- roles, and refusals explained through the running bot ----------------------------------------


def _principal_tokens(tmp: Path) -> tuple[Path, dict[str, Path]]:
    from bot.io.access import add_principal, load_access_config

    config = load_access_config()
    principals = tmp / "state" / "principals.yaml"
    files = {}
    for name, role in (("risk-officer", "risk_manager"), ("ops", "trading_ops")):
        files[name] = write_private(tmp / f"{name}.token", add_principal(principals, config, name, role))
    files["wrong"] = write_private(tmp / "wrong.token", "gd_not-a-token-of-anyone")
    files["loose"] = write_private(tmp / "loose.token", files["risk-officer"].read_text(), mode=0o644)
    return principals, files


def test_the_cli_applies_the_same_roles_with_the_bot_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    principals, tokens = _principal_tokens(tmp_path)
    monkeypatch.delenv("GAMEDAY_KILL_TOKEN", raising=False)
    p = _cli_paths(tmp_path)
    base = [*_cli(tmp_path, "--mode", "pause", "--reason", "Investigating anomaly"), "--principals", str(principals)]
    assert bot_main([*base, "--token-file", str(tokens["ops"])]) == 2
    assert "kill switch rejected: principal ops (role trading_ops) lacks permission 'killswitch'" in \
        capsys.readouterr().err
    assert not p["marker"].exists()
    assert bot_main([*base, "--token-file", str(tokens["risk-officer"]), "--actor", "alice"]) == 0
    marker = json.loads(p["marker"].read_text())
    assert marker["actor"] == "risk-officer"
    [rejected, engaged] = _audit_actions(p["audit"])
    assert rejected[0] == "killswitch.rejected" and rejected[1]["role"] == "trading_ops"
    assert engaged[0] == "killswitch.engage" and engaged[1]["claimed_actor"] == "operator:alice"


async def test_the_cli_explains_a_refusal_through_the_running_bot_as_precisely_as_alone(tmp_path: Path) -> None:
    import asyncio
    import socket

    principals, tokens = _principal_tokens(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = _cli_paths(tmp_path)
    async with open_testnet() as handle:
        handle.engine.place_order(KEY, BTC, "BUY", "MARKET", 0.01)
        events_file = tmp_path / "events.jsonl"
        run = ["run", "--exchange", "testnet", "--testnet-url", handle.rest_url, "--events", str(events_file),
               "--state", str(paths["state"]), "--audit", str(paths["audit"]), "--marker", str(paths["marker"]),
               "--no-entries", "--control-port", str(port), "--principals", str(principals),
               "--auth-token-file", str(paths["auth"])]

        def cli(token: str | None, mode: str) -> subprocess.CompletedProcess[str]:
            argv = [sys.executable, "-m", "bot", *_cli(tmp_path, "--mode", mode, "--reason", "drill"),
                    "--principals", str(principals), "--control-url", f"http://127.0.0.1:{port}",
                    *(["--token-file", str(tokens[token])] if token else [])]
            return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=bot_env())

        async with BotProcess(run, tmp_path, bot_env()) as bot:
            await wait_for_events(events_file, lambda ev: any(e["name"] == "position.opened" for e in ev), proc=bot)
            wrong = await asyncio.to_thread(cli, "wrong", "immediate")
            ops = await asyncio.to_thread(cli, "ops", "immediate")
            calls_before = paths["audit"].read_text().count('"source":"127.0.0.1"')
            loose = await asyncio.to_thread(cli, "loose", "immediate")
            missing = await asyncio.to_thread(cli, None, "immediate")
            calls_after = paths["audit"].read_text().count('"source":"127.0.0.1"')
            engaged = await asyncio.to_thread(cli, "risk-officer", "immediate")
            weaker = await asyncio.to_thread(cli, "risk-officer", "pause")
            await wait_for_events(events_file, lambda ev: any(e["name"] == "account.flat" for e in ev), proc=bot)
            code, _, err = await bot.terminate()
        assert code == 0, err
    assert wrong.returncode == 2
    assert ("rejected by the running bot: bad credentials: the token matches no principal "
            "(unknown_credential, HTTP 401)") in wrong.stderr
    assert ops.returncode == 2
    assert "principal ops (role trading_ops) lacks permission 'killswitch'" in ops.stderr
    assert "(forbidden, HTTP 403)" in ops.stderr
    assert loose.returncode == 2 and "mode 0644" in loose.stderr and "chmod 600" in loose.stderr
    assert missing.returncode == 2 and "missing credentials: pass --token-file PATH" in missing.stderr
    assert calls_after == calls_before, "no token, or one others can read: refused before any request"
    assert engaged.returncode == 0 and "engaged immediate by risk-officer" in engaged.stdout, engaged.stderr
    assert weaker.returncode == 1
    assert "already engaged in immediate, stricter than pause" in weaker.stderr
    assert "(weaker_mode, HTTP 409)" in weaker.stderr
    assert all("equity" not in done.stderr for done in (wrong, ops, weaker)), "a refusal never carries the status"
