"""One scenario file, run in sim mode and in net mode, means the same thing in both.

The file's drawdown step is the kind whose modes used to disagree (net measured from current equity
and needed a position from the scenario). The file gives no `account.position`: in both modes the
harness arranges the exposure itself and takes equity `depth_pct` below the day's peak, and in both
the bot's drawdown breaker trips critical and halts. The same file is loaded once; only `mode` is
switched, as the format allows for a kind that has both implementations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from harness.collect import RunContext, default_policy_provider
from harness.expect import judge
from harness.faults import FAULTS
from harness.net.runner import run_net
from harness.scenario import default_config_dir, load_scenario, resolve_all
from harness.sim.runner import simulate

pytestmark = pytest.mark.net

BOTH = """\
scenario: drawdown-halts-in-both-modes
title: A drawdown past the critical threshold, from the day's peak, with exposure the harness arranges
covers: [C2.drawdown]
tags: [gate]
mode: sim
profile: futures
seed: 7
time_scale: 0.1
market: {start_price: 60000, bars: 12}
account: {equity: 10000, strategy: off}
steps:
  - id: dd
    at: 5s
    fault: drawdown
    params: {depth_pct: {policy: circuit_breakers.drawdown.threshold_pct, plus: 0.5}}
expect:
  - event: breaker.tripped
    match: {breaker: drawdown, level: critical}
    after: dd
    within: 10s
  - event: trading.halted
    after: dd
    within: 10s
  - never: trading.resumed
final: {trading: halted}
"""


def _depth_reached(record: Any) -> float:
    """The depth the tripped breaker measured (percent below the peak)."""
    tripped = [e for e in record.events if e.name == "breaker.tripped" and e.fields.get("breaker") == "drawdown"]
    assert tripped, [e.name for e in record.events]
    return float(tripped[0].fields["value"])


def test_one_drawdown_file_passes_in_sim_and_in_net_with_the_same_meaning(tmp_path: Path) -> None:
    assert FAULTS["drawdown"].modes == {"sim", "net"}
    path = tmp_path / "drawdown-both.yaml"
    path.write_text(BOTH)
    scenario = load_scenario(path, checklist_ids=None)
    bundle = default_policy_provider(scenario.profile, default_config_dir())

    sim_record = simulate(scenario, resolve_all(scenario, bundle.lookup), bundle.policy.policy, tmp_path / "sim")
    sim = judge(scenario, sim_record)
    assert sim.passed, sim.message

    net_scenario = dataclasses.replace(scenario, mode="net")
    context = RunContext(None, resolve_all(net_scenario, bundle.lookup), bundle, tmp_path / "evidence",  # type: ignore[arg-type]
                         net_scenario.time_scale)
    net_record = run_net(net_scenario, context)
    net = judge(net_scenario, net_record)
    assert net.passed, net.message
    assert any("opened on the bot's account, adopted" in n for n in net_record.notes), net_record.notes

    # The same fault: in both the breaker measured at least the requested depth, and not far past it
    # (one price move to the depth, not a crash through the emergency level).
    threshold = float(bundle.lookup("circuit_breakers.drawdown.threshold_pct"))
    emergency = float(bundle.lookup("circuit_breakers.drawdown.emergency_pct"))
    for record in (sim_record, net_record):
        assert threshold + 0.5 - 0.05 <= _depth_reached(record) < emergency
