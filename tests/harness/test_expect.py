"""The judge: SLA windows (established vs injected), never windows, time scale, verdicts."""

from __future__ import annotations

import pytest

from bot.core.events import Event
from harness.expect import RunRecord, StepTiming, event_matches, judge, match_outcome, worst
from harness.scenario import load_scenario

BAR = 300_000
T_DD = 120 * BAR  # dd injected at bar 120
T_RESUME = 300 * BAR

SCENARIO = """
scenario: dd-halts
mode: sim
profile: futures
market: {bars: 400}
steps:
  - id: dd
    at: 120 bars
    fault: drawdown
    params: {depth_pct: 3.5}
  - id: resume
    at: 300 bars
    fault: manual_resume
expect:
  - event: breaker.tripped
    match: {breaker: drawdown}
    after: dd
    within: 1 bar
  - never: order.placed
    match: {reduce_only: false}
    after: dd
    until: resume
final: {trading: active}
"""


@pytest.fixture
def scenario(write_scenario):
    return load_scenario(write_scenario("dd.yaml", SCENARIO), profiles=None, checklist_ids=None)


def record(events, *, established=None, dd_error=None, end_state=None, resume_first=None, steps=None):
    timings = steps if steps is not None else [
        StepTiming("dd", "drawdown", {"depth_pct": 3.5}, T_DD, established, dd_error),
        StepTiming("resume", "manual_resume", {}, T_RESUME, first_event=resume_first),
    ]
    return RunRecord(events=[Event(n, t, f) for n, t, f in events], steps=timings, bar_ms=BAR,
                     end_state=end_state if end_state is not None else {"trading": "active"},
                     end_ms=400 * BAR)


TRIP = "breaker.tripped"


def test_pass_within_one_bar(scenario):
    j = judge(scenario, record([(TRIP, T_DD + BAR, {"breaker": "drawdown"})]))
    assert j.verdict == "pass", j.message
    first = j.expectations[0]
    assert first.text == "breaker.tripped{breaker=drawdown} within 1 bar after dd"
    assert (first.sla_ms, first.observed_ms, first.verdict) == (BAR, BAR, "pass")


def test_one_ms_past_the_sla_fails_naming_event_observed_and_sla(scenario):
    j = judge(scenario, record([(TRIP, T_DD + BAR + 1, {"breaker": "drawdown"})]))
    assert j.verdict == "fail"
    first = j.expectations[0]
    assert (first.observed_ms, first.verdict) == (BAR + 1, "fail")
    assert "breaker.tripped came 300001 ms after dd was injected" in first.message
    assert "expected within 1 bar = 300000 ms" in first.message
    assert "dd.yaml:14:" in first.message  # the expectation's line in the scenario file
    assert first.message in j.message


def test_sla_counts_from_establishment_not_injection(scenario):
    established = T_DD + 10 * BAR  # the drawdown path took 10 bars to reach the depth
    j = judge(scenario, record([(TRIP, established + BAR, {"breaker": "drawdown"})],
                               established=established))
    assert j.expectations[0].observed_ms == BAR and j.verdict == "pass"
    late = judge(scenario, record([(TRIP, established + 2 * BAR, {"breaker": "drawdown"})],
                                  established=established))
    assert late.verdict == "fail"
    assert "after dd was established (injected at 36000000 ms, established at 39000000 ms)" in \
        late.expectations[0].message


def test_event_between_injection_and_establishment_counts_as_zero(scenario):
    established = T_DD + 10 * BAR
    j = judge(scenario, record([(TRIP, T_DD + 3 * BAR, {"breaker": "drawdown"})],
                               established=established))
    assert j.expectations[0].observed_ms == 0 and j.verdict == "pass"


def test_events_before_injection_do_not_count(scenario):
    j = judge(scenario, record([(TRIP, T_DD - 1, {"breaker": "drawdown"}),
                                (TRIP, T_DD + 5, {"breaker": "spread"})]))
    first = j.expectations[0]
    assert first.verdict == "fail" and first.observed_ms is None
    assert "breaker.tripped{breaker=drawdown} never came" in first.message
    assert "seen instead: breaker.tripped{breaker=spread} at 36000005 ms" in first.message


def test_never_window_is_from_after_to_until(scenario):
    placed = "order.placed"
    ok = judge(scenario, record([
        (placed, T_DD - 1, {"reduce_only": False}),       # before dd: allowed
        (TRIP, T_DD, {"breaker": "drawdown"}),
        (placed, T_DD + BAR, {"reduce_only": True}),       # an exit: allowed
        (placed, T_RESUME, {"reduce_only": False}),       # at/after resume: allowed
    ]))
    assert ok.verdict == "pass", ok.message
    assert ok.expectations[1].text == "never order.placed{reduce_only=false} after dd until resume"
    bad = judge(scenario, record([
        (TRIP, T_DD, {"breaker": "drawdown"}),
        (placed, T_DD + 2 * BAR, {"reduce_only": False, "client_id": "c1"}),
    ]))
    never = bad.expectations[1]
    assert (bad.verdict, never.verdict, never.observed_ms) == ("fail", "fail", 2 * BAR)
    assert "breached by order.placed{reduce_only=False, client_id=c1} at 36600000 ms" in never.message


