"""pytest collection of scenario files (the style of pytest's "non-python tests" example).

- Every `*.yaml` / `*.yml` with a top-level `scenario:` key under the paths pytest is given is a
  `ScenarioFile` holding one `ScenarioItem` named by the scenario id; its `tags` are markers.
- A malformed file is a collection error showing the loader's `file:line: ...` lines, no
  traceback. Policy-derived params are resolved at collection (the policy comes from
  `policy_provider`, replaceable by the caller), so an unknown policy path is a collection
  error too.
- What "looks like a scenario" (so a mistake is an error, never a silent skip): a `.yaml`,
  `.yml` or `.json` file under a collected path that is empty, or whose top level is a mapping
  with a `scenario` key (or a near spelling of it: `scenaro`, `Scenario`), an `expect` key, or a
  `steps` list of mappings with `fault:` (harness.scenario.scenario_signs). A YAML one is loaded
  (every problem a `file:line` collection error); a JSON one is a collection error saying to
  write it as YAML. Any other YAML/JSON (fixtures, configs, workflows) is not collected.
- Running an item looks up `RUNNERS[scenario.mode]` (callable(scenario, RunContext) ->
  RunRecord), checks every event the bot emitted against the schema (bot/core/events.py; a
  violation makes the run an ERROR: the judge cannot trust words it does not know), judges the
  record (harness.expect), appends evidence to the session's set (harness.pytest_evidence), and
  attaches each SLA to the JUnit XML through `item.user_properties`. A skipped scenario (a
  missing service, a skip marker) gets an evidence record too: verdict `skipped`, the reason as
  its message.

Error vs failure: the scenario is run and judged in the item's *setup* phase. A verdict of
`error` (no runner for the mode, a fault that could not be injected, the runner raising) is
raised there as `ScenarioErrored`, so pytest reports it as an ERROR ("error at setup"; a JUnit
<error>), the same way it reports a broken fixture: the harness could not establish the
experiment. A `fail` verdict is raised from `runtest()` as `ScenarioFailed`, a plain FAILED
test. Both show the judge's message, not a traceback. This uses only public pytest phases and
hooks: pytest_runtest_makereport replaces the setup report's text with the judge's message.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.core.events import event_problems
from harness.event_log import EventBoundsError, event_bounds, write_events
from harness.evidence import append_evidence, build_evidence, utc_now
from harness.expect import ExpectationResult, Judgement, RunRecord, judge
from harness.pytest_evidence import ms_text, session_evidence
from harness.scenario import (
    PolicyLookup,
    Problem,
    Scenario,
    ScenarioError,
    known_profiles,
    load_checklist_ids,
    load_scenario,
    resolve_all,
    scenario_signs,
)
from harness.scenario.overlay import apply_overlay


@dataclass
class PolicyBundle:
    """What a scenario's profile provides: a lookup for `{policy: ...}` params, the digest
    recorded in evidence, and the loaded policy object itself (for the runner)."""

    lookup: PolicyLookup
    digest: str
    policy: Any = None


def default_policy_provider(profile: str, config_dir: Path) -> PolicyBundle:
    """The project's policy for `profile` (bot.config.load_policy); raises on bad config."""
    from bot.config import load_policy
    from bot.core.policy import policy_value

    loaded = load_policy(profile, directory=config_dir)

    def lookup(path: str) -> float:
        return policy_value(loaded.policy, path)  # type: ignore[return-value]

    return PolicyBundle(lookup, loaded.digest, loaded)


def overlaid(bundle: PolicyBundle, scenario: Scenario) -> PolicyBundle:
    """The profile's policy with the scenario's `policy:` overlay (harness.scenario.overlay) laid
    over it: what the bot runs on, `{policy: ...}` params resolve against and the evidence's digest
    names. Raises ScenarioError naming the setting's line when the result is not a valid policy."""
    if not scenario.policy:
        return bundle
    from bot.config import LoadedPolicy, policy_digest
    from bot.core.policy import Policy, policy_value

    loaded = bundle.policy
    base = getattr(loaded, "policy", loaded)
    if not isinstance(base, Policy):
        raise ScenarioError([Problem(scenario.source or str(scenario.path), scenario.policy[0].line, "policy",
                                     "the policy provider gave no policy object to lay the overlay over",
                                     allowed="a PolicyBundle with the loaded policy (harness.collect)")])
    policy = apply_overlay(base, scenario.policy, scenario.source or str(scenario.path), scenario.line)
    digest = policy_digest(policy)

    def lookup(path: str) -> float:
        return policy_value(policy, path)  # type: ignore[return-value]

    again = dataclasses.replace(loaded, policy=policy, digest=digest) if isinstance(loaded, LoadedPolicy) else policy
    return PolicyBundle(lookup, digest, again)


