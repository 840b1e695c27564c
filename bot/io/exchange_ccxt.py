"""`CcxtExchange`: the bot's Exchange protocol over ccxt `binanceusdm` (async; ccxt.pro for streams).

`SyncCcxtExchange` offers the same calls synchronously (plain ccxt over `requests`) for tools
that must work without an event loop, above all the standalone kill switch.

Both point either at the real venue (ccxt's default URLs) or at a Binance-compatible testnet
(`rest_url` / `ws_url`, rewritten exactly as ../shared/specs/binance-usdm-subset.md says).
Every ccxt exception is classified into the bot's error family (`bot.io.exchange`) from the HTTP
status and Binance code of the reply when there was one, else from the ccxt exception class, and
every payload is validated: a malformed reply to an order placement is an unknown outcome (query
it by client id, never resend); a malformed reply to a read is `MalformedReplyError`.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any

import ccxt  # type: ignore[import-untyped]

from bot.core.market import Bar
from bot.io.exchange import (
    ApiRestrictions,
    AuthError,
    Balance,
    BookTop,
    ClockSkewError,
    ExchangeError,
    ExchangeUnavailableError,
    NotFoundError,
    OrderRejectedError,
    OrderRequest,
    OrderState,
    Position,
    RateLimitedError,
    UnknownOutcomeError,
    error_from_binance,
    kline_interval,
)

FAPI_ORIGIN = "https://fapi.binance.com"
SAPI_ORIGIN = "https://api.binance.com"

_STATUS = {"NEW": "new", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
           "REJECTED": "rejected", "EXPIRED": "expired", "EXPIRED_IN_MATCH": "expired"}
_CODE_RE = re.compile(r'"code"\s*:\s*(-?\d+)')


class MalformedReplyError(ExchangeError):
    """A reply to a read failed validation (missing field, NaN, negative, wrong type)."""


class MalformedOrderReplyError(UnknownOutcomeError):
    """The reply to an order placement failed validation: the order may exist; query it, never resend."""


# --------------------------------------------------------------------------- configuration


def configure_client(ex: Any, *, rest_url: str | None = None, ws_url: str | None = None) -> Any:
    """Point a ccxt binanceusdm client at a testnet (spec: rewrite fapi*/sapi*, restore the linear table)."""
    ex.options["fetchCurrencies"] = False
    ex.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
    if rest_url is not None:
        base = rest_url.rstrip("/")
        api = ex.urls["api"]
        for name, url in list(api.items()):
            if not isinstance(url, str):
                continue
            if name.startswith("fapi"):
                api[name] = url.replace(FAPI_ORIGIN, base)
            elif name.startswith("sapi"):
                api[name] = url.replace(SAPI_ORIGIN, base)
        if ws_url is not None and isinstance(api.get("ws"), dict):
            api["ws"]["linear"] = ws_url
        linear = ex.exceptions["linear"]
        ex.get_exceptions_by_url = lambda url, kind: linear.get(kind, {})
    return ex


def _client_config(api_key: str, secret: str, timeout_ms: int, enable_rate_limit: bool) -> dict[str, Any]:
    return {"apiKey": api_key, "secret": secret, "enableRateLimit": enable_rate_limit, "timeout": timeout_ms,
            "options": {"fetchCurrencies": False, "adjustForTimeDifference": False, "timeDifference": 0,
                        "recvWindow": 10_000}}


_Reply = tuple[int | None, Mapping[str, str], str | None]
# The HTTP reply of the call in flight, per asyncio task: calls made concurrently (asyncio.gather)
# each classify their own error from their own reply, never from a sibling's.
_CALL_REPLY: ContextVar[_Reply | None] = ContextVar("gameday_ccxt_reply", default=None)


class _HttpTrace:
    """Records the HTTP replies ccxt sees (status, headers, body), via its `on_rest_response` hook:
    the latest of the client (`headers`) and the one of the current call (`call_reply`)."""

    def __init__(self, ex: Any) -> None:
        self.headers: Mapping[str, str] = {}
        original: Callable[..., Any] = ex.on_rest_response

        def hook(code: Any, reason: Any, url: Any, method: Any, headers: Any, body: Any, *rest: Any) -> Any:
            self.headers = dict(headers or {})
            _CALL_REPLY.set((int(code) if code is not None else None, self.headers,
                             body if isinstance(body, str) else None))
            return original(code, reason, url, method, headers, body, *rest)

        ex.on_rest_response = hook

    @staticmethod
    def reset() -> None:
        _CALL_REPLY.set(None)

    @staticmethod
    def call_reply() -> _Reply:
        return _CALL_REPLY.get() or (None, {}, None)


# --------------------------------------------------------------------------- error classification


def parse_retry_after(headers: Mapping[str, str] | None, now_s: float | None = None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not headers:
        return None
    value = None
    for name, v in headers.items():
        if name.lower() == "retry-after":
            value = str(v).strip()
            break
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now_s is None else now_s)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _binance_code(body: str | None, message: str) -> tuple[int | None, str]:
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and "code" in data:
            try:
                return int(data["code"]), str(data.get("msg", ""))
            except (TypeError, ValueError):
                pass
    match = _CODE_RE.search(message)
    return (int(match.group(1)) if match else None), message


def _not_sent(exc: BaseException) -> bool:
    """True when the request provably never reached the exchange (connect refused, DNS failure)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        name = type(node).__name__
        if isinstance(node, (ConnectionRefusedError, socket.gaierror)) or name in (
                "ClientConnectorError", "NewConnectionError", "ClientConnectorDNSError", "NameResolutionError"):
            return True
        for arg in getattr(node, "args", ()):
            if isinstance(arg, BaseException) and id(arg) not in seen:
                if _not_sent(arg):
                    return True
        reason = getattr(node, "reason", None)
        if isinstance(reason, BaseException) and _not_sent(reason):
            return True
        node = node.__cause__ or node.__context__
    return False


