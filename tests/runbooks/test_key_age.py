"""Key age against the rotation policy (slas.yaml key_management), on a frozen calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from bot.config import load_policy
from bot.io.key_age import key_age, rotation_report

KM = load_policy().policy.key_management
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("kind,days", [("api_key", KM.api_key_rotation_days),
                                       ("telegram_token", KM.telegram_token_rotation_days),
                                       ("db_password", KM.db_password_rotation_days)])
def test_rotation_due_at_the_policy_age_and_not_a_second_before(kind: str, days: int) -> None:
    with freeze_time(CREATED + timedelta(days=days) - timedelta(seconds=1)):
        assert not key_age("k", kind, CREATED, KM).overdue
    with freeze_time(CREATED + timedelta(days=days)):
        age = key_age("k", kind, CREATED, KM)
        assert age.overdue and "ROTATION OVERDUE" in age.line()


def test_the_policy_numbers_are_the_checklists() -> None:
    assert (KM.api_key_rotation_days, KM.telegram_token_rotation_days, KM.db_password_rotation_days) == (90, 180, 90)


@freeze_time("2026-06-01T00:00:00Z")
def test_report_lists_the_oldest_first_with_verdicts() -> None:
    report = rotation_report({"binance": ("api_key", datetime(2026, 4, 1, tzinfo=UTC)),
                              "telegram": ("telegram_token", datetime(2026, 1, 1, tzinfo=UTC)),
                              "db": ("db_password", datetime(2026, 2, 1, tzinfo=UTC))}, KM)
    assert [(a.name, a.overdue) for a in report] == [("telegram", False), ("db", True), ("binance", False)]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown credential kind 'ssh_key'"):
        key_age("k", "ssh_key", CREATED, KM)
    with pytest.raises(ValueError, match="timezone-aware"):
        key_age("k", "api_key", datetime(2026, 1, 1), KM)
