"""The judge: a scenario's expectations and SLAs over the event stream of one run.

Semantics (DESIGN.md "Scenario files"):
- `event ... after STEP within D`: matching events count from STEP's injection; the SLA clock
  starts when the fault is *established* (injection for an instantaneous fault; the moment the
  condition was reached for one that unfolds). observed = first match - established, and a
  match between injection and establishment (a lower tier acting first) is observed 0 ms.
- `never ... after A until B`: no matching event from A's injection up to (not including) B's
  injection; without `until` up to the end of the run, without `after` from its start.
- `match`: field equality; a list value means any-of; an event without the field does not match.
- durations: `N bars` = N x bar_ms; in net mode every duration is multiplied by time_scale.
- net SLA = threshold (`within` x time_scale) + the unscaled allowance for the fixed real cost the
  clock includes (`allowance:` or implied by the `after` step's fault; config/net.yaml); the
  result records threshold, allowance, measured and margin.
- a step that could not be injected (StepTiming.error, or never injected) makes the scenario an
  ERROR, never a pass. Overall verdict: error > fail > pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bot.core.events import Event
from harness.allowances import AllowanceConfigError, Allowances
from harness.scenario import Duration, Expectation, Match, Scenario, event_pattern

Verdict = Literal["pass", "fail", "error", "skipped"]  # skipped: not judged (harness.collect)
_RANK = {"pass": 0, "fail": 1, "error": 2}


@dataclass(frozen=True)
class StepTiming:
    """What the runner did for one step (times are clock ms, the same clock as Event.ts_ms)."""

    id: str
    fault: str
    params: Mapping[str, Any]  # resolved (plain values), as injected
    injected_ms: int | None  # None: the run never got to inject it
    established_ms: int | None = None  # None: same as injected (an instantaneous fault)
    error: str | None = None  # why the fault could not be injected / established
    # Index into RunRecord.events of the first event emitted after the injection. Under virtual
    # time many events share one ts; with this the judge does not count events emitted earlier
    # at the same ms. None: events with ts_ms >= injected_ms count.
    first_event: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "first_event"}


@dataclass
class RunRecord:
    """The runner's account of one run, which is all the judge sees."""

    events: Sequence[Event]
    steps: Sequence[StepTiming]
    bar_ms: int  # nominal bar length (unscaled); the judge applies the time scale
    time_scale: float = 1.0  # the scale the run used (the judge applies it in net mode only)
    end_state: Mapping[str, Any] = field(default_factory=dict)  # trading, killswitch, position
    start_ms: int = 0
    end_ms: int | None = None  # clock time the run ended (default: the last event's)
    notes: list[str] = field(default_factory=list)  # runner remarks shown with the verdict
    allowances: Allowances | None = None  # net mode: fixed real costs added to SLAs (None: none)

    def step(self, step_id: str) -> StepTiming | None:
        for timing in self.steps:
            if timing.id == step_id:
                return timing
        return None

    @property
    def last_ms(self) -> int:
        if self.end_ms is not None:
            return self.end_ms
        return self.events[-1].ts_ms if self.events else self.start_ms


@dataclass(frozen=True)
class ExpectationResult:
    text: str
    kind: Literal["event", "never", "final"]
    verdict: Verdict
    sla_ms: int | None = None
    observed_ms: int | None = None
    message: str = ""  # why it failed or errored; a short account when it passed
    line: int = 0
    event_ms: int | None = None  # clock time of the matching (or breaching) event
    threshold_ms: int | None = None  # the scaled policy threshold; sla_ms = threshold + allowance
    allowance: str | None = None  # the fixed real cost added unscaled (net mode)
    allowance_ms: int = 0
    allowance_basis: str | None = None  # where allowance_ms came from: configured, or measured on this machine

    @property
    def margin_ms(self) -> int | None:
        """How far inside its SLA the reaction came (negative: late)."""
        if self.sla_ms is None or self.observed_ms is None or self.kind != "event":
            return None
        return self.sla_ms - self.observed_ms

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "sla_ms": self.sla_ms, "observed_ms": self.observed_ms,
                "threshold_ms": self.threshold_ms, "allowance": self.allowance,
                "allowance_ms": self.allowance_ms, "allowance_basis": self.allowance_basis,
                "margin_ms": self.margin_ms,
                "verdict": self.verdict, "message": self.message}


