"""Running tests against mutants: each mutant lives only in a forked child's memory.

The parent never imports the code under test. One child runs the unmutated tests once under a
line tracer (which tests execute which lines of the mutated modules, how long each takes, and
which third-party modules they import); the parent then imports those third-party modules, so
every later fork starts warm. For each mutant a child installs an import hook that compiles the
mutated AST in place of the module's file, runs pytest in-process over the tests that execute the
mutant's lines (scenarios first, then unit tests, `-x`), and reports what ran and what failed
through a log file. A child that outlives its timeout is killed with its process group: the
mutant counts as killed by timeout. The work tree is never written, so an interrupted run leaves
nothing mutated behind.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from harness.mutate.operators import Mutant, mutated_tree

_OWN_PACKAGES = ("bot", "harness", "tests", "scenarios")
_PYTEST_FLAGS = ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist"]


def is_scenario(nodeid: str) -> bool:
    return nodeid.endswith((".yaml", ".yml")) or ".yaml::" in nodeid or ".yml::" in nodeid


@dataclass
class CoverageMap:
    tests: dict[str, set[tuple[str, int]]]  # nodeid -> (relative path, line) it executed
    durations: dict[str, float]
    warm_modules: list[str]  # third-party modules the tests import
    failed: list[str]  # tests that fail without any mutant (the baseline must be green)

    def covering(self, lines: set[tuple[str, int]]) -> list[str]:
        """Tests that execute any of `lines`: scenarios first, then unit tests, each in run order."""
        hit = [t for t, seen in self.tests.items() if seen & lines]
        return sorted(hit, key=lambda t: not is_scenario(t))

    def covering_file(self, path: str) -> list[str]:
        """Tests that execute any line of `path` (for a mutant that acts at import: a constant, a
        default, a class attribute - it matters only where the module's code runs)."""
        hit = [t for t, seen in self.tests.items() if any(p == path for p, _ in seen)]
        return sorted(hit, key=lambda t: not is_scenario(t))


@dataclass
class Outcome:
    status: str  # killed | timeout | survived | not_covered
    by: str = ""  # the failing test (killed), or the test running at the timeout
    scenario_kill: bool = False  # killed (or timed out) while only scenarios had run
    seconds: float = 0.0
    ran: int = 0
    notes: list[str] = field(default_factory=list)


class _Tracer:
    """Records (path, line) for the watched files, per test."""

    def __init__(self, root: Path, files: set[str]) -> None:
        self.watched = {str((root / f).resolve()): f for f in files}
        self.current: set[tuple[str, int]] = set()

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        rel = self.watched.get(frame.f_code.co_filename)
        if rel is None:
            return None
        self.current.add((rel, frame.f_lineno))

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line":
                self.current.add((rel, frame.f_lineno))
            return local
        return local


class _CoveragePlugin:
    def __init__(self, tracer: _Tracer) -> None:
        self.tracer = tracer
        self.tests: dict[str, list[list[Any]]] = {}
        self.durations: dict[str, float] = {}
        self.failed: list[str] = []

    def pytest_runtest_setup(self, item: Any) -> None:
        self.tracer.current = set()
        self._started = time.monotonic()
        sys.settrace(self.tracer.global_trace)

    def pytest_runtest_teardown(self, item: Any) -> None:
        sys.settrace(None)
        self.tests[item.nodeid] = [list(x) for x in self.tracer.current]
        self.durations[item.nodeid] = time.monotonic() - self._started

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed.append(report.nodeid)


class _LogPlugin:
    """Writes `start <nodeid>` and `fail <nodeid>` lines as tests run (read by the parent)."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("a", buffering=1)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.log.write(f"start {nodeid}\n")

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.log.write(f"fail {report.nodeid}\n")

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.log.write(f"fail {report.nodeid or 'collection'}\n")


class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, module: str, path: Path, code: Any) -> None:
        self.module, self.path, self.code = module, path, code

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        is_package = self.path.name == "__init__.py"
        return importlib.util.spec_from_file_location(fullname, self.path, loader=self,
                                                      submodule_search_locations=[str(self.path.parent)]
                                                      if is_package else None)

    def create_module(self, spec: Any) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)  # nosec B102 - our own source, mutated by us, run in a forked child


def _forget_own_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _OWN_PACKAGES and not name.startswith("harness.mutate"):
            del sys.modules[name]


def _child_setup(root: Path, quiet: bool) -> None:
    os.setpgid(0, 0)
    os.chdir(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if quiet:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    _forget_own_modules()
    import hypothesis

    # the same examples every run (the coverage map must hold for the mutant runs) and nothing
    # written to .hypothesis/: a mutant's failing example must not be replayed against real code
    hypothesis.settings.register_profile("mutate", database=None, deadline=None, derandomize=True,
                                         suppress_health_check=list(hypothesis.HealthCheck))
    hypothesis.settings.load_profile("mutate")


def _pytest_args(report_dir: str, selection: Sequence[str], extra: Sequence[str]) -> list[str]:
    return [*_PYTEST_FLAGS, "--gameday-report", report_dir, *extra, *selection]


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None when it was killed at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def tree_digest(root: Path, folders: Sequence[str]) -> str:
    """A digest of every .py / .yaml / .yml / .toml file under `folders`: the coverage map's cache key."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".py", ".yaml", ".yml", ".toml") and "__pycache__" not in path.parts \
                    and "mutate" not in path.relative_to(root).parts[:2]:  # not this tool's own code
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_coverage(root: Path, files: set[str], selection: Sequence[str], extra: Sequence[str],
                   timeout: float, quiet: bool = True, cache: Path | None = None, key: str = "") -> CoverageMap:
    """Which tests execute which lines, from a run of the unmutated tests (or `cache`, when it was
    written for the same `key`)."""
    if cache is not None and cache.exists():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return _coverage_from(data)
    with tempfile.TemporaryDirectory(prefix="mutate-cov-") as tmp:
        out = Path(tmp) / "coverage.json"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 3
            try:
                _child_setup(root, quiet)
                import pytest

                plugin = _CoveragePlugin(_Tracer(root, files))
                code = pytest.main(_pytest_args(str(Path(tmp) / "reports"), selection, extra), plugins=[plugin])
                own = {name.split(".")[0] for name in sys.modules}
                out.write_text(json.dumps({"tests": plugin.tests, "durations": plugin.durations,
                                           "failed": plugin.failed, "exit": int(code),
                                           "modules": sorted(own - set(_OWN_PACKAGES))}))
            finally:
                os._exit(int(code))
        code = _wait(pid, timeout)
        if code is None or not out.exists():
            raise RuntimeError(f"the coverage run of the unmutated tests did not finish (exit {code}, "
                               f"timeout {timeout:.0f}s); run the same tests with pytest to see why")
        data = json.loads(out.read_text())
    if cache is not None and not data["failed"]:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({**data, "key": key}))
    return _coverage_from(data)


