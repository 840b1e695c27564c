"""The scenario-format doc lists exactly the fault kinds the loader accepts."""

from __future__ import annotations

import re
from pathlib import Path

from harness.scenario import FAULTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def test_fault_catalog_doc_matches_the_loader() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z]+) \|", DOC.read_text(), flags=re.M)
    assert {kind: family for kind, family in rows} == {k: f.family for k, f in FAULTS.items()}
