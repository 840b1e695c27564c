"""`gameday report DIR... [--out DIR]` and `gameday attest ITEM --by NAME [--note] [--expires]`,
and the report `gameday run` writes into its evidence set when it ends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.report.build import Outputs

DEFAULT_OUT = "reports/report"


def report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="evidence sets, or folders of them (e.g. reports/runs reports/drills)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where report.html, report.md, readiness.json, attestation.json go (default {DEFAULT_OUT})")
    p.add_argument("--config", type=Path, default=None, metavar="DIR",
                   help="config directory: checklist.yaml, report.yaml, attestations.yaml, profiles "
                        "(default: the project's config/)")
    p.add_argument("--bot-status", type=Path, default=None, metavar="FILE",
                   help="the bot's GET /status body, saved: its capital ramp stage and red-flag checks")
    p.add_argument("--commit", default=None, metavar="SHA",
                   help="judge evidence against this commit (default: the checkout's HEAD)")


def cmd_report(args: argparse.Namespace) -> int:
    from bot.config import ConfigError
    from harness.report.build import write_report
    from harness.report.production import BotStatusError
    from harness.report.sets import SetError

    try:
        outputs = write_report([Path(d) for d in args.dirs], Path(args.out), config_dir=args.config,
                               commit=args.commit, bot_status=args.bot_status)
    except (SetError, ConfigError, BotStatusError) as exc:
        print(f"gameday report: {exc}", file=sys.stderr)
        return 2
    _print_outputs(outputs)
    return 0


def _print_outputs(outputs: Outputs) -> None:
    r = outputs.readiness
    print(f"readiness: {r.verified} of {r.total} checklist items verified by current evidence ({r.percent:.0f}%); "
          + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in r.counts.items() if n and s != "verified")
          + (f" ({r.partly_verified} of these partly: some of their evidence verified, the rest missing)"
             if r.partly_verified else ""))
    untrusted = [s for s in r.sets if not s.counted]
    for s in untrusted:
        print(f"not counted: {s.name}: {s.trust}: {s.problems[0] if s.problems else ''}")
    print(f"report: {outputs.html}")
    print(f"summary: {outputs.md}")
    print(f"readiness data: {outputs.json}")
    if outputs.attestation is not None:
        print(f"attestation: {outputs.attestation}")
    else:
        print("attestation: not written (no trusted evidence file to attest)")


def report_run(evidence_dir: Path, code: int) -> int:
    """The end of `gameday run`: the report of the set just sealed, written into it. Returns the
    run's exit code, or 2 when the run passed but its report could not be made."""
    from bot.config import ConfigError
    from harness.report.build import write_report
    from harness.report.sets import SetError

    try:
        outputs = write_report([evidence_dir], evidence_dir)
    except (SetError, ConfigError) as exc:
        print(f"gameday run: no readiness report: {exc}", file=sys.stderr)
        return code or 2
    _print_outputs(outputs)
    return code


def attest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("item", metavar="ITEM",
                   help="a checklist item with a manual: form, e.g. PETS.signoff.security_audit")
    p.add_argument("--by", required=True, metavar="NAME", help="the person who attests (their name, not a role)")
    p.add_argument("--note", default="", metavar="TEXT", help="what was checked, where the record is")
    p.add_argument("--expires", default=None, metavar="DATE|DAYS",
                   help="YYYY-MM-DD, or a number of days (default and maximum from config/report.yaml)")
    p.add_argument("--config", type=Path, default=None, metavar="DIR",
                   help="config directory holding checklist.yaml and attestations.yaml (default: the project's)")


def cmd_attest(args: argparse.Namespace) -> int:
    from bot.config import ConfigError
    from bot.config import config_dir as default_config_dir
    from harness.report.attest import AttestError, attest, paths
    from harness.report.checklist import load_checklist
    from harness.report.config import load_report_config

    cfg_dir = args.config or default_config_dir()
    try:
        items = load_checklist(cfg_dir)
        config = load_report_config(cfg_dir)
        given = attest(cfg_dir, items, config, args.item, args.by, args.note, args.expires)
    except (AttestError, ConfigError) as exc:
        print(f"gameday attest: {exc}", file=sys.stderr)
        return 2
    yaml_path, audit_path = paths(cfg_dir)
    print(f"attested {given.item} by {given.by} (for the role {given.role}), valid until {given.expires.isoformat()}")
    print(f"audit record {given.seq} ({given.hash[:16]}...) in {audit_path}")
    print(f"commit {yaml_path} and {audit_path}: the attestation travels with the code, and the chain shows "
          f"any later hand edit")
    return 0
