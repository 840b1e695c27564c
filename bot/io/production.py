"""What the production start protocol reads from outside the core: a `gameday validate` result as
evidence for a capital ramp advance, and the events that are red-flag checks.

The validation result is a file (validation.json, schema gameday.validation/v1) the bot reads by
path; the bot never imports the harness. It counts only when its verdict is pass and its
config_digest is the running policy's: a validation of other thresholds, or of another profile,
is no evidence for this one.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.core.events import Event

VALIDATION_SCHEMA = "gameday.validation/v1"


def validation_problem(path: str | None, digest: str) -> str | None:
    """None when `path` holds a passed validation of the policy with `digest`; else why not."""
    if not path:
        return "no validation result given (validation: the path of gameday validate's validation.json)"
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{path}: cannot read a validation result ({type(exc).__name__}: {exc})"
    if not isinstance(doc, dict) or doc.get("schema") != VALIDATION_SCHEMA:
        return f"{path}: not a validation result (schema {VALIDATION_SCHEMA} expected)"
    if doc.get("config_digest") != digest:
        return (f"{path}: validated config {str(doc.get('config_digest'))[:19]}, the bot runs {digest[:19]} "
                f"(profile {doc.get('profile')}): validate the policy the bot runs")
    if doc.get("verdict") != "pass":
        return f"{path}: verdict {doc.get('verdict')}: {doc.get('reason')}"
    return None


def observed_check(event: Event) -> tuple[str, bool, str] | None:
    """The red-flag check an event is, as (flag, ok, detail), or None."""
    f = event.fields
    if event.name == "credential.leak_detected":
        return ("private_key_logged", False, f"credential leak detected: key {f.get('key_id')} at {f.get('where')}")
    if event.name == "alert.failed" and f.get("fallback") is None:
        return ("alerts_not_received", False, f"alert {f.get('key')} not delivered: {f.get('channel')} failed "
                                               f"({f.get('error')}) and had no fallback left")
    if event.name == "alert.sent":
        return ("alerts_not_received", True, f"alert {f.get('key')} delivered on {f.get('channel')}")
    return None
