"""The testnet's data model: symbols, keys and permissions, orders, positions, accounts, markets."""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.testnet.market import Candle, RegimeWalk

LOOPBACK_IPS = ("127.0.0.1", "::1")


MINUTE_MS = 60_000


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
