"""The testnet's matching engine: a pure, synchronous model of a Binance USD-M account venue.

Both transports drive it: `SimExchange` (in-process, sim mode) and the aiohttp server (net
mode). REST semantics live in `Engine.handle`, which takes the request as Binance sees it
(method, path, string params, API key, client IP, signed payload and signature) and returns the
Binance JSON body or raises `BinanceError` with Binance's HTTP status and code. So a fault
injected here hits both transports the same way.

`Engine` holds the state; its behaviour is one mixin per concern: `gate` (routing, limits, auth,
signatures), `rest` (the route handlers and their JSON), `matching` (orders and fills),
`accounts` (keys, margin, positions), `fault_controls` (fault and outage state) and `marketdata`
(prices, book, bars). The data model is in `model`, Binance's errors in `errors`.

Time comes from the injected clock (`now_ms()`); the engine never reads the wall clock.
Faults are plain methods (`set_price`, `fail_next`, `unknown_outcome_next`, ...).
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.core.clock import Clock
from harness.testnet.accounts import Accounts
from harness.testnet.errors import BinanceError
from harness.testnet.fault_controls import FaultControls
from harness.testnet.gate import RequestGate
from harness.testnet.market import Candle, RegimeWalk
from harness.testnet.marketdata import MarketData
from harness.testnet.matching import Matching
from harness.testnet.model import DEFAULT_SYMBOLS, Account, IpState, MarketState, Order, PathFault, SymbolSpec
from harness.testnet.rest import RestHandlers


@functools.lru_cache(maxsize=64)
def _history(spec: SymbolSpec, seed: int, start: float, vol_bps: float, first_open: int, bar_ms: int,
             bars: int) -> tuple[tuple[Candle, ...], Any, str]:
    """The seeded walk's history bars before an engine's first bar (rounded to the symbol's tick),
    with the walk's random state and regime after them: every sim scenario and drill schedule builds
    an engine, most with a seed another one used, and 2 x 500 bars of walk were a tenth of a short
    scenario. The same candles and the same state either way (a pure function of its arguments)."""
    walk = RegimeWalk(seed, start, vol_bps)
    candles = tuple(MarketData._round_candle(spec, walk.bar(first_open + i * bar_ms)) for i in range(bars))
    return candles, walk._rng.getstate(), walk.regime


class Engine(RequestGate, RestHandlers, Matching, Accounts, FaultControls, MarketData):
    """Accounts, markets, matching, request gating and fault controls (one mixin module each)."""

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
            candles, rng_state, regime = _history(spec, seed * 1009 + index, start, vol_bps, first_open, bar_ms,
                                                  history_bars)
            history: deque[Candle] = deque(candles, maxlen=max(history_bars, 1500))
            walk._rng.setstate(rng_state)
            walk.regime = regime
            price = candles[-1].close if candles else self._round_price(spec, walk.price)
            walk.price = price
            self.markets[spec.symbol] = MarketState(
                spec=spec, walk=walk, price=price, open_time=first_open + history_bars * bar_ms, open=price,
                high=price, low=price, volume=0.0, history=history, base_spread_bps=spread_bps)
            self._open[spec.symbol] = {}

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

    def read_request_log(self, since: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.request_log if r["seq"] > since]

    def read_order_log(self, since: int = 0, api_key: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.order_log if r["seq"] > since and (api_key is None or r.get("api_key") == api_key)]
