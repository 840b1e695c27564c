"""pytest collection of scenario files (the style of pytest's "non-python tests" example).

- Every `*.yaml` / `*.yml` with a top-level `scenario:` key under the paths pytest is given is a
  `ScenarioFile` holding one `ScenarioItem` named by the scenario id; its `tags` are markers.
- A malformed file is a collection error showing the loader's `file:line: ...` lines, no
  traceback. Policy-derived params are resolved at collection (the policy comes from
  `policy_provider`, replaceable by the caller), so an unknown policy path is a collection
  error too.
- Running an item looks up `RUNNERS[scenario.mode]` (callable(scenario, RunContext) ->
  RunRecord), judges the record (harness.expect), appends evidence (harness.evidence) to
  `--gameday-evidence DIR` (default reports/latest), and attaches each SLA to the JUnit XML
  through `item.user_properties`.

Error vs failure: the scenario is run and judged in the item's *setup* phase. A verdict of
`error` (no runner for the mode, a fault that could not be injected, the runner raising) is
raised there as `ScenarioErrored`, so pytest reports it as an ERROR ("error at setup"; a JUnit
<error>), the same way it reports a broken fixture: the harness could not establish the
experiment. A `fail` verdict is raised from `runtest()` as `ScenarioFailed`, a plain FAILED
test. Both show the judge's message, not a traceback. This uses only public pytest phases and
hooks: pytest_runtest_makereport replaces the setup report's text with the judge's message.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.evidence import append_evidence, build_evidence, utc_now
from harness.expect import ExpectationResult, Judgement, RunRecord, judge
from harness.scenario import (
    PolicyLookup,
    Scenario,
    ScenarioError,
    is_scenario_file,
    known_profiles,
    load_checklist_ids,
    load_scenario,
    resolve_all,
)

DEFAULT_EVIDENCE_DIR = "reports/latest"


@dataclass
class PolicyBundle:
    """What a scenario's profile provides: a lookup for `{policy: ...}` params, the digest
    recorded in evidence, and the loaded policy object itself (for the runner)."""

    lookup: PolicyLookup
    digest: str
    policy: Any = None


def default_policy_provider(profile: str, config_dir: Path | None) -> PolicyBundle:
    """The project's policy for `profile` (bot.config.load_policy); raises on bad config."""
    from bot.config import load_policy
    from bot.core.policy import policy_value

    loaded = load_policy(profile, directory=config_dir)

    def lookup(path: str) -> float:
        return policy_value(loaded.policy, path)  # type: ignore[return-value]

    return PolicyBundle(lookup, loaded.digest, loaded)


# Replaceable hooks: the caller (the runner package, tests) may assign these.
policy_provider: Callable[[str, Path | None], PolicyBundle] = default_policy_provider


@dataclass
class RunContext:
    """Everything a runner gets besides the scenario."""

    pytest_config: pytest.Config
    params: dict[str, dict[str, Any]]  # step id -> resolved params (harness.scenario.resolve_params)
    policy: PolicyBundle
    evidence_dir: Path
    time_scale: float  # the scale to apply: scenario.time_scale in net mode, 1.0 in sim
    extras: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[Scenario, RunContext], RunRecord]
RUNNERS: dict[str, Runner] = {}  # mode ("sim" | "net") -> runner


class ScenarioFailed(Exception):
    """The bot did not meet the scenario's expectations (a FAILED test)."""


