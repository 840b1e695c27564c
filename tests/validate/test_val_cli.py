"""`gameday validate`: the verdict follows the profile's thresholds, the evidence set is sealed,
bad input exits 2 with the place and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import DEFAULT_CONFIG_DIR, load_policy
from bot.core.policy import Validation
from harness.cli import main
from harness.evidence import sha256_file, tree_state, write_manifest
from harness.validate.result import SCHEMA, judge

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "market" / "btcusdt_5m_sample.csv"
SMALL = ["--markets", "trend_up", "--candles", str(SAMPLE), "--bars", "600"]


def validate(out: Path, *args: str) -> int:
    return main(["validate", *args, "--out", str(out)])


def result(out: Path) -> dict[str, Any]:
    return json.loads((out / "validation.json").read_text())


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of config/ the test may add profiles to (GAMEDAY_CONFIG_DIR points at it)."""
    target = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    monkeypatch.setenv("GAMEDAY_CONFIG_DIR", str(target))
    return target


def add_profile(config_dir: Path, name: str, validation: dict[str, Any]) -> None:
    """A profile judging only `validation`'s thresholds (the base's min_paper_days unset)."""
    thresholds = {**dict.fromkeys(Validation.model_fields), **validation}
    (config_dir / "profiles" / f"{name}.yaml").write_text(
        yaml.safe_dump({"description": "test", "overlay": {"validation": thresholds}}))


def test_pets_on_the_shipped_markets_fails_with_its_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pets"
    assert validate(out, "--profile", "pets", *SMALL) == 1
    doc = result(out)
    assert doc["schema"] == SCHEMA
    assert doc["profile"] == "pets"
    assert doc["config_digest"] == load_policy("pets").digest
    assert len(doc["git_commit"]) == 40 or doc["git_commit"] == "unknown"
    assert [m["name"] for m in doc["markets"]] == ["trend_up", "btcusdt_5m_sample"]
    assert doc["markets"][0]["seed"] == 1 and doc["markets"][0]["regime"] == "trend_up"
    assert doc["markets"][1]["file"] == "fixtures/market/btcusdt_5m_sample.csv"
    assert doc["markets"][1]["sha256"] == sha256_file(SAMPLE)
    assert doc["thresholds"] == load_policy("pets").policy.validation.model_dump()
    verdicts = {v["threshold"]: v for v in doc["verdicts"]}
    assert set(verdicts) == {"min_trades", "min_win_rate", "min_profit_factor", "min_sharpe",
                             "max_drawdown_pct", "min_paper_days"}
    assert verdicts["min_trades"]["verdict"] == "fail"  # 600 + 300 bars cannot give 100 trades
    assert verdicts["min_trades"]["value"] == doc["aggregate"]["trades"] < 100
    assert doc["verdict"] == "fail"
    assert doc["plan"]["max_bars_per_market"] == 2400
    printed = capsys.readouterr().out
    assert "min_win_rate" in printed and "verdict: FAIL" in printed and "all markets" in printed


def test_the_evidence_set_is_sealed_by_its_manifest(tmp_path: Path) -> None:
    out = tmp_path / "set"
    validate(out, "--profile", "futures", *SMALL)
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert {"validation.json", "equity/trend_up.csv", "trades/btcusdt_5m_sample.csv"} <= on_disk
    assert all(manifest["files"][name] == sha256_file(out / name) for name in on_disk)
    assert manifest["git_commit"] == result(out)["git_commit"]


def test_the_artifacts_recompute_to_the_reported_figures(tmp_path: Path) -> None:
    from harness.validate.metrics import bar_returns, max_drawdown_pct, sharpe, trade_stats

    out = tmp_path / "set"
    validate(out, "--profile", "pets", *SMALL)
    doc = result(out)
    def column(path: str, index: int) -> list[float]:
        return [float(line.split(",")[index]) for line in (out / path).read_text().splitlines()[1:]]

    for market in doc["markets"]:
        equity = column(market["artifacts"]["equity"], 1)
        pnls = column(market["artifacts"]["trades"], 4)
        figures = market["figures"]
        assert len(equity) == figures["bars"] + 1
        assert trade_stats(pnls).trades == figures["trades"]
        assert max_drawdown_pct(equity) == pytest.approx(figures["max_drawdown_pct"], abs=1e-6)
        s = sharpe(bar_returns(equity), 300_000)
        assert (s is None and figures["sharpe"] is None) or s == pytest.approx(figures["sharpe"], rel=1e-5)