def test_until_window_uses_the_event_index_at_injection(scenario):
    # Virtual time: an entry at the resume's ms, emitted *before* the resume was injected.
    events = [(TRIP, T_DD, {"breaker": "drawdown"}), ("order.placed", T_RESUME, {"reduce_only": False})]
    assert judge(scenario, record(events)).verdict == "pass"  # ts >= until: outside the window
    assert judge(scenario, record(events, resume_first=2)).verdict == "fail"


def test_step_error_makes_the_scenario_an_error(scenario):
    j = judge(scenario, record([(TRIP, T_DD, {"breaker": "drawdown"})],
                               dd_error="equity never reached the requested depth"))
    assert j.verdict == "error"
    assert all(e.verdict == "error" for e in j.expectations[:2])
    assert "step dd (drawdown) could not be injected: equity never reached the requested depth" in j.message


def test_step_not_reported_is_an_error_never_a_pass(scenario):
    steps = [StepTiming("dd", "drawdown", {"depth_pct": 3.5}, T_DD)]
    j = judge(scenario, record([(TRIP, T_DD, {"breaker": "drawdown"})], steps=steps))
    assert j.verdict == "error" and "step resume (manual_resume) the runner did not report it" in j.message
    steps = [StepTiming("dd", "drawdown", {}, T_DD), StepTiming("resume", "manual_resume", {}, None)]
    assert judge(scenario, record([(TRIP, T_DD, {"breaker": "drawdown"})], steps=steps)).verdict == "error"


def test_final_state(scenario):
    events = [(TRIP, T_DD, {"breaker": "drawdown"})]
    assert judge(scenario, record(events)).expectations[-1].verdict == "pass"
    halted = judge(scenario, record(events, end_state={"trading": "halted"}))
    assert halted.verdict == "fail"
    assert "at the end trading was 'halted', expected 'active'" in halted.expectations[-1].message
    assert judge(scenario, record(events, end_state={})).verdict == "error"


def test_net_mode_scales_the_sla_by_time_scale(write_scenario):
    s = load_scenario(write_scenario("net.yaml", """
        scenario: ws-lag-pauses
        mode: net
        profile: futures
        time_scale: 0.1
        steps:
          - {id: lag, at: 10s, fault: ws_lag, params: {lag: 6s, duration: 30s}}
        expect:
          - {event: trading.paused, after: lag, within: 5s}
          - {event: trading.resumed, after: lag, within: 1 bar}
        """), profiles=None, checklist_ids=None)
    run = RunRecord([Event("trading.paused", 1_400, {}), Event("trading.resumed", 31_000, {})],
                    [StepTiming("lag", "ws_lag", {"lag": 600, "duration": 3_000}, 1_000)],
                    bar_ms=300_000, time_scale=0.1)
    j = judge(s, run)
    assert [(e.sla_ms, e.observed_ms) for e in j.expectations] == [(500, 400), (30_000, 30_000)]
    assert j.verdict == "pass"


def test_sim_mode_ignores_time_scale(scenario):
    run = record([(TRIP, T_DD + BAR, {"breaker": "drawdown"})])
    run.time_scale = 0.1
    assert judge(scenario, run).expectations[0].sla_ms == BAR


def conditions(write_scenario, match: str, event: str = "order.placed"):
    """The parsed `match:` of a one-expectation scenario (the loader's typed conditions)."""
    text = (f"scenario: m\nprofile: futures\nexpect:\n  - never: {event}\n    match: {match}\n")
    return load_scenario(write_scenario("m.yaml", text), profiles=None, checklist_ids=None).expect[0].match


PLACED = {"client_id": "c1", "side": "buy", "qty": 0.01, "price": None, "reduce_only": False, "code": None,
          "type": "market", "purpose": "entry", "post_only": False, "qty_pct": 15.0}


@pytest.mark.parametrize(("match", "qty_pct", "expected"), [
    ("{qty_pct: {le: 15}}", 15.0, True),
    ("{qty_pct: {le: 15}}", 15.01, False),
    ("{qty_pct: {lt: 15}}", 15.0, False),
    ("{qty_pct: {gt: 15}}", 15.01, True),
    ("{qty_pct: {ge: 15}}", 14.99, False),
    ("{qty_pct: {ne: 15}}", 15.0, False),
    ("{qty_pct: {ne: 15}}", 14.0, True),
    ("{qty_pct: {in: [10, 15]}}", 15, True),
    ("{qty_pct: {in: [10, 15]}}", 12.5, False),
    ("{qty_pct: {gt: 0, le: 15}}", 15.0, True),
    ("{qty_pct: {gt: 0, le: 15}}", 0.0, False),
])
def test_numeric_comparisons(write_scenario, match, qty_pct, expected):
    event = Event("order.placed", 0, {**PLACED, "qty_pct": qty_pct})
    assert event_matches(event, "order.placed", conditions(write_scenario, match)) is expected


