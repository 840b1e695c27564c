"""Evidence (DESIGN.md "Evidence", HELPERS.md "Evidence sets"): records, sealed sets, `latest`.

A reports root (default `reports/`) holds only what runs made:

    reports/
      runs/<UTC yyyymmddThhmmssZ>-<12 hex of the commit>[-N]/   one evidence set per run
        evidence.jsonl   one record per scenario (schema gameday.evidence/v1), skipped ones too;
                         empty when the session ran tests but no scenario
        junit.xml        the session's JUnit XML (SLA figures as properties)
        results.txt      the results table the run printed
        events/<scenario>.jsonl  a sim scenario's bounded event stream (harness/event_log.py)
        net/<scenario>/  per-run artifacts of net scenarios (events.jsonl, bot.log, audit.jsonl)
        manifest.json    written last (gameday.manifest/v1): sha256 of every other file, the git
                         commit, whether the tree had uncommitted changes, complete or not, and
                         the chain head of every audit.jsonl in the set (audit_anchors)
      latest -> runs/<the last completed run>   a relative symlink, replaced by rename(2)

`-N` (2, 3, ...) is added when two runs start in the same second of the same commit. Where the
file system cannot make symlinks, `latest` is a regular file holding `runs/<name>` (also replaced
by rename); `latest_set` reads either. A run creates its own set directory (exclusively), never
deletes or rewrites anything it did not create, and refuses a root holding anything but `runs/`,
`latest` and `.gitkeep`. A reader trusts a set only when `verify_set` finds no problem.

`evidence.jsonl` is append-only; each record is written with one write() on a file opened for
appending, then fsynced, so a record is either wholly on disk or not at all and parallel writers
(pytest-xdist workers) do not interleave within a line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.io.audit_anchor import MANIFEST_FIELD as AUDIT_ANCHORS
from bot.io.audit_anchor import chain_head, head_fields
from harness.expect import Judgement, RunRecord
from harness.scenario import Scenario
from harness.scenario.overlay import overlay_text

SCHEMA = "gameday.evidence/v1"
MANIFEST_SCHEMA = "gameday.manifest/v1"
EVIDENCE_FILE = "evidence.jsonl"
MANIFEST_FILE = "manifest.json"
JUNIT_FILE = "junit.xml"
RESULTS_FILE = "results.txt"
RUNS_DIR = "runs"
AUDIT_LOG_NAME = "audit.jsonl"
LATEST = "latest"
DEFAULT_ROOT = "reports"
# What a reports root may hold. A producer that writes beside runs/ adds its names here.
# What a reports root may hold: the sets, the latest pointer, `gameday report`'s default output and
# `make mutate`'s report.
ROOT_ENTRIES = frozenset({RUNS_DIR, LATEST, ".gitkeep", "report", "mutation"})
# What a reader writes into a set after it was sealed (the readiness report of that set): never
# evidence, never in the manifest, ignored when a set is verified.
REPORT_OUTPUTS = ("report.html", "report.md", "readiness.json", "attestation.json")
_LATEST_TMP_RE = re.compile(r"^\.latest\.\d+\.tmp$")  # point_latest's own, left by a run that died mid-rename
SET_NAME_RE = re.compile(r"^\d{8}T\d{6}Z-(?:[0-9a-f]{12}|unknown)(?:-\d+)?$")

# The keys every evidence record has, in order (DESIGN.md schema + tree state, events_count and
# message). verdict: pass | fail | error | skipped (message then says why it was skipped). A scenario
# with a `policy:` overlay adds `policy_overlay` (dotted key -> value) after them.
EVIDENCE_KEYS: tuple[str, ...] = (
    "schema", "scenario", "covers", "mode", "profile", "seed", "time_scale", "git_commit",
    "git_dirty", "git_diff_digest", "config_digest", "started_at", "duration_s", "steps",
    "expectations", "verdict", "events_count", "message",
)


class EvidenceError(Exception):
    """A reports root or set that cannot be used; str() is one line naming the path and the fix."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """`2026-01-31T12:00:00.123Z` (UTC, millisecond precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _project() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _git(args: list[str], cwd: str) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_commit(cwd: str | None = None) -> str:
    """`git rev-parse HEAD` of the working tree at `cwd` (default: the project), or "unknown"."""
    out = _git(["rev-parse", "HEAD"], cwd or _project())
    commit = out.decode().strip() if out else ""
    return commit or "unknown"


@dataclass(frozen=True)
class TreeState:
    """The code a run ran: its commit and whether the work tree differed from it."""

    commit: str
    dirty: bool | None  # None: not a git work tree (or git is missing)
    # sha256 over `git status --porcelain -z` and `git diff HEAD --binary`: two runs of the same
    # dirty tree have the same digest; None when clean or unknown
    diff_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TreeState:
        return cls(str(data["commit"]), data["dirty"], data["diff_digest"])


@functools.lru_cache(maxsize=8)
def tree_state(cwd: str | None = None) -> TreeState:
    where = cwd or _project()
    commit = git_commit(where)
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], where)
    diff = _git(["diff", "HEAD", "--binary"], where)
    if commit == "unknown" or status is None or diff is None:
        return TreeState(commit, None, None)
    if not status:
        return TreeState(commit, False, None)
    return TreeState(commit, True, "sha256:" + hashlib.sha256(status + b"\0" + diff).hexdigest())


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def build_evidence(
    scenario: Scenario,
    judgement: Judgement,
    record: RunRecord | None,
    *,
    config_digest: str,
    started_at: datetime,
    duration_s: float,
    tree: TreeState | None = None,
) -> dict[str, Any]:
    """The evidence record of one run. `record` is None when the run produced none (no runner,
    the runner raised, the scenario was skipped): the record then says so through verdict and
    message. `tree` defaults to the project's (tree_state())."""
    tree = tree if tree is not None else tree_state()
    steps = [t.to_dict() for t in record.steps] if record is not None else []
    time_scale = record.time_scale if record is not None else scenario.effective_time_scale
    evidence = {
        "schema": SCHEMA,
        "scenario": scenario.id,
        "covers": list(scenario.covers),
        "mode": scenario.mode,
        "profile": scenario.profile,
        "seed": scenario.seed,
        "time_scale": time_scale,
        "git_commit": tree.commit,
        "git_dirty": tree.dirty,
        "git_diff_digest": tree.diff_digest,
        "config_digest": config_digest,
        "started_at": iso_z(started_at),
        "duration_s": round(duration_s, 6),
        "steps": steps,
        "expectations": [r.to_dict() for r in judgement.expectations],
        "verdict": judgement.verdict,
        "events_count": len(record.events) if record is not None else 0,
        "message": judgement.message,
    }
    if scenario.policy:  # laid over the profile's policy for this run (config_digest names the result)
        evidence["policy_overlay"] = overlay_text(scenario.policy)
    return evidence


