"""`python -m bot config check`: both profiles pass; each class of mistake gets its one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import DEFAULT_CONFIG_DIR, ConfigError, load_policy
from bot.core.policy import policy_value

BASE_POLICY = (DEFAULT_CONFIG_DIR / "risk_policy.yaml").read_text()
BASE_BREAKERS = (DEFAULT_CONFIG_DIR / "circuit_breakers.toml").read_text()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "config", "check", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("profile", ["futures", "pets"])
def test_profiles_pass_with_a_summary(profile: str) -> None:
    result = check("--profile", profile)
    assert result.returncode == 0, result.stderr
    assert f"profile {profile}: ok" in result.stdout


def test_profiles_carry_their_checklist_numbers() -> None:
    futures = load_policy("futures").policy
    pets = load_policy("pets").policy
    assert policy_value(futures, "circuit_breakers.drawdown.threshold_pct") == 3.0
    assert policy_value(futures, "circuit_breakers.drawdown.emergency_pct") == 5.0
    assert policy_value(futures, "circuit_breakers.consecutive_losses.max_consecutive_losses") == 5
    assert policy_value(futures, "position_sizing.max_position_pct") == 0.20
    assert policy_value(pets, "circuit_breakers.consecutive_losses.max_consecutive_losses") == 3
    assert policy_value(pets, "circuit_breakers.drawdown.threshold_pct") == 5.0
    assert policy_value(pets, "circuit_breakers.drawdown.peak.threshold_pct") == 25.0
    assert policy_value(pets, "circuit_breakers.drawdown.peak.emergency_pct") == 40.0
    assert policy_value(pets, "position_sizing.max_position_pct") == 0.15
    assert pets.position_sizing.zones.blocked == ("Z4", "Z5")
    assert pets.orders.post_only is True


def run_with(tmp_path: Path, policy: str = BASE_POLICY, breakers: str = BASE_BREAKERS) -> list[str]:
    (tmp_path / "risk_policy.yaml").write_text(policy)
    (tmp_path / "circuit_breakers.toml").write_text(breakers)
    result = check("--policy", str(tmp_path / "risk_policy.yaml"),
                   "--breakers", str(tmp_path / "circuit_breakers.toml"))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("policy", "  kelly_fraction: 0.5", "  kelly_fracton: 0.5",
         "risk_policy.yaml: position_sizing.kelly_fracton: unknown key, did you mean 'kelly_fraction'? "
         "(got 0.5; expected one of kelly_fraction, max_position_pct"),
        ("policy", "  kelly_fraction: 0.5", "  kelly_fraction: half",
         "risk_policy.yaml: position_sizing.kelly_fraction: wrong type (got 'half'; expected a number in (0, 1])"),
        ("policy", "  max_position_pct: 0.20", "  max_position_pct: 1.5",
         "risk_policy.yaml: position_sizing.max_position_pct: out of range (got 1.5; expected a number in (0, 1])"),
        ("policy", "  risk_per_trade: 0.02", "  risk_per_trade: 0",
         "risk_policy.yaml: position_sizing.risk_per_trade: out of range (got 0; expected a number in (0, 1])"),
        ("policy", "    min_pct: 0.01", "    min_pct: 0.08",
         "risk_policy.yaml: exits.stop_loss.min_pct: stop min above max (got 0.08; expected <= "
         "exits.stop_loss.max_pct (0.05))"),
        ("policy", "    max_hold_periods: 48", "    max_hold_periods: 0",
         "risk_policy.yaml: exits.time_exit.max_hold_periods: out of range (got 0; expected a number >= 1)"),
        ("breakers", "warning_pct = 2.0", "warning_pct = 4.0",
         "circuit_breakers.toml: circuit_breakers.drawdown.warning_pct: tiers out of order (got 4.0; "
         "expected warning_pct < threshold_pct (3.0))"),
        ("breakers", "emergency_pct = 5.0", "emergency_pct = 2.5",
         "circuit_breakers.toml: circuit_breakers.drawdown.emergency_pct: tiers out of order (got 2.5; "
         "expected emergency_pct > threshold_pct (3.0))"),
        ("breakers", "max_consecutive_losses = 5", "max_consecutive_losses = 0",
         "circuit_breakers.toml: circuit_breakers.consecutive_losses.max_consecutive_losses: out of range "
         "(got 0; expected a number >= 1)"),
        ("breakers", "max_lag_seconds = 5.0", "max_lag_seconds = -5.0",
         "circuit_breakers.toml: circuit_breakers.latency.websocket.max_lag_seconds: out of range "
         "(got -5.0; expected a number > 0)"),
        ("breakers", 'action = "pause_trading"', 'action = "panic"',
         "circuit_breakers.toml: circuit_breakers.latency.websocket.action: not an allowed value "
         "(got 'panic'; expected 'pause_new_entries', 'pause_trading', 'backoff', 'halt_trading' or "
         "'flatten_and_halt')"),
        ("breakers", "size_multiplier = 0.25", "size_multiplier = 0.75",
         "circuit_breakers.toml: circuit_breakers.consecutive_losses.size_reduction[1].size_multiplier: "
         "reduction not progressive (got 0.75; expected <= 0.5"),
        ("policy", "{name: paper, max_capital_usd: null, paper: true", "{name: paper, paper: true",
         "risk_policy.yaml: capital_ramp.stages[0].max_capital_usd: missing key (got nothing; "
         "expected a number > 0, or null)"),
    ],
    ids=["typo", "type", "fraction-range", "zero", "stop-min-max", "zero-count", "warning-order",
         "emergency-order", "zero-losses", "negative-limit", "bad-action", "non-progressive", "optional-missing"],
)
def test_each_mistake_gets_one_line_naming_file_key_value_and_range(
        tmp_path: Path, file: str, old: str, new: str, expected: str) -> None:
    policy, breakers = BASE_POLICY, BASE_BREAKERS
    if file == "policy":
        assert old in policy
        policy = policy.replace(old, new, 1)
    else:
        assert old in breakers
        breakers = breakers.replace(old, new, 1)
    lines = run_with(tmp_path, policy, breakers)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]


def test_missing_section_is_named(tmp_path: Path) -> None:
    policy = BASE_POLICY.split("exits:")[0] + "execution_costs:" + BASE_POLICY.split("execution_costs:")[1]
    lines = run_with(tmp_path, policy)
    assert lines == ["risk_policy.yaml: exits: missing section (got nothing; expected a table with keys "
                     "stop_loss, take_profit, time_exit, volatility_exit)"]


def test_unknown_profile_lists_the_known_ones() -> None:
    result = check("--profile", "petz")
    assert result.returncode == 2
    assert result.stderr.strip() == "profiles: petz: unknown profile (got 'petz'; expected one of futures, pets)"


def test_syntax_error_is_one_line(tmp_path: Path) -> None:
    lines = run_with(tmp_path, breakers=BASE_BREAKERS + "\n[broken\n")
    assert len(lines) == 1 and lines[0].startswith("circuit_breakers.toml: (syntax): cannot parse")


def test_profile_overlay_errors_name_the_profile_file(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    for name in ("risk_policy.yaml", "circuit_breakers.toml", "slas.yaml"):
        (tmp_path / name).write_text((DEFAULT_CONFIG_DIR / name).read_text())
    (tmp_path / "profiles" / "team.yaml").write_text(
        "overlay:\n  circuit_breakers:\n    drawdown:\n      threshold_pct: 1.0\n")
    with pytest.raises(ConfigError) as caught:
        load_policy("team", directory=tmp_path)
    assert [str(p) for p in caught.value.problems] == [
        "circuit_breakers.toml: circuit_breakers.drawdown.warning_pct: tiers out of order (got 2.0; expected "
        "warning_pct < threshold_pct (1.0))"
    ]


def test_time_scale_multiplies_every_time_threshold_and_nothing_else() -> None:
    from bot.config import TIME_FIELDS, scale_time

    base = load_policy("futures").policy
    scaled = scale_time(base, 0.1)
    for dotted in TIME_FIELDS:
        assert policy_value(scaled, dotted) == pytest.approx(float(policy_value(base, dotted)) * 0.1), dotted
    assert scaled.circuit_breakers.drawdown.threshold_pct == base.circuit_breakers.drawdown.threshold_pct
    assert scaled.position_sizing == base.position_sizing
    with pytest.raises(ValueError, match="positive"):
        scale_time(base, 0)
