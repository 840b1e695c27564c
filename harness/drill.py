"""Randomized game-day drills: hypothesis-generated fault schedules checked against invariants.

`gameday drill --random N --seed S [--profile futures|pets|both] [--bars B] [--out DIR]`

1. Generate N fault schedules (`Schedule`) with hypothesis: kinds from `harness.scenario.FAULTS`
   (sim-capable only), times within the market, magnitudes from each param's allowed range and,
   where the policy has a threshold for the param, as `{policy: path, times: x}` with x near 1
   so breakers actually trip (just above / just below / well past).
2. Build each as an in-memory `Scenario` (the loader's own model), run it in sim mode on a
   `harness.sim.world.SimWorld` (the real bot, virtual time, the in-process exchange) with a probe
   that samples the exchange (equity, mark, resting orders, prices) when the bot emits events.
3. Check INVARIANTS over the event stream and the exchange's logs (`check_invariants`), not
   scenario-specific expectations:
   - caps: no entry whose position would exceed max_position_pct x equity, nor total exposure
     max_total_exposure_pct x equity;
   - entries blocked: no entry order (reduce_only=false) while halted / paused (`halt-entry`) or
     after the kill switch engaged until it is cleared (`kill-entry`);
   - exits let through: while halted / paused / killed, a position whose price passes the widest
     stop the policy allows (exits.stop_loss.max_pct) gets an exit order within the breaker SLA;
   - breaker SLA: breaker.tripped with a halt (pause) action -> trading.halted (paused) within
     reaction.breaker_bars bars; flatten_and_halt -> account.flat within the same SLA; the
     immediate kill switch -> account.flat within reaction.kill_switch_immediate_flat_s;
   - no duplicate orders: one client id, one exchange order (events and the exchange's log);
   - the harness did not error: a fault that could not be injected, or the runner raising, is a
     DRILL bug, reported apart from the bot's violations.
4. A failing schedule is shrunk by hypothesis and written as a ready-to-commit scenario file.

Hypothesis, reproducibility and shrinking (why it is used this way): generation is a
`@given` run seeded with `@seed(S)` (derandomize=False: derandomize would hash the test function
and ignore the seed), `database=None` (no state outside the command line), generate phase only,
so the same S always yields the same N schedules - no wall clock anywhere (deadline=None; sim
runs are on virtual time). The schedules then run in a process pool (the runs are independent
and deterministic, so results do not depend on --jobs). For each failure a second `@given` run
with the SAME seed replays the generation - identical choices, so the failing schedule comes
up again - but now with the shrink phase on: the first time the failing schedule appears the
test body runs it for real and raises, and hypothesis shrinks it (re-running the sim on every
candidate, keeping only candidates that break the SAME invariant). That gives hypothesis's own
shrinking without giving up parallel generation or determinism.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bot.core.events import Event
from bot.core.policy import HALT_ACTIONS, PAUSE_ACTIONS, policy_value
from harness.drill_args import ATR_HISTORY_BARS, PROFILES
from harness.progress import tracker
from harness.scenario import (
    FAULTS,
    Account,
    Duration,
    Market,
    PolicyRef,
    Position,
    Scenario,
    ScenarioError,
    Step,
    policy_unit,
    resolve_all,
)

SIM_KINDS: tuple[str, ...] = tuple(k for k, f in FAULTS.items() if "sim" in f.modes)
CAP_TOLERANCE = 0.01  # relative: fees, slippage and mark-vs-fill between the bot's sizing and the probe
SHRINK_RUN_BUDGET = 150  # sim runs hypothesis may spend shrinking one failure

# Kinds whose effect on the bot's ability to see prices or reach the exchange makes an exit /
# flatten SLA unjudgeable while they act (window after injection, in bars; None: until the end).
TRANSPORT_WINDOW_BARS: Mapping[str, int | None] = {
    "exchange_outage": 2, "http_errors": 2, "order_reject": 2, "unknown_outcome": 2,
    "stale_book": 2, "ws_lag": 2, "malformed_fill": 2, "restart": 1, "audit_torn": 1, "state_lost": 1,
    "clock_skew": None, "order_latency": None, "key_revoked": None, "key_permissions": None,
}
UNFOLDING = ("drawdown", "loss_streak", "winning_trade")
TRADE_FAULTS = ("loss_streak", "winning_trade")  # the harness trades on the bot's account, one at a time
TERMINAL = ("key_revoked", "key_permissions")  # nothing is scheduled after these

# Params whose natural value is a policy threshold: (kind, param) -> candidate policy paths.
THRESHOLDS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("drawdown", "depth_pct"): ("circuit_breakers.drawdown.threshold_pct", "circuit_breakers.drawdown.warning_pct",
                                "circuit_breakers.drawdown.emergency_pct",
                                "circuit_breakers.drawdown.peak.threshold_pct"),
    ("loss_streak", "count"): ("circuit_breakers.consecutive_losses.max_consecutive_losses",),
    ("spread_spike", "bps"): ("circuit_breakers.volatility.spread.max_spread_bps",
                              "circuit_breakers.volatility.spread.warning_bps"),
    ("atr_spike", "multiple"): ("circuit_breakers.volatility.atr.spike_threshold",),
    ("price_gap", "pct"): ("circuit_breakers.volatility.price_move.max_move_pct",),
    ("ws_lag", "lag"): ("circuit_breakers.latency.websocket.max_lag_seconds",),
    ("stale_book", "duration"): ("circuit_breakers.latency.websocket.max_lag_seconds",),
    ("inference_latency", "ms"): ("circuit_breakers.latency.inference.p95_ms",
                                  "circuit_breakers.latency.inference.p99_ms"),
    ("order_latency", "placement_ms"): ("circuit_breakers.latency.order_placement.max_ms",),
    ("order_latency", "fill_ms"): ("circuit_breakers.latency.order_fill.max_ms",),
    ("exchange_outage", "duration"): ("exchange_outage.major_after_minutes",),
}
# Multipliers of a threshold, first = simplest (hypothesis shrinks toward it): just above trips.
NEAR = (1.1, 0.9, 1.02, 0.98, 1.5, 0.5, 2.0)
# Counts: offsets from the threshold.
NEAR_COUNT = (0, -1, 1, -2)

INVARIANTS = ("caps", "halt-entry", "kill-entry", "halt-exit", "breaker-sla", "duplicates", "harness-error")
COVERS: Mapping[str, tuple[str, ...]] = {
    "caps": ("C1.sizing",), "kill-entry": ("C2.kill_switch",), "halt-exit": ("C1.exits",),
    "duplicates": ("D3.exchange_outage",),
}  # halt-entry and harness-error cite what the schedule's fault kinds cover (KIND_COVERS)
KIND_COVERS: Mapping[str, str] = {
    "drawdown": "C2.drawdown", "loss_streak": "C2.consecutive_losses", "winning_trade": "C2.consecutive_losses",
    "spread_spike": "C2.volatility", "atr_spike": "C2.volatility", "price_gap": "C2.volatility",
    "ws_lag": "C2.latency", "inference_latency": "C2.latency", "order_latency": "C2.latency",
    "stale_book": "C2.latency", "credential_leak": "D3.credential_leak", "key_revoked": "D1.api_restrictions",
    "key_permissions": "D1.api_restrictions", "kill_switch": "C2.kill_switch",
    "clear_kill_switch": "C2.kill_switch", "manual_resume": "C2", "audit_torn": "D3.audit", "disk_full": "D3.audit",
    "state_lost": "PETS.circuit_breakers.persisted",
    "alert_sink_outage": "PETS.monitoring", "alert_sink_latency": "PETS.monitoring",
}
BREAKER_COVERS = {"drawdown": "C2.drawdown", "consecutive_losses": "C2.consecutive_losses",
                  "volatility": "C2.volatility", "latency": "C2.latency", "outage": "D3.exchange_outage",
                  "exchange_outage": "D3.exchange_outage"}


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


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
    paths = [p for p in THRESHOLDS.get((kind, name), ()) if _numeric_policy(policy, p) is not None]
    if kind == "drawdown":  # peak thresholds only where the profile enables the peak check
        if not policy.circuit_breakers.drawdown.peak.enabled:
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
        if kind == "price_gap":
            times *= draw(st.sampled_from((-1.0, 1.0)))
        return _ref(path, times=times)
    return draw(_plain_param(kind, name, bar_ms))


def _plain_param(kind: str, name: str, bar_ms: int) -> st.SearchStrategy[Any]:
    ps = FAULTS[kind].params[name]
    if kind == "http_errors":
        return {"status": st.sampled_from([429, 503, 418, 500]), "code": st.sampled_from([-1003, -1001]),
                "count": st.integers(1, 3),
                "retry_after": st.sampled_from([Duration(5, "s"), Duration(20, "s"), Duration(1, "m")])}[name]
    if kind == "order_reject" and name == "code":
        return st.sampled_from([-2019, -2021, -2010])
    if kind == "key_permissions":
        return st.lists(st.sampled_from(["read", "trade", "withdraw", "ip_restrict", "internal_transfer"]),
                        min_size=1, max_size=3, unique=True).map(lambda xs: sorted(xs))
    if kind == "clock_skew":
        return st.sampled_from([Duration(3, "s"), Duration(-3, "s"), Duration(30, "s"), Duration(-1, "s")])
    if kind == "price_gap":
        return st.sampled_from([3.0, -3.0, 6.0, -12.0])
    if kind == "drawdown":
        return st.sampled_from([1.0, 2.5, 4.0, 6.0])
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


def _reserve_bars(kind: str, params: Mapping[str, Any], policy: Any) -> int:
    """Bars to leave after a step before the next one (an unfolding fault needs room to unfold)."""
    if kind == "drawdown":
        return 5
    if kind in ("loss_streak", "winning_trade"):
        count = params.get("count", 1)
        if isinstance(count, PolicyRef):
            base = _numeric_policy(policy, count.path) or 1.0
            count = count.apply(base)
        return 6 * int(count) + 4
    return 1


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
        if kind in UNFOLDING and t + reserve >= bars - 2:
            break
        steps.append(DrillStep(t, kind, tuple(sorted(params.items()))))
        if kind in TERMINAL:
            break
        t += reserve + draw(st.integers(0, 15))
    strategy = not off
    if any(s.fault in TRADE_FAULTS for s in steps):
        # The harness hands the bot each streak trade on a flat account and waits for its exits:
        # the bot's own entries (or an inherited position) would interleave with them.
        strategy, position = False, None
    return Schedule(profile, draw(st.integers(0, 999)), bars, float(draw(st.sampled_from([15, 10, 30]))),
                    strategy, position, tuple(steps))


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


# --------------------------------------------------------------------------------------------
# Running one schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The exchange as the probe saw it when the bot emitted an event."""

    equity: float  # real equity: wallet + unrealised
    mark: float
    resting_entries: float  # notional of the bot's resting non-reduce-only orders (excl. the event's)


