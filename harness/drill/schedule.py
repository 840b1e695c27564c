"""Fault schedules: what a drill generates (hypothesis strategies over the fault catalog), and
the loader's model it runs as."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from bot.core.policy import policy_value
from harness.drill_args import ATR_HISTORY_BARS
from harness.faults import FAULTS
from harness.scenario import (
    Account,
    Duration,
    Market,
    PolicyRef,
    Position,
    Scenario,
    Step,
    policy_unit,
)

SIM_KINDS: tuple[str, ...] = tuple(k for k, f in FAULTS.items() if "sim" in f.modes)
# What each kind needs from a drill lives with the kind (harness.faults: FaultKind.drill).
UNFOLDING = tuple(k for k in SIM_KINDS if FAULTS[k].unfolds)
TRADES_PER_STEP_BARS = 6  # a trading kind: bars to leave per trade the harness hands the bot

# Multipliers of a threshold, first = simplest (hypothesis shrinks toward it): just above trips.
NEAR = (1.1, 0.9, 1.02, 0.98, 1.5, 0.5, 2.0)
# Counts: offsets from the threshold.
NEAR_COUNT = (0, -1, 1, -2)


@dataclass(frozen=True)
class DrillStep:
    at_bars: int
    fault: str
    params: tuple[tuple[str, Any], ...]  # raw, as a file holds them: numbers, str, lists, Duration, PolicyRef


@dataclass(frozen=True)
class Schedule:
    profile: str
    seed: int
    bars: int
    vol_bps: float
    strategy: bool
    position: Position | None
    steps: tuple[DrillStep, ...]

    @property
    def key(self) -> str:
        return repr(self)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(s.fault for s in self.steps)

    def step_ids(self) -> list[str]:
        return [f"s{i + 1}-{s.fault.replace('_', '-')}" for i, s in enumerate(self.steps)]


def _ref(path: str, *, times: float = 1.0, plus: float = 0.0) -> PolicyRef:
    return PolicyRef(path, plus=plus, times=times, unit=policy_unit(path))


def _numeric_policy(policy: Any, path: str) -> float | None:
    try:
        value = policy_value(policy, path)
    except (LookupError, AttributeError, ValueError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@st.composite
def _param(draw: Any, kind: str, name: str, policy: Any, bar_ms: int) -> Any:
    ps = FAULTS[kind].params[name]
    paths = [p for p in FAULTS[kind].drill.thresholds.get(name, ()) if _numeric_policy(policy, p) is not None]
    if not policy.circuit_breakers.drawdown.peak.enabled:  # peak thresholds only where the check is on
        paths = [p for p in paths if ".peak." not in p]
    if paths and draw(st.booleans()) is False:  # policy-relative (shrinks toward it)
        path = draw(st.sampled_from(paths))
        base = _numeric_policy(policy, path)
        assert base is not None
        if ps.type == "int":
            plus = draw(st.sampled_from(NEAR_COUNT))
            if base + plus < (ps.ge or 1):
                plus = 0
            return _ref(path, plus=float(plus))
        times = draw(st.sampled_from(NEAR))
        if ps.nonzero:  # a signed magnitude: either way
            times *= draw(st.sampled_from((-1.0, 1.0)))
        return _ref(path, times=times)
    return draw(_plain_param(kind, name, bar_ms))


def _plain_param(kind: str, name: str, bar_ms: int) -> st.SearchStrategy[Any]:
    ps = FAULTS[kind].params[name]
    samples = FAULTS[kind].drill.samples.get(name)
    if samples and ps.type == "flags":
        return st.lists(st.sampled_from(list(samples)), min_size=1, max_size=3, unique=True).map(sorted)
    if samples:
        if ps.type in ("duration", "offset"):
            return st.sampled_from([Duration.parse(v) for v in samples])
        return st.sampled_from(samples)
    if ps.type == "enum":
        return st.sampled_from(ps.choices)
    if ps.type == "str":
        return st.just("gameday randomized drill")
    if ps.type == "int":
        return st.integers(int(ps.ge or 1), 3)
    if ps.type == "duration":
        return st.integers(1, 6).map(lambda n: Duration(float(n), "bar"))
    if ps.type == "ms":
        return st.sampled_from([100.0, 600.0, 2500.0, 6000.0])
    if ps.type == "number":
        return st.sampled_from([10.0, 60.0, 2.0, 3.0])
    raise ValueError(f"no generator for {kind}.{name} ({ps.type})")  # a new ParamSpec type: extend here


def _downtime_bars(params: Mapping[str, Any]) -> int:
    """Whole bars a step keeps the bot down (a restart's `down_for`); 0 for any other step."""
    down = params.get("down_for")
    if not isinstance(down, Duration):
        return 0
    bar_ms = Market().bar_ms
    return math.ceil(down.to_ms(bar_ms) / bar_ms)


def _reserve_bars(kind: str, params: Mapping[str, Any], policy: Any) -> int:
    """Bars to leave after a step before the next one (an unfolding fault needs room to unfold; a
    restart with down_for keeps the bot down that long: a step then would find no bot)."""
    facts = FAULTS[kind].drill
    if not facts.trades:
        return facts.reserve_bars + _downtime_bars(params)
    count = params.get("count", 1)
    if isinstance(count, PolicyRef):
        base = _numeric_policy(policy, count.path) or 1.0
        count = count.apply(base)
    return TRADES_PER_STEP_BARS * int(count) + facts.reserve_bars


@st.composite
def schedules(draw: Any, profiles: Sequence[str], bars: int, policies: Mapping[str, Any]) -> Schedule:
    """One fault schedule (hypothesis strategy); shrinks toward fewer, simpler, earlier steps."""
    profile = draw(st.sampled_from(list(profiles)))
    policy = policies[profile]
    bar_ms = Market().bar_ms
    off = draw(st.booleans())
    position = None
    if draw(st.booleans()):
        position = Position(draw(st.sampled_from(["long", "short"])), float(draw(st.sampled_from([10, 5, 15]))))
    steps: list[DrillStep] = []
    t = draw(st.integers(3, 12))
    for _ in range(draw(st.integers(1, 4))):
        if t >= bars - 3:
            break
        # An unfolding fault only opens a schedule: one that needs the bot's own exits (a streak)
        # or its adopted exposure (a drawdown) cannot be established after a kill switch flattened
        # the account or an armed malformed fill broke its accounting - harness limits, not bot bugs.
        kinds = [k for k in SIM_KINDS if not (steps and k in UNFOLDING)]
        if t < ATR_HISTORY_BARS:
            kinds = [k for k in kinds if k != "atr_spike"]
        kind = draw(st.sampled_from(_by_interest(kinds)))
        if kind == "atr_spike":
            t = max(t, ATR_HISTORY_BARS)
        params = {name: draw(_param(kind, name, policy, bar_ms))
                  for name, ps in FAULTS[kind].params.items()
                  if ps.required or draw(st.booleans()) is False}
        reserve = _reserve_bars(kind, params, policy)
        if (kind in UNFOLDING or _downtime_bars(params)) and t + reserve >= bars - 2:
            break  # it would not be established (the bot back) before the end
        steps.append(DrillStep(t, kind, tuple(sorted(params.items()))))
        if FAULTS[kind].drill.terminal:
            break
        t += reserve + draw(st.integers(0, 15))
    # The trade faults take what the bot holds (its strategy's position, an inherited one, a
    # resting entry) as their first trade, so every schedule may run with the strategy on.
    return Schedule(profile, draw(st.integers(0, 999)), bars, float(draw(st.sampled_from([15, 10, 30]))),
                    not off, position, tuple(steps))


def _by_interest(kinds: Iterable[str]) -> list[str]:
    """Safety-relevant kinds first: hypothesis shrinks a kind toward the front of the list."""
    first = ("kill_switch", "drawdown", "price_gap", "loss_streak", "spread_spike", "exchange_outage",
             "clear_kill_switch", "manual_resume", "ws_lag", "restart")
    kinds = list(kinds)
    return [k for k in first if k in kinds] + [k for k in kinds if k not in first]


def to_scenario(schedule: Schedule, sid: str = "drill") -> Scenario:
    """The schedule as the loader's model (no expectations: the drill judges invariants)."""
    steps = tuple(Step(step_id, Duration(float(s.at_bars), "bar"), s.fault, dict(s.params), index=i)
                  for i, (step_id, s) in enumerate(zip(schedule.step_ids(), schedule.steps, strict=True)))
    return Scenario(
        id=sid, title=f"randomized drill {sid}", covers=(), tags=("drill",), mode="sim",
        profile=schedule.profile, seed=schedule.seed, time_scale=1.0, duration=None,
        market=Market(bars=schedule.bars, vol_bps=schedule.vol_bps),
        account=Account(10000.0, schedule.position, schedule.strategy), steps=steps, expect=(),
        final=None, path=Path(f"<drill>/{sid}.yaml"), source=f"<drill {sid}>")
