"""Seeded market data for the testnet: a regime-switching random walk and an OHLCV CSV loader.

The walk's volatility follows a Markov chain over three regimes (calm / normal / stormy) that
switches at bar boundaries, so a seed gives the same quiet stretches and the same storms every
run. Prices move in log space; `vol_bps` is the standard deviation of one bar's log return in
the normal regime, and a bar is built from `substeps` smaller steps so it has a real high/low.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REGIME_VOL = {"calm": 0.4, "normal": 1.0, "stormy": 3.0}
REGIME_TRANSITIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "calm": (("calm", 0.95), ("normal", 0.05)),
    "normal": (("calm", 0.03), ("normal", 0.94), ("stormy", 0.03)),
    "stormy": (("normal", 0.10), ("stormy", 0.90)),
}
CSV_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar. `open_time` is Binance's kline `t`; the bar covers [open_time, open_time + bar_ms)."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def close_time(self, bar_ms: int) -> int:
        return self.open_time + bar_ms - 1

    def is_sane(self) -> bool:
        values = (self.open, self.high, self.low, self.close)
        return (all(math.isfinite(v) and v > 0 for v in values) and math.isfinite(self.volume)
                and self.volume >= 0 and self.low <= min(self.open, self.close)
                and self.high >= max(self.open, self.close))


class RegimeWalk:
    """A seeded geometric random walk whose volatility regime follows a Markov chain."""

    def __init__(self, seed: int, start_price: float, vol_bps: float, *, regime: str = "normal",
                 regime_vol: dict[str, float] | None = None,
                 transitions: dict[str, tuple[tuple[str, float], ...]] | None = None) -> None:
        if not (math.isfinite(start_price) and start_price > 0):
            raise ValueError(f"start_price must be a positive number, got {start_price!r}")
        if not (math.isfinite(vol_bps) and vol_bps >= 0):
            raise ValueError(f"vol_bps must be >= 0, got {vol_bps!r}")
        self._rng = random.Random(seed)
        self.price = float(start_price)
        self.vol_bps = float(vol_bps)
        self.regime_vol = dict(regime_vol or REGIME_VOL)
        self.transitions = dict(transitions or REGIME_TRANSITIONS)
        if regime not in self.regime_vol:
            raise ValueError(f"unknown regime {regime!r}; allowed: {sorted(self.regime_vol)}")
        self.regime = regime

    def step(self, fraction: float = 1.0) -> float:
        """Move the price by a step worth `fraction` of a bar's variance; returns the new price."""
        sigma = self.vol_bps / 10_000 * self.regime_vol[self.regime] * math.sqrt(max(fraction, 0.0))
        self.price *= math.exp(self._rng.gauss(0.0, sigma))
        return self.price

    def switch_regime(self) -> str:
        """One Markov transition (called at each bar boundary)."""
        u = self._rng.random()
        acc = 0.0
        for name, p in self.transitions[self.regime]:
            acc += p
            if u < acc:
                self.regime = name
                break
        return self.regime

    def volume(self) -> float:
        base = 10.0 * self.regime_vol[self.regime]
        return round(base * (0.5 + self._rng.random()), 3)

    def bar(self, open_time: int, substeps: int = 12) -> Candle:
        """A whole bar from `substeps` steps, then a regime transition."""
        open_ = high = low = price = self.price
        # step(1 / substeps) inlined: the same draws and arithmetic, the sigma computed once a bar
        sigma = self.vol_bps / 10_000 * self.regime_vol[self.regime] * math.sqrt(max(1.0 / substeps, 0.0))
        gauss, exp = self._rng.gauss, math.exp
        for _ in range(substeps):
            price *= exp(gauss(0.0, sigma))
            if price > high:
                high = price
            elif price < low:
                low = price
        self.price = price
        candle = Candle(open_time, open_, high, low, self.price, self.volume())
        self.switch_regime()
        return candle


def generate_candles(seed: int, start_price: float, vol_bps: float, bars: int, bar_ms: int,
                     start_ms: int = 0, *, decimals: int = 2) -> list[Candle]:
    """`bars` consecutive candles from a RegimeWalk, prices rounded to `decimals`."""
    if bars < 0:
        raise ValueError(f"bars must be >= 0, got {bars}")
    if bar_ms <= 0:
        raise ValueError(f"bar_ms must be > 0, got {bar_ms}")
    walk = RegimeWalk(seed, start_price, vol_bps)
    out: list[Candle] = []
    for i in range(bars):
        c = walk.bar(start_ms + i * bar_ms)
        out.append(Candle(c.open_time, round(c.open, decimals), round(c.high, decimals),
                          round(c.low, decimals), round(c.close, decimals), c.volume))
    return out


