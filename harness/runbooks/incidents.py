"""Each runbook's drill incident and the checklist items its drill covers (no imports: the checklist
resolver reads it without loading the drill machinery)."""

from __future__ import annotations

# runbook -> (the incident's fault and params, checklist items the drill covers)
INCIDENTS: dict[str, tuple[str, str, list[str]]] = {
    "credential_leak": ("credential_leak", "{where: log}", ["D3.credential_leak", "D1.key_rotation"]),
    "exchange_outage": ("exchange_outage", "{duration: 30s, scope: all}", ["D3.exchange_outage"]),
    "kill_switch": ("kill_switch", "{mode: immediate, reason: kill-switch drill}", ["C2.kill_switch"]),
}
