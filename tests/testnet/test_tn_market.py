"""Market generator and OHLCV fixture loader."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.testnet.engine import Engine
from harness.testnet.market import (
    RegimeWalk,
    generate_candles,
    generate_trend,
    infer_bar_ms,
    load_csv,
    write_csv,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "market" / "btcusdt_5m_sample.csv"
# the parameters the fixture was generated with (see docs/testnet.md)
FIXTURE_ARGS = {"seed": 42, "start_price": 60_000.0, "vol_bps": 15.0, "bars": 300, "bar_ms": 300_000,
                "start_ms": 1_699_999_800_000, "decimals": 1}
TREND = FIXTURE.with_name("trending_5m.csv")
TREND_ARGS = {"seed": 11, "start_price": 60_000.0, "amplitude": 0.03, "period_bars": 120, "bars": 720,
              "bar_ms": 300_000, "start_ms": 1_699_999_800_000}


def test_generator_is_deterministic_per_seed() -> None:
    a = generate_candles(7, 60_000, 15, 200, 300_000)
    b = generate_candles(7, 60_000, 15, 200, 300_000)
    c = generate_candles(8, 60_000, 15, 200, 300_000)
    assert a == b
    assert a != c


def test_generated_bars_are_sane_and_contiguous() -> None:
    bars = generate_candles(1, 3_000, 20, 300, 60_000, start_ms=120_000)
    assert all(b.is_sane() for b in bars)
    assert [b.open_time for b in bars] == [120_000 + i * 60_000 for i in range(300)]
    assert all(nxt.open == prev.close for prev, nxt in zip(bars, bars[1:], strict=False))


def test_regimes_switch_and_stormy_is_wilder_than_calm() -> None:
    walk = RegimeWalk(11, 60_000, 15)
    moves: dict[str, list[float]] = {"calm": [], "normal": [], "stormy": []}
    for i in range(3000):
        regime = walk.regime
        bar = walk.bar(i * 300_000)
        moves[regime].append(abs(bar.close / bar.open - 1))
    assert all(len(v) > 30 for v in moves.values()), {k: len(v) for k, v in moves.items()}
    assert statistics.mean(moves["stormy"]) > 2 * statistics.mean(moves["normal"])
    assert statistics.mean(moves["normal"]) > 1.5 * statistics.mean(moves["calm"])


def test_invalid_generator_params_are_refused() -> None:
    with pytest.raises(ValueError, match="start_price"):
        RegimeWalk(1, 0.0, 10)
    with pytest.raises(ValueError, match="vol_bps"):
        RegimeWalk(1, 100.0, -1)
    with pytest.raises(ValueError, match="bar_ms"):
        generate_candles(1, 100.0, 10, 5, 0)


def test_fixture_loads_and_matches_its_generator() -> None:
    bars = load_csv(FIXTURE, bar_ms=300_000)
    assert len(bars) == 300
    assert infer_bar_ms(bars) == 300_000
    assert all(b.is_sane() for b in bars)
    assert bars == generate_candles(**FIXTURE_ARGS)  # type: ignore[arg-type]


def test_trending_fixture_matches_its_generator() -> None:
    bars = load_csv(TREND, bar_ms=300_000)
    assert bars == generate_trend(**TREND_ARGS)  # type: ignore[arg-type]
    closes = [b.close for b in bars]
    assert max(closes) / 60_000 - 1 > 0.025 and 1 - min(closes) / 60_000 > 0.025  # it swings +-3 %
    with pytest.raises(ValueError, match="period_bars"):
        generate_trend(1, 100.0, 0.03, 0, 10, 300_000)


def test_csv_round_trip(tmp_path: Path) -> None:
    bars = generate_candles(5, 100.0, 30, 20, 60_000)
    path = tmp_path / "bars.csv"
    write_csv(path, bars)
    assert load_csv(path, bar_ms=60_000) == bars


@pytest.mark.parametrize(("content", "message"), [
    ("time,open,high,low,close,volume\n", ":1: header must be"),
    ("ts,open,high,low,close,volume\n0,1,2,0.5,1.5,3\n0,1,2,0.5,1.5,3\n", ":3: ts 0 is not after 0"),
    ("ts,open,high,low,close,volume\n0,1,2,0.5,1.5,3\n60000,1,0.9,0.5,1.5,3\n", ":3: inconsistent bar"),
    ("ts,open,high,low,close,volume\n0,1,2,0.5,x,3\n", ":2: not a number"),
    ("ts,open,high,low,close,volume\n0,1,2,0.5,1.5\n", ":2: expected 6 columns"),
    ("ts,open,high,low,close,volume\n0,1,2,0.5,1.5,3\n120000,1,2,0.5,1.5,3\n", ":3: ts gap 120000 ms"),
])
def test_bad_csv_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_csv(path, bar_ms=60_000)
    assert str(path) in str(info.value)


def test_engine_replays_fixture_bars(engine: Engine) -> None:
    bars = load_csv(FIXTURE)[:20]
    before = len(engine.candles("BTCUSDT", include_current=False))
    for b in bars:
        engine.apply_bar("BTCUSDT", b.open, b.high, b.low, b.close, b.volume)
    replayed = engine.candles("BTCUSDT", include_current=False)[before:]
    assert [(c.open, c.high, c.low, c.close) for c in replayed] == [(b.open, b.high, b.low, b.close) for b in bars]
    assert engine.market("BTCUSDT").price == bars[-1].close


@given(st.integers(0, 2**32), st.floats(0.0, 200.0), st.integers(1, 24))
def test_a_bar_is_its_substeps_of_the_walk(seed: int, vol_bps: float, substeps: int) -> None:
    """bar() computes its steps inline (fast path): the same prices as stepping the walk by hand."""
    fast, slow = RegimeWalk(seed, 60_000.0, vol_bps), RegimeWalk(seed, 60_000.0, vol_bps)
    for i in range(5):
        candle = fast.bar(i, substeps)
        open_ = slow.price
        prices = [slow.step(1.0 / substeps) for _ in range(substeps)]
        slow_volume = slow.volume()
        slow.switch_regime()
        assert (candle.open, candle.high, candle.low, candle.close) == (
            open_, max([open_, *prices]), min([open_, *prices]), prices[-1])
        assert candle.volume == slow_volume and fast.regime == slow.regime
