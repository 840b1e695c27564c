"""The production start protocol in the readiness report: the bot's capital ramp stage, the strategy
validation figures, and every red flag's last check.

The stage and the checks come from the bot's own status (`GET /status` on the control API, saved to a
file and given as `gameday report --bot-status FILE`): the report does not guess them. Without that
file the section says so, and every flag reads "no status given". The validation figures are those
of the validation proofs the checklist already judged (validation.json in a trusted set).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.core.events import RED_FLAGS
from bot.core.redflags import CHECKED_BY
from harness.report.readiness import Proof, Readiness

NOT_OBSERVED = {"gas_costs_high": "not observed: this bot trades a futures venue and pays no gas"}


class BotStatusError(ValueError):
    pass


@dataclass(frozen=True)
class FlagRow:
    flag: str
    title: str
    when: datetime | None
    ok: bool | None  # None: never checked (or not observed)
    detail: str


@dataclass(frozen=True)
class ProductionView:
    source: str | None  # the status file read (None: none given)
    stage: str | None = None
    stage_index: int | None = None
    max_capital_usd: float | None = None
    paper: bool | None = None
    since: datetime | None = None
    trades: int | None = None
    stage_red_flag: str | None = None
    flags: list[FlagRow] = field(default_factory=list)
    validations: list[Proof] = field(default_factory=list)


def _moment(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if isinstance(ms, int | float) else None


def load_status(path: Path) -> Mapping[str, Any]:
    """The body of GET /status as saved; BotStatusError naming the file and the fix otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BotStatusError(f"{path}: cannot read the bot status ({type(exc).__name__}: {exc}); save it with "
                             "curl -H 'Authorization: Bearer TOKEN' http://127.0.0.1:PORT/status > FILE") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ramp"), dict) or not isinstance(doc.get("red_flags"), dict):
        raise BotStatusError(f"{path}: not a bot status with ramp and red_flags (GET /status of a bot that has "
                             "them: this version or later)")
    return doc


def production_view(readiness: Readiness, status: Mapping[str, Any] | None, source: Path | None) -> ProductionView:
    proofs: dict[tuple[str, str | None], Proof] = {}
    for item in readiness.items:
        for form in item.forms:
            for proof in form.proofs:
                if proof.kind == "validation":
                    proofs.setdefault((proof.ref, proof.set_name), proof)
    validations = list(proofs.values())
    if status is None:
        rows = [FlagRow(flag, title, None, None, NOT_OBSERVED.get(flag, f"no bot status given; checked by "
                                                                       f"{CHECKED_BY.get(flag, 'nobody')}"))
                for flag, title in RED_FLAGS.items()]
        return ProductionView(None, flags=rows, validations=validations)
    ramp, checks = status["ramp"], status["red_flags"]
    rows = []
    for flag, title in RED_FLAGS.items():
        last = checks.get(flag)
        if isinstance(last, Mapping):
            rows.append(FlagRow(flag, title, _moment(last.get("ts_ms")), bool(last.get("ok")),
                                str(last.get("detail", ""))))
        else:
            rows.append(FlagRow(flag, title, None, None, NOT_OBSERVED.get(
                flag, f"never checked since the bot started; checked by {CHECKED_BY.get(flag, 'nobody')}")))
    return ProductionView(str(source) if source else None, stage=str(ramp.get("stage")),
                          stage_index=ramp.get("stage_index"), max_capital_usd=ramp.get("max_capital_usd"),
                          paper=ramp.get("paper"), since=_moment(ramp.get("since_ms")), trades=ramp.get("trades"),
                          stage_red_flag=ramp.get("red_flag"), flags=rows, validations=validations)


def production_document(view: ProductionView) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None

    return {
        "bot_status": view.source,
        "stage": None if view.stage is None else {
            "name": view.stage, "index": view.stage_index, "max_capital_usd": view.max_capital_usd,
            "paper": view.paper, "since": iso(view.since), "trades": view.trades, "red_flag": view.stage_red_flag},
        "validation": [{"profile": p.ref, "status": p.status, "summary": p.summary, "set": p.set_name,
                        "figures": [{"verdict": v, "text": t} for v, t in p.lines]} for p in view.validations],
        "red_flags": [{"flag": r.flag, "title": r.title, "last_check": iso(r.when), "ok": r.ok, "detail": r.detail}
                      for r in view.flags],
    }


def flag_word(row: FlagRow) -> str:
    return "ok" if row.ok else ("RAISED" if row.ok is False else "-")


def rows_by_state(rows: Sequence[FlagRow]) -> dict[str, int]:
    return {"ok": sum(r.ok is True for r in rows), "raised": sum(r.ok is False for r in rows),
            "unchecked": sum(r.ok is None for r in rows)}
