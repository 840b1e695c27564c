"""Each sim scenario's event stream, kept with its evidence as `events/<scenario>.jsonl`.

A reader of the evidence sees what the bot did, not only the verdict. The stream is bounded so a
100000-bar scenario does not write megabytes per run: the first `head` and the last `tail` events
of `evidence.events_head` / `evidence.events_tail` in `config/harness.yaml`, with one line in
between saying how many were left out (`{"omitted": N, "from_ts_ms": .., "to_ts_ms": ..}`, the
only line without a `name`). The file sits inside the set, so the manifest seals it like any other.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.core.events import Event
from harness.scenario import HARNESS_CONFIG

EVENTS_DIR = "events"
DEFAULT_HEAD = 200
DEFAULT_TAIL = 800


@dataclass(frozen=True)
class EventBounds:
    head: int = DEFAULT_HEAD
    tail: int = DEFAULT_TAIL


class EventBoundsError(ValueError):
    """`config/harness.yaml` holds event bounds that are not counts."""


@functools.lru_cache(maxsize=8)
def event_bounds(config_dir: Path) -> EventBounds:
    """`evidence.events_head` / `events_tail` of `<config_dir>/harness.yaml` (defaults without them)."""
    path = config_dir / HARNESS_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return EventBounds()
    section = data.get("evidence") if isinstance(data, dict) else None
    section = section if isinstance(section, dict) else {}
    counts = {}
    for key, default in (("events_head", DEFAULT_HEAD), ("events_tail", DEFAULT_TAIL)):
        value = section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EventBoundsError(f"{path}:1: evidence.{key}: expected an integer >= 0 (a count of events), "
                                   f"got {value!r}")
        counts[key] = value
    return EventBounds(counts["events_head"], counts["events_tail"])


def bounded_lines(events: Sequence[Event], bounds: EventBounds) -> list[str]:
    """The JSON lines kept of `events`: all of them when they fit, else head, the gap, tail."""
    if len(events) <= bounds.head + bounds.tail:
        kept: list[dict[str, object]] = [e.to_dict() for e in events]
    else:
        tail_start = len(events) - bounds.tail
        gap = events[bounds.head:tail_start]
        kept = [e.to_dict() for e in events[:bounds.head]]
        kept.append({"omitted": len(gap), "from_ts_ms": gap[0].ts_ms, "to_ts_ms": gap[-1].ts_ms})
        kept += [e.to_dict() for e in events[tail_start:]]
    return [json.dumps(row, sort_keys=True, default=str) for row in kept]


def write_events(set_dir: Path, scenario_id: str, events: Sequence[Event], bounds: EventBounds) -> Path:
    """Write `events/<scenario_id>.jsonl` in `set_dir`, whole or not at all (written beside, renamed):
    a worker killed mid-write leaves no torn file for the manifest to seal."""
    directory = set_dir / EVENTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario_id}.jsonl"
    tmp = directory / f".{scenario_id}.jsonl.{os.getpid()}.tmp"
    lines = bounded_lines(events, bounds)
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
    return path