@dataclass
class Trace:
    """Everything the invariant checker looks at (the fields a crafted test fills by hand)."""

    events: list[Event]
    bar_ms: int
    end_ms: int
    start_ms: int = 0  # clock time the run started (messages show times relative to it)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)  # event index -> exchange state
    prices: list[tuple[int, float, float]] = field(default_factory=list)  # (ts, bid, ask)
    order_log: list[dict[str, Any]] = field(default_factory=list)  # the bot's exchange order records
    steps: list[tuple[str, str, int | None, dict[str, Any], str | None]] = field(default_factory=list)
    # (id, fault, injected_ms, resolved params, error)
    runner_duplicates: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    invariant: str
    message: str
    ts_ms: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    index: int
    schedule: Schedule
    violations: list[Violation]
    checks: int
    events: int
    wall_s: float


@dataclass(frozen=True)
class Limits:
    """The policy numbers the invariants use (all from config/, none literal)."""

    max_position_pct: float
    max_total_exposure_pct: float
    stop_max_pct: float
    breaker_sla_ms: int
    kill_flat_ms: int

    @classmethod
    def from_policy(cls, policy: Any, bar_ms: int) -> Limits:
        ps, r = policy.position_sizing, policy.reaction
        return cls(ps.max_position_pct, ps.max_total_exposure_pct, policy.exits.stop_loss.max_pct,
                   int(r.breaker_bars * bar_ms), int(r.kill_switch_immediate_flat_s * 1000))


