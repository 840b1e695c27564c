"""Operator actions, through the bot's own authenticated operator surface.

- kill_switch: engage `mode` with `reason`; `credentials` valid | invalid (a wrong token) |
  missing (none at all).
- clear_kill_switch, manual_resume: with valid credentials.
"""

from __future__ import annotations

from typing import Any

from harness.runner import OPERATOR, OPERATOR_TOKEN, ActiveStep, SimWorld

CREDENTIALS: dict[str, str | None] = {"valid": OPERATOR_TOKEN, "invalid": "not-the-operator-token",
                                      "missing": None}


async def kill_switch(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("kill_switch")
    p = step.params
    accepted = await trader.engage_killswitch(p["mode"], p["reason"], OPERATOR, CREDENTIALS[p["credentials"]])
    world.notes.append(f"{step.id}: kill switch {p['mode']} with {p['credentials']} credentials "
                       f"{'accepted' if accepted else 'refused'}")


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
