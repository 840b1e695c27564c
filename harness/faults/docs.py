"""docs/scenarios.md's fault table, generated from the catalog (`gameday docs`; `--check` fails
when the committed table is not what the catalog says)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.faults import FAULTS
from harness.faults.contract import MODES, FaultKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
BEGIN = "<!-- fault table: generated from harness/faults by `gameday docs`; edit the catalog, not this -->"
END = "<!-- end of the generated fault table -->"


def _params(k: FaultKind) -> str:
    return ", ".join(name + ("" if ps.required else "?") for name, ps in k.params.items())


def table() -> str:
    rows = ["| kind | family | params | modes | what the bot sees |", "|---|---|---|---|---|"]
    rows += [f"| `{k.kind}` | {k.family} | {_params(k)} | {', '.join(m for m in MODES if m in k.modes)} | {k.doc} |"
             for k in FAULTS.values()]
    gaps = [f"- not in {mode}: `{k.kind}` - {k.not_in[mode]}" for mode in MODES for k in FAULTS.values()
            if mode in k.not_in]
    return "\n".join([BEGIN, *rows, "", "A scenario of a kind in a mode it has no implementation for is a collection "
                      "error naming the reason:", "", *gaps, END])


def render(text: str, where: str = "docs/scenarios.md") -> str:
    """`text` with its generated block replaced by the catalog's table."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: no generated fault table block (a line {BEGIN!r} ... {END!r}); put the "
                         "two marker lines where the table belongs")
    return text[:start] + table() + text[end + len(END):]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="exit 1 if the committed table differs from the catalog")
    p.add_argument("--doc", type=Path, default=DOC, help="the scenario-format document (default: docs/scenarios.md)")


def cmd_docs(args: argparse.Namespace) -> int:
    path: Path = args.doc
    try:
        old = path.read_text(encoding="utf-8")
        new = render(old, str(path))
    except (OSError, ValueError) as exc:
        print(f"gameday docs: {exc}", file=sys.stderr)
        return 2
    if new == old:
        print(f"{path}: the fault table matches the catalog ({len(FAULTS)} kinds)")
        return 0
    if args.check:
        print(f"{path}: the fault table differs from the catalog (harness/faults); run `gameday docs` and "
              "commit the result", file=sys.stderr)
        return 1
    path.write_text(new, encoding="utf-8")
    print(f"{path}: fault table written ({len(FAULTS)} kinds)")
    return 0
