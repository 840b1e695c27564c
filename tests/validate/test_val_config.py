"""The validation thresholds are policy: typed, checked at the door, shown by `config check`,
and cited by the checklist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bot.config import DEFAULT_CONFIG_DIR, load_policy

ROOT = Path(__file__).resolve().parents[2]


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "config", "check", *args],
                          capture_output=True, text=True, timeout=60)


def test_pets_carries_the_numbers_of_its_checklist() -> None:
    v = load_policy("pets").policy.validation
    assert (v.min_trades, v.min_win_rate, v.min_profit_factor, v.min_sharpe, v.max_drawdown_pct,
            v.min_paper_days) == (100, 0.60, 1.5, 1.0, 15.0, 7)


def test_futures_sets_only_what_its_checklist_states() -> None:
    v = load_policy("futures").policy.validation
    assert v.min_paper_days == 14  # "Paper Trading Validation (2-4 weeks)"
    assert {k for k, value in v.model_dump().items() if value is not None} == {"min_paper_days"}


def test_config_check_shows_the_thresholds() -> None:
    pets = check("--profile", "pets")
    assert pets.returncode == 0, pets.stderr
    assert ("validation: >= 100 trades, win rate >= 60%, profit factor >= 1.5, Sharpe >= 1.0, "
            "max drawdown <= 15.0%, >= 7 paper days") in pets.stdout
    futures = check("--profile", "futures")
    assert "validation: >= 14 paper days (not set: min_trades, min_win_rate" in futures.stdout


def test_a_bad_threshold_is_one_line_naming_file_key_value_and_range(tmp_path: Path) -> None:
    text = (DEFAULT_CONFIG_DIR / "risk_policy.yaml").read_text()
    assert "  min_win_rate: null" in text and "  min_sharpe: null" in text
    text = text.replace("  min_win_rate: null", "  min_win_rate: 60").replace("  min_sharpe: null", "  min_sharp: 1")
    (tmp_path / "risk_policy.yaml").write_text(text)
    result = check("--policy", str(tmp_path / "risk_policy.yaml"),
                   "--breakers", str(DEFAULT_CONFIG_DIR / "circuit_breakers.toml"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "risk_policy.yaml: validation.min_win_rate: out of range (got 60; expected a number in [0, 1])",
        "risk_policy.yaml: validation.min_sharp: unknown key, did you mean 'min_sharpe'? (got 1; expected one of "
        "max_drawdown_pct, min_paper_days, min_profit_factor, min_sharpe, min_trades, min_win_rate)",
    ]


def test_the_checklist_cites_validation_for_profiles_that_set_thresholds() -> None:
    items = {i["id"]: i for i in yaml.safe_load((ROOT / "config" / "checklist.yaml").read_text())["items"]}
    assert items["PETS.trading_logic"]["verified_by"]["validation"] == ["pets"]
    for item in items.values():
        for profile in (item.get("verified_by") or {}).get("validation") or []:
            v = load_policy(profile).policy.validation
            assert any(value is not None for value in v.model_dump().values()), (item["id"], profile)
