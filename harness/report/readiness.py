"""Every checklist item judged against the evidence: verified / failed / stale / not run / manual.

Rules (the readiness figure counts only what evidence proves):
- Only sealed sets count (harness.report.sets); a tampered, unsealed or unreadable set is shown
  and never read.
- A piece of evidence is current when its age is within the freshness window of its kind
  (config/report.yaml): one window for evidence from the target commit with the target config
  digest, another for evidence from any other commit or config (0 by default: never current).
  Scenario evidence recorded in real time (net mode at time scale 1) is a game day and has its
  own window.
- Each cited reference is decided by its newest current evidence: scenarios by their record
  (pass / fail / error), tests by the junit results of the newest current set that ran them (every
  matching test case passed; a skipped one did not run), scans by the security gate's verdict
  ("not verified" is not a pass), validation by the profile's verdict. A reference with evidence
  but none current is stale; one with no evidence at all is not run.
- An item is failed when any reference failed; else not run when any reference has no
  evidence; else stale when any is stale; else manual when it needs a human attestation (which
  must exist, match the item's current wording and not be expired - else not run / stale);
  else verified. Only verified items count toward the figure: a manual item is shown apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from harness.report.attest import Attestation, AttestationBook
from harness.report.checklist import Item
from harness.report.config import ReportConfig, Window
from harness.report.sets import EvidenceSet, JUnitCase, parse_time
from harness.report.units import age, expectation_kind, observed_vs_sla, short_commit, short_digest

Status = Literal["verified", "failed", "stale", "not_run", "manual"]
STATUSES: tuple[Status, ...] = ("verified", "failed", "stale", "not_run", "manual")
LABELS: Mapping[str, str] = {"verified": "Verified", "failed": "Failed", "stale": "Stale", "not_run": "Not run",
                             "manual": "Manual"}
_SEVERITY: Mapping[str, int] = {"failed": 0, "not_run": 1, "stale": 2, "manual": 3, "verified": 4}
FORM_LABELS: Mapping[str, str] = {"scenarios": "Scenarios", "tests": "Tests", "scans": "Security scans",
                                  "validation": "Strategy validation", "drills": "Runbook drills",
                                  "manual": "Human attestation",
                                  "none": "No machine evidence"}


@dataclass(frozen=True)
class Target:
    """What the report judges: this commit, with these config digests (one per profile)."""

    commit: str
    digests: Mapping[str, str]

    def same_commit(self, commit: str | None) -> bool:
        if not commit or commit == "unknown" or self.commit == "unknown":
            return False
        short, long_ = sorted((commit, self.commit), key=len)
        return len(short) >= 7 and long_.startswith(short)


@dataclass(frozen=True)
class Reaction:
    """One timed expectation, for the reaction-time plot."""

    item: str
    scenario: str
    text: str
    observed_ms: int | None
    sla_ms: int
    verdict: str


@dataclass
class Proof:
    """The evidence shown for one reference of an item."""

    kind: str  # scenario | test | scan | validation | attestation | none
    ref: str
    status: Status
    summary: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (verdict word, text)
    commit: str | None = None
    config_digest: str | None = None
    when: datetime | None = None
    set_name: str | None = None
    currency: str = ""  # why it is (not) current
    record: Mapping[str, Any] | None = None  # the scenario record used
    cases: int = 0  # test cases the reference matched

    @property
    def commit_short(self) -> str:
        return short_commit(self.commit)

    @property
    def digest_short(self) -> str:
        return short_digest(self.config_digest)


@dataclass
class FormResult:
    kind: str
    status: Status
    proofs: list[Proof]

    @property
    def label(self) -> str:
        return FORM_LABELS[self.kind]


@dataclass
class ItemResult:
    item: Item
    status: Status
    reason: str
    forms: list[FormResult]
    attestation: Attestation | None = None
    reactions: list[Reaction] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.status]


@dataclass
class Readiness:
    generated_at: datetime
    target: Target
    config: ReportConfig
    items: list[ItemResult]
    sets: list[EvidenceSet]
    book: AttestationBook

    @property
    def counted_sets(self) -> list[EvidenceSet]:
        return [s for s in self.sets if s.counted]

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.items if r.status == s) for s in STATUSES}

    @property
    def verified(self) -> int:
        return self.counts["verified"]

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def percent(self) -> float:
        return 100.0 * self.verified / self.total if self.total else 0.0

    @property
    def partly_verified(self) -> int:
        """Items not verified of which some evidence is verified (e.g. a scenario passed in a gate-only
        run, the unit tests were not in it): a reader must not take these for untried."""
        return sum(1 for r in self.items
                   if r.status != "verified" and any(p.status == "verified" for f in r.forms for p in f.proofs))

    def by_status(self, status: str) -> list[ItemResult]:
        return [r for r in self.items if r.status == status]

    @property
    def manual_items(self) -> list[ItemResult]:
        return [r for r in self.items if r.item.manual is not None]


# --------------------------------------------------------------------------------------------
# Currency
# --------------------------------------------------------------------------------------------


def _currency(window: Window, kind: str, target: Target, commit: str | None, when: datetime | None,
              now: datetime, digest: str | None = None, profile: str | None = None) -> tuple[bool, str]:
    same_commit = target.same_commit(commit)
    wanted = target.digests.get(profile) if profile is not None else None
    digest_differs = digest is not None and profile is not None and digest != wanted
    same = same_commit and not digest_differs
    if same:
        where = "this commit and config" if digest is not None else "this commit"
    elif not same_commit:
        where = f"commit {short_commit(commit)}, not the target {short_commit(target.commit)}"
    elif wanted is None:
        where = f"profile {profile!r}, which the current config does not have"
    else:
        where = (f"config digest {short_digest(digest)}, not the current {profile} config "
                 f"{short_digest(wanted)}")
    limit = window.limit(same)
    if limit == 0:
        return False, f"{where}; {kind} evidence from another commit or config never counts"
    if limit is not None:
        if when is None:
            return False, f"{where}; no time recorded, so its age is unknown"
        if now - when > timedelta(days=limit):
            return False, f"{where}; recorded {age(when, now)}, past the {limit:g}-day window for {kind}"
        return True, f"{where}; within the {limit:g}-day window for {kind}"
    return True, where


def _newest(cands: Iterable[tuple[datetime | None, Any]]) -> Any:
    floor = datetime.min.replace(tzinfo=UTC)
    return max(cands, key=lambda c: c[0] or floor)[1]


# --------------------------------------------------------------------------------------------
# One reference of each kind
# --------------------------------------------------------------------------------------------


def is_real_time(record: Mapping[str, Any]) -> bool:
    return record.get("mode") == "net" and float(record.get("time_scale") or 0) == 1.0


def _scenario_proof(ref: str, sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
                    now: datetime) -> Proof:
    runs = [(s, r) for s in sets for r in s.records if r["scenario"] == ref]
    found = [(s, r) for s, r in runs if r["verdict"] != "skipped"]  # a skipped run proves nothing
    if not found:
        skipped = [r for _, r in runs]
        why = f"skipped: {str(skipped[-1].get('message') or '').splitlines()[0][:200]}" if skipped else \
            "not run in any trusted set"
        return Proof("scenario", ref, "not_run", why)
    judged = []
    for s, r in found:
        kind = "game_days" if is_real_time(r) else "scenarios"
        when = parse_time(r["started_at"])
        ok, why = _currency(config.freshness[kind], "game-day" if kind == "game_days" else "scenario", target,
                            r["git_commit"], when, now, r["config_digest"], r["profile"])
        judged.append((when, (s, r, ok, why)))
    current = [j for j in judged if j[1][2]]
    s, r, ok, why = _newest(current or judged)
    verdict = r["verdict"]
    expectations = r["expectations"]
    lines = [(("pass" if e.get("verdict") == "pass" else str(e.get("verdict"))),
              f"{e.get('text')}: {observed_vs_sla(e, r)}") for e in expectations]
    if verdict == "pass":
        summary = f"passed ({len(expectations)} expectation{'s' if len(expectations) != 1 else ''} met)"
    elif verdict == "fail":
        bad = [e for e in expectations if e.get("verdict") != "pass"]
        first = bad[0] if bad else None
        summary = "failed" + (f": {first.get('text')}: {observed_vs_sla(first, r)}" if first else "")
    else:
        summary = "error (a fault was not injected: proves nothing): " + str(r.get("message", "")).splitlines()[0]
    status: Status = ("verified" if verdict == "pass" else "failed") if ok else "stale"
    if not ok:
        summary = f"{summary}; stale: {why}"
    others = sum(1 for j in current if j[1][1] is not r and j[1][1]["verdict"] != "pass")
    if ok and verdict == "pass" and others:
        summary += f" (an earlier current run failed {others}x: newest decides)"
    return Proof("scenario", ref, status, summary, lines, r["git_commit"], r["config_digest"],
                 parse_time(r["started_at"]), s.name, why, r)


def drill_scenario_id(runbook: str) -> str:
    """The evidence record's scenario id of `gameday drill --runbook RUNBOOK` (harness.runbooks.drill)."""
    return "drill-" + runbook.replace("_", "-")


