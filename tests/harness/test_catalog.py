"""The fault catalog: one record per kind, modes derived from the implementations, no import cycle,
one semantics where both modes compute something."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from harness.faults import FAULTS
from harness.faults.contract import MODES, FaultKind, kind
from harness.faults.docs import DOC, cmd_docs, render
from harness.faults.exchange import retry_after_s
from harness.faults.market import drawdown_goal, drawdown_leverage
from harness.scenario import ScenarioError, load_scenario


async def _sim(world: object, step: object) -> None:
    return None


def test_the_modes_of_a_kind_are_the_implementations_it_has() -> None:
    for k in FAULTS.values():
        assert k.modes == {m for m in MODES if getattr(k, m) is not None}, k.kind
        for mode in MODES:
            assert (mode in k.modes) != (mode in k.not_in), f"{k.kind}: {mode} implemented xor a reason why not"
    sim_only = kind("x_fault", "market", "a test kind", sim=_sim, net=None, not_in={"net": "no wire"})
    assert isinstance(sim_only, FaultKind) and sim_only.modes == {"sim"}


def test_a_kind_missing_an_implementation_must_say_why() -> None:
    with pytest.raises(ValueError, match="x_fault: no net implementation and no reason why"):
        kind("x_fault", "market", "a test kind", sim=_sim, net=None)


def test_fault_modules_import_neither_runner() -> None:
    """The cycle harness/runner.py <-> harness/faults/* is gone: the catalog loads without either
    runner, and each runner imports the catalog."""
    code = ("import sys, harness.faults; "
            "print(sorted(m for m in ('harness.sim.world', 'harness.net.runner', 'harness.scenario') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_kind_in_a_mode_without_an_implementation_is_a_collection_error_naming_why(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("scenario: slow-model-net\ncovers: [C2.latency]\nmode: net\nprofile: futures\n"
                    "steps:\n  - id: slow\n    at: 1s\n    fault: inference_latency\n"
                    "    params: {ms: 500, duration: 5s}\n"
                    "expect:\n  - event: trading.paused\n    after: slow\n    within: 10s\n")
    with pytest.raises(ScenarioError, match=r"s.yaml:8: steps\[0\].fault: fault 'inference_latency' is not "
                                            r"available in mode net \(it runs in: sim\): inference runs inside"):
        load_scenario(path, checklist_ids=None)


@pytest.mark.parametrize(("ms", "header"), [(None, None), (0, 0), (1, 1), (1000, 1), (1001, 2), (1500, 2),
                                             (120_000, 120)])
def test_retry_after_goes_out_in_whole_seconds_rounded_up_in_both_modes(ms: float | None, header: int | None) -> None:
    assert retry_after_s(ms) == header


def test_a_drawdown_goal_is_measured_from_the_peak_not_from_current_equity() -> None:
    # equity 9,800 after a loss from a peak of 10,000: 5 % below the peak is 9,500, 300 to go
    goal = drawdown_goal(5.0, 10_000.0, 9_800.0, 60_000.0, 0.5, 0.1, 20.0)
    assert goal == pytest.approx(60_000.0 - 300.0 / 0.5 - 0.1)
    assert drawdown_goal(5.0, 10_000.0, 9_400.0, 60_000.0, 0.5, 0.1, 20.0) is None  # already past
    assert drawdown_leverage(6.0, 10.0) == pytest.approx(2.0)  # 6 % by a 3 % move (<= 0.4 x the 10 % limit)


def test_the_committed_fault_table_is_the_catalog() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render(text) == text, "docs/scenarios.md's fault table is stale: run `gameday docs`"


def test_docs_check_fails_on_a_hand_edited_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "scenarios.md"
    doc.write_text(DOC.read_text(encoding="utf-8").replace("| `price_gap` | market | pct | sim, net |",
                                                           "| `price_gap` | market | pct | sim |"))
    assert cmd_docs(argparse.Namespace(doc=doc, check=True)) == 1
    assert "differs from the catalog" in capsys.readouterr().err
    assert cmd_docs(argparse.Namespace(doc=doc, check=False)) == 0  # rewritten from the catalog
    assert doc.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
