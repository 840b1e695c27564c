"""HTTP control API of a running bot: health, status, kill switch, resume, restart, audit.

Loopback only; documented in `control_openapi.yaml`, served at /openapi.json. Every route but
/health and /openapi.json needs `Authorization: Bearer <token>` of a principal whose role has the
route's permission (bot/io/access.py, config/access.yaml); the actor of every action is that
principal, never a name in the body. Defences, all from `control_api` in config/access.yaml:

- a token-bucket rate limit per client address and principal (`requests_per_minute`; 429 with
  Retry-After): a flood of bad tokens from one address exhausts only the anonymous bucket, never
  the one of an operator who authenticates; unauthenticated calls from all addresses together
  are bounded as well (`anonymous_per_minute`); /health and /openapi.json share a third bucket;
- bodies over `max_body_bytes` are refused before they are read (413); a body must arrive within
  `body_timeout_s` (408); a connection without a complete request head for `idle_timeout_s`
  (new or kept alive; slowloris) is closed;
- one bounded audit record per call - source address, route, principal and role, HTTP status and
  outcome, the reason cut to `reason_max_bytes` with its full length - for every call but /health
  and /openapi.json (public, data-free); rate-limited calls are recorded once per client and
  minute with their count, so a flood cannot fill the disk through the audit log;
- 401/403 bodies carry a machine-readable `error` and a `reason`, nothing about the bot's state;
- CORS headers only for origins in `cors.allow_origins` (never `*`); a preflight from any other
  origin is refused.

An action that was taken is answered 200 (202 for a restart) even when recording it failed; the
reply then carries `"audit": "failed: ..."`. Runs in the bot's event loop, so calls are
serialised with market data and timers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bot.checks import RedFlagChecks
from bot.core.killswitch import MODE_RANK
from bot.io.access import Access, AccessSource, ControlApiConfig, Decision
from bot.runtime import Trader

LOOPBACK = ("127.0.0.1", "::1", "localhost")
OPENAPI_FILE = Path(__file__).with_name("control_openapi.yaml")
MODES = ("immediate", "graceful", "pause")
RATE_RECORD_EVERY_S = 60.0
WHY_MAX_BYTES = 300


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (read on first use: parsing it is not on the bot's start path)."""
    safe = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded: dict[str, Any] = yaml.load(OPENAPI_FILE.read_text(), Loader=safe)  # nosec B506 - a SafeLoader
    return loaded


