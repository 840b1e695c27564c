"""`gameday`: the harness's command line.

    gameday run [PATHS ...] [-m EXPR] [-k EXPR] [-v] [-q] [-x] [-n N] [--lf] [--ff] [--maxfail N]
                [--report DIR] [-- PYTEST ARGS ...]
        Run scenarios (and any tests) with pytest in-process. Each run writes a new sealed evidence
        set DIR/runs/<utc>-<commit>/ (evidence.jsonl, junit.xml, results.txt, metrics.prom, manifest.json,
        net/) and, when it completes, points DIR/latest at it (default DIR: reports); the results table
        ends the output; the exit code is pytest's (harness/evidence.py, harness/pytest_evidence.py).
    gameday drill --random N --seed S [-n N|auto] [--profile futures|pets|both] [--bars B] [--out DIR]
        Randomized fault schedules (hypothesis) run in sim mode against the real bot, checked
        against invariants, over N processes (auto: one per core; the results do not depend on
        it); failures are shrunk and written as scenario files (harness.drill).
    gameday drill --runbook NAME --operator WHO [--operator-script FILE] [--time-scale X] [--report DIR]
        A runbook drill on the local testnet: the incident injected, the automated steps run, each
        human step prompted (or scripted) and timed against its window; an evidence set with
        timeline.md (harness.runbooks.drill).
    gameday testnet ...      the local Binance-compatible exchange simulator (python -m harness.testnet)
    gameday toxiproxy ...    the embedded Toxiproxy-compatible server (python -m harness.toxiproxy)
    gameday services         where Redis and Toxiproxy would come from, and why not
    gameday validate --profile NAME [--markets ...] [--candles FILE ...] [--out DIR]
        Paper-trade the real bot over generated regimes and recorded candles with full costs;
        judge win rate, profit factor, Sharpe, max drawdown, trades and days against the
        profile's validation thresholds; write validation.json + manifest (harness.validate).
    gameday security [--out DIR] [--host] [--only NAMES] [--require-verified]
        bandit, pip-audit, trivy (config, secret, image), container hardening, .env in git, and
        with --host the host checks; one verdict line each; security.sarif + security.json +
        manifest.json in DIR (harness.security.gate; exit 1 on a failed check)
    gameday report DIR... [--out DIR]
        The readiness report of one or more evidence sets: report.html, report.md,
        readiness.json, attestation.json (harness.report). `gameday run` writes one into its set.
    gameday docs [--check]
        Write docs/scenarios.md's fault table from the fault catalog (harness/faults); --check exits 1
        when the committed table differs.
    gameday attest ITEM --by NAME [--note TEXT] [--expires DATE|DAYS]
        A human attestation for a checklist item with a manual: form, audited, kept in
        config/attestations.yaml.

A subcommand is a (name, help, add_arguments, handler) entry in `COMMANDS`; new ones (drills,
reports) register there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REPORT_DIR = "reports"


def project_root() -> Path:
    import harness

    return Path(harness.__file__).resolve().parent.parent


def default_paths() -> list[str]:
    """The project's scenario catalog (falls back to ./scenarios when installed elsewhere)."""
    here = project_root() / "scenarios"
    return [str(here if here.is_dir() else Path("scenarios"))]


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="scenario files or folders (default: the project's scenarios/)")
    p.add_argument("-m", dest="markexpr", metavar="EXPR", default=None,
                   help="only scenarios whose tags match EXPR, e.g. gate, 'gate and not net'")
    p.add_argument("-k", dest="keyword", metavar="EXPR", default=None, help="only scenario ids matching EXPR")
    p.add_argument("--report", metavar="DIR", default=DEFAULT_REPORT_DIR,
                   help=f"reports root: the run's evidence set goes to DIR/runs/<utc>-<commit>/ and DIR/latest "
                        f"points at it when the run completed (default {DEFAULT_REPORT_DIR})")
    common = p.add_argument_group("pytest options (passed through as they are)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more output; repeat for more")
    common.add_argument("-q", "--quiet", action="count", default=0, help="less output; repeat for less")
    common.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    common.add_argument("--maxfail", metavar="N", type=int, default=None, help="stop after N failures")
    common.add_argument("-n", dest="numprocesses", metavar="N", default=None,
                        help="run in N processes (pytest-xdist; 'auto': one per core); one evidence set either way")
    common.add_argument("--lf", "--last-failed", dest="last_failed", action="store_true",
                        help="rerun only what failed last time")
    common.add_argument("--ff", "--failed-first", dest="failed_first", action="store_true",
                        help="run what failed last time first, then the rest")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="only the I-th of N deterministic parts of the scenarios (a CI matrix); "
                        "combine the sets with `gameday merge`")
    p.epilog = ("Any other pytest option passes through after '--', e.g. gameday run scenarios -- --tb=short "
                "-p no:randomly --durations=10 (see python -m pytest --help).")
    p.set_defaults(pytest_args=[])