def _drill_proof(ref: str, sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
                 now: datetime) -> Proof:
    """A runbook drill counts only as the scheduled workflow runs it: at production time scale (1)."""
    sid = drill_scenario_id(ref)
    scaled = [r for s in sets for r in s.records if r["scenario"] == sid and not is_real_time(r)]
    real = [replace(s, records=[r for r in s.records if r["scenario"] == sid and is_real_time(r)]) for s in sets]
    proof = _scenario_proof(sid, real, target, config, now)
    if proof.status == "not_run" and scaled:
        proof = replace(proof, summary=f"ran only at time scale {scaled[-1].get('time_scale')}: a drill counts at "
                                       "production time scale (gameday drill --time-scale 1)")
    return replace(proof, kind="drill", ref=ref)


def junit_matcher(ref: str) -> Callable[[JUnitCase], bool]:
    """A checklist `tests:` reference (file path, directory, or pytest node id) as a predicate on
    JUnit test cases (pytest writes classname = dotted module path [+ .Class], name = function[params])."""
    path, _, rest = ref.partition("::")
    module = path[:-3] if path.endswith(".py") else path.rstrip("/")
    dotted = module.replace("/", ".")
    if not rest:
        return lambda c: c.classname == dotted or c.classname.startswith(dotted + ".")
    *classes, func = rest.split("::")
    owner = ".".join([dotted, *classes])
    return lambda c: c.classname == owner and (c.name == func or c.name.startswith(func + "["))


