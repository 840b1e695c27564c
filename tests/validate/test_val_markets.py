"""Generated regimes have the shape their names promise; recorded files are checked at the door."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest

from harness.testnet.market import REGIMES, RegimeSeries, load_csv, write_csv
from harness.validate.markets import MarketError, load_candles, parse_bar, recorded_market, symbol_spec_for

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "market" / "btcusdt_5m_sample.csv"
BAR = 300_000
MONTH = 8640  # 30 days of 5m bars


def series(regime: str, seed: int = 1, bars: int = MONTH) -> list:
    return RegimeSeries(REGIMES[regime], seed, 60_000.0, BAR, 0).take(bars)


def log_returns(candles: list) -> list[float]:
    return [math.log(b.close / a.close) for a, b in zip(candles, candles[1:], strict=False)]


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_regimes_are_deterministic_sane_and_contiguous(regime: str) -> None:
    a, b, other = series(regime, 1, 500), series(regime, 1, 500), series(regime, 2, 500)
    assert a == b
    assert a != other
    assert all(c.is_sane() for c in a)
    assert [c.open_time for c in a] == [i * BAR for i in range(500)]
    assert all(nxt.open == prev.close for prev, nxt in zip(a, a[1:], strict=False))


def test_a_series_continues_where_it_stopped() -> None:
    one = RegimeSeries(REGIMES["crash"], 3, 60_000.0, BAR, 0)
    split = one.take(1000) + one.take(1000)
    assert split == series("crash", 3, 2000)


def test_trends_move_the_way_they_are_named() -> None:
    up, down = series("trend_up"), series("trend_down")
    assert up[-1].close > 1.2 * up[0].open
    assert down[-1].close < 0.8 * down[0].open


def test_range_and_chop_stay_near_their_level_and_chop_is_quiet() -> None:
    rng, chop = series("range"), series("low_vol_chop")
    assert 0.9 * 60_000 < min(c.low for c in rng) and max(c.high for c in rng) < 1.1 * 60_000
    assert 0.98 * 60_000 < min(c.low for c in chop) and max(c.high for c in chop) < 1.02 * 60_000
    assert statistics.pstdev(log_returns(chop)) < 0.5 * statistics.pstdev(log_returns(rng))


def test_crash_falls_a_third_within_three_hours() -> None:
    bars = series("crash")
    closes = [c.close for c in bars]
    worst = min(closes[i + 36] / max(closes[i:i + 37]) for i in range(len(closes) - 36))
    assert worst < 0.75


def test_bar_names() -> None:
    assert parse_bar("5m") == 300_000
    assert parse_bar("1h") == 3_600_000
    with pytest.raises(MarketError, match="unknown bar length '7m'; expected one of 1m, 3m, 5m"):
        parse_bar("7m")


def test_the_shipped_sample_loads_as_a_market() -> None:
    market = recorded_market(SAMPLE, BAR)
    assert market.kind == "file" and len(market.candles) == 300
    assert market.spec.symbol == "BTCUSDT"
    assert market.describe()["file"] == "fixtures/market/btcusdt_5m_sample.csv"
    assert market.describe()["sha256"].startswith("sha256:")


def test_a_file_with_other_bars_or_a_gap_names_the_line_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MarketError, match=r"btcusdt_5m_sample.csv:3: ts gap 300000 ms, expected bar_ms=60000 "
                                          r"\(this run uses 1m bars: pass --bar"):
        recorded_market(SAMPLE, 60_000)
    rows = load_csv(SAMPLE)
    gappy = tmp_path / "gappy.csv"
    write_csv(gappy, rows[:10] + rows[11:20])
    with pytest.raises(MarketError, match=r"gappy.csv:12: ts gap 600000 ms"):
        recorded_market(gappy, BAR)


def test_unusable_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(MarketError, match="no such file"):
        recorded_market(tmp_path / "missing.csv", BAR)
    odd = tmp_path / "prices.txt"
    odd.write_text("ts,open,high,low,close,volume\n")
    with pytest.raises(MarketError, match=r"unknown file type '.txt'; expected .csv, .parquet, .pq"):
        recorded_market(odd, BAR)
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,open,high,low,close,volume\n0,100,99,98,99,1\n")
    with pytest.raises(MarketError, match=r"bad.csv:2: inconsistent bar"):
        recorded_market(bad, BAR)
    short = tmp_path / "short.csv"
    write_csv(short, load_csv(SAMPLE)[:1])
    with pytest.raises(MarketError, match="holds 1 bar"):
        recorded_market(short, BAR)


def test_parquet_holds_the_same_market_as_csv(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = load_csv(SAMPLE)
    columns = {"ts": [c.open_time for c in rows], "open": [c.open for c in rows], "high": [c.high for c in rows],
               "low": [c.low for c in rows], "close": [c.close for c in rows], "volume": [c.volume for c in rows]}
    plain = tmp_path / "btcusdt_5m.parquet"
    pq.write_table(pa.table(columns), plain)
    assert load_candles(plain, BAR) == rows
    stamped = tmp_path / "btcusdt_5m_ts.parquet"
    table = pa.table({**columns, "ts": pa.array(columns["ts"], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))})
    pq.write_table(table, stamped)
    assert load_candles(stamped, BAR) == rows
    partial = tmp_path / "partial.parquet"
    pq.write_table(pa.table({k: v for k, v in columns.items() if k != "volume"}), partial)
    with pytest.raises(MarketError, match="partial.parquet: missing column"):
        load_candles(partial, BAR)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(MarketError, match="not a readable Parquet file"):
        load_candles(broken, BAR)
    rows_bad = dict(columns, high=[1.0] * len(rows))
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table(rows_bad), wrong)
    with pytest.raises(MarketError, match=r"wrong.parquet: row 1: inconsistent bar"):
        load_candles(wrong, BAR)


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    path = tmp_path / "any.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(MarketError, match=r"needs pyarrow: pip install 'gameday\[parquet\]'"):
        load_candles(path, BAR)


@pytest.mark.parametrize(("price", "tick"), [(60_000.0, 0.1), (3_000.0, 0.01), (0.52, 1e-6), (123.4, 0.001)])
def test_recorded_markets_get_a_tick_fine_enough_for_their_prices(price: float, tick: float) -> None:
    spec = symbol_spec_for("anything_5m", price)
    assert spec.tick_size == pytest.approx(tick)
    assert spec.symbol == "ANYTHING"
