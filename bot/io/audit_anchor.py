"""Anchors of the audit chain, kept where a rewrite of the log cannot reach them, and the HMAC key.

The hash chain (bot.io.audit) proves the log is one unbroken sequence, not that it is the whole
sequence: a log cut at a record boundary, or rewritten whole, is a valid chain. So the bot keeps
the chain head, ``{"seq": N, "hash": H}`` (the hash of record N), apart from the log:

- in its state store, with every snapshot (``audit_head`` in the snapshot);
- in every heartbeat alert (its title and data);
- in every evidence set: each ``audit.jsonl`` in the set has its head in the sealed manifest
  (``audit_anchors``, harness/evidence.py).

`python -m bot audit verify FILE` checks the chain, then the log against every anchor it can find
(the state store of ``--state``, default the bot's, the manifests of ``--evidence DIR`` and each
``--anchor SEQ:HASH`` copied from a heartbeat) and says which it used and what they show:

- ``anchored``: each anchor's record is in the log with the anchor's hash;
- ``truncated after seq N``: an anchor names a record N+k the log does not have any more;
- ``rewritten from seq M``: the log has the anchored seq with another hash; M is the first record
  after the last anchor that still matches (the rewrite began there or later);
- ``head unanchored``: no anchor found: a cut or a whole rewrite would pass unseen.

The HMAC key (``GAMEDAY_AUDIT_HMAC_KEY``, from the secrets loader: environment, Docker secret,
Vault, encrypted file - never beside the log) authenticates each record: with it, `verify`
finds an edit or a rewrite at the exact record even without an anchor (bot.io.audit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.io.audit import VerifyResult, verify

AUDIT_HMAC_KEY_NAME = "GAMEDAY_AUDIT_HMAC_KEY"
HMAC_KEY_MIN_CHARS = 32
SNAPSHOT_FIELD = "audit_head"
MANIFEST_FIELD = "audit_anchors"
DEFAULT_STATE = "state/bot.db"
DEFAULT_STATE_KEY = "bot"
_ANCHOR_RE = re.compile(r"(\d+):([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SecretGetter(Protocol):
    def get(self, key: str) -> str | None: ...


class AnchorError(Exception):
    """An anchor source or the HMAC key cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    source: str  # where it was found, for the verdict


def head_fields(head: tuple[int, str] | None) -> dict[str, Any] | None:
    """The anchor as stored in a snapshot, a manifest or a heartbeat's data."""
    return None if head is None else {"seq": head[0], "hash": head[1]}


