"""The proxy collection and Toxiproxy 2.12's HTTP API over it (routes, bodies, error replies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from typing import Any

from aiohttp import web

from harness.toxiproxy.addresses import resolve_listen_host, split_hostport
from harness.toxiproxy.errors import ApiError, bad_body
from harness.toxiproxy.proxy import Proxy
from harness.toxiproxy.toxics import STREAMS, TOXIC_ATTRIBUTES, Toxic, parse_attributes, parse_toxicity

VERSION = "2.12.0"


class ToxiproxyServer:
    """The proxy collection and the HTTP API over it (one instance per embedded server)."""

    def __init__(self, *, allow_remote: bool = False, seed: int | None = None) -> None:
        self.allow_remote = allow_remote
        self.rng = random.Random(seed)
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()

    # -- collection operations (callers hold self.lock)
    async def create_proxy(self, body: Any) -> Proxy:
        name, listen, upstream, enabled = self._proxy_fields(body)
        if name in self.proxies:
            raise ApiError(409, "proxy already exists")
        proxy = Proxy(self, name, listen, upstream, enabled)
        if enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    def _proxy_fields(self, body: Any, where: str = "") -> tuple[str, str, str, bool]:
        if not isinstance(body, dict):
            raise bad_body(f"expected a JSON object{where}, got {type(body).__name__}")
        for key in ("name", "listen", "upstream"):
            if key in body and not isinstance(body[key], str):
                raise bad_body(f"field {key!r}{where} must be a string, got {body[key]!r}")
        if "enabled" in body and not isinstance(body["enabled"], bool):
            raise bad_body(f"field 'enabled'{where} must be a boolean, got {body['enabled']!r}")
        name = body.get("name", "")
        upstream = body.get("upstream", "")
        if not name:
            raise ApiError(400, f"missing required field: name{where}")
        if not upstream:
            raise ApiError(400, f"missing required field: upstream{where}")
        split_hostport(upstream, "upstream")
        listen = body.get("listen") or f"{'0.0.0.0' if self.allow_remote else '127.0.0.1'}:0"  # nosec B104 - as above
        resolve_listen_host(split_hostport(listen, "listen")[0], self.allow_remote)
        return name, listen, upstream, body.get("enabled", True)

    def get_proxy(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    async def update_proxy(self, proxy: Proxy, body: Any) -> None:
        if not isinstance(body, dict):
            raise bad_body(f"expected a JSON object, got {type(body).__name__}")
        listen = body.get("listen", proxy.listen)
        upstream = body.get("upstream", proxy.upstream)
        enabled = body.get("enabled", proxy.enabled)
        if not isinstance(listen, str) or not isinstance(upstream, str):
            raise bad_body("fields 'listen' and 'upstream' must be strings")
        if not isinstance(enabled, bool):
            raise bad_body(f"field 'enabled' must be a boolean, got {enabled!r}")
        split_hostport(listen, "listen")
        split_hostport(upstream, "upstream")
        if listen != proxy.listen or upstream != proxy.upstream:
            resolve_listen_host(split_hostport(listen, "listen")[0], self.allow_remote)
            await proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
            if enabled:
                await proxy.start()
            return
        if enabled and not proxy.enabled:
            await proxy.start()
        elif not enabled and proxy.enabled:
            await proxy.stop()

    async def delete_proxy(self, name: str) -> None:
        proxy = self.get_proxy(name)
        del self.proxies[name]
        await proxy.stop()

    async def reset(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.toxics.clear()
            proxy.toxics_changed()
            if not proxy.enabled:
                with contextlib.suppress(ApiError):
                    await proxy.start()

    async def populate(self, body: Any) -> tuple[list[Proxy], ApiError | None]:
        if not isinstance(body, list):
            raise bad_body(f"expected a JSON array of proxies, got {type(body).__name__}")
        entries = [self._proxy_fields(entry, f" at proxy {i}") for i, entry in enumerate(body, start=1)]
        result: list[Proxy] = []
        for name, listen, upstream, enabled in entries:
            existing = self.proxies.get(name)
            if existing is not None:
                if existing.listen == listen and existing.upstream == upstream:
                    result.append(existing)
                    continue
                del self.proxies[name]
                await existing.stop()
            proxy = Proxy(self, name, listen, upstream, enabled)
            if enabled:
                try:
                    await proxy.start()
                except ApiError as exc:
                    return result, exc
            self.proxies[name] = proxy
            result.append(proxy)
        return result, None

    def add_toxic(self, proxy: Proxy, body: Any) -> Toxic:
        if not isinstance(body, dict):
            raise bad_body(f"expected a JSON object, got {type(body).__name__}")
        toxic_type = body.get("type")
        if not isinstance(toxic_type, str) or toxic_type not in TOXIC_ATTRIBUTES:
            raise ApiError(400, "invalid toxic type")
        stream = body.get("stream") or "downstream"
        if not isinstance(stream, str) or stream.lower() not in STREAMS:
            raise ApiError(400, "stream was invalid, can be either upstream or downstream")
        stream = stream.lower()
        name = body.get("name") or f"{toxic_type}_{stream}"
        if not isinstance(name, str):
            raise bad_body(f"field 'name' must be a string, got {name!r}")
        toxicity = parse_toxicity(body["toxicity"]) if body.get("toxicity") is not None else 1.0
        base = dict.fromkeys(TOXIC_ATTRIBUTES[toxic_type], 0)
        attributes = parse_attributes(toxic_type, body.get("attributes"), base)
        if any(t.name == name for t in proxy.toxics):
            raise ApiError(409, "toxic already exists")
        toxic = Toxic(name, toxic_type, stream, toxicity, attributes)
        proxy.toxics.append(toxic)
        proxy.toxics_changed()
        return toxic

    def update_toxic(self, proxy: Proxy, toxic: Toxic, body: Any) -> None:
        if not isinstance(body, dict):
            raise bad_body(f"expected a JSON object, got {type(body).__name__}")
        attributes = parse_attributes(toxic.type, body.get("attributes"), toxic.attributes)
        toxicity = parse_toxicity(body["toxicity"]) if body.get("toxicity") is not None else toxic.toxicity
        toxic.attributes.clear()
        toxic.attributes.update(attributes)
        rolled = toxicity != toxic.toxicity
        toxic.toxicity = toxicity
        for conn in list(proxy.connections):
            conn.links[toxic.stream].refresh(toxic, self.rng, reroll=rolled)

    def remove_toxic(self, proxy: Proxy, name: str) -> None:
        toxic = proxy.find_toxic(name)
        proxy.toxics.remove(toxic)
        proxy.toxics_changed()

    async def close_all(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()

    # -- HTTP
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_get("/version", self._h_version)
        r.add_get("/proxies", self._h_proxies)
        r.add_post("/proxies", self._h_create)
        r.add_post("/reset", self._h_reset)
        r.add_post("/populate", self._h_populate)
        r.add_get("/proxies/{proxy}", self._h_get_proxy)
        r.add_patch("/proxies/{proxy}", self._h_update_proxy)
        r.add_post("/proxies/{proxy}", self._h_update_proxy)
        r.add_delete("/proxies/{proxy}", self._h_delete_proxy)
        r.add_get("/proxies/{proxy}/toxics", self._h_toxics)
        r.add_post("/proxies/{proxy}/toxics", self._h_add_toxic)
        r.add_get("/proxies/{proxy}/toxics/{toxic}", self._h_get_toxic)
        r.add_patch("/proxies/{proxy}/toxics/{toxic}", self._h_update_toxic)
        r.add_post("/proxies/{proxy}/toxics/{toxic}", self._h_update_toxic)
        r.add_delete("/proxies/{proxy}/toxics/{toxic}", self._h_delete_toxic)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request_id = secrets.token_hex(10)
        response: web.StreamResponse
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            response = _error_response(403, "User agent not allowed")
        else:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = _error_response(exc.status, exc.message)
            except web.HTTPException as exc:
                message = "404 page not found" if exc.status == 404 else (exc.reason or "error")
                response = _error_response(exc.status, message)
            except Exception as exc:  # noqa: BLE001 - the API answers 500 rather than dropping the request
                response = _error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        response.headers["X-Toxiproxy-Request-Id"] = request_id
        return response

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise bad_body("EOF")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_body(str(exc)) from None

    async def _h_version(self, request: web.Request) -> web.Response:
        return _json_response(200, {"version": VERSION})

    async def _h_proxies(self, request: web.Request) -> web.Response:
        return _json_response(200, {name: p.to_json() for name, p in self.proxies.items()})

    async def _h_create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        async with self.lock:
            proxy = await self.create_proxy(body)
            return _json_response(201, proxy.to_json())

    async def _h_get_proxy(self, request: web.Request) -> web.Response:
        return _json_response(200, self.get_proxy(request.match_info["proxy"]).to_json())

    async def _h_update_proxy(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            body = await self._body(request)
            await self.update_proxy(proxy, body)
            return _json_response(200, proxy.to_json())

    async def _h_delete_proxy(self, request: web.Request) -> web.Response:
        async with self.lock:
            await self.delete_proxy(request.match_info["proxy"])
        return web.Response(status=204)

    async def _h_reset(self, request: web.Request) -> web.Response:
        async with self.lock:
            await self.reset()
        return web.Response(status=204)

    async def _h_populate(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        async with self.lock:
            proxies, error = await self.populate(body)
        payload: dict[str, Any] = {"proxies": [p.to_json() for p in proxies]}
        if error is not None:
            payload = {"error": error.message, "status": error.status, **payload}
            return _json_response(error.status, payload)
        return _json_response(201, payload)

    async def _h_toxics(self, request: web.Request) -> web.Response:
        return _json_response(200, self.get_proxy(request.match_info["proxy"]).toxics_json())

    async def _h_add_toxic(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            toxic = self.add_toxic(proxy, await self._body(request))
            return _json_response(200, toxic.to_json())

    async def _h_get_toxic(self, request: web.Request) -> web.Response:
        proxy = self.get_proxy(request.match_info["proxy"])
        return _json_response(200, proxy.find_toxic(request.match_info["toxic"]).to_json())

    async def _h_update_toxic(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            toxic = proxy.find_toxic(request.match_info["toxic"])
            self.update_toxic(proxy, toxic, await self._body(request))
            return _json_response(200, toxic.to_json())

    async def _h_delete_toxic(self, request: web.Request) -> web.Response:
        async with self.lock:
            proxy = self.get_proxy(request.match_info["proxy"])
            self.remove_toxic(proxy, request.match_info["toxic"])
        return web.Response(status=204)


def _json_response(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def _error_response(status: int, message: str) -> web.Response:
    body = json.dumps({"error": message, "status": status}) + "\n"
    response = web.Response(status=status, text=body, content_type="text/plain", charset="utf-8")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
