"""The request gate: routing, IP weight limits and bans, path faults, API-key auth and signatures.

`RequestGate.handle` is a mixin method of `Engine` (harness.testnet.engine); both transports call it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from collections.abc import Mapping

from harness.testnet.errors import MSG, BinanceError
from harness.testnet.model import MINUTE_MS, Account, IpState, Reply, Route
from harness.testnet.params import integer
from harness.testnet.rest import ROUTES

MAX_BAN_MS = 3 * 24 * 3600 * 1000


# Memoized: in sim mode the engine verifies the very payload the in-process client has just signed,
# so the second HMAC of every signed call is a lookup (a pure function: the same digest either way).
@functools.lru_cache(maxsize=16)
def sign_payload(secret: str, payload: str) -> str:
    """Binance's signature: hex HMAC-SHA256 of the query string with the API secret."""
    mac = _keyed(secret).copy()  # the keyed state is built once per secret: a sim run signs ~50 calls a bar
    mac.update(payload.encode())
    return mac.hexdigest()


@functools.lru_cache(maxsize=64)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


class RequestGate:
    """What happens to a request before (and after) its REST handler runs."""

    def _ip(self, ip: str) -> IpState:
        st = self._ips.get(ip)
        if st is None:
            st = self._ips[ip] = IpState()
        return st

    def _charge(self, ip: str, weight: int, now: int) -> IpState:
        st = self._ip(ip)
        if st.banned_until_ms > now:
            err = BinanceError(418, -1003, f"Way too much request weight used; IP({ip}) banned until "
                                           f"{st.banned_until_ms}. Please use WebSocket Streams for live "
                                           f"updates to avoid bans.",
                               retry_after_s=math.ceil((st.banned_until_ms - now) / 1000))
            raise err
        window = now // MINUTE_MS
        if st.window != window:
            st.window, st.weight = window, 0
        st.weight += weight
        if st.weight > self.weight_limit_1m:
            st.strikes += 1
            if st.strikes > self.ban_after_429:
                st.ban_ms = min(max(self.ban_ms, st.ban_ms * 2), MAX_BAN_MS)
                st.banned_until_ms = now + st.ban_ms
                st.strikes = 0
                raise BinanceError(418, -1003, f"Way too much request weight used; IP({ip}) banned until "
                                               f"{st.banned_until_ms}.", retry_after_s=math.ceil(st.ban_ms / 1000))
            retry = math.ceil(((window + 1) * MINUTE_MS - now) / 1000)
            raise BinanceError(429, -1003, f"Too many requests; current limit of IP({ip}) is "
                                           f"{self.weight_limit_1m} requests per minute.", retry_after_s=retry)
        return st

    def handle(self, method: str, path: str, params: Mapping[str, str], *, api_key: str | None = None,
               ip: str = "127.0.0.1", payload: str | None = None, signature: str | None = None) -> Reply:
        """One REST request as Binance sees it. Returns the JSON reply or raises BinanceError.

        `payload` is the signed string (query + body without `signature`); both transports
        pass what they received so the signature is checked the same way.
        """
        method = method.upper()
        now = self.now_ms()
        self.poll()
        headers: dict[str, str] = {}
        route = ROUTES.get((method, path))
        acct: Account | None = None
        status, code = 200, None
        try:
            if route is None:
                raise BinanceError(404, -5000, f"Path not found: {method} {path}")
            st = self._charge(ip, route.weight, now)
            headers["X-MBX-USED-WEIGHT-1M"] = str(st.weight)
            for fault in self._path_faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._path_faults.remove(fault)
                    raise BinanceError(fault.status, fault.code, fault.msg or MSG.get(fault.code or 0, "Service "
                                       "Unavailable"), retry_after_s=fault.retry_after_s)
            if route.signed:
                acct = self._authenticate(api_key, ip, params, payload, signature, route)
            if route.order_count and acct is not None:
                minute, count = acct.order_window
                used = count if minute == now // MINUTE_MS else 0
                if used >= self.order_limit_1m:
                    raise BinanceError(429, -1015, f"Too many new orders; current limit is {self.order_limit_1m} "
                                                   f"orders per MINUTE.", retry_after_s=60 - (now % MINUTE_MS) // 1000)
            body = getattr(self, route.handler)(acct, params)
            if route.order_count and acct is not None:
                headers["X-MBX-ORDER-COUNT-1M"] = str(acct.order_window[1])
            return Reply(200, body, headers)
        except BinanceError as err:
            status, code = err.status, err.code
            ip_state = self._ips.get(ip)
            if ip_state is not None and route is not None:
                headers.setdefault("X-MBX-USED-WEIGHT-1M", str(ip_state.weight))
            if route is not None and route.order_count and acct is not None:
                headers["X-MBX-ORDER-COUNT-1M"] = str(acct.order_window[1])
            if err.retry_after_s is not None:
                headers["Retry-After"] = str(int(math.ceil(err.retry_after_s)))
            err.headers.update(headers)
            raise
        finally:
            self.request_log.append({"seq": next(self._req_seq), "ts": now, "method": method, "path": path,
                                     "api_key": api_key, "ip": ip, "status": status, "code": code,
                                     "weight": route.weight if route else 0})

    def _authenticate(self, api_key: str | None, ip: str, params: Mapping[str, str], payload: str | None,
                      signature: str | None, route: Route) -> Account:
        acct = self.accounts.get(api_key or "")
        if acct is None or acct.revoked:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if acct.permissions.ip_restrict and acct.ip_allowlist and ip not in acct.ip_allowlist:
            raise BinanceError(401, -2015, f"Invalid API-key, IP, or permissions for action, request ip: {ip}")
        ts = integer(params, "timestamp")
        recv = integer(params, "recvWindow", 5000)
        if not 0 < recv <= 60_000:
            raise BinanceError(400, -1021, "recvWindow must be in (0, 60000].")
        server_now = self.server_time_ms()
        if ts < server_now - recv or ts > server_now + 1000:
            raise BinanceError(400, -1021)
        if not signature or payload is None or not hmac.compare_digest(sign_payload(acct.secret, payload),
                                                                       signature.lower()):
            raise BinanceError(400, -1022)
        if route.perm == "read" and not acct.permissions.enable_reading:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if route.perm == "trade" and not (acct.permissions.enable_futures and acct.permissions.enable_reading):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return acct
