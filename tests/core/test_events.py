"""The event schema (bot/core/events.py): it says what the bot emits, and can tell when it does not."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from bot.core import events as ev
from bot.core.breakers.board import BreakerBoard
from bot.core.events import EVENTS, Event, event_problems
from bot.core.exits import ExitReason
from bot.core.killswitch import KillMode
from bot.core.policy import Action
from bot.core.risk import Purpose, RefusalRule, Side
from bot.core.sizing import Binding
from bot.io.exchange import OrderStatus, OrderType

ROOT = Path(__file__).resolve().parents[2]


def test_vocabularies_are_the_bots_own_types():
    assert set(ev.ACTIONS) == set(get_args(Action))
    assert set(ev.KILL_MODES) == set(get_args(KillMode))
    assert set(ev.SIDES) == set(get_args(Side))
    assert set(ev.PURPOSES) == set(get_args(Purpose))
    assert set(ev.ORDER_TYPES) == set(get_args(OrderType))
    assert set(ev.ORDER_STATUSES) == set(get_args(OrderStatus))
    assert set(ev.EXIT_REASONS) == set(get_args(ExitReason))
    assert ev.REFUSAL_RULES == get_args(RefusalRule)
    assert set(ev.SIZED_BY) == set(get_args(Binding))


def test_breaker_names_and_checks_are_those_of_the_board():
    from bot.config import load_policy
    from bot.core.clock import VirtualClock

    names, checks = set(), set()
    for profile in ("futures", "pets"):
        board = BreakerBoard(load_policy(profile).policy, ev.EventBus(), VirtualClock(0))
        names |= {b.name for b in board.breakers}
        checks |= {b.check for b in board.breakers}
    assert names == set(ev.BREAKERS)
    assert checks == set(ev.CHECKS)


def _emits() -> list[tuple[str, int, str, set[str]]]:
    """(file, line, event name, keyword field names) of every emit in bot/ with a literal name."""
    found = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in ("emit", "_emit_order"):
                continue
            first = node.args[0]
            names = [first.value] if isinstance(first, ast.Constant) else \
                [b.value for b in (first.body, first.orelse) if isinstance(b, ast.Constant)] \
                if isinstance(first, ast.IfExp) else []
            keywords = {k.arg for k in node.keywords if k.arg is not None}
            found += [(path.relative_to(ROOT).as_posix(), node.lineno, n, keywords) for n in names]
    return found


def test_every_emit_in_the_bot_names_a_declared_event_and_declared_fields():
    emits = _emits()
    assert len(emits) > 40
    problems = [f"{file}:{line}: {name}" + ("" if name in EVENTS else " is not declared")
                + "".join(f"; field {k!r} is not declared" for k in sorted(fields - set(EVENTS.get(name, {}))))
                for file, line, name, fields in emits
                if name not in EVENTS or fields - set(EVENTS[name])]
    assert problems == []


def test_event_problems_names_what_is_wrong():
    ok = Event("audit.repaired", 0, {"cut_bytes": 2, "cut_sha256": "ab"})
    assert event_problems(ok) == []
    assert event_problems(Event("audit.repair", 0, {})) == ["unknown event name 'audit.repair'"]
    assert event_problems(Event("audit.repaired", 0, {"cut_sha256": "ab"})) == [
        "audit.repaired: field 'cut_bytes' missing (declared an integer)"]
    assert event_problems(Event("audit.repaired", 0, {"cut_bytes": True, "cut_sha256": "ab"})) == [
        "audit.repaired: field 'cut_bytes' is True, declared an integer"]
    assert event_problems(Event("audit.repaired", 0, {"cut_bytes": 2, "cut_sha256": "ab", "why": "x"})) == [
        "audit.repaired: field 'why' is not declared (declared: cut_bytes, cut_sha256)"]


@pytest.mark.parametrize(("fields", "problems"), [
    ({"breaker": "drawdown", "check": "intraday", "by": "cooldown"}, 0),  # actor: optional, absent
    ({"breaker": "drawdown", "check": "intraday", "by": "operator", "actor": "ops"}, 0),
    ({"breaker": "drawdown", "check": "intraday", "by": "operator", "actor": None}, 1),  # optional is not nullable
    ({"breaker": "drawdwon", "check": "intraday", "by": "cooldown"}, 1),  # enum value
    ({"breaker": "drawdown", "check": "intraday"}, 1),  # required missing
])
def test_optional_nullable_and_enum_fields(fields, problems):
    assert len(event_problems(Event("breaker.reset", 0, fields))) == problems


def test_number_accepts_ints_and_floats_but_not_bools_or_text():
    spec = ev.NUMBER
    assert spec.accepts(1) and spec.accepts(1.5) and spec.accepts(float("nan"))
    assert not spec.accepts(True) and not spec.accepts("1") and not spec.accepts(None)
    assert ev.nullable(spec).accepts(None) and ev.nullable(spec).describe() == "a number or null"


def test_the_promised_vocabulary_is_declared():
    """DESIGN.md / HELPERS.md promise these to other branches; scenarios may match on them now."""
    def kinds(name):
        return {field: spec.kind for field, spec in EVENTS[name].items()}

    assert kinds("order.refused") == {"rule": "enum", "side": "enum", "qty": "number", "reason": "str"}
    assert EVENTS["order.refused"]["rule"].choices == ev.REFUSAL_RULES
    assert kinds("resume.refused") == {"by": "str", "reason": "str", "actor": "str"}
    assert kinds("audit.repaired") == {"cut_bytes": "int", "cut_sha256": "str"}
    failed = {"channel": "str", "severity": "enum", "title": "str", "error": "str"}
    assert failed.items() <= kinds("alert.failed").items()
    assert kinds("bot.alert") == {"severity": "enum", "key": "str", "title": "str"}
    assert EVENTS["order.placed"]["qty_pct"].kind == "number"
    assert {"actor"} <= set(EVENTS["killswitch.rejected"]) and {"status"} <= set(EVENTS["order.reconciled"])
    assert {"purpose", "type", "post_only"} <= set(EVENTS["order.placed"])
