"""The markets a validation trades: generated regimes and recorded candle files.

A generated market is a named `harness.testnet.market.Regime` with a seed: an endless series,
so a run that has not reached its trade count can play more of it. A recorded market is a
user's OHLCV file — CSV (columns ts,open,high,low,close,volume; ts = bar open time in ms) or,
with the optional `parquet` extra (pyarrow), Parquet with the same columns — played once, bar by
bar, at its own prices and timestamps: a recording is never looped or extended.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.evidence import sha256_file
from harness.testnet.market import CSV_COLUMNS, REGIMES, Candle, RegimeSeries, candles_from_rows, load_csv
from harness.testnet.model import DEFAULT_SYMBOLS, SymbolSpec
from harness.testnet.rest import INTERVALS_MS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GENERATED_START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z, as sim scenarios start
GENERATED_START_PRICE = 60_000.0
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)


class MarketError(ValueError):
    """A market the user named cannot be used; the message says which and how to fix it."""


def parse_bar(text: str) -> int:
    """A bar length as Binance names intervals (1m, 5m, 1h, ...) -> milliseconds."""
    bar_ms = INTERVALS_MS.get(text)
    if bar_ms is None:
        raise MarketError(f"--bar: unknown bar length {text!r}; expected one of {', '.join(INTERVALS_MS)}")
    return bar_ms


def bar_name(bar_ms: int) -> str:
    return next((k for k, v in INTERVALS_MS.items() if v == bar_ms), f"{bar_ms}ms")


@dataclass(frozen=True)
class Market:
    """One market of a validation run. `candles` is the whole recording (file markets only)."""

    name: str
    kind: Literal["generated", "file"]
    bar_ms: int
    spec: SymbolSpec
    regime: str | None = None
    seed: int | None = None
    path: Path | None = None
    sha256: str | None = None
    candles: tuple[Candle, ...] = ()

    def source(self) -> CandleSource:
        if self.kind == "generated":
            assert self.regime is not None and self.seed is not None
            return GeneratedSource(RegimeSeries(REGIMES[self.regime], self.seed, GENERATED_START_PRICE,
                                                self.bar_ms, GENERATED_START_MS))
        return RecordedSource(self.candles)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "symbol": self.spec.symbol,
                               "bar": bar_name(self.bar_ms)}
        if self.kind == "generated":
            assert self.regime is not None
            out.update(regime=self.regime, seed=self.seed, description=REGIMES[self.regime].description,
                       start_price=GENERATED_START_PRICE)
        else:
            out.update(file=shown_path(self.path), sha256=self.sha256, rows=len(self.candles),
                       first_ts=self.candles[0].open_time, last_ts=self.candles[-1].open_time)
        return out


class GeneratedSource:
    """Bars of a seeded regime series, as many as asked for."""

    def __init__(self, series: RegimeSeries) -> None:
        self._series = series

    def take(self, bars: int) -> list[Candle]:
        return self._series.take(bars)


class RecordedSource:
    """The bars of a recording, in order, each once."""

    def __init__(self, candles: tuple[Candle, ...]) -> None:
        self._candles = candles
        self._at = 0

    def take(self, bars: int) -> list[Candle]:
        out = list(self._candles[self._at:self._at + bars])
        self._at += len(out)
        return out


CandleSource = GeneratedSource | RecordedSource


def generated_market(regime: str, seed: int, bar_ms: int) -> Market:
    if regime not in REGIMES:
        raise MarketError(f"--markets: unknown regime {regime!r}; expected one of {', '.join(REGIMES)}")
    return Market(regime, "generated", bar_ms, DEFAULT_SYMBOLS[0], regime=regime, seed=seed)


def recorded_market(path: Path, bar_ms: int) -> Market:
    """A candle file as a market: it must hold at least two bars exactly `bar_ms` apart."""
    if not path.is_file():
        raise MarketError(f"--candles: {path}: no such file")
    candles = load_candles(path, bar_ms)
    if len(candles) < 2:
        raise MarketError(f"--candles: {path}: holds {len(candles)} bar(s); a market needs at least 2")
    return Market(path.stem, "file", bar_ms, symbol_spec_for(path.stem, candles[0].open), path=path,
                  sha256=sha256_file(path), candles=tuple(candles))


def load_candles(path: Path, bar_ms: int) -> list[Candle]:
    """CSV or Parquet by suffix; every row checked, consecutive bars exactly `bar_ms` apart."""
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            return load_csv(path, bar_ms)
        if suffix in PARQUET_SUFFIXES:
            return load_parquet(path, bar_ms)
    except ValueError as exc:
        hint = (f" (this run uses {bar_name(bar_ms)} bars: pass --bar with the file's bar length, or "
                "resample / split the file where bars are missing)") if "ts gap" in str(exc) else ""
        raise MarketError(f"--candles: {exc}{hint}") from None
    raise MarketError(f"--candles: {path}: unknown file type {suffix or '(none)'!r}; expected "
                      f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")


def load_parquet(path: Path, bar_ms: int | None = None) -> list[Candle]:
    """A Parquet file with the CSV's columns (ts as epoch ms or a timestamp type); needs pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise MarketError(f"--candles: {path}: reading Parquet needs pyarrow: pip install 'gameday[parquet]' "
                          "(or convert the file to CSV)") from None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise MarketError(f"--candles: {path}: not a readable Parquet file: {exc}") from None
    names = [n.strip().lower() for n in table.column_names]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise MarketError(f"--candles: {path}: missing column(s) {', '.join(missing)}; expected "
                          f"{','.join(CSV_COLUMNS)} (got {','.join(table.column_names)})")
    columns = []
    for name in CSV_COLUMNS:
        col = table.column(names.index(name))
        if name == "ts" and pa.types.is_timestamp(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("ms", tz=col.type.tz)), pa.int64())
        columns.append(col.to_pylist())
    rows = ((f"{path}: row {i + 1}", values) for i, values in enumerate(zip(*columns, strict=True)))
    return candles_from_rows(rows, bar_ms)


def shown_path(path: Path | None) -> str:
    """A path as evidence shows it: relative to the project when inside it (portable), else absolute."""
    if path is None:
        return ""
    full = path.resolve()
    try:
        return full.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(full)


_SYMBOL = re.compile(r"^[A-Za-z0-9]{2,20}")


def symbol_spec_for(stem: str, price: float) -> SymbolSpec:
    """Exchange rules for a recorded market: the symbol from the file name's first word, and a
    tick of about a hundred-thousandth of the price so rounding never moves the recording."""
    match = _SYMBOL.match(stem)
    symbol = match.group(0).upper() if match else "PAPERUSDT"
    decimals = max(0, 5 - math.floor(math.log10(price)))
    return SymbolSpec(symbol, symbol.removesuffix("USDT") or symbol, price, tick_size=10.0 ** -decimals,
                      step_size=0.001, min_qty=0.001, max_qty=1e12, min_notional=5.0,
                      price_precision=decimals, quantity_precision=3)
