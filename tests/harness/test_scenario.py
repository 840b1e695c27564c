"""The scenario loader: model, durations, policy references, catalog, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.events import EVENTS
from harness.faults import FAULTS
from harness.scenario import (
    Duration,
    PolicyRef,
    ScenarioError,
    dict_lookup,
    load_scenario,
    resolve_all,
    resolve_params,
    scenario_signs,
)

PROFILES = {"futures", "pets"}
CHECKLIST = {"C2.drawdown", "C2.latency", "PETS.circuit_breakers"}
POLICY = dict_lookup({
    "circuit_breakers": {
        "drawdown": {"threshold_pct": 3.0, "cooldown_minutes": 60.0},
        "consecutive_losses": {"max_consecutive_losses": 5},
        "latency": {"websocket": {"max_lag_seconds": 5.0}, "inference": {"p95_ms": 500.0}},
    },
    "kill_switch": {"marker_file": "state/EMERGENCY_STOP"},
})

GOOD = """
scenario: drawdown-critical-halts
title: Drawdown past critical halts
covers: [C2.drawdown.critical]
tags: [gate]
mode: sim
profile: futures
seed: 7
market: {generator: random_walk, start_price: 60000, bars: 400, vol_bps: 15}
account: {equity: 10000, position: {side: long, qty_pct: 20}}
steps:
  - id: dd
    at: 120 bars
    fault: drawdown
    params:
      depth_pct: {policy: circuit_breakers.drawdown.threshold_pct, plus: 0.5}
  - id: streak
    at: 130 bars
    fault: loss_streak
    params: {count: {policy: circuit_breakers.consecutive_losses.max_consecutive_losses}}
  - id: resume
    at: 300 bars
    fault: manual_resume
expect:
  - event: breaker.tripped
    match: {breaker: drawdown, level: {in: [critical, emergency]}}
    after: dd
    within: 1 bar
  - never: order.placed
    match: {reduce_only: false}
    after: dd
    until: resume