def audit_hmac_key(loader: SecretGetter | None = None) -> bytes | None:
    """The HMAC key from the secrets loader (None: not configured). Refuses a short key."""
    if loader is None:
        from bot.io.secrets import default_loader

        loader = default_loader()
    value = loader.get(AUDIT_HMAC_KEY_NAME)
    if not value:
        return None
    if len(value) < HMAC_KEY_MIN_CHARS:
        raise AnchorError(f"{AUDIT_HMAC_KEY_NAME} is {len(value)} characters, need at least {HMAC_KEY_MIN_CHARS}: "
                          "make one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    return value.encode()


def chain_head(path: str | os.PathLike[str]) -> tuple[int, str] | None:
    """(seq, hash) of the last whole record of a log (not verified: that is `verify`'s job)."""
    with open(path, "rb") as f:
        last = b""
        for line in f:
            if line.endswith(b"\n"):
                last = line
    if not last:
        return None
    try:
        record = json.loads(last)
        return int(record["seq"]), str(record["hash"])
    except (ValueError, KeyError, TypeError):
        return None


def _anchor_from(data: Any, source: str) -> Anchor | None:
    if not isinstance(data, dict):
        return None
    seq, digest = data.get("seq"), data.get("hash")
    if type(seq) is not int or not isinstance(digest, str) or seq < 0:
        return None
    return Anchor(seq, digest, source)


def anchors_from_state(target: str, key: str = DEFAULT_STATE_KEY) -> list[Anchor]:
    """The head saved with the bot's last snapshot in the state store at `target`."""
    from bot.io.state import StateStoreError, open_store

    try:
        store = open_store(target)
    except StateStoreError as exc:
        raise AnchorError(f"state store {target}: cannot be opened: {exc}") from exc
    try:
        snapshot = store.get(key)
    except StateStoreError as exc:
        raise AnchorError(f"state store {target}: cannot be read: {exc}") from exc
    finally:
        store.close()
    anchor = _anchor_from((snapshot or {}).get(SNAPSHOT_FIELD), f"state store {target} (key {key})")
    return [anchor] if anchor is not None else []


def anchors_from_evidence(directory: Path, log: Path) -> list[Anchor]:
    """The head the sealed manifest of an evidence set holds for `log` (a log inside the set), or
    for the set's only audit log."""
    manifest = directory / "manifest.json"
    try:
        anchors = json.loads(manifest.read_text()).get(MANIFEST_FIELD) or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise AnchorError(f"{manifest}: not a readable evidence manifest: {exc}") from exc
    name: str | None
    try:
        name = log.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        name = next(iter(anchors)) if len(anchors) == 1 else None
    anchor = _anchor_from(anchors.get(name), f"evidence manifest {manifest} ({name})") if name else None
    return [anchor] if anchor is not None else []


def parse_anchor(text: str) -> Anchor:
    match = _ANCHOR_RE.fullmatch(text)
    if match is None:
        raise AnchorError(f"--anchor must be SEQ:HASH (a number, ':', 64 lowercase hex), got {text!r}")
    return Anchor(int(match.group(1)), match.group(2), f"--anchor {text[:24]}...")


def _hashes_at(path: str | os.PathLike[str], seqs: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    with open(path, "rb") as f:
        for seq, line in enumerate(f, start=1):
            if seq in seqs:
                found[seq] = str(json.loads(line)["hash"])
    return found


def anchor_verdict(path: str | os.PathLike[str], result: VerifyResult, anchors: Iterable[Anchor]
                   ) -> tuple[bool, str]:
    """Whether a log whose chain verified is consistent with the anchors, and the one-line verdict."""
    anchors = sorted(anchors, key=lambda a: a.seq)
    last = result.records
    if not anchors:
        return True, (f"head unanchored: no anchor found for seq {last}; a log cut after a record or rewritten "
                      "whole would pass - pass --state, --evidence or --anchor SEQ:HASH (from a heartbeat)")
    have = _hashes_at(path, {a.seq for a in anchors if 0 < a.seq <= last})
    matched = [a for a in anchors if a.seq == 0 or have.get(a.seq) == a.hash]
    rewritten = [a for a in anchors if a.seq <= last and a not in matched]
    if rewritten:
        bad = rewritten[0]
        before = max((a.seq for a in matched if a.seq < bad.seq), default=0)
        return False, (f"rewritten from seq {before + 1}: {bad.source} says seq {bad.seq} has hash "
                       f"{bad.hash[:16]}..., the log has {have.get(bad.seq, '?')[:16]}... (last matching anchor: "
                       f"seq {before})")
    cut = [a for a in anchors if a.seq > last]
    if cut:
        far = cut[-1]
        return False, (f"truncated after seq {last}: {far.source} says seq {far.seq} existed (hash "
                       f"{far.hash[:16]}...); records {last + 1}..{far.seq} are gone")
    top = matched[-1]
    sources = "; ".join(sorted({a.source for a in matched}))
    if top.seq == last:
        return True, f"anchored: head seq {last} matches {sources}"
    return True, (f"anchored up to seq {top.seq} ({sources}); the {last - top.seq} later records were written "
                  "after that anchor")


def main_verify(argv: Sequence[str]) -> int:
    """`python -m bot audit verify FILE [--head HASH] [--state T] [--evidence DIR] [--anchor SEQ:HASH]`:
    0 intact and consistent with every anchor found, 1 broken / truncated / rewritten, 2 cannot read."""
    parser = argparse.ArgumentParser(prog="python -m bot audit verify")
    parser.add_argument("file")
    parser.add_argument("--head", help="hash of a record that must be in the log (detects a cut tail)")
    parser.add_argument("--state", default=None, help=f"the bot's state store (SQLite path or redis://...): its "
                        f"last snapshot holds the chain head (default {DEFAULT_STATE} when it exists)")
    parser.add_argument("--state-key", default=DEFAULT_STATE_KEY, help="the bot's state key (default bot)")
    parser.add_argument("--evidence", type=Path, action="append", default=[],
                        help="an evidence set whose sealed manifest anchors this log (repeatable)")
    parser.add_argument("--anchor", action="append", default=[], help="SEQ:HASH from a heartbeat (repeatable)")
    args = parser.parse_args(list(argv))
    if args.head is not None and not _HEX64.fullmatch(args.head):
        print(f"--head must be 64 lowercase hex characters, got {args.head!r}", file=sys.stderr)
        return 2
    try:
        key = audit_hmac_key()
        anchors = [parse_anchor(a) for a in args.anchor]
        for directory in args.evidence:
            anchors += anchors_from_evidence(directory, Path(args.file))
        state = args.state or (DEFAULT_STATE if Path(DEFAULT_STATE).exists() else None)
        if state is not None:
            anchors += anchors_from_state(state, args.state_key)
        result = verify(args.file, expect_head=args.head, hmac_key=key)
        verdict = anchor_verdict(args.file, result, anchors) if result.ok else None
    except AnchorError as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for line, d in result.repairs:
        kept = f"kept in {d.get('saved_to')}" if d.get("saved_to") else "not kept (could not be written)"
        print(f"{args.file}:{line}: repaired: a torn last line after record {d.get('after_seq')} was cut: "
              f"{d.get('cut_bytes')} bytes, sha256 {d.get('cut_sha256')}, {kept}")
    for line, d in result.late:
        print(f"{args.file}:{line}: late: the next {d.get('records')} records were written late (from "
              f"{d.get('first_ts_ms')} to {d.get('last_ts_ms')} ms), because: {d.get('reason')}")
    if verdict is None:
        print(f"{args.file}:{result.first_bad_line}: {result.reason}")
        return 1
    print(f"ok: {result.records} records, chain intact"
          + (f", {len(result.repairs)} repair(s)" if result.repairs else "")
          + (f", {len(result.late)} late batch(es)" if result.late else ""))
    if key is not None:
        print(f"authenticated with {AUDIT_HMAC_KEY_NAME}"
              + (f" ({result.unauthenticated} earlier records carry no HMAC: written before the key was set)"
                 if result.unauthenticated else ""))
    ok, text = verdict
    print(text)
    return 0 if ok else 1