def _test_proof(ref: str, sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
                now: datetime) -> Proof:
    match = junit_matcher(ref)
    judged = []
    for s in sets:
        cases = [c for c in s.testcases if match(c)]
        if cases:
            when = s.tests_at or s.created_at
            ok, why = _currency(config.freshness["tests"], "test", target, s.commit, when, now)
            judged.append((when, (s, cases, ok, why)))
    if not judged:
        return Proof("test", ref, "not_run", "not run in any trusted set (no matching test in any junit.xml)")
    current = [j for j in judged if j[1][2]]
    s, cases, ok, why = _newest(current or judged)
    tally = {o: sum(1 for c in cases if c.outcome == o) for o in ("passed", "failed", "error", "skipped")}
    summary = ", ".join(f"{n} {o}" for o, n in tally.items() if n)
    bad = [c for c in cases if c.outcome in ("failed", "error")]
    skipped = [c for c in cases if c.outcome == "skipped"]
    status: Status
    if bad:
        status = "failed"
        summary += ": " + ", ".join(c.name for c in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    elif skipped:
        status = "not_run"
        summary += " (a skipped test did not run: it proves nothing)"
    else:
        status = "verified"
    if not ok:
        status = "stale"
        summary += f"; stale: {why}"
    passed = [c for c in cases if c.outcome == "passed"]
    shown = bad + skipped + passed[:5]  # what did not pass, and a sample of what did
    lines = [(c.outcome, f"{c.classname}::{c.name}" + (f": {c.message}" if c.message else "")) for c in shown]
    if len(passed) > 5:
        lines.append(("passed", f"... and {len(passed) - 5} more tests"))
    return Proof("test", ref, status, summary, lines, s.commit, None, s.tests_at or s.created_at, s.name, why,
                 cases=len(cases))


def _scan_proof(ref: str, sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
                now: datetime) -> Proof:
    judged = []
    for s in sets:
        for check in s.scans:
            if check.name == ref:
                when = s.scans_at or s.created_at
                commit = s.scans_commit or s.commit
                ok, why = _currency(config.freshness["scans"], "scan", target, commit, when, now)
                judged.append((when, (s, check, commit, when, ok, why)))
    if not judged:
        return Proof("scan", ref, "not_run", "not run in any trusted set (no such check in any security.json)")
    current = [j for j in judged if j[1][4]]
    s, check, commit, when, ok, why = _newest(current or judged)
    words = {"pass": "passed", "fail": "failed", "not_verified": "not verified"}
    status: Status = {"pass": "verified", "fail": "failed", "not_verified": "not_run"}[check.verdict]  # type: ignore[assignment]
    summary = words[check.verdict] + (f": {check.summary}" if check.summary else "")
    if check.findings is not None:
        summary += f" ({check.findings} finding{'s' if check.findings != 1 else ''})"
    if not ok:
        status = "stale"
        summary += f"; stale: {why}"
    return Proof("scan", ref, status, summary, [], commit, None, when, s.name, why)


def _validation_proof(ref: str, sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
                      now: datetime) -> Proof:
    judged = []
    for s in sets:
        for result in s.validation:
            if result.profile == ref:
                when = s.validation_at or s.created_at
                commit = s.validation_commit or s.commit
                ok, why = _currency(config.freshness["validation"], "validation", target, commit, when, now,
                                    result.config_digest, ref if result.config_digest else None)
                judged.append((when, (s, result, commit, when, ok, why)))
    if not judged:
        return Proof("validation", ref, "not_run", "not run in any trusted set (no validation.json for this profile)")
    current = [j for j in judged if j[1][4]]
    s, result, commit, when, ok, why = _newest(current or judged)
    status: Status = "verified" if result.verdict == "pass" else "failed"
    summary = ("passed" if result.verdict == "pass" else "failed") + (f": {result.message}" if result.message else "")
    if not ok:
        status = "stale"
        summary += f"; stale: {why}"
    return Proof("validation", ref, status, summary, list(result.figures), commit, result.config_digest, when, s.name,
                 why)


def _manual_proof(item: Item, book: AttestationBook, now: datetime) -> tuple[Proof, Attestation | None]:
    assert item.manual is not None
    role, what = item.manual.by, item.manual.what
    att = book.latest(item.id)
    if att is None:
        return Proof("attestation", role, "not_run",
                     f"awaiting attestation ({role}): {what} (gameday attest {item.id} --by NAME)"), None
    left = (att.expires - now.date()).days
    base = (f"attested by {att.by} ({att.role}) on {att.at.date().isoformat()}, valid until "
            f"{att.expires.isoformat()}" + (f" ({left} day{'s' if left != 1 else ''} left)" if 0 <= left <= 14 else ""))
    if att.note:
        base += f": \u201c{att.note}\u201d"
    proof = Proof("attestation", role, "manual", base, [], att.commit, None, att.at, None,
                  f"audit record {att.seq}")
    if att.what != what:
        proof.status, proof.summary = "stale", base + "; the item now asks for something else: attest again"
    elif att.expired(now.date()):
        proof.status, proof.summary = "stale", base + "; expired: attest again"
    return proof, att


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


_PROVERS: Mapping[str, Callable[[str, Sequence[EvidenceSet], Target, ReportConfig, datetime], Proof]] = {
    "scenarios": _scenario_proof, "tests": _test_proof, "scans": _scan_proof, "validation": _validation_proof,
    "drills": _drill_proof,
}


def worst(statuses: Iterable[Status]) -> Status:
    return min(statuses, key=_SEVERITY.__getitem__, default="not_run")


def judge_item(item: Item, sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
               book: AttestationBook, now: datetime) -> ItemResult:
    forms: list[FormResult] = []
    attestation: Attestation | None = None
    for kind, refs in item.refs.items():
        proofs = [_PROVERS[kind](ref, sets, target, config, now) for ref in refs]
        proofs.sort(key=lambda p: _SEVERITY[p.status])  # what needs attention first (stable: file order)
        forms.append(FormResult(kind, worst(p.status for p in proofs), proofs))
    if item.manual is not None:
        proof, attestation = _manual_proof(item, book, now)
        forms.append(FormResult("manual", proof.status, [proof]))
    if item.none is not None:
        forms.append(FormResult("none", "not_run", [Proof("none", "", "not_run", item.none)]))
    forms.sort(key=lambda f: _SEVERITY[f.status])  # the form that needs attention first
    status = worst(f.status for f in forms)
    reactions = [Reaction(item.id, p.ref, str(e.get("text")), e.get("observed_ms"), int(e["sla_ms"]),
                          str(e.get("verdict")))
                 for f in forms for p in f.proofs if p.record is not None and p.status != "stale"
                 for e in p.record["expectations"]
                 if expectation_kind(str(e.get("text", ""))) == "event" and isinstance(e.get("sla_ms"), int)]
    return ItemResult(item, status, _reason(status, forms), forms, attestation, reactions)


def _reason(status: Status, forms: Sequence[FormResult]) -> str:
    proofs = [(f, p) for f in forms for p in f.proofs]
    if status == "verified":
        return "passed, current evidence: " + "; ".join(_tally(f) for f in forms)
    if status == "manual":
        return next(p.summary for f, p in proofs if f.kind == "manual")
    hit = [(f, p) for f, p in proofs if p.status == status]
    if len(hit) == 1:
        f, p = hit[0]
        return f"{p.ref + ': ' if p.ref and p.kind != 'attestation' else ''}{p.summary}"
    names = ", ".join(p.ref for _, p in hit[:6]) + (f" and {len(hit) - 6} more" if len(hit) > 6 else "")
    words = {"failed": "failed", "not_run": "not run", "stale": "stale"}
    return f"{len(hit)} references {words[status]}: {names}"


def _tally(form: FormResult) -> str:
    n = len(form.proofs)
    if form.kind == "tests":
        cases = sum(p.cases for p in form.proofs)
        refs = ", ".join(p.ref for p in form.proofs)
        return f"{cases} test{'s' if cases != 1 else ''} ({refs})"
    noun = {"scenarios": "scenario", "scans": "security scan", "validation": "strategy validation",
            "drills": "runbook drill"}[form.kind]
    return f"{n} {noun}{'s' if n != 1 else ''}"


def evaluate(items: Sequence[Item], sets: Sequence[EvidenceSet], target: Target, config: ReportConfig,
             book: AttestationBook, now: datetime | None = None) -> Readiness:
    now = now or datetime.now(UTC)
    counted = [s for s in sets if s.counted]
    results = [judge_item(i, counted, target, config, book, now) for i in items]
    return Readiness(now, target, config, results, list(sets), book)