# pytest plugins a run of scenario files alone never uses; loading them (hypothesis, the
# benchmark and schemathesis stacks, with pytest's assertion rewriting of their modules) costs
# ~0.5 s per process. xdist stays when workers are asked for.
UNUSED_BY_SCENARIOS = ("benchmark", "hypothesispytest", "anyio", "schemathesis", "platformdirs",
                       "xdist.looponfail")


def scenarios_only(paths: Sequence[str]) -> bool:
    """True when `paths` can collect nothing but scenario files (no Python test or conftest)."""
    for raw in paths:
        path = Path(raw.split("::", 1)[0])
        if path.is_dir():
            if next(path.rglob("*.py"), None) is not None:
                return False
        elif path.suffix not in (".yaml", ".yml"):
            return False
    return True


def pytest_argv(args: argparse.Namespace) -> list[str]:
    paths = args.paths or default_paths()
    argv = [*paths, "--gameday-report", str(args.report)]
    if scenarios_only(paths) and not args.pytest_args:  # options after '--' may be a plugin's
        unused = [*UNUSED_BY_SCENARIOS, *(() if args.numprocesses is not None else ("xdist",))]
        argv += [arg for name in unused for arg in ("-p", f"no:{name}")]
    if args.markexpr:
        argv += ["-m", args.markexpr]
    if args.keyword:
        argv += ["-k", args.keyword]
    argv += ["-v"] * args.verbose + ["-q"] * args.quiet
    if args.exitfirst:
        argv.append("-x")
    if args.maxfail is not None:
        argv.append(f"--maxfail={args.maxfail}")
    if args.numprocesses is not None:
        argv += ["-n", str(args.numprocesses)]
    if args.last_failed:
        argv.append("--lf")
    if args.failed_first:
        argv.append("--ff")
    if args.shard:
        argv += ["--shard", args.shard]
    return argv + list(args.pytest_args or [])


def cmd_run(args: argparse.Namespace) -> int:
    """pytest in-process; the gameday plugin makes, seals and points at the evidence set."""
    import pytest

    from harness.pytest_evidence import KEY
    from harness.report.commands import report_run

    class SetOfThisRun:
        """Learns which evidence set the session sealed, so the report goes into that set."""

        path: Path | None = None

        @pytest.hookimpl(trylast=True)
        def pytest_sessionfinish(self, session: pytest.Session) -> None:
            ev = session.config.stash.get(KEY, None)
            self.path = ev.path if ev is not None else None

    catcher = SetOfThisRun()
    code = int(pytest.main(pytest_argv(args), plugins=[catcher]))
    if catcher.path is None or not catcher.path.is_dir():
        return code  # nothing ran: no set, no report
    return report_run(catcher.path, code)


# --------------------------------------------------------------------------------------------
# delegating subcommands
# --------------------------------------------------------------------------------------------


def _passthrough(p: argparse.ArgumentParser) -> None:
    p.set_defaults(args=[])


def cmd_testnet(args: argparse.Namespace) -> int:
    from harness.testnet.__main__ import main

    return int(main(args.args) or 0)


def cmd_toxiproxy(args: argparse.Namespace) -> int:
    from harness.toxiproxy.__main__ import main

    return int(main(args.args) or 0)


def _merge_args(p: argparse.ArgumentParser) -> None:
    from harness.merge import add_arguments

    add_arguments(p)


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.merge import cmd_merge as merge

    return merge(args)