class ScenarioErrored(Exception):
    """The scenario could not be run or its faults not established (an ERROR, never a pass)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class ScenarioSummary:
    scenario: str
    nodeid: str
    verdict: str
    expectations: tuple[ExpectationResult, ...]
    duration_s: float


RESULTS_KEY = pytest.StashKey[list[ScenarioSummary]]()
_SEEN_IDS_KEY = pytest.StashKey[dict[str, str]]()
_POLICY_CACHE_KEY = pytest.StashKey[dict[tuple[str, str], PolicyBundle | Exception]]()


def results(config: pytest.Config) -> list[ScenarioSummary]:
    """The scenario results of this session so far (what `gameday run` prints at the end)."""
    return config.stash.setdefault(RESULTS_KEY, [])


# --------------------------------------------------------------------------------------------
# Hooks (re-exported by harness.pytest_plugin)
# --------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gameday", "gameday scenarios")
    group.addoption("--gameday-evidence", metavar="DIR", default=DEFAULT_EVIDENCE_DIR,
                    help=f"directory evidence.jsonl is appended to (default: {DEFAULT_EVIDENCE_DIR})")
    group.addoption("--gameday-config", metavar="DIR", default=None,
                    help="config directory (profiles/, checklist.yaml, policy files); "
                         "default: the project's config/")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if file_path.suffix in (".yaml", ".yml") and is_scenario_file(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """pytest formats setup-phase exceptions itself (not through item.repr_failure); show the
    judge's message for a ScenarioErrored there too, instead of a traceback."""
    report = yield
    excinfo = call.excinfo
    if isinstance(item, ScenarioItem) and excinfo is not None and isinstance(
            excinfo.value, ScenarioErrored):
        report.longrepr = item.repr_failure(excinfo)
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(RESULTS_KEY, [])
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", f"gameday: {len(rows)} scenario{'s' if len(rows) != 1 else ''}")
    for line in summary_lines(rows):
        tr.write_line(line)
    tr.write_line(f"evidence: {evidence_dir(config) / 'evidence.jsonl'}")


def summary_lines(rows: list[ScenarioSummary]) -> list[str]:
    """A compact table: scenario, verdict, then each expectation with observed / SLA."""
    width = min(48, max(len(r.scenario) for r in rows))
    cells = [_observed_sla(e) for r in rows for e in r.expectations]
    cell = max([len("observed / sla"), *map(len, cells)])
    lines = [f"{'scenario':<{width}}  {'verdict':<7}  {'observed / sla':<{cell}}  expectation"]
    for row in rows:
        head = f"{row.scenario:<{width}}  {row.verdict.upper():<7}"
        if not row.expectations:
            lines.append(head.rstrip())
            continue
        for i, exp in enumerate(row.expectations):
            prefix = head if i == 0 else " " * len(head)
            mark = "" if exp.verdict == "pass" else f"  [{exp.verdict}]"
            lines.append(f"{prefix}  {_observed_sla(exp):<{cell}}  {exp.text}{mark}")
    return lines


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value}ms"


def _observed_sla(exp: ExpectationResult) -> str:
    if exp.kind == "never":
        return "held" if exp.verdict == "pass" else f"breach@{_ms(exp.observed_ms)}"
    if exp.kind == "final":
        return exp.verdict
    if exp.observed_ms is None and exp.verdict == "fail":
        return f"never / {_ms(exp.sla_ms)}"
    return f"{_ms(exp.observed_ms)} / {_ms(exp.sla_ms)}"


def evidence_dir(config: pytest.Config) -> Path:
    raw = Path(config.getoption("gameday_evidence", DEFAULT_EVIDENCE_DIR) or DEFAULT_EVIDENCE_DIR)
    return raw if raw.is_absolute() else config.invocation_params.dir / raw


def config_dir(config: pytest.Config) -> Path | None:
    raw = config.getoption("gameday_config", None)
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else config.invocation_params.dir / path


# --------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        config = self.config
        cfg_dir = config_dir(config)
        display = _display(self.path, config)
        try:
            scenario = load_scenario(
                self.path,
                profiles=lambda: known_profiles(cfg_dir),
                checklist_ids=lambda: load_checklist_ids(cfg_dir),
                config_dir=cfg_dir,
                display_path=display,
            )
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        seen = config.stash.setdefault(_SEEN_IDS_KEY, {})
        if seen.get(scenario.id, display) != display:
            raise self.CollectError(
                f"{display}:{scenario.line}: scenario: duplicate scenario id "
                f"(got {scenario.id!r}; first used in {seen[scenario.id]}; allowed: a unique id)")
        seen[scenario.id] = display
        bundle = _policy(config, scenario, cfg_dir, display)
        try:
            params = resolve_all(scenario, bundle.lookup)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        yield ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario, params=params,
                                       policy=bundle)


def _display(path: Path, config: pytest.Config) -> str:
    for base in (config.rootpath, config.invocation_params.dir):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


