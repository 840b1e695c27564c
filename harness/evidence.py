"""Evidence records (DESIGN.md "Evidence"): one JSON line per scenario run, and a manifest.

`evidence.jsonl` is append-only; each record is written with one write() on a file opened for
appending, then flushed and fsynced, so a record is either wholly on disk or not at all and
parallel writers do not interleave within a line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.expect import Judgement, RunRecord
from harness.scenario import Scenario

SCHEMA = "gameday.evidence/v1"
MANIFEST_SCHEMA = "gameday.manifest/v1"
EVIDENCE_FILE = "evidence.jsonl"
MANIFEST_FILE = "manifest.json"

# The keys every evidence record has, in order (DESIGN.md schema + events_count and message).
EVIDENCE_KEYS: tuple[str, ...] = (
    "schema", "scenario", "covers", "mode", "profile", "seed", "time_scale", "git_commit",
    "config_digest", "started_at", "duration_s", "steps", "expectations", "verdict",
    "events_count", "message",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """`2026-01-31T12:00:00.123Z` (UTC, millisecond precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=8)
def git_commit(cwd: str | None = None) -> str:
    """`git rev-parse HEAD` of the working tree at `cwd` (default: the project), or "unknown"."""
    where = cwd or str(Path(__file__).resolve().parent.parent)
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def build_evidence(
    scenario: Scenario,
    judgement: Judgement,
    record: RunRecord | None,
    *,
    config_digest: str,
    started_at: datetime,
    duration_s: float,
    git: str | None = None,
) -> dict[str, Any]:
    """The evidence record of one run. `record` is None when the run produced none (no runner,
    or the runner raised): the record then says so through verdict/message."""
    steps: list[dict[str, Any]] = []
    if record is not None:
        steps = [t.to_dict() for t in record.steps]
    time_scale = record.time_scale if record is not None else scenario.effective_time_scale
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": scenario.id,
        "covers": list(scenario.covers),
        "mode": scenario.mode,
        "profile": scenario.profile,
        "seed": scenario.seed,
        "time_scale": time_scale,
        "git_commit": git if git is not None else git_commit(),
        "config_digest": config_digest,
        "started_at": iso_z(started_at),
        "duration_s": round(duration_s, 6),
        "steps": steps,
        "expectations": [r.to_dict() for r in judgement.expectations],
        "verdict": judgement.verdict,
        "events_count": len(record.events) if record is not None else 0,
        "message": judgement.message,
    }
    return out


def append_evidence(directory: str | Path, record: Mapping[str, Any]) -> Path:
    """Append one JSON line to `directory/evidence.jsonl` (created with its directory); the
    line is on disk (flushed and fsynced) when this returns."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / EVIDENCE_FILE
    line = json.dumps(record, sort_keys=False, default=_json_default, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = line.encode("utf-8")
        written = os.write(fd, data)
        if written != len(data):  # a short write on a regular file: finish it
            view = memoryview(data)[written:]
            while view:
                n = os.write(fd, view)
                view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_evidence(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / EVIDENCE_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def write_manifest(directory: str | Path, *, git: str | None = None) -> Path:
    """Write `directory/manifest.json`: sha256 of every file under the directory (relative
    POSIX paths, sorted; the manifest itself excluded) and the git commit."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.relative_to(directory).as_posix() not in (MANIFEST_FILE, MANIFEST_FILE + ".tmp")
    }
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "git_commit": git if git is not None else git_commit(),
        "created_at": iso_z(utc_now()),
        "files": files,
    }
    path = directory / MANIFEST_FILE
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