def classify(exc: BaseException, *, placing: bool, status: int | None = None,
             headers: Mapping[str, str] | None = None, body: str | None = None) -> ExchangeError:
    """Map a ccxt exception (plus the HTTP reply it came from, if any) to the bot's error family.

    `placing`: the call was an order placement, where a lost or 5xx reply means UNKNOWN outcome.
    """
    if isinstance(exc, ExchangeError):
        return exc
    message = str(exc)[:500]
    retry_after = parse_retry_after(headers)
    if status is not None and status >= 400:
        code, msg = _binance_code(body, message)
        err = error_from_binance(status, code, msg or message, retry_after)
        if isinstance(err, UnknownOutcomeError) and not placing:
            return ExchangeUnavailableError(str(err), status=status, code=code)
        if type(err) is ExchangeError:  # an unusual reply; let ccxt's class refine it
            refined = classify(exc, placing=placing)
            refined.status, refined.code = status, code
            return refined
        return err
    code, _ = _binance_code(None, message)
    if isinstance(exc, ccxt.InvalidNonce):
        return ClockSkewError(message, status=status, code=code if code is not None else -1021)
    if isinstance(exc, ccxt.DDoSProtection):
        match = re.search(r"\b(418|429)\b", message)
        return RateLimitedError(message, status=int(match.group(1)) if match else 429, code=code,
                                retry_after_s=retry_after)
    if isinstance(exc, ccxt.RequestTimeout):
        return (UnknownOutcomeError if placing else ExchangeUnavailableError)(message, status=status, code=code)
    if isinstance(exc, ccxt.NetworkError):
        if placing and not _not_sent(exc):
            return UnknownOutcomeError(message, status=status, code=code)
        return ExchangeUnavailableError(message, status=status, code=code)
    if isinstance(exc, ccxt.OperationFailed):  # BadResponse, NullResponse, CancelPending
        return (UnknownOutcomeError if placing else ExchangeUnavailableError)(message, status=status, code=code)
    if isinstance(exc, ccxt.OrderNotFound):
        return NotFoundError(message, status=status, code=code if code is not None else -2013)
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.InsufficientFunds)):
        return OrderRejectedError(message, status=status, code=code)
    if isinstance(exc, ccxt.AuthenticationError):
        return AuthError(message, status=status, code=code)
    if isinstance(exc, ccxt.BaseError):
        return ExchangeError(message, status=status, code=code)
    if placing:
        return MalformedOrderReplyError(f"unexpected {type(exc).__name__} placing an order: {message}")
    return MalformedReplyError(f"unexpected {type(exc).__name__} reading the exchange: {message}")


