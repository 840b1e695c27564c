"""The invariants every drill run is checked against (harness/drill/__init__.py lists them)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from bot.core.events import Event
from bot.core.policy import HALT_ACTIONS, PAUSE_ACTIONS
from harness.drill.run import Limits, Snapshot, Trace, Violation
from harness.faults import FAULTS

CAP_TOLERANCE = 0.01  # relative: fees, slippage and mark-vs-fill between the bot's sizing and the probe
INVARIANTS = ("caps", "halt-entry", "kill-entry", "halt-exit", "breaker-sla", "duplicates", "harness-error")


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
    wanted: tuple[str, ...]
    ok_states: tuple[str, ...]
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
        bars = FAULTS[fault].drill.blinds_bars
        if injected is None or bars == 0:
            continue
        if bars is None:
            out.append((injected, math.inf))
            continue
        extra = 0
        for name in ("duration", "lag", "down_for"):
            extra += int(params.get(name) or 0)
        if params.get("retry_after"):
            extra += int(params["retry_after"]) * int(params.get("count") or 1)
        out.append((injected, injected + extra + bars * trace.bar_ms))
    return out


def _excused(windows: list[tuple[int, float]], start: int, end: int) -> bool:
    return any(a <= end and b >= start for a, b in windows)
