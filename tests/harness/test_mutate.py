"""The mutation tool (harness/mutate/) on a toy project: a mutant the tests notice is reported
killed, an equivalent one survived, and the run fails below its threshold."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.mutate.operators import find_mutants, mutated_tree

GATE = '''\
def allowed(qty, cap):
    return qty <= cap


def floor_at_zero(x):
    return x if x >= 0 else 0
'''

TESTS = '''\
from toy.gate import allowed, floor_at_zero


def test_the_cap_allows_up_to_the_cap_and_not_beyond():
    assert allowed(10, 10)
    assert not allowed(10.01, 10)


def test_floor():
    assert floor_at_zero(-1) == 0
    assert floor_at_zero(0) == 0
    assert floor_at_zero(0.5) == 0.5
'''

BOUNDARY = "toy/gate.py:2:11:compare:<= -> <"
EQUIVALENT = "toy/gate.py:6:16:compare:>= -> >"  # at x == 0 both branches give 0


def _project(tmp_path: Path, equivalent: list[str]) -> Path:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text("")
    (tmp_path / "toy" / "gate.py").write_text(GATE)
    (tmp_path / "toy_tests").mkdir()
    (tmp_path / "toy_tests" / "test_gate.py").write_text(TESTS)
    entries = "".join(f"  - {{mutant: '{m}', why: the branches agree at the boundary}}\n" for m in equivalent)
    (tmp_path / "mutation.yaml").write_text(textwrap.dedent("""\
        modules: [toy/gate.py]
        tests: [toy_tests]
        thresholds: {overall_pct: 100, scenarios_pct: 0}
        equivalent:
        """) + (entries or "  []\n"))
    return tmp_path


def _run(root: Path) -> tuple[int, dict[str, dict[str, object]], str]:
    done = subprocess.run([sys.executable, "-m", "harness.mutate", "--root", str(root), "--config", "mutation.yaml",
                           "--out", "out"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    report = json.loads((root / "out" / "mutants.json").read_text())
    return done.returncode, {m["name"]: m for m in report["mutants"]}, done.stdout


def test_a_noticed_mutant_is_killed_an_equivalent_one_survives_and_a_low_score_fails(tmp_path: Path) -> None:
    code, mutants, stdout = _run(_project(tmp_path, []))
    assert mutants[BOUNDARY]["status"] == "killed"
    assert mutants[BOUNDARY]["by"] == "toy_tests/test_gate.py::test_the_cap_allows_up_to_the_cap_and_not_beyond"
    assert mutants[EQUIVALENT]["status"] == "survived"
    assert code == 1, stdout
    assert "score below threshold: overall" in stdout
    assert EQUIVALENT in stdout  # listed as a survivor
    assert (tmp_path / "toy" / "gate.py").read_text() == GATE  # the tree is never written


def test_a_mutant_judged_equivalent_leaves_the_denominator(tmp_path: Path) -> None:
    code, mutants, stdout = _run(_project(tmp_path, [EQUIVALENT]))
    assert mutants[EQUIVALENT]["equivalent"]
    assert "killed by unit tests + scenarios: 100.0%" in stdout
    assert code == 0, stdout


def test_one_coverage_map_serves_every_module(tmp_path: Path) -> None:
    """--module picks the mutants, not what the coverage map traces: a run over another module reuses
    the cached map instead of running every test again."""
    root = _project(tmp_path, [])
    (root / "toy" / "other.py").write_text("def double(x):\n    return 2 * x\n")
    config = root / "mutation.yaml"
    config.write_text(config.read_text().replace("modules: [toy/gate.py]", "modules: [toy/gate.py, toy/other.py]"))
    cwd = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "harness.mutate", "--root", str(root), "--config", "mutation.yaml", "--out", "out",
            "--max-mutants", "1"]
    subprocess.run([*argv, "--module", "gate.py"], capture_output=True, text=True, timeout=300, cwd=cwd)
    cache = root / "out" / "coverage.json"
    first = cache.read_text()
    subprocess.run([*argv, "--module", "other.py"], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert cache.read_text() == first  # the same key: not mapped again
    assert json.loads((root / "out" / "mutants.json").read_text())["mutants"][0]["path"] == "toy/other.py"


@pytest.mark.parametrize(("source", "change", "expected"), [
    ("x = a < b", "< -> <=", "x = a <= b"),
    ("x = a and b", "and -> or", "x = a or b"),
    ("x = not a", "not x -> x", "x = a"),
    ("x = 3", "3 -> 4", "x = 4"),
    ("x = 3", "3 -> 0", "x = 0"),
    ("x = a * b", "* -> /", "x = a / b"),
    ("def f():\n    return a", "return x -> return None", "def f():\n    return None"),
    ("emit(x)", "call -> pass", "pass"),
    ("x += 1", "+= -> -=", "x -= 1"),
])
def test_each_operator_makes_its_mutant(source: str, change: str, expected: str) -> None:
    mutant = next(m for m in find_mutants("m", "m.py", source) if m.change == change)
    assert ast.unparse(mutated_tree(source, mutant)) == expected


def test_docstrings_annotations_and_decorators_are_not_mutated() -> None:
    source = ('@dataclass(frozen=True)\nclass C:\n    """Doc."""\n\n\n'
              'def f(x: "int" = 1) -> bool:\n    """Doc."""\n    return True\n')
    changes = sorted(m.change for m in find_mutants("m", "m.py", source))
    assert changes == ["1 -> 0", "1 -> 2", "True -> False", "return x -> return None"]