def _drill_args(p: argparse.ArgumentParser) -> None:
    from harness.drill_args import add_arguments

    add_arguments(p)


def cmd_drill(args: argparse.Namespace) -> int:
    from harness.drill_args import mode_problem

    problem = mode_problem(args)
    if problem is not None:  # usage and the problem, exit 2, as argparse does for its own checks
        parser = argparse.ArgumentParser(prog="gameday drill")
        _drill_args(parser)
        parser.error(problem)
    if args.runbook is not None:
        from harness.runbooks.drill import cmd_runbook_drill

        return cmd_runbook_drill(args)
    from harness.drill import cmd_drill as run

    return run(args)


def _security_args(p: argparse.ArgumentParser) -> None:
    from harness.security.gate import add_arguments

    add_arguments(p)


def cmd_security(args: argparse.Namespace) -> int:
    from harness.security.gate import cmd_security as run

    return run(args)


def cmd_services(args: argparse.Namespace) -> int:
    from harness.services import describe_chain

    for line in describe_chain():
        print(line)
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    from harness.report.commands import report_arguments

    report_arguments(p)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.commands import cmd_report as run

    return run(args)


def _attest_args(p: argparse.ArgumentParser) -> None:
    from harness.report.commands import attest_arguments

    attest_arguments(p)


def cmd_attest(args: argparse.Namespace) -> int:
    from harness.report.commands import cmd_attest as run

    return run(args)


# --------------------------------------------------------------------------------------------
# the command table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
    passthrough: bool = False  # the rest of the command line belongs to the delegate


COMMANDS: list[Command] = [
    Command("run", "run scenarios and tests; write evidence and JUnit XML", _run_args, cmd_run),
    Command("drill", "randomized fault schedules against the real bot; check invariants, shrink failures",
            _drill_args, cmd_drill),
    Command("merge", "combine shard or drill evidence sets (one commit, disjoint scenarios) into one sealed set",
            _merge_args, cmd_merge),
    Command("testnet", "run the local Binance-compatible testnet server", _passthrough, cmd_testnet, True),
    Command("toxiproxy", "run the embedded Toxiproxy-compatible server", _passthrough, cmd_toxiproxy, True),
    Command("services", "show where Redis and Toxiproxy come from (or why not)", lambda p: None, cmd_services),
    Command("security", "security gate: bandit, pip-audit, trivy, container hardening (--host: this machine); "
            "SARIF + evidence", _security_args, cmd_security),
    Command("report", "readiness report of evidence sets: HTML, Markdown, JSON, in-toto attestation",
            _report_args, cmd_report),
    Command("attest", "attest a manual checklist item as a named person (audited)", _attest_args, cmd_attest),
]


def _validate_args(p: argparse.ArgumentParser) -> None:
    from harness.validate.cli import add_arguments

    add_arguments(p)


def _docs_args(p: argparse.ArgumentParser) -> None:
    from harness.faults.docs import add_arguments

    add_arguments(p)


def cmd_docs(args: argparse.Namespace) -> int:
    from harness.faults.docs import cmd_docs as run

    return run(args)


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.validate.cli import cmd_validate as run

    return run(args)


COMMANDS.append(Command("docs", "write docs/scenarios.md's fault table from the fault catalog (--check: "
                        "fail when it differs)", _docs_args, cmd_docs))
COMMANDS.append(Command("validate", "paper-trade the strategy over generated and recorded markets; judge it "
                        "against the profile's validation thresholds", _validate_args, cmd_validate))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gameday", description="Chaos harness and readiness evidence for the "
                                     "gameday trading bot.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           add_help=not command.passthrough)
        command.add_arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegates = {c.name: c for c in COMMANDS if c.passthrough}
    if argv and argv[0] in delegates:  # the delegate parses (and explains) its own arguments
        return int(delegates[argv[0]].handler(argparse.Namespace(args=argv[1:])))
    extra: list[str] = []
    if "--" in argv:  # gameday run ... -- PYTEST ARGS
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if extra:
        if args.command != "run":
            build_parser().error(f"'--' passes arguments to pytest and only works with run, not {args.command}")
        args.pytest_args = extra
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