class _Probe:
    """Watches the bot's events and the exchange's prices inside a running SimWorld."""

    def __init__(self, world: Any) -> None:
        from harness.sim.constants import API_KEY, HARNESS_ORDER_PREFIX, SYMBOL

        self.world, self.api_key, self.prefix, self.symbol = world, API_KEY, HARNESS_ORDER_PREFIX, SYMBOL
        self.snapshots: dict[int, Snapshot] = {}
        self.prices: list[tuple[int, float, float]] = []
        self.errors: list[str] = []
        self._resting: dict[str, float] = {}
        self._log_seq = 0
        world.watch(self.on_event)
        world.xe.add_listener(self.on_price)

    def _bot_record(self, rec: Mapping[str, Any]) -> bool:
        return rec.get("api_key") == self.api_key and bool(rec.get("client_id")) \
            and not str(rec["client_id"]).startswith(self.prefix)

    def _sync_orders(self) -> None:
        for rec in self.world.xe.order_log:
            if rec["seq"] <= self._log_seq:
                continue
            self._log_seq = rec["seq"]
            if not self._bot_record(rec) or "status" not in rec:
                continue
            cid = str(rec["client_id"])
            if rec["status"] in ("NEW", "PARTIALLY_FILLED") and not rec.get("reduce_only"):
                remaining = float(rec["qty"]) - float(rec.get("executed_qty") or 0.0)
                self._resting[cid] = remaining * float(rec.get("price") or 0.0)
            else:
                self._resting.pop(cid, None)

    def on_event(self, event: Event) -> None:
        if event.name not in ("order.placed", "breaker.tripped", "killswitch.engaged"):
            return
        try:
            self._sync_orders()
            cid = str(event.fields.get("client_id"))
            resting = sum(v for k, v in self._resting.items() if k != cid)
            self.snapshots[len(self.world.events) - 1] = Snapshot(self.world.real_equity(), self.world.price(),
                                                                  resting)
        except Exception as exc:  # the probe is harness code: its failure is a drill bug, not the bot's
            self.errors.append(f"probe failed on {event.name}: {type(exc).__name__}: {exc}")

    def on_price(self, symbol: str) -> None:
        if symbol == self.symbol:
            bid, ask = self.world.xe.book(symbol)
            self.prices.append((self.world.now, bid, ask))

    def order_log(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.world.xe.order_log if self._bot_record(r)]


