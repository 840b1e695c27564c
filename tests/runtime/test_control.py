"""The control API of a running bot over real HTTP on loopback: roles, refusals that say only what is
wrong, the audit of every call, the rate limit, bounded records, timeouts, CORS and the OpenAPI file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.io.access import Access, Principal, load_access_config, token_digest
from bot.io.control import OPENAPI_FILE, ControlServer, RateLimiter
from tests.runtime.sim_world import World

CONFIG = load_access_config()
ROLES = {"admin": "system_admin", "risk-officer": "risk_manager", "ops": "trading_ops", "quant": "quant_analyst",
         "auditor": "auditor"}
TOKENS = {name: f"tok-{name}-0123456789abcdef" for name in ROLES}


def rbac() -> Access:
    return Access(CONFIG, [Principal(name, role, token_digest(TOKENS[name])) for name, role in ROLES.items()])


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


BAD = {"Authorization": "Bearer not-a-token-of-anyone"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def serving(world: World, *, position: float = 0.05, **settings: Any) -> AsyncIterator[tuple[str, ControlServer]]:
    """A sim trader (`position` BTC open on its account) behind a control API with one principal per role."""
    access = rbac()
    world.trader.verify = access.killswitch_verifier()
    if position:
        world.give_position(position)
    await world.trader.start()
    server = ControlServer(world.trader, access, settings=CONFIG.control_api.model_copy(update=settings))
    port = await server.start()
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        await server.stop()


def audit_records(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (world.dir / "audit.jsonl").read_text().splitlines()]


def access_records(world: World) -> list[dict[str, Any]]:
    return [r for r in audit_records(world) if r["action"] in ("api.access", "killswitch.rejected")
            and "route" in r["details"]]


# ------------------------------------------------------------------------------------------ roles

EXPECTED = {  # route -> the roles allowed (config/access.yaml); every other role gets 403
    ("GET", "/status"): {"admin", "risk-officer", "ops", "quant"},
    ("GET", "/audit"): {"admin", "auditor"},
    ("POST", "/resume"): {"admin", "risk-officer"},
    ("POST", "/restart"): {"admin", "ops"},
    ("POST", "/killswitch/clear"): {"admin", "risk-officer"},
    ("POST", "/killswitch"): {"admin", "risk-officer"},
    ("POST", "/checks/backup_failed"): {"admin", "risk-officer", "ops"},
}


async def test_every_role_gets_exactly_its_permissions(tmp_path: Path) -> None:
    world = World(tmp_path)
    seen: dict[tuple[str, str, str], int] = {}
    async with serving(world, position=0) as (base, _), aiohttp.ClientSession() as http:
        for method, path in EXPECTED:
            for name in ROLES:
                body = {"mode": "pause", "reason": "role matrix"} if path == "/killswitch" else None
                async with http.request(method, base + path, json=body, headers=auth(name)) as r:
                    seen[(method, path, name)] = r.status
                    if r.status == 403:
                        answer = await r.json()
                        assert answer["error"] == "forbidden" and ROLES[name] in answer["reason"]
    for (method, path, name), status in seen.items():
        allowed = name in EXPECTED[(method, path)]
        # an allowed call may still be refused by the bot (409: nothing to resume) or be unavailable
        # (503: an in-process server cannot restart itself), never 401/403
        assert (status not in (401, 403)) == allowed, (method, path, name, status)


async def test_a_role_without_the_kill_switch_is_rejected_announced_audited_and_changes_nothing(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "not my job"},
                             headers=auth("ops")) as r:
            assert r.status == 403
            body = await r.json()
    assert set(body) == {"error", "reason"} and body["error"] == "forbidden"
    assert "trading_ops" in body["reason"] and "'killswitch'" in body["reason"]
    assert world.position() == 0.05 and not world.trader.engine.killswitch.status().engaged
    [rejected] = world.of("killswitch.rejected")
    assert rejected.fields["actor"] == "ops" and "lacks permission" in rejected.fields["reason"]
    assert not world.of("killswitch.engaged")
    [record] = [r for r in audit_records(world) if r["action"] == "killswitch.rejected"]
    assert record["actor"] == "ops"
    details = record["details"]
    assert (details["principal"], details["role"], details["source"], details["route"], details["status"]) == (
        "ops", "trading_ops", "127.0.0.1", "POST /killswitch", 403)
    assert details["mode"] == "immediate" and details["reason"] == "not my job"


async def test_a_rejected_kill_switch_says_only_what_is_wrong(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "x"}, headers=BAD) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = await r.json()
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "x"}) as r:
            assert r.status == 401
            missing = await r.json()
    assert wrong == {"error": "unknown_credential", "reason": "bad credentials: the token matches no principal"}
    assert missing["error"] == "missing_credential" and "Authorization: Bearer" in missing["reason"]
    for text in (json.dumps(wrong), json.dumps(missing)):
        assert "equity" not in text and "position" not in text and "status" not in text
    assert world.position() == 0.05
    assert [e.fields["actor"] for e in world.of("killswitch.rejected")] == ["anonymous", "anonymous"]


async def test_the_actor_is_the_authenticated_principal_never_the_body(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/killswitch", headers=auth("risk-officer"),
                             json={"mode": "immediate", "reason": "drill", "actor": "ceo"}) as r:
            assert r.status == 200
            body = await r.json()
    assert body["accepted"] is True and body["actor"] == "risk-officer"
    assert body["status"]["trading"] == "halted" and world.position() == 0
    [engaged] = world.of("killswitch.engaged")
    assert engaged.fields["actor"] == "risk-officer"
    records = audit_records(world)
    assert {r["actor"] for r in records if r["action"] in ("killswitch.engage", "api.access")} == {"risk-officer"}
    assert "ceo" not in {r["actor"] for r in records}


async def test_a_reason_is_required(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        for body in ({"mode": "immediate"}, {"mode": "immediate", "reason": ""},
                     {"mode": "immediate", "reason": "   "}, {"mode": "immediate", "reason": 7}):
            async with http.post(f"{base}/killswitch", json=body, headers=auth("risk-officer")) as r:
                assert r.status == 400 and (await r.json())["error"] == "reason_required", body
        async with http.post(f"{base}/killswitch", json={"mode": "sideways", "reason": "x"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 400 and "immediate, graceful or pause" in (await r.json())["reason"]
        async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "x", "extra": 1},
                             headers=auth("risk-officer")) as r:
            assert r.status == 400 and "extra" in (await r.json())["reason"]
    assert not world.trader.engine.killswitch.status().engaged and world.position() == 0.05


async def test_a_weaker_mode_is_refused_with_its_reason(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/killswitch", json={"mode": "graceful", "reason": "wind down"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 200
        async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "softer"},
                             headers=auth("admin")) as r:
            assert r.status == 409
            body = await r.json()
    assert body["error"] == "weaker_mode" and body["engaged_mode"] == "graceful"
    assert "stricter than pause" in body["reason"] and "status" not in body


async def test_every_call_is_audited_with_source_route_principal_and_outcome(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/status", headers=BAD) as r:
            assert r.status == 401
        async with http.get(f"{base}/status", headers=auth("quant")) as r:
            assert r.status == 200 and (await r.json())["position"] == "open"
        async with http.post(f"{base}/resume", headers=auth("quant")) as r:
            assert r.status == 403
        async with http.post(f"{base}/resume", headers=auth("risk-officer")) as r:
            assert r.status == 409, "nothing is halted by a breaker: nothing to resume"
        async with http.post(f"{base}/resume") as r:
            assert r.status == 401
        async with http.get(f"{base}/nowhere", headers=BAD) as r:
            assert r.status == 404 and (await r.json())["error"] == "not_found"
        async with http.get(f"{base}/health") as r:
            assert r.status == 200 and await r.json() == {"ok": True}
    rows = [(r["details"]["route"], r["details"]["status"], r["details"]["outcome"], r["details"]["principal"],
             r["details"]["role"]) for r in access_records(world)]
    assert rows == [
        ("GET /status", 401, "unknown_credential", None, None),
        ("GET /status", 200, "ok", "quant", "quant_analyst"),
        ("POST /resume", 403, "forbidden", "quant", "quant_analyst"),
        ("POST /resume", 409, "refused", "risk-officer", "risk_manager"),
        ("POST /resume", 401, "missing_credential", None, None),
        ("GET /nowhere", 404, "not_found", None, None),
    ]
    assert {r["details"]["source"] for r in access_records(world)} == {"127.0.0.1"}
    assert all(r["actor"] == (r["details"]["principal"] or "anonymous") for r in access_records(world))


# ------------------------------------------------------------------------------------------ abuse


async def test_a_flood_of_wrong_tokens_is_rate_limited_and_never_blocks_an_operator(tmp_path: Path) -> None:
    world = World(tmp_path)
    clock = FakeClock()
    access = rbac()
    world.trader.verify = access.killswitch_verifier()
    world.give_position(0.05)
    await world.trader.start()
    server = ControlServer(world.trader, access, clock=clock)
    base = f"http://127.0.0.1:{await server.start()}"
    limit = CONFIG.control_api.rate_limit.requests_per_minute
    statuses: list[int] = []
    retry_after: set[str] = set()
    try:
        async with aiohttp.ClientSession() as http:
            before = (world.dir / "audit.jsonl").stat().st_size
            for _ in range(1000):
                async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": "flood"},
                                     headers=BAD) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        retry_after.add(r.headers["Retry-After"])
                        assert (await r.json())["error"] == "rate_limited"
            flood_bytes = (world.dir / "audit.jsonl").stat().st_size - before
            # the operator authenticates: her own bucket, untouched by the flood
            async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "under attack"},
                                 headers=auth("risk-officer")) as r:
                assert r.status == 200
            # the anonymous bucket refills at limit/60 per second: one more after 60/limit s
            clock.now += 60 / limit
            async with http.get(f"{base}/status", headers=BAD) as r:
                assert r.status == 401
            async with http.get(f"{base}/status", headers=BAD) as r:
                assert r.status == 429
    finally:
        await server.stop()
    assert statuses.count(401) == limit and statuses.count(429) == 1000 - limit
    assert statuses[:limit] == [401] * limit
    assert retry_after == {"1"}
    assert world.position() == 0
    limited = [r for r in audit_records(world) if r["action"] == "api.rate_limited"]
    assert sum(r["details"]["rejected"] for r in limited) == 1000 - limit + 1
    assert len(limited) <= 3, "a flood is recorded with its count, not a record per call"
    assert flood_bytes < 200 * 1000, f"{flood_bytes} audit bytes for 1000 rejected calls"


async def test_unauthenticated_calls_from_many_addresses_are_bounded_together(tmp_path: Path) -> None:
    world = World(tmp_path)
    clock = FakeClock()
    access = rbac()
    await world.trader.start()
    server = ControlServer(world.trader, access, clock=clock)
    base = f"http://127.0.0.1:{await server.start()}"
    per_address = CONFIG.control_api.rate_limit.requests_per_minute
    total = CONFIG.control_api.rate_limit.anonymous_per_minute
    addresses = total // per_address + 1
    statuses: list[int] = []
    try:
        for i in range(addresses):  # every address stays within its own limit
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{i + 2}", 0))
            async with aiohttp.ClientSession(connector=connector) as http:
                for _ in range(per_address):
                    async with http.get(f"{base}/status", headers=BAD) as r:
                        statuses.append(r.status)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/status", headers=auth("quant")) as r:
                assert r.status == 200, "a principal is not limited by the anonymous total"
    finally:
        await server.stop()
    assert statuses.count(401) == total and statuses.count(429) == addresses * per_address - total
    # the last address found the total used up: its calls were refused before any handler ran
    assert {r["details"]["source"] for r in access_records(world)} == {"127.0.0.1"} | {
        f"127.0.0.{i + 2}" for i in range(addresses - 1)}


def test_rate_limiter_buckets_are_bounded_and_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, max_keys=16, clock=clock)
    assert all(limiter.take(("a", "#")) is None for _ in range(60))
    assert limiter.take(("a", "#")) == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.take(("a", "#")) == pytest.approx(0.5)
    for i in range(100):
        limiter.take((f"10.0.0.{i}", "#"))
    assert len(limiter._buckets) == 16


async def test_big_unauthenticated_bodies_leave_small_bounded_audit_records(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        before = (world.dir / "audit.jsonl").stat().st_size
        big = "x" * 1_000_000
        for _ in range(30):
            async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": big}) as r:
                assert r.status == 401
        grown = (world.dir / "audit.jsonl").stat().st_size - before
        long_reason = "y" * 10_000  # under the body limit: read, and cut in the record
        async with http.post(f"{base}/killswitch", json={"mode": "pause", "reason": long_reason}, headers=BAD) as r:
            assert r.status == 401
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": big},
                             headers=auth("risk-officer")) as r:
            assert r.status == 413 and (await r.json())["error"] == "body_too_large"
    assert grown < 30 * 1024, f"30 unauthenticated 1 MB calls wrote {grown} audit bytes"
    cut = [r for r in audit_records(world) if r["details"].get("reason_bytes") == 10_000]
    assert len(cut) == 1 and len(cut[0]["details"]["reason"].encode()) <= CONFIG.control_api.reason_max_bytes + 3
    assert world.position() == 0.05


async def test_slow_and_idle_connections_are_closed_and_others_still_served(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world, idle_timeout_s=1.0, body_timeout_s=1.0) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()

        def trickle() -> tuple[float, bytes]:
            """Slowloris: a request head one byte every 0.2 s, never finished."""
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                started = time.monotonic()
                head = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
                try:
                    for byte in head:
                        s.sendall(bytes([byte]))
                        time.sleep(0.2)
                except OSError:
                    return time.monotonic() - started, b""
                return time.monotonic() - started, s.recv(100)

        def idle() -> tuple[float, bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                started = time.monotonic()
                return time.monotonic() - started if s.recv(100) == b"" else -1.0, b""

        def slow_body() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"POST /killswitch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKENS["risk-officer"]
                          .encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mode\"")
                return s.recv(4096)

        slow = loop.run_in_executor(None, trickle)
        quiet = loop.run_in_executor(None, idle)
        async with aiohttp.ClientSession() as http:  # meanwhile an operator is served at once
            await asyncio.sleep(0.3)
            started = time.monotonic()
            async with http.get(f"{base}/status", headers=auth("quant")) as r:
                assert r.status == 200
            assert time.monotonic() - started < 0.5
        elapsed, got = await slow
        assert got == b"" and elapsed < 3.0, f"a trickling client kept its connection {elapsed:.1f} s"
        idle_s, _ = await quiet
        assert 0.5 < idle_s < 3.0, f"an idle connection stayed open {idle_s:.1f} s"
        answer = await loop.run_in_executor(None, slow_body)
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer
    assert not world.trader.engine.killswitch.status().engaged


async def test_cors_headers_only_for_allowed_origins_and_never_a_wildcard(tmp_path: Path) -> None:
    from bot.io.access import Cors

    world = World(tmp_path)
    async with serving(world, position=0) as (base, _), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/status", headers={**auth("quant"), "Origin": "https://ops.example.com"}) as r:
            assert r.status == 200 and not any(h.lower().startswith("access-control") for h in r.headers)
        async with http.options(f"{base}/status", headers={"Origin": "https://ops.example.com",
                                                            "Access-Control-Request-Method": "GET"}) as r:
            assert r.status == 403 and not any(h.lower().startswith("access-control") for h in r.headers)
    world = World(tmp_path / "allowed")
    cors = Cors(allow_origins=["https://ops.example.com"], max_age_s=600)
    async with serving(world, position=0, cors=cors) as (base, _), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/status", headers={**auth("quant"), "Origin": "https://ops.example.com"}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
            assert r.headers["Access-Control-Allow-Credentials"] == "true" and r.headers["Vary"] == "Origin"
        async with http.get(f"{base}/status", headers={**auth("quant"), "Origin": "https://evil.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with http.options(f"{base}/killswitch", headers={"Origin": "https://ops.example.com",
                                                                "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 204 and r.headers["Access-Control-Max-Age"] == "600"
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        async with http.options(f"{base}/killswitch", headers={"Origin": "https://evil.example",
                                                                "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers


async def test_an_action_taken_is_answered_200_even_when_recording_it_failed(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world) as (base, _), aiohttp.ClientSession() as http:
        world.audit_disk.full = True  # the audit log's disk fills up: every write fails with ENOSPC
        async with http.post(f"{base}/killswitch", json={"mode": "immediate", "reason": "disk full drill"},
                             headers=auth("risk-officer")) as r:
            assert r.status == 200
            body = await r.json()
        async with http.get(f"{base}/status", headers=BAD) as r:
            assert r.status == 401 and "No space left" in (await r.json())["audit"]
    assert body["accepted"] is True and body["audit"].startswith("failed: ") and "No space left" in body["audit"]
    assert world.position() == 0


async def test_auditor_reads_the_audit_log_in_bounded_pages(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world, position=0, audit_page_max=5, audit_page_max_bytes=4096) as (base, _), \
            aiohttp.ClientSession() as http:
        for _ in range(12):
            async with http.get(f"{base}/status", headers=auth("quant")) as r:
                assert r.status == 200
        async with http.get(f"{base}/audit", headers=auth("quant")) as r:
            assert r.status == 403
        seqs: list[int] = []
        after = 0
        while True:
            async with http.get(f"{base}/audit", params={"after": after, "limit": 5}, headers=auth("auditor")) as r:
                assert r.status == 200
                page = await r.json()
            assert len(page["records"]) <= 5
            assert len(json.dumps(page["records"]).encode()) <= 4096 + 1024
            seqs += [rec["seq"] for rec in page["records"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        async with http.get(f"{base}/audit", params={"limit": 6}, headers=auth("auditor")) as r:
            assert r.status == 400 and "between 1 and 5" in (await r.json())["reason"]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 13
    assert seqs[-1] >= page["last_seq"] - 1  # the last page's own access record may come after it


async def test_principals_added_or_removed_take_effect_without_a_restart(tmp_path: Path) -> None:
    from bot.io.access import AccessSource, add_principal, change_principals

    world = World(tmp_path)
    path = tmp_path / "principals.yaml"
    source = AccessSource(CONFIG, path, explicit=False)
    source.load()
    world.trader.verify = source.killswitch_verifier()
    await world.trader.start()
    server = ControlServer(world.trader, source)
    base = f"http://127.0.0.1:{await server.start()}"
    try:
        async with aiohttp.ClientSession() as http:
            token = add_principal(path, CONFIG, "new-quant", "quant_analyst")
            async with http.get(f"{base}/status", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
            change_principals(path, CONFIG, lambda current: [p for p in current if p.name != "new-quant"])
            async with http.get(f"{base}/status", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 401
    finally:
        await server.stop()


# ------------------------------------------------------------------------------------------ OpenAPI


def test_the_openapi_file_documents_exactly_the_routes_the_app_serves(tmp_path: Path) -> None:
    world = World(tmp_path)
    server = ControlServer(world.trader, rbac())
    app = server.build_app()
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "OPTIONS"}
    spec = yaml.safe_load(OPENAPI_FILE.read_text())
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert served == documented
    public = {(m.upper(), p) for p, ops in spec["paths"].items() for m, op in ops.items() if op.get("security") == []}
    assert public == {(r.method, r.path) for r in server.routes() if r.permission is None}
    codes = set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
    source = Path(__import__("bot.io.control", fromlist=["x"]).__file__).read_text()
    import re

    used = set(re.findall(r'_error\(\d{3}, "([a-z_]+)"', source)) | {"missing_credential", "unknown_credential",
                                                                      "forbidden"}
    assert used - {"not_found", "method_not_allowed", "internal_error"} <= codes


async def test_openapi_json_is_served_and_matches_the_file(tmp_path: Path) -> None:
    world = World(tmp_path)
    async with serving(world, position=0) as (base, _), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/openapi.json") as r:
            assert r.status == 200 and await r.json() == yaml.safe_load(OPENAPI_FILE.read_text())