def test_a_strategy_that_meets_every_threshold_passes_and_one_just_short_fails(
        tmp_path: Path, config_dir: Path) -> None:
    # the figures of this deterministic run, then thresholds exactly at them (pass) and a hair beyond
    # (fail); --max-bars keeps a missed trade count from playing on
    fixed = [*SMALL, "--max-bars", "600"]
    add_profile(config_dir, "probe", {"min_paper_days": 1})
    assert validate(tmp_path / "probe", "--profile", "probe", *fixed) == 0
    f = result(tmp_path / "probe")["aggregate"]
    assert f["trades"] >= 2 and f["sharpe"] is not None
    exact = {"min_trades": f["trades"], "min_win_rate": f["win_rate"], "min_profit_factor": f["profit_factor"],
             "min_sharpe": f["sharpe"], "max_drawdown_pct": f["max_drawdown_pct"], "min_paper_days": f["paper_days"]}
    add_profile(config_dir, "exact", exact)
    assert validate(tmp_path / "exact", "--profile", "exact", *fixed) == 0
    assert result(tmp_path / "exact")["verdict"] == "pass"
    for key, nudge in (("min_trades", 1), ("min_win_rate", 1e-9), ("min_profit_factor", 1e-9),
                       ("min_sharpe", 1e-9), ("max_drawdown_pct", -1e-9), ("min_paper_days", 1e-9)):
        add_profile(config_dir, "short", {**exact, key: exact[key] + nudge})
        out = tmp_path / f"short-{key}"
        assert validate(out, "--profile", "short", *fixed) == 1, key
        failed = [v["threshold"] for v in result(out)["verdicts"] if v["verdict"] == "fail"]
        assert failed == [key]


def test_the_run_plays_on_until_the_trade_count(tmp_path: Path, config_dir: Path) -> None:
    add_profile(config_dir, "count", {"min_trades": 8})
    out = tmp_path / "count"
    code = validate(out, "--profile", "count", "--markets", "range", "crash", "--candles", str(SAMPLE),
                    "--bars", "300", "--max-bars", "6000")
    doc = result(out)
    assert code == 0 and doc["aggregate"]["trades"] >= 8
    assert doc["execution"]["extension_rounds"] >= 1
    bars = {m["name"]: m["figures"]["bars"] for m in doc["markets"]}
    assert bars["btcusdt_5m_sample"] == 300  # a recording is played once, never extended
    assert bars["crash"] > 300 and bars["crash"] % 300 == 0


def test_a_count_out_of_reach_stops_at_max_bars_and_fails(tmp_path: Path, config_dir: Path) -> None:
    add_profile(config_dir, "greedy", {"min_trades": 10_000})
    out = tmp_path / "greedy"
    assert validate(out, "--profile", "greedy", "--markets", "trend_up", "--candles", "--bars", "200",
                    "--max-bars", "500") == 1
    doc = result(out)
    assert doc["markets"][0]["figures"]["bars"] == 500
    assert doc["reason"].startswith("missed 1 of 1 thresholds set: min_trades")


def test_futures_judges_only_what_its_checklist_states(tmp_path: Path) -> None:
    out = tmp_path / "futures"
    assert validate(out, "--profile", "futures", *SMALL) == 1  # 3.1 days of market < 14 paper days
    verdicts = {v["threshold"]: v["verdict"] for v in result(out)["verdicts"]}
    assert verdicts == {"min_trades": "not_set", "min_win_rate": "not_set", "min_profit_factor": "not_set",
                        "min_sharpe": "not_set", "max_drawdown_pct": "not_set", "min_paper_days": "fail"}


def test_judge_boundaries_and_undefined_figures() -> None:
    figures = {"trades": 100, "win_rate": 0.6, "profit_factor": 1.5, "sharpe": 1.0, "max_drawdown_pct": 15.0,
               "paper_days": 7.0}
    pets = load_policy("pets").policy.validation
    assert judge(figures, pets)[1] == "pass"
    for key, value in (("trades", 99), ("win_rate", 0.5999999), ("profit_factor", 1.4999), ("sharpe", 0.9999),
                       ("max_drawdown_pct", 15.0001), ("paper_days", 6.99)):
        verdicts, verdict, _ = judge({**figures, key: value}, pets)
        assert verdict == "fail" and [v["figure"] for v in verdicts if v["verdict"] == "fail"] == [key]
    verdicts, verdict, _ = judge({**figures, "trades": 0, "win_rate": None, "profit_factor": None}, pets)
    assert verdict == "fail"
    assert {v["figure"]: v.get("why") for v in verdicts if v["verdict"] == "fail"} == {
        "trades": None, "win_rate": "win_rate is undefined (no trades)",
        "profit_factor": "profit_factor is undefined (no trades)"}
    assert judge({**figures, "profit_factor": float("inf")}, pets)[1] == "pass"
    verdict, reason = judge(figures, Validation())[1:]
    assert verdict == "fail" and "no threshold is set" in reason


