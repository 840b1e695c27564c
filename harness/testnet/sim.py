"""SimExchange: the bot's `Exchange` protocol served in-process by the testnet engine.

Every call goes through `Engine.handle` with the same method, path and parameters ccxt would
send, signed with the account's secret, so rate limits, path faults, rejects, clock skew and
permission checks behave exactly as on the HTTP server. No sockets, no sleeping: each coroutine
completes as soon as the engine answers (it only yields to the event loop once).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from bot.core.clock import Clock
from bot.core.market import Bar
from bot.io.exchange import (
    ApiRestrictions,
    Balance,
    BookTop,
    ExchangeError,
    OrderRequest,
    OrderState,
    Position,
    error_from_binance,
    kline_interval,
)
from harness.testnet.engine import Engine
from harness.testnet.errors import BinanceError
from harness.testnet.gate import sign_payload

_STATUS = {"NEW": "new", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
           "REJECTED": "rejected", "EXPIRED": "expired"}


def order_state_from_binance(raw: Mapping[str, Any]) -> OrderState:
    """Convert Binance's order JSON to the bot's OrderState."""
    price = float(raw["price"])
    avg = float(raw["avgPrice"])
    return OrderState(
        client_id=str(raw["clientOrderId"]), exchange_id=str(raw["orderId"]), symbol=str(raw["symbol"]),
        side="buy" if raw["side"] == "BUY" else "sell", type="limit" if raw["type"] == "LIMIT" else "market",
        status=_STATUS[raw["status"]], qty=float(raw["origQty"]), filled_qty=float(raw["executedQty"]),  # type: ignore[arg-type]
        avg_price=avg if avg > 0 else None, price=price if price > 0 else None,
        reduce_only=bool(raw["reduceOnly"]), ts_ms=int(raw["updateTime"]))


class SimExchange:
    """In-process `bot.io.exchange.Exchange` over an `Engine`; timestamps come from `clock`."""

    def __init__(self, engine: Engine, api_key: str, secret: str, *, clock: Clock | None = None,
                 ip: str = "127.0.0.1", recv_window_ms: int = 10_000) -> None:
        self.engine = engine
        self.api_key = api_key
        self.secret = secret
        self.clock = clock or engine.clock
        self.ip = ip
        self.recv_window_ms = recv_window_ms
        self.closed = False
        self.last_headers: dict[str, str] = {}

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                    signed: bool = True) -> Any:
        if self.closed:
            raise ExchangeError("SimExchange is closed")
        await asyncio.sleep(0)
        query: dict[str, str] = {k: _s(v) for k, v in (params or {}).items() if v is not None}
        payload = signature = None
        if signed:
            query = {"timestamp": str(self.clock.now_ms()), **query, "recvWindow": str(self.recv_window_ms)}
            payload = query_string(query)
            signature = sign_payload(self.secret, payload)
        try:
            reply = self.engine.handle(method, path, query, api_key=self.api_key, ip=self.ip,
                                       payload=payload, signature=signature)
        except BinanceError as err:
            self.last_headers = err.headers  # the engine keeps no reference to a reply's headers
            raise error_from_binance(err.status, err.code, err.msg, err.retry_after_s) from err
        self.last_headers = reply.headers
        return reply.body

    async def fetch_time_ms(self) -> int:
        body = await self._call("GET", "/fapi/v1/time", signed=False)
        return int(body["serverTime"])

    async def fetch_balance(self) -> Balance:
        body = await self._call("GET", "/fapi/v3/account")
        return Balance(wallet=float(body["totalWalletBalance"]), unrealized_pnl=float(body["totalUnrealizedProfit"]),
                       available=float(body["availableBalance"]))

    async def fetch_positions(self, symbol: str) -> list[Position]:
        rows = await self._call("GET", "/fapi/v3/positionRisk", {"symbol": symbol})
        return [Position(symbol=r["symbol"], qty=float(r["positionAmt"]), entry_price=float(r["entryPrice"]),
                         unrealized_pnl=float(r["unRealizedProfit"])) for r in rows if float(r["positionAmt"]) != 0]

    async def fetch_book_top(self, symbol: str) -> BookTop:
        body = await self._call("GET", "/fapi/v1/ticker/bookTicker", {"symbol": symbol}, signed=False)
        return BookTop(symbol=body["symbol"], bid=float(body["bidPrice"]), ask=float(body["askPrice"]),
                       ts_ms=int(body["time"]))

    async def fetch_open_orders(self, symbol: str) -> list[OrderState]:
        rows = await self._call("GET", "/fapi/v1/openOrders", {"symbol": symbol})
        return [order_state_from_binance(r) for r in rows]

    async def fetch_order(self, symbol: str, client_id: str) -> OrderState:
        body = await self._call("GET", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id})
        return order_state_from_binance(body)

    async def create_order(self, request: OrderRequest) -> OrderState:
        params: dict[str, Any] = {
            "symbol": request.symbol, "side": request.side.upper(), "newClientOrderId": request.client_id,
            "newOrderRespType": "RESULT", "type": request.type.upper(), "quantity": request.qty,
        }
        if request.type == "limit":
            params["price"] = request.price
            params["timeInForce"] = request.time_in_force
        if request.reduce_only:
            params["reduceOnly"] = "true"
        body = await self._call("POST", "/fapi/v1/order", params)
        return order_state_from_binance(body)

    async def cancel_order(self, symbol: str, client_id: str) -> OrderState:
        body = await self._call("DELETE", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id})
        return order_state_from_binance(body)

    async def fetch_klines(self, symbol: str, interval_ms: int, limit: int) -> list[Bar]:
        rows = await self._call("GET", "/fapi/v1/klines",
                                {"symbol": symbol, "interval": kline_interval(interval_ms), "limit": limit},
                                signed=False)
        return [Bar(int(r[0]) + interval_ms, float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
                for r in rows]

    async def cancel_all_orders(self, symbol: str) -> None:
        await self._call("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol})

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        await self._call("POST", "/fapi/v1/countdownCancelAll", {"symbol": symbol, "countdownTime": countdown_ms})

    async def fetch_api_restrictions(self) -> ApiRestrictions:
        body = await self._call("GET", "/sapi/v1/account/apiRestrictions")
        return ApiRestrictions(
            enable_reading=bool(body["enableReading"]), enable_futures=bool(body["enableFutures"]),
            enable_withdrawals=bool(body["enableWithdrawals"]),
            enable_internal_transfer=bool(body["enableInternalTransfer"]),
            permits_universal_transfer=bool(body["permitsUniversalTransfer"]), ip_restrict=bool(body["ipRestrict"]))

    async def close(self) -> None:
        self.closed = True


# What urlencode (quote_plus) leaves as it is: a query made only of these needs no quoting.
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def query_string(query: Mapping[str, str]) -> str:
    """`urlencode(query)`, byte for byte, without its per-character quoting when nothing needs it
    (symbols, numbers, client ids): the in-process exchange encodes every request it signs."""
    if _PLAIN.issuperset("".join(itertools.chain.from_iterable(query.items()))):
        return "&".join([f"{k}={v}" for k, v in query.items()])
    return urlencode(query)


def _s(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10f}".rstrip("0").rstrip(".")
    return str(value)
