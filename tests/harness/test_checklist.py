"""config/checklist.yaml and the scenarios' `covers:` tell the same story, both ways."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_checklist_scenario_exists_and_every_covers_is_listed() -> None:
    items = yaml.safe_load((ROOT / "config" / "checklist.yaml").read_text())["items"]
    ids = sorted((i["id"] for i in items), key=len, reverse=True)
    listed = {i["id"]: set((i.get("verified_by") or {}).get("scenarios") or []) for i in items}
    covered: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / "scenarios").rglob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        for cited in doc.get("covers", []):
            item = next(i for i in ids if cited == i or cited.startswith(i + "."))
            covered[item].add(doc["scenario"])
    problems = [f"{item}: listed but not covering it: {sorted(listed[item] - covered[item])}; covering it but "
                f"not listed: {sorted(covered[item] - listed[item])}"
                for item in listed if listed[item] != covered[item]]
    assert not problems, "\n".join(problems)
