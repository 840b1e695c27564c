"""Operator actions, through the bot's own authenticated operator surface.

- kill_switch: engage `mode` with `reason`; `credentials` valid (the token of a principal of
  `role`, default risk_manager) | invalid (a wrong token) | missing (none at all). The actor is
  the principal the token authenticates, as in the control API.
- clear_kill_switch, manual_resume: as the Risk Manager, with valid credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.sim.constants import OPERATOR, OPERATOR_TOKEN, operator_access, operator_token

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld



def _credential(p: dict[str, Any]) -> str | None:
    return {"valid": operator_token(p.get("role", "risk_manager")), "invalid": "not-the-operator-token",
            "missing": None}[p["credentials"]]


async def kill_switch(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("kill_switch")
    p = step.params
    credential = _credential(p)
    principal = operator_access().authenticate(credential)
    actor = principal.name if principal is not None else "anonymous"
    accepted = await trader.engage_killswitch(p["mode"], p["reason"], actor, credential)
    who = f"{p['credentials']} credentials" + (f" of role {principal.role}" if principal is not None else "")
    world.notes.append(f"{step.id}: kill switch {p['mode']} with {who} {'accepted' if accepted else 'refused'}")


async def clear_kill_switch(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("clear_kill_switch")
    if not await trader.clear_killswitch(OPERATOR, OPERATOR_TOKEN):
        world.notes.append(f"{step.id}: the bot refused to clear the kill switch")


async def manual_resume(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("manual_resume")
    if not await trader.manual_resume(OPERATOR):
        world.notes.append(f"{step.id}: the bot refused the manual resume (see the audit log)")


SIM: dict[str, Any] = {"kill_switch": kill_switch, "clear_kill_switch": clear_kill_switch,
                       "manual_resume": manual_resume}