class _PolicyUnavailable(Exception):
    pass


def _policy(config: pytest.Config, scenario: Scenario, cfg_dir: Path | None,
            display: str) -> PolicyBundle:
    cache = config.stash.setdefault(_POLICY_CACHE_KEY, {})
    key = (scenario.profile, str(cfg_dir))
    if key not in cache:
        try:
            cache[key] = policy_provider(scenario.profile, cfg_dir)
        except Exception as exc:  # a broken config: every scenario of the profile says why
            cache[key] = exc
    got = cache[key]
    if isinstance(got, Exception):
        raise ScenarioFile.CollectError(
            f"{display}:{scenario.line}: profile: cannot load the policy for profile "
            f"{scenario.profile!r}:\n{got}")
    return got


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, params: dict[str, dict[str, Any]],
                 policy: PolicyBundle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.params = params
        self.policy = policy
        self.judgement: Judgement | None = None
        self.record: RunRecord | None = None
        for tag in scenario.tags:
            self.add_marker(tag)
        if scenario.mode == "net" and "net" not in scenario.tags:
            self.add_marker("net")

    def setup(self) -> None:
        """Run and judge the scenario (see the module doc for why this is the setup phase)."""
        scenario = self.scenario
        started, t0 = utc_now(), time.perf_counter()
        cause: BaseException | None = None
        runner = RUNNERS.get(scenario.mode)
        if runner is None:
            judgement = _error_judgement(
                scenario, f"no runner is registered for mode {scenario.mode!r} "
                          f"(registered: {', '.join(sorted(RUNNERS)) or 'none'}); register one "
                          f"as harness.collect.RUNNERS[{scenario.mode!r}] = callable(scenario, "
                          f"context) -> RunRecord")
        else:
            context = RunContext(self.config, self.params, self.policy, evidence_dir(self.config),
                                 scenario.effective_time_scale)
            try:
                self.record = runner(scenario, context)
            except Exception as exc:
                cause = exc
                judgement = _error_judgement(
                    scenario, f"the {scenario.mode} runner raised {type(exc).__name__}: {exc}")
            else:
                judgement = judge(scenario, self.record)
        self.judgement = judgement
        duration = time.perf_counter() - t0
        evidence = build_evidence(scenario, judgement, self.record,
                                  config_digest=self.policy.digest, started_at=started,
                                  duration_s=duration)
        append_evidence(evidence_dir(self.config), evidence)
        self.user_properties.append(("gameday:scenario", scenario.id))
        self.user_properties.append(("gameday:verdict", judgement.verdict))
        for exp in judgement.expectations:
            self.user_properties.append((f"sla:{exp.text}",
                                         f"{_ms(exp.observed_ms)}/{_ms(exp.sla_ms)} {exp.verdict}"))
        results(self.config).append(ScenarioSummary(scenario.id, self.nodeid, judgement.verdict,
                                                    judgement.expectations, duration))
        if judgement.verdict == "error":
            raise ScenarioErrored(judgement.message, cause)

    def runtest(self) -> None:
        assert self.judgement is not None
        if self.judgement.verdict == "fail":
            raise ScenarioFailed(self.judgement.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        exc = excinfo.value
        if isinstance(exc, ScenarioFailed):
            return str(exc)
        if isinstance(exc, ScenarioErrored):
            text = f"ERROR (not a pass): {exc}"
            if exc.cause is not None:
                text += "\n\nrunner traceback:\n" + "".join(
                    traceback.format_exception(exc.cause)).rstrip()
            return text
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.scenario.line - 1, f"scenario: {self.scenario.id}"


def _error_judgement(scenario: Scenario, why: str) -> Judgement:
    """The run produced no record: every expectation is reported as error (not run)."""
    message = f"scenario {scenario.id}: ERROR\n  {scenario.where(scenario.line)}: {why}"
    scale = scenario.effective_time_scale
    expectations = tuple(
        ExpectationResult(e.text, e.kind, "error",
                          round(e.within.to_ms(scenario.bar_ms) * scale) if e.within else None,
                          None, "not run: " + why, e.line)
        for e in scenario.expect)
    return Judgement(scenario.id, "error", expectations, (why,), message)
