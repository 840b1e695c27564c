"""One sealed evidence set per pytest session, however pytest was started (harness/evidence.py
has the layout): `gameday run`, plain `pytest` (so `make test`), `pytest -n N` (pytest-xdist).

- configure (the controller, or the only process): check the reports root (`--gameday-report`,
  default reports/; a file, or a directory holding foreign files, is a usage error), record the
  work tree's state, reserve a new set directory and send JUnit XML into it (a `--junitxml`
  given by the user is kept and copied in at the end).
- xdist workers get the set and the tree state from the controller (`pytest_configure_node`):
  they append evidence records and per-run artifacts; they never seal.
- sessionfinish (last, after the JUnit XML is written): a session that ran no test (a usage
  error such as `-m 'gate and'`, nothing collected, --collect-only) removes its own reservation
  and leaves `latest` alone. Otherwise it writes results.txt (the table, from the evidence
  records, so it is the same in every process layout), seals the set with manifest.json, and,
  when the run completed (exit 0 or 1, every collected test reported, no -x / maxfail stop),
  points `latest` at it. An interrupted run is sealed with `"complete": false`; latest stays.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.evidence import (
    DEFAULT_ROOT,
    EVIDENCE_FILE,
    JUNIT_FILE,
    LATEST,
    RESULTS_FILE,
    RUNS_DIR,
    EvidenceError,
    TreeState,
    check_root,
    point_latest,
    read_evidence,
    reserve_set,
    tree_state,
    write_manifest,
)
from harness.metrics_file import write_metrics_file


@dataclass
class SessionEvidence:
    root: Path
    path: Path  # this session's set directory
    tree: TreeState
    sealer: bool  # False in an xdist worker
    user_junit: Path | None = None  # --junitxml given by the user (copied into the set)
    made: list[Path] = field(default_factory=list)  # directories this session created, outermost first
    ran: set[str] = field(default_factory=set)  # node ids with a report
    # Items run to the end (their teardown report). Counted, not a set of node ids: items may share
    # one (schemathesis' parametrize gives every API operation the test's node id), and a set then
    # came out smaller than session.testscollected, so a run that passed looked incomplete.
    finished: int = 0
    sealed: bool = False
    complete: bool = False
    table: list[str] = field(default_factory=list)


KEY = pytest.StashKey[SessionEvidence]()


def session_evidence(config: pytest.Config) -> SessionEvidence:
    """This session's evidence set (the gameday plugin makes one for every session)."""
    return config.stash[KEY]


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("gameday", "gameday scenarios")
    group.addoption("--gameday-report", metavar="DIR", default=DEFAULT_ROOT,
                    help=f"reports root (default: {DEFAULT_ROOT}, relative to the invocation directory): each "
                         f"session writes a new sealed set DIR/{RUNS_DIR}/<utc>-<commit>/ and, when it "
                         "completes, points DIR/latest at it")


