"""Key age against the rotation policy (slas.yaml key_management; risk_safety_checklist.md D1
"Key Rotation": API keys every 90 days, the Telegram token every 180 days, the DB password every
90 days). Reads the calendar (wall clock) unless `now` is given; tests freeze it with freezegun.

The bot learns when its credentials were issued from config/key_metadata.yaml (`load_key_metadata`:
name -> kind and issued date, never a secret); the live bot checks them at start and GET /status
shows each age against the bot's Clock (`ages_at`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "issued": self.created.isoformat(),
                "age_days": round(self.age_days, 2), "max_days": self.max_days, "overdue": self.overdue}

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


class KeyMetadataError(ValueError):
    pass


def load_key_metadata(path: Path) -> dict[str, tuple[str, datetime]]:
    """key_metadata.yaml: `credentials: {NAME: {kind: KIND, issued: DATE}}` -> NAME -> (kind, issued, UTC).
    A missing file is no credentials; a bad entry is a KeyMetadataError naming file, line and the fix."""
    if not path.exists():
        return {}
    try:  # composed once: the node gives the lines, the same node the data
        node = yaml.compose(path.read_text(encoding="utf-8"))
        data = None if node is None else yaml.SafeLoader("").construct_document(node)
    except (OSError, yaml.YAMLError) as exc:
        raise KeyMetadataError(f"{path}: cannot read the key metadata: {exc}") from None
    creds = data.get("credentials") if isinstance(data, dict) else None
    if creds is None or node is None:
        return {}
    if not isinstance(creds, dict):
        raise KeyMetadataError(f"{path}: credentials: expected a mapping NAME -> {{kind, issued}} (got {creds!r})")
    out: dict[str, tuple[str, datetime]] = {}
    for name, entry in creds.items():
        where = f"{path}:{_line_of(node, str(name))}: credentials.{name}"
        if not isinstance(entry, dict) or set(entry) != {"kind", "issued"}:
            got = sorted(entry) if isinstance(entry, dict) else entry
            raise KeyMetadataError(f"{where}: expected exactly kind and issued (got {got!r}); "
                                   "the secret itself never belongs here")
        kind, issued = entry["kind"], entry["issued"]
        if kind not in ROTATION_FIELDS:
            raise KeyMetadataError(f"{where}.kind: {kind!r} is not one of {', '.join(ROTATION_FIELDS)}")
        if isinstance(issued, datetime):
            if issued.tzinfo is None:
                raise KeyMetadataError(f"{where}.issued: {issued.isoformat()} has no timezone; write it with Z "
                                       "or +00:00, or as a date (YYYY-MM-DD, midnight UTC)")
            when = issued.astimezone(UTC)
        elif isinstance(issued, date):
            when = datetime(issued.year, issued.month, issued.day, tzinfo=UTC)
        else:
            raise KeyMetadataError(f"{where}.issued: expected a date YYYY-MM-DD or a timestamp with timezone "
                                   f"(got {issued!r})")
        out[str(name)] = (kind, when)
    return out


def _line_of(root: yaml.Node, name: str) -> int:
    """The 1-based line of credentials.NAME in the document (1 when it cannot be found)."""
    for key, value in getattr(root, "value", []):
        if getattr(key, "value", None) == "credentials":
            for k, _ in getattr(value, "value", []):
                if getattr(k, "value", None) == name:
                    return int(k.start_mark.line) + 1
    return 1


def ages_at(credentials: Mapping[str, tuple[str, datetime]], key_management: Any, now_ms: int) -> list[KeyAge]:
    """`rotation_report` at the bot's Clock time `now_ms` (the calendar is never read)."""
    return rotation_report(credentials, key_management, datetime.fromtimestamp(now_ms / 1000, UTC))
