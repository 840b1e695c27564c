"""The testnet's admin API: the JSON routes under `/__admin/` (docs/testnet.md, "Admin API").

Keys, prices, spreads, feed and exchange faults, rate limits, and the request and order logs, each
route a thin call of an `Engine` method; loopback clients only unless the server is built with
`admin_loopback_only=False`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from harness.testnet.errors import BinanceError
from harness.testnet.model import LOOPBACK_IPS

if TYPE_CHECKING:
    from harness.testnet.server import TestnetServer

Handler = Callable[[dict[str, Any], web.Request], Any]


def _is_loopback(ip: str | None) -> bool:
    return bool(ip) and (ip in LOOPBACK_IPS or ip.startswith("127.") or ip.startswith("::ffff:127."))  # type: ignore[union-attr]


class AdminApi:
    """The route table of one server; `dispatch` answers a request under `/__admin/`."""

    def __init__(self, server: TestnetServer) -> None:
        self.server = server
        self.routes: dict[tuple[str, str], Handler] = self._routes()

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.server.admin_loopback_only and not _is_loopback(request.remote):
            return web.json_response({"error": "the admin API answers loopback clients only"}, status=403)
        name = request.path[len("/__admin/"):].strip("/")
        handler = self.routes.get((request.method, name))
        if handler is None:
            allowed = sorted(f"{m} /__admin/{n}" for m, n in self.routes)
            return web.json_response({"error": f"no admin route {request.method} {request.path}",
                                      "routes": allowed}, status=404)
        body: dict[str, Any] = {}
        if request.body_exists:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "body must be a JSON object"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            result = handler(body, request)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except BinanceError as exc:
            return web.json_response({"error": exc.msg, "code": exc.code}, status=400)
        return web.json_response({"ok": True, "result": result})

    def _routes(self) -> dict[tuple[str, str], Handler]:
        server, e = self.server, self.server.engine

        def req(body: dict[str, Any], name: str) -> Any:
            if name not in body:
                raise ValueError(f"missing field {name!r}")
            return body[name]

        def opt_int(body: dict[str, Any], name: str) -> int | None:
            return None if body.get(name) is None else int(body[name])

        def create_key(b: dict[str, Any], r: web.Request) -> Any:
            acct = e.create_key(str(req(b, "api_key")), str(req(b, "secret")), permissions=b.get("permissions"),
                                ip_allowlist=b.get("ip_allowlist", list(LOOPBACK_IPS)), balance=b.get("balance"))
            return {"api_key": acct.api_key, "permissions": acct.permissions.to_binance(),
                    "ip_allowlist": acct.ip_allowlist, "wallet": acct.wallet}

        def revoke_key(b: dict[str, Any], r: web.Request) -> Any:
            e.revoke_key(str(req(b, "api_key")))
            return {"api_key": b["api_key"], "revoked": True}

        def rotate_key(b: dict[str, Any], r: web.Request) -> Any:
            acct = e.rotate_key(str(req(b, "api_key")), str(req(b, "new_api_key")), str(req(b, "secret")),
                                permissions=b.get("permissions"),
                                ip_allowlist=b.get("ip_allowlist", list(LOOPBACK_IPS)))
            return {"api_key": acct.api_key, "permissions": acct.permissions.to_binance(),
                    "ip_allowlist": acct.ip_allowlist, "wallet": acct.wallet}

        def permissions(b: dict[str, Any], r: web.Request) -> Any:
            perms = e.set_permissions(str(req(b, "api_key")), b.get("permissions"), ip_allowlist=b.get("ip_allowlist"))
            return perms.to_binance()

        def keys(b: dict[str, Any], r: web.Request) -> Any:
            return [{"api_key": a.api_key, "revoked": a.revoked, "permissions": a.permissions.to_binance(),
                     "ip_allowlist": a.ip_allowlist, **e.balance_summary(a),
                     "positions": {s: {"qty": p.qty, "entry_price": p.entry_price}
                                   for s, p in a.positions.items() if p.qty}}
                    for a in e.accounts.values()]

        def state(b: dict[str, Any], r: web.Request) -> Any:
            markets = {}
            for s, m in e.markets.items():
                bid, ask = e.book(s)
                markets[s] = {"price": m.price, "bid": bid, "ask": ask, "spread_bps": m.spread_bps,
                              "regime": m.walk.regime, "bar_open_time": m.open_time}
            return {"server_time_ms": e.server_time_ms(), "bar_ms": e.bar_ms, "bar_real_ms": server.bar_real_ms,
                    "markets": markets, "faults": e.faults(), "ws_clients": len(server.conns),
                    "rate_limits": {"weight_limit_1m": e.weight_limit_1m, "order_limit_1m": e.order_limit_1m,
                                    "ban_after_429": e.ban_after_429, "ban_ms": e.ban_ms}}

        def price(b: dict[str, Any], r: web.Request) -> Any:
            return {"price": e.set_price(str(req(b, "symbol")), float(req(b, "price")))}

        def jump(b: dict[str, Any], r: web.Request) -> Any:
            return {"price": e.jump_price(str(req(b, "symbol")), float(req(b, "pct")))}

        def path(b: dict[str, Any], r: web.Request) -> Any:
            prices = [float(p) for p in req(b, "prices")]
            e.follow_path(str(req(b, "symbol")), prices, int(req(b, "step_ms")))
            return {"points": len(prices)}

        def freeze(b: dict[str, Any], r: web.Request) -> Any:
            e.freeze(str(req(b, "symbol")), bool(b.get("frozen", True)))
            return {}

        def spread(b: dict[str, Any], r: web.Request) -> Any:
            e.widen_spread(float(req(b, "bps")), symbol=b.get("symbol"), duration_ms=opt_int(b, "duration_ms"))
            return {}

        def spread_reset(b: dict[str, Any], r: web.Request) -> Any:
            e.reset_spread(b.get("symbol"))
            return {}

        def stall(b: dict[str, Any], r: web.Request) -> Any:
            e.stall_feed(opt_int(b, "duration_ms"))
            return {}

        def lag(b: dict[str, Any], r: web.Request) -> Any:
            e.set_feed_lag(int(req(b, "lag_ms")), opt_int(b, "duration_ms"))
            return {}

        def feed_reset(b: dict[str, Any], r: web.Request) -> Any:
            e.reset_feed()
            return {}

        def fail(b: dict[str, Any], r: web.Request) -> Any:
            e.fail_next(str(req(b, "path")), int(req(b, "count")), int(req(b, "status")),
                        None if b.get("code") is None else int(b["code"]), msg=b.get("msg"),
                        retry_after_s=None if b.get("retry_after_s") is None else float(b["retry_after_s"]),
                        method=b.get("method"))
            return {}

        def reject(b: dict[str, Any], r: web.Request) -> Any:
            e.reject_next_orders(int(req(b, "count")), int(b.get("code", -2019)), b.get("msg"))
            return {}

        def unknown(b: dict[str, Any], r: web.Request) -> Any:
            e.unknown_outcome_next(int(req(b, "count")), str(b.get("mode", "503")))
            return {}

        def skew(b: dict[str, Any], r: web.Request) -> Any:
            e.set_clock_skew(int(req(b, "offset_ms")))
            return {"server_time_ms": e.server_time_ms()}

        def ratelimit(b: dict[str, Any], r: web.Request) -> Any:
            e.set_rate_limits(weight_limit_1m=opt_int(b, "weight_limit_1m"),
                              order_limit_1m=opt_int(b, "order_limit_1m"),
                              ban_after_429=opt_int(b, "ban_after_429"), ban_ms=opt_int(b, "ban_ms"))
            return {}

        def reset(b: dict[str, Any], r: web.Request) -> Any:
            e.reset_faults()
            return {}

        def requests_log(b: dict[str, Any], r: web.Request) -> Any:
            return e.read_request_log(int(r.query.get("since", 0)))

        def orders_log(b: dict[str, Any], r: web.Request) -> Any:
            return e.read_order_log(int(r.query.get("since", 0)), r.query.get("api_key"))

        def bar(b: dict[str, Any], r: web.Request) -> Any:
            symbols = [str(b["symbol"])] if b.get("symbol") else list(e.markets)
            out = {}
            for s in symbols:
                closed = e.roll_bar(s)
                server.push_closed_bar(s, closed)
                out[s] = {"open_time": closed.open_time, "close": closed.close}
            return out

        return {
            ("GET", "state"): state, ("GET", "keys"): keys,
            ("POST", "keys"): create_key, ("POST", "keys/revoke"): revoke_key,
            ("POST", "keys/rotate"): rotate_key,
            ("POST", "keys/permissions"): permissions,
            ("POST", "price"): price, ("POST", "price/jump"): jump, ("POST", "price/path"): path,
            ("POST", "price/freeze"): freeze, ("POST", "bar"): bar,
            ("POST", "spread"): spread, ("POST", "spread/reset"): spread_reset,
            ("POST", "feed/stall"): stall, ("POST", "feed/lag"): lag, ("POST", "feed/reset"): feed_reset,
            ("POST", "fail"): fail, ("POST", "reject"): reject, ("POST", "unknown_outcome"): unknown,
            ("POST", "clock_skew"): skew, ("POST", "ratelimit"): ratelimit, ("POST", "reset"): reset,
            ("GET", "requests"): requests_log, ("GET", "orders"): orders_log,
        }