def run_schedule(schedule: Schedule, policy: Any, workdir: Path | None = None) -> Trace:
    """Run one schedule in sim mode (the real bot) and collect its trace; never raises."""
    from harness.sim.world import SimWorld

    scenario = to_scenario(schedule)
    bar_ms = scenario.bar_ms
    try:
        params = resolve_all(scenario, lambda path: policy_value(policy, path))  # type: ignore[arg-type,return-value]
    except ScenarioError as exc:
        return Trace([], bar_ms, 0, harness_errors=[f"params did not resolve: {exc}"])
    with tempfile.TemporaryDirectory(prefix="gameday-drill-", dir=_fast_tmp()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            world = SimWorld(scenario, params, policy, work)
            probe = _Probe(world)
            record = asyncio.run(world.run())
        except Exception as exc:
            return Trace([], bar_ms, 0, harness_errors=[f"the sim runner raised {type(exc).__name__}: {exc}"])
        trace = Trace(list(record.events), bar_ms, int(record.end_ms or record.last_ms), record.start_ms,
                      probe.snapshots,
                      probe.prices, probe.order_log(),
                      [(t.id, t.fault, t.injected_ms, dict(t.params), t.error) for t in record.steps],
                      world.duplicate_orders(), list(probe.errors))
    for step_id, fault, injected, _, error in trace.steps:
        if error is not None:
            trace.harness_errors.append(f"step {step_id} ({fault}) could not be injected: {error}")
        elif injected is None:
            trace.harness_errors.append(f"step {step_id} ({fault}) was never injected")
    return trace


def _fast_tmp() -> str | None:
    """A RAM-backed temp dir when there is one: the bot fsyncs its audit log per record."""
    shm = Path("/dev/shm")  # nosec B108 - only the parent of a private TemporaryDirectory (unique, 0700)
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# --------------------------------------------------------------------------------------------
# The invariants
# --------------------------------------------------------------------------------------------


@dataclass
class _State:
    trading: str = "active"  # active | paused | halted (from the bot's own events)
    killed: bool = False
    kill_mode: str | None = None
    position: float = 0.0
    entry: float = 0.0
    opened_ms: int = 0


def check_invariants(trace: Trace, limits: Limits) -> tuple[list[Violation], int]:
    """(violations, number of checks made) over one run's trace."""
    out: list[Violation] = [Violation("harness-error", e) for e in trace.harness_errors]
    checks = len(trace.harness_errors)
    events = trace.events
    state = _State()
    blocked_since: int | None = None
    seen_ids: dict[str, int] = {}
    excused = _transport_windows(trace)
    pending_exit: list[tuple[int, str]] = []  # (deadline, what) from stop crossings while blocked
    price_i = 0
    for i, e in enumerate(events):
        f = e.fields
        # Stop crossings up to this event's time (prices seen by the exchange before it).
        while price_i < len(trace.prices) and trace.prices[price_i][0] <= e.ts_ms:
            ts, bid, ask = trace.prices[price_i]
            price_i += 1
            crossing = _stop_crossed(state, bid, ask, limits)
            if crossing and blocked_since is not None and ts >= max(blocked_since, state.opened_ms) \
                    and not pending_exit:
                pending_exit.append((ts + limits.breaker_sla_ms, crossing))
        if pending_exit and (e.name in ("position.closed", "account.flat")
                             or (e.name == "order.placed" and f.get("reduce_only") is True)):
            pending_exit.clear()
        for deadline, what in list(pending_exit):
            if e.ts_ms > deadline:
                pending_exit.remove((deadline, what))
                checks += 1
                if not _excused(excused, deadline - limits.breaker_sla_ms, deadline):
                    out.append(Violation("halt-exit", f"{what}, and no exit order by {_at(trace, deadline)} "
                                         f"(SLA {limits.breaker_sla_ms} ms)", deadline - limits.breaker_sla_ms))
        if e.name == "order.placed":
            cid = str(f.get("client_id"))
            checks += 1
            if cid in seen_ids:
                out.append(Violation("duplicates", f"order.placed twice for client id {cid} (events {seen_ids[cid]} "
                                     f"and {i})", e.ts_ms))
            seen_ids[cid] = i
            if f.get("reduce_only") is False:
                checks += 2
                if state.killed:
                    out.append(Violation("kill-entry", f"entry order {cid} placed at {_at(trace, e.ts_ms)} while "
                                         f"the kill switch is engaged ({state.kill_mode})", e.ts_ms,
                                         {"client_id": cid}))
                elif state.trading in ("halted", "paused"):
                    out.append(Violation("halt-entry", f"entry order {cid} placed at {_at(trace, e.ts_ms)} while "
                                         f"trading is {state.trading}", e.ts_ms,
                                         {"client_id": cid, "state": state.trading}))
                snap = trace.snapshots.get(i)
                if snap is not None:
                    checks += 2
                    out.extend(_caps(e, state, snap, limits))
        elif e.name == "breaker.tripped":
            checks += 1
            out.extend(_breaker_sla(trace, i, state, limits, excused))
        elif e.name == "killswitch.engaged":
            state.killed, state.kill_mode = True, str(f.get("mode"))
            if f.get("mode") == "immediate":
                checks += 1
                out.extend(_flat_within(trace, i, limits.kill_flat_ms, excused, "kill switch immediate"))
        elif e.name == "killswitch.cleared":
            state.killed, state.kill_mode = False, None
        elif e.name == "trading.halted":
            state.trading = "halted"
        elif e.name == "trading.paused":
            state.trading = "paused"
        elif e.name == "trading.resumed":
            state.trading = "active"
        elif e.name == "state.restored":
            board, kill = f.get("breakers") or {}, f.get("killswitch") or {}
            board_state = board.get("state", "active")
            state.trading = board_state if board_state in ("paused", "halted") else "active"
            state.killed = bool(kill.get("engaged"))
            state.kill_mode = kill.get("mode")
        elif e.name == "order.filled":
            qty = float(f.get("qty") or 0.0)
            state.position += qty if f.get("side") == "buy" else -qty
        elif e.name == "position.opened":
            state.entry, state.opened_ms = float(f.get("entry") or 0.0), e.ts_ms
            if f.get("reason") == "reconciled":
                state.position = float(f.get("qty") or 0.0)
        elif e.name == "position.closed":
            state.position, state.entry = 0.0, 0.0
        elif e.name == "order.reconciled" and f.get("status") == "position_adopted":
            state.position = float(f.get("qty") or 0.0)
        blocked = state.killed or state.trading in ("halted", "paused")
        if blocked and blocked_since is None:
            blocked_since = e.ts_ms
        elif not blocked:
            blocked_since = None
            pending_exit.clear()
    for deadline, what in pending_exit:
        if deadline <= trace.end_ms:
            checks += 1
            if not _excused(excused, deadline - limits.breaker_sla_ms, deadline):
                out.append(Violation("halt-exit", f"{what}, and no exit order by {_at(trace, deadline)}",
                                     deadline - limits.breaker_sla_ms))
    checks += 2
    new_by_cid = Counter(str(r.get("client_id")) for r in trace.order_log if r.get("event") == "new")
    for cid, n in sorted(new_by_cid.items()):
        if n > 1:
            out.append(Violation("duplicates", f"client id {cid} became {n} exchange orders"))
    for problem in trace.runner_duplicates:
        out.append(Violation("duplicates", problem))
    return out, checks


def _at(trace: Trace, ts_ms: int) -> str:
    rel = ts_ms - trace.start_ms
    return f"{rel} ms (bar {rel / trace.bar_ms:g})"


def _stop_crossed(state: _State, bid: float, ask: float, limits: Limits) -> str | None:
    if abs(state.position) < 1e-12 or state.entry <= 0:
        return None
    if state.position > 0 and bid <= state.entry * (1 - limits.stop_max_pct):
        return (f"long {state.position:g} from {state.entry:g}: bid {bid:g} passed the widest stop "
                f"({limits.stop_max_pct:.2%}) while trading was blocked")
    if state.position < 0 and ask >= state.entry * (1 + limits.stop_max_pct):
        return (f"short {state.position:g} from {state.entry:g}: ask {ask:g} passed the widest stop "
                f"({limits.stop_max_pct:.2%}) while trading was blocked")
    return None


def _caps(e: Event, state: _State, snap: Snapshot, limits: Limits) -> list[Violation]:
    f = e.fields
    qty = float(f.get("qty") or 0.0)
    price = float(f.get("price") or snap.mark)
    notional = qty * price
    signed = qty if f.get("side") == "buy" else -qty
    pos = state.position
    if abs(pos) < 1e-12 or (pos > 0) == (signed > 0):
        new_position = abs(pos) * snap.mark + notional
    else:
        new_position = abs(pos + signed) * price
    out = []
    cap = limits.max_position_pct * snap.equity
    if new_position > cap * (1 + CAP_TOLERANCE):
        out.append(Violation("caps", f"entry {f.get('client_id')} makes the position {new_position:.2f}, over "
                             f"max_position_pct {limits.max_position_pct:.2%} of equity {snap.equity:.2f} "
                             f"({cap:.2f})", e.ts_ms, {"client_id": f.get("client_id")}))
    exposure = abs(pos) * snap.mark + snap.resting_entries + notional
    exposure_cap = limits.max_total_exposure_pct * snap.equity
    if exposure > exposure_cap * (1 + CAP_TOLERANCE):
        out.append(Violation("caps", f"entry {f.get('client_id')} makes total exposure {exposure:.2f}, over "
                             f"max_total_exposure_pct {limits.max_total_exposure_pct:.2%} of equity "
                             f"{snap.equity:.2f} ({exposure_cap:.2f})", e.ts_ms, {"client_id": f.get("client_id")}))
    return out


def _breaker_sla(trace: Trace, i: int, state: _State, limits: Limits,
                 excused: list[tuple[int, float]]) -> list[Violation]:
    e = trace.events[i]
    action = str(e.fields.get("action"))
    deadline = e.ts_ms + limits.breaker_sla_ms
    out: list[Violation] = []
    if action in HALT_ACTIONS:
        wanted, ok_states = ("trading.halted",), ("halted",)
    elif action in PAUSE_ACTIONS:
        wanted, ok_states = ("trading.paused", "trading.halted"), ("paused", "halted")
    else:
        return out
    name = f"{e.fields.get('breaker')}/{e.fields.get('check')}"
    if state.trading not in ok_states and not any(
            x.name in wanted for x in trace.events[i + 1:] if x.ts_ms <= deadline):
        if deadline <= trace.end_ms:
            out.append(Violation("breaker-sla", f"breaker {name} tripped with {action} at {_at(trace, e.ts_ms)} and no "
                                 f"{' / '.join(wanted)} within {limits.breaker_sla_ms} ms", e.ts_ms,
                                 {"breaker": e.fields.get("breaker"), "wanted": wanted[0]}))
    if action == "flatten_and_halt":
        snap = trace.snapshots.get(i)
        nothing_open = abs(state.position) < 1e-12 and (snap is None or snap.resting_entries == 0)
        if not nothing_open:
            out.extend(_flat_within(trace, i, limits.breaker_sla_ms, excused, f"breaker {name} flatten_and_halt"))
    return out


def _flat_within(trace: Trace, i: int, sla_ms: int, excused: list[tuple[int, float]],
                 what: str) -> list[Violation]:
    e = trace.events[i]
    deadline = e.ts_ms + sla_ms
    if deadline > trace.end_ms or _excused(excused, e.ts_ms, deadline):
        return []
    if any(x.name == "account.flat" for x in trace.events[i:] if x.ts_ms <= deadline):
        return []
    if any(x.name == "exchange.down" for x in trace.events[:i + 1] if x.ts_ms > e.ts_ms - trace.bar_ms):
        return []  # the venue is unreachable: the flatten SLA runs from when it answers again
    return [Violation("breaker-sla", f"{what} at {_at(trace, e.ts_ms)} and no account.flat within {sla_ms} ms",
                      e.ts_ms, {"breaker": e.fields.get("breaker"), "wanted": "account.flat",
                                "sla_ms": sla_ms})]


def _transport_windows(trace: Trace) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for _, fault, injected, params, _ in trace.steps:
        if injected is None or fault not in TRANSPORT_WINDOW_BARS:
            continue
        bars = TRANSPORT_WINDOW_BARS[fault]
        if bars is None:
            out.append((injected, math.inf))
            continue
        extra = 0
        for name in ("duration", "lag"):
            extra += int(params.get(name) or 0)
        if params.get("retry_after"):
            extra += int(params["retry_after"]) * int(params.get("count") or 1)
        out.append((injected, injected + extra + bars * trace.bar_ms))
    return out


def _excused(windows: list[tuple[int, float]], start: int, end: int) -> bool:
    return any(a <= end and b >= start for a, b in windows)


# --------------------------------------------------------------------------------------------
# The drill
# --------------------------------------------------------------------------------------------


def _settings(n: int, phases: Sequence[Phase]) -> settings:
    return settings(max_examples=n, derandomize=False, database=None, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)


def generate(n: int, seed_value: int, profiles: Sequence[str], bars: int,
             policies: Mapping[str, Any]) -> list[Schedule]:
    """N schedules, the same for the same (seed, profiles, bars): hypothesis seeded by `seed`."""
    out: list[Schedule] = []
    seen: set[str] = set()

    @seed(seed_value)
    @_settings(_budget(n), [Phase.generate])
    @given(schedules(profiles, bars, policies))
    def collect(schedule: Schedule) -> None:
        if len(out) >= n:
            raise _Enough
        if schedule.key not in seen:
            seen.add(schedule.key)
            out.append(schedule)

    try:
        collect()
    except _Enough:
        pass
    return out


def _budget(n: int) -> int:
    """Examples hypothesis may generate to find n distinct schedules (it repeats some)."""
    return 3 * n + 20


class _Enough(Exception):
    """N distinct schedules collected: stop generating."""


class _Found(Exception):
    pass


def shrink(target: Schedule, invariant: str, seed_value: int, n: int, profiles: Sequence[str], bars: int,
           policies: Mapping[str, Any], run: Callable[[Schedule], list[Violation]]) -> Schedule:
    """The smallest schedule hypothesis finds that still breaks `invariant`, starting from `target`
    (replaying the seeded generation until `target` comes up, then shrinking it)."""
    state: dict[str, Any] = {"hit": False, "best": target, "runs": 0}

    @seed(seed_value)
    @_settings(_budget(n), [Phase.generate, Phase.shrink])
    @given(schedules(profiles, bars, policies))
    def replay(schedule: Schedule) -> None:
        if not state["hit"]:
            if schedule.key != target.key:
                return
            state["hit"] = True
        if state["runs"] >= SHRINK_RUN_BUDGET:
            return
        state["runs"] += 1
        if any(v.invariant == invariant for v in run(schedule)):
            if _size(schedule) <= _size(state["best"]):
                state["best"] = schedule
            raise _Found(invariant)

    try:
        replay()
    except _Found:
        pass
    return state["best"]  # type: ignore[no-any-return]


def _size(s: Schedule) -> tuple[int, int, int]:
    return (len(s.steps), sum(len(st_.params) for st_ in s.steps), sum(st_.at_bars for st_ in s.steps))


_POLICIES: dict[str, Any] = {}


def _policy(profile: str) -> Any:
    if profile not in _POLICIES:
        from bot.config import load_policy

        _POLICIES[profile] = load_policy(profile).policy
    return _POLICIES[profile]


def evaluate(schedule: Schedule, index: int = 0) -> Result:
    """Run and check one schedule (the unit of work of the process pool)."""
    t0 = time.perf_counter()
    policy = _policy(schedule.profile)
    scenario_bar_ms = Market().bar_ms
    trace = run_schedule(schedule, policy)
    violations, checks = check_invariants(trace, Limits.from_policy(policy, scenario_bar_ms))
    return Result(index, schedule, violations, checks, len(trace.events), time.perf_counter() - t0)


def _violations_of(schedule: Schedule) -> list[Violation]:
    return evaluate(schedule).violations


def run_all(schedules_: Sequence[Schedule], jobs: int) -> list[Result]:
    with tracker("drill", len(schedules_), unit="schedules") as shown:
        failing = 0

        def done(result: Result) -> Result:  # progress per schedule (harness/progress.py)
            nonlocal failing
            failing += bool(result.violations)
            shown.advance(note=f"{failing} failing so far")
            return result

        if jobs <= 1 or len(schedules_) < 2:
            return [done(evaluate(s, i)) for i, s in enumerate(schedules_)]
        import multiprocessing

        ctx = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
        chunk = max(1, len(schedules_) // (jobs * 8))
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            return [done(r) for r in pool.map(evaluate, schedules_, range(len(schedules_)), chunksize=chunk)]


# --------------------------------------------------------------------------------------------
# Scenario files for failures
# --------------------------------------------------------------------------------------------


def _raw(value: Any) -> Any:
    if isinstance(value, Duration):
        return str(value)
    if isinstance(value, PolicyRef):
        out: dict[str, Any] = {"policy": value.path}
        if value.times != 1.0:
            out["times"] = value.times
        if value.plus:
            out["plus"] = int(value.plus) if float(value.plus).is_integer() else value.plus
        return out
    return value


def _step_before(schedule: Schedule, ids: list[str], ts_ms: int | None, bar_ms: int) -> int | None:
    """Index of the last step injected at or before ts_ms."""
    from harness.sim.constants import START_MS

    if ts_ms is None:
        return None
    best = None
    for i, s in enumerate(schedule.steps):
        if START_MS + s.at_bars * bar_ms <= ts_ms:
            best = i
    return best


def scenario_document(schedule: Schedule, violation: Violation, sid: str, limits: Limits) -> dict[str, Any]:
    """The scenario file for a failure, with expectations that encode the violated invariant
    where the format can say it."""
    bar_ms = Market().bar_ms
    ids = schedule.step_ids()
    covers = list(COVERS.get(violation.invariant, ()))
    if not covers:  # what the schedule's kinds exercise (exchange and process faults: D3.exchange_outage)
        covers = sorted({KIND_COVERS.get(s.fault, "D3.exchange_outage") for s in schedule.steps} - {"C2"}) \
            or ["C2.kill_switch"]
    expect: list[dict[str, Any]] = []
    final: dict[str, str] = {}
    k = _step_before(schedule, ids, violation.ts_ms, bar_ms)
    if violation.invariant == "kill-entry":
        kill = next((i for i in range(len(ids)) if schedule.steps[i].fault == "kill_switch"
                     and (k is None or i <= k)), k)
        if kill is not None:
            item: dict[str, Any] = {"never": "order.placed", "match": {"reduce_only": False}, "after": ids[kill]}
            clear = next((i for i in range(kill + 1, len(ids)) if schedule.steps[i].fault == "clear_kill_switch"),
                         None)
            if clear is not None:
                item["until"] = ids[clear]
            expect.append(item)
    elif violation.invariant == "halt-entry" and k is not None:
        item = {"never": "order.placed", "match": {"reduce_only": False}, "after": ids[k]}
        nxt = next((i for i in range(k + 1, len(ids))
                    if schedule.steps[i].at_bars * bar_ms > schedule.steps[k].at_bars * bar_ms), None)
        if nxt is not None:
            item["until"] = ids[nxt]
        expect.append(item)
    elif violation.invariant == "breaker-sla" and k is not None:
        breaker = violation.detail.get("breaker")
        if breaker in BREAKER_COVERS:
            covers = [BREAKER_COVERS[str(breaker)]]
        wanted = str(violation.detail.get("wanted", "trading.halted"))
        sla = int(violation.detail.get("sla_ms", limits.breaker_sla_ms))
        within = (violation.ts_ms or 0) - _at_ms(schedule.steps[k], bar_ms) + sla
        expect.append({"event": wanted, "after": ids[k], "within": _duration_text(within, bar_ms)})
    elif violation.invariant == "halt-exit" and k is not None:
        within = (violation.ts_ms or 0) - _at_ms(schedule.steps[k], bar_ms) + limits.breaker_sla_ms
        expect.append({"event": "order.placed", "match": {"reduce_only": True}, "after": ids[k],
                       "within": _duration_text(within, bar_ms)})
    elif violation.invariant == "duplicates":
        final["duplicate_orders"] = "none"
    doc: dict[str, Any] = {
        "scenario": sid,
        "title": f"drill finding ({violation.invariant}): {violation.message}"[:300],
        "covers": covers,
        "tags": ["drill"],
        "mode": "sim",
        "profile": schedule.profile,
        "seed": schedule.seed,
        "market": {"bars": schedule.bars, "vol_bps": schedule.vol_bps},
        "account": {"equity": 10000, "strategy": "on" if schedule.strategy else "off"},
        "steps": [{"id": sid_, "at": f"{s.at_bars} bars", "fault": s.fault,
                   **({"params": {k_: _raw(v) for k_, v in s.params}} if s.params else {})}
                  for sid_, s in zip(ids, schedule.steps, strict=True)],
    }
    if schedule.position is not None:
        doc["account"]["position"] = {"side": schedule.position.side, "qty_pct": schedule.position.qty_pct}
    if expect:
        doc["expect"] = expect
    if final:
        doc["final"] = final
    return doc


def _at_ms(step: DrillStep, bar_ms: int) -> int:
    from harness.sim.constants import START_MS

    return START_MS + step.at_bars * bar_ms


def _duration_text(ms: int, bar_ms: int) -> str:
    ms = max(ms, 1)
    if ms % bar_ms == 0:
        n = ms // bar_ms
        return "1 bar" if n == 1 else f"{n} bars"
    return f"{ms}ms"


def write_scenario(doc: Mapping[str, Any], violation: Violation, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{doc['scenario']}.yaml"
    header = (f"# Written by `gameday drill`: a shrunk schedule that broke the invariant "
              f"'{violation.invariant}'.\n# {violation.message}\n")
    text = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=110)
    path.write_text(header + text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


@dataclass
class DrillReport:
    schedules: list[Schedule]
    results: list[Result]
    written: list[Path]
    wall_s: float

    @property
    def violations(self) -> list[tuple[Result, Violation]]:
        return [(r, v) for r in self.results for v in r.violations if v.invariant != "harness-error"]

    @property
    def harness_errors(self) -> list[tuple[Result, Violation]]:
        return [(r, v) for r in self.results for v in r.violations if v.invariant == "harness-error"]

    def summary(self) -> list[str]:
        kinds = Counter(k for s in self.schedules for k in s.kinds)
        missing = [k for k in SIM_KINDS if k not in kinds]
        checks = sum(r.checks for r in self.results)
        rate = len(self.results) / self.wall_s * 60 if self.wall_s > 0 else 0.0
        by_inv = Counter(v.invariant for _, v in self.violations)
        lines = [f"drill: {len(self.results)} schedules run in {self.wall_s:.1f} s ({rate:.0f}/min), "
                 f"{sum(r.events for r in self.results)} bot events",
                 f"kinds exercised ({len(kinds)} of {len(SIM_KINDS)} sim kinds): "
                 + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))]
        if missing:
            lines.append("kinds not drawn: " + ", ".join(missing)
                         + (f" (atr_spike needs --bars >= {ATR_HISTORY_BARS + 4})" if "atr_spike" in missing else ""))
        lines.append(f"invariant checks made: {checks} ({', '.join(INVARIANTS)})")
        lines.append(f"violations: {len(self.violations)}"
                     + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(by_inv.items())) + ")" if by_inv else ""))
        lines.append(f"harness errors (drill bugs, not the bot's): {len(self.harness_errors)}")
        for r, v in (self.violations + self.harness_errors)[:10]:
            lines.append(f"  schedule {r.index} [{v.invariant}] {v.message}")
        return lines