# --------------------------------------------------------------------------- payload validation


def _field(raw: Mapping[str, Any], name: str, what: str) -> Any:
    if not isinstance(raw, Mapping):
        raise MalformedReplyError(f"{what}: expected a JSON object, got {type(raw).__name__}")
    if name not in raw or raw[name] is None:
        raise MalformedReplyError(f"{what}: missing field {name!r}")
    return raw[name]


def _number(raw: Mapping[str, Any], name: str, what: str, *, signed: bool = False, positive: bool = False) -> float:
    value = _field(raw, name, what)
    if isinstance(value, bool):
        raise MalformedReplyError(f"{what}: field {name!r} is a boolean, expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MalformedReplyError(f"{what}: field {name!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise MalformedReplyError(f"{what}: field {name!r} is not finite: {value!r}")
    if not signed and number < 0:
        raise MalformedReplyError(f"{what}: field {name!r} is negative: {value!r}")
    if positive and number <= 0:
        raise MalformedReplyError(f"{what}: field {name!r} must be > 0: {value!r}")
    return number


def _integer(raw: Mapping[str, Any], name: str, what: str) -> int:
    number = _number(raw, name, what, positive=True)
    if number != int(number):
        raise MalformedReplyError(f"{what}: field {name!r} is not an integer: {raw[name]!r}")
    return int(number)


def _flag(raw: Mapping[str, Any], name: str, what: str) -> bool:
    value = _field(raw, name, what)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MalformedReplyError(f"{what}: field {name!r} is not a boolean: {value!r}")


def _text(raw: Mapping[str, Any], name: str, what: str) -> str:
    value = _field(raw, name, what)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise MalformedReplyError(f"{what}: field {name!r} is not a non-empty id: {value!r}")
    return str(value)


def parse_order(raw: Any) -> OrderState:
    """Binance order JSON -> OrderState; MalformedReplyError on anything unusable."""
    what = "order reply"
    if not isinstance(raw, Mapping):
        raise MalformedReplyError(f"{what}: expected a JSON object, got {type(raw).__name__}: {str(raw)[:80]!r}")
    status = _text(raw, "status", what)
    if status not in _STATUS:
        raise MalformedReplyError(f"{what}: unknown status {status!r}")
    side = _text(raw, "side", what).upper()
    if side not in ("BUY", "SELL"):
        raise MalformedReplyError(f"{what}: unknown side {side!r}")
    type_ = _text(raw, "type", what).upper()
    if type_ not in ("MARKET", "LIMIT"):
        raise MalformedReplyError(f"{what}: unexpected order type {type_!r}")
    qty = _number(raw, "origQty", what, positive=True)
    filled = _number(raw, "executedQty", what)
    if filled > qty * (1 + 1e-9):
        raise MalformedReplyError(f"{what}: executedQty {filled} exceeds origQty {qty}")
    avg = _number(raw, "avgPrice", what) if raw.get("avgPrice") is not None else 0.0
    if filled > 0 and avg <= 0:
        raise MalformedReplyError(f"{what}: executedQty {filled} with no average price")
    price = _number(raw, "price", what) if raw.get("price") is not None else 0.0
    if type_ == "LIMIT" and price <= 0:
        raise MalformedReplyError(f"{what}: limit order without a price")
    ts_name = "updateTime" if raw.get("updateTime") not in (None, 0, "0") else "time"
    return OrderState(
        client_id=_text(raw, "clientOrderId", what), exchange_id=_text(raw, "orderId", what),
        symbol=_text(raw, "symbol", what), side="buy" if side == "BUY" else "sell",
        type="limit" if type_ == "LIMIT" else "market", status=_STATUS[status],  # type: ignore[arg-type]
        qty=qty, filled_qty=filled, avg_price=avg if avg > 0 else None, price=price if price > 0 else None,
        reduce_only=_flag(raw, "reduceOnly", what) if "reduceOnly" in raw else False,
        ts_ms=_integer(raw, ts_name, what))


def parse_balance(raw: Any) -> Balance:
    what = "account reply"
    wallet = _number(raw, "totalWalletBalance", what)
    upnl = _number(raw, "totalUnrealizedProfit", what, signed=True)
    available = _number(raw, "availableBalance", what, signed=True)
    return Balance(wallet=wallet, unrealized_pnl=upnl, available=available)


def parse_position(raw: Any) -> Position:
    what = "position reply"
    qty = _number(raw, "positionAmt", what, signed=True)
    entry = _number(raw, "entryPrice", what)
    if qty != 0 and entry <= 0:
        raise MalformedReplyError(f"{what}: open position {qty} without an entry price")
    upnl_name = "unRealizedProfit" if "unRealizedProfit" in raw else "unrealizedProfit"
    return Position(symbol=_text(raw, "symbol", what), qty=qty, entry_price=entry,
                    unrealized_pnl=_number(raw, upnl_name, what, signed=True))


def parse_book(raw: Any, symbol: str) -> BookTop:
    what = "bookTicker reply"
    bid = _number(raw, "bidPrice", what, positive=True)
    ask = _number(raw, "askPrice", what, positive=True)
    if bid > ask:
        raise MalformedReplyError(f"{what}: crossed book bid {bid} > ask {ask}")
    got = _text(raw, "symbol", what)
    if got != symbol:
        raise MalformedReplyError(f"{what}: asked for {symbol}, got {got}")
    ts_name = "time" if raw.get("time") is not None else "T"
    return BookTop(symbol=got, bid=bid, ask=ask, ts_ms=_integer(raw, ts_name, what))


def parse_kline(raw: Any, interval_ms: int) -> Bar:
    """One ccxt OHLCV row [open ms, open, high, low, close, volume] -> Bar (ts_ms = close time)."""
    what = "klines reply"
    if not isinstance(raw, (list, tuple)) or len(raw) < 6:
        raise MalformedReplyError(f"{what}: expected [time, open, high, low, close, volume], got {str(raw)[:80]!r}")
    row = dict(zip(("time", "open", "high", "low", "close", "volume"), raw[:6], strict=True))
    opened = _integer(row, "time", what)
    o, h, low, c = (_number(row, name, what, positive=True) for name in ("open", "high", "low", "close"))
    bar = Bar(opened + interval_ms, o, h, low, c, _number(row, "volume", what))
    if not bar.is_sane():
        raise MalformedReplyError(f"{what}: inconsistent bar at {opened}: o={o} h={h} l={low} c={c}")
    return bar


def parse_restrictions(raw: Any) -> ApiRestrictions:
    what = "apiRestrictions reply"
    return ApiRestrictions(
        enable_reading=_flag(raw, "enableReading", what), enable_futures=_flag(raw, "enableFutures", what),
        enable_withdrawals=_flag(raw, "enableWithdrawals", what),
        enable_internal_transfer=_flag(raw, "enableInternalTransfer", what),
        permits_universal_transfer=_flag(raw, "permitsUniversalTransfer", what),
        ip_restrict=_flag(raw, "ipRestrict", what))


def _check_request(request: OrderRequest) -> None:
    """Refuse to send what the exchange must not see (NaN, negative, a limit without price)."""
    problems = []
    if not (isinstance(request.qty, (int, float)) and math.isfinite(request.qty) and request.qty > 0):
        problems.append(f"qty {request.qty!r} must be a finite number > 0")
    if request.type == "limit":
        if request.price is None or not math.isfinite(request.price) or request.price <= 0:
            problems.append(f"limit price {request.price!r} must be a finite number > 0")
    elif request.price is not None:
        problems.append("a market order carries no price")
    if not request.client_id or len(request.client_id) > 36:
        problems.append(f"client id {request.client_id!r} must be 1-36 characters")
    if request.side not in ("buy", "sell"):
        problems.append(f"side {request.side!r}")
    if problems:
        raise OrderRejectedError("order not sent: " + "; ".join(problems))


def _order_params(request: OrderRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"newClientOrderId": request.client_id, "newOrderRespType": "RESULT"}
    if request.type == "limit":
        params["timeInForce"] = request.time_in_force
    if request.reduce_only:
        params["reduceOnly"] = True
    return params


def _placed(order: Any, request: OrderRequest) -> OrderState:
    """Validate the reply to create_order: anything unusable means UNKNOWN outcome."""
    info = order.get("info") if isinstance(order, Mapping) else order
    if not isinstance(order, Mapping) or order.get("id") is None or not isinstance(info, Mapping):
        raise MalformedOrderReplyError(f"order {request.client_id}: reply carries no order id "
                                       f"({str(info)[:80]!r}); outcome unknown")
    try:
        state = parse_order(info)
    except MalformedReplyError as exc:
        raise MalformedOrderReplyError(f"order {request.client_id}: {exc}; outcome unknown") from None
    if state.client_id != request.client_id:
        raise MalformedOrderReplyError(f"order {request.client_id}: reply is for client id {state.client_id}")
    return state


# --------------------------------------------------------------------------- async


class CcxtExchange:
    """The async `Exchange` over ccxt.pro binanceusdm (REST calls + `client` for WebSocket streams)."""

    def __init__(self, api_key: str, secret: str, *, rest_url: str | None = None, ws_url: str | None = None,
                 timeout_ms: int = 10_000, enable_rate_limit: bool | None = None, client: Any = None) -> None:
        if client is None:
            import ccxt.pro as ccxt_pro  # type: ignore[import-untyped]

            client = ccxt_pro.binanceusdm(_client_config(
                api_key, secret, timeout_ms, rest_url is None if enable_rate_limit is None else enable_rate_limit))
        self.client = configure_client(client, rest_url=rest_url, ws_url=ws_url)
        self._trace = _HttpTrace(self.client)
        self._markets_loaded = False

    @property
    def last_response_headers(self) -> Mapping[str, str]:
        return self._trace.headers

    def set_time_offset_ms(self, offset_ms: int) -> None:
        """Sign with server time: offset = server - local (from a -1021 resync)."""
        self.client.options["timeDifference"] = -int(offset_ms)

    async def _call(self, fn: Callable[..., Any], *args: Any, placing: bool = False) -> Any:
        self._trace.reset()
        try:
            return await fn(*args)
        except Exception as exc:
            status, headers, body = self._trace.call_reply()
            raise classify(exc, placing=placing, status=status, headers=headers, body=body) from exc

    async def _market(self, symbol: str) -> str:
        if not self._markets_loaded:
            await self._call(self.client.load_markets)
            self._markets_loaded = True
        markets = self.client.markets_by_id.get(symbol)
        if not markets:
            raise ExchangeError(f"unknown symbol {symbol!r} on this venue")
        return str(markets[0]["symbol"])

    async def load_markets(self) -> None:
        await self._call(self.client.load_markets)
        self._markets_loaded = True

    async def fetch_time_ms(self) -> int:
        value = await self._call(self.client.fetch_time)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise MalformedReplyError(f"time reply: serverTime {value!r} is not a positive integer")
        return int(value)

    async def fetch_balance(self) -> Balance:
        reply = await self._call(self.client.fetch_balance)
        return parse_balance(reply.get("info") if isinstance(reply, Mapping) else reply)

    async def fetch_positions(self, symbol: str) -> list[Position]:
        unified = await self._market(symbol)
        rows = await self._call(self.client.fetch_positions, [unified])
        return _positions(rows, symbol)

    async def fetch_all_positions(self) -> list[Position]:
        if not self._markets_loaded:
            await self.load_markets()
        rows = await self._call(self.client.fetch_positions)
        return _positions(rows, None)

    async def fetch_book_top(self, symbol: str) -> BookTop:
        raw = await self._call(self.client.fapiPublicGetTickerBookTicker, {"symbol": symbol})
        return parse_book(raw, symbol)

    async def fetch_open_orders(self, symbol: str) -> list[OrderState]:
        unified = await self._market(symbol)
        orders = await self._call(self.client.fetch_open_orders, unified)
        return _orders(orders)

    async def fetch_order(self, symbol: str, client_id: str) -> OrderState:
        unified = await self._market(symbol)
        order = await self._call(self.client.fetch_order, None, unified, {"origClientOrderId": client_id})
        return parse_order(order.get("info") if isinstance(order, Mapping) else order)

    async def create_order(self, request: OrderRequest) -> OrderState:
        _check_request(request)
        unified = await self._market(request.symbol)
        order = await self._call(self.client.create_order, unified, request.type, request.side, request.qty,
                                 request.price, _order_params(request), placing=True)
        return _placed(order, request)

    async def cancel_order(self, symbol: str, client_id: str) -> OrderState:
        unified = await self._market(symbol)
        order = await self._call(self.client.cancel_order, None, unified, {"origClientOrderId": client_id})
        return parse_order(order.get("info") if isinstance(order, Mapping) else order)

    async def cancel_all_orders(self, symbol: str) -> None:
        unified = await self._market(symbol)
        await self._call(self.client.cancel_all_orders, unified)

    async def fetch_klines(self, symbol: str, interval_ms: int, limit: int) -> list[Bar]:
        timeframe = kline_interval(interval_ms)
        unified = await self._market(symbol)
        rows = await self._call(self.client.fetch_ohlcv, unified, timeframe, None, limit)
        if not isinstance(rows, list):
            raise MalformedReplyError(f"klines reply: expected a list, got {type(rows).__name__}")
        return [parse_kline(row, interval_ms) for row in rows]

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        if countdown_ms < 0:
            raise OrderRejectedError(f"countdown {countdown_ms} ms must be >= 0")
        await self._call(self.client.fapiPrivatePostCountdownCancelAll,
                         {"symbol": symbol, "countdownTime": int(countdown_ms)})

    async def fetch_api_restrictions(self) -> ApiRestrictions:
        return parse_restrictions(await self._call(self.client.sapiGetAccountApiRestrictions))

    async def close(self) -> None:
        await self.client.close()


def _positions(rows: Any, symbol: str | None) -> list[Position]:
    if not isinstance(rows, list):
        raise MalformedReplyError(f"positions reply: expected a list, got {type(rows).__name__}")
    out = []
    for row in rows:
        pos = parse_position(row.get("info") if isinstance(row, Mapping) else row)
        if pos.qty != 0 and (symbol is None or pos.symbol == symbol):
            out.append(pos)
    return out


def _orders(orders: Any) -> list[OrderState]:
    if not isinstance(orders, list):
        raise MalformedReplyError(f"open orders reply: expected a list, got {type(orders).__name__}")
    return [parse_order(o.get("info") if isinstance(o, Mapping) else o) for o in orders]


# --------------------------------------------------------------------------- sync


class SyncCcxtExchange:
    """The same calls, synchronous (plain ccxt over `requests`), for tools without an event loop."""

    def __init__(self, api_key: str, secret: str, *, rest_url: str | None = None, timeout_ms: int = 10_000,
                 enable_rate_limit: bool | None = None, client: Any = None) -> None:
        if client is None:
            client = ccxt.binanceusdm(_client_config(
                api_key, secret, timeout_ms, rest_url is None if enable_rate_limit is None else enable_rate_limit))
        self.client = configure_client(client, rest_url=rest_url)
        self._trace = _HttpTrace(self.client)
        self._markets_loaded = False

    @property
    def last_response_headers(self) -> Mapping[str, str]:
        return self._trace.headers

    def set_time_offset_ms(self, offset_ms: int) -> None:
        self.client.options["timeDifference"] = -int(offset_ms)

    def _call(self, fn: Callable[..., Any], *args: Any, placing: bool = False) -> Any:
        self._trace.reset()
        try:
            return fn(*args)
        except Exception as exc:
            status, headers, body = self._trace.call_reply()
            raise classify(exc, placing=placing, status=status, headers=headers, body=body) from exc

    def load_markets(self) -> None:
        self._call(self.client.load_markets)
        self._markets_loaded = True

    def _market(self, symbol: str) -> str:
        if not self._markets_loaded:
            self.load_markets()
        markets = self.client.markets_by_id.get(symbol)
        if not markets:
            raise ExchangeError(f"unknown symbol {symbol!r} on this venue")
        return str(markets[0]["symbol"])

    def fetch_time_ms(self) -> int:
        value = self._call(self.client.fetch_time)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise MalformedReplyError(f"time reply: serverTime {value!r} is not a positive integer")
        return int(value)

    def fetch_balance(self) -> Balance:
        reply = self._call(self.client.fetch_balance)
        return parse_balance(reply.get("info") if isinstance(reply, Mapping) else reply)

    def fetch_positions(self, symbol: str) -> list[Position]:
        rows = self._call(self.client.fetch_positions, [self._market(symbol)])
        return _positions(rows, symbol)

    def fetch_all_positions(self) -> list[Position]:
        if not self._markets_loaded:
            self.load_markets()
        return _positions(self._call(self.client.fetch_positions), None)

    def fetch_book_top(self, symbol: str) -> BookTop:
        return parse_book(self._call(self.client.fapiPublicGetTickerBookTicker, {"symbol": symbol}), symbol)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        if symbol is None:
            if not self._markets_loaded:
                self.load_markets()
            return _orders(self._call(self.client.fetch_open_orders))
        return _orders(self._call(self.client.fetch_open_orders, self._market(symbol)))

    def fetch_order(self, symbol: str, client_id: str) -> OrderState:
        order = self._call(self.client.fetch_order, None, self._market(symbol), {"origClientOrderId": client_id})
        return parse_order(order.get("info") if isinstance(order, Mapping) else order)

    def create_order(self, request: OrderRequest) -> OrderState:
        _check_request(request)
        order = self._call(self.client.create_order, self._market(request.symbol), request.type, request.side,
                           request.qty, request.price, _order_params(request), placing=True)
        return _placed(order, request)

    def cancel_all_orders(self, symbol: str) -> None:
        self._call(self.client.cancel_all_orders, self._market(symbol))

    def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        if countdown_ms < 0:
            raise OrderRejectedError(f"countdown {countdown_ms} ms must be >= 0")
        self._call(self.client.fapiPrivatePostCountdownCancelAll,
                   {"symbol": symbol, "countdownTime": int(countdown_ms)})

    def fetch_api_restrictions(self) -> ApiRestrictions:
        return parse_restrictions(self._call(self.client.sapiGetAccountApiRestrictions))

    def close(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None:
            session.close()
