"""`gameday merge DIR...`: combine shard or drill evidence sets into one new sealed set.

Every source is verified against its own manifest first and must be complete; all must come
from one tree state (commit, dirty flag and diff digest); a scenario may appear in one source
only, and no other file may be claimed by two. The merged set holds every source file under its
own path, junit.xml of each source as `junit/<source set>.xml`, the records concatenated, the
results table and metrics rebuilt from them, `merged_from` in `sources.json`, and a manifest.
`latest` moves to it (DESIGN.md "Evidence").
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from harness.evidence import (
    DEFAULT_ROOT,
    EVIDENCE_FILE,
    JUNIT_FILE,
    MANIFEST_FILE,
    REPORT_OUTPUTS,
    RESULTS_FILE,
    EvidenceError,
    TreeState,
    append_evidence,
    check_root,
    point_latest,
    read_evidence,
    reserve_set,
    sha256_file,
    verify_set,
    write_json_atomic,
    write_manifest,
)
from harness.metrics_file import METRICS_FILE, write_metrics_file

SOURCES_FILE = "sources.json"
REBUILT = {EVIDENCE_FILE, RESULTS_FILE, MANIFEST_FILE, METRICS_FILE, SOURCES_FILE, *REPORT_OUTPUTS}


class MergeError(EvidenceError):
    pass


def _manifest(directory: Path) -> dict[str, Any]:
    problems = verify_set(directory)
    if problems:
        raise MergeError(f"{directory}: not a trustworthy evidence set, refusing to merge it:\n  "
                         + "\n  ".join(problems))
    manifest: dict[str, Any] = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    if manifest.get("complete") is not True:
        raise MergeError(f"{directory}: the run did not complete (manifest complete={manifest.get('complete')}); "
                         "rerun that shard and merge its new set")
    return manifest


def merge_sets(sources: list[Path], root: Path) -> Path:
    """The new sealed set under `root` combining `sources`; MergeError says why not."""
    if len(sources) < 2:
        raise MergeError("gameday merge needs two or more evidence sets (e.g. the shards of one commit)")
    if len({s.resolve() for s in sources}) != len(sources):
        raise MergeError("the same evidence set is named twice: " + ", ".join(map(str, sources)))
    manifests = [_manifest(s) for s in sources]
    trees = {(m["git_commit"], m["git_dirty"], m["git_diff_digest"]) for m in manifests}
    if len(trees) != 1:
        listed = "; ".join(f"{s}: commit {m['git_commit']}, dirty {m['git_dirty']}"
                           for s, m in zip(sources, manifests, strict=True))
        raise MergeError(f"the sets come from different code and cannot be one result: {listed}")
    owner: dict[str, Path] = {}
    records: list[dict[str, Any]] = []
    for source in sources:
        for record in read_evidence(source):
            scenario = str(record.get("scenario"))
            if scenario in owner:
                raise MergeError(f"scenario {scenario} is in both {owner[scenario]} and {source}: shards of one "
                                 "run are disjoint; merge each scenario's set once")
            owner[scenario] = source
            records.append(record)
    files: dict[str, Path] = {}
    for source in sources:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            name = path.relative_to(source).as_posix()
            if name in REBUILT:
                continue
            target = f"junit/{source.name}.xml" if name == JUNIT_FILE else name
            if target in files:
                raise MergeError(f"{target} is in both {files[target].parent} and {source}")
            files[target] = path
    check_root(root)
    commit, dirty, digest = trees.pop()
    tree = TreeState(commit, dirty, digest)
    out = reserve_set(root, tree)
    for target, path in files.items():
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / target)
    (out / EVIDENCE_FILE).touch()
    for record in sorted(records, key=lambda r: str(r.get("scenario"))):
        append_evidence(out, record)
    from harness.pytest_evidence import summary_lines

    table = summary_lines(sorted(records, key=lambda r: str(r.get("scenario"))))
    (out / RESULTS_FILE).write_text("\n".join(table or ["no scenario ran in these sets"]) + "\n", encoding="utf-8")
    write_metrics_file(out)
    write_json_atomic(out / SOURCES_FILE, {"merged_from": [
        {"set": str(s), "manifest_sha256": sha256_file(s / MANIFEST_FILE), "records": m["records"],
         "exit_status": m["exit_status"]} for s, m in zip(sources, manifests, strict=True)]})
    statuses = [m["exit_status"] for m in manifests]
    write_manifest(out, tree, complete=True, exit_status=max(statuses))
    point_latest(root, out)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sets", nargs="+", metavar="DIR", type=Path, help="evidence sets to combine (reports/runs/...)")
    p.add_argument("--report", metavar="DIR", type=Path, default=Path(DEFAULT_ROOT),
                   help=f"reports root of the merged set (default {DEFAULT_ROOT})")


def cmd_merge(args: argparse.Namespace) -> int:
    import sys

    try:
        out = merge_sets(list(args.sets), args.report)
    except EvidenceError as exc:
        print(f"gameday merge: {exc}", file=sys.stderr)
        return 2
    print(f"merged {len(args.sets)} sets into {out}; {args.report / 'latest'} -> it")
    return 0
