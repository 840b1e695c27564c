"""Evidence sets (harness/evidence.py, harness/pytest_evidence.py): every way of running makes one
new sealed set, `latest` moves only to a completed one, nothing a run did not create is deleted,
and no secret reaches the evidence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from collect_support import BAR, GOOD, T_DD, TRIPPED, register, run, write

import harness.collect as collect
import harness.evidence as evidence
from harness import cli
from harness.collect import PolicyBundle
from harness.evidence import latest_set, point_latest, read_evidence, verify_set
from harness.scenario import dict_lookup

ROOT = Path(__file__).resolve().parents[2]
HALTS = [("breaker.tripped", T_DD + BAR, TRIPPED)]


@pytest.fixture
def fake_sim(monkeypatch):
    """A dict-backed policy and a fake sim runner that meets GOOD's expectations."""
    monkeypatch.setattr(collect, "policy_provider",
                        lambda profile, cfg: PolicyBundle(dict_lookup({"circuit_breakers": {"drawdown": {
                            "threshold_pct": 3.0}}}), "sha256:test"))
    monkeypatch.setattr(collect, "RUNNERS", {})
    register(monkeypatch, HALTS)


SET_FILES = ["evidence.jsonl", "junit.xml", "manifest.json", "metrics.prom", "results.txt"]


def sets(root: Path) -> list[Path]:
    runs = root / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def errors(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stderr.lines if line]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_each_run_writes_a_new_sealed_set_and_moves_latest(pytester, fake_sim):
    write(pytester, "good", GOOD)
    run(pytester).assert_outcomes(passed=1)
    root = pytester.path / "reports"
    (first,) = sets(root)
    assert evidence.SET_NAME_RE.match(first.name), first.name
    assert sorted(p.name for p in first.iterdir()) == sorted([*SET_FILES, "events"])  # a sim scenario ran
    assert os.readlink(root / "latest") == f"runs/{first.name}" and latest_set(root) == first
    assert verify_set(first) == []
    before = snapshot(first)
    manifest = json.loads((first / "manifest.json").read_text())
    assert (manifest["complete"], manifest["exit_status"], manifest["records"]) == (True, 0, 1)
    assert manifest["git_commit"] == evidence.git_commit() and "git_dirty" in manifest

    result = run(pytester)
    result.assert_outcomes(passed=1)
    first_again, second = sets(root)
    assert first_again == first and snapshot(first) == before and verify_set(first) == []  # untouched
    assert latest_set(root) == second and verify_set(second) == []
    assert len(read_evidence(second)) == 1  # a record per scenario, not appended to the old set
    result.stdout.fnmatch_lines([f"evidence: {root}/latest -> {second}"])


def test_a_report_root_holding_other_files_is_refused_and_left_alone(pytester, fake_sim):
    """Once, `gameday run --report scenarios` deleted scenarios/net/: now it is refused, in one line."""
    write(pytester, "good", GOOD)
    net = pytester.path / "scenarios" / "net"
    shutil.copytree(ROOT / "scenarios" / "net", net)
    (net / "junit.xml").write_text("a user's file that happens to share a name")
    before = snapshot(net)
    result = run(pytester, "--gameday-report", str(net))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    names = sorted(p.name for p in net.iterdir())
    assert errors(result) == [f"ERROR: gameday: {net}: holds files that are not evidence sets "
                              f"({', '.join(names[:5])} and {len(names) - 5} more); give an empty or new "
                              "directory, or one a gameday run made (it holds only runs/ and latest)"]
    assert snapshot(net) == before and len(before) == len(list((ROOT / "scenarios" / "net").iterdir())) + 1


def test_gameday_run_refuses_a_report_dir_with_foreign_files_and_a_file(tmp_path, capsys, fake_sim):
    net = tmp_path / "net"
    shutil.copytree(ROOT / "scenarios" / "net", net)
    before = snapshot(net)
    scenario = tmp_path / "s" / "good.yaml"
    scenario.parent.mkdir()
    scenario.write_text(GOOD.lstrip())
    assert cli.main(["run", str(scenario.parent), "--report", str(net)]) == pytest.ExitCode.USAGE_ERROR
    assert snapshot(net) == before
    file = tmp_path / "report.txt"
    file.write_text("x")
    assert cli.main(["run", str(scenario.parent), "--report", str(file)]) == pytest.ExitCode.USAGE_ERROR
    err = capsys.readouterr().err
    assert f"ERROR: gameday: {file}: is a file, not a directory; give a directory for the evidence sets " \
           "(default reports/)" in err
    assert "Traceback" not in err and file.read_text() == "x"