def generate_trend(seed: int, start_price: float, amplitude: float, period_bars: int, bars: int, bar_ms: int,
                   start_ms: int = 0, *, noise_bps: float = 8.0, wick_bps: float = 5.0,
                   decimals: int = 1) -> list[Candle]:
    """`bars` candles whose closes follow a sine trend (start_price x (1 + amplitude x sin(2 pi i /
    period_bars))) with Gaussian close noise (noise_bps) and wicks (wick_bps): swings a trend
    follower can profit from, so its measured hit rate and payoff grow."""
    if bars < 0 or period_bars < 1 or bar_ms <= 0:
        raise ValueError(f"need bars >= 0, period_bars >= 1, bar_ms > 0 (got {bars}, {period_bars}, {bar_ms})")
    rng = random.Random(seed)
    price = start_price
    out: list[Candle] = []
    for i in range(bars):
        trend = start_price * (1 + amplitude * math.sin(2 * math.pi * i / period_bars))
        close = trend * (1 + rng.gauss(0, noise_bps / 10_000))
        high = max(price, close) * (1 + abs(rng.gauss(0, wick_bps / 10_000)))
        low = min(price, close) * (1 - abs(rng.gauss(0, wick_bps / 10_000)))
        out.append(Candle(start_ms + i * bar_ms, round(price, decimals), round(high, decimals), round(low, decimals),
                          round(close, decimals), round(10 + 5 * rng.random(), 3)))
        price = close
    return out


def write_csv(path: str | Path, candles: Iterable[Candle]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for c in candles:
            writer.writerow([c.open_time, repr(c.open), repr(c.high), repr(c.low), repr(c.close), repr(c.volume)])


def load_csv(path: str | Path, bar_ms: int | None = None) -> list[Candle]:
    """Load an OHLCV fixture (columns ts,open,high,low,close,volume; ts = bar open time in ms).

    Rows must be sane and strictly increasing in time; when `bar_ms` is given, consecutive rows
    must be exactly one bar apart. Errors name the file and line.
    """
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip().lower() for h in header) != CSV_COLUMNS:
            raise ValueError(f"{path}:1: header must be {','.join(CSV_COLUMNS)}, got {header!r}")
        return candles_from_rows(((f"{path}:{lineno}", row) for lineno, row in enumerate(reader, start=2) if row),
                                 bar_ms)


def candles_from_rows(rows: Iterable[tuple[str, Sequence[object]]], bar_ms: int | None = None) -> list[Candle]:
    """Candles from `(where, [ts, open, high, low, close, volume])` rows, checked as `load_csv`
    checks them; `where` ("file:line", "file: row N") starts every error message."""
    candles: list[Candle] = []
    for where, row in rows:
        if len(row) != len(CSV_COLUMNS):
            raise ValueError(f"{where}: expected {len(CSV_COLUMNS)} columns, got {len(row)}")
        try:
            c = Candle(int(row[0]), float(row[1]), float(row[2]), float(row[3]),  # type: ignore[call-overload]
                       float(row[4]), float(row[5]))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: not a number: {exc}") from None
        if not c.is_sane():
            raise ValueError(f"{where}: inconsistent bar (need 0 < low <= open,close <= high, "
                             f"volume >= 0): {list(row)}")
        if candles:
            gap = c.open_time - candles[-1].open_time
            if gap <= 0:
                raise ValueError(f"{where}: ts {c.open_time} is not after {candles[-1].open_time}")
            if bar_ms is not None and gap != bar_ms:
                raise ValueError(f"{where}: ts gap {gap} ms, expected bar_ms={bar_ms}")
        candles.append(c)
    return candles


def infer_bar_ms(candles: Sequence[Candle]) -> int | None:
    """The smallest gap between consecutive candles (None for fewer than two)."""
    gaps = [b.open_time - a.open_time for a, b in zip(candles, candles[1:], strict=False)]
    return min(gaps) if gaps else None


