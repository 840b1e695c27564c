"""deploy/: the Grafana dashboard and the Prometheus rules speak only of metrics the bot exports,
and the rules pass promtool (check and unit tests). promtool comes with Debian's `prometheus`
package (.ci/run installs it); without it these skip, unless GAMEDAY_REQUIRE_SERVICES=1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.io.metrics import BotMetrics, exported_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gameday.json"
RULES = DEPLOY / "prometheus" / "rules" / "gameday.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "gameday.rules.test.yml"
PROMETHEUS_SERIES = {"up"}  # synthesised by Prometheus for every scrape target, not exported by the bot
SECTIONS = ("Portfolio overview", "Bot performance", "Circuit-breaker status", "Alert history")

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
             "unless", "inf", "nan", "atan2"}
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, label names (in {...}, by (...), ...), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def _panels(node: Any) -> list[dict[str, Any]]:
    out = []
    for panel in node.get("panels", []):
        out.append(panel)
        out += _panels(panel)
    return out


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in _panels(dash) for t in p.get("targets", [])]


def _rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in groups for r in g["rules"]]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_names(BotMetrics()) | PROMETHEUS_SERIES


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, channel) (rate(gameday_alert_delivery_seconds_bucket'
            '{channel="slack", job=~"gameday.*"}[15m]))) > 5 and on (instance) up{job="gameday-bot"} == 1 '
            'or time() - max by (instance) (gameday_alert_last_success_timestamp_seconds offset 5m) > 900')
    assert promql_metric_names(expr) == {"gameday_alert_delivery_seconds_bucket", "up",
                                         "gameday_alert_last_success_timestamp_seconds"}
    assert promql_metric_names('sum(rate(gameday_ordres_total[5m]))') == {"gameday_ordres_total"}


def test_a_misspelt_metric_is_caught(exported: set[str]) -> None:
    """The check below can fail: a name the bot does not export is reported."""
    assert promql_metric_names("gameday_equty > 0") - exported == {"gameday_equty"}


def test_every_dashboard_panel_names_only_exported_metrics(exported: set[str]) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    unknown = {title: sorted(promql_metric_names(e) - exported) for title, e in exprs
               if promql_metric_names(e) - exported}
    assert not unknown, unknown
    used = set().union(*(promql_metric_names(e) for _, e in exprs))
    for needed in ("gameday_equity", "gameday_unrealized_pnl", "gameday_realized_pnl", "gameday_breaker_level",
                   "gameday_trading_state", "gameday_killswitch_engaged", "gameday_alerts_sent_total",
                   "gameday_alerts_failed_total", "gameday_alert_delivery_seconds_bucket", "gameday_healthy",
                   "gameday_trades_total", "gameday_feed_lag_seconds"):
        assert needed in used, needed


def test_every_alert_rule_names_only_exported_metrics(exported: set[str]) -> None:
    exprs = _rule_exprs()
    unknown = {name: sorted(promql_metric_names(e) - exported) for name, e in exprs
               if promql_metric_names(e) - exported}
    assert not unknown, unknown
    names = {name for name, _ in exprs}
    assert {"GamedayBotDown", "GamedayFeedStale", "GamedayBreakerTripped", "GamedayAlertsFailing",
            "GamedayAlertsNotReceived"} <= names


def test_the_dashboard_has_the_four_sections_and_well_formed_panels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert tuple(rows) == SECTIONS
    panels = [p for p in _panels(dash) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["datasource"]["uid"] == "gameday-prometheus" and p["targets"], p["title"]
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "gameday.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "gameday-prometheus"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("GAMEDAY_REQUIRE_SERVICES") == "1":
            pytest.fail("promtool is missing and GAMEDAY_REQUIRE_SERVICES=1: apt-get install -y prometheus")
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def test_the_rules_pass_promtool_check_rules() -> None:
    done = _run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_fire_when_they_should_promtool_unit_tests() -> None:
    done = _run("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_catches_a_broken_rule_and_a_wrong_expectation(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(RULES.read_text().replace("gameday_healthy == 0", "gameday_healthy ==", 1))
    assert _run("check", "rules", str(broken)).returncode != 0
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(RULES, rules / RULES.name)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / RULE_TESTS.name).write_text(RULE_TESTS.read_text().replace("eval_time: 15s", "eval_time: 5m", 1))
    assert _run("test", "rules", str(tests / RULE_TESTS.name)).returncode != 0, "BotDown fires at 5m: no empty list"


def test_the_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    token = tmp_path / "metrics_token"
    token.write_text("t")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = _run("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
