"""`gameday merge`: shard sets of one commit become one sealed set; anything else is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.evidence import TreeState, latest_set, read_evidence, verify_set, write_manifest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("breakers/drawdown/critical-halts-futures.yaml", "breakers/drawdown/warning-futures.yaml",
             "killswitch/immediate-flattens-futures.yaml", "killswitch/clear-resumes.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    work = tmp_path_factory.mktemp("shards")
    for name in SCENARIOS:
        shutil.copy(ROOT / "scenarios" / name, work / Path(name).name)
    out = []
    for index in (1, 2):
        done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(work), "--report",
                               str(work / f"r{index}"), "--shard", f"{index}/2", "--", "-p", "no:randomly",
                               "-p", "no:cacheprovider", "--rootdir", str(work)],
                              cwd=work, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        out.append(latest_set(work / f"r{index}"))
    return out


def test_shards_merge_into_one_sealed_set_with_every_scenario_once(shards, tmp_path, capsys):
    assert [len(read_evidence(s)) for s in shards] == [2, 2]
    assert cli.main(["merge", *map(str, shards), "--report", str(tmp_path)]) == 0
    merged = latest_set(tmp_path)
    assert verify_set(merged) == []
    records = read_evidence(merged)
    assert sorted(r["scenario"] for r in records) == sorted(
        ["drawdown-critical-halts-futures", "drawdown-warning-futures", "killswitch-immediate-flattens-futures",
         "killswitch-clear-resumes"])
    manifest = json.loads((merged / "manifest.json").read_text())
    assert (manifest["complete"], manifest["records"]) == (True, 4)
    assert all(r["scenario"] in (merged / "results.txt").read_text() for r in records)
    assert sorted(p.name for p in (merged / "junit").iterdir()) == sorted(f"{s.name}.xml" for s in shards)
    assert len(json.loads((merged / "sources.json").read_text())["merged_from"]) == 2


def test_a_scenario_in_two_sets_is_refused(shards, tmp_path, capsys):
    twin = tmp_path / "twin"
    shutil.copytree(shards[0], twin)
    assert cli.main(["merge", str(shards[0]), str(twin), "--report", str(tmp_path / "r")]) == 2
    assert "is in both" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_sets_of_different_commits_are_refused(shards, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(shards[1], other)
    write_manifest(other, TreeState("0" * 40, False, None), complete=True, exit_status=0)
    assert cli.main(["merge", str(shards[0]), str(other), "--report", str(tmp_path / "r")]) == 2
    assert "different code" in capsys.readouterr().err


def test_a_tampered_or_incomplete_set_is_refused(shards, tmp_path, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(shards[1], tampered)
    (tampered / "results.txt").write_text("all green\n")
    assert cli.main(["merge", str(shards[0]), str(tampered), "--report", str(tmp_path / "r")]) == 2
    assert "not a trustworthy evidence set" in capsys.readouterr().err
    incomplete = tmp_path / "incomplete"
    shutil.copytree(shards[1], incomplete)
    manifest = json.loads((incomplete / "manifest.json").read_text())
    write_manifest(incomplete, TreeState(manifest["git_commit"], manifest["git_dirty"], manifest["git_diff_digest"]),
                   complete=False, exit_status=None)
    assert cli.main(["merge", str(shards[0]), str(incomplete), "--report", str(tmp_path / "r")]) == 2
    assert "did not complete" in capsys.readouterr().err