@pytest.mark.parametrize(("args", "message"), [
    (["--profile", "pets", "--markets", "moon"], "--markets: unknown regime(s) moon; expected some of trend_up"),
    (["--profile", "pets", "--candles", "nowhere.csv"], "--candles: nowhere.csv: no such file"),
    (["--profile", "pets", "--bar", "7m"], "--bar: unknown bar length '7m'"),
    (["--profile", "pets", "--markets", "--candles"], "no market: give --markets REGIME"),
    (["--profile", "pets", "--bars", "0"], "--bars must be >= 1"),
    (["--profile", "pets", "--bars", "10", "--max-bars", "5"], "--max-bars (5) must be >= --bars (10)"),
    (["--profile", "pets", "--equity", "-5"], "--equity must be a positive number"),
    (["--profile", "nope"], "profiles: nope: unknown profile"),
])
def test_bad_input_exits_2_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    assert validate(tmp_path / "out", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_with_other_files_is_refused_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert validate(out, "--profile", "pets", *SMALL) == 2
    assert "holds files a validation did not write (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_second_validation_into_the_same_directory_replaces_the_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    validate(out, "--profile", "pets", "--markets", "trend_up", "crash", "--candles", "--bars", "200")
    validate(out, "--profile", "pets", "--markets", "range", "--candles", "--bars", "200")
    assert sorted(p.name for p in (out / "equity").iterdir()) == ["range.csv"]
    assert set(json.loads((out / "manifest.json").read_text())["files"]) == {
        "validation.json", "equity/range.csv", "trades/range.csv"}


def test_aggregate_pools_trades_and_returns_and_keeps_the_worst_drawdown() -> None:
    from harness.validate.result import MarketRun, aggregate_figures

    def run(name: str, equity: list[float], pnls: list[float], fees: float) -> MarketRun:
        return MarketRun({"name": name}, 86_400_000, equity[0], equity, list(range(len(equity))),
                         [{"pnl": p} for p in pnls], fees, fees / 2, {})

    a = run("a", [100.0, 110.0, 99.0], [10.0, -11.0], 1.0)  # drawdown 10 %
    b = run("b", [100.0, 80.0, 108.9], [-20.0, 28.9, 0.0], 2.0)  # drawdown 20 %
    f = aggregate_figures([a, b])
    assert (f["trades"], f["wins"], f["losses"]) == (5, 2, 2)
    assert f["win_rate"] == pytest.approx(0.4)
    assert f["profit_factor"] == pytest.approx(38.9 / 31.0)
    assert f["max_drawdown_pct"] == pytest.approx(20.0)
    assert f["fees_paid"] == pytest.approx(3.0) and f["slippage_paid"] == pytest.approx(1.5)
    assert f["paper_days"] == pytest.approx(4.0) and f["bars"] == 4
    returns = [0.1, -0.1, -0.2, 108.9 / 80 - 1]
    mean = sum(returns) / 4
    sd = (sum((r - mean) ** 2 for r in returns) / 3) ** 0.5
    assert f["sharpe"] == pytest.approx(mean / sd * 365 ** 0.5)
    assert f["return_pct"] == pytest.approx((99.0 + 108.9 - 200.0) / 200.0 * 100)
    with pytest.raises(ValueError, match="one bar length"):
        aggregate_figures([a, MarketRun({"name": "c"}, 300_000, 100.0, [100.0, 101.0], [0, 1], [], 0, 0, {})])


def test_a_reader_trusts_a_set_only_while_it_matches_its_manifest(tmp_path: Path) -> None:
    from harness.validate.result import EvidenceError, read_validation

    out = tmp_path / "set"
    validate(out, "--profile", "pets", "--markets", "range", "--candles", "--bars", "200")
    assert read_validation(out)["verdict"] == "fail"
    doc = (out / "validation.json").read_text()
    (out / "validation.json").write_text(doc.replace('"verdict": "fail"', '"verdict": "pass"'))
    with pytest.raises(EvidenceError, match="validation.json: digest differs from the manifest"):
        read_validation(out)
    (out / "validation.json").write_text(doc)
    (out / "extra.txt").write_text("slipped in")
    with pytest.raises(EvidenceError, match="extra.txt: not in the manifest"):
        read_validation(out)
    (out / "extra.txt").unlink()
    (out / "trades" / "range.csv").unlink()
    with pytest.raises(EvidenceError, match="trades/range.csv: listed but missing"):
        read_validation(out)
    with pytest.raises(EvidenceError, match="no usable manifest"):
        read_validation(tmp_path / "nowhere")
    other = tmp_path / "other"
    other.mkdir()
    (other / "validation.json").write_text(json.dumps({"schema": "gameday.evidence/v1"}))
    write_manifest(other, tree_state(), complete=True, exit_status=0)
    with pytest.raises(EvidenceError, match="schema 'gameday.evidence/v1', expected 'gameday.validation/v1'"):
        read_validation(other)