# --------------------------------------------------------------------------------------------
# Named market regimes (gameday validate): trends, a range, a crash, low-volatility chop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """`bars` bars whose log returns have mean `drift_bps` and standard deviation `vol_bps`."""

    bars: int
    drift_bps: float
    vol_bps: float


@dataclass(frozen=True, slots=True)
class Regime:
    """A market shape: its phases repeat in order for as long as bars are asked for; with
    `reversion` > 0 the log price is also pulled that fraction of the way back to its starting
    level each bar (an Ornstein-Uhlenbeck range instead of a random walk)."""

    name: str
    description: str
    phases: tuple[Phase, ...]
    reversion: float = 0.0

    def __post_init__(self) -> None:
        if not self.phases or any(p.bars < 1 or p.vol_bps < 0 or not math.isfinite(p.drift_bps)
                                  for p in self.phases):
            raise ValueError(f"regime {self.name!r}: phases need bars >= 1, vol_bps >= 0, a finite drift")
        if not 0.0 <= self.reversion < 1.0:
            raise ValueError(f"regime {self.name!r}: reversion must be in [0, 1), got {self.reversion}")


# Per-bar figures sized for 5-minute bars of a BTC-like market (one bar's volatility ~15 bps).
REGIMES: dict[str, Regime] = {r.name: r for r in (
    Regime("trend_up", "steady bull market: +0.5 bps drift per bar (about +50 % a month), 15 bps noise",
           (Phase(1, 0.5, 15.0),)),
    Regime("trend_down", "steady bear market: -0.5 bps drift per bar, 18 bps noise",
           (Phase(1, -0.5, 18.0),)),
    Regime("range", "sideways market: 15 bps noise pulled back to the start level (half-life ~29 h)",
           (Phase(1, 0.0, 15.0),), reversion=0.002),
    Regime("crash", "a slow climb for ~5 days, then -30 % in 3 hours at 4x volatility, a partial "
                    "rebound, repeating",
           (Phase(1440, 0.3, 15.0), Phase(36, -100.0, 60.0), Phase(288, 3.0, 40.0))),
    Regime("low_vol_chop", "quiet chop: 4 bps noise strongly pulled back to the start level",
           (Phase(1, 0.0, 4.0),), reversion=0.02),
)}


class RegimeSeries:
    """An endless, seeded series of candles of one `Regime`: the same seed gives the same bars."""

    def __init__(self, regime: Regime, seed: int, start_price: float, bar_ms: int, start_ms: int = 0, *,
                 substeps: int = 12, decimals: int = 2) -> None:
        if not (math.isfinite(start_price) and start_price > 0):
            raise ValueError(f"start_price must be a positive number, got {start_price!r}")
        if bar_ms <= 0:
            raise ValueError(f"bar_ms must be > 0, got {bar_ms}")
        self.regime = regime
        self._rng = random.Random(f"{regime.name}:{seed}")
        self._anchor = math.log(start_price)
        self._log_price = self._anchor
        self._bar_ms = bar_ms
        self._next_open = start_ms
        self._substeps = substeps
        self._decimals = decimals
        self._phase = 0
        self._left = regime.phases[0].bars

    def next(self) -> Candle:
        phase = self.regime.phases[self._phase]
        n = self._substeps
        pull = -self.regime.reversion * (self._log_price - self._anchor) / n
        drift = phase.drift_bps / 10_000 / n
        sigma = phase.vol_bps / 10_000 / math.sqrt(n)
        gauss = self._rng.gauss
        x = self._log_price
        hi = lo = x
        for _ in range(n):
            x += drift + pull + gauss(0.0, sigma)
            hi = max(hi, x)
            lo = min(lo, x)
        d = self._decimals
        open_ = round(math.exp(self._log_price), d)
        close = round(math.exp(x), d)
        candle = Candle(self._next_open, open_, max(round(math.exp(hi), d), open_, close),
                        min(round(math.exp(lo), d), open_, close),
                        close, round(10.0 * (0.5 + self._rng.random()) * (1 + phase.vol_bps / 15.0), 3))
        self._log_price = math.log(close)
        self._next_open += self._bar_ms
        self._left -= 1
        if self._left == 0:
            self._phase = (self._phase + 1) % len(self.regime.phases)
            self._left = self.regime.phases[self._phase].bars
        return candle

    def take(self, bars: int) -> list[Candle]:
        if bars < 0:
            raise ValueError(f"bars must be >= 0, got {bars}")
        return [self.next() for _ in range(bars)]