# Replaceable hooks: the caller (the runner package, tests) may assign these.
policy_provider: Callable[[str, Path], PolicyBundle] = default_policy_provider


@dataclass
class RunContext:
    """Everything a runner gets besides the scenario."""

    pytest_config: pytest.Config
    params: dict[str, dict[str, Any]]  # step id -> resolved params (harness.scenario.resolve_params)
    policy: PolicyBundle
    evidence_dir: Path  # the session's evidence set (harness.pytest_evidence)
    time_scale: float  # the scale to apply: scenario.time_scale in net mode, 1.0 in sim
    extras: dict[str, Any] = field(default_factory=dict)
    config_dir: Path | None = None  # where profiles and policy came from (the bot process needs it)


Runner = Callable[[Scenario, RunContext], RunRecord]
RUNNERS: dict[str, Runner] = {}  # mode ("sim" | "net") -> runner


class ScenarioFailed(Exception):
    """The bot did not meet the scenario's expectations (a FAILED test)."""


class ScenarioErrored(Exception):
    """The scenario could not be run or its faults not established (an ERROR, never a pass)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


_SEEN_IDS_KEY = pytest.StashKey[dict[str, str]]()
_POLICY_CACHE_KEY = pytest.StashKey[dict[tuple[str, str], PolicyBundle | Exception]]()


# --------------------------------------------------------------------------------------------
# Hooks (re-exported by harness.pytest_plugin)
# --------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gameday", "gameday scenarios")
    group.addoption("--gameday-config", metavar="DIR", default=None,
                    help="config directory (profiles/, checklist.yaml, policy files); "
                         "default: $GAMEDAY_CONFIG_DIR, else the project's config/")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    signs = scenario_signs(file_path)
    if signs is None:
        return None
    if file_path.suffix == ".json":
        return MisfiledScenario.from_parent(parent, path=file_path, signs=signs)
    return ScenarioFile.from_parent(parent, path=file_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """pytest formats setup-phase exceptions itself (not through item.repr_failure); show the
    judge's message for a ScenarioErrored there too, instead of a traceback. A scenario skipped
    before or while it ran gets its evidence record here, with the reason."""
    report = yield
    excinfo = call.excinfo
    if not isinstance(item, ScenarioItem):
        return report
    if excinfo is not None and isinstance(excinfo.value, ScenarioErrored):
        report.longrepr = item.repr_failure(excinfo)
    if report.skipped and call.when == "setup" and not item.recorded:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        item.record_skip(reason.removeprefix("Skipped: "))
    return report


def config_dir(config: pytest.Config) -> Path:
    """--gameday-config, else $GAMEDAY_CONFIG_DIR, else the project's config/ (as the bot decides)."""
    from bot.config import config_dir as bot_config_dir

    raw = config.getoption("gameday_config", None)
    if not raw:
        return bot_config_dir()
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
            bundle = overlaid(bundle, scenario)
            params = resolve_all(scenario, bundle.lookup)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        yield ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario, params=params,
                                       policy=bundle)


