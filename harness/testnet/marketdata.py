"""Market data: prices, the book around them, bars (the seeded walk, replayed bars, aggregation).

A mixin of `Engine` (harness.testnet.engine), whose constructor sets the state it reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from harness.testnet.errors import BinanceError
from harness.testnet.market import Candle
from harness.testnet.model import MarketState, SymbolSpec


class MarketData:
    """Price movement, quotes and bar history of the engine's markets."""

    @staticmethod
    def _round_price(spec: SymbolSpec, price: float) -> float:
        return round(round(price / spec.tick_size) * spec.tick_size, spec.price_precision)

    @staticmethod
    def _round_candle(spec: SymbolSpec, c: Candle) -> Candle:
        r = MarketData._round_price
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

    def _advance_path(self, m: MarketState, now: int) -> None:
        assert m.path is not None
        index = min((now - m.path_start_ms) // m.path_step_ms, len(m.path) - 1)
        while m.path is not None and m.path_index < index:
            m.path_index += 1
            self._set_price_internal(m.spec.symbol, m.path[m.path_index])
            if m.path_index >= len(m.path) - 1:
                m.path = None

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
