"""What the collection tests share: a scenario, schema-conforming events and a fake sim runner
(pytester runs the gameday plugin in-process, so a monkeypatched runner is what it calls)."""

from __future__ import annotations

import textwrap

import harness.collect as collect
from bot.core.events import Event
from harness.expect import RunRecord, StepTiming

BAR = 300_000
T_DD = 120 * BAR

GOOD = """
scenario: dd-halts
covers: [C2.drawdown]
tags: [gate]
mode: sim
profile: futures
seed: 7
market: {bars: 400}
steps:
  - id: dd
    at: 120 bars
    fault: drawdown
    params:
      depth_pct: {policy: circuit_breakers.drawdown.threshold_pct, plus: 0.5}
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
"""

POLICY_TREE = {"circuit_breakers": {"drawdown": {"threshold_pct": 3.0}}}
# Events as the bot emits them (bot/core/events.py): the fake runners must speak the schema too.
TRIPPED = {"breaker": "drawdown", "check": "intraday", "level": "critical", "value": 3.5, "threshold": 3.0,
           "action": "halt_trading"}
PLACED = {"client_id": "c1", "side": "buy", "qty": 0.01, "price": None, "reduce_only": False, "code": None,
          "type": "market", "purpose": "entry", "post_only": False}


def register(monkeypatch, events, *, dd_error=None, calls=None):
    def runner(scenario, context):
        if calls is not None:
            calls.append((scenario.id, context.params))
        steps = [StepTiming("dd", "drawdown", context.params["dd"], T_DD, None, dd_error),
                 StepTiming("resume", "manual_resume", {}, 300 * BAR)]
        return RunRecord([Event(n, t, f) for n, t, f in events], steps, bar_ms=BAR,
                         end_state={"trading": "active"})

    monkeypatch.setitem(collect.RUNNERS, "sim", runner)


def write(pytester, name, text):
    return pytester.makefile(".yaml", **{name: textwrap.dedent(text).lstrip("\n")})


def run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)
