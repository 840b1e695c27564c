"""`gameday run` as a pytest front end: the common options work directly, the rest pass after '--'."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import build_parser, main, pytest_argv


def _argv(*words: str) -> list[str]:
    return pytest_argv(build_parser().parse_args(["run", *words]))


def test_help_lists_the_pytest_pass_through(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "pytest options (passed through" in text
    for option in ("-v", "-x", "-n N", "--lf", "--ff", "--maxfail", "after '--'"):
        assert option in text, option


@pytest.mark.parametrize(("words", "expected"), [
    (["-v"], ["-v"]), (["-vv"], ["-v", "-v"]), (["-x"], ["-x"]), (["--lf"], ["--lf"]),
    (["--last-failed"], ["--lf"]), (["-n", "2"], ["-n", "2"]), (["-n", "auto"], ["-n", "auto"]),
    (["--maxfail", "3"], ["--maxfail=3"]), (["-q"], ["-q"]),
])
def test_common_options_reach_pytest(words: list[str], expected: list[str]) -> None:
    argv = _argv("scenarios/x", *words)
    assert argv[:3] == ["scenarios/x", "--gameday-report", "reports"]
    assert argv[3:] == expected


def test_without_options_nothing_extra_is_passed() -> None:
    assert _argv("a") == ["a", "--gameday-report", "reports"]


def test_an_unknown_option_is_refused_not_swallowed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--tb=short"])
    assert done.value.code == 2
    assert "--tb=short" in capsys.readouterr().err


def _project(tmp_path: Path) -> Path:
    (tmp_path / "test_two.py").write_text(textwrap.dedent("""
        import os
        def test_fails():
            assert os.environ.get("GAMEDAY_CLI_FIXED") == "1"
        def test_passes():
            pass
    """))
    return tmp_path


def _gameday(tmp_path: Path, *words: str, fixed: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **({"GAMEDAY_CLI_FIXED": "1"} if fixed else {})}
    return subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
                           "run", str(tmp_path / "test_two.py"), "--report", str(tmp_path / "reports"), *words,
                           "--", "-p", "no:randomly", f"--rootdir={tmp_path}"],
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                          capture_output=True, text=True, timeout=120, check=False)


def test_v_x_and_lf_work_in_a_real_run(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first = _gameday(project, "-v", "-x")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "test_two.py::test_fails FAILED" in first.stdout  # -v: one line per test
    assert "test_passes" not in first.stdout.split("short test summary")[0].split("test_fails FAILED")[1]  # -x
    again = _gameday(project, "--lf", "-v", fixed=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "test_two.py::test_fails PASSED" in again.stdout
    assert "test_passes" not in again.stdout  # --lf: only what failed last time


def test_n_runs_in_worker_processes(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    project = _project(tmp_path)
    done = _gameday(project, "-n", "2", fixed=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 workers" in done.stdout and "2 passed" in done.stdout


def test_a_run_of_scenario_files_alone_leaves_the_plugins_it_never_uses_unloaded(tmp_path: Path) -> None:
    """Hypothesis, benchmark, schemathesis... cost ~0.5 s per process and serve no YAML item."""
    (tmp_path / "a.yaml").write_text("scenario: a\n")
    for words in ([str(tmp_path)], [str(tmp_path / "a.yaml")], ["scenarios"]):
        argv = _argv(*words)
        assert "no:hypothesispytest" in argv and "no:schemathesis" in argv and "no:xdist" in argv, words
    assert "no:xdist" not in _argv(str(tmp_path), "-n", "2"), "workers need xdist"
    assert "no:hypothesispytest" in _argv(str(tmp_path), "-n", "2")


def test_plugins_stay_when_python_tests_or_pass_through_options_may_need_them(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("scenario: a\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test_x.py").write_text("def test_x():\n    pass\n")
    assert not any(a.startswith("no:") for a in _argv(str(tmp_path)))
    assert not any(a.startswith("no:") for a in _argv(str(tmp_path / "a.yaml"), "tests"))
    assert not any(a.startswith("no:") for a in _argv(str(tmp_path / "a.yaml"), "--", "--hypothesis-seed=1"))
