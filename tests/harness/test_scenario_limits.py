"""A huge market.bars is refused at collection, above a configurable limit, naming file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import DEFAULT_MAX_BARS, ScenarioError, load_scenario, max_bars
from tests.harness.test_scenario import CHECKLIST, GOOD, PROFILES

ROOT = Path(__file__).resolve().parents[2]


def _limits(tmp_path: Path, limit: object) -> Path:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "harness.yaml").write_text(f"scenario:\n  max_bars: {limit}\n")
    return config


def _load(write_scenario, bars: int, config: Path | None) -> object:
    text = GOOD.replace("bars: 400", f"bars: {bars}")
    assert text != GOOD
    return load_scenario(write_scenario("s.yaml", text), profiles=PROFILES, checklist_ids=CHECKLIST,
                         config_dir=config)


def test_bars_at_the_limit_load_and_one_more_is_refused_with_file_line(write_scenario, tmp_path: Path) -> None:
    config = _limits(tmp_path, 500)
    assert _load(write_scenario, 500, config).market.bars == 500
    with pytest.raises(ScenarioError) as err:
        _load(write_scenario, 501, config)
    text = str(err.value)
    assert "s.yaml:" in text and "market.bars: too many bars for one run" in text
    assert "(got 501;" in text and "limit 500, config/harness.yaml scenario.max_bars" in text


def test_the_project_limit_is_the_config_file_s(write_scenario) -> None:
    assert max_bars(ROOT / "config") == DEFAULT_MAX_BARS
    with pytest.raises(ScenarioError, match="too many bars"):
        _load(write_scenario, DEFAULT_MAX_BARS + 1, ROOT / "config")


def test_without_a_harness_file_the_default_holds_and_a_bad_limit_is_refused(tmp_path: Path) -> None:
    assert max_bars(tmp_path) == DEFAULT_MAX_BARS
    with pytest.raises(ScenarioError, match="scenario.max_bars: expected an integer >= 1"):
        max_bars(_limits(tmp_path, 0))
