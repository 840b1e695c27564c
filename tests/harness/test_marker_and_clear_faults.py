"""The params of `marker_written` and of `clear_kill_switch`'s credentials are checked at load: a
scenario that cannot say what it injects is a file:line error, never a fault with made-up bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import ScenarioError, load_scenario

HEAD = "scenario: s\ncovers: [C2.kill_switch]\nprofile: futures\nsteps:\n"


def load(tmp_path: Path, step: str):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + step, encoding="utf-8")
    return load_scenario(path, profiles=None, checklist_ids=None, display_path="s.yaml")


def test_clear_kill_switch_takes_credentials_and_defaults_to_the_operators(tmp_path):
    plain = load(tmp_path, "  - {id: c, at: 2 bars, fault: clear_kill_switch}\n")
    assert "credentials" not in plain.steps[0].params  # the default (valid) is applied when resolved
    bad = load(tmp_path, "  - {id: c, at: 2 bars, fault: clear_kill_switch, params: {credentials: invalid}}\n")
    assert bad.steps[0].params["credentials"] == "invalid"


@pytest.mark.parametrize(("step", "expected"), [
    ("  - {id: c, at: 2 bars, fault: clear_kill_switch, params: {credentials: stolen}}\n",
     "s.yaml:5: steps[0].params.credentials"),
    ("  - {id: m, at: 2 bars, fault: marker_written}\n", "s.yaml:5: steps[0].params"),
    ("  - {id: m, at: 2 bars, fault: marker_written, params: {content: 7}}\n", "s.yaml:5: steps[0].params.content"),
])
def test_a_wrong_param_is_a_load_error_at_its_line(tmp_path, step, expected):
    with pytest.raises(ScenarioError) as err:
        load(tmp_path, step)
    assert str(err.value).startswith(expected), str(err.value)