def append_evidence(directory: str | Path, record: Mapping[str, Any]) -> Path:
    """Append one JSON line to `directory/evidence.jsonl` (created with its directory); the
    line is on disk (flushed and fsynced) when this returns."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / EVIDENCE_FILE
    data = (json.dumps(record, default=_json_default, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # a short write on a regular file: finish it
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_evidence(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / EVIDENCE_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def count_records(directory: str | Path) -> int:
    """How many records `directory/evidence.jsonl` holds (its non-blank lines; a line that does not
    parse is a reader's problem to report, not the seal's)."""
    path = Path(directory) / EVIDENCE_FILE
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Sets
# --------------------------------------------------------------------------------------------


def check_root(root: Path) -> None:
    """Raise EvidenceError when `root` cannot hold evidence sets: it is a file, or it holds
    entries a run did not make (so `--report scenarios` is refused, not filled)."""
    if root.exists() and not root.is_dir():
        raise EvidenceError(f"{root}: is a file, not a directory; give a directory for the evidence "
                            f"sets (default {DEFAULT_ROOT}/)")
    if not root.is_dir():
        return
    foreign = sorted(p.name for p in root.iterdir() if p.name not in ROOT_ENTRIES and not _LATEST_TMP_RE.match(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise EvidenceError(f"{root}: holds files that are not evidence sets ({shown}); give an empty or new "
                            f"directory, or one a gameday run made (it holds only {RUNS_DIR}/ and {LATEST})")
    runs = root / RUNS_DIR
    if runs.exists() and not runs.is_dir():
        raise EvidenceError(f"{runs}: is a file, not the directory of evidence sets; move it away")
    latest = root / LATEST
    if latest.is_dir() and not latest.is_symlink():
        raise EvidenceError(f"{latest}: is a directory (the layout before evidence sets); keep it with "
                            f"`mkdir -p {runs} && mv {latest} {runs}/legacy-latest` or remove it, then run again")


def set_name(moment: datetime, commit: str) -> str:
    short = commit[:12] if re.fullmatch(r"[0-9a-f]{40}", commit) else "unknown"
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{short}"


def reserve_set(root: Path, tree: TreeState, moment: datetime | None = None) -> Path:
    """Create a new, empty set directory under `root/runs/` and return it. Call check_root first."""
    return fresh_dir(root / RUNS_DIR, set_name(moment or utc_now(), tree.commit))


def fresh_dir(parent: Path, name: str) -> Path:
    """Create `parent/name`, or name-2, name-3, ... when taken (exclusively: two runs never share
    one, so a run never mixes with or deletes another's files)."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise EvidenceError(f"{parent}: 999 directories named {name}-*: cannot make another")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _set_files(directory: Path) -> dict[str, Path]:
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*"))
            if p.is_file() and p.relative_to(directory).as_posix() not in (
                MANIFEST_FILE, MANIFEST_FILE + ".tmp", *REPORT_OUTPUTS)}


