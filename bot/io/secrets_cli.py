"""`python -m bot secrets keygen | encrypt | list` (pets checklist: "ENCRYPTION_KEY generated
(Fernet)", "keys stored encrypted at rest").

    python -m bot secrets keygen > state/encryption_key      # a new Fernet key (keep it apart from the file)
    ENCRYPTION_KEY=... python -m bot secrets encrypt --in secrets.plain --out state/secrets.enc
    python -m bot secrets list                               # each secret name and its source, never a value

Exit codes: 0 done, 2 a secret missing or unsafe (the message says which and the fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.io.secrets import (
    ENCRYPTED_ENV,
    ENCRYPTION_KEY_NAME,
    CredentialError,
    default_loader,
    encrypt_env_file,
    generate_key,
)

KNOWN_NAMES = ("GAMEDAY_API_KEY", "GAMEDAY_API_SECRET", "GAMEDAY_KILL_TOKEN", "GAMEDAY_CONTROL_TOKEN",
               "GAMEDAY_REDIS_PASSWORD", "DB_PASSWORD", ENCRYPTION_KEY_NAME)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="secrets_command", required=True)
    sub.add_parser("keygen", help="print a new Fernet key for ENCRYPTION_KEY")
    enc = sub.add_parser("encrypt", help=f"encrypt a NAME=VALUE file with {ENCRYPTION_KEY_NAME}")
    enc.add_argument("--in", dest="plain", type=Path, required=True, help="the plaintext NAME=VALUE file")
    enc.add_argument("--out", type=Path, required=True,
                     help=f"the encrypted file (mode 0600; point {ENCRYPTED_ENV} at it)")
    lst = sub.add_parser("list", help="where each secret would come from (names only)")
    lst.add_argument("names", nargs="*", help=f"secret names (default: {', '.join(KNOWN_NAMES)})")


def run(args: argparse.Namespace) -> int:
    try:
        if args.secrets_command == "keygen":
            print(generate_key())
            return 0
        loader = default_loader()
        if args.secrets_command == "encrypt":
            key = loader.require(ENCRYPTION_KEY_NAME)
            count = encrypt_env_file(args.plain, args.out, key)
            print(f"secrets: {count} secret(s) from {args.plain} encrypted into {args.out} (mode 0600); "
                  f"set {ENCRYPTED_ENV}={args.out} and delete the plaintext", file=sys.stderr)
            return 0
        for name in args.names or KNOWN_NAMES:
            print(f"{name}: {loader.where(name) or 'not set'}")
        return 0
    except CredentialError as exc:
        print(f"secrets: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"secrets: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