def configure(config: pytest.Config) -> None:
    """Called first in the plugin's pytest_configure (before junitxml reads --junitxml)."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        sent = worker.get("gameday")
        if sent is not None:
            config.stash[KEY] = SessionEvidence(Path(sent["root"]), Path(sent["set"]),
                                                TreeState.from_dict(sent["tree"]), sealer=False)
        return
    raw = Path(config.getoption("gameday_report") or DEFAULT_ROOT)
    root = raw if raw.is_absolute() else config.invocation_params.dir / raw
    try:
        check_root(root)
    except EvidenceError as exc:
        raise pytest.UsageError(f"gameday: {exc}") from None
    made = [p for p in (root, root / RUNS_DIR) if not p.exists()]
    tree = tree_state()
    ev = SessionEvidence(root, reserve_set(root, tree), tree, sealer=True, made=made)
    if hasattr(config.option, "xmlpath"):
        if config.option.xmlpath:
            ev.user_junit = (config.invocation_params.dir / config.option.xmlpath).resolve()
        else:
            config.option.xmlpath = str(ev.path / JUNIT_FILE)
    config.stash[KEY] = ev
    config.pluginmanager.register(_Sealer(ev), "gameday-evidence-sealer")


class _Sealer:
    """The controller's side of the session (a plugin object: the hooks see only this session)."""

    def __init__(self, ev: SessionEvidence) -> None:
        self.ev = ev

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist: tell each worker where this session's evidence goes."""
        ev = self.ev
        node.workerinput["gameday"] = {"root": str(ev.root), "set": str(ev.path), "tree": ev.tree.to_dict()}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ev.ran.add(report.nodeid)
        if report.when == "teardown":
            self.ev.finished += 1

    @pytest.hookimpl(trylast=True)  # after junitxml has written its file
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        ev = self.ev
        if not ev.ran:
            _discard(ev)
            return
        (ev.path / EVIDENCE_FILE).touch()  # a session without scenarios still has the (empty) file
        # by scenario id: the records' order is the order workers finished in, under xdist
        ev.table = summary_lines(sorted(read_evidence(ev.path), key=lambda r: str(r.get("scenario"))))
        (ev.path / RESULTS_FILE).write_text("\n".join(ev.table or ["no scenario ran in this session"]) + "\n",
                                            encoding="utf-8")
        if ev.user_junit is not None and ev.user_junit.is_file():
            shutil.copyfile(ev.user_junit, ev.path / JUNIT_FILE)
        write_metrics_file(ev.path)  # the verdicts and reactions vs SLA as OpenMetrics text
        ev.complete = (int(exitstatus) in (0, 1) and not session.shouldfail and not session.shouldstop
                       and ev.finished >= session.testscollected)
        write_manifest(ev.path, ev.tree, complete=ev.complete, exit_status=int(exitstatus))
        ev.sealed = True
        if ev.complete:
            point_latest(ev.root, ev.path)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        ev = self.ev
        if not ev.sealed or not ev.ran:
            return
        tr = terminalreporter
        if ev.table:
            rows = sum(1 for line in ev.table[1:] if line[:1] != " ")
            tr.write_sep("=", f"gameday: {rows} scenario{'s' if rows != 1 else ''}")
            for line in ev.table:
                tr.write_line(line)
        where = f"{ev.root / LATEST} -> {ev.path}" if ev.complete else \
            f"{ev.path} (the run did not complete: {ev.root / LATEST} not moved)"
        tr.write_line(f"evidence: {where}")

    def pytest_unconfigure(self) -> None:
        ev = self.ev
        if ev.sealed:
            return
        if read_evidence(ev.path):  # the session broke off after scenarios ran: keep what they wrote
            write_manifest(ev.path, ev.tree, complete=False, exit_status=None)
            ev.sealed = True
        else:
            _discard(ev)


def _discard(ev: SessionEvidence) -> None:
    """Remove this session's own reservation (and the root / runs directories it created, if
    they are empty now): a session that ran nothing leaves nothing."""
    shutil.rmtree(ev.path, ignore_errors=True)
    for made in reversed(ev.made):
        try:
            made.rmdir()
        except OSError:  # not empty: someone else's sets are there now
            break
    ev.sealed = True


# --------------------------------------------------------------------------------------------
# The results table (printed, and saved as results.txt), built from the evidence records
# --------------------------------------------------------------------------------------------


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """A compact table: scenario, verdict, then each expectation with observed / SLA."""
    if not records:
        return []
    width = min(48, max(len(r["scenario"]) for r in records))
    cells = [_observed_sla(e) for r in records for e in r["expectations"]]
    cell = max([len("observed / sla"), *map(len, cells)])
    lines = [f"{'scenario':<{width}}  {'verdict':<7}  {'observed / sla':<{cell}}  expectation"]
    for row in records:
        head = f"{row['scenario']:<{width}}  {row['verdict'].upper():<7}"
        if row["verdict"] == "skipped":
            lines.append(f"{head}  {'-':<{cell}}  {row['message']}")
            continue
        if not row["expectations"]:
            lines.append(head.rstrip())
            continue
        for i, exp in enumerate(row["expectations"]):
            prefix = head if i == 0 else " " * len(head)
            mark = "" if exp["verdict"] == "pass" else f"  [{exp['verdict']}]"
            lines.append(f"{prefix}  {_observed_sla(exp):<{cell}}  {exp['text']}{mark}")
    return lines


def ms_text(value: int | None) -> str:
    return "-" if value is None else f"{value}ms"


def _observed_sla(exp: dict[str, Any]) -> str:
    if exp["kind"] == "never":
        return "held" if exp["verdict"] == "pass" else f"breach@{ms_text(exp['observed_ms'])}"
    if exp["kind"] == "final":
        return str(exp["verdict"])
    sla = ms_text(exp["sla_ms"])
    if exp.get("allowance_ms"):  # net: the scaled threshold + the unscaled allowance
        sla = f"{exp['threshold_ms']}+{exp['allowance_ms']}ms"
    if exp["observed_ms"] is None and exp["verdict"] == "fail":
        return f"never / {sla}"
    return f"{ms_text(exp['observed_ms'])} / {sla}"
