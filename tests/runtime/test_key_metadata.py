"""Credential ages from config/key_metadata.yaml: checked at the trader's start and shown in its status,
on the bot's Clock (a VirtualClock here: no calendar is read), at the rotation limit and just below."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.io.key_age import KeyMetadataError, load_key_metadata
from tests.runtime.sim_world import World

DAY_MS = 86_400_000
START_MS = 1_767_571_200_000  # sim_world's VirtualClock start


def _metadata(tmp_path: Path, days_old: dict[str, float]) -> Path:
    kinds = {"telegram": "telegram_token", "redis": "db_password"}
    lines = ["credentials:"]
    for name, days in days_old.items():
        issued = datetime.fromtimestamp((START_MS - days * DAY_MS) / 1000, UTC).isoformat()
        lines.append(f"  {name}: {{kind: {kinds[name]}, issued: {issued}}}")
    path = tmp_path / "key_metadata.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name,limit", [("telegram", 180), ("redis", 90)])
@pytest.mark.parametrize("offset,overdue", [(-1, False), (0, True), (1, True)])
async def test_a_credential_at_its_rotation_limit_is_overdue_and_one_day_younger_is_not(
        tmp_path: Path, name: str, limit: int, offset: int, overdue: bool) -> None:
    world = World(tmp_path)
    world.trader.key_issued = load_key_metadata(_metadata(tmp_path, {name: limit + offset}))
    await world.trader.start()
    [age] = world.trader.status()["key_age"]
    assert (age["name"], age["max_days"], age["age_days"], age["overdue"]) == (name, limit, limit + offset, overdue)
    alerts = [e for e in world.of("bot.alert") if e.fields["key"] == f"key.rotation_overdue.{name}"]
    assert bool(alerts) is overdue
    if overdue:
        assert alerts[0].fields["severity"] == "warning" and "ROTATION OVERDUE" in alerts[0].fields["title"]


async def test_status_ages_follow_the_bots_clock(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.trader.key_issued = load_key_metadata(_metadata(tmp_path, {"redis": 89}))
    await world.trader.start()
    assert world.trader.status()["key_age"][0]["overdue"] is False and not world.of("bot.alert")
    world.clock.advance(DAY_MS)  # day 90: due now, seen in status without a restart
    assert world.trader.status()["key_age"][0]["overdue"] is True


@pytest.mark.parametrize("text,needle", [
    ("credentials:\n  tg: {kind: telegram_token, issued: 2026-01-01, token: abc}\n",
     "key_metadata.yaml:2: credentials.tg"),
    ("credentials:\n  tg: {kind: ssh_key, issued: 2026-01-01}\n", "is not one of api_key, telegram_token, db_password"),
    ("credentials:\n  tg: {kind: telegram_token, issued: 2026-01-01T10:00:00}\n", "has no timezone"),
    ("credentials:\n  tg: {kind: telegram_token, issued: soon}\n", "expected a date YYYY-MM-DD"),
])
def test_a_bad_metadata_entry_names_the_file_line_and_the_fix(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "key_metadata.yaml"
    path.write_text(text)
    with pytest.raises(KeyMetadataError, match="key_metadata.yaml") as err:
        load_key_metadata(path)
    assert needle in str(err.value)


def test_the_shipped_file_holds_dates_only_and_a_missing_file_is_no_credentials(tmp_path: Path) -> None:
    assert load_key_metadata(Path(__file__).parents[2] / "config" / "key_metadata.yaml") == {}
    assert load_key_metadata(tmp_path / "absent.yaml") == {}
