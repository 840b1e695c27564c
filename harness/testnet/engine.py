"""The testnet's matching engine: a pure, synchronous model of a Binance USD-M account venue.

Both transports drive it: `SimExchange` (in-process, sim mode) and the aiohttp server (net
mode). REST semantics live here, in `Engine.handle`, which takes the request as Binance sees it
(method, path, string params, API key, client IP, signed payload and signature) and returns the
Binance JSON body or raises `BinanceError` with Binance's HTTP status and code. So a fault
injected here hits both transports the same way.

Time comes from the injected clock (`now_ms()`); the engine never reads the wall clock.
Faults are plain methods (`set_price`, `fail_next`, `unknown_outcome_next`, ...).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import hmac
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core.clock import Clock
from harness.testnet.market import Candle, RegimeWalk

LOOPBACK_IPS = ("127.0.0.1", "::1")
MINUTE_MS = 60_000
MAX_BAN_MS = 3 * 24 * 3600 * 1000

MSG: dict[int, str] = {
    -1000: "An unknown error occurred while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1003: "Too many requests; please use WebSocket Streams for live updates to avoid polling the API.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1100: "Illegal characters found in a parameter.",
    -1102: "Mandatory parameter was not sent, was empty/null, or malformed.",
    -1106: "Parameter sent when not required.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -1120: "Invalid interval.",
    -1121: "Invalid symbol.",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4028: "Leverage is not valid.",
    -4116: "ClientOrderId is duplicated.",
    -4164: "Order's notional must be no smaller than the minimum notional (unless you choose reduce only).",
    -5000: "Path not found.",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected. "
           "The order will not be recorded in the order's history",
}


class BinanceError(Exception):
    """A Binance error reply: HTTP status + JSON `{"code", "msg"}` (+ Retry-After seconds).

    `order` is set when the order was booked but the reply is lost (unknown outcome);
    `drop_connection` asks a network transport to drop the connection instead of answering;
    `html` asks it to answer with an HTML body (a proxy's 502/503 page) instead of JSON.
    """

    def __init__(self, status: int, code: int | None, msg: str | None = None,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        self.code = code
        self.msg = msg if msg is not None else MSG.get(code or 0, "error")
        self.retry_after_s = retry_after_s
        self.headers: dict[str, str] = {}
        self.order: Order | None = None
        self.drop_connection = False
        self.html = code is None
        super().__init__(f"HTTP {status} code {code}: {self.msg}")

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    base: str
    start_price: float
    quote: str = "USDT"
    tick_size: float = 0.1
    step_size: float = 0.001
    min_qty: float = 0.001
    max_qty: float = 1000.0
    min_notional: float = 5.0
    price_precision: int = 2
    quantity_precision: int = 3


DEFAULT_SYMBOLS = (
    SymbolSpec("BTCUSDT", "BTC", 60_000.0, tick_size=0.1, step_size=0.001, min_qty=0.001, max_qty=1000,
               min_notional=100.0, price_precision=2, quantity_precision=3),
    SymbolSpec("ETHUSDT", "ETH", 3_000.0, tick_size=0.01, step_size=0.001, min_qty=0.001, max_qty=10_000,
               min_notional=20.0, price_precision=2, quantity_precision=3),
)

PERMISSION_NAMES = {
    "enable_reading": "enableReading",
    "enable_futures": "enableFutures",
    "enable_withdrawals": "enableWithdrawals",
    "enable_internal_transfer": "enableInternalTransfer",
    "permits_universal_transfer": "permitsUniversalTransfer",
    "enable_spot_and_margin_trading": "enableSpotAndMarginTrading",
    "enable_margin": "enableMargin",
    "ip_restrict": "ipRestrict",
}
_BINANCE_TO_FIELD = {v: k for k, v in PERMISSION_NAMES.items()}


@dataclass(slots=True)
class Permissions:
    enable_reading: bool = True
    enable_futures: bool = True
    enable_withdrawals: bool = False
    enable_internal_transfer: bool = False
    permits_universal_transfer: bool = False
    enable_spot_and_margin_trading: bool = False
    enable_margin: bool = False
    ip_restrict: bool = True

    def update(self, flags: Mapping[str, Any]) -> None:
        """Set flags given by python name (enable_futures) or Binance name (enableFutures)."""
        for name, value in flags.items():
            attr = name if name in PERMISSION_NAMES else _BINANCE_TO_FIELD.get(name)
            if attr is None:
                allowed = sorted(PERMISSION_NAMES) + sorted(_BINANCE_TO_FIELD)
                raise ValueError(f"unknown permission flag {name!r}; allowed: {allowed}")
            if not isinstance(value, bool):
                raise ValueError(f"permission {name!r} must be true/false, got {value!r}")
            setattr(self, attr, value)

    def to_binance(self) -> dict[str, bool]:
        return {b: getattr(self, f) for f, b in PERMISSION_NAMES.items()}


@dataclass(slots=True)
class Order:
    order_id: int
    client_id: str
    api_key: str
    symbol: str
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT
    time_in_force: str
    qty: float
    price: float | None
    reduce_only: bool
    time: int
    status: str = "NEW"
    executed_qty: float = 0.0
    cum_quote: float = 0.0
    update_time: int = 0

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> float:
        return self.cum_quote / self.executed_qty if self.executed_qty > 0 else 0.0

    def to_binance(self, spec: SymbolSpec) -> dict[str, Any]:
        pp, qp = spec.price_precision, spec.quantity_precision
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_id,
            "price": f"{self.price or 0.0:.{pp}f}",
            "avgPrice": f"{self.avg_price:.{pp + 3}f}",
            "origQty": f"{self.qty:.{qp}f}",
            "executedQty": f"{self.executed_qty:.{qp}f}",
            "cumQty": f"{self.executed_qty:.{qp}f}",
            "cumQuote": f"{self.cum_quote:.8f}",
            "timeInForce": self.time_in_force,
            "type": self.type,
            "origType": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": False,
            "side": self.side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": self.time,
            "updateTime": self.update_time or self.time,
        }


@dataclass(slots=True)
class PositionBook:
    qty: float = 0.0  # signed, one-way mode
    entry_price: float = 0.0
    update_time: int = 0


@dataclass(slots=True)
class Account:
    api_key: str
    secret: str
    permissions: Permissions
    ip_allowlist: list[str]
    wallet: float
    create_time: int
    revoked: bool = False
    deposits: float = 0.0
    realized_pnl: float = 0.0
    fees_paid: float = 0.0
    leverage: dict[str, int] = field(default_factory=dict)
    positions: dict[str, PositionBook] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    by_client_id: dict[str, int] = field(default_factory=dict)
    countdowns: dict[str, tuple[int, int]] = field(default_factory=dict)  # symbol -> (countdown, deadline)
    order_window: tuple[int, int] = (0, 0)  # (minute index, orders placed in it)

    def position(self, symbol: str) -> PositionBook:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = PositionBook()
        return pos


@dataclass(slots=True)
class MarketState:
    spec: SymbolSpec
    walk: RegimeWalk
    price: float
    open_time: int
    open: float
    high: float
    low: float
    volume: float
    history: deque[Candle]
    base_spread_bps: float
    wide_spread_bps: float | None = None
    wide_until_ms: int | None = None
    path: list[float] | None = None
    path_start_ms: int = 0
    path_step_ms: int = 0
    path_index: int = -1
    frozen: bool = False
    update_id: int = 1

    @property
    def spread_bps(self) -> float:
        return self.wide_spread_bps if self.wide_spread_bps is not None else self.base_spread_bps

    def current_candle(self) -> Candle:
        return Candle(self.open_time, self.open, self.high, self.low, self.price, self.volume)


@dataclass(slots=True)
class PathFault:
    pattern: str
    method: str | None
    remaining: int
    status: int
    code: int | None
    msg: str | None
    retry_after_s: float | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.pattern in ("*", path) or fnmatch.fnmatchcase(path, self.pattern)


@dataclass(slots=True)
class IpState:
    window: int = -1
    weight: int = 0
    strikes: int = 0  # 429s answered since the last ban
    banned_until_ms: int = 0
    ban_ms: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class FeedState:
    stalled: bool
    lag_ms: int


@dataclass(frozen=True, slots=True)
class Route:
    weight: int
    signed: bool
    perm: str | None  # "read" | "trade" | None
    handler: str
    order_count: bool = False


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/fapi/v1/ping"): Route(1, False, None, "_r_ping"),
    ("GET", "/fapi/v1/time"): Route(1, False, None, "_r_time"),
    ("GET", "/fapi/v1/exchangeInfo"): Route(1, False, None, "_r_exchange_info"),
    ("GET", "/fapi/v1/klines"): Route(5, False, None, "_r_klines"),
    ("GET", "/fapi/v1/ticker/24hr"): Route(1, False, None, "_r_ticker_24hr"),
    ("GET", "/fapi/v1/ticker/bookTicker"): Route(2, False, None, "_r_book_ticker"),
    ("GET", "/fapi/v1/ticker/price"): Route(1, False, None, "_r_ticker_price"),
    ("GET", "/fapi/v1/premiumIndex"): Route(1, False, None, "_r_premium_index"),
    ("GET", "/fapi/v2/account"): Route(5, True, "read", "_r_account"),
    ("GET", "/fapi/v3/account"): Route(5, True, "read", "_r_account"),
    ("GET", "/fapi/v2/balance"): Route(5, True, "read", "_r_balance"),
    ("GET", "/fapi/v3/balance"): Route(5, True, "read", "_r_balance"),
    ("GET", "/fapi/v1/leverageBracket"): Route(1, True, "read", "_r_leverage_bracket"),
    ("GET", "/fapi/v2/positionRisk"): Route(5, True, "read", "_r_position_risk_v2"),
    ("GET", "/fapi/v3/positionRisk"): Route(5, True, "read", "_r_position_risk_v3"),
    ("POST", "/fapi/v1/leverage"): Route(1, True, "trade", "_r_set_leverage"),
    ("POST", "/fapi/v1/order"): Route(1, True, "trade", "_r_create_order", order_count=True),
    ("GET", "/fapi/v1/order"): Route(1, True, "read", "_r_get_order"),
    ("DELETE", "/fapi/v1/order"): Route(1, True, "trade", "_r_cancel_order"),
    ("GET", "/fapi/v1/openOrders"): Route(1, True, "read", "_r_open_orders"),
    ("GET", "/fapi/v1/allOrders"): Route(5, True, "read", "_r_all_orders"),
    ("DELETE", "/fapi/v1/allOpenOrders"): Route(1, True, "trade", "_r_cancel_all"),
    ("POST", "/fapi/v1/countdownCancelAll"): Route(10, True, "trade", "_r_countdown"),
    ("GET", "/sapi/v1/account/apiRestrictions"): Route(1, True, None, "_r_api_restrictions"),
}

INTERVALS_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}


def sign_payload(secret: str, payload: str) -> str:
    """Binance's signature: hex HMAC-SHA256 of the query string with the API secret."""
    mac = _keyed(secret).copy()  # the keyed state is built once per secret: a sim run signs ~50 calls a bar
    mac.update(payload.encode())
    return mac.hexdigest()


@functools.lru_cache(maxsize=64)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _fmt(x: float, decimals: int = 8) -> str:
    return f"{x:.{decimals}f}"


def _on_grid(value: float, step: float) -> bool:
    n = value / step
    return abs(n - round(n)) < 1e-6


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _number(params: Mapping[str, str], name: str, required: bool = True) -> float | None:
    if not required and params.get(name) in (None, ""):
        return None
    raw = _param(params, name)
    try:
        value = float(raw)
    except ValueError:
        raise BinanceError(400, -1102, f"Parameter '{name}' was malformed: {raw!r}") from None
    if not math.isfinite(value):
        raise BinanceError(400, -1102, f"Parameter '{name}' was malformed: {raw!r}")
    return value


def _integer(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        if default is None:
            _param(params, name)
        return default  # type: ignore[return-value]
    try:
        return int(raw)  # type: ignore[arg-type]
    except ValueError:
        raise BinanceError(400, -1102, f"Parameter '{name}' was malformed: {raw!r}") from None


def _boolean(params: Mapping[str, str], name: str) -> bool:
    raw = str(params.get(name, "false")).lower()
    if raw not in ("true", "false"):
        raise BinanceError(400, -1102, f"Parameter '{name}' must be true or false, got {raw!r}")
    return raw == "true"


# --------------------------------------------------------------------------- engine


class Engine:
    """Accounts, markets, matching, request gating and fault controls."""

    def __init__(self, clock: Clock, *, seed: int = 0, symbols: Iterable[SymbolSpec] = DEFAULT_SYMBOLS,
                 start_prices: Mapping[str, float] | None = None, maker_fee: float = 0.0002,
                 taker_fee: float = 0.0005, spread_bps: float = 2.0, default_leverage: int = 10,
                 vol_bps: float = 15.0, bar_ms: int = 300_000, history_bars: int = 500,
                 starting_balance: float = 10_000.0, weight_limit_1m: int = 2400,
                 order_limit_1m: int = 1200, ban_after_429: int = 2, ban_ms: int = 120_000,
                 book_qty: float = 50.0, log_limit: int = 100_000) -> None:
        if not 0 <= maker_fee < 0.1 or not 0 <= taker_fee < 0.1:
            raise ValueError(f"fees are fractions in [0, 0.1): maker_fee={maker_fee}, taker_fee={taker_fee}")
        if bar_ms <= 0:
            raise ValueError(f"bar_ms must be > 0, got {bar_ms}")
        self.clock = clock
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.default_leverage = default_leverage
        self.bar_ms = bar_ms
        self.starting_balance = starting_balance
        self.weight_limit_1m = weight_limit_1m
        self.order_limit_1m = order_limit_1m
        self.ban_after_429 = ban_after_429
        self.ban_ms = ban_ms
        self.book_qty = book_qty
        self.accounts: dict[str, Account] = {}
        self.markets: dict[str, MarketState] = {}
        self.request_log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self.order_log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self._req_seq = itertools.count(1)
        self._order_seq = itertools.count(1)
        self._order_ids = itertools.count(4_000_000_001)
        self._open: dict[str, dict[int, tuple[Account, Order]]] = {}
        self._ips: dict[str, IpState] = {}
        self._listeners: list[Callable[[str], None]] = []
        # faults
        self.clock_skew_ms = 0
        self._path_faults: list[PathFault] = []
        self._reject_next: list[tuple[int, str | None]] = []  # one entry per order to reject
        self._unknown_next: list[str] = []  # one mode per order whose reply is lost
        self._feed_stalled_until: int | None = None
        self._feed_stalled = False
        self._feed_lag_ms = 0
        self._feed_lag_until: int | None = None
        # Execution model: the price a taking order fills at, given (symbol, sign, qty, touch).
        # None fills at the touch (the spread is the only cost beyond the fee); paper trading
        # (harness.validate) installs the policy's slippage and market-impact model here.
        self.taker_fill_price: Callable[[str, int, float, float], float] | None = None

        now = clock.now_ms()
        first_open = max(0, (now // bar_ms) * bar_ms - history_bars * bar_ms)
        for index, spec in enumerate(symbols):
            start = (start_prices or {}).get(spec.symbol, spec.start_price)
            walk = RegimeWalk(seed * 1009 + index, start, vol_bps)
            history: deque[Candle] = deque(maxlen=max(history_bars, 1500))
            for i in range(history_bars):
                c = walk.bar(first_open + i * bar_ms)
                history.append(self._round_candle(spec, c))
            price = self._round_price(spec, walk.price)
            walk.price = price
            self.markets[spec.symbol] = MarketState(
                spec=spec, walk=walk, price=price, open_time=first_open + history_bars * bar_ms, open=price,
                high=price, low=price, volume=0.0, history=history, base_spread_bps=spread_bps)
            self._open[spec.symbol] = {}

    # ------------------------------------------------------------------ helpers

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def server_time_ms(self) -> int:
        """The exchange's clock: the injected clock plus the clock-skew fault."""
        return self.clock.now_ms() + self.clock_skew_ms

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """`callback(symbol)` after every price change of `symbol` (used for bookTicker pushes)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[str], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def market(self, symbol: str) -> MarketState:
        m = self.markets.get(symbol.upper())
        if m is None:
            raise BinanceError(400, -1121, f"Invalid symbol: {symbol!r}.")
        return m

    @staticmethod
    def _round_price(spec: SymbolSpec, price: float) -> float:
        return round(round(price / spec.tick_size) * spec.tick_size, spec.price_precision)

    def _round_candle(self, spec: SymbolSpec, c: Candle) -> Candle:
        r = self._round_price
        return Candle(c.open_time, r(spec, c.open), r(spec, c.high), r(spec, c.low), r(spec, c.close), c.volume)

    def book(self, symbol: str) -> tuple[float, float]:
        """(bid, ask) around the last price with the current spread, at least one tick apart."""
        m = self.market(symbol)
        spec = m.spec
        half = m.price * m.spread_bps / 20_000
        bid = math.floor((m.price - half) / spec.tick_size + 1e-9) * spec.tick_size
        ask = math.ceil((m.price + half) / spec.tick_size - 1e-9) * spec.tick_size
        if ask - bid < spec.tick_size * 0.5:
            ask = bid + spec.tick_size
        return round(bid, spec.price_precision), round(ask, spec.price_precision)

    def mark_price(self, symbol: str) -> float:
        return self.market(symbol).price

    # ------------------------------------------------------------------ accounts

    def create_key(self, api_key: str, secret: str, *, permissions: Mapping[str, Any] | None = None,
                   ip_allowlist: Iterable[str] | None = LOOPBACK_IPS, balance: float | None = None) -> Account:
        if not api_key or not secret:
            raise ValueError("api_key and secret must be non-empty")
        if api_key in self.accounts and not self.accounts[api_key].revoked:
            raise ValueError(f"API key {api_key!r} already exists")
        perms = Permissions()
        if permissions:
            perms.update(permissions)
        allow = list(ip_allowlist or [])
        if not allow:
            perms.ip_restrict = False
        wallet = self.starting_balance if balance is None else float(balance)
        acct = Account(api_key=api_key, secret=secret, permissions=perms, ip_allowlist=allow,
                       wallet=wallet, deposits=wallet, create_time=self.server_time_ms())
        self.accounts[api_key] = acct
        self._log_order("key_created", None, api_key=api_key)
        return acct

    def _account(self, api_key: str) -> Account:
        acct = self.accounts.get(api_key)
        if acct is None:
            raise KeyError(f"no such API key {api_key!r}")
        return acct

    def revoke_key(self, api_key: str) -> None:
        self._account(api_key).revoked = True
        self._log_order("key_revoked", None, api_key=api_key)

    def rotate_key(self, old_key: str, new_key: str, secret: str, *, permissions: Mapping[str, Any] | None = None,
                   ip_allowlist: Iterable[str] | None = LOOPBACK_IPS) -> Account:
        """Replace a (leaked) key by a new one on the same funds: the old key is revoked and its flat
        wallet moves to the new key. Refused while the old key holds a position or a resting order."""
        old = self._account(old_key)
        exposed = [s for s, p in old.positions.items() if p.qty] + [str(o.client_id) for o in old.orders.values()
                                                                      if o.status in ("NEW", "PARTIALLY_FILLED")]
        if exposed:
            raise ValueError(f"key {old_key!r} still has positions or open orders ({exposed}); flatten first")
        acct = self.create_key(new_key, secret, permissions=permissions, ip_allowlist=ip_allowlist, balance=old.wallet)
        acct.deposits, acct.realized_pnl, acct.fees_paid = old.deposits, old.realized_pnl, old.fees_paid
        old.wallet = 0.0
        old.revoked = True
        self._log_order("key_rotated", None, api_key=old_key, new_api_key=new_key)
        return acct

    def set_permissions(self, api_key: str, flags: Mapping[str, Any] | None = None, *,
                        ip_allowlist: Iterable[str] | None = None) -> Permissions:
        acct = self._account(api_key)
        if flags:
            acct.permissions.update(flags)
        if ip_allowlist is not None:
            acct.ip_allowlist = list(ip_allowlist)
        return acct.permissions

    def secret_of(self, api_key: str) -> str | None:
        acct = self.accounts.get(api_key)
        return acct.secret if acct else None

    # ------------------------------------------------------------------ market movement

    def _set_price_internal(self, symbol: str, price: float, *, notify: bool = True) -> None:
        m = self.market(symbol)
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"price must be a positive number, got {price!r}")
        price = max(self._round_price(m.spec, price), m.spec.tick_size)
        m.price = price
        m.walk.price = price
        m.high = max(m.high, price)
        m.low = min(m.low, price)
        m.update_id += 1
        self._match_resting(m.spec.symbol)
        if notify:
            for cb in list(self._listeners):
                cb(m.spec.symbol)

    def set_price(self, symbol: str, price: float) -> float:
        """Fault/control: put the last and mark price at `price` (the walk continues from there)."""
        self.poll()
        self._set_price_internal(symbol, float(price))
        return self.market(symbol).price

    def jump_price(self, symbol: str, pct: float) -> float:
        """Fault: move the price by `pct` percent at once (price gap)."""
        m = self.market(symbol)
        return self.set_price(symbol, m.price * (1 + pct / 100))

    def follow_path(self, symbol: str, prices: Iterable[float], step_ms: int) -> None:
        """Fault: walk the price through `prices`, one point every `step_ms` of clock time.

        The first point applies now; the random walk is suspended until the path ends.
        """
        points = [float(p) for p in prices]
        if not points:
            raise ValueError("a price path needs at least one price")
        if step_ms <= 0:
            raise ValueError(f"step_ms must be > 0, got {step_ms}")
        if any(not (math.isfinite(p) and p > 0) for p in points):
            raise ValueError("path prices must be positive numbers")
        m = self.market(symbol)
        m.path, m.path_start_ms, m.path_step_ms, m.path_index = points, self.now_ms(), step_ms, -1
        call_at = getattr(self.clock, "call_at", None)
        if call_at is not None:
            for i in range(1, len(points)):
                call_at(m.path_start_ms + i * step_ms, self.poll)
        self._advance_path(m, self.now_ms())

    def freeze(self, symbol: str, frozen: bool = True) -> None:
        """Hold the price still (the random walk stops stepping) until unfrozen."""
        self.market(symbol).frozen = frozen

    def step_market(self, symbol: str, fraction: float) -> float:
        """One random-walk step worth `fraction` of a bar (the real-time ticker calls this)."""
        m = self.market(symbol)
        if m.path is None and not m.frozen:
            self._set_price_internal(symbol, m.walk.step(fraction))
        return m.price

    def roll_bar(self, symbol: str) -> Candle:
        """Close the current bar, append it to the history and open the next one."""
        m = self.market(symbol)
        closed = m.current_candle()
        m.history.append(closed)
        if m.volume == 0.0:
            closed = Candle(closed.open_time, closed.open, closed.high, closed.low, closed.close, m.walk.volume())
            m.history[-1] = closed
        m.walk.switch_regime()
        m.open_time += self.bar_ms
        m.open = m.high = m.low = m.price
        m.volume = 0.0
        return closed

    def apply_bar(self, symbol: str, open_: float, high: float, low: float, close: float,
                  volume: float = 0.0) -> Candle:
        """Play one whole bar (open, then the nearer extreme, the other extreme, close) and close it.

        Resting orders fill as the price passes through. Used by sim mode to replay a fixture or
        a generated series bar by bar.
        """
        if not Candle(0, open_, high, low, close, volume).is_sane():
            raise ValueError(f"inconsistent bar o={open_} h={high} l={low} c={close} v={volume}")
        m = self.market(symbol)
        self.poll()
        self._set_price_internal(symbol, open_)
        m.open = m.high = m.low = m.price
        extremes = (low, high) if close >= open_ else (high, low)
        for p in (*extremes, close):
            self._set_price_internal(symbol, p)
        m.volume += volume
        return self.roll_bar(symbol)

    def advance_bar(self, symbol: str, substeps: int = 12) -> Candle:
        """Generate the next bar with the symbol's own seeded walk and play it (sim mode)."""
        m = self.market(symbol)
        if m.path is not None or m.frozen:
            return self.roll_bar(symbol)
        self.poll()
        for _ in range(substeps):
            self._set_price_internal(symbol, m.walk.step(1.0 / substeps))
        return self.roll_bar(symbol)

    def candles(self, symbol: str, interval_ms: int | None = None, *, include_current: bool = True) -> list[Candle]:
        """Bar history (oldest first), aggregated to `interval_ms` when it is a multiple of bar_ms."""
        m = self.market(symbol)
        bars = list(m.history)
        if include_current:
            bars.append(m.current_candle())
        step = interval_ms or self.bar_ms
        if step == self.bar_ms:
            return bars
        if step < self.bar_ms or step % self.bar_ms:
            raise BinanceError(400, -1120, f"Invalid interval: this testnet's bar is {self.bar_ms} ms; "
                                           f"intervals must be a multiple of it.")
        out: list[Candle] = []
        for c in bars:
            t = (c.open_time // step) * step
            if out and out[-1].open_time == t:
                p = out[-1]
                out[-1] = Candle(t, p.open, max(p.high, c.high), min(p.low, c.low), c.close, p.volume + c.volume)
            else:
                out.append(Candle(t, c.open, c.high, c.low, c.close, c.volume))
        return out

    # ------------------------------------------------------------------ faults

    def widen_spread(self, bps: float, *, symbol: str | None = None, duration_ms: int | None = None) -> None:
        """Fault: quote a spread of `bps` (for `duration_ms`, or until reset)."""
        if not (math.isfinite(bps) and bps >= 0):
            raise ValueError(f"spread bps must be >= 0, got {bps!r}")
        targets = [self.market(symbol)] if symbol else list(self.markets.values())
        until = None if duration_ms is None else self.now_ms() + int(duration_ms)
        for m in targets:
            m.wide_spread_bps, m.wide_until_ms = float(bps), until
            m.update_id += 1
            self._match_resting(m.spec.symbol)
            for cb in list(self._listeners):
                cb(m.spec.symbol)
        self._schedule_poll(until)

    def reset_spread(self, symbol: str | None = None) -> None:
        targets = [self.market(symbol)] if symbol else list(self.markets.values())
        for m in targets:
            m.wide_spread_bps = m.wide_until_ms = None
            m.update_id += 1
            for cb in list(self._listeners):
                cb(m.spec.symbol)

    def stall_feed(self, duration_ms: int | None = None) -> None:
        """Fault: the market-data feed withholds messages (for `duration_ms`, or until reset)."""
        self._feed_stalled = True
        self._feed_stalled_until = None if duration_ms is None else self.now_ms() + int(duration_ms)

    def set_feed_lag(self, lag_ms: int, duration_ms: int | None = None) -> None:
        """Fault: deliver every feed message `lag_ms` late (E keeps the true event time)."""
        if lag_ms < 0:
            raise ValueError(f"lag_ms must be >= 0, got {lag_ms}")
        self._feed_lag_ms = int(lag_ms)
        self._feed_lag_until = None if duration_ms is None else self.now_ms() + int(duration_ms)

    def reset_feed(self) -> None:
        self._feed_stalled, self._feed_stalled_until = False, None
        self._feed_lag_ms, self._feed_lag_until = 0, None

    def feed_state(self) -> FeedState:
        now = self.now_ms()
        if self._feed_stalled_until is not None and now >= self._feed_stalled_until:
            self._feed_stalled, self._feed_stalled_until = False, None
        if self._feed_lag_until is not None and now >= self._feed_lag_until:
            self._feed_lag_ms, self._feed_lag_until = 0, None
        return FeedState(self._feed_stalled, self._feed_lag_ms)

    def fail_next(self, path: str, count: int, status: int, code: int | None = None, *, msg: str | None = None,
                  retry_after_s: float | None = None, method: str | None = None) -> None:
        """Fault: the next `count` requests matching `path` ("*", exact, or glob) fail with this reply.

        `code=None` means a non-JSON (HTML) error page, as a proxy in front of the exchange sends.
        """
        if count <= 0:
            raise ValueError(f"count must be > 0, got {count}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        self._path_faults.append(PathFault(path, method, int(count), int(status), code, msg, retry_after_s))

    def reject_next_orders(self, count: int, code: int = -2019, msg: str | None = None) -> None:
        """Fault: the next `count` new orders are rejected with `code` (HTTP 400)."""
        if count <= 0:
            raise ValueError(f"count must be > 0, got {count}")
        self._reject_next.extend([(int(code), msg)] * int(count))

    def unknown_outcome_next(self, count: int, mode: str = "503") -> None:
        """Fault: the next `count` orders are booked but their reply is lost.

        mode "503": answered 503 -1007 (send status unknown); "drop": the connection is dropped.
        """
        if count <= 0:
            raise ValueError(f"count must be > 0, got {count}")
        if mode not in ("503", "drop"):
            raise ValueError(f"mode must be '503' or 'drop', got {mode!r}")
        self._unknown_next.extend([mode] * int(count))

    def set_clock_skew(self, offset_ms: int) -> None:
        """Fault: the exchange's clock runs `offset_ms` ahead (negative: behind) of the true clock."""
        self.clock_skew_ms = int(offset_ms)

    def set_rate_limits(self, *, weight_limit_1m: int | None = None, order_limit_1m: int | None = None,
                        ban_after_429: int | None = None, ban_ms: int | None = None) -> None:
        if weight_limit_1m is not None:
            self.weight_limit_1m = int(weight_limit_1m)
        if order_limit_1m is not None:
            self.order_limit_1m = int(order_limit_1m)
        if ban_after_429 is not None:
            self.ban_after_429 = int(ban_after_429)
        if ban_ms is not None:
            self.ban_ms = int(ban_ms)

    def reset_faults(self) -> None:
        """Clear every injected fault (keys, balances, positions and orders stay)."""
        self._path_faults.clear()
        self._reject_next.clear()
        self._unknown_next.clear()
        self.clock_skew_ms = 0
        self.reset_feed()
        self.reset_spread()
        self._ips.clear()
        for m in self.markets.values():
            m.path, m.frozen = None, False

    def faults(self) -> dict[str, Any]:
        feed = self.feed_state()
        return {
            "clock_skew_ms": self.clock_skew_ms,
            "fail_next": [{"path": f.pattern, "method": f.method, "remaining": f.remaining, "status": f.status,
                           "code": f.code, "retry_after_s": f.retry_after_s} for f in self._path_faults],
            "reject_next": len(self._reject_next),
            "unknown_outcome_next": len(self._unknown_next),
            "feed": {"stalled": feed.stalled, "lag_ms": feed.lag_ms},
            "spread_bps": {s: m.spread_bps for s, m in self.markets.items()},
            "paths": {s: len(m.path) for s, m in self.markets.items() if m.path},
            "banned_ips": [ip for ip, st in self._ips.items() if st.banned_until_ms > self.now_ms()],
        }

    def _schedule_poll(self, at_ms: int | None) -> None:
        call_at = getattr(self.clock, "call_at", None)
        if at_ms is not None and call_at is not None:
            call_at(at_ms, self.poll)

    # ------------------------------------------------------------------ time-driven housekeeping

    def poll(self) -> None:
        """Apply everything due by now: price paths, spread expiry, countdown cancels."""
        now = self.now_ms()
        for m in self.markets.values():
            if m.path is not None:
                self._advance_path(m, now)
            if m.wide_until_ms is not None and now >= m.wide_until_ms:
                self.reset_spread(m.spec.symbol)
        for acct in self.accounts.values():
            for symbol, (_, deadline) in list(acct.countdowns.items()):
                if now >= deadline:
                    del acct.countdowns[symbol]
                    n = self._cancel_all(acct, symbol, deadline, reason="countdown")
                    self._log_order("countdown_fired", None, api_key=acct.api_key, symbol=symbol,
                                    cancelled=n, ts=deadline)

    def _advance_path(self, m: MarketState, now: int) -> None:
        assert m.path is not None
        index = min((now - m.path_start_ms) // m.path_step_ms, len(m.path) - 1)
        while m.path is not None and m.path_index < index:
            m.path_index += 1
            self._set_price_internal(m.spec.symbol, m.path[m.path_index])
            if m.path_index >= len(m.path) - 1:
                m.path = None

    # ------------------------------------------------------------------ orders and positions

    def _log_order(self, event: str, order: Order | None, **extra: Any) -> None:
        rec: dict[str, Any] = {"seq": next(self._order_seq), "ts": extra.pop("ts", self.now_ms()), "event": event}
        if order is not None:
            rec.update(order_id=order.order_id, client_id=order.client_id, api_key=order.api_key,
                       symbol=order.symbol, side=order.side, type=order.type, tif=order.time_in_force,
                       qty=order.qty, price=order.price, reduce_only=order.reduce_only, status=order.status,
                       executed_qty=order.executed_qty)
        rec.update(extra)
        self.order_log.append(rec)

    def unrealized_pnl(self, acct: Account, symbol: str | None = None) -> float:
        total = 0.0
        for sym, pos in acct.positions.items():
            if pos.qty and (symbol is None or sym == symbol):
                total += (self.markets[sym].price - pos.entry_price) * pos.qty
        return total

    def _leverage(self, acct: Account, symbol: str) -> int:
        return acct.leverage.get(symbol, self.default_leverage)

    def initial_margin(self, acct: Account, *, include_orders: bool = True) -> float:
        total = 0.0
        for sym, pos in acct.positions.items():
            if pos.qty:
                total += abs(pos.qty) * self.markets[sym].price / self._leverage(acct, sym)
        if include_orders:
            for sym, book in self._open.items():
                for a, o in book.values():
                    if a is acct and not o.reduce_only and o.price is not None:
                        total += (o.qty - o.executed_qty) * o.price / self._leverage(acct, sym)
        return total

    def available_balance(self, acct: Account) -> float:
        return acct.wallet + self.unrealized_pnl(acct) - self.initial_margin(acct)

    def place_order(self, api_key: str, symbol: str, side: str, type_: str, qty: float, *,
                    price: float | None = None, time_in_force: str | None = None, reduce_only: bool = False,
                    client_id: str | None = None) -> Order:
        """Validate, book and (when it takes liquidity) fill a new order. Raises BinanceError.

        Direct use (tests, harness) skips request gating; `handle` applies it first.
        """
        self.poll()
        acct = self._account(api_key)
        m = self.market(symbol)
        spec = m.spec
        side, type_ = side.upper(), type_.upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, f"Invalid side: {side!r}.")
        if type_ not in ("MARKET", "LIMIT"):
            raise BinanceError(400, -1116, f"Invalid orderType: {type_!r}.")
        tif = (time_in_force or "GTC").upper()
        if tif not in ("GTC", "IOC", "GTX", "FOK"):
            raise BinanceError(400, -1115, f"Invalid timeInForce: {tif!r}.")
        if type_ == "LIMIT":
            if price is None:
                raise BinanceError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, "
                                               "or malformed.")
            if not price > 0:
                raise BinanceError(400, -1102, f"Parameter 'price' must be > 0, got {price}.")
            if not _on_grid(price, spec.tick_size):
                raise BinanceError(400, -1111, f"Price {price} is not a multiple of tickSize {spec.tick_size}.")
        else:
            if price is not None:
                raise BinanceError(400, -1106, "Parameter 'price' sent when not required.")
            tif = "GTC"
        if not qty > 0:
            raise BinanceError(400, -4003)
        if not _on_grid(qty, spec.step_size):
            raise BinanceError(400, -1111, f"Quantity {qty} is not a multiple of stepSize {spec.step_size}.")
        if qty < spec.min_qty or qty > spec.max_qty:
            raise BinanceError(400, -4003 if qty < spec.min_qty else -1013,
                               f"Quantity {qty} outside [{spec.min_qty}, {spec.max_qty}].")
        if client_id is not None:
            if not client_id or len(client_id) > 36:
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; "
                                               "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
            if client_id in acct.by_client_id:
                self._log_order("rejected", None, api_key=api_key, client_id=client_id, code=-4116)
                raise BinanceError(400, -4116)

        def reject(code: int, msg: str | None = None) -> BinanceError:
            self._log_order("rejected", None, api_key=api_key, client_id=client_id, symbol=spec.symbol,
                            side=side, type=type_, qty=qty, price=price, reduce_only=reduce_only, code=code)
            return BinanceError(400, code, msg)

        if self._reject_next:
            code, msg = self._reject_next.pop(0)
            raise reject(code, msg)
        sign = 1 if side == "BUY" else -1
        pos = acct.position(spec.symbol)
        if reduce_only and (pos.qty == 0 or (pos.qty > 0) == (sign > 0)):
            raise reject(-2022)
        bid, ask = self.book(spec.symbol)
        touch = ask if sign > 0 else bid
        takes = type_ == "MARKET" or (price is not None and (price >= ask if sign > 0 else price <= bid))
        if tif == "GTX" and takes:
            raise reject(-5022)
        ref_price = touch if takes else float(price)  # type: ignore[arg-type]
        if not reduce_only and qty * ref_price < spec.min_notional:
            raise reject(-4164, f"Order's notional must be no smaller than {spec.min_notional:g} "
                                f"(unless you choose reduce only).")
        if reduce_only:
            qty = min(qty, abs(pos.qty)) if takes else qty
        else:
            lev = self._leverage(acct, spec.symbol)
            base_margin = self.initial_margin(acct)
            if takes:
                after = pos.qty + sign * qty
                extra = (abs(after) - abs(pos.qty)) * ref_price / lev + qty * ref_price * self.taker_fee
            else:
                extra = qty * ref_price / lev
            equity = acct.wallet + self.unrealized_pnl(acct)
            if extra > 0 and base_margin + extra > equity:
                raise reject(-2019)
        if (tif in ("IOC", "FOK")) and not takes:
            status = "EXPIRED"
        else:
            status = "NEW"
        now = self.now_ms()
        order = Order(order_id=next(self._order_ids), client_id=client_id or f"testnet-{len(acct.by_client_id) + 1}"
                      f"-{now}", api_key=api_key, symbol=spec.symbol, side=side, type=type_, time_in_force=tif,
                      qty=qty, price=price, reduce_only=reduce_only, time=now, status=status, update_time=now)
        acct.orders[order.order_id] = order
        acct.by_client_id[order.client_id] = order.order_id
        minute, count = acct.order_window
        cur = now // MINUTE_MS
        acct.order_window = (cur, count + 1 if minute == cur else 1)
        self._log_order("new", order)
        if takes:
            price = touch if self.taker_fill_price is None else self.taker_fill_price(spec.symbol, sign, qty, touch)
            self._fill(acct, order, price, maker=False)
        elif status == "NEW":
            self._open[spec.symbol][order.order_id] = (acct, order)
        else:
            self._log_order("expired", order)
        if self._unknown_next:
            mode = self._unknown_next.pop(0)
            self._log_order("reply_lost", order, mode=mode)
            err = BinanceError(503, -1007)
            err.order = order
            err.drop_connection = mode == "drop"
            raise err
        return order

    def _fill(self, acct: Account, order: Order, price: float, *, maker: bool) -> None:
        pos = acct.position(order.symbol)
        qty = order.qty - order.executed_qty
        if order.reduce_only:
            if pos.qty == 0 or (pos.qty > 0) == (order.sign > 0):
                order.status = "EXPIRED"
                order.update_time = self.now_ms()
                self._open[order.symbol].pop(order.order_id, None)
                self._log_order("expired", order, reason="reduce_only_nothing_to_reduce")
                return
            if qty > abs(pos.qty):
                qty = abs(pos.qty)
                order.qty = order.executed_qty + qty
        fee = qty * price * (self.maker_fee if maker else self.taker_fee)
        realized = self._apply_to_position(pos, order.sign * qty, price)
        pos.update_time = self.now_ms()
        acct.wallet += realized - fee
        acct.realized_pnl += realized
        acct.fees_paid += fee
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.status = "FILLED"
        order.update_time = self.now_ms()
        self._open[order.symbol].pop(order.order_id, None)
        self.markets[order.symbol].volume += qty
        self._log_order("filled", order, fill_qty=qty, fill_price=price, fee=fee, realized_pnl=realized,
                        maker=maker, position_qty=pos.qty)

    @staticmethod
    def _apply_to_position(pos: PositionBook, signed_qty: float, price: float) -> float:
        """Apply a fill to a one-way position; returns the realised P&L."""
        q = pos.qty
        if q == 0 or (q > 0) == (signed_qty > 0):
            new = q + signed_qty
            pos.entry_price = (abs(q) * pos.entry_price + abs(signed_qty) * price) / abs(new)
            pos.qty = new
            return 0.0
        closing = min(abs(signed_qty), abs(q))
        realized = closing * (price - pos.entry_price) * (1 if q > 0 else -1)
        new = q + signed_qty
        if abs(new) < 1e-12:
            pos.qty, pos.entry_price = 0.0, 0.0
        elif (new > 0) == (q > 0):
            pos.qty = new
        else:
            pos.qty, pos.entry_price = new, price
        return realized

    def _match_resting(self, symbol: str) -> None:
        book = self._open.get(symbol)
        if not book:
            return
        bid, ask = self.book(symbol)
        for order_id in sorted(book):
            entry = book.get(order_id)
            if entry is None:
                continue
            acct, order = entry
            assert order.price is not None
            if (order.sign > 0 and ask <= order.price) or (order.sign < 0 and bid >= order.price):
                self._fill(acct, order, order.price, maker=True)

    def find_order(self, api_key: str, symbol: str, *, order_id: int | None = None,
                   client_id: str | None = None) -> Order:
        acct = self._account(api_key)
        sym = self.market(symbol).spec.symbol
        if order_id is None and client_id is not None:
            order_id = acct.by_client_id.get(client_id)
        order = acct.orders.get(order_id) if order_id is not None else None
        if order is None or order.symbol != sym:
            raise BinanceError(400, -2013)
        return order

    def cancel_order(self, api_key: str, symbol: str, *, order_id: int | None = None,
                     client_id: str | None = None) -> Order:
        self.poll()
        try:
            order = self.find_order(api_key, symbol, order_id=order_id, client_id=client_id)
        except BinanceError:
            raise BinanceError(400, -2011) from None
        if not order.is_open:
            raise BinanceError(400, -2011)
        self._cancel(order, self.now_ms(), "user")
        return order

    def _cancel(self, order: Order, ts: int, reason: str) -> None:
        order.status = "CANCELED"
        order.update_time = ts
        self._open[order.symbol].pop(order.order_id, None)
        self._log_order("canceled", order, reason=reason, ts=ts)

    def _cancel_all(self, acct: Account, symbol: str, ts: int, reason: str) -> int:
        book = self._open[symbol]
        mine = [o for a, o in book.values() if a is acct]
        for o in mine:
            self._cancel(o, ts, reason)
        return len(mine)

    def cancel_all(self, api_key: str, symbol: str) -> int:
        self.poll()
        return self._cancel_all(self._account(api_key), self.market(symbol).spec.symbol, self.now_ms(), "user")

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[Order]:
        self.poll()
        acct = self._account(api_key)
        symbols = [self.market(symbol).spec.symbol] if symbol else list(self._open)
        return sorted((o for s in symbols for a, o in self._open[s].values() if a is acct),
                      key=lambda o: o.order_id)

    def countdown_cancel_all(self, api_key: str, symbol: str, countdown_ms: int) -> None:
        """Dead-man switch: cancel the symbol's open orders unless renewed within `countdown_ms` (0 = off)."""
        self.poll()
        acct = self._account(api_key)
        sym = self.market(symbol).spec.symbol
        if countdown_ms < 0:
            raise BinanceError(400, -1102, "countdownTime must be >= 0.")
        if countdown_ms == 0:
            acct.countdowns.pop(sym, None)
            return
        deadline = self.now_ms() + countdown_ms
        acct.countdowns[sym] = (countdown_ms, deadline)
        self._schedule_poll(deadline)

    def set_leverage(self, api_key: str, symbol: str, leverage: int) -> None:
        if not 1 <= leverage <= 125:
            raise BinanceError(400, -4028)
        self._account(api_key).leverage[self.market(symbol).spec.symbol] = leverage

    # ------------------------------------------------------------------ request gate

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
        ts = _integer(params, "timestamp")
        recv = _integer(params, "recvWindow", 5000)
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

    # ------------------------------------------------------------------ REST handlers (Binance shapes)

    def _r_ping(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        return {}

    def _r_time(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        return {"serverTime": self.server_time_ms()}

    def symbol_info(self, spec: SymbolSpec) -> dict[str, Any]:
        return {
            "symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
            "pricePrecision": spec.price_precision, "quantityPrecision": spec.quantity_precision,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": ["PoW"],
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _fmt(spec.tick_size, spec.price_precision),
                 "maxPrice": "4529764", "tickSize": _fmt(spec.tick_size, spec.price_precision)},
                {"filterType": "LOT_SIZE", "minQty": _fmt(spec.min_qty, spec.quantity_precision),
                 "maxQty": _fmt(spec.max_qty, spec.quantity_precision),
                 "stepSize": _fmt(spec.step_size, spec.quantity_precision)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": _fmt(spec.min_qty, spec.quantity_precision),
                 "maxQty": _fmt(spec.max_qty, spec.quantity_precision),
                 "stepSize": _fmt(spec.step_size, spec.quantity_precision)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": f"{spec.min_notional:g}"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def _r_exchange_info(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        return {
            "timezone": "UTC", "serverTime": self.server_time_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit_1m},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": self.order_limit_1m},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [self.symbol_info(m.spec) for m in self.markets.values()],
        }

    def _r_klines(self, acct: Account | None, params: Mapping[str, str]) -> list[list[Any]]:
        m = self.market(_param(params, "symbol"))
        interval = _param(params, "interval")
        if interval not in INTERVALS_MS:
            raise BinanceError(400, -1120)
        step = INTERVALS_MS[interval]
        limit = min(max(_integer(params, "limit", 500), 1), 1500)
        start = _integer(params, "startTime", -1)
        end = _integer(params, "endTime", -1)
        bars = self.candles(m.spec.symbol, step)
        if start >= 0:
            bars = [b for b in bars if b.open_time >= start]
        if end >= 0:
            bars = [b for b in bars if b.open_time <= end]
        bars = bars[:limit] if start >= 0 else bars[-limit:]
        return [self.kline_row(m.spec, b, step) for b in bars]

    @staticmethod
    def kline_row(spec: SymbolSpec, b: Candle, step: int) -> list[Any]:
        pp = spec.price_precision
        quote = b.volume * b.close
        return [b.open_time, _fmt(b.open, pp), _fmt(b.high, pp), _fmt(b.low, pp), _fmt(b.close, pp),
                _fmt(b.volume, 3), b.open_time + step - 1, _fmt(quote, 4), max(int(b.volume * 10), 1),
                _fmt(b.volume / 2, 3), _fmt(quote / 2, 4), "0"]

    def ticker_24hr(self, symbol: str) -> dict[str, Any]:
        m = self.market(symbol)
        pp = m.spec.price_precision
        n = max(1, 86_400_000 // self.bar_ms)
        bars = (list(m.history) + [m.current_candle()])[-n:]
        open_, last = bars[0].open, m.price
        vol = sum(b.volume for b in bars)
        qvol = sum(b.volume * b.close for b in bars)
        now = self.server_time_ms()
        return {
            "symbol": m.spec.symbol, "priceChange": _fmt(last - open_, pp),
            "priceChangePercent": _fmt((last - open_) / open_ * 100, 3),
            "weightedAvgPrice": _fmt(qvol / vol if vol else last, pp), "lastPrice": _fmt(last, pp),
            "lastQty": "0.001", "openPrice": _fmt(open_, pp), "highPrice": _fmt(max(b.high for b in bars), pp),
            "lowPrice": _fmt(min(b.low for b in bars), pp), "volume": _fmt(vol, 3), "quoteVolume": _fmt(qvol, 2),
            "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": m.update_id,
            "count": m.update_id,
        }

    def _r_ticker_24hr(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        if params.get("symbol"):
            return self.ticker_24hr(params["symbol"])
        return [self.ticker_24hr(s) for s in self.markets]

    def book_ticker(self, symbol: str) -> dict[str, Any]:
        m = self.market(symbol)
        bid, ask = self.book(symbol)
        pp, qp = m.spec.price_precision, m.spec.quantity_precision
        return {"symbol": m.spec.symbol, "bidPrice": _fmt(bid, pp), "bidQty": _fmt(self.book_qty, qp),
                "askPrice": _fmt(ask, pp), "askQty": _fmt(self.book_qty, qp), "time": self.server_time_ms(),
                "lastUpdateId": m.update_id}

    def _r_book_ticker(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        if params.get("symbol"):
            return self.book_ticker(params["symbol"])
        return [self.book_ticker(s) for s in self.markets]

    def _r_ticker_price(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        def one(s: str) -> dict[str, Any]:
            m = self.market(s)
            return {"symbol": m.spec.symbol, "price": _fmt(m.price, m.spec.price_precision),
                    "time": self.server_time_ms()}
        return one(params["symbol"]) if params.get("symbol") else [one(s) for s in self.markets]

    def premium_index(self, symbol: str) -> dict[str, Any]:
        m = self.market(symbol)
        pp = m.spec.price_precision
        now = self.server_time_ms()
        return {"symbol": m.spec.symbol, "markPrice": _fmt(m.price, pp), "indexPrice": _fmt(m.price, pp),
                "estimatedSettlePrice": _fmt(m.price, pp), "lastFundingRate": "0.00010000",
                "interestRate": "0.00010000", "nextFundingTime": (now // 28_800_000 + 1) * 28_800_000,
                "time": now}

    def _r_premium_index(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        if params.get("symbol"):
            return self.premium_index(params["symbol"])
        return [self.premium_index(s) for s in self.markets]

    def _position_row_v3(self, acct: Account, sym: str, pos: PositionBook) -> dict[str, Any]:
        m = self.markets[sym]
        qp = m.spec.quantity_precision
        lev = self._leverage(acct, sym)
        notional = pos.qty * m.price
        upnl = (m.price - pos.entry_price) * pos.qty if pos.qty else 0.0
        open_margin = sum((o.qty - o.executed_qty) * (o.price or 0) / lev for a, o in self._open[sym].values()
                          if a is acct and not o.reduce_only)
        return {
            "symbol": sym, "positionSide": "BOTH", "positionAmt": _fmt(pos.qty, qp),
            "entryPrice": _fmt(pos.entry_price, 8), "breakEvenPrice": _fmt(pos.entry_price, 8),
            "markPrice": _fmt(m.price, 8), "unRealizedProfit": _fmt(upnl, 8), "liquidationPrice": "0",
            "isolatedMargin": "0", "notional": _fmt(notional, 8), "marginAsset": "USDT", "isolatedWallet": "0",
            "initialMargin": _fmt(abs(notional) / lev + open_margin, 8),
            "maintMargin": _fmt(abs(notional) * 0.004, 8),
            "positionInitialMargin": _fmt(abs(notional) / lev, 8), "openOrderInitialMargin": _fmt(open_margin, 8),
            "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_time,
        }

    def _r_position_risk_v3(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        want = self.market(params["symbol"]).spec.symbol if params.get("symbol") else None
        return [self._position_row_v3(acct, s, p) for s, p in sorted(acct.positions.items())
                if p.qty and (want is None or s == want)]

    def _r_position_risk_v2(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        want = self.market(params["symbol"]).spec.symbol if params.get("symbol") else None
        rows = []
        for s in self.markets:
            if want is None or s == want:
                row = self._position_row_v3(acct, s, acct.position(s))
                row.update(leverage=str(self._leverage(acct, s)), marginType="cross", isAutoAddMargin="false",
                           maxNotionalValue="1000000")
                rows.append(row)
        return rows

    def balance_summary(self, acct: Account) -> dict[str, float]:
        upnl = self.unrealized_pnl(acct)
        im = self.initial_margin(acct)
        return {"wallet": acct.wallet, "unrealized_pnl": upnl, "initial_margin": im,
                "available": acct.wallet + upnl - im, "realized_pnl": acct.realized_pnl, "fees": acct.fees_paid}

    def _r_account(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        b = self.balance_summary(acct)
        margin_balance = b["wallet"] + b["unrealized_pnl"]
        pos_im = self.initial_margin(acct, include_orders=False)
        maint = sum(abs(p.qty) * self.markets[s].price * 0.004 for s, p in acct.positions.items())
        now = self.server_time_ms()
        asset = {
            "asset": "USDT", "walletBalance": _fmt(b["wallet"]), "unrealizedProfit": _fmt(b["unrealized_pnl"]),
            "marginBalance": _fmt(margin_balance), "maintMargin": _fmt(maint),
            "initialMargin": _fmt(b["initial_margin"]),
            "positionInitialMargin": _fmt(pos_im), "openOrderInitialMargin": _fmt(b["initial_margin"] - pos_im),
            "crossWalletBalance": _fmt(b["wallet"]), "crossUnPnl": _fmt(b["unrealized_pnl"]),
            "availableBalance": _fmt(b["available"]), "maxWithdrawAmount": _fmt(max(b["available"], 0.0)),
            "marginAvailable": True, "updateTime": now,
        }
        positions = [{"symbol": s, "positionSide": "BOTH", "positionAmt": _fmt(p.qty, 3),
                      "unrealizedProfit": _fmt(self.unrealized_pnl(acct, s)), "isolatedMargin": "0",
                      "notional": _fmt(p.qty * self.markets[s].price), "isolatedWallet": "0",
                      "initialMargin": _fmt(abs(p.qty) * self.markets[s].price / self._leverage(acct, s)),
                      "maintMargin": _fmt(abs(p.qty) * self.markets[s].price * 0.004), "updateTime": p.update_time}
                     for s, p in sorted(acct.positions.items()) if p.qty]
        return {
            "totalInitialMargin": asset["initialMargin"], "totalMaintMargin": asset["maintMargin"],
            "totalWalletBalance": asset["walletBalance"], "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": asset["marginBalance"], "totalPositionInitialMargin": asset["positionInitialMargin"],
            "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
            "totalCrossWalletBalance": asset["walletBalance"], "totalCrossUnPnl": asset["unrealizedProfit"],
            "availableBalance": asset["availableBalance"], "maxWithdrawAmount": asset["maxWithdrawAmount"],
            "canTrade": acct.permissions.enable_futures, "canDeposit": True,
            "canWithdraw": acct.permissions.enable_withdrawals, "feeTier": 0, "updateTime": now,
            "assets": [asset], "positions": positions,
        }

    def _r_balance(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        b = self.balance_summary(acct)
        return [{"accountAlias": "testnet", "asset": "USDT", "balance": _fmt(b["wallet"]),
                 "crossWalletBalance": _fmt(b["wallet"]), "crossUnPnl": _fmt(b["unrealized_pnl"]),
                 "availableBalance": _fmt(b["available"]), "maxWithdrawAmount": _fmt(max(b["available"], 0.0)),
                 "marginAvailable": True, "updateTime": self.server_time_ms()}]

    def _r_leverage_bracket(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        syms = [self.market(params["symbol"]).spec.symbol] if params.get("symbol") else list(self.markets)
        caps = [(125, 50_000, 0, 0.004, 0), (100, 250_000, 50_000, 0.005, 50), (50, 3_000_000, 250_000, 0.01, 1300),
                (20, 10_000_000, 3_000_000, 0.025, 46_300), (10, 20_000_000, 10_000_000, 0.05, 296_300)]
        return [{"symbol": s, "notionalCoef": 1.0, "brackets": [
            {"bracket": i + 1, "initialLeverage": lev, "notionalCap": cap, "notionalFloor": floor,
             "maintMarginRatio": mmr, "cum": cum} for i, (lev, cap, floor, mmr, cum) in enumerate(caps)]}
            for s in syms]

    def _r_set_leverage(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        sym = self.market(_param(params, "symbol")).spec.symbol
        lev = _integer(params, "leverage")
        self.set_leverage(acct.api_key, sym, lev)
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}

    def _r_create_order(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        symbol = _param(params, "symbol")
        spec = self.market(symbol).spec
        order = self.place_order(
            acct.api_key, symbol, _param(params, "side"), _param(params, "type"),
            _number(params, "quantity") or 0.0, price=_number(params, "price", required=False),
            time_in_force=params.get("timeInForce"), reduce_only=_boolean(params, "reduceOnly"),
            client_id=params.get("newClientOrderId") or None)
        return order.to_binance(spec)

    def _order_ref(self, params: Mapping[str, str]) -> tuple[int | None, str | None]:
        oid = params.get("orderId")
        cid = params.get("origClientOrderId") or None
        if not oid and not cid:
            raise BinanceError(400, -1102, "Either orderId or origClientOrderId must be sent.")
        try:
            return (int(oid) if oid else None), cid
        except ValueError:
            raise BinanceError(400, -1102, f"Parameter 'orderId' was malformed: {oid!r}") from None

    def _r_get_order(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        spec = self.market(_param(params, "symbol")).spec
        oid, cid = self._order_ref(params)
        return self.find_order(acct.api_key, spec.symbol, order_id=oid, client_id=cid).to_binance(spec)

    def _r_cancel_order(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        spec = self.market(_param(params, "symbol")).spec
        oid, cid = self._order_ref(params)
        return self.cancel_order(acct.api_key, spec.symbol, order_id=oid, client_id=cid).to_binance(spec)

    def _r_open_orders(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        return [o.to_binance(self.markets[o.symbol].spec)
                for o in self.open_orders(acct.api_key, params.get("symbol") or None)]

    def _r_all_orders(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        spec = self.market(_param(params, "symbol")).spec
        limit = min(max(_integer(params, "limit", 500), 1), 1000)
        rows = [o for o in acct.orders.values() if o.symbol == spec.symbol]
        return [o.to_binance(spec) for o in rows[-limit:]]

    def _r_cancel_all(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        self.cancel_all(acct.api_key, _param(params, "symbol"))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _r_countdown(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        sym = self.market(_param(params, "symbol")).spec.symbol
        countdown = _integer(params, "countdownTime")
        self.countdown_cancel_all(acct.api_key, sym, countdown)
        return {"symbol": sym, "countdownTime": str(countdown)}

    def _r_api_restrictions(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        out: dict[str, Any] = dict(acct.permissions.to_binance())
        out["enableVanillaOptions"] = False
        out["enablePortfolioMarginTrading"] = False
        out["enableFixApiTrade"] = False
        out["enableFixReadOnly"] = False
        out["createTime"] = acct.create_time
        out["tradingAuthorityExpirationTime"] = acct.create_time + 90 * 86_400_000
        return out

    # ------------------------------------------------------------------ logs

    def read_request_log(self, since: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.request_log if r["seq"] > since]

    def read_order_log(self, since: int = 0, api_key: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.order_log if r["seq"] > since and (api_key is None or r.get("api_key") == api_key)]