class MisfiledScenario(pytest.File):
    """A JSON file that looks like a scenario: scenarios are YAML files (one format, one loader
    with line numbers), so this is a collection error saying how to fix it, never a silent skip."""

    def __init__(self, *, signs: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signs = signs

    def collect(self) -> Iterator[pytest.Item]:
        display = _display(self.path, self.config)
        raise self.CollectError(
            f"{display}:1: looks like a scenario ({self.signs}) but scenarios are YAML files: rename it to "
            f"{self.path.with_suffix('.yaml').name} (JSON is valid YAML: the content can stay); if it is "
            "not a scenario, move it out of the collected paths")


def _display(path: Path, config: pytest.Config) -> str:
    for base in (config.rootpath, config.invocation_params.dir):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


class _PolicyUnavailable(Exception):
    pass


def _policy(config: pytest.Config, scenario: Scenario, cfg_dir: Path,
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
        self.recorded = False  # its evidence record is written
        self.started: tuple[datetime, float] | None = None  # (utc, perf_counter) when setup began
        for tag in scenario.tags:
            self.add_marker(tag)
        if scenario.mode == "net" and "net" not in scenario.tags:
            self.add_marker("net")

    def setup(self) -> None:
        """Run and judge the scenario (see the module doc for why this is the setup phase)."""
        scenario = self.scenario
        evidence = session_evidence(self.config)
        started, t0 = self.started = utc_now(), time.perf_counter()
        cause: BaseException | None = None
        runner = RUNNERS.get(scenario.mode)
        if runner is None:
            judgement = _error_judgement(
                scenario, f"no runner is registered for mode {scenario.mode!r} "
                          f"(registered: {', '.join(sorted(RUNNERS)) or 'none'}); register one "
                          f"as harness.collect.RUNNERS[{scenario.mode!r}] = callable(scenario, "
                          f"context) -> RunRecord")
        else:
            context = RunContext(self.config, self.params, self.policy, evidence.path,
                                 scenario.effective_time_scale, config_dir=config_dir(self.config))
            try:
                self.record = runner(scenario, context)
            except pytest.skip.Exception:
                raise  # recorded by pytest_runtest_makereport, with the reason
            except Exception as exc:
                cause = exc
                judgement = _error_judgement(
                    scenario, f"the {scenario.mode} runner raised {type(exc).__name__}: {exc}")
            else:
                judgement = _unschema(scenario, self.record, judge(scenario, self.record))
                if scenario.mode == "sim":  # a net run keeps the bot's whole stream in net/<scenario>/
                    judgement = _keep_events(scenario, self.record, judgement, evidence.path, config_dir(self.config))
        self.judgement = judgement
        self._record(judgement, started, time.perf_counter() - t0)
        self.user_properties.append(("gameday:scenario", scenario.id))
        self.user_properties.append(("gameday:verdict", judgement.verdict))
        for exp in judgement.expectations:
            self.user_properties.append((f"sla:{exp.text}",
                                         f"{ms_text(exp.observed_ms)}/{ms_text(exp.sla_ms)} {exp.verdict}"))
        if judgement.verdict == "error":
            raise ScenarioErrored(judgement.message, cause)

    def _record(self, judgement: Judgement, started: datetime, duration_s: float) -> None:
        evidence = session_evidence(self.config)
        append_evidence(evidence.path, build_evidence(
            self.scenario, judgement, self.record, config_digest=self.policy.digest, started_at=started,
            duration_s=duration_s, tree=evidence.tree))
        self.recorded = True

    def record_skip(self, reason: str) -> None:
        scenario = self.scenario
        expectations = tuple(ExpectationResult(e.text, e.kind, "skipped", message=f"not run: {reason}",
                                               line=e.line) for e in scenario.expect)
        self.record = None
        started, t0 = self.started or (utc_now(), time.perf_counter())  # skipped before setup: a marker
        self._record(Judgement(scenario.id, "skipped", expectations, (), f"skipped: {reason}"), started,
                     time.perf_counter() - t0)

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


def _unschema(scenario: Scenario, record: RunRecord, judgement: Judgement) -> Judgement:
    """An ERROR when the bot emitted an event the schema does not declare, or a declared one with
    the wrong fields: the expectations were judged on words whose meaning is not settled."""
    problems: dict[str, int] = {}
    for event in record.events:
        for problem in event_problems(event):
            problems[problem] = problems.get(problem, 0) + 1
    if not problems:
        return judgement
    shown = [f"  {p} ({n}x)" for p, n in list(problems.items())[:5]]
    more = [f"  and {len(problems) - 5} more"] if len(problems) > 5 else []
    message = "\n".join([f"scenario {scenario.id}: ERROR: the bot emitted events that break the event schema "
                         "(bot/core/events.py): declare the fields there, or fix the emit", *shown, *more,
                         judgement.message])
    return dataclasses.replace(judgement, verdict="error", message=message)


def _keep_events(scenario: Scenario, record: RunRecord, judgement: Judgement, set_dir: Path,
                 cfg_dir: Path) -> Judgement:
    """Keep the run's bounded event stream in the set (harness.event_log); a set that cannot hold
    it is incomplete evidence, so the scenario is an ERROR rather than a pass without it."""
    try:
        write_events(set_dir, scenario.id, record.events, event_bounds(cfg_dir))
    except (OSError, EventBoundsError) as exc:
        why = f"cannot keep the event stream in {set_dir}: {exc}"
        return dataclasses.replace(judgement, verdict="error",
                                   message=f"scenario {scenario.id}: ERROR: {why}\n{judgement.message}")
    return judgement


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
