"""Expectations (`event:` / `never:`), their `match:` conditions, `final:`, and the timeline check."""

from __future__ import annotations

import math
from typing import Any, Literal

from bot.core.events import EVENT_NAMES, EVENTS, FieldSpec
from harness.scenario.errors import _MISSING, LList, LMap
from harness.scenario.model import (
    _OP_SPELLINGS,
    FINAL_VALUES,
    MATCH_OPS,
    ORDERING_OPS,
    Condition,
    Expectation,
    Final,
    Market,
    Step,
)
from harness.scenario.reader import EVENT_KEYS, FINAL_KEYS, NEVER_KEYS, _allowed, _near, _Reader
from harness.scenario.values import Duration


class _ExpectationReader(_Reader):
    """`expect:`, `final:` and whether the steps and windows fit in the scenario."""

    def expectations(self, top: LMap, steps: list[Step], market: Market, mode: str) -> list[Expectation]:
        if "expect" not in top:
            return []
        raw = top["expect"]
        if not isinstance(raw, LList):
            self.err(top.value_lines["expect"], "expect", "expected a list", raw)
            return []
        step_ids = list(self.step_lines)
        by_id = {s.id: s for s in steps}
        out = []
        for i, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True)):
            key = f"expect[{i}]"
            kind: Literal["event", "never"]
            if isinstance(item, LMap) and "never" in item:
                kind, keys = "never", NEVER_KEYS
            elif isinstance(item, LMap) and "event" in item:
                kind, keys = "event", EVENT_KEYS
            else:
                self.err(line, key, "an expectation starts with 'event:' or 'never:'", item,
                         "{event: NAME, match, after, within} or {never: NAME, match, after, until}")
                continue
            e = self.mapping(item, line, key, keys)
            if e is None:
                continue
            name = e[kind]
            ok = True
            if name not in EVENT_NAMES:
                near = _near(name, EVENT_NAMES) if isinstance(name, str) else []
                what = "unknown event name" + (f", did you mean {' or '.join(near)}?" if near else "")
                self.err(e.value_lines[kind], f"{key}.{kind}", what, name,
                         _allowed(near) if near else _allowed(sorted(EVENT_NAMES)))
                ok = False
            match = self.match(e, key, name if ok else None)
            refs: dict[str, str | None] = {}
            for ref in ("after", "until"):
                refs[ref] = None
                if ref not in e:
                    continue
                target = e[ref]
                if target in self.step_lines and target not in by_id:
                    ok = False  # the step itself is broken and already reported
                elif target not in by_id:
                    self.err(e.value_lines[ref], f"{key}.{ref}", "names no step", target,
                             _allowed(step_ids) if step_ids else "no steps are defined")
                    ok = False
                else:
                    refs[ref] = target
            if refs["after"] and refs["until"]:
                a, u = by_id[refs["after"]].at, by_id[refs["until"]].at
                if a.to_ms(market.bar_ms) >= u.to_ms(market.bar_ms):
                    self.err(e.value_lines["until"], f"{key}.until",
                             f"step {refs['until']!r} ({u}) does not come after step "
                             f"{refs['after']!r} ({a})", refs["until"],
                             _allowed(s.id for s in steps
                                      if s.at.to_ms(market.bar_ms) > a.to_ms(market.bar_ms)))
                    ok = False
            within = None
            if "within" in e:
                within = self.duration(e["within"], e.value_lines["within"], f"{key}.within")
                ok = ok and within is not None
            allowance = self.allowance(e, key, mode, within)
            ok = ok and allowance is not _MISSING
            if ok and match is not None:
                out.append(Expectation(kind, name, match, refs["after"], within, refs["until"],
                                       line, allowance))
        return out

    def allowance(self, e: LMap, key: str, mode: str, within: Duration | None) -> Any:
        """`allowance: NAME` of config/net.yaml, or `none`; _MISSING when wrong (reported)."""
        if "allowance" not in e:
            return None
        from harness.allowances import NONE, AllowanceConfigError, configured

        value, line = e["allowance"], e.value_lines["allowance"]
        try:
            names = sorted(configured().ms) + [NONE]
        except AllowanceConfigError as exc:
            self.err(line, f"{key}.allowance", f"cannot check it: {exc}", value)
            return _MISSING
        if mode != "net":
            self.err(line, f"{key}.allowance", "an allowance is for fixed real costs, which only net mode "
                     "has; remove it", value, "mode: net")
        elif within is None:
            self.err(line, f"{key}.allowance", "an allowance is added to an SLA; this expectation has no "
                     "within", value, "within: DURATION")
        elif value not in names:
            near = _near(value, names) if isinstance(value, str) else []
            self.err(line, f"{key}.allowance", "unknown allowance" + (f", did you mean {near[0]!r}?" if near else ""),
                     value, _allowed(names) + " (config/net.yaml allowances_ms)")
        else:
            return str(value)
        return _MISSING

    def match(self, e: LMap, key: str, event: str | None) -> dict[str, tuple[Condition, ...]] | None:
        """`match:` against the event's declared fields (bot/core/events.py); `event` is None when
        the event name is itself wrong (already reported): only the shape is checked then."""
        if "match" not in e:
            return {}
        m = e["match"]
        if not isinstance(m, LMap):
            self.err(e.value_lines["match"], f"{key}.match", "expected a mapping of field: value", m)
            return None
        fields = EVENTS[event] if event is not None else None
        out: dict[str, tuple[Condition, ...]] = {}
        ok = True
        for k, v in m.items():
            fkey, line = f"{key}.match.{k}", m.value_lines[k]
            if not isinstance(k, str):
                self.err(m.key_lines[k], f"{key}.match", "a field name must be text", k)
                ok = False
                continue
            spec = None
            if fields is not None:
                if k not in fields:
                    near = _near(k, fields)
                    what = f"{event} has no field {k!r}" + (f", did you mean {near[0]!r}?" if near else "")
                    self.err(m.key_lines[k], fkey, what, k,
                             _allowed(fields) if fields else f"none: {event} carries no fields")
                    ok = False
                    continue
                spec = fields[k]
                if spec.kind == "object":
                    self.err(m.key_lines[k], fkey, f"{event}.{k} is a mapping and cannot be matched", k,
                             _allowed(f for f, s in fields.items() if s.kind != "object"))
                    ok = False
                    continue
            conds = self.conditions(v, line, fkey, spec)
            if conds is None:
                ok = False
            else:
                out[k] = conds
        return out if ok else None

    def conditions(self, v: Any, line: int, key: str, spec: FieldSpec | None) -> tuple[Condition, ...] | None:
        """A plain value (equality) or a mapping of operators (MATCH_OPS), typed by `spec`."""
        if isinstance(v, LList):
            self.err(line, key, "a list is not a field value; for any-of write {in: [...]}", v,
                     "a value, or {ne|lt|le|gt|ge: value}, or {in: [values]}, or {contains: text}")
            return None
        if not isinstance(v, LMap):
            return (Condition("eq", v),) if self.field_value(v, line, key, spec) else None
        if not v:
            self.err(line, key, "no operator given", dict(v), _allowed(MATCH_OPS))
            return None
        out: list[Condition] = []
        for op, arg in v.items():
            okey, oline = f"{key}.{op}", v.value_lines[op]
            if op not in MATCH_OPS:
                near = [_OP_SPELLINGS[op]] if op in _OP_SPELLINGS else \
                    _near(op, MATCH_OPS) if isinstance(op, str) else []
                what = "unknown operator" + (f", did you mean {near[0]!r}?" if near else "")
                if op == "eq":
                    what = "equality is the plain value: write the value itself"
                self.err(v.key_lines[op], okey, what, op, _allowed(MATCH_OPS))
                return None
            if op in ORDERING_OPS:
                if spec is not None and not spec.orderable:
                    self.err(v.key_lines[op], okey, f"{op} compares numbers; this field is {spec.describe()}",
                             op, "ne, in, or a plain value")
                    return None
                if isinstance(arg, bool) or not isinstance(arg, int | float) or not math.isfinite(arg):
                    self.err(oline, okey, "expected a number", arg)
                    return None
                out.append(Condition(op, arg))
            elif op == "in":
                if not isinstance(arg, LList) or not arg:
                    self.err(oline, okey, "expected a non-empty list of values", arg)
                    return None
                if not all(self.field_value(x, xl, okey, spec) for x, xl in zip(arg, arg.item_lines, strict=True)):
                    return None
                out.append(Condition("in", tuple(arg)))
            elif op == "contains":
                if spec is not None and spec.kind != "str":
                    self.err(v.key_lines[op], okey, f"contains looks into text; this field is {spec.describe()}",
                             op, "ne, in, or a plain value")
                    return None
                if not isinstance(arg, str) or not arg:
                    self.err(oline, okey, "expected a non-empty text", arg)
                    return None
                out.append(Condition(op, arg))
            else:  # ne
                if not self.field_value(arg, oline, okey, spec):
                    return None
                out.append(Condition(op, arg))
        return tuple(out)

    def field_value(self, value: Any, line: int, key: str, spec: FieldSpec | None) -> bool:
        if isinstance(value, LMap | LList):
            self.err(line, key, "expected a plain value", value)
            return False
        if spec is None or spec.accepts(value):
            return True
        near = _near(value, spec.choices) if spec.kind == "enum" and isinstance(value, str) else []
        what = "wrong type" if spec.kind != "enum" or not isinstance(value, str) else "unknown value"
        if near:
            what += f", did you mean {near[0]!r}?"
        self.err(line, key, what, value, spec.describe())
        return False

    def final(self, top: LMap) -> Final | None:
        if "final" not in top:
            return None
        f = self.mapping(top["final"], top.value_lines["final"], "final", FINAL_KEYS)
        if f is None:
            return None
        values = {k: self.choice(f, k, "final", choices, None) for k, choices in FINAL_VALUES.items()}
        return Final(line=f.line, **values)

    def check_timeline(self, mode: str, duration: Duration | None, market: Market,
                       steps: list[Step], top: LMap) -> None:
        if mode != "sim":
            return
        bar_ms = market.bar_ms
        if duration is not None:
            end_ms, end = duration.to_ms(bar_ms), f"duration {duration}"
        elif market.bars is not None:
            end_ms, end = market.bars * bar_ms, f"market.bars {market.bars}"
        else:
            return
        for step in steps:
            if step.at.to_ms(bar_ms) >= end_ms:
                self.err(step.at_line, f"steps[{step.index}].at", f"the step comes after the scenario ends ({end})",
                         str(step.at), f"before {end}")