final: {trading: active, killswitch: clear}
"""


def load(write_scenario, text: str, name: str = "s.yaml"):
    return load_scenario(write_scenario(name, text), profiles=PROFILES, checklist_ids=CHECKLIST)


def problems(write_scenario, text: str, name: str = "s.yaml") -> str:
    with pytest.raises(ScenarioError) as err:
        load(write_scenario, text, name)
    return str(err.value)


def test_good_file_loads_into_the_model(write_scenario):
    s = load(write_scenario, GOOD)
    assert s.id == "drawdown-critical-halts"
    assert s.covers == ("C2.drawdown.critical",) and s.tags == ("gate",)
    assert (s.mode, s.profile, s.seed, s.time_scale) == ("sim", "futures", 7, 1.0)
    assert s.market.bars == 400 and s.market.bar_ms == 300_000
    assert s.account.position is not None and s.account.position.qty_pct == 20
    dd = s.step("dd")
    assert dd.at == Duration(120, "bar") and dd.line == 11
    assert dd.params["depth_pct"] == PolicyRef("circuit_breakers.drawdown.threshold_pct", 0.5, 1.0,
                                               None, 15)
    assert [e.text for e in s.expect] == [
        "breaker.tripped{breaker=drawdown,level=critical|emergency} within 1 bar after dd",
        "never order.placed{reduce_only=false} after dd until resume",
    ]
    assert s.final is not None and s.final.checks() == [("trading", "active"), ("killswitch", "clear")]


@pytest.mark.parametrize(("text", "ms"), [
    ("120 bars", 120 * 300_000), ("1 bar", 300_000), ("2bars", 600_000), ("500ms", 500),
    ("30s", 30_000), ("1.5s", 1_500), ("5m", 300_000), ("2h", 7_200_000), ("-2s", -2_000),
])
def test_durations_convert_to_ms(text, ms):
    assert Duration.parse(text).to_ms(300_000) == ms


@pytest.mark.parametrize("text", ["", "5", "1 week", "5 min", "s", "1.2.3s", "bars"])
def test_bad_durations_list_the_accepted_forms(text):
    with pytest.raises(ValueError, match='"N bars", "1 bar", "500ms", "30s"'):
        Duration.parse(text)


def test_bar_durations_need_a_bar_length():
    with pytest.raises(ValueError):
        Duration(3, "bar").to_ms()


def test_resolve_params_turns_policy_refs_into_numbers(write_scenario):
    s = load(write_scenario, GOOD)
    params = resolve_all(s, POLICY)
    assert params == {"dd": {"depth_pct": 3.5}, "streak": {"count": 5}, "resume": {}}
    assert isinstance(params["streak"]["count"], int)


def test_times_and_time_units_and_time_scale(write_scenario):
    s = load(write_scenario, """
        scenario: ws-lag
        covers: [C2.latency]
        mode: net
        profile: futures
        time_scale: 0.1
        steps:
          - id: lag
            at: 10s
            fault: ws_lag
            params:
              lag: {policy: circuit_breakers.latency.websocket.max_lag_seconds, times: 2}
              duration: 1m
          - id: slow
            at: 20s
            fault: alert_sink_latency
            params: {ms: {policy: circuit_breakers.latency.inference.p95_ms, plus: 100}, duration: 30s}
          - id: outage
            at: 30s
            fault: exchange_outage
            params: {duration: 2 bars}
        """)
    params = resolve_all(s, POLICY)
    # 5 s x 2 = 10 s, then the net-mode time scale 0.1
    assert params["lag"] == {"lag": 1_000, "duration": 6_000}
    assert params["slow"] == {"ms": 60.0, "duration": 3_000, "channel": "all"}
    assert params["outage"] == {"duration": 60_000, "scope": "all"}  # 2 x 5m x 0.1; default scope
    # sim mode ignores time_scale; the caller may also pass its own
    assert resolve_params(s.step("lag"), POLICY, bar_ms=300_000)["lag"] == 10_000


def test_unknown_policy_path_names_file_and_line_of_the_param(write_scenario):
    s = load(write_scenario, GOOD.replace("drawdown.threshold_pct", "drawdown.treshold_pct"))
    with pytest.raises(ScenarioError) as err:
        resolve_all(s, POLICY)
    assert str(err.value).startswith(f"{s.path}:15: steps.dd.params.depth_pct: unknown policy path")
    assert "circuit_breakers.drawdown.treshold_pct" in str(err.value)


def test_policy_value_out_of_range_after_resolution(write_scenario):
    s = load(write_scenario, GOOD.replace("plus: 0.5", "plus: -3.0"))
    with pytest.raises(ScenarioError, match=r":15: steps.dd.params.depth_pct: resolves out of range"):
        resolve_all(s, POLICY)


def test_a_time_param_citing_a_policy_needs_a_unit(write_scenario):
    text = """
        scenario: ws-lag
        covers: [C2.latency]
        mode: sim
        profile: futures
        steps:
          - id: lag
            at: 10s
            fault: ws_lag
            params: {lag: {policy: circuit_breakers.drawdown.threshold_pct}, duration: 1m}
        """
    assert "cannot tell the time unit" in problems(write_scenario, text)
    s = load(write_scenario, text.replace("threshold_pct}", "threshold_pct, unit: s}"))
    assert resolve_all(s, POLICY)["lag"]["lag"] == 3_000


@pytest.mark.parametrize(("fragment", "line", "message"), [
    ("  - id: dd\n    at: 120 bars\n    fault: drawdwn\n", 7, "unknown fault kind, did you mean 'drawdown'?"),
    ("  - id: dd\n    at: 120 barz\n    fault: restart\n", 6, "not a duration"),
    ("  - id: dd\n    at: 1 bar\n    fault: bot_crash\n", 7, "fault 'bot_crash' is not available in mode sim"),
    ("  - id: dd\n    at: 1 bar\n    fault: restart\n    params: {signal: SIGKILL}\n", 8,
     "steps[0].params.signal: unknown param for restart"),
    ("  - id: dd\n    at: 1 bar\n    fault: restart\n    params: {down_for: -5s}\n", 8,
     "steps[0].params.down_for: a duration cannot be negative (got '-5s'"),
    ("  - id: dd\n    at: 1 bar\n    fault: restart\n    params: {down_for: a while}\n", 8,
     "steps[0].params.down_for: not a duration (got 'a while'; allowed: \"N bars\""),
    ("  - id: dd\n    at: 1 bar\n    fault: kill_switch\n    params: {mode: nuke}\n", 8,
     "steps[0].params.mode: unknown value (got 'nuke'; allowed: immediate|graceful|pause)"),
    ("  - id: dd\n    at: 1 bar\n    fault: spread_spike\n    params: {bps: 80}\n", 8,
     "missing required param 'duration' for spread_spike"),
    ("  - id: dd\n    at: 1 bar\n    fault: price_gap\n    params: {pct: 0}\n", 8, "must not be zero"),
    ("  - id: dd\n    at: 1 bar\n    fault: loss_streak\n    params: {count: 2.5}\n", 8, "expected an integer"),
])
def test_step_errors_name_the_line(write_scenario, fragment, line, message):
    text = "scenario: x\nmode: sim\nprofile: futures\nsteps:\n" + fragment
    out = problems(write_scenario, text)
    assert f"s.yaml:{line}: " in out and message in out, out


def test_unknown_keys_everywhere_name_the_key_and_the_allowed_ones(write_scenario):
    out = problems(write_scenario, """
        scenario: x
        profile: futures
        mood: happy
        market: {bars: 10, colour: red}
        steps:
          - id: a
            at: 1 bar
            fault: restart
            when: now
        expect:
          - event: trading.halted
            within: 1 bar
            before: a
        """)
    assert "s.yaml:3: mood: unknown key, did you mean 'mode'? (got 'mood'; allowed: scenario, title, covers" in out
    assert "s.yaml:4: market.colour: unknown key (got 'colour'; allowed: generator, start_price" in out
    assert "s.yaml:9: steps[0].when: unknown key (got 'when'; allowed: id, at, fault, params)" in out
    assert ("s.yaml:13: expect[0].before: unknown key (got 'before'; allowed: event, match, after, within, "
            "allowance)") in out


def test_expectation_errors(write_scenario):
    out = problems(write_scenario, """
        scenario: x
        profile: futures
        steps:
          - {id: a, at: 1 bar, fault: restart}
          - {id: b, at: 2 bars, fault: restart}
        expect:
          - event: breaker.trippd
            after: a
          - event: trading.halted
            after: c
          - never: order.placed
            after: b
            until: a
          - never: order.placed
            within: 1 bar
        """)
    assert ("s.yaml:7: expect[0].event: unknown event name, did you mean breaker.tripped"
            in out)
    assert "s.yaml:10: expect[1].after: names no step (got 'c'; allowed: a, b)" in out
    assert "s.yaml:13: expect[2].until: step 'a' (1 bar) does not come after step 'b'" in out
    assert "s.yaml:15: expect[3].within: unknown key" in out


MATCH_HEAD = ("scenario: x\ncovers: [C2.drawdown]\nprofile: futures\nsteps:\n  - {id: a, at: 1 bar, fault: restart}\n"
              "expect:\n")


@pytest.mark.parametrize(("expectation", "expected"), [
    pytest.param("  - never: order.placed\n    match: {reduce_onyl: false}\n",
                 "s.yaml:8: expect[0].match.reduce_onyl: order.placed has no field 'reduce_onyl', did you mean "
                 "'reduce_only'? (got 'reduce_onyl'; allowed: client_id, side, qty, price, reduce_only, code, type, "
                 "purpose, post_only, qty_pct, sized_by)", id="typo-in-field"),
    pytest.param('  - never: order.placed\n    match: {reduce_only: "false"}\n',
                 "s.yaml:8: expect[0].match.reduce_only: wrong type (got 'false'; allowed: true or false)",
                 id="string-for-bool"),
    pytest.param("  - never: order.placed\n    match: {qty: 1 bar}\n",
                 "s.yaml:8: expect[0].match.qty: wrong type (got '1 bar'; allowed: a number)", id="text-for-number"),
    pytest.param("  - never: orders.cancelled\n    match: {count: 1.5}\n",
                 "s.yaml:8: expect[0].match.count: wrong type (got 1.5; allowed: an integer)", id="float-for-int"),
    pytest.param("  - event: breaker.tripped\n    match: {breaker: drawdwon}\n",
                 "s.yaml:8: expect[0].match.breaker: unknown value, did you mean 'drawdown'? (got 'drawdwon'; "
                 "allowed: one of drawdown, consecutive_losses", id="enum-typo"),
    pytest.param("  - event: exchange.down\n    match: {scope: [all, rest]}\n",
                 "s.yaml:8: expect[0].match.scope: a list is not a field value; for any-of write {in: [...]}",
                 id="bare-list"),
    pytest.param("  - never: order.placed\n    match: {qty_pct: {lte: 15}}\n",
                 "s.yaml:8: expect[0].match.qty_pct.lte: unknown operator, did you mean 'le'? (got 'lte'; "
                 "allowed: ne, lt, le, gt, ge, in, contains)", id="operator-typo"),
    pytest.param("  - never: order.placed\n    match: {qty: {contains: \"1\"}}\n",
                 "s.yaml:8: expect[0].match.qty.contains: contains looks into text; this field is a number",
                 id="contains-on-number"),
    pytest.param("  - never: order.refused\n    match: {reason: {contains: \"\"}}\n",
                 "s.yaml:8: expect[0].match.reason.contains: expected a non-empty text", id="contains-empty"),
    pytest.param("  - never: order.refused\n    match: {reason: {contains: 3}}\n",
                 "s.yaml:8: expect[0].match.reason.contains: expected a non-empty text (got 3)", id="contains-number"),
    pytest.param("  - never: order.placed\n    match: {qty: {eq: 1}}\n",
                 "s.yaml:8: expect[0].match.qty.eq: equality is the plain value: write the value itself",
                 id="eq-is-the-plain-value"),
    pytest.param("  - never: order.placed\n    match: {side: {lt: 1}}\n",
                 "s.yaml:8: expect[0].match.side.lt: lt compares numbers; this field is one of buy, sell",
                 id="ordering-on-enum"),
    pytest.param("  - never: order.placed\n    match: {qty_pct: {le: \"15\"}}\n",
                 "s.yaml:8: expect[0].match.qty_pct.le: expected a number (got '15')", id="ordering-text"),
    pytest.param("  - never: order.placed\n    match: {side: {in: [buy, sel]}}\n",
                 "s.yaml:8: expect[0].match.side.in: unknown value, did you mean 'sell'?", id="in-typo"),
    pytest.param("  - never: order.placed\n    match: {side: {in: []}}\n",
                 "s.yaml:8: expect[0].match.side.in: expected a non-empty list of values", id="in-empty"),
    pytest.param("  - event: state.restored\n    match: {breakers: x}\n",
                 "s.yaml:8: expect[0].match.breakers: state.restored.breakers is a mapping and cannot be matched",
                 id="object-field"),
    pytest.param("  - event: account.flat\n    match: {symbol: BTCUSDT}\n",
                 "s.yaml:8: expect[0].match.symbol: account.flat has no field 'symbol' (got 'symbol'; "
                 "allowed: none: account.flat carries no fields)", id="event-without-fields"),
])
def test_match_keys_and_values_are_checked_against_the_event_schema(write_scenario, expectation, expected):
    out = problems(write_scenario, MATCH_HEAD + expectation)
    assert expected in out, out


def test_match_text_shows_each_condition(write_scenario):
    s = load(write_scenario, MATCH_HEAD + "  - never: order.placed\n    match: {qty_pct: {gt: 0, le: 15}, "
                                          "side: {in: [buy, sell]}, reduce_only: false, code: {ne: null}}\n")
    assert s.expect[0].text == "never order.placed{qty_pct>0,qty_pct<=15,side=buy|sell,reduce_only=false,code!=null}"


def test_every_catalog_match_names_declared_fields():
    """The schema check runs on every scenario of the catalog (the loader rejects the rest)."""
    root = Path(__file__).resolve().parents[2]
    matched = 0
    for path in sorted((root / "scenarios").rglob("*.yaml")):
        scenario = load_scenario(path)
        for exp in scenario.expect:
            assert set(exp.match) <= set(EVENTS[exp.event]), path
            matched += bool(exp.match)
    assert matched > 50


def test_top_level_errors(write_scenario):
    out = problems(write_scenario, """
        scenario: Bad_Id
        covers: [C2.drawdown, C2, C9.x]
        tags: [gate, fast]
        mode: replay
        profile: futurs
        time_scale: -1
        final: {trading: stopped}
        """)
    assert "s.yaml:1: scenario: invalid scenario id (got 'Bad_Id'" in out
    assert "s.yaml:2: covers: not a checklist id nor a refinement of one (got 'C2'" in out
    assert "(got 'C9.x'" in out
    assert "s.yaml:3: tags: unknown tag (got 'fast'; allowed: gate, drill, slow, net)" in out
    assert "s.yaml:4: mode: unknown value (got 'replay'; allowed: sim, net)" in out
    assert "s.yaml:5: profile: unknown profile, did you mean 'futures'? (got 'futurs'; allowed: futures, pets" in out
    assert "s.yaml:6: time_scale: out of range (got -1; allowed: > 0)" in out
    assert "s.yaml:7: final.trading: unknown value (got 'stopped'; allowed: active, paused, halted)" in out


def test_missing_required_and_duplicates(write_scenario):
    out = problems(write_scenario, """
        title: no id
        steps:
          - {id: a, at: 1 bar, fault: restart}
          - {id: a, at: 2 bars, fault: restart}
        """)
    assert "s.yaml:1: (top level): missing required key 'scenario'" in out
    assert "missing required key 'profile'" in out
    assert "s.yaml:4: steps[1].id: duplicate step id (first at line 3)" in out
    dup = problems(write_scenario, "scenario: x\nprofile: futures\nscenario: y\n")
    assert "s.yaml:3: invalid YAML" in dup and "duplicate key 'scenario'" in dup


def test_step_after_the_market_ends_is_an_error(write_scenario):
    out = problems(write_scenario, """
        scenario: x
        profile: futures
        market: {bars: 100}
        steps:
          - id: late
            at: 100 bars
            fault: restart
        """)
    assert "s.yaml:6: steps[0].at: the step comes after the scenario ends (market.bars 100)" in out


def test_invalid_yaml_has_a_line(write_scenario):
    out = problems(write_scenario, "scenario: x\nprofile: futures\nsteps:\n  - id: a\n   at: 1 bar\n")
    assert "s.yaml:5: invalid YAML: while parsing a block collection" in out


def test_covers_and_profiles_checks_can_be_skipped(write_scenario):
    path = write_scenario("s.yaml", "scenario: x\nprofile: nowhere\ncovers: [Z9]\n")
    s = load_scenario(path, profiles=None, checklist_ids=None)
    assert s.covers == ("Z9",) and s.profile == "nowhere"


def test_default_sources_are_the_project_config(write_scenario):
    path = write_scenario("s.yaml", "scenario: x\nprofile: pets\ncovers: [PETS.circuit_breakers.persisted]\n")
    assert load_scenario(path).profile == "pets"
    with pytest.raises(ScenarioError, match="unknown profile"):
        load_scenario(write_scenario("t.yaml", "scenario: x\nprofile: nope\n"))


@pytest.mark.parametrize(("name", "text", "signs"), [
    ("a.yaml", "# c\nscenario: x\n", "it has a scenario: key"),
    ("b.yml", "scenario: [broken\n", "it has a scenario: key"),
    ("typo.yaml", "scenaro: x\nsteps:\n  - {id: a, at: 1 bar, fault: restart}\n", "its steps: have fault:"),
    ("typo2.yaml", "scenaro: x\nexpect: []\n", "it has an expect: key"),
    ("empty.yaml", "", "it is empty"),
    ("comments.yml", "# nothing yet\n\n", "it is empty"),
    ("s.json", '{"scenario": "x", "profile": "futures"}', "it has a scenario: key"),
    ("broken.json", '{\n  "scenario": "x",\n', "it does not parse and has a scenario: key"),
    ("broken.yaml", "expect:\n  - [unclosed\n", "it does not parse and has a expect: key"),
    # not scenarios: other YAML / JSON keeps out of collection
    ("c.yaml", "items: []\n  scenario: x\n", None),
    ("d.txt", "scenario: x\n", None),
    ("runbook.yaml", "steps:\n  - {id: a, do: page the operator}\n", None),
    ("workflow.yml", "jobs:\n  test:\n    steps:\n      - run: make test\n", None),
    ("list.yaml", "- scenario: x\n", None),
    ("payload.json", '{"orders": [{"expect": 1}]}', None),
])
def test_what_looks_like_a_scenario(write_scenario, name, text, signs):
    assert scenario_signs(write_scenario(name, text)) == signs


def test_a_missing_file_is_not_a_scenario(tmp_path):
    assert scenario_signs(tmp_path / "missing.yaml") is None


def test_fault_catalog_is_one_table_matching_design():
    expected_modes = {
        "drawdown": "sn", "loss_streak": "sn", "spread_spike": "sn", "atr_spike": "sn",
        "price_gap": "sn", "ws_lag": "sn", "ws_disconnect": "n", "inference_latency": "s", "model_output": "s",
        "order_latency": "sn", "exchange_outage": "sn", "http_errors": "sn", "order_reject": "sn",
        "unknown_outcome": "sn", "clock_skew": "sn", "stale_book": "sn", "credential_leak": "sn",
        "key_revoked": "sn", "key_permissions": "sn", "bot_crash": "n", "restart": "sn",
        "redis_outage": "n", "kill_switch": "sn", "clear_kill_switch": "sn", "manual_resume": "sn",
        # beyond DESIGN's list: a win (resets a loss streak), a fill with a non-finite price
        "winning_trade": "sn", "malformed_fill": "s",
        # issue 8: the bot's own bookkeeping fails (a torn audit line, lost state, a full disk)
        "audit_torn": "sn", "state_lost": "sn", "disk_full": "sn",
        # the receivers of the bot's alert channels (issue 11)
        "alert_sink_outage": "sn", "alert_sink_latency": "sn",
        # issue 15: a red-flag check (self-test, drill, probe, backup, log scan) fails
        "check_fails": "s",
        # issue 9: the kill-switch marker found holding given bytes across a restart
        "marker_written": "sn",
        # the Production Start Protocol: the Risk Manager's request to move to the next ramp stage
        "ramp_advance": "sn",
    }
    assert set(FAULTS) == set(expected_modes)
    for kind, modes in expected_modes.items():
        assert FAULTS[kind].modes == {{"s": "sim", "n": "net"}[m] for m in modes}, kind
    assert list(FAULTS["http_errors"].params) == ["status", "code", "count", "retry_after"]
    assert FAULTS["kill_switch"].params["credentials"].default == "valid"
    assert FAULTS["exchange_outage"].params["scope"].choices == ("rest", "ws", "all")
    assert FAULTS["credential_leak"].params["where"].choices == ("log", "repo", "paste")
    assert {k for k, f in FAULTS.items() if f.unfolds} == {"drawdown", "loss_streak", "winning_trade"}
