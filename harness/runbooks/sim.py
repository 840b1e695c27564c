"""The leak watch and the credential-leak runbook in sim mode, on virtual time.

`watch_for_leaks(world)` runs the bot's leak watch (bot.io.leak_watch) over the run's work
directory at the intervals of config/leak_detection.yaml; the first finding for the bot's key
emits `credential.leak_detected{key_id, where}` on the bot's bus and starts the `credential_leak`
runbook: its automated steps run at once against the real runtime and the in-process exchange
(`SimSurface`), each timed from the detection. The watch is attached to runs that inject a
`credential_leak` fault, so the other scenarios keep their agenda (and speed) as they were.
"""

from __future__ import annotations

import dataclasses
import secrets as _random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.io.exchange import ExchangeError
from bot.io.leak_watch import KINDS, Fingerprint, LeakWatch, load_leak_config
from harness.runbooks.actions import Incident, StepFailed, run_automated
from harness.runbooks.model import load_runbook, runbooks_dir
from harness.sim.constants import P_PHASE, operator_access, operator_token
from harness.testnet.model import Order
from harness.testnet.sim import SimExchange

if TYPE_CHECKING:
    from harness.sim.world import SimWorld

RUNBOOK = "credential_leak"
AUTOMATION_ROLE = "system_admin"  # the principal the automated steps act as (config/access.yaml)


class SimSurface:
    """The automated steps' view of a sim run: the bot's runtime and the in-process exchange."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.key_id = world.api_key
        self.evidence_dir = world.workdir / "evidence"
        self.principal = next(p for p in operator_access().principals if p.role == AUTOMATION_ROLE)

    def now_ms(self) -> int:
        return self.world.now

    def emit(self, name: str, **fields: Any) -> None:
        self.world.emit(name, **fields)

    async def engage_kill_switch(self, reason: str) -> bool:
        trader = self.world.trader
        if trader is None:
            return False
        outcome = await trader.engage_killswitch("immediate", reason, self.principal.name,
                                                 operator_token(AUTOMATION_ROLE))
        return bool(outcome)

    async def killswitch_engaged(self) -> bool:
        trader = self.world.trader
        return trader is not None and trader.status()["killswitch"] == "engaged"

    async def account(self, key_id: str, *, wait_flat: bool = False) -> dict[str, Any]:
        """In virtual time a flatten has landed when the kill switch returns: nothing to wait for."""
        xe = self.world.xe
        acct = xe.accounts[key_id]
        return {"positions": [{"symbol": s, "qty": p.qty, "entry_price": p.entry_price}
                              for s, p in acct.positions.items() if p.qty],
                "open_orders": [_order(o) for s in list(xe.markets) for o in xe.open_orders(key_id, s)],
                "balances": xe.balance_summary(acct)}

    async def revoke_key(self, key_id: str) -> None:
        self.world.xe.revoke_key(key_id)

    def _client(self, key_id: str) -> SimExchange:
        return SimExchange(self.world.xe, key_id, self.world.xe.secret_of(key_id) or "", clock=self.world.clock)

    async def key_refused(self, key_id: str) -> bool:
        try:
            await self._client(key_id).fetch_balance()
        except ExchangeError as exc:
            return exc.code == -2015
        return False

    async def key_activity(self, key_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.world.xe.order_log if r.get("api_key") == key_id and r["event"] == "new"]

    def bot_client_ids(self) -> set[str]:
        return {str(e.fields["client_id"]) for e in self.world.events if e.name == "order.placed"}

    async def rotate_key(self, old_key_id: str, permissions: Mapping[str, bool]) -> str:
        new_key = f"{old_key_id.split('.r')[0]}.r{self.world.restarts + len(self.world.bot_keys)}"
        secret = f"gameday-FAKE-rotated-{_random.token_hex(8)}"
        try:
            self.world.xe.rotate_key(old_key_id, new_key, secret, permissions=permissions)
        except ValueError as exc:  # the engine refuses while the old key holds a position or orders
            raise StepFailed(str(exc)) from exc
        self.world.api_key, self.world.api_secret = new_key, secret
        self.world.bot_keys.add(new_key)
        return new_key

    async def restart_bot(self, key_id: str) -> bool:
        await self.world.stop_bot()
        self.world.restarts += 1
        return await self.world.start_bot() and self.world.api_key == key_id

    async def key_permissions(self, key_id: str) -> dict[str, Any]:
        return dataclasses.asdict(await self._client(key_id).fetch_api_restrictions())

    async def key_created(self, key_id: str) -> datetime:
        return datetime.fromtimestamp(self.world.xe.accounts[key_id].create_time / 1000, UTC)

    def key_management(self) -> Any:
        return self.world.policy.key_management


def _order(o: Order) -> dict[str, Any]:
    return {"client_id": o.client_id, "side": o.side, "type": o.type, "qty": o.qty, "price": o.price,
            "status": o.status}


def watch_for_leaks(world: SimWorld) -> None:
    if not any(s.fault == "credential_leak" for s in world.scenario.steps):
        return
    config = load_leak_config()
    watch = LeakWatch([Fingerprint.of(world.api_key, world.api_secret)], config.resolve(world.workdir),
                      root=world.workdir)
    runbook = load_runbook(runbooks_dir() / f"{RUNBOOK}.yaml", policy_tree=world.policy.model_dump())
    incidents: dict[str, Incident] = {}

    async def respond(key_id: str, where: str) -> None:
        world.emit("credential.leak_detected", key_id=key_id, where=where)
        if key_id in incidents:
            return
        incident = incidents[key_id] = Incident(runbook, world.now, f"credential leak: {where}", key_id)
        await run_automated(SimSurface(world), incident)
        world.notes.extend(incident.notes)

    def schedule(kind: str) -> None:
        async def scan() -> None:
            for finding in watch.scan(kind):
                await respond(finding.key_id, finding.to_fields()["where"])
            schedule(kind)

        world.at(world.now + config.scan_interval_ms[kind], scan, P_PHASE)

    for kind in KINDS:
        schedule(kind)

