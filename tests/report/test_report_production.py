"""The readiness report's production start protocol section: the bot's ramp stage, the validation
figures, every red flag's last check - from the bot's own status, never guessed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from report_support import COMMIT, NOW

from bot.core.events import RED_FLAGS
from harness.report.build import write_report
from harness.report.production import BotStatusError
from tests.runtime.sim_world import World


async def _status(tmp_path: Path) -> Path:
    """A real sim trader's GET /status body after one failed check (backup_failed)."""
    (tmp_path / "bot").mkdir()
    world = World(tmp_path / "bot", profile="pets")
    await world.trader.start()
    world.trader.observe_check("monitoring_down", True, "prometheus scraped 5 s ago")
    world.trader.observe_check("backup_failed", False, "pg_dump exited 1")
    path = tmp_path / "status.json"
    path.write_text(json.dumps(world.trader.status()))
    return path


def test_the_section_shows_stage_validation_and_every_flag(gallery, tmp_path: Path) -> None:
    status = asyncio.run(_status(tmp_path))
    out = write_report(list(gallery.sets), tmp_path / "r", config_dir=gallery.config, commit=COMMIT, now=NOW,
                       bot_status=status)
    md = out.md.read_text()
    assert "Capital ramp stage **paper** (paper: no real money)" in md
    assert "red flag backup_failed raised in it" in md
    for title in RED_FLAGS.values():
        assert f"| {title} |" in md, title
    assert "| Database backup failed |" in md and "| RAISED | pg_dump exited 1 |" in md
    assert "| ok | prometheus scraped 5 s ago |" in md
    # a flag never checked says who or what checks it
    assert ("| - | never checked since the bot started; checked by the live bot's breaker self-test "
            "(red_flags.checks.breaker_self_test_s) |") in md
    assert "| - | not observed: this bot trades a futures venue and pays no gas |" in md
    assert "| pets | " in md  # the gallery's validation (a failing one) with its figures
    doc = json.loads(out.json.read_text())["production"]
    assert doc["stage"]["name"] == "paper"
    assert {r["flag"]: r["ok"] for r in doc["red_flags"]}["backup_failed"] is False
    assert doc["validation"] and doc["validation"][0]["status"] == "failed"
    html = out.html.read_text()
    assert 'id="production"' in html and "pg_dump exited 1" in html


def test_without_a_status_the_stage_is_unknown_not_guessed(gallery, tmp_path: Path) -> None:
    out = write_report(list(gallery.sets), tmp_path / "r", config_dir=gallery.config, commit=COMMIT, now=NOW)
    md = out.md.read_text()
    assert "Capital ramp stage: unknown - no bot status given" in md
    assert "no bot status given; checked by every equity update" in md
    assert json.loads(out.json.read_text())["production"]["stage"] is None


@pytest.mark.parametrize("content,needle", [("{not json", "cannot read the bot status"),
                                            ('{"trading": "active"}', "not a bot status with ramp")])
def test_a_bad_status_file_is_an_error_naming_it(gallery, tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "status.json"
    path.write_text(content)
    with pytest.raises(BotStatusError, match=needle) as err:
        write_report(list(gallery.sets), tmp_path / "r", config_dir=gallery.config, commit=COMMIT, now=NOW,
                     bot_status=path)
    assert str(path) in str(err.value)
