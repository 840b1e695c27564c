"""HTTP control API of a running bot: health, status, kill switch, resume.

Loopback only by default; every request but /health needs `Authorization: Bearer <token>`.
Kill-switch calls pass the token to the kill switch itself, so a bad one is rejected *and
audited* there; the other calls compare it in constant time. Runs in the bot's event loop, so
calls are serialised with market data and timers.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.runtime import Trader

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"body is not JSON: {exc}"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return body


@dataclass
class ControlServer:
    trader: Trader
    token: str
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> int:
        if self.host not in LOOPBACK:
            raise ValueError(f"control API binds loopback only (got {self.host!r}); put a proxy with TLS in front")
        app = web.Application()
        app.add_routes([
            web.get("/health", self._health),
            web.get("/status", self._status),
            web.post("/killswitch", self._engage),
            web.post("/killswitch/clear", self._clear),
            web.post("/resume", self._resume),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        given = _bearer(request)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "missing or bad token"}, status=401)
        return web.json_response(self.trader.status())

    async def _engage(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        mode = body.get("mode")
        if mode not in ("immediate", "graceful", "pause"):
            return web.json_response({"error": f"mode must be immediate, graceful or pause (got {mode!r})"},
                                     status=400)
        outcome = await self.trader.engage_killswitch(mode, str(body.get("reason", "")),
                                                      str(body.get("actor", "control-api")), _bearer(request))
        return web.json_response({"accepted": outcome.accepted, "status": self.trader.status()},
                                 status=200 if outcome.accepted else 401)

    async def _clear(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        outcome = await self.trader.clear_killswitch(str(body.get("actor", "control-api")), _bearer(request))
        return web.json_response({"accepted": outcome.accepted}, status=200 if outcome.accepted else 401)

    async def _resume(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "missing or bad token"}, status=401)
        body = await _json_body(request)
        outcome = await self.trader.manual_resume(str(body.get("actor", "control-api")))
        return web.json_response({"accepted": outcome.accepted, "status": self.trader.status()},
                                 status=200 if outcome.accepted else 409)
