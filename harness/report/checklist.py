"""`config/checklist.yaml` as the report reads it: every item with the evidence it cites.

verified_by forms (HELPERS.md "Checklist"): scenarios: [ids], tests: [paths or node ids],
scans: [check names], validation: [profile names], manual: {by: role, what: text}, none: "why".
An empty verified_by cites nothing: the item is not run, and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config import ConfigError, Problem

CHECKLIST_FILE = "checklist.yaml"
LIST_FORMS = ("scenarios", "tests", "scans", "validation", "drills")
FORMS = (*LIST_FORMS, "manual", "none")
SOURCES = {"risk_safety_checklist.md": "Risk & Safety checklist",
           "pets_security_checklist.md": "PETS security checklist"}


@dataclass(frozen=True)
class Manual:
    by: str  # the role that attests
    what: str  # what the human attests


@dataclass(frozen=True)
class Item:
    id: str
    source: str
    section: str
    text: str
    refs: Mapping[str, tuple[str, ...]]  # list forms present: kind -> references
    manual: Manual | None
    none: str | None  # why no machine evidence exists yet (also set for an empty verified_by)

    @property
    def forms(self) -> tuple[str, ...]:
        kinds = [k for k in LIST_FORMS if k in self.refs]
        if self.manual is not None:
            kinds.append("manual")
        return tuple(kinds)


def load_checklist(config_dir: Path) -> list[Item]:
    path = config_dir / CHECKLIST_FILE
    if not path.is_file():
        raise ConfigError([Problem(str(path), "(file)", "file not found", str(path),
                                   "the checklist (config/checklist.yaml in the project)")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(CHECKLIST_FILE, "(syntax)", "cannot parse", " ".join(str(exc).split()),
                                   "valid YAML")]) from None
    raw_items = data.get("items") if isinstance(data, Mapping) else None
    if not isinstance(raw_items, list):
        raise ConfigError([Problem(CHECKLIST_FILE, "items", "missing or not a list", repr(raw_items)[:60],
                                   "a list of checklist items")])
    problems: list[Problem] = []
    items: list[Item] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_items):
        item = _item(raw, f"items[{n}]", problems)
        if item is None:
            continue
        if item.id in seen:
            problems.append(Problem(CHECKLIST_FILE, f"items[{n}].id", "duplicate id", item.id, "a unique id"))
        seen.add(item.id)
        items.append(item)
    if problems:
        raise ConfigError(problems)
    return items


def _item(raw: Any, where: str, problems: list[Problem]) -> Item | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(CHECKLIST_FILE, where, "wrong type", repr(raw)[:60], "a mapping"))
        return None
    fields: dict[str, str] = {}
    for key in ("id", "source", "section", "text"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(CHECKLIST_FILE, f"{where}.{key}", "missing or empty", repr(value)[:60],
                                    "a non-empty string"))
            return None
        fields[key] = value
    where = f"{where} ({fields['id']}).verified_by"
    vb = raw.get("verified_by") or {}
    if not isinstance(vb, Mapping):
        problems.append(Problem(CHECKLIST_FILE, where, "wrong type", repr(vb)[:60], "a mapping of " + ", ".join(FORMS)))
        return None
    refs: dict[str, tuple[str, ...]] = {}
    manual: Manual | None = None
    none: str | None = None
    for key, value in vb.items():
        if key in LIST_FORMS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                problems.append(Problem(CHECKLIST_FILE, f"{where}.{key}", "wrong type", repr(value)[:60],
                                        "a non-empty list of names"))
                continue
            refs[key] = tuple(value)
        elif key == "manual":
            ok = isinstance(value, Mapping) and set(value) == {"by", "what"} and all(
                isinstance(value[k], str) and value[k].strip() for k in ("by", "what"))
            if not ok:
                problems.append(Problem(CHECKLIST_FILE, f"{where}.manual", "wrong shape", repr(value)[:60],
                                        "{by: <role>, what: <what the human attests>}"))
                continue
            manual = Manual(value["by"], value["what"])
        elif key == "none":
            if not isinstance(value, str) or not value.strip():
                problems.append(Problem(CHECKLIST_FILE, f"{where}.none", "wrong type", repr(value)[:60],
                                        "a sentence: why no machine evidence exists yet"))
                continue
            none = value
        else:
            problems.append(Problem(CHECKLIST_FILE, f"{where}.{key}", "unknown form", repr(value)[:60],
                                    "one of " + ", ".join(FORMS)))
    if none is not None and (refs or manual):
        problems.append(Problem(CHECKLIST_FILE, f"{where}.none", "none beside other evidence", repr(none)[:60],
                                "none alone, or only the forms that cite evidence"))
    if not vb:
        none = "no evidence is cited for this item (verified_by is empty)"
    return Item(fields["id"], fields["source"], fields["section"], fields["text"], refs, manual, none)
