"""Running one schedule in sim mode with a probe on the exchange; the trace the invariants judge."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.events import Event
from bot.core.policy import policy_value
from harness.drill.schedule import Schedule, to_scenario
from harness.scenario import (
    ScenarioError,
    resolve_all,
)
from harness.sim.constants import API_KEY, HARNESS_ORDER_PREFIX, SYMBOL
from harness.sim.runner import fast_tmp
from harness.sim.world import SimWorld


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
    scenario = to_scenario(schedule)
    bar_ms = scenario.bar_ms
    try:
        params = resolve_all(scenario, lambda path: policy_value(policy, path))  # type: ignore[arg-type,return-value]
    except ScenarioError as exc:
        return Trace([], bar_ms, 0, harness_errors=[f"params did not resolve: {exc}"])
    with tempfile.TemporaryDirectory(prefix="gameday-drill-", dir=fast_tmp()) as tmp:
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
