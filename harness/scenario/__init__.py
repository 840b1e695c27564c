"""Scenario files: the model and a loader with precise errors (params checked against the fault
catalog, harness.faults).

DESIGN.md "Scenario files" is the contract. Every problem is reported as
`path/file.yaml:LINE: <key path>: <what is wrong> (got X; allowed: ...)`, and the loader reports
every problem it finds in one `ScenarioError`, not only the first.

Numeric fault params may cite the policy (`{policy: dotted.path, plus: X}` / `{..., times: X}`);
they are kept as `PolicyRef` by the loader and turned into plain numbers by `resolve_params`
once the caller has a policy lookup for the scenario's profile.

The package's modules: errors (Problem, ScenarioError, YAML with lines), values (Duration,
PolicyRef), model (Scenario and its parts), files (config lookups, which files are scenarios),
reader / params / expectations / loader (the loader, section by section). This module is its
public surface.
"""

from __future__ import annotations

from harness.faults.contract import MODES
from harness.scenario.errors import LList, LMap, Problem, ScenarioError, parse_yaml
from harness.scenario.files import (
    DEFAULT_MAX_BARS,
    HARNESS_CONFIG,
    SCENARIO_SUFFIXES,
    covers_ok,
    default_config_dir,
    known_profiles,
    load_checklist_ids,
    max_bars,
    project_root,
    scenario_signs,
)
from harness.scenario.loader import load_scenario
from harness.scenario.model import (
    FINAL_VALUES,
    KNOWN_TAGS,
    Account,
    Condition,
    Expectation,
    Final,
    Market,
    Match,
    Position,
    Scenario,
    Step,
    event_pattern,
    same_value,
)
from harness.scenario.params import PolicyLookup, check_bounds, dict_lookup, resolve_all, resolve_params, signal_name
from harness.scenario.values import Duration, DurationUnit, PolicyRef, policy_unit

__all__ = [
    "DEFAULT_MAX_BARS", "FINAL_VALUES", "HARNESS_CONFIG", "KNOWN_TAGS", "MODES", "SCENARIO_SUFFIXES", "Account",
    "Condition", "Duration", "DurationUnit", "Expectation", "Final", "LList", "LMap", "Market", "Match",
    "PolicyLookup", "PolicyRef", "Position", "Problem", "Scenario", "ScenarioError", "Step", "check_bounds",
    "covers_ok", "default_config_dir", "dict_lookup", "event_pattern", "known_profiles", "load_checklist_ids",
    "load_scenario", "max_bars", "parse_yaml", "policy_unit", "project_root", "resolve_all", "resolve_params",
    "same_value", "scenario_signs", "signal_name",
]