def drill(n: int, seed_value: int, profiles: Sequence[str], bars: int, out_dir: Path, jobs: int = 1,
          shrink_failures: bool = True, echo: Callable[[str], None] = print) -> DrillReport:
    t0 = time.perf_counter()
    policies = {p: _policy(p) for p in profiles}
    plan = generate(n, seed_value, profiles, bars, policies)
    results = run_all(plan, jobs)
    wall = time.perf_counter() - t0
    report = DrillReport(plan, results, [], wall)
    done: set[str] = set()
    for result in results:
        bad = list(result.violations)
        if not bad:
            continue
        v = next((x for x in bad if x.invariant != "harness-error"), bad[0])
        if v.invariant in done:  # one file per invariant and run: the first, shrunk
            continue
        done.add(v.invariant)
        smallest = result.schedule
        if shrink_failures:
            smallest = shrink(result.schedule, v.invariant, seed_value, n, profiles, bars, policies,
                              _violations_of)
        final = next((x for x in _violations_of(smallest) if x.invariant == v.invariant), v)
        policy = policies[smallest.profile]
        sid = f"drill-{v.invariant}-s{seed_value}-{result.index}"
        doc = scenario_document(smallest, final, sid, Limits.from_policy(policy, Market().bar_ms))
        path = write_scenario(doc, final, out_dir)
        report.written.append(path)
        echo(f"wrote {path} ({v.invariant}; shrunk from {len(result.schedule.steps)} to "
             f"{len(smallest.steps)} steps)")
    return report