@dataclass(frozen=True)
class Judgement:
    scenario: str
    verdict: Verdict
    expectations: tuple[ExpectationResult, ...]
    step_errors: tuple[str, ...]
    message: str  # readable; what a failing test shows

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return max(verdicts, key=_RANK.__getitem__, default="pass")


def match_outcome(event: Event, name: str, match: Match) -> bool | None:
    """True / False: `event` matches or not. None: undecidable - an event of that name lacks a
    field the match tests (an optional field), or an ordering comparison met null."""
    if event.name != name:
        return False
    undecided = False
    for key, conditions in match.items():
        if key not in event.fields:
            undecided = True
            continue
        for condition in conditions:
            passed = condition.test(event.fields[key])
            if passed is False:
                return False
            undecided = undecided or passed is None
    return None if undecided else True


def event_matches(event: Event, name: str, match: Match) -> bool:
    """A match beyond doubt (an undecidable one is not a match)."""
    return match_outcome(event, name, match) is True


def describe_event(event: Event) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in event.fields.items())
    return f"{event.name}{{{fields}}} at {event.ts_ms} ms"


class _Window:
    """Where an expectation starts looking, and the reason it cannot be judged, if any."""

    def __init__(self, record: RunRecord, timing: StepTiming | None) -> None:
        self.record = record
        if timing is None:
            self.index, self.injected, self.established = 0, record.start_ms, record.start_ms
            return
        assert timing.injected_ms is not None
        self.injected = timing.injected_ms
        established = timing.established_ms if timing.established_ms is not None else self.injected
        self.established = max(established, self.injected)
        self.index = first_index(record, timing)


def first_index(record: RunRecord, timing: StepTiming) -> int:
    if timing.first_event is not None:
        return timing.first_event
    assert timing.injected_ms is not None
    for i, event in enumerate(record.events):
        if event.ts_ms >= timing.injected_ms:
            return i
    return len(record.events)


def judge(scenario: Scenario, record: RunRecord) -> Judgement:
    """Judge one run of `scenario`; never raises for anything the run did."""
    scale = record.time_scale if scenario.mode == "net" else 1.0
    step_errors: list[str] = []
    broken: dict[str, str] = {}
    for step in scenario.steps:
        timing = record.step(step.id)
        if timing is None:
            why = "the runner did not report it"
        elif timing.error:
            why = f"could not be injected: {timing.error}"
        elif timing.injected_ms is None:
            why = "was never injected"
        else:
            continue
        broken[step.id] = why
        step_errors.append(f"{scenario.where(step.line)}: step {step.id} ({step.fault}) {why}")

    results: list[ExpectationResult] = []
    for exp in scenario.expect:
        results.append(_judge_one(scenario, record, exp, broken, scale))
    if scenario.final is not None:
        for key, wanted in scenario.final.checks():
            results.append(_judge_final(scenario, record, key, wanted))

    verdict = worst([r.verdict for r in results] + (["error"] if step_errors else []))
    return Judgement(scenario.id, verdict, tuple(results), tuple(step_errors),
                     _message(scenario, record, verdict, results, step_errors))