def write_manifest(directory: str | Path, tree: TreeState, *, complete: bool, exit_status: int | None) -> Path:
    """Seal `directory`: write manifest.json (sha256 of every other file, the tree state, the
    number of evidence records, whether the run completed) atomically, last."""
    directory = Path(directory)
    present = _set_files(directory)
    files = {name: sha256_file(path) for name, path in present.items()}
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "set": directory.name,
        "git_commit": tree.commit,
        "git_dirty": tree.dirty,
        "git_diff_digest": tree.diff_digest,
        "created_at": iso_z(utc_now()),
        "complete": complete,
        "exit_status": exit_status,
        "records": count_records(directory),
        "files": files,
        AUDIT_ANCHORS: _audit_anchors(present),
    }
    return write_json_atomic(directory / MANIFEST_FILE, manifest)


def _audit_anchors(present: Mapping[str, Path]) -> dict[str, Any]:
    """The chain head of every audit log in the set: `python -m bot audit verify LOG --evidence SET`
    finds a later cut or rewrite of that log (bot.io.audit_anchor)."""
    heads = {name: chain_head(path) for name, path in present.items() if path.name == AUDIT_LOG_NAME}
    return {name: head_fields(head) for name, head in heads.items() if head is not None}


def write_json_atomic(path: Path, data: Any) -> Path:
    """`data` as indented JSON at `path`, whole or not at all (written beside it, fsynced, renamed)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def verify_set(directory: str | Path) -> list[str]:
    """Why the set at `directory` cannot be trusted (empty: sealed, and every file matches)."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{path}: missing: the set was never sealed"]
    except (OSError, ValueError) as exc:
        return [f"{path}: unreadable: {exc}"]
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        return [f"{path}: not a {MANIFEST_SCHEMA} manifest"]
    listed: dict[str, str] = manifest.get("files") or {}
    present = _set_files(directory)
    problems = [f"{directory / name}: listed in the manifest but missing"
                for name in sorted(set(listed) - set(present))]
    problems += [f"{directory / name}: not in the manifest (added after sealing)"
                 for name in sorted(set(present) - set(listed))]
    problems += [f"{directory / name}: sha256 differs from the manifest (changed after sealing)"
                 for name in sorted(set(listed) & set(present)) if sha256_file(present[name]) != listed[name]]
    records = count_records(directory)
    if not problems and manifest.get("records") != records:
        problems.append(f"{path}: says {manifest.get('records')} records, {EVIDENCE_FILE} holds {records}")
    return problems


def point_latest(root: Path, set_dir: Path) -> Path:
    """Make `root/latest` name `set_dir` in one rename(2): readers see the old set or the new one,
    never neither. A symlink where the file system allows one, else a file holding the name."""
    target = Path(RUNS_DIR) / set_dir.name
    latest = root / LATEST
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # our own leftover (same pid): never another run's
    try:
        os.symlink(target, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(target.as_posix() + "\n", encoding="utf-8")
    os.replace(tmp, latest)
    return latest


def latest_set(root: str | Path) -> Path | None:
    """The set `root/latest` names (symlink or pointer file), or None when there is none."""
    latest = Path(root) / LATEST
    if latest.is_symlink() or latest.is_dir():
        return latest.resolve() if latest.exists() else None
    if latest.is_file():
        target = Path(root) / latest.read_text(encoding="utf-8").strip()
        return target if target.is_dir() else None
    return None
