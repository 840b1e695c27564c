"""The leak watch and the credential-leak runbook in net mode, against the real stack.

`NetLeakWatch(run)` is the watcher beside the live bot: a thread that reads the run's places (the
config's `logs`, `repo`, `paste` under the run directory) at the configured intervals times the
run's time scale. The first finding for the bot's key starts the `credential_leak` runbook's
automated steps through `NetSurface`: the kill switch through the bot's control API (as the run's
System Admin principal), the key revoked and a restricted replacement created through the
testnet's admin API, signed calls made with ccxt over HTTP to prove a key refused, and the bot
process restarted with the new key. What the watch and the steps announce
(`credential.leak_detected`, `credential.revoked`, `credential.rotated`, `runbook.step_done`) joins
the bot's own events in the run's record, on the same wall clock.
"""

from __future__ import annotations

import asyncio
import secrets as _random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ccxt

from bot.core.events import Event
from bot.io.leak_watch import KINDS, Fingerprint, LeakWatch, load_leak_config
from harness.runbooks.actions import Incident, run_automated
from harness.runbooks.model import load_runbook, runbooks_dir
from harness.runbooks.sim import AUTOMATION_ROLE, RUNBOOK
from harness.testnet.ccxt_client import make_ccxt_client
from harness.testnet.model import PERMISSION_NAMES

if TYPE_CHECKING:
    from harness.net.runner import NetRun

FLAT_TIMEOUT_S = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class NetSurface:
    def __init__(self, run: NetRun, events: list[Event]) -> None:
        self.run = run
        self.events = events
        self.key_id = run.api_key
        self.evidence_dir = run.run_dir / "evidence"
        self.lock = threading.Lock()
        self._secrets: dict[str, str] = {}  # the replacement keys' secrets, in memory only

    def now_ms(self) -> int:
        return now_ms()

    def emit(self, name: str, **fields: Any) -> None:
        with self.lock:
            self.events.append(Event(name, now_ms(), fields))

    async def engage_kill_switch(self, reason: str) -> bool:
        response = self.run.control.post("/killswitch", {"mode": "immediate", "reason": reason},
                                         self.run.tokens[AUTOMATION_ROLE])
        return response.status_code == 200

    async def killswitch_engaged(self) -> bool:
        return str(self.run.control.status().get("killswitch")) == "engaged"

    async def account(self, key_id: str, *, wait_flat: bool = False) -> dict[str, Any]:
        deadline = time.monotonic() + FLAT_TIMEOUT_S
        while True:
            snapshot = self._account(key_id)
            flat = not snapshot["positions"] and not snapshot["open_orders"]
            if not wait_flat or flat or time.monotonic() > deadline:
                return snapshot
            await asyncio.sleep(0.1)

    def _account(self, key_id: str) -> dict[str, Any]:
        row = next(a for a in self.run.stack.admin("keys", method="GET") if a["api_key"] == key_id)
        testnet = self.run.stack.testnet
        assert testnet is not None
        engine = testnet.handle.engine
        orders = testnet.call(lambda: [{"client_id": o.client_id, "side": o.side, "type": o.type, "qty": o.qty,
                                        "price": o.price, "status": o.status}
                                       for s in list(engine.markets) for o in engine.open_orders(key_id, s)])
        positions = [{"symbol": s, **p} for s, p in row.get("positions", {}).items()]
        balances = {k: v for k, v in row.items() if k not in ("api_key", "revoked", "permissions", "ip_allowlist",
                                                               "positions")}
        return {"positions": positions, "open_orders": orders, "balances": balances}

    async def revoke_key(self, key_id: str) -> None:
        self.run.stack.admin("keys/revoke", {"api_key": key_id})

    async def key_refused(self, key_id: str) -> bool:
        secret = self.run.secret if key_id == self.run.api_key else self._secrets.get(key_id, "")
        client = make_ccxt_client(self.run.stack.direct_rest_url, self.run.stack.bot_ws_url, key_id, secret,
                                  async_=False, enable_rate_limit=False)
        try:
            client.fetch_balance()
        except (ccxt.AuthenticationError, ccxt.PermissionDenied):
            return True
        return False

    async def key_activity(self, key_id: str) -> list[dict[str, Any]]:
        testnet = self.run.stack.testnet
        assert testnet is not None
        engine = testnet.handle.engine
        return testnet.call(lambda: [dict(r) for r in engine.order_log
                                     if r.get("api_key") == key_id and r["event"] == "new"])

    def bot_client_ids(self) -> set[str]:
        return {str(e.fields["client_id"]) for e in self.run.follower.snapshot() if e.name == "order.placed"}

    async def rotate_key(self, old_key_id: str, permissions: Mapping[str, bool]) -> str:
        new_key = f"gameday-{_random.token_hex(4)}"
        secret = _random.token_hex(16)
        self.run.stack.admin("keys/rotate", {"api_key": old_key_id, "new_api_key": new_key, "secret": secret,
                                             "permissions": dict(permissions)})
        self._secrets[new_key] = secret
        return new_key

    async def restart_bot(self, key_id: str) -> bool:
        run = self.run
        run.bot.stop()
        run.bot.env = {**run.bot.env, "GAMEDAY_API_KEY": key_id, "GAMEDAY_API_SECRET": self._secrets[key_id]}
        run.restart_bot()
        return run.bot.alive()

    async def key_permissions(self, key_id: str) -> dict[str, Any]:
        row = next(a for a in self.run.stack.admin("keys", method="GET") if a["api_key"] == key_id)
        return {field: row["permissions"][binance] for field, binance in PERMISSION_NAMES.items()}

    async def key_created(self, key_id: str) -> datetime:
        testnet = self.run.stack.testnet
        assert testnet is not None
        engine = testnet.handle.engine
        created = testnet.call(lambda: engine.accounts[key_id].create_time)
        return datetime.fromtimestamp(created / 1000, UTC)

    def key_management(self) -> Any:
        return self.run.policy.key_management