def _judge_one(scenario: Scenario, record: RunRecord, exp: Expectation, broken: Mapping[str, str],
               scale: float) -> ExpectationResult:
    text = exp.text
    where = scenario.where(exp.line)
    try:
        limit = _Sla.of(scenario, record, exp, scale)
    except AllowanceConfigError as exc:
        return ExpectationResult(text, exp.kind, "error", message=f"{where}: cannot judge: {exc}",
                                 line=exp.line)
    for ref in (exp.after, exp.until):
        if ref is not None and ref in broken:
            return ExpectationResult(text, exp.kind, "error", limit.total,
                                     message=f"{where}: cannot judge: step {ref} {broken[ref]}",
                                     line=exp.line, **limit.fields())
    after = record.step(exp.after) if exp.after else None
    window = _Window(record, after)
    events = record.events
    if exp.kind == "never":
        end = len(events)
        if exp.until:
            until = record.step(exp.until)
            assert until is not None
            end = first_index(record, until)
        for event in events[window.index:end]:
            if event.ts_ms < window.injected:
                continue
            outcome = match_outcome(event, exp.event, exp.match)
            since = event.ts_ms - window.injected
            if outcome is None:
                return ExpectationResult(
                    text, "never", "error", None, since,
                    f"{where}: {text}: cannot judge {describe_event(event)}: {_undecided(event, exp.match)}",
                    exp.line, event.ts_ms)
            if outcome:
                origin = f"after {exp.after} was injected" if exp.after else "after the start"
                return ExpectationResult(
                    text, "never", "fail", None, since,
                    f"{where}: {text}: breached by {describe_event(event)}, {since} ms {origin}",
                    exp.line, event.ts_ms)
        return ExpectationResult(text, "never", "pass", None, None, "held", exp.line)

    sla = limit.total
    for event in events[window.index:]:
        if event.ts_ms >= window.injected and event_matches(event, exp.event, exp.match):
            observed = max(0, event.ts_ms - window.established)
            if sla is None or observed <= sla:
                return ExpectationResult(text, "event", "pass", sla, observed,
                                         f"seen {observed} ms after establishment", exp.line,
                                         event.ts_ms, **limit.fields())
            return ExpectationResult(
                text, "event", "fail", sla, observed,
                f"{where}: {text}: {exp.event} came {observed} ms after "
                f"{_origin(exp, window)}; expected within {limit.text(exp.within)}",
                exp.line, event.ts_ms, **limit.fields())
    name = event_pattern(exp.event, exp.match)
    near = [describe_event(e) for e in events[window.index:] if e.name == exp.event][:3]
    seen = f"; seen instead: {'; '.join(near)}" if near else f"; no {exp.event} event at all"
    expected = f"expected within {limit.text(exp.within)}" if sla is not None else \
        "expected it before the end"
    # No event breached: quote what the bot was doing when the deadline passed (or the run ended).
    deadline = min(window.established + sla, record.last_ms) if sla is not None else record.last_ms
    quoted = "".join(f"\n      {line}" for line in events_around(record, deadline))
    return ExpectationResult(
        text, "event", "fail", sla, None,
        f"{where}: {text}: {name} never came (looked from {_origin(exp, window)} to the end of the "
        f"run at {record.last_ms} ms; {expected}){seen}{quoted}",
        exp.line, **limit.fields())


def _undecided(event: Event, match: Match) -> str:
    missing = [k for k in match if k not in event.fields]
    if missing:
        return (f"it carries no {', '.join(missing)} (optional in bot/core/events.py), so whether it "
                "matches is unknown")
    return "an ordering comparison met a null or non-finite value, so whether it matches is unknown"


def _origin(exp: Expectation, window: _Window) -> str:
    if not exp.after:
        return f"the start ({window.injected} ms)"
    if window.established != window.injected:
        return (f"{exp.after} was established (injected at {window.injected} ms, "
                f"established at {window.established} ms)")
    return f"{exp.after} was injected (at {window.injected} ms)"