DRILL_FILE = "drill.json"
DRILL_SCHEMA = "gameday.drill/v1"


def drill_record(report: DrillReport, seed_value: int, profiles: Sequence[str], bars: int, out_dir: Path,
                 started_at: str) -> dict[str, Any]:
    """The drill's summary as evidence (drill.json, gameday.drill/v1): the readiness report's drill
    history reads it."""
    from harness.evidence import git_commit

    bad = report.violations + report.harness_errors
    return {
        "schema": DRILL_SCHEMA, "git_commit": git_commit(), "started_at": started_at,
        "wall_s": round(report.wall_s, 3), "seed": seed_value, "profiles": list(profiles), "bars": bars,
        "schedules": len(report.results), "events": sum(r.events for r in report.results),
        "checks": sum(r.checks for r in report.results),
        "violation_count": len(report.violations), "harness_error_count": len(report.harness_errors),
        "violations_by_invariant": dict(sorted(Counter(v.invariant for _, v in bad).items())),
        "kinds": dict(sorted(Counter(k for s in report.schedules for k in s.kinds).items())),
        "violations": [{"schedule": r.index, "invariant": v.invariant, "message": v.message} for r, v in bad[:50]],
        "written": [p.relative_to(out_dir).as_posix() if p.is_relative_to(out_dir) else str(p) for p in report.written],
        "verdict": "fail" if bad else "pass",
    }


def cmd_drill(args: argparse.Namespace) -> int:
    import json

    from harness.evidence import iso_z, tree_state, utc_now, write_manifest

    profiles = PROFILES if args.profile == "both" else (args.profile,)
    out_dir = Path(args.out)
    started = iso_z(utc_now())
    report = drill(args.n, args.seed, profiles, args.bars, out_dir, jobs=args.jobs,
                   shrink_failures=args.shrink)
    for line in report.summary():
        print(line)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = drill_record(report, args.seed, profiles, args.bars, out_dir, started)
    (out_dir / DRILL_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    code = 1 if (report.violations or report.harness_errors) else 0
    manifest = write_manifest(out_dir, tree_state(), complete=True, exit_status=code)
    print(f"drill record: {out_dir / DRILL_FILE}; manifest: {manifest}")
    return code

