"""A scenario's `policy:` overlay: keys checked against the policy schema at load, values against the
profile's policy at collection, each problem at the line of its setting; the overlaid policy is what
`{policy: ...}` params resolve against and what the evidence names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.collect import default_policy_provider, overlaid
from harness.evidence import build_evidence
from harness.expect import Judgement
from harness.scenario import ScenarioError, load_scenario, resolve_all

CONFIG = Path(__file__).resolve().parents[2] / "config"
HEAD = "scenario: overlay\ncovers: [C1.sizing]\nprofile: futures\n"
STEP = "steps:\n  - {id: dd, at: 5 bars, fault: drawdown, params: {depth_pct: {policy: " \
       "circuit_breakers.drawdown.threshold_pct, plus: 0.5}}}\n"


def load(tmp_path: Path, body: str, mode: str = "sim"):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + f"mode: {mode}\n" + body, encoding="utf-8")
    return load_scenario(path, profiles=None, checklist_ids=None, display_path="s.yaml")


def collect(tmp_path: Path, body: str):
    scenario = load(tmp_path, body)
    return scenario, overlaid(default_policy_provider("futures", CONFIG), scenario)


def test_dotted_and_nested_settings_reach_the_policy_and_the_params(tmp_path):
    scenario, bundle = collect(tmp_path, "policy:\n  circuit_breakers.drawdown.threshold_pct: 4.0\n"
                                         "  capital_ramp: {declared_capital_usd: 50000}\n" + STEP)
    assert bundle.policy.policy.circuit_breakers.drawdown.threshold_pct == 4.0
    assert bundle.policy.policy.capital_ramp.declared_capital_usd == 50000
    assert resolve_all(scenario, bundle.lookup)["dd"]["depth_pct"] == 4.5  # resolved on the overlay


def test_the_profile_itself_is_left_as_it_was(tmp_path):
    base = default_policy_provider("futures", CONFIG)
    scenario = load(tmp_path, "policy: {position_sizing.max_position_pct: 0.1}\n")
    bundle = overlaid(base, scenario)
    assert base.policy.policy.position_sizing.max_position_pct == 0.2
    assert bundle.digest != base.digest  # the evidence names the policy the bot ran on


@pytest.mark.parametrize(("body", "expected"), [
    ("policy:\n  position_sizing.max_total_exposure_pc: 0.1\n",
     "s.yaml:6: policy.position_sizing.max_total_exposure_pc: unknown policy key, did you mean "
     "'max_total_exposure_pct'?"),
    ("policy:\n  capital_ramp:\n    hot_wallet_share: 0.1\n",
     "s.yaml:7: policy.capital_ramp.hot_wallet_share: unknown policy key, did you mean 'hot_wallet_max_share'?"),
    ("policy:\n  positon_sizing: {max_position_pct: 0.1}\n",
     "s.yaml:6: policy.positon_sizing: unknown policy key, did you mean 'position_sizing'?"),
    ("policy: [position_sizing.max_position_pct]\n", "s.yaml:5: policy: expected a mapping of policy keys"),
])
def test_a_key_the_policy_schema_does_not_have_is_a_load_error_at_its_line(tmp_path, body, expected):
    with pytest.raises(ScenarioError) as err:
        load(tmp_path, body)
    assert str(err.value).startswith(expected)


@pytest.mark.parametrize(("body", "expected"), [
    ("policy:\n  position_sizing.max_position_pct: \"0.1\"\n",
     "s.yaml:6: policy.position_sizing.max_position_pct: wrong type"),
    ("policy:\n  position_sizing.max_position_pct: 1.5\n", "s.yaml:6: policy.position_sizing.max_position_pct: "
                                                           "out of range"),
    ("policy:\n  position_sizing.max_position_pct.low: 1\n", "s.yaml:6: policy.position_sizing.max_position_pct: "
                                                              "not a table of keys"),
    # valid alone, but above the profile's total exposure cap: the invariant names the setting's line
    ("policy:\n  position_sizing: {max_position_pct: 0.9}\n", "s.yaml:6: policy.position_sizing.max_position_pct: "
                                                              "above total exposure cap"),
])
def test_a_value_the_policy_refuses_is_a_collection_error_at_its_line(tmp_path, body, expected):
    with pytest.raises(ScenarioError) as err:
        collect(tmp_path, body)
    assert str(err.value).startswith(expected)


def test_a_net_scenario_refuses_an_overlay(tmp_path):
    with pytest.raises(ScenarioError, match="s.yaml:5: policy: a policy overlay applies in sim mode only"):
        load(tmp_path, "policy: {position_sizing.max_position_pct: 0.1}\n", mode="net")


def test_the_evidence_keeps_the_settings(tmp_path):
    scenario = load(tmp_path, "policy: {capital_ramp.declared_capital_usd: 50000}\n")
    plain = load(tmp_path, "")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for s, overlay in ((scenario, {"capital_ramp.declared_capital_usd": 50000}), (plain, None)):
        ev = build_evidence(s, Judgement(s.id, "pass", (), (), "ok"), None, config_digest="sha256:x",
                            started_at=when, duration_s=0.0)
        assert ev.get("policy_overlay") == overlay
