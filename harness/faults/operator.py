"""Operator actions, through the bot's own authenticated operator surface.

- kill_switch: engage `mode` with `reason`; `credentials` valid (the token of a principal of
  `role`, default risk_manager) | invalid (a wrong token) | missing (none at all). The actor is
  the principal the token authenticates, as in the control API.
- clear_kill_switch: `credentials` and `role` as for kill_switch (default: the Risk Manager's valid
  token); a clear refused for its credentials counts as an unauthorized attempt.
- manual_resume: as the Risk Manager, with valid credentials.
- ramp_advance: the Risk Manager asks to move to the next capital ramp stage, with `validation`
  passed | failed | other_config (a passed result for another policy) | missing (no path given):
  the step writes that validation result (gameday.validation/v1) and hands the bot its path. The
  bot's own checks (min_days, min_trades, red flags, the validation) decide; `ramp.advanced` or
  `ramp.refused` says what they decided.

sim: the running Trader's own operator methods, authenticated by the bot's access config. net: the
bot's control API (Bearer token); with the bot down, the kill switch goes through the standalone
CLI (`python -m bot killswitch`), which works without the bot process; a resume needs the bot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import policy_digest
from bot.io.production import VALIDATION_SCHEMA
from harness.faults.contract import DrillFacts, FaultError, Injected, kind
from harness.faults.contract import ParamSpec as P
from harness.net.bot_process import ControlClient
from harness.net.inject import now_ms
from harness.sim.constants import OPERATOR, operator_access, operator_token

if TYPE_CHECKING:
    from bot.io.access import Principal
    from harness.net.runner import NetRun
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld


def _credential(p: dict[str, Any]) -> tuple[str | None, Principal | None]:
    """The step's token and the principal it authenticates (None: invalid or missing)."""
    token = {"valid": operator_token(p.get("role", "risk_manager")), "invalid": "not-the-operator-token",
             "missing": None}[p["credentials"]]
    return token, operator_access().authenticate(token)