def _coverage_from(data: dict[str, Any]) -> CoverageMap:
    return CoverageMap({t: {(p, int(n)) for p, n in lines} for t, lines in data["tests"].items()},
                       data["durations"], data["modules"], data["failed"])


def warm_up(modules: Sequence[str]) -> None:
    """Import the tests' third-party modules in the parent, so each fork starts with them loaded."""
    for name in modules:
        if name in sys.modules or name.startswith("_") or name == "__main__":
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that cannot be imported alone is imported by the child
            pass
    _forget_own_modules()


def mutant_lines(source: str, mutant: Mutant) -> tuple[set[tuple[str, int]], bool]:
    """The lines whose execution means the mutant ran, and whether it runs at import time (a module
    or class body, a default, a decorator): then every test may see it."""
    tree = ast.parse(source)
    target: ast.AST | None = None
    for index, node in enumerate(ast.walk(tree)):
        if index == mutant.index:
            target = node
            break
    if target is None:
        raise LookupError(f"{mutant.name}: the node is gone")
    in_body = _inside_function_body(tree, target)
    end = getattr(target, "end_lineno", None) or mutant.line
    return {(mutant.path, n) for n in range(mutant.line, end + 1)}, not in_body


def _inside_function_body(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            body = node.body if isinstance(node.body, list) else [node.body]
            for stmt in body:
                if any(n is target for n in ast.walk(stmt)):
                    return True
    return False


@dataclass
class Running:
    """A mutant's child process, started by start_mutant and judged by poll_mutant."""

    mutant: Mutant
    selection: Sequence[str]
    pid: int
    tmp: tempfile.TemporaryDirectory[str]
    started: float
    deadline: float

    @property
    def log(self) -> Path:
        return Path(self.tmp.name) / "log"


def start_mutant(root: Path, mutant: Mutant, source: str, selection: Sequence[str], extra: Sequence[str],
                 timeout: float, quiet: bool = True) -> Running:
    tmp = tempfile.TemporaryDirectory(prefix="mutate-")
    log = Path(tmp.name) / "log"
    log.touch()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            _child_setup(root, quiet)
            code_obj = compile(mutated_tree(source, mutant), str(root / mutant.path), "exec")
            sys.meta_path.insert(0, _MutantFinder(mutant.module, root / mutant.path, code_obj))
            # imported now: pytest puts its assertion rewriter first on sys.meta_path, and it
            # claims every module of the distribution its plugin comes from (bot included)
            importlib.import_module(mutant.module)
            import pytest

            code = int(pytest.main(_pytest_args(str(Path(tmp.name) / "reports"), selection, ["-x", *extra]),
                                   plugins=[_LogPlugin(log)]))
        except BaseException as exc:  # noqa: BLE001 - the mutant broke the run itself: killed
            with log.open("a") as f:
                f.write(f"fail {type(exc).__name__}\n")
        finally:
            os._exit(code)
    now = time.monotonic()
    return Running(mutant, selection, pid, tmp, now, now + timeout)


def poll_mutant(run: Running) -> Outcome | None:
    """The mutant's outcome once its child has ended (killed at its deadline), else None."""
    done, status = os.waitpid(run.pid, os.WNOHANG)
    timed_out = not done and time.monotonic() > run.deadline
    if not done and not timed_out:
        return None
    if timed_out:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(run.pid, 0)
    code = None if timed_out else os.waitstatus_to_exitcode(status)
    lines = run.log.read_text().splitlines()
    run.tmp.cleanup()
    started_tests = [x[6:] for x in lines if x.startswith("start ")]
    failures = [x[5:] for x in lines if x.startswith("fail ")]
    units_started = any(not is_scenario(t) for t in started_tests)
    scenarios_selected = any(is_scenario(t) for t in run.selection)
    outcome = Outcome("survived", seconds=time.monotonic() - run.started, ran=len(started_tests))
    if code is None:
        outcome.status = "timeout"
        outcome.by = started_tests[-1] if started_tests else "startup"
        outcome.scenario_kill = not units_started and scenarios_selected
    elif failures or code != 0:
        outcome.status = "killed"
        outcome.by = failures[0] if failures else f"pytest exit {code}"
        # a scenario failed, or the run broke before any unit test ran while scenarios were selected
        outcome.scenario_kill = is_scenario(outcome.by) or (not units_started and scenarios_selected)
    return outcome
