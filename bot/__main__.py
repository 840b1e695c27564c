"""python -m bot run | killswitch | access | config check | audit verify | secrets keygen|encrypt|list

Everything the process writes goes through bot.io.redaction: a loaded secret never reaches a log
line, a stream or a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.config import ConfigError, load_policy, summary


def _config_check(args: argparse.Namespace) -> int:
    try:
        loaded = load_policy(
            None if (args.policy or args.breakers) and not args.profile else args.profile or "futures",
            policy_file=args.policy, breakers_file=args.breakers,
        )
        from bot.io.alerts import alerts_summary, load_alert_config

        alerts = load_alert_config(args.alerts)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    print("\n".join(summary(loaded)))
    print(alerts_summary(alerts))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from bot.io.audit_anchor import main_verify

    return main_verify([str(args.file), *args.rest])


def _run(args: argparse.Namespace) -> int:
    from bot.live import main_run

    return main_run(args)


def _access(args: argparse.Namespace) -> int:
    from bot.io.access import main_access

    return main_access(args)


def _killswitch(args: argparse.Namespace) -> int:
    from bot.killswitch_cli import run

    return run(args)


def _secrets(args: argparse.Namespace) -> int:
    from bot.io.secrets_cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="policy configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate the policy files and a profile")
    check.add_argument("--profile", help="config/profiles/NAME.yaml (default: futures)")
    check.add_argument("--policy", type=Path, help="a risk_policy.yaml to check instead of config/'s")
    check.add_argument("--breakers", type=Path, help="a circuit_breakers.toml to check instead")
    check.add_argument("--alerts", type=Path, help="an alerts.yaml to check instead of config/'s")
    check.set_defaults(handler=_config_check)

    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="verify the hash chain of an audit log")
    verify.add_argument("file", type=Path)
    verify.add_argument("rest", nargs=argparse.REMAINDER, help="--head HASH, --state STORE, --evidence DIR, "
                        "--anchor SEQ:HASH: anchors kept apart from the log (python -m bot audit verify FILE -h)")
    verify.set_defaults(handler=_audit_verify)

    secrets = commands.add_parser("secrets", help="Fernet key and encrypted secrets file; where each secret comes from")
    from bot.io.secrets_cli import add_arguments as secrets_arguments

    secrets_arguments(secrets)
    secrets.set_defaults(handler=_secrets)

    from bot import killswitch_cli, live
    from bot.io import access as access_module

    run = commands.add_parser("run", help="run the bot against the testnet or the real venue")
    live.add_arguments(run)
    run.set_defaults(handler=_run)

    kill = commands.add_parser("killswitch", help="engage / clear / show the kill switch (works with the bot down)")
    killswitch_cli.add_arguments(kill)
    kill.set_defaults(handler=_killswitch)

    access = commands.add_parser("access", help="principals and roles of the control API and the kill switch")
    access_module.add_arguments(access)
    access.set_defaults(handler=_access)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bot.io import redaction

    argv = sys.argv[1:] if argv is None else argv
    with redaction.install():
        args = build_parser().parse_args(argv)
        args.argv = list(argv)  # `run` re-executes itself with these on a restart request
        return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