async def kill_switch(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("kill_switch")
    p = step.params
    credential, principal = _credential(p)
    actor = principal.name if principal is not None else "anonymous"
    accepted = await trader.engage_killswitch(p["mode"], p["reason"], actor, credential)
    who = f"{p['credentials']} credentials" + (f" of role {principal.role}" if principal is not None else "")
    world.notes.append(f"{step.id}: kill switch {p['mode']} with {who} {'accepted' if accepted else 'refused'}")


async def clear_kill_switch(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("clear_kill_switch")
    p = step.params
    credential, principal = _credential(p)
    actor = principal.name if principal is not None else "anonymous"
    if not await trader.clear_killswitch(actor, credential):
        world.notes.append(f"{step.id}: the bot refused to clear the kill switch ({p['credentials']} credentials)")


async def manual_resume(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("manual_resume")
    if not await trader.manual_resume(OPERATOR):
        world.notes.append(f"{step.id}: the bot refused the manual resume (see the audit log)")


def _validation_result(folder: Path, step_id: str, kind: str, digest: str) -> str | None:
    """Write the validation result a ramp_advance step hands the bot; its path (None: `missing`)."""
    if kind == "missing":
        return None
    verdict, reason = ("fail", "gameday: win rate 0.41 < min_win_rate 0.60") if kind == "failed" else ("pass", "")
    doc = {"schema": VALIDATION_SCHEMA, "profile": "gameday-step", "verdict": verdict, "reason": reason,
           "config_digest": digest if kind != "other_config" else "sha256:" + "0" * 64}
    path = folder / f"validation-{step_id}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


async def ramp_advance(world: SimWorld, step: ActiveStep) -> None:
    trader = world.require_trader("ramp_advance")
    path = _validation_result(world.workdir, step.id, step.params["validation"], policy_digest(trader.policy))
    outcome = await trader.advance_ramp(OPERATOR, path)
    world.notes.append(f"{step.id}: ramp advance {'accepted' if outcome.accepted else 'refused'}: {outcome.reason}")


def kill_switch_net(run: NetRun, p: dict[str, Any]) -> Injected:
    token = _net_credential(run, p)
    body = {"mode": p["mode"], "reason": p["reason"]}
    sent = now_ms()  # the call returns after the bot acted: the SLA clock starts when it is sent
    if run.bot.alive():
        response = run.control.post("/killswitch", body, token)
        if response.status_code not in (200, 401, 403):
            raise FaultError(f"control API POST /killswitch answered {ControlClient.outcome(response)}")
        return Injected(sent, notes=[f"kill switch via control API: {ControlClient.outcome(response)}"])
    return Injected(sent, notes=[run.killswitch_cli(["--mode", p["mode"], "--reason", p["reason"]], token)])


def _net_credential(run: NetRun, p: dict[str, Any]) -> str | None:
    return {"valid": run.tokens[p.get("role", "risk_manager")], "invalid": "not-the-token",
            "missing": None}[p["credentials"]]


def clear_kill_switch_net(run: NetRun, p: dict[str, Any]) -> Injected:
    token = _net_credential(run, p)
    if run.bot.alive():
        response = run.control.post("/killswitch/clear", {}, token)
        # refused credentials are the bot's answer the scenario judges; anything else is no clear at all
        expected = (200,) if p["credentials"] == "valid" else (200, 401, 403)
        if response.status_code not in expected:
            raise FaultError(f"control API clear answered {ControlClient.outcome(response)}")
        return Injected(now_ms(), notes=[f"kill switch clear via control API: {ControlClient.outcome(response)}"])
    return Injected(now_ms(), notes=[run.killswitch_cli(["--clear"], token)])


def manual_resume_net(run: NetRun, p: dict[str, Any]) -> Injected:
    if not run.bot.alive():
        raise FaultError("manual_resume needs the running bot's control API; the bot is down")
    response = run.control.post("/resume", {}, run.token)
    if response.status_code not in (200, 409):
        raise FaultError(f"control API /resume answered {ControlClient.outcome(response)}")
    return Injected(now_ms(), notes=[f"resume: {ControlClient.outcome(response)}"])


def ramp_advance_net(run: NetRun, p: dict[str, Any]) -> Injected:
    if not run.bot.alive():
        raise FaultError("ramp_advance needs the running bot's control API; the bot is down")
    if run.policy is None:
        raise FaultError("ramp_advance needs the policy the bot runs (its digest names the validated config)")
    path = _validation_result(run.run_dir, "net", p["validation"], policy_digest(run.policy))
    response = run.control.post("/ramp/advance", {"validation": path} if path is not None else {},
                                run.tokens["risk_manager"])
    if response.status_code not in (200, 409):  # 409: the bot refused the advance, the scenario's to judge
        raise FaultError(f"control API POST /ramp/advance answered {ControlClient.outcome(response)}")
    return Injected(now_ms(), notes=[f"ramp advance via control API: {ControlClient.outcome(response)}"])


KILL = "C2.kill_switch"
CREDENTIALS = P("enum", required=False, default="valid", choices=("valid", "invalid", "missing"))
# whose valid credentials: a principal of this role (config/access.yaml)
ROLE = P("enum", required=False, default="risk_manager",
         choices=("system_admin", "risk_manager", "trading_ops", "quant_analyst", "auditor"))
KINDS = (
    kind("kill_switch", "operator", "an operator engages the kill switch (`credentials: valid` are those of a "
         "principal with `role`, default `risk_manager`; a role without the `killswitch` permission is rejected)",
         sim=kill_switch, net=kill_switch_net,
         mode=P("enum", choices=("immediate", "graceful", "pause")),
         reason=P("str", required=False, default="gameday drill"),
         credentials=CREDENTIALS, role=ROLE, drill=DrillFacts(KILL)),
    kind("clear_kill_switch", "operator", "an operator clears the kill switch (`credentials` and `role` as for "
         "`kill_switch`: a clear refused for its credentials is an unauthorized attempt)", sim=clear_kill_switch,
         net=clear_kill_switch_net, credentials=CREDENTIALS, role=ROLE, drill=DrillFacts(KILL)),
    kind("manual_resume", "operator", "an operator resumes trading", sim=manual_resume, net=manual_resume_net,
         drill=DrillFacts("C2")),
    kind("ramp_advance", "operator", "the Risk Manager asks to move to the next capital ramp stage, handing the "
         "bot a `validation` result: passed, failed, other_config (passed, for another policy) or missing",
         sim=ramp_advance, net=ramp_advance_net,
         validation=P("enum", required=False, default="passed",
                      choices=("passed", "failed", "other_config", "missing")),
         drill=DrillFacts("PETS.start_protocol")),
)