@dataclass(frozen=True)
class _Sla:
    """An expectation's deadline: the scaled threshold plus the unscaled allowance (net mode)."""

    threshold: int | None
    allowance: str | None = None
    allowance_ms: int = 0
    allowance_basis: str | None = None  # where allowance_ms came from (configured, or measured)

    @classmethod
    def of(cls, scenario: Scenario, record: RunRecord, exp: Expectation, scale: float) -> _Sla:
        if exp.within is None or exp.kind != "event":
            return cls(None)
        threshold = round(exp.within.to_ms(record.bar_ms) * scale)
        if scenario.mode != "net" or record.allowances is None:
            return cls(threshold)
        after = scenario.step(exp.after).fault if exp.after else None
        name, ms = record.allowances.resolve(exp.allowance, after)
        return cls(threshold, name, ms, record.allowances.basis_of(name))

    @property
    def total(self) -> int | None:
        return None if self.threshold is None else self.threshold + self.allowance_ms

    def fields(self) -> dict[str, Any]:
        return {"threshold_ms": self.threshold, "allowance": self.allowance, "allowance_ms": self.allowance_ms,
                "allowance_basis": self.allowance_basis}

    def text(self, within: Duration | None) -> str:
        if within is None:
            return f"{self.total} ms"
        if self.allowance is None:
            return f"{within} = {self.total} ms"
        return (f"{within} = {self.threshold} ms + {self.allowance} allowance {self.allowance_ms} ms "
                f"= {self.total} ms")


def _judge_final(scenario: Scenario, record: RunRecord, key: str, wanted: str) -> ExpectationResult:
    assert scenario.final is not None
    text = f"final {key}={wanted}"
    where = scenario.where(scenario.final.line)
    if key not in record.end_state:
        return ExpectationResult(text, "final", "error",
                                 message=f"{where}: {text}: the runner did not report {key!r} "
                                         f"in the end state (got {dict(record.end_state)})",
                                 line=scenario.final.line)
    got = record.end_state[key]
    if got == wanted:
        return ExpectationResult(text, "final", "pass", message=f"{key} is {got}",
                                 line=scenario.final.line)
    return ExpectationResult(text, "final", "fail",
                             message=f"{where}: {text}: at the end {key} was {got!r}, "
                                     f"expected {wanted!r}",
                             line=scenario.final.line)


AROUND = 3  # events quoted on each side of a breach or a late event
SAME_MS = 20  # at most this many events quoted of the breach's own ms (virtual time crowds one ms)


def events_around(record: RunRecord, ts_ms: int | None) -> list[str]:
    """The events just before and after the breaching (or late) event at `ts_ms`, so a failure
    shows what the bot was doing; events at the breach's ms are marked with `>` and all quoted
    (up to SAME_MS), so the breaching event itself is among them."""
    if ts_ms is None:
        return []
    events = record.events
    at = next((i for i, e in enumerate(events) if e.ts_ms >= ts_ms), len(events))
    same = at
    while same < min(len(events), at + SAME_MS) and events[same].ts_ms == ts_ms:
        same += 1
    start, end = max(0, at - AROUND), min(len(events), max(same, at + 1) + AROUND)
    if start == end:
        return []
    return ["events around it:"] + [("> " if events[i].ts_ms == ts_ms else "  ") + describe_event(events[i])
                                    for i in range(start, end)]


def _message(scenario: Scenario, record: RunRecord, verdict: Verdict,
             results: Sequence[ExpectationResult], step_errors: Sequence[str]) -> str:
    head = f"scenario {scenario.id}: {verdict.upper()}"
    if verdict == "pass":
        return head + f" ({len(results)} expectations met)"
    bad = [r for r in results if r.verdict != "pass"]
    # The first line is what one-line summaries show: name the first problem in it.
    if step_errors:
        head += f": {len(step_errors)} fault(s) not injected"
    elif bad:
        head += f": {bad[0].text}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
    lines = [head]
    if step_errors:
        lines.append("faults not injected (the scenario proves nothing about the bot):")
        lines.extend(f"  {e}" for e in step_errors)
    if bad:
        lines.append(f"{len(bad)} of {len(results)} expectations not met:")
        for r in bad:
            lines.append(f"  [{r.verdict}] {r.message}")
            lines.extend(f"      {e}" for e in events_around(record, r.event_ms))
    lines.extend(f"note: {n}" for n in record.notes)
    return "\n".join(lines)
