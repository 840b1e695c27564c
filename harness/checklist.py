"""`config/checklist.yaml`: every item of the two source documents, and the evidence it cites.

Each item has `id`, `source`, `section`, `text` and `verified_by`, a mapping with these keys
only (HELPERS.md "Checklist"; the readiness report reads them):

    scenarios:  [scenario ids]            each must exist and list the item (or a refinement) in covers:
    tests:      [test paths or node ids]  tests/x.py, tests/x.py::test_y, tests/x.py::TestZ::test_y
    scans:      [security check names]    one of SCAN_NAMES
    validation: [profile names]           a config/profiles/NAME.yaml (`gameday validate` result)
    drills:     [runbook ids]             runbooks/ID.yaml, its drill covers the item, and the scheduled
                                          workflow runs it with the scripted operator at time scale 1
    manual:     {by: ROLE, what: TEXT}    a named human attests (gameday attest ITEM --by NAME)
    none:       "why no machine evidence exists yet"   (alone)

`reference_problems` resolves every reference and says what does not hold.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.runbooks.incidents import INCIDENTS
from harness.security.model import CHECK_NAMES

CHECKLIST_FILE = "checklist.yaml"
VERIFIED_BY_KEYS = ("scenarios", "tests", "scans", "validation", "drills", "manual", "none")
GAME_DAY_WORKFLOW = ".github/workflows/game-day.yml"  # the scheduled drills
# Security checks a checklist item may cite: the security gate's own names.
SCAN_NAMES: frozenset[str] = frozenset(CHECK_NAMES)
ITEM_KEYS = ("id", "source", "section", "text", "verified_by")
_ID_RE = re.compile(r"^[A-Z][A-Z0-9]*(\.[a-z0-9_]+)+$")


class ChecklistError(Exception):
    """The checklist is missing or malformed; str() is `file:line: what (fix)` lines."""


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    verified_by: Mapping[str, Any]
    line: int  # of verified_by (of the item when it has none)
    file: str
    verified_by_is_mapping: bool = True


def checklist_path(config_dir: Path | None = None) -> Path:
    from bot.config import config_dir as default

    return (config_dir or default()) / CHECKLIST_FILE


def load_checklist(path: Path) -> list[ChecklistItem]:
    """The items of `path`; ChecklistError (every problem, file:line) when it is missing or an
    item is malformed (unknown keys, a missing, bad or duplicate id). What verified_by cites is
    checked by reference_problems (the test suite), so a citation problem does not stop scenario
    collection."""
    from harness.scenario import LMap, ScenarioError, parse_yaml

    file = str(path)
    if not path.is_file():
        raise ChecklistError(f"{file}: not found: scenarios' covers: are checked against it; restore "
                             "config/checklist.yaml, or point --gameday-config / GAMEDAY_CONFIG_DIR at a "
                             "config directory that has one")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"), file)
    except ScenarioError as exc:
        raise ChecklistError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecklistError(f"{file}: cannot read: {exc}") from None
    if not isinstance(data, LMap) or not isinstance(data.get("items"), list):
        raise ChecklistError(f"{file}:1: expected a mapping with `items:`, a list of checklist items")
    problems: list[str] = []
    items: list[ChecklistItem] = []
    seen: dict[str, int] = {}
    for i, (raw, line) in enumerate(zip(data["items"], data["items"].item_lines, strict=True)):
        where = f"{file}:{line}: items[{i}]"
        if not isinstance(raw, LMap):
            problems.append(f"{where}: expected a mapping ({', '.join(ITEM_KEYS)})")
            continue
        problems += [f"{file}:{raw.key_lines[k]}: items[{i}].{k}: unknown key (allowed: {', '.join(ITEM_KEYS)})"
                     for k in raw if k not in ITEM_KEYS]
        cid = raw.get("id")
        if not isinstance(cid, str) or not _ID_RE.match(cid):
            problems.append(f"{where}.id: expected an id like C2.drawdown or PETS.wallet (got {cid!r})")
            continue
        if cid in seen:
            problems.append(f"{where}.id: duplicate id {cid!r} (first at line {seen[cid]})")
            continue
        seen[cid] = line
        verified = raw.get("verified_by")
        items.append(ChecklistItem(cid, verified if isinstance(verified, Mapping) else {},
                                   raw.value_lines.get("verified_by", line), file,
                                   isinstance(verified, Mapping)))
    if problems:
        raise ChecklistError("\n".join(problems))
    return items


def checklist_ids(config_dir: Path | None = None) -> frozenset[str]:
    """The ids of the checklist (cached while the file is unchanged); ChecklistError as load_checklist."""
    path = checklist_path(config_dir)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    return _ids(str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)


@functools.lru_cache(maxsize=8)
def _ids(path: str, _mtime: int, _size: int) -> frozenset[str]:
    return frozenset(item.id for item in load_checklist(Path(path)))


def covers_item(cited: str, item: str) -> bool:
    """A covers: id counts for `item` when it is the item or a refinement of it (more dots)."""
    return cited == item or cited.startswith(item + ".")


def reference_problems(items: Iterable[ChecklistItem], *, root: Path, scenario_covers: Mapping[str, Iterable[str]],
                       profiles: Iterable[str]) -> list[str]:
    """Every verified_by reference that does not resolve. `root`: where test paths are relative
    to (the project); `scenario_covers`: scenario id -> its covers: ids (the catalog);
    `profiles`: the known profile names."""
    problems: list[str] = []
    profile_set = set(profiles)
    for item in items:
        where = f"{item.file}:{item.line}: {item.id}: verified_by"
        vb = item.verified_by
        if not vb or not item.verified_by_is_mapping:
            problems.append(f"{where}: expected a mapping with one or more of {', '.join(VERIFIED_BY_KEYS)}; "
                            "an item with no machine evidence says verified_by: {none: \"why\"}")
            continue
        problems += [f"{where}.{k}: unknown key (allowed: {', '.join(VERIFIED_BY_KEYS)})"
                     for k in vb if k not in VERIFIED_BY_KEYS]
        if "none" in vb:
            if len(vb) > 1:
                problems.append(f"{where}: none: means no evidence; it cannot stand beside "
                                f"{', '.join(k for k in vb if k != 'none')}")
            if not isinstance(vb["none"], str) or not vb["none"].strip():
                problems.append(f"{where}.none: expected the reason no machine evidence exists yet (text)")
        for key in ("scenarios", "tests", "scans", "validation", "drills"):
            if key not in vb:
                continue
            names = vb[key]
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                problems.append(f"{where}.{key}: expected a non-empty list of names (got {names!r})")
                continue
            for name in names:
                problem = _reference(key, name, item.id, root, scenario_covers, profile_set)
                if problem:
                    problems.append(f"{where}.{key}: {name}: {problem}")
        if "manual" in vb:
            manual = vb["manual"]
            if not isinstance(manual, Mapping) or set(manual) != {"by", "what"} or not all(
                    isinstance(manual[k], str) and manual[k].strip() for k in ("by", "what")):
                problems.append(f"{where}.manual: expected {{by: <role>, what: <what the human attests>}} "
                                f"(got {dict(manual) if isinstance(manual, Mapping) else manual!r})")
    return problems


def _reference(key: str, name: str, item: str, root: Path, scenario_covers: Mapping[str, Iterable[str]],
               profiles: set[str]) -> str | None:
    if key == "scenarios":
        if name not in scenario_covers:
            return "no such scenario in the catalog"
        covers = list(scenario_covers[name])
        if not any(covers_item(c, item) for c in covers):
            return f"the scenario does not list {item} in its covers: (it covers {', '.join(covers) or 'nothing'})"
        return None
    if key == "tests":
        return check_test_reference(root, name)
    if key == "scans":
        return None if name in SCAN_NAMES else f"unknown scan (known: {', '.join(sorted(SCAN_NAMES))})"
    if key == "drills":
        return drill_reference_problem(root, name, item)
    return None if name in profiles else f"unknown profile (known: {', '.join(sorted(profiles))})"


def check_test_reference(root: Path, ref: str) -> str | None:
    """None when `ref` (a test file path, or a node id path::name[::name], relative to `root`)
    names a test file / a test function or class in it; else what is wrong."""
    path_text, *names = ref.split("::")
    path = root / path_text
    if not path_text.endswith(".py") or not path.is_file():
        return "no such test file"
    if not names:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError) as exc:
        return f"cannot parse the test file: {exc}"
    body: list[ast.stmt] = tree.body
    for i, name in enumerate(names):
        bare = name.split("[", 1)[0]  # a parametrized id: test_x[case]
        node = next((n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                     and n.name == bare), None)
        if node is None:
            return f"{path_text} has no {'::'.join(names[:i + 1])}"
        body = node.body if isinstance(node, ast.ClassDef) else []
    return None


def drill_reference_problem(root: Path, runbook: str, item: str) -> str | None:
    """None when runbook `runbook`'s drill is evidence for `item`: the runbook exists, its drill covers the
    item, and the scheduled game-day workflow runs it with the scripted operator at production time scale."""
    if not (root / "runbooks" / f"{runbook}.yaml").is_file() or runbook not in INCIDENTS:
        return f"no such runbook (runbooks/{runbook}.yaml with a drill; known: {', '.join(sorted(INCIDENTS))})"
    covers = INCIDENTS[runbook][2]
    if not any(covers_item(c, item) for c in covers):
        return f"its drill does not cover {item} (it covers {', '.join(covers)}; harness/runbooks/incidents.py)"
    if runbook not in scheduled_drills(root / GAME_DAY_WORKFLOW):
        return (f"{GAME_DAY_WORKFLOW} does not run it on its schedule with the scripted operator at production "
                f"time scale (gameday drill --runbook {runbook} --operator-script FILE --time-scale 1)")
    return None


def scheduled_drills(workflow: Path) -> set[str]:
    """The runbooks a scheduled workflow drills with the scripted operator at time scale 1: the `--runbook`
    of a step that also passes --operator-script and --time-scale 1 (a literal, or the words of the
    shell `for VAR in ...;` loop the step's --runbook "$VAR" runs in)."""
    try:
        doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    triggers = doc.get(True, doc.get("on")) if isinstance(doc, dict) else None  # YAML 1.1 reads `on` as True
    if not isinstance(triggers, dict) or "schedule" not in triggers:
        return set()
    found: set[str] = set()
    for job in (doc.get("jobs") or {}).values():
        for step in (job.get("steps") or []) if isinstance(job, dict) else []:
            run = step.get("run") if isinstance(step, dict) else None
            if not isinstance(run, str) or "--operator-script" not in run or \
                    not re.search(r"--time-scale[ =]1(\.0)?\b", run):
                continue
            for target in re.findall(r"--runbook[ =]\"?\$?\{?([A-Za-z0-9_]+)", run):
                loop = re.search(rf"for {target} in ([^;\n]+);", run)
                found.update(loop.group(1).split() if loop else [target])
    return found