def cut(text: str, limit: int) -> tuple[str, int | None]:
    """`text` cut to `limit` UTF-8 bytes, and its full length in bytes when it was cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text, None
    return raw[:limit].decode(errors="ignore") + "…", len(raw)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header.startswith("Bearer ") else None


class RateLimiter:
    """Token buckets of `per_minute` requests per key, refilled continuously; at most `max_keys`
    buckets (least recently used dropped first, so memory stays bounded)."""

    def __init__(self, per_minute: int, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def take(self, key: tuple[str, str]) -> float | None:
        """None when admitted; else the seconds until the next request would be."""
        now = self.clock()
        bucket = self._buckets.pop(key, None) or [self.capacity, now]
        tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
        self._buckets[key] = bucket
        bucket[1] = now
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return None
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    audit_action: str = "api.access"
    details: dict[str, Any] = field(default_factory=dict)  # extra fields for the audit record
    audited: bool = False  # the action's own record already carries the access (one record per call)


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def _error(status: int, code: str, reason: str, **extra: Any) -> Reply:
    return Reply(status, {"error": code, "reason": reason, **extra})


@dataclass
class Call:
    request: web.Request
    route: str
    source: str
    token: str | None
    access: Access
    decision: Decision | None = None

    @property
    def actor(self) -> str:
        principal = self.decision.principal if self.decision else None
        return principal.name if principal is not None else "anonymous"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    permission: str | None  # None: public
    handler: Callable[[Call], Awaitable[Reply]]

    @property
    def text(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class ControlServer:
    trader: Trader
    access: AccessSource | Access
    host: str = "127.0.0.1"
    port: int = 0
    settings: ControlApiConfig | None = None
    on_restart: Callable[[str], None] | None = None
    checks: RedFlagChecks | None = None  # the live bot's red-flag checks (POST /checks/{name})
    clock: Callable[[], float] = time.monotonic
    _runner: web.AppRunner | None = None
    _limiter: RateLimiter | None = None
    _anonymous: RateLimiter | None = None
    _limited: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # key -> [pending, last record]
    _reload_problem: str | None = None
    _pager: AuditPager | None = None

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = self._current_access().config.control_api
        limit = self.settings.rate_limit
        self._limiter = RateLimiter(limit.requests_per_minute, limit.max_clients, self.clock)
        self._anonymous = RateLimiter(limit.anonymous_per_minute, 16, self.clock)

    @property
    def cfg(self) -> ControlApiConfig:
        assert self.settings is not None
        return self.settings

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/health", None, self._health),
            Route("GET", "/openapi.json", None, self._openapi),
            Route("GET", "/status", "status.read", self._status),
            Route("POST", "/killswitch", "killswitch", self._engage),
            Route("POST", "/killswitch/clear", "killswitch", self._clear),
            Route("POST", "/resume", "resume", self._resume),
            Route("POST", "/ramp/advance", "ramp.advance", self._ramp_advance),
            Route("POST", "/restart", "restart", self._restart),
            Route("POST", "/checks/{name}", "checks.run", self._run_check),
            Route("GET", "/audit", "audit.read", self._audit_page),
        ]

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_body_bytes, middlewares=[self._unrouted])
        by_path: dict[str, list[str]] = {}
        for route in self.routes():
            app.router.add_route(route.method, route.path, self._endpoint(route))
            by_path.setdefault(route.path, []).append(route.method)
        for path, methods in by_path.items():
            app.router.add_route("OPTIONS", path, self._preflight(methods))
        return app

    async def start(self) -> int:
        if self.host not in LOOPBACK:
            raise ValueError(f"control API binds loopback only (got {self.host!r}); put a proxy with TLS in front")
        # keepalive_timeout also bounds the wait for a new connection's first request head: a
        # client trickling header bytes (slowloris) is cut off when it runs out.
        self._runner = web.AppRunner(self.build_app(), access_log=None, keepalive_timeout=self.cfg.idle_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        for key in list(self._limited):
            self._record_limited(key, force=True)
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the gate every call passes -------------------------------------------------------

    def _current_access(self) -> Access:
        if isinstance(self.access, Access):
            return self.access
        current = self.access.current()
        problem = self.access.problem
        if problem and problem != self._reload_problem:
            self.trader.bus.emit("bot.alert", self.trader.clock.now_ms(), severity="warning",
                                 key="access.config_problem", title=problem[:300])
        self._reload_problem = problem
        return current

    def _admit(self, source: str, who: str, route: str) -> Reply | None:
        assert self._limiter is not None and self._anonymous is not None
        key = (source, who)
        wait = self._limiter.take(key)
        limit = f"{self.cfg.rate_limit.requests_per_minute} requests per minute from {source}"
        if wait is None and who == "#anonymous":
            # unauthenticated calls from all addresses together (127.0.0.0/8 has many): bounded too
            wait = self._anonymous.take(("*", who))
            limit = f"{self.cfg.rate_limit.anonymous_per_minute} unauthenticated requests per minute"
        if wait is None:
            if key in self._limited:
                self._record_limited(key, admitted=True)
            return None
        entry = self._limited.setdefault(key, [0.0, -math.inf])
        entry[0] += 1
        self._record_limited(key, route=route)
        seconds = max(1, math.ceil(wait))
        reply = _error(429, "rate_limited", f"more than {limit}; retry after {seconds} s", retry_after_s=seconds)
        reply.headers["Retry-After"] = str(seconds)
        return reply

    def _record_limited(self, key: tuple[str, str], *, force: bool = False, route: str | None = None,
                        admitted: bool = False) -> None:
        """At most one record per key and RATE_RECORD_EVERY_S, carrying how many calls it stands for."""
        entry = self._limited.get(key)
        if entry is None:
            return
        now = self.clock()
        due = now - entry[1] >= RATE_RECORD_EVERY_S
        if entry[0] and (force or due):
            details = {"source": key[0], "principal": None if key[1].startswith("#") else key[1],
                       "rejected": int(entry[0]), "outcome": "rate_limited", "status": 429}
            if route:
                details["route"] = route
            self._append(key[1] if not key[1].startswith("#") else "anonymous", "api.rate_limited", details)
            entry[0], entry[1] = 0, now
        elif admitted and due:  # nothing pending, and the last record is a minute old: forget the key
            force = True
        if force:
            del self._limited[key]

    def _append(self, actor: str, action: str, details: dict[str, Any]) -> str | None:
        """Write one audit record; the error text when that failed (never raises)."""
        error = self.trader.record(actor, action, details)  # disk full, torn log: kept, written late
        return None if error is None else error[:300]

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            source = request.remote or "unknown"
            access = self._current_access()
            token = _bearer(request) if route.permission else None
            call = Call(request, route.text, source, token, access)
            if route.permission is None:
                refused = self._admit(source, "#public", route.text)
                return self._respond(request, refused or await route.handler(call))
            principal = access.authenticate(token)
            refused = self._admit(source, principal.name if principal else "#anonymous", route.text)
            if refused is not None:
                return self._respond(request, refused)
            call.decision = access.decide(token, route.permission)
            try:
                if call.decision.allowed:
                    reply = await route.handler(call)
                else:
                    reply = await self._deny(call, route, call.decision)
            except _Refused as refusal:
                reply = refusal.reply
            except Exception as exc:  # a bug answers in JSON and is audited like any other outcome
                reply = _error(500, "internal_error", f"{type(exc).__name__}: {exc}"[:300])
            failed = self._audit(call, reply)
            if failed:
                reply.body["audit"] = f"failed: {failed}"
            return self._respond(request, reply)

        return handle

    @staticmethod
    def _access_fields(call: Call) -> dict[str, Any]:
        principal = call.decision.principal if call.decision else None
        return {"source": call.source, "route": call.route,
                "principal": principal.name if principal else None, "role": principal.role if principal else None}

    def _audit(self, call: Call, reply: Reply) -> str | None:
        if reply.audited:
            return None
        details: dict[str, Any] = {**self._access_fields(call), "status": reply.status,
                                   "outcome": reply.body.get("error", "ok")}
        if reply.status >= 400:
            details["why"] = cut(str(reply.body.get("reason", "")), WHY_MAX_BYTES)[0]
        details.update(reply.details)
        return self._append(call.actor, reply.audit_action, details)

    async def _deny(self, call: Call, route: Route, decision: Decision) -> Reply:
        reason = decision.reason + (": send 'Authorization: Bearer <token>'" if decision.code == "missing_credential"
                                    else "")
        reply = _error(decision.status, decision.code, reason)
        if decision.status == 401:
            reply.headers["WWW-Authenticate"] = 'Bearer realm="gameday"'
        self.trader.access_denied(f"{route.text} by {call.actor}: {decision.reason}")
        if route.permission == "killswitch":
            # A refused kill-switch request is a security event: announced and audited with what
            # was asked (bounded), never acted on, whatever the policy's require_auth says.
            what = "kill switch clear" if route.path.endswith("/clear") else "kill switch"
            self.trader.bus.emit("killswitch.rejected", self.trader.clock.now_ms(),
                                 reason=f"{what} rejected: {decision.reason}", actor=call.actor)
            reply.audit_action = "killswitch.rejected"
            reply.details = await self._peek_body(call)
        return reply

    def _respond(self, request: web.Request, reply: Reply) -> web.Response:
        headers = {**reply.headers, **self._cors_headers(request)}
        return web.json_response(reply.body, status=reply.status, headers=headers)

    @web.middleware
    async def _unrouted(self, request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Unknown paths and methods: rate-limited, audited and answered in JSON like the rest."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status not in (404, 405):
                raise
            source = request.remote or "unknown"
            route = f"{request.method} {cut(request.path, 200)[0]}"
            refused = self._admit(source, "#anonymous", route)
            if refused is not None:
                return self._respond(request, refused)
            code = "not_found" if exc.status == 404 else "method_not_allowed"
            reply = _error(exc.status, code, f"{route}: no such route (see /openapi.json)")
            if "Allow" in exc.headers:
                reply.headers["Allow"] = exc.headers["Allow"]
            self._append("anonymous", "api.access", {"source": source, "route": route, "status": exc.status,
                                                     "outcome": code, "principal": None, "role": None})
            return self._respond(request, reply)

    # --- CORS -----------------------------------------------------------------------------

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or origin not in self.cfg.cors.allow_origins:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

    def _preflight(self, methods: list[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def preflight(request: web.Request) -> web.StreamResponse:
            source = request.remote or "unknown"
            refused = self._admit(source, "#public", f"OPTIONS {request.path}")
            if refused is not None:
                return web.json_response(refused.body, status=429, headers=refused.headers)
            origin = request.headers.get("Origin")
            wanted = request.headers.get("Access-Control-Request-Method", "")
            if origin is None or origin not in self.cfg.cors.allow_origins or wanted not in methods:
                return web.json_response({"error": "cors_forbidden",
                                          "reason": "cross-origin requests are allowed only from the origins in "
                                                    "control_api.cors.allow_origins"}, status=403)
            return web.Response(status=204, headers={
                **self._cors_headers(request), "Access-Control-Allow-Methods": ", ".join(methods),
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": str(self.cfg.cors.max_age_s)})

        return preflight

    # --- bodies ---------------------------------------------------------------------------

    async def _read_json(self, call: Call) -> dict[str, Any]:
        request = call.request
        if not request.can_read_body:
            return {}
        size = request.content_length
        if size is not None and size > self.cfg.max_body_bytes:
            raise _Refused(_error(413, "body_too_large", f"the body is {size} bytes; at most "
                                                         f"{self.cfg.max_body_bytes}"))
        try:
            raw = await asyncio.wait_for(request.read(), self.cfg.body_timeout_s)
        except TimeoutError:
            raise _Refused(_error(408, "body_timeout", f"the body did not arrive within "
                                                       f"{self.cfg.body_timeout_s:g} s")) from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(_error(413, "body_too_large", f"the body is over {self.cfg.max_body_bytes} bytes")
                           ) from None
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Refused(_error(400, "bad_request", f"body is not JSON: {str(exc)[:120]}")) from None
        if not isinstance(body, dict):
            raise _Refused(_error(400, "bad_request", "body must be a JSON object"))
        return body

    async def _peek_body(self, call: Call) -> dict[str, Any]:
        """What a refused kill-switch request asked for, for its audit record: bounded, best effort."""
        try:
            body = await self._read_json(call)
        except _Refused as refusal:
            return {"body": refusal.reply.body["error"]}
        out: dict[str, Any] = {}
        if isinstance(body.get("mode"), str):
            out["mode"] = cut(body["mode"], 20)[0]
        if "reason" in body:
            out.update(self._reason_fields(str(body["reason"])))
        if isinstance(body.get("actor"), str):
            out["claimed_actor"] = cut(body["actor"], 64)[0]
        return out

    def _reason_fields(self, reason: str) -> dict[str, Any]:
        text, full = cut(reason, self.cfg.reason_max_bytes)
        return {"reason": text, **({"reason_bytes": full} if full is not None else {})}

    @staticmethod
    def _only(body: dict[str, Any], allowed: set[str]) -> None:
        extra = sorted(set(body) - allowed)
        if extra:
            raise _Refused(_error(400, "bad_request", f"unknown field(s) {', '.join(extra)}; allowed: "
                                                      f"{', '.join(sorted(allowed)) or 'none'}"))
        if "actor" in body and not isinstance(body["actor"], str):
            raise _Refused(_error(400, "bad_request", "actor must be a string (it is ignored: the actor is the "
                                                      "authenticated principal)"))

    def _with_record(self, reply: Reply, record_error: str | None) -> Reply:
        if record_error:
            reply.body["audit"] = f"failed: {record_error}"
        return reply

    # --- routes ---------------------------------------------------------------------------

    async def _health(self, call: Call) -> Reply:
        return Reply(200, {"ok": True})

    async def _openapi(self, call: Call) -> Reply:
        return Reply(200, openapi_document())

    async def _status(self, call: Call) -> Reply:
        return Reply(200, self.trader.status())

    def _status_for(self, call: Call) -> dict[str, Any]:
        principal = call.decision.principal if call.decision else None
        if principal is not None and call.access.permits(principal, "status.read"):
            return {"status": self.trader.status()}
        return {}

    async def _engage(self, call: Call) -> Reply:
        body = await self._read_json(call)
        self._only(body, {"mode", "reason", "actor"})  # actor: accepted for old clients, never used
        mode = body.get("mode")
        if mode not in MODES:
            raise _Refused(_error(400, "bad_request", f"mode must be immediate, graceful or pause (got "
                                                      f"{cut(repr(mode), 40)[0]})"))
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise _Refused(_error(400, "reason_required", "a non-empty reason is required (why the kill "
                                                          "switch is engaged goes into the audit log)"))
        fields = self._reason_fields(reason)
        # the trader's killswitch.engage (or .rejected) record carries who called and from where: one record
        via = self._access_fields(call)
        if "reason_bytes" in fields:  # the reason was cut: how long it was
            via["reason_bytes"] = fields["reason_bytes"]
        outcome = await self.trader.engage_killswitch(mode, fields["reason"], call.actor, call.token, via=via)
        if outcome.accepted:
            return self._with_record(Reply(200, {"accepted": True, "reason": outcome.reason, "actor": call.actor,
                                                 **self._status_for(call)}, audited=True), outcome.record_error)
        engaged = self.trader.engine.killswitch.status()
        if engaged.engaged and engaged.mode is not None and MODE_RANK[mode] < MODE_RANK[engaged.mode]:
            reply = _error(409, "weaker_mode", outcome.reason, accepted=False, engaged_mode=engaged.mode)
        else:
            reply = _error(403, "forbidden", outcome.reason, accepted=False)
        reply.audited = True
        return self._with_record(reply, outcome.record_error)

    async def _clear(self, call: Call) -> Reply:
        self._only(await self._read_json(call), {"actor"})
        outcome = await self.trader.clear_killswitch(call.actor, call.token)
        if outcome.accepted:
            return self._with_record(Reply(200, {"accepted": True, "reason": outcome.reason, "actor": call.actor}),
                                     outcome.record_error)
        return self._with_record(_error(403, "forbidden", outcome.reason, accepted=False), outcome.record_error)

    async def _resume(self, call: Call) -> Reply:
        self._only(await self._read_json(call), {"actor"})
        outcome = await self.trader.manual_resume(call.actor)
        if outcome.accepted:
            reply = Reply(200, {"accepted": True, "reason": outcome.reason, "actor": call.actor,
                                **self._status_for(call)})
        else:
            reply = _error(409, "refused", outcome.reason, accepted=False)
        return self._with_record(reply, outcome.record_error)

    async def _ramp_advance(self, call: Call) -> Reply:
        body = await self._read_json(call)
        self._only(body, {"validation", "actor"})
        validation = body.get("validation")
        if validation is not None and not isinstance(validation, str):
            raise _Refused(_error(400, "bad_request", "validation must be the path of a validation.json"))
        outcome = await self.trader.advance_ramp(call.actor, validation)
        if outcome.accepted:
            reply = Reply(200, {"accepted": True, "reason": outcome.reason, "actor": call.actor,
                                **self._status_for(call)})
        else:
            reply = _error(409, "refused", outcome.reason, accepted=False)
        return self._with_record(reply, outcome.record_error)

    async def _restart(self, call: Call) -> Reply:
        self._only(await self._read_json(call), set())
        if self.on_restart is None:
            return _error(503, "unavailable", "this process cannot restart itself (only python -m bot run can)")
        self.on_restart(call.actor)
        return Reply(202, {"accepted": True, "actor": call.actor,
                           "reason": "restarting: the bot stops cleanly (state saved) and starts again"})

    async def _run_check(self, call: Call) -> Reply:
        self._only(await self._read_json(call), set())
        name = call.request.match_info["name"]
        known = sorted(self.checks.checks) if self.checks is not None else []
        if name not in known:
            return _error(404, "unknown_check", f"no red-flag check {cut(repr(name), 60)[0]} runs in this bot; "
                                                f"known: {', '.join(known) or 'none'}", checks=known)
        assert self.checks is not None
        outcome = await self.checks.run(name)
        status = self.trader.status()
        return Reply(200, {"check": name, "judged": outcome is not None, "ok": None if outcome is None else outcome[0],
                           "detail": "not judged: the exchange is unreachable (the outage breaker's to handle)"
                           if outcome is None else outcome[1], "actor": call.actor,
                           "last_check": status["red_flags"].get(name), "killswitch": status["killswitch"]})

    async def _audit_page(self, call: Call) -> Reply:
        query = call.request.query
        problems = sorted(set(query) - {"after", "limit"})
        if problems:
            raise _Refused(_error(400, "bad_request", f"unknown query parameter(s) {', '.join(problems)}; "
                                                      "allowed: after, limit"))
        after = _int_param(query.get("after"), "after", 0, 0, 2**53)
        limit = _int_param(query.get("limit"), "limit", min(50, self.cfg.audit_page_max), 1, self.cfg.audit_page_max)
        if self._pager is None or self._pager.path != Path(self.trader.audit.path):
            self._pager = AuditPager(Path(self.trader.audit.path))
        records, last_seq = await asyncio.to_thread(self._pager.page, after, limit, self.cfg.audit_page_max_bytes)
        next_after = records[-1]["seq"] if records and records[-1]["seq"] < last_seq else None
        return Reply(200, {"records": records, "next_after": next_after, "last_seq": last_seq})


def _int_param(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Refused(_error(400, "bad_request", f"{name} must be an integer (got {cut(raw, 40)[0]!r})")) from None
    if not low <= value <= high:
        raise _Refused(_error(400, "bad_request", f"{name} must be between {low} and {high} (got {value})"))
    return value


class AuditPager:
    """Pages of the audit log by seq (= line number), with a sparse index of line offsets that
    grows with the file, so a page costs the new bytes plus at most STRIDE lines, not the log."""

    STRIDE = 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets = [0]  # byte offset of line k * STRIDE (0-based)
        self._end = 0  # offset after the last complete line indexed
        self._lines = 0
        self._lock = threading.Lock()

    def _extend(self, fh: Any) -> None:
        fh.seek(self._end)
        for line in fh:
            if not line.endswith(b"\n"):
                break  # a record being written (or a torn tail): not a record yet
            self._end += len(line)
            self._lines += 1
            if self._lines % self.STRIDE == 0:
                self._offsets.append(self._end)

    def page(self, after: int, limit: int, max_bytes: int) -> tuple[list[dict[str, Any]], int]:
        """Records with seq > after: at most `limit` and `max_bytes` of them (a single record over
        the byte limit is listed as omitted), and the log's last seq."""
        with self._lock:
            try:
                fh = open(self.path, "rb")  # noqa: SIM115 - closed below
            except OSError:
                return [], 0
            with fh:
                if fh.seek(0, 2) < self._end:  # the file was replaced or cut: index it afresh
                    self._offsets, self._end, self._lines = [0], 0, 0
                self._extend(fh)
                last = self._lines
                block = min(after // self.STRIDE, len(self._offsets) - 1)
                fh.seek(self._offsets[block])
                seq = block * self.STRIDE
                records: list[dict[str, Any]] = []
                used = 0
                for line in fh:
                    seq += 1
                    if seq > last or len(records) >= limit:
                        break
                    if seq <= after:
                        continue
                    size = len(line)
                    if records and used + size > max_bytes:
                        break
                    used += size
                    if size > max_bytes:
                        records.append({"seq": seq, "omitted": f"record of {size} bytes is over the page limit "
                                                               f"of {max_bytes}; read it from the audit file"})
                        continue
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        records.append({"seq": seq, "omitted": "not valid JSON (run python -m bot audit verify)"})
                return records, last
