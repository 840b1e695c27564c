"""The trader keeps the audit chain's head with every snapshot; verify uses it to find a cut log."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.io.audit_anchor import AUDIT_HMAC_KEY_NAME, main_verify
from tests.runtime.sim_world import World


def test_every_snapshot_carries_the_head_and_verify_finds_a_cut_with_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIT_HMAC_KEY_NAME, raising=False)
    world = World(tmp_path)

    async def scenario() -> None:
        await world.trader.start()
        await world.bars(3)
        await world.trader.manual_resume("ops")  # a forced save

    asyncio.run(scenario())
    log = tmp_path / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    saved = world.store.get("bot")
    head = saved["audit_head"]
    # the record just before the last state.saved is what the last snapshot anchored
    last_saved = max(i for i, r in enumerate(records) if r["action"] == "state.saved")
    assert head == {"seq": records[last_saved - 1]["seq"], "hash": records[last_saved - 1]["hash"]}
    world.store.close()
    state = str(tmp_path / "state.db")
    assert main_verify([str(log), "--state", state]) == 0
    assert "anchored up to seq" in capsys.readouterr().out
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:head["seq"] - 1]))
    assert main_verify([str(log), "--state", state]) == 1
    assert f"truncated after seq {head['seq'] - 1}" in capsys.readouterr().out
