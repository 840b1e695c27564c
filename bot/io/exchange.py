"""The exchange as the bot sees it: one async protocol, with errors already classified.

Two implementations: `CcxtExchange` (ccxt binanceusdm over HTTP/WebSocket) and the harness's
in-process `SimExchange`. Both raise only the `ExchangeError` family below, so the runtime
decides retry / resolve / give up in one place, whatever the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from bot.core.market import Bar

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["GTC", "IOC", "GTX"]
OrderStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]
# Binance kline intervals the bot trades on, by length (fetch_klines' interval_ms; the feed's timeframes)
KLINE_INTERVALS: dict[int, str] = {
    60_000: "1m", 180_000: "3m", 300_000: "5m", 900_000: "15m", 1_800_000: "30m", 3_600_000: "1h",
    7_200_000: "2h", 14_400_000: "4h", 86_400_000: "1d",
}


def kline_interval(interval_ms: int) -> str:
    """Binance's name for a kline interval; ValueError naming the allowed lengths otherwise."""
    name = KLINE_INTERVALS.get(interval_ms)
    if name is None:
        raise ValueError(f"no kline interval of {interval_ms} ms; allowed: "
                         + ", ".join(f"{ms} ({n})" for ms, n in KLINE_INTERVALS.items()))
    return name


@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str
    side: Side
    qty: float
    type: OrderType
    client_id: str
    price: float | None = None
    time_in_force: TimeInForce = "GTC"
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class OrderState:
    client_id: str
    exchange_id: str
    symbol: str
    side: Side
    type: OrderType
    status: OrderStatus
    qty: float
    filled_qty: float
    avg_price: float | None
    price: float | None
    reduce_only: bool
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    qty: float  # signed: > 0 long, < 0 short (one-way mode)
    entry_price: float
    unrealized_pnl: float


@dataclass(frozen=True, slots=True)
class Balance:
    wallet: float
    unrealized_pnl: float
    available: float

    @property
    def equity(self) -> float:
        return self.wallet + self.unrealized_pnl


@dataclass(frozen=True, slots=True)
class ApiRestrictions:
    enable_reading: bool
    enable_futures: bool
    enable_withdrawals: bool
    enable_internal_transfer: bool
    permits_universal_transfer: bool
    ip_restrict: bool


@dataclass(frozen=True, slots=True)
class BookTop:
    symbol: str
    bid: float
    ask: float
    ts_ms: int


class ExchangeError(Exception):
    """Base of every error an Exchange raises. `code` is Binance's numeric code when known."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RetryableError(ExchangeError):
    """Nothing happened on the exchange; the same request may be sent again after a pause."""


class RateLimitedError(RetryableError):
    def __init__(self, message: str, *, status: int | None = None, code: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after_s = retry_after_s

    @property
    def banned(self) -> bool:
        return self.status == 418


class ClockSkewError(RetryableError):
    """-1021: our timestamp is outside the exchange's recvWindow; resync time, then retry."""


class UnknownOutcomeError(ExchangeError):
    """The request may or may not have taken effect (5xx, -1007, lost reply): query, never resend."""


class OrderRejectedError(ExchangeError):
    """The exchange refused this order; sending it again unchanged would be refused again."""


class NotFoundError(ExchangeError):
    """-2013: no such order; -2011: the order to cancel is not open (filled, cancelled or unknown)."""


class AuthError(ExchangeError):
    """Bad signature, unknown or revoked key, IP not allowed: fatal until a human acts."""


class ExchangeUnavailableError(RetryableError):
    """Connection refused/reset, HTML 502/503, timeouts before the request was sent."""


_REJECT_CODES = frozenset({-1013, -1111, -1116, -1117, -2010, -2019, -2021, -2022, -4003, -4164, -5022})
_AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})


def error_from_binance(status: int, code: int | None, message: str,
                       retry_after_s: float | None = None) -> ExchangeError:
    """Classify a Binance reply (HTTP status + JSON code) the way both transports must."""
    text = f"HTTP {status} code {code}: {message}"
    if status in (418, 429) or code == -1003:
        return RateLimitedError(text, status=status, code=code, retry_after_s=retry_after_s)
    if code == -1021:
        return ClockSkewError(text, status=status, code=code)
    if code == -1007 or status >= 500:
        return UnknownOutcomeError(text, status=status, code=code)
    if code in (-2013, -2011):
        return NotFoundError(text, status=status, code=code)
    if status in (401, 403) or code in _AUTH_CODES:
        return AuthError(text, status=status, code=code)
    if code in _REJECT_CODES or status == 400:
        return OrderRejectedError(text, status=status, code=code)
    return ExchangeError(text, status=status, code=code)


class Exchange(Protocol):
    """What the runtime needs from a venue. All methods are coroutines."""

    async def fetch_time_ms(self) -> int: ...
    async def fetch_balance(self) -> Balance: ...
    async def fetch_positions(self, symbol: str) -> list[Position]: ...
    async def fetch_book_top(self, symbol: str) -> BookTop: ...
    async def fetch_open_orders(self, symbol: str) -> list[OrderState]: ...
    async def fetch_order(self, symbol: str, client_id: str) -> OrderState: ...
    async def create_order(self, request: OrderRequest) -> OrderState: ...
    # One order by client id; its final state (filled_qty counts a fill that beat the cancel).
    # NotFoundError when it is no longer open.
    async def cancel_order(self, symbol: str, client_id: str) -> OrderState: ...
    # Every open order of `symbol`, in one request; the venue's reply does not say how many
    # (nothing is read first: in a kill switch the cancel goes out before any bookkeeping).
    async def cancel_all_orders(self, symbol: str) -> None: ...
    # The latest `limit` klines of `interval_ms` as Bars (ts_ms = close time), oldest first; the
    # last may still be forming (its ts_ms is in the future).
    async def fetch_klines(self, symbol: str, interval_ms: int, limit: int) -> list[Bar]: ...
    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None: ...
    async def fetch_api_restrictions(self) -> ApiRestrictions: ...
    async def close(self) -> None: ...
