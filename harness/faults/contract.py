"""The contract every fault kind follows, in both modes.

A kind is ONE `FaultKind` record in its family module (harness/faults/<family>.py): its params
(types, defaults, bounds), its meaning, its sim implementation and its net implementation side by
side, and the facts randomized drills need. The registry (`harness.faults.FAULTS`) is built from
those records; the scenario loader validates params against it, the runners inject through it, the
drill draws from it, and docs/scenarios.md's fault table is generated from it. The modes a kind
supports are the implementations it has: nothing else says so.

Both implementations mean the same thing: a scenario is the same fault in sim and in net. Where
they compute something (a price goal, a header value), they call one shared function.

- sim: `async def sim(world, step)`, `world` the run's `harness.sim.world.SimWorld` (exchange
  engine, feed, transport, bot, agenda) and `step` its `harness.sim.steps.ActiveStep` (resolved
  params; `establish(ts)` for a fault that unfolds, `fail(why)` for one that turns out not to be
  injectable later, `on_cleanup(fn)` for undo work that always runs).
- net: `def net(run, params) -> Injected`, `run` the `harness.net.runner.NetRun` (the real stack
  and the bot process), `params` the resolved params (time-like ones already scaled). A fault that
  completes later (a restart after `down_for`) returns `Injected(finish=..., finish_after_ms=...)`
  instead of blocking: the runner finishes it on time while the other steps go on.
- Either raises `FaultError` when the fault cannot be injected: the scenario is an ERROR, never a
  pass. Every fault changes what the bot sees - prices, spreads, fills, errors, feed timing,
  credentials, its processes and disks - and never touches a breaker.

This module is a leaf (nothing from harness/ at runtime), so both the loader and the families
import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


class FaultError(Exception):
    """A fault could not be injected or established: the scenario is an ERROR, never a pass."""


Revert = Callable[[], None]


@dataclass
class Injected:
    """What a net injection did: when it was in effect, and how to undo it (None: nothing to undo)."""

    established_ms: int | None = None
    revert: Revert | None = None
    revert_after_ms: int | None = None  # the fault's duration (scaled); None: undone at the end only
    notes: list[str] = field(default_factory=list)
    # A fault that completes later without holding up the timeline (a restart after a downtime):
    # the runner calls `finish` `finish_after_ms` (scaled) after the injection, other steps going
    # on meanwhile; the ms it returns is when the fault was established. It may raise FaultError.
    finish: Callable[[], int] | None = None
    finish_after_ms: int = 0


SimImpl = Callable[["SimWorld", "ActiveStep"], Awaitable[None]]
NetImpl = Callable[["NetRun", dict[str, Any]], Injected]

DURATION_FORMS = '"N bars", "1 bar", "500ms", "30s", "1.5s", "5m", "2h"'

ParamType = Literal["number", "int", "ms", "duration", "offset", "enum", "str", "flags", "signal"]
# number: float; int: integer; ms: a latency in milliseconds (float); duration: a Duration
# (resolved to int ms); offset: a signed Duration (int ms); enum: one of `choices`;
# str: free text; flags: a list of strings; signal: a signal as kill(1) names it (KILL, SIGKILL,
# kill, 9), kept as its canonical name (SIGKILL), one of `choices`. number/int/ms/duration/offset
# accept a PolicyRef.
# Time-like types (ms, duration, offset) are multiplied by the time scale in net mode.
TIME_TYPES: frozenset[str] = frozenset({"ms", "duration", "offset"})
NUMERIC_TYPES: frozenset[str] = frozenset({"number", "int"}) | TIME_TYPES


@dataclass(frozen=True)
class ParamSpec:
    type: ParamType
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    nonzero: bool = False
    doc: str = ""

    def describe(self) -> str:
        if self.type == "enum":
            return "|".join(self.choices)
        if self.type == "signal":
            return "a signal as kill(1) names it (KILL, SIGKILL, kill, 9): " + "|".join(self.choices)
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {self.gt:g}")
        if self.ge is not None:
            bounds.append(f">= {self.ge:g}")
        if self.le is not None:
            bounds.append(f"<= {self.le:g}")
        if self.nonzero:
            bounds.append("!= 0")
        kind = {"number": "a number", "int": "an integer", "ms": "milliseconds (number)",
                "duration": f"a duration ({DURATION_FORMS})",
                "offset": f"a signed duration ({DURATION_FORMS}, may start with -)",
                "str": "text", "flags": "a list of names"}[self.type]
        if self.type in NUMERIC_TYPES:
            kind += " or {policy: dotted.path, plus|times: X}"
        return kind + (" " + ", ".join(bounds) if bounds else "")


DURATION = ParamSpec("duration", gt=0, doc="how long the fault lasts")


@dataclass(frozen=True)
class DrillFacts:
    """What a randomized drill (harness/drill/) must know about a kind to schedule and judge it."""

    covers: str | None = None  # the checklist id a schedule with this kind exercises
    # param -> policy paths whose value is the param's natural magnitude (drawn near 1x)
    thresholds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # param -> the plain values to draw from, written as a scenario file writes them ("5s", -2019);
    # for a `flags` param: the names a sorted sub-list is drawn from
    samples: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # bars after injection during which the bot may not see prices or reach the exchange, so an
    # exit / flatten SLA is not judged (0: it can; None: until the end of the run)
    blinds_bars: int | None = 0
    trades: bool = False  # the harness drives trades on the bot's account, one after the other
    terminal: bool = False  # nothing can be scheduled after it
    reserve_bars: int = 1  # bars to leave before the next step (a trading kind: plus 6 per trade)


Family = Literal["market", "latency", "model", "exchange", "credentials", "process", "operator", "alerts"]
MODES = ("sim", "net")


@dataclass(frozen=True)
class FaultKind:
    kind: str
    family: Family
    doc: str  # what the bot sees (docs/scenarios.md's table)
    params: Mapping[str, ParamSpec]
    sim: SimImpl | None
    net: NetImpl | None
    unfolds: bool = False  # established when a condition is reached, not at injection
    drill: DrillFacts = DrillFacts()
    not_in: Mapping[str, str] = field(default_factory=dict)  # mode -> why it has no implementation there

    @property
    def modes(self) -> frozenset[str]:
        """The modes with an implementation: what a scenario of this kind may say `mode:`."""
        return frozenset(m for m, impl in (("sim", self.sim), ("net", self.net)) if impl is not None)

    def __post_init__(self) -> None:
        missing = [m for m in MODES if m not in self.modes and m not in self.not_in]
        if missing:
            raise ValueError(f"fault kind {self.kind}: no {'/'.join(missing)} implementation and no reason "
                             "why (not_in)")


def kind(name: str, family: Family, doc: str, *, sim: SimImpl | None, net: NetImpl | None,
         unfolds: bool = False, drill: DrillFacts | None = None, not_in: Mapping[str, str] | None = None,
         **params: ParamSpec) -> FaultKind:
    return FaultKind(name, family, doc, dict(params), sim, net, unfolds, drill or DrillFacts(), dict(not_in or {}))