def test_a_bad_marker_expression_leaves_latest_and_the_sets_alone(pytester, fake_sim):
    write(pytester, "good", GOOD)
    run(pytester).assert_outcomes(passed=1)
    root = pytester.path / "reports"
    (only,) = sets(root)
    before = snapshot(only)
    result = run(pytester, "-m", "gate and")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert sets(root) == [only] and latest_set(root) == only and snapshot(only) == before


def test_a_session_of_plain_tests_makes_a_set_too(pytester, fake_sim):
    """Test results are evidence (checklist items cite tests): junit.xml, an empty evidence.jsonl."""
    pytester.makepyfile(test_unit="def test_x():\n    pass\n")
    run(pytester).assert_outcomes(passed=1)
    latest = latest_set(pytester.path / "reports")
    assert sorted(p.name for p in latest.iterdir()) == SET_FILES
    assert read_evidence(latest) == [] and verify_set(latest) == []
    assert (latest / "results.txt").read_text() == "no scenario ran in this session\n"


def test_a_session_that_runs_nothing_leaves_nothing(pytester, fake_sim):
    write(pytester, "good", GOOD)
    assert run(pytester, "--collect-only", "-q").ret == 0
    assert not (pytester.path / "reports").exists()
    assert run(pytester, "-k", "nothing-matches").ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert not (pytester.path / "reports").exists()


def test_a_run_that_stops_early_is_sealed_incomplete_and_latest_stays(pytester, fake_sim, monkeypatch):
    write(pytester, "good", GOOD)
    run(pytester).assert_outcomes(passed=1)
    root = pytester.path / "reports"
    (complete,) = sets(root)
    register(monkeypatch, [])  # no trip: every run of GOOD fails now
    write(pytester, "second", GOOD.replace("dd-halts", "dd-halts-2"))
    result = run(pytester, "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*(the run did not complete: *latest not moved)"])
    stopped = next(s for s in sets(root) if s != complete)
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert (manifest["complete"], manifest["exit_status"], manifest["records"]) == (False, 1, 1)
    assert verify_set(stopped) == [] and latest_set(root) == complete


def test_a_skipped_scenario_gets_a_record_with_its_reason(pytester, fake_sim, monkeypatch):
    def skipping(scenario, context):
        pytest.skip("net mode: no redis-server binary (apt-get install redis-server)")

    monkeypatch.setitem(collect.RUNNERS, "sim", skipping)
    write(pytester, "good", GOOD)
    write(pytester, "marked", GOOD.replace("dd-halts", "dd-marked"))
    pytester.makeconftest("""
        import pytest
        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "dd-marked":
                    item.add_marker(pytest.mark.skip(reason="quarantined by the on-call"))
    """)
    run(pytester).assert_outcomes(skipped=2)
    records = {r["scenario"]: r for r in read_evidence(pytester.path / "reports" / "latest")}
    assert records["dd-halts"]["verdict"] == "skipped"
    assert records["dd-halts"]["message"] == "skipped: net mode: no redis-server binary (apt-get install redis-server)"
    assert records["dd-marked"]["message"] == "skipped: quarantined by the on-call"
    assert [e["verdict"] for e in records["dd-marked"]["expectations"]] == ["skipped", "skipped"]
    results = (pytester.path / "reports" / "latest" / "results.txt").read_text()
    assert "dd-marked  SKIPPED" in results and "quarantined by the on-call" in results


def test_a_users_junitxml_stays_where_asked_and_is_copied_into_the_set(pytester, fake_sim):
    write(pytester, "good", GOOD)
    run(pytester, "--junitxml", "mine.xml").assert_outcomes(passed=1)
    mine = (pytester.path / "mine.xml").read_bytes()
    assert b"dd-halts" in mine
    assert (pytester.path / "reports" / "latest" / "junit.xml").read_bytes() == mine
    assert verify_set(pytester.path / "reports" / "latest") == []


def test_an_old_layout_latest_directory_is_refused_with_the_fix(pytester, fake_sim):
    old = pytester.path / "reports" / "latest"
    old.mkdir(parents=True)
    (old / "evidence.jsonl").write_text("{}\n")
    write(pytester, "good", GOOD)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    root = pytester.path / "reports"
    assert errors(result) == [f"ERROR: gameday: {old}: is a directory (the layout before evidence sets); keep it "
                              f"with `mkdir -p {root}/runs && mv {old} {root}/runs/legacy-latest` or remove it, "
                              "then run again"]
    assert (old / "evidence.jsonl").read_text() == "{}\n"