def test_equality_is_typed_and_in_is_any_of(write_scenario):
    placed = Event("order.placed", 0, PLACED)
    assert event_matches(placed, "order.placed", conditions(write_scenario, "{reduce_only: false}"))
    assert not event_matches(Event("order.placed", 0, {**PLACED, "reduce_only": 0}), "order.placed",
                             conditions(write_scenario, "{reduce_only: false}"))  # 0 is not false
    assert event_matches(placed, "order.placed", conditions(write_scenario, "{side: {in: [sell, buy]}}"))
    assert not event_matches(placed, "order.placed", conditions(write_scenario, "{side: {in: [sell]}}"))
    assert event_matches(placed, "order.placed", conditions(write_scenario, "{price: null}"))
    assert not event_matches(placed, "order.filled", conditions(write_scenario, "{side: buy}"))


def test_contains_finds_a_piece_of_a_text_field(write_scenario):
    refused = Event("order.refused", 0, {"side": "buy", "qty": 0.01, "rule": "backoff",
                                         "reason": "entry denied: latency backoff until ts 5 (3 ms left)"})
    match = conditions(write_scenario, '{reason: {contains: "latency backoff"}}', "order.refused")
    assert event_matches(refused, "order.refused", match)
    assert not event_matches(refused, "order.refused",
                             conditions(write_scenario, '{reason: {contains: "Latency backoff"}}', "order.refused"))
    assert match["reason"][0].text("reason") == 'reason~"latency backoff"'


def test_an_optional_field_that_is_absent_is_undecidable(write_scenario):
    """Not a match for `event` (it cannot count as seen), and an ERROR for `never` (it cannot hold)."""
    without = Event("order.placed", 0, {k: v for k, v in PLACED.items() if k != "qty_pct"})
    match = conditions(write_scenario, "{qty_pct: {gt: 15}}")
    assert match_outcome(without, "order.placed", match) is None
    assert not event_matches(without, "order.placed", match)
    nan = Event("order.placed", 0, {**PLACED, "qty_pct": float("nan")})
    assert match_outcome(nan, "order.placed", match) is None


def test_a_never_over_an_absent_field_errors_instead_of_holding(write_scenario):
    text = SCENARIO.replace("match: {reduce_only: false}", "match: {qty_pct: {gt: 15}}")
    s = load_scenario(write_scenario("cap.yaml", text), profiles=None, checklist_ids=None)
    without = {k: v for k, v in PLACED.items() if k != "qty_pct"}
    j = judge(s, record([(TRIP, T_DD, {"breaker": "drawdown"}), ("order.placed", T_DD + BAR, without)]))
    never = j.expectations[1]
    assert never.text == "never order.placed{qty_pct>15} after dd until resume"
    assert never.verdict == "error" and j.verdict == "error"
    assert "cannot judge order.placed" in never.message and "carries no qty_pct" in never.message
    # with the field present the same check judges: above the cap fails, at the cap holds
    assert judge(s, record([(TRIP, T_DD, {"breaker": "drawdown"}),
                            ("order.placed", T_DD + BAR, PLACED)])).expectations[1].verdict == "pass"
    breach = judge(s, record([(TRIP, T_DD, {"breaker": "drawdown"}),
                              ("order.placed", T_DD + BAR, {**PLACED, "qty_pct": 15.5})]))
    assert breach.expectations[1].verdict == "fail" and breach.verdict == "fail"


def test_worst_verdict():
    assert worst(["pass", "fail", "pass"]) == "fail"
    assert worst(["fail", "error", "pass"]) == "error"
    assert worst([]) == "pass"


def test_a_breach_message_quotes_the_events_around_it(scenario):
    events = [("bar.closed", T_DD + 2 * i, {}) for i in range(1, 6)]
    events.insert(2, ("order.placed", T_DD + 5, {"reduce_only": False}))
    j = judge(scenario, record(events + [(TRIP, T_DD + BAR, {"breaker": "drawdown"})]))
    assert j.verdict == "fail"
    lines = j.message.splitlines()
    at = lines.index("      events around it:")
    quoted = lines[at + 1:at + 8]
    assert any(line.strip().startswith("> order.placed{reduce_only=False}") for line in quoted)
    assert sum("bar.closed" in line for line in quoted) >= 4
    assert sum(line.strip().startswith(">") for line in quoted) == 1
