"""metrics.prom: the harness's results as OpenMetrics text beside the evidence."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness.cli import main
from harness.evidence import append_evidence
from harness.metrics_file import render, write_metrics_file

RECORDS = [
    {"scenario": "drawdown-critical-halts-futures", "mode": "sim", "profile": "futures", "verdict": "pass",
     "duration_s": 0.04, "time_scale": 1.0,
     "expectations": [{"text": "breaker.tripped{breaker=drawdown} within 1 bar after dd", "sla_ms": 300000,
                       "observed_ms": 0, "verdict": "pass"},
                      {"text": "never order.placed", "sla_ms": None, "observed_ms": None, "verdict": "pass"}]},
    {"scenario": "net-alerts-slack", "mode": "net", "profile": "futures", "verdict": "fail", "duration_s": 9.5,
     "time_scale": 1.0,
     "expectations": [{"text": "alert.sent{channel=slack} within 5s after dd", "sla_ms": 5000, "observed_ms": 6200,
                       "verdict": "fail"}]},
]


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_verdicts_and_reaction_against_sla_as_openmetrics() -> None:
    text = render(RECORDS, now_s=1_767_571_200).decode()
    assert text.endswith("# EOF\n")
    s = _samples(text)
    key = frozenset({("scenario", "net-alerts-slack"), ("mode", "net"), ("profile", "futures")})
    exp = key | {("expectation", "alert.sent{channel=slack} within 5s after dd")}
    assert s[("gameday_scenario_passed", key)] == 0
    assert s[("gameday_scenario_verdict", key | {("verdict", "fail")})] == 1
    assert s[("gameday_scenario_verdict", key | {("verdict", "pass")})] == 0
    assert s[("gameday_expectation_observed_seconds", exp)] == 6.2
    assert s[("gameday_expectation_sla_seconds", exp)] == 5.0
    assert s[("gameday_expectation_met", exp)] == 0
    assert s[("gameday_scenarios", frozenset({("verdict", "pass")}))] == 1
    assert s[("gameday_run_timestamp_seconds", frozenset())] == 1_767_571_200
    never = frozenset({("scenario", "drawdown-critical-halts-futures"), ("mode", "sim"), ("profile", "futures"),
                       ("expectation", "never order.placed")})
    assert ("gameday_expectation_sla_seconds", never) not in s, "no SLA, no SLA series"


def test_the_file_is_valid_prometheus_text_for_a_textfile_collector(tmp_path: Path) -> None:
    for record in RECORDS:
        append_evidence(tmp_path, record)
    path = write_metrics_file(tmp_path)
    assert path == tmp_path / "metrics.prom" and not list(tmp_path.glob(".metrics.prom.*"))
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("GAMEDAY_REQUIRE_SERVICES") == "1":
            pytest.fail("promtool is missing and GAMEDAY_REQUIRE_SERVICES=1: apt-get install -y prometheus")
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=path.read_text(), capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = subprocess.run([promtool, "check", "metrics"], input="gameday_x{a=\"1\" 1\n", capture_output=True,
                         text=True, timeout=30, check=False)
    assert bad.returncode != 0, "promtool does reject broken text"


def test_gameday_run_writes_it_beside_the_evidence(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("scenario: tiny-alert\ncovers: [PETS.monitoring]\nprofile: futures\n"
                        "market: {bars: 12, vol_bps: 15}\naccount: {equity: 10000, strategy: off}\n"
                        "steps:\n  - {id: kill, at: 5 bars, fault: kill_switch, params: {mode: pause}}\n"
                        "expect:\n  - {event: alert.sent, match: {channel: slack, key: killswitch.engaged}, "
                        "after: kill, within: 5s}\n")
    report = tmp_path / "out"
    assert main(["run", str(scenario), "--report", str(report), "--", "-q", "-p", "no:randomly"]) == 0
    sealed = report / "latest"
    s = _samples((sealed / "metrics.prom").read_text())
    key = frozenset({("scenario", "tiny-alert"), ("mode", "sim"), ("profile", "futures")})
    assert s[("gameday_scenario_passed", key)] == 1
    assert "metrics.prom" in (sealed / "manifest.json").read_text(), "sealed with the evidence"
