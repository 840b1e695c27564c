"""The automated runbook steps, and the executor that runs and times them.

An action acts on the incident through a `Surface`: the bot's operator surface and the venue's
admin surface, in sim mode (harness.runbooks.sim) or against the local testnet. Each action checks
its own result (the runbook's `verify:`) and raises `StepFailed` with the reason when it does not
hold. The executor runs a runbook's automated steps in order, from the incident's start, and emits
`runbook.step_done{runbook, step, elapsed_ms, actor}` for each step done. A failed step does not
stop the steps after it: revoking a leaked key must not wait on a kill switch that failed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bot.io.exchange import ExchangeError
from bot.io.key_age import key_age
from harness.runbooks.model import AUTOMATED, Runbook


class StepFailed(Exception):
    """The step ran and its verification did not hold (or it could not run)."""


class Surface(Protocol):
    """What the automated steps may touch: the bot and the venue."""

    key_id: str  # the API key the bot trades on now
    evidence_dir: Path

    def now_ms(self) -> int: ...
    def emit(self, name: str, **fields: Any) -> None: ...
    async def engage_kill_switch(self, reason: str) -> bool: ...
    async def killswitch_engaged(self) -> bool: ...
    # positions, open_orders, balances; wait_flat: give a flatten in flight a bounded time to land
    async def account(self, key_id: str, *, wait_flat: bool = False) -> dict[str, Any]: ...
    async def revoke_key(self, key_id: str) -> None: ...
    async def key_refused(self, key_id: str) -> bool: ...
    async def key_activity(self, key_id: str) -> list[dict[str, Any]]: ...  # the venue's order log
    def bot_client_ids(self) -> set[str]: ...  # what the bot announced (order.placed)
    async def rotate_key(self, old_key_id: str, permissions: Mapping[str, bool]) -> str: ...
    async def restart_bot(self, key_id: str) -> bool: ...
    async def key_permissions(self, key_id: str) -> dict[str, Any]: ...
    async def key_created(self, key_id: str) -> datetime: ...
    def key_management(self) -> Any: ...  # slas.yaml key_management


# The replacement key's restrictions (risk_safety_checklist.md D1 "API Key Restrictions").
RESTRICTED = {"enable_reading": True, "enable_futures": True, "enable_withdrawals": False,
              "enable_internal_transfer": False, "permits_universal_transfer": False, "ip_restrict": True}


@dataclass
class Incident:
    runbook: Runbook
    started_ms: int
    reason: str
    key_id: str  # the key the incident is about
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # evidence the steps wrote


Action = Callable[[Surface, Incident], Awaitable[str]]


async def engage_kill_switch(s: Surface, inc: Incident) -> str:
    if not await s.engage_kill_switch(inc.reason):
        raise StepFailed("the bot refused the kill switch")
    if not await s.killswitch_engaged():
        raise StepFailed("the bot accepted the kill switch but does not report it engaged")
    return "kill switch engaged (immediate)"


async def confirm_flat(s: Surface, inc: Incident) -> str:
    acct = await s.account(s.key_id, wait_flat=True)
    open_positions = [p for p in acct["positions"] if abs(float(p["qty"])) > 1e-12]
    if open_positions or acct["open_orders"]:
        raise StepFailed(f"the account is not flat: positions {open_positions}, open orders {acct['open_orders']}")
    return "no position and no open order on the account"


async def revoke_key(s: Surface, inc: Incident) -> str:
    await s.revoke_key(inc.key_id)
    if not await s.key_refused(inc.key_id):
        raise StepFailed(f"key {inc.key_id} was revoked but a signed call with it still succeeds")
    s.emit("credential.revoked", key_id=inc.key_id)
    return f"key {inc.key_id} disabled; a signed call with it is refused"


async def snapshot_account(s: Surface, inc: Incident) -> str:
    acct = await s.account(inc.key_id)
    path = _write(s, inc, f"{inc.runbook.id}-snapshot.json", {"key_id": inc.key_id, "ts_ms": s.now_ms(), **acct})
    return f"positions, orders and balances in {path.name}"


async def list_foreign_activity(s: Surface, inc: Incident) -> str:
    ours = s.bot_client_ids()
    activity = await s.key_activity(inc.key_id)
    foreign = [r for r in activity if r.get("client_id") not in ours]
    path = _write(s, inc, f"{inc.runbook.id}-foreign-activity.json",
                  {"key_id": inc.key_id, "records": len(activity), "foreign": foreign})
    return f"{len(foreign)} of {len(activity)} order-log records on the key not caused by the bot ({path.name})"


async def rotate_key(s: Surface, inc: Incident) -> str:
    old = s.key_id
    new = await s.rotate_key(old, RESTRICTED)
    if not await s.restart_bot(new):
        raise StepFailed(f"the bot did not start on the new key {new}")
    s.key_id = new
    s.emit("credential.rotated", key_id=new)
    return f"new key {new} installed; the bot restarted on it"


async def verify_key_restrictions(s: Surface, inc: Incident) -> str:
    perms = await s.key_permissions(s.key_id)
    wrong = {k: perms.get(k) for k, v in RESTRICTED.items() if perms.get(k) is not v}
    if wrong:
        raise StepFailed(f"key {s.key_id} restrictions do not hold: {wrong} (wanted {RESTRICTED})")
    if s.key_id != inc.key_id and not await s.key_refused(inc.key_id):
        raise StepFailed(f"the leaked key {inc.key_id} is accepted again")
    age = key_age(s.key_id, "api_key", await s.key_created(s.key_id), s.key_management(),
                  datetime.fromtimestamp(s.now_ms() / 1000, UTC))
    if age.overdue:
        raise StepFailed(f"the replacement key is already due for rotation: {age.line()}")
    return f"key {s.key_id}: no withdrawals, IP restricted, futures only; the leaked key stays refused; {age.line()}"


def _write(s: Surface, inc: Incident, name: str, body: Mapping[str, Any]) -> Path:
    s.evidence_dir.mkdir(parents=True, exist_ok=True)
    path = s.evidence_dir / name
    path.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    inc.files.append(path)
    return path


ACTIONS: dict[str, Action] = {
    "engage_kill_switch": engage_kill_switch, "confirm_flat": confirm_flat, "revoke_key": revoke_key,
    "snapshot_account": snapshot_account, "list_foreign_activity": list_foreign_activity,
    "rotate_key": rotate_key, "verify_key_restrictions": verify_key_restrictions,
}
ACTION_NAMES = frozenset(ACTIONS)


@dataclass(frozen=True)
class StepResult:
    step: str
    actor: str
    elapsed_ms: int
    ok: bool
    detail: str


async def run_automated(s: Surface, inc: Incident) -> list[StepResult]:
    """Run the runbook's automated steps in order; emit runbook.step_done for each that held."""
    results = []
    for step in inc.runbook.steps:
        if step.actor != AUTOMATED or step.action is None:
            continue
        try:
            detail, ok = await ACTIONS[step.action](s, inc), True
        except StepFailed as exc:
            detail, ok = str(exc), False
        except ExchangeError as exc:  # the venue refused the step (a revoked key, an outage): it failed, go on
            detail, ok = f"the exchange refused: {exc}", False
        elapsed = s.now_ms() - inc.started_ms
        if ok:
            s.emit("runbook.step_done", runbook=inc.runbook.id, step=step.id, elapsed_ms=elapsed, actor=AUTOMATED)
        inc.notes.append(f"{inc.runbook.id}.{step.id} ({AUTOMATED}) at {elapsed} ms: "
                         f"{'done' if ok else 'FAILED'}: {detail}")
        results.append(StepResult(step.id, AUTOMATED, elapsed, ok, detail))
    return results
