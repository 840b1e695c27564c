"""Key age against the rotation policy (slas.yaml key_management; risk_safety_checklist.md D1
"Key Rotation": API keys every 90 days, the Telegram token every 180 days, the DB password every
90 days). Reads the calendar (wall clock) unless `now` is given; tests freeze it with freezegun.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# credential kind -> its key_management field
ROTATION_FIELDS = {"api_key": "api_key_rotation_days", "telegram_token": "telegram_token_rotation_days",
                   "db_password": "db_password_rotation_days"}


@dataclass(frozen=True)
class KeyAge:
    name: str
    kind: str
    created: datetime
    age_days: float
    max_days: float

    @property
    def overdue(self) -> bool:
        """Rotation is due once the key is as old as the policy allows."""
        return self.age_days >= self.max_days

    def line(self) -> str:
        verdict = "ROTATION OVERDUE" if self.overdue else "ok"
        return (f"{self.name} ({self.kind}): {self.age_days:.1f} d old, rotate every {self.max_days:g} d: {verdict} "
                f"(created {self.created.isoformat()})")


def key_age(name: str, kind: str, created: datetime, key_management: Any, now: datetime | None = None) -> KeyAge:
    if kind not in ROTATION_FIELDS:
        raise ValueError(f"unknown credential kind {kind!r}; allowed: {', '.join(ROTATION_FIELDS)}")
    if created.tzinfo is None:
        raise ValueError(f"{name}: the creation time must be timezone-aware (got {created.isoformat()})")
    now = now or datetime.now(UTC)
    max_days = float(getattr(key_management, ROTATION_FIELDS[kind]))
    return KeyAge(name, kind, created, (now - created).total_seconds() / 86_400, max_days)


def rotation_report(credentials: Mapping[str, tuple[str, datetime]], key_management: Any,
                    now: datetime | None = None) -> list[KeyAge]:
    """Each credential (name -> (kind, created)) against its rotation period, oldest first."""
    ages = [key_age(name, kind, created, key_management, now) for name, (kind, created) in credentials.items()]
    return sorted(ages, key=lambda a: -a.age_days)
