"""What a sim run's exchange log says about the bot's orders (the end state's `duplicate_orders`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from bot.core.events import Event
from harness.sim.constants import HARNESS_ORDER_PREFIX, START_MS


def duplicate_orders(order_log: Sequence[dict[str, Any]], events: Sequence[Event],
                     bot_keys: Iterable[str]) -> list[str]:
    """Orders the bot sent again while an earlier order's outcome was unknown (or re-sent under the
    same client id): `order_log` is the exchange's, `events` the bot's, `bot_keys` its API keys."""
    keys = set(bot_keys)
    problems: list[str] = []
    log = [r for r in order_log if r.get("api_key") in keys
           and not str(r.get("client_id") or "").startswith(HARNESS_ORDER_PREFIX)]
    for r in log:
        if r["event"] == "rejected" and r.get("code") == -4116:
            problems.append(f"client id {r['client_id']} sent twice (-4116) at {r['ts'] - START_MS} ms")
    resolved: dict[str, int] = {}
    for e in events:
        if e.name == "order.reconciled" and e.fields.get("client_id"):
            resolved.setdefault(str(e.fields["client_id"]), e.ts_ms)
    for e in events:
        if e.name != "order.unknown":
            continue
        cid = str(e.fields.get("client_id"))
        side = str(e.fields.get("side", "")).upper()
        until = resolved.get(cid, math.inf)
        for r in log:
            if (r["event"] == "new" and r["client_id"] != cid and r.get("side") == side
                    and e.ts_ms <= r["ts"] <= until):
                problems.append(f"{r['client_id']} ({side}) sent while {cid}'s outcome was unknown")
    return problems
