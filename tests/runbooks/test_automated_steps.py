"""The automated steps: a failed step is reported and does not stop the ones after it; the
exchange refuses to rotate a key that still holds exposure; a foreign order is listed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_policy
from bot.core.clock import VirtualClock
from bot.io.exchange import AuthError
from harness.runbooks.actions import Incident, run_automated
from harness.runbooks.model import load_runbooks
from harness.testnet.engine import Engine

START = 1_767_571_200_000


class RefusingBot:
    """The venue behaves; the bot refuses the kill switch (the error path under test)."""

    def __init__(self, tmp: Path) -> None:
        self.key_id = "k1"
        self.evidence_dir = tmp
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.revoked: set[str] = set()

    def now_ms(self) -> int:
        return START

    def emit(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))

    async def engage_kill_switch(self, reason: str) -> bool:
        return False

    async def killswitch_engaged(self) -> bool:
        return False

    async def account(self, key_id: str, *, wait_flat: bool = False) -> dict[str, Any]:
        return {"positions": [{"symbol": "BTCUSDT", "qty": 0.1, "entry_price": 1.0}], "open_orders": [],
                "balances": {}}

    async def revoke_key(self, key_id: str) -> None:
        self.revoked.add(key_id)

    async def key_refused(self, key_id: str) -> bool:
        return key_id in self.revoked

    async def key_activity(self, key_id: str) -> list[dict[str, Any]]:
        return [{"client_id": "bot-1"}, {"client_id": "mallory-1"}]

    def bot_client_ids(self) -> set[str]:
        return {"bot-1"}

    async def rotate_key(self, old_key_id: str, permissions: Mapping[str, bool]) -> str:
        raise AssertionError("not reached in this test")

    async def restart_bot(self, key_id: str) -> bool:
        return False

    async def key_permissions(self, key_id: str) -> dict[str, Any]:
        return {}

    async def key_created(self, key_id: str) -> datetime:
        return datetime.fromtimestamp(START / 1000, UTC)

    def key_management(self) -> Any:
        return load_policy().policy.key_management


def test_a_refused_kill_switch_does_not_stop_the_key_being_disabled(tmp_path: Path) -> None:
    book = load_runbooks()["credential_leak"]
    steps = [s for s in book.steps if s.id in ("kill_switch", "flatten", "disable_key", "api_history")]
    book = type(book)(book.id, book.title, book.severity, book.response_ms, book.phases, tuple(steps), book.file)
    surface = RefusingBot(tmp_path)
    incident = Incident(book, START, "leak", "k1")
    results = asyncio.run(run_automated(surface, incident))
    assert [(r.step, r.ok) for r in results] == [("kill_switch", False), ("flatten", False), ("disable_key", True),
                                                 ("api_history", True)]
    done = [f["step"] for n, f in surface.events if n == "runbook.step_done"]
    assert done == ["disable_key", "api_history"]
    assert ("credential.revoked", {"key_id": "k1"}) in surface.events
    assert any("FAILED: the bot refused the kill switch" in n for n in incident.notes)
    assert '"mallory-1"' in (tmp_path / "credential_leak-foreign-activity.json").read_text()
    assert '"bot-1"' not in (tmp_path / "credential_leak-foreign-activity.json").read_text()


def test_the_exchange_refuses_to_rotate_a_key_with_exposure() -> None:
    xe = Engine(VirtualClock(START), seed=1, start_prices={"BTCUSDT": 60000.0})
    xe.create_key("old", "old-secret-0000")
    xe.place_order("old", "BTCUSDT", "BUY", "MARKET", 0.01)
    with pytest.raises(ValueError, match="still has positions or open orders"):
        xe.rotate_key("old", "new", "new-secret-0000")
    xe.place_order("old", "BTCUSDT", "SELL", "MARKET", 0.01, reduce_only=True)
    wallet = xe.accounts["old"].wallet
    new = xe.rotate_key("old", "new", "new-secret-0000", permissions={"enable_withdrawals": False})
    assert new.wallet == wallet and xe.accounts["old"].revoked and xe.accounts["old"].wallet == 0.0


class RevokedKeyVenue(RefusingBot):
    """The leaked key is revoked and the rotation was refused (the position could not be closed):
    reading the key's restrictions is an authentication error from the venue."""

    async def key_permissions(self, key_id: str) -> dict[str, Any]:
        raise AuthError("HTTP 401 code -2015: Invalid API-key, IP, or permissions for action.")


def test_an_exchange_error_in_a_step_fails_that_step_and_the_incident_goes_on(tmp_path: Path) -> None:
    book = load_runbooks()["credential_leak"]
    steps = [s for s in book.steps if s.id in ("verify_restrictions", "api_history")]
    steps.reverse()  # the failing step first: the one after it must still run
    book = type(book)(book.id, book.title, book.severity, book.response_ms, book.phases, tuple(steps), book.file)
    incident = Incident(book, START, "leak", "k1")
    results = asyncio.run(run_automated(RevokedKeyVenue(tmp_path), incident))
    assert [(r.step, r.ok) for r in results] == [("verify_restrictions", False), ("api_history", True)]
    assert "-2015" in results[0].detail
    assert any("FAILED: the exchange refused: HTTP 401" in n for n in incident.notes)