def test_without_symlinks_latest_is_a_file_naming_the_set(tmp_path, monkeypatch):
    root = tmp_path / "reports"
    first = evidence.reserve_set(root, evidence.TreeState("a" * 40, False, None))
    second = evidence.reserve_set(root, evidence.TreeState("a" * 40, False, None))
    assert second.name == first.name + "-2"
    point_latest(root, first)
    assert (root / "latest").is_symlink() and latest_set(root) == first

    def no_symlinks(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    point_latest(root, second)
    assert not (root / "latest").is_symlink() and (root / "latest").read_text() == f"runs/{second.name}\n"
    assert latest_set(root) == second
    assert sorted(p.name for p in root.iterdir()) == ["latest", "runs"]  # no temporary left behind


def test_pytest_xdist_workers_append_and_the_controller_seals_one_set(tmp_path):
    """`pytest -n 2`: one set, one record per scenario, a manifest that matches."""
    for name in ("breakers/drawdown/critical-halts-futures.yaml", "breakers/drawdown/warning-futures.yaml",
                 "killswitch/immediate-flattens-futures.yaml", "killswitch/clear-resumes.yaml"):
        shutil.copy(ROOT / "scenarios" / name, tmp_path / Path(name).name)
    (tmp_path / "test_unit.py").write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-q", str(tmp_path), "--gameday-report", str(tmp_path / "reports"),
                           "--rootdir", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    root = tmp_path / "reports"
    (only,) = sets(root)
    assert latest_set(root) == only and verify_set(only) == []
    records = read_evidence(only)
    assert sorted(r["scenario"] for r in records) == sorted(
        ["drawdown-critical-halts-futures", "drawdown-warning-futures", "killswitch-immediate-flattens-futures",
         "killswitch-clear-resumes"])
    assert all(r["verdict"] == "pass" for r in records)
    sealed = json.loads((only / "manifest.json").read_text())
    for r in records:  # each worker kept its scenarios' event streams in the one set, sealed
        assert (only / "events" / f"{r['scenario']}.jsonl").stat().st_size > 0
        assert f"events/{r['scenario']}.jsonl" in json.dumps(sealed)
    junit = (only / "junit.xml").read_text()
    assert 'tests="6"' in junit and "test_two" in junit
    table = (only / "results.txt").read_text()
    assert all(r["scenario"] in table for r in records)
    assert "gameday: 4 scenarios" in done.stdout


def test_net_runs_keep_the_kill_token_out_of_the_evidence(pytester, monkeypatch):
    """The net runner's secrets live in a private temporary directory, never in the set."""
    import bot.io.access as access
    import harness.net.runner as net_runner

    token, secret = "kill-token-" + "k" * 24, "api-secret-" + "s" * 21
    tokens: list[str] = []  # every principal's token
    monkeypatch.setattr(access.secrets, "token_urlsafe", lambda n: tokens.append(f"{token}{len(tokens)}") or tokens[-1])
    monkeypatch.setattr(net_runner.secrets, "token_hex", lambda n: secret if n == 16 else "0" * (2 * n))
    made: list[str] = []
    mkdtemp = net_runner.tempfile.mkdtemp
    monkeypatch.setattr(net_runner.tempfile, "mkdtemp", lambda **kw: made.append(mkdtemp(**kw)) or made[-1])
    pytester.makefile(".yaml", kill=(ROOT / "scenarios" / "net" / "kill-switch-through-latency.yaml").read_text())
    result = run(pytester, "--gameday-report", "reports")
    outcomes = result.parseoutcomes()
    if outcomes.get("skipped"):
        pytest.skip("net mode could not start its services here: " + result.stdout.str()[-300:])
    # ran (pass or fail: its SLAs are not this test's subject, and a loaded machine may miss them)
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1, result.stdout.str()
    latest = pytester.path / "reports" / "latest"
    files = [p for p in latest.rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in files)
    assert not any(p.name in ("kill_token", "principals.yaml") for p in files)
    assert tokens
    leaks = [p for p in files if any(t.encode() in p.read_bytes() for t in [*tokens, secret])]
    assert leaks == []
    assert made and not any(Path(d).exists() for d in made)  # the private directory is gone too


def test_items_sharing_a_node_id_still_complete_the_run(pytester, fake_sim):
    """schemathesis parametrizes one test into items with one node id: all ran, so latest moves."""
    pytester.makeconftest("""
import pytest

class Same(pytest.Item):
    def runtest(self):
        pass

class Twins(pytest.File):
    def collect(self):
        return [Same.from_parent(self, name="twin") for _ in range(3)]

def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".twins":
        return Twins.from_parent(parent, path=file_path)
""")
    pytester.makefile(".twins", a="")
    result = run(pytester)
    result.assert_outcomes(passed=3)
    root = pytester.path / "reports"
    (only,) = sets(root)
    assert json.loads((only / "manifest.json").read_text())["complete"] is True
    assert latest_set(root) == only
