"""Human attestations for checklist items with a `manual:` form: `gameday attest ITEM --by NAME`.

Where they live, and why: `config/attestations.yaml`, committed, beside its hash-chained audit
log `config/attestations.audit.jsonl` (bot.io.audit.AuditLog). An attestation is a human act
about the system, not an output of one run: it must outlive the run directories (which a run
replaces), apply across commits until it expires, and be reviewed like any change, with who and
when in the git history (MiFID II RTS 6 Art 5(7): change log with who, when, approver). The
audit log makes a hand edit visible: the report counts an entry of the YAML file only when the
audit chain verifies and the record the entry names (seq + hash) holds the same fields.

An attestation counts while its item's `manual.what` still reads as it did when it was given,
and until its expiry date (inclusive); after that the item is stale.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.io.audit import AuditLog, verify
from harness.evidence import git_commit, iso_z
from harness.report.checklist import Item
from harness.report.config import ReportConfig
from harness.report.sets import parse_time

ATTESTATIONS_FILE = "attestations.yaml"
AUDIT_FILE = "attestations.audit.jsonl"
SCHEMA = "gameday.attestations/v1"
ACTION = "checklist.attested"
DETAIL_KEYS = ("item", "by", "role", "what", "note", "at", "expires", "commit")
HEADER = """\
# Human attestations for the checklist items with a `manual:` form. Written by
# `gameday attest ITEM --by NAME [--note TEXT] [--expires DATE|DAYS]`; each entry names its record
# in attestations.audit.jsonl (hash-chained): the readiness report counts an entry only when that
# record matches it. Commit both files. Do not edit by hand: attest again instead.
"""


class AttestError(Exception):
    """The attestation cannot be given; the message says why and what to do."""


@dataclass(frozen=True)
class Attestation:
    item: str
    by: str
    role: str
    what: str
    note: str
    at: datetime
    expires: date
    commit: str
    seq: int
    hash: str

    def details(self) -> dict[str, str]:
        return {"item": self.item, "by": self.by, "role": self.role, "what": self.what, "note": self.note,
                "at": iso_z(self.at), "expires": self.expires.isoformat(), "commit": self.commit}

    def expired(self, today: date) -> bool:
        return today > self.expires


@dataclass
class AttestationBook:
    path: Path
    attestations: list[Attestation] = field(default_factory=list)  # those whose audit record matches
    problems: list[str] = field(default_factory=list)  # entries not counted, and why

    def latest(self, item: str) -> Attestation | None:
        mine = [a for a in self.attestations if a.item == item]
        return max(mine, key=lambda a: a.at) if mine else None


def paths(config_dir: Path) -> tuple[Path, Path]:
    return config_dir / ATTESTATIONS_FILE, config_dir / AUDIT_FILE


def load_attestations(config_dir: Path) -> AttestationBook:
    path, audit_path = paths(config_dir)
    book = AttestationBook(path)
    entries = _read_entries(path, book.problems)
    if not entries:
        return book
    records: dict[int, Mapping[str, Any]] = {}
    if not audit_path.is_file():
        book.problems.append(f"{audit_path.name} is missing: none of the {len(entries)} attestations in "
                             f"{path.name} can be checked, so none counts")
        return book
    result = verify(audit_path)
    good_lines = result.records
    if not result.ok:
        book.problems.append(f"{audit_path.name}:{result.first_bad_line}: {result.reason}; attestations recorded "
                             f"from that line on do not count")
    with audit_path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if n > good_lines:
                break
            record = json.loads(line)
            records[int(record["seq"])] = record
    for n, entry in enumerate(entries):
        where = f"{path.name}: attestations[{n}]"
        att = _entry(entry, where, book.problems)
        if att is None:
            continue
        record = records.get(att.seq)
        if record is None:
            book.problems.append(f"{where} ({att.item}, by {att.by}): audit record {att.seq} is not in "
                                 f"{audit_path.name}: not counted")
            continue
        if record["hash"] != att.hash or record["action"] != ACTION or record["actor"] != att.by \
                or record["details"] != att.details():
            book.problems.append(f"{where} ({att.item}, by {att.by}): differs from audit record {att.seq} "
                                 f"(edited by hand?): not counted")
            continue
        book.attestations.append(att)
    return book


def _read_entries(path: Path, problems: list[str]) -> list[Any]:
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        problems.append(f"{path.name}: cannot parse ({' '.join(str(exc).split())}): no attestation counts")
        return []
    entries = data.get("attestations") if isinstance(data, Mapping) else None
    if entries is None:
        return []
    if not isinstance(entries, list):
        problems.append(f"{path.name}: attestations: expected a list, got {type(entries).__name__}")
        return []
    return entries


def _entry(entry: Any, where: str, problems: list[str]) -> Attestation | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected a mapping")
        return None
    audit = entry.get("audit")
    at = parse_time(entry.get("at"))
    try:
        expires = date.fromisoformat(str(entry.get("expires")))
    except ValueError:
        expires = None
    texts = {k: entry.get(k) for k in ("item", "by", "role", "what", "note", "commit")}
    if (not all(isinstance(v, str) for v in texts.values()) or at is None or expires is None
            or not isinstance(audit, Mapping) or type(audit.get("seq")) is not int
            or not isinstance(audit.get("hash"), str)):
        problems.append(f"{where}: malformed (needs item, by, role, what, note, at, expires, commit, "
                        f"audit: {{seq, hash}}): not counted")
        return None
    return Attestation(texts["item"], texts["by"], texts["role"], texts["what"], texts["note"],  # type: ignore[arg-type]
                       at, expires, texts["commit"], audit["seq"], audit["hash"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Giving one
# --------------------------------------------------------------------------------------------


def parse_expiry(text: str | None, today: date, config: ReportConfig) -> date:
    """`--expires`: a date (YYYY-MM-DD) or a number of days from today; default from config."""
    limit = today + timedelta(days=config.max_expiry_days)
    if text is None:
        return today + timedelta(days=config.default_expiry_days)
    raw = text.strip()
    if re.fullmatch(r"\d+", raw):
        days = int(raw)
        if not 1 <= days <= config.max_expiry_days:
            raise AttestError(f"--expires {raw}: between 1 and {config.max_expiry_days} days "
                              f"(attestations.max_expiry_days in {config.path.name})")
        return today + timedelta(days=days)
    try:
        when = date.fromisoformat(raw)
    except ValueError:
        raise AttestError(f"--expires {raw!r}: expected a date (YYYY-MM-DD) or a number of days") from None
    if when <= today:
        raise AttestError(f"--expires {raw}: must be after today ({today.isoformat()})")
    if when > limit:
        raise AttestError(f"--expires {raw}: at most {config.max_expiry_days} days ahead ({limit.isoformat()}; "
                          f"attestations.max_expiry_days in {config.path.name})")
    return when


def find_manual_item(items: Sequence[Item], item_id: str) -> Item:
    manual = [i for i in items if i.manual is not None]
    for item in items:
        if item.id == item_id:
            if item.manual is None:
                raise AttestError(f"{item_id} is verified by {', '.join(item.forms) or 'nothing yet'}, not by a "
                                  f"person: only items with a manual: form take an attestation "
                                  f"({', '.join(i.id for i in manual)})")
            return item
    close = difflib.get_close_matches(item_id, [i.id for i in manual], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise AttestError(f"{item_id}: not a checklist item{hint} (items with a manual: form: "
                      f"{', '.join(i.id for i in manual)})")


def attest(config_dir: Path, items: Sequence[Item], config: ReportConfig, item_id: str, by: str,
           note: str = "", expires: str | None = None, now: datetime | None = None) -> Attestation:
    """Record one attestation: the audit record first (fsynced), then the YAML file (atomically)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    name = " ".join(by.split())
    if not name or not re.search(r"[^\W\d_]", name):
        raise AttestError("--by: the name of the person who attests (e.g. --by 'Dana Risk'), not empty")
    item = find_manual_item(items, item_id)
    assert item.manual is not None
    until = parse_expiry(expires, now.date(), config)
    path, audit_path = paths(config_dir)
    draft = Attestation(item.id, name, item.manual.by, item.manual.what, " ".join(note.split()),
                        now.replace(microsecond=now.microsecond // 1000 * 1000), until, git_commit(), 0, "")
    lock = os.open(config_dir, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one attestation at a time in this config dir
        problems: list[str] = []
        entries = _read_entries(path, problems)
        if problems:
            raise AttestError(f"{path}: {problems[0]}; fix the file (git checkout) before attesting")
        with AuditLog(audit_path) as log:
            record = log.append(name, ACTION, draft.details(), int(now.timestamp() * 1000))
        given = Attestation(**{**draft.__dict__, "seq": record["seq"], "hash": record["hash"]})
        entries.append({**given.details(), "audit": {"seq": given.seq, "hash": given.hash}})
        _write_yaml(path, entries)
    finally:
        os.close(lock)
    return given


def _write_yaml(path: Path, entries: list[Any]) -> None:
    body = yaml.safe_dump({"schema": SCHEMA, "attestations": entries}, sort_keys=False, allow_unicode=True,
                          width=110)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(HEADER + body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