class NetLeakWatch:
    """The watch thread of one net run; `events` is what it and the runbook announced."""

    def __init__(self, run: NetRun) -> None:
        self.run = run
        self.config = load_leak_config()
        self.watch = LeakWatch([Fingerprint.of(run.api_key, run.secret)], self.config.resolve(run.run_dir),
                               root=run.run_dir)
        self.runbook = load_runbook(runbooks_dir() / f"{RUNBOOK}.yaml", policy_tree=run.policy.model_dump())
        self.events: list[Event] = []
        self.notes: list[str] = []
        self.surface = NetSurface(run, self.events)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gameday-leak-watch", daemon=True)
        self._incident: Incident | None = None
        self.responded = threading.Event()  # the automated steps of the first incident have run

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def snapshot(self) -> list[Event]:
        with self.surface.lock:
            return list(self.events)

    def _loop(self) -> None:
        interval = {k: max(1, round(self.config.scan_interval_ms[k] * self.run.scale)) for k in KINDS}
        due = {k: now_ms() + interval[k] for k in KINDS}
        while not self._stop.is_set():
            for kind in KINDS:
                if now_ms() < due[kind]:
                    continue
                due[kind] = now_ms() + interval[kind]
                for finding in self.watch.scan(kind):
                    self._respond(finding.key_id, finding.to_fields()["where"])
            self._stop.wait(max(0.0, (min(due.values()) - now_ms()) / 1000))

    def _respond(self, key_id: str, where: str) -> None:
        self.surface.emit("credential.leak_detected", key_id=key_id, where=where)
        if self._incident is not None:
            return
        self._incident = Incident(self.runbook, now_ms(), f"credential leak: {where}", key_id)
        try:
            asyncio.run(run_automated(self.surface, self._incident))
        except Exception as exc:  # a broken step must not kill the watch: the record says what happened
            self._incident.notes.append(f"the runbook stopped: {type(exc).__name__}: {exc}")
        self.notes.extend(self._incident.notes)
        self.responded.set()

    @property
    def incident(self) -> Incident | None:
        return self._incident
