"""Evidence sets as the report reads them: found under the directories given, sealed or not.

A set is a directory holding `manifest.json` (schema gameday.manifest/v1: git commit, created_at,
sha256 of every file) and any of the files below; every file is optional, the manifest is not:

    evidence.jsonl              one gameday.evidence/v1 record per scenario run
    junit.xml                   pytest's JUnit XML (test results by classname + name)
    security.json               the security gate's verdict per check (gameday.security/v1)
    security.sarif              the security gate's findings (SARIF 2.1.0)
    validation.json             `gameday validate`'s result for one profile (gameday.validation/v1)
    drill.json                  a randomized drill's summary (gameday.drill/v1)
    events/<scenario>.jsonl     a scenario's event stream, one Event.to_dict() per line
    net/<scenario>/events.jsonl the same, as net mode keeps it
    results.txt, anything else  listed in the manifest, not read

Trust: a set whose manifest lists every file with a matching digest is `sealed`; a digest that
differs, a listed file that is gone, or a file the manifest does not list (other than the
report's own outputs at the top, which are never evidence, and nested sets, which have their
own manifest) make it `tampered`; no manifest makes it `unsealed`; a sealed file that cannot be parsed makes it
`unreadable`. Only sealed sets count; the others are shown with the reason and never read further.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import defusedxml.ElementTree as ET
from defusedxml import DefusedXmlException

from harness.evidence import MANIFEST_FILE, MANIFEST_SCHEMA, REPORT_OUTPUTS, SCHEMA, sha256_file

EVIDENCE = "evidence.jsonl"
JUNIT = "junit.xml"
SECURITY_JSON = "security.json"
SECURITY_SARIF = "security.sarif"
VALIDATION = "validation.json"
DRILL = "drill.json"
KNOWN_FILES = (MANIFEST_FILE, EVIDENCE, JUNIT, SECURITY_JSON, SECURITY_SARIF, VALIDATION, DRILL)
ARTIFACT_DIRS = ("net", "events")
SECURITY_SCHEMA = "gameday.security/v1"
VALIDATION_SCHEMA = "gameday.validation/v1"
DRILL_SCHEMA = "gameday.drill/v1"

Trust = Literal["sealed", "tampered", "unsealed", "unreadable"]
Outcome = Literal["passed", "failed", "error", "skipped"]
ScanVerdict = Literal["pass", "fail", "not_verified"]


class SetError(Exception):
    """A directory given to the report holds no evidence set."""


@dataclass(frozen=True)
class JUnitCase:
    classname: str
    name: str
    outcome: Outcome
    time_s: float
    message: str = ""


@dataclass(frozen=True)
class ScanCheck:
    name: str
    verdict: ScanVerdict
    summary: str
    findings: int | None


@dataclass(frozen=True)
class Finding:
    tool: str
    rule: str
    level: str
    message: str
    location: str
    suppressed: bool


@dataclass(frozen=True)
class ValidationResult:
    profile: str
    verdict: Literal["pass", "fail"]
    config_digest: str | None
    figures: list[tuple[str, str]]  # (verdict, "win_rate: 0.52 (at least 0.6)") per threshold set
    message: str


@dataclass
class EvidenceSet:
    path: Path
    name: str
    trust: Trust
    problems: list[str] = field(default_factory=list)
    commit: str = "unknown"
    created_at: datetime | None = None
    files: dict[str, str] = field(default_factory=dict)  # manifest: relative path -> "sha256:..."
    records: list[dict[str, Any]] = field(default_factory=list)
    testcases: list[JUnitCase] = field(default_factory=list)
    tests_at: datetime | None = None
    scans: list[ScanCheck] = field(default_factory=list)
    scans_commit: str | None = None
    scans_at: datetime | None = None
    findings: list[Finding] = field(default_factory=list)
    sarif_tools: list[str] = field(default_factory=list)
    validation: list[ValidationResult] = field(default_factory=list)
    validation_commit: str | None = None
    validation_at: datetime | None = None
    drill: dict[str, Any] | None = None
    streams: dict[str, Path] = field(default_factory=dict)  # scenario id -> events file

    @property
    def counted(self) -> bool:
        return self.trust == "sealed"

    @property
    def contents(self) -> list[str]:
        """What the set holds, in words (for the sets table)."""
        out = []
        if self.records:
            out.append(f"{len(self.records)} scenario record{'s' if len(self.records) != 1 else ''}")
        if self.testcases:
            out.append(f"{len(self.testcases)} test result{'s' if len(self.testcases) != 1 else ''}")
        if self.scans:
            out.append(f"{len(self.scans)} security check{'s' if len(self.scans) != 1 else ''}")
        if self.sarif_tools:
            out.append(f"SARIF ({len(self.findings)} finding{'s' if len(self.findings) != 1 else ''})")
        if self.validation:
            out.append("validation of " + ", ".join(v.profile for v in self.validation))
        if self.drill is not None:
            out.append(f"drill of {self.drill.get('schedules', '?')} schedules")
        if self.streams:
            out.append(f"{len(self.streams)} event stream{'s' if len(self.streams) != 1 else ''}")
        return out


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def is_set_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in KNOWN_FILES)


def find_sets(roots: Sequence[Path]) -> list[Path]:
    """Every set directory under the roots (a root may itself be a set, or a folder of sets;
    sets nested in a set, e.g. drills/, are found too), each once, in path order."""
    seen: set[Path] = set()
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise SetError(f"{root}: not a directory (expected an evidence set, or a folder of sets)")
        here = list(_walk(root, depth=0))
        if not here:
            raise SetError(f"{root}: no evidence set here (a set is a directory holding {MANIFEST_FILE} and "
                           f"any of {', '.join(KNOWN_FILES[1:])})")
        for path in here:
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                found.append(path)
    return found


def _walk(path: Path, depth: int) -> Iterator[Path]:
    if depth > 6:
        return
    is_set = is_set_dir(path)
    if is_set:
        yield path
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        if is_set and child.name in ARTIFACT_DIRS:
            continue
        yield from _walk(child, depth + 1)


# --------------------------------------------------------------------------------------------
# Loading one set
# --------------------------------------------------------------------------------------------


def load_set(path: Path, name: str | None = None) -> EvidenceSet:
    out = EvidenceSet(path=path, name=name or path.name, trust="sealed")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        out.trust = "unsealed"
        out.problems.append(f"no {MANIFEST_FILE}: nothing proves these files are what the run wrote")
        return out
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _tampered(out, f"{MANIFEST_FILE} cannot be read: {exc}")
    if not isinstance(manifest, Mapping) or manifest.get("schema") != MANIFEST_SCHEMA \
            or not isinstance(manifest.get("files"), Mapping):
        return _tampered(out, f"{MANIFEST_FILE} is not a {MANIFEST_SCHEMA} manifest")
    out.commit = str(manifest.get("git_commit") or "unknown")
    out.created_at = parse_time(manifest.get("created_at"))
    # The report's own outputs are never evidence: a run that seals a directory still holding an
    # earlier report lists them, and the report then rewrites them.
    files = {str(k): str(v) for k, v in manifest["files"].items() if str(k) not in REPORT_OUTPUTS}
    out.files = files
    for rel, digest in sorted(files.items()):
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            return _tampered(out, f"{MANIFEST_FILE} lists {rel!r}, outside the set")
        target = path / pure
        if not target.is_file():
            out.problems.append(f"{rel}: listed in the manifest but missing")
        elif sha256_file(target) != digest:
            out.problems.append(f"{rel}: sha256 differs from the manifest")
    for rel in _unlisted(path, files):
        out.problems.append(f"{rel}: not in the manifest (added after the set was sealed)")
    if out.problems:
        out.trust = "tampered"
        return out
    _read_contents(out)
    if out.problems:
        out.trust = "unreadable"
    return out


def _tampered(out: EvidenceSet, why: str) -> EvidenceSet:
    out.trust = "tampered"
    out.problems.append(why)
    return out


def _unlisted(root: Path, files: Mapping[str, str]) -> list[str]:
    out: list[str] = []

    def walk(directory: Path) -> None:
        for p in sorted(directory.iterdir()):
            rel = p.relative_to(root).as_posix()
            if p.is_dir():
                if not (p / MANIFEST_FILE).is_file():  # a nested set answers for itself
                    walk(p)
            elif rel not in files and rel not in (MANIFEST_FILE, MANIFEST_FILE + ".tmp") \
                    and rel not in REPORT_OUTPUTS:
                out.append(rel)

    walk(root)
    return out


def _read_contents(out: EvidenceSet) -> None:
    path = out.path
    if (path / EVIDENCE).is_file():
        out.records = _evidence_records(path / EVIDENCE, out.problems)
    if (path / JUNIT).is_file():
        out.testcases, out.tests_at = _junit(path / JUNIT, out.problems)
    if (path / SECURITY_JSON).is_file():
        data = _json(path / SECURITY_JSON, out.problems)
        if data is not None:
            out.scans = _scan_checks(data, out.problems)
            out.scans_commit, out.scans_at = _stamp(data)
    if (path / SECURITY_SARIF).is_file():
        data = _json(path / SECURITY_SARIF, out.problems)
        if data is not None:
            out.sarif_tools, out.findings = _sarif(data, out.problems)
    if (path / VALIDATION).is_file():
        data = _json(path / VALIDATION, out.problems)
        if data is not None:
            out.validation = _validation(data, out.problems)
            out.validation_commit, out.validation_at = _stamp(data)
    if (path / DRILL).is_file():
        data = _json(path / DRILL, out.problems)
        if data is not None:
            if data.get("schema") != DRILL_SCHEMA:
                out.problems.append(f"{DRILL}: schema is {data.get('schema')!r}, expected {DRILL_SCHEMA!r}")
            else:
                out.drill = dict(data)
    for stream in sorted((path / "events").glob("*.jsonl")):
        out.streams[stream.stem] = stream
    for stream in sorted((path / "net").glob("*/events.jsonl")):
        out.streams.setdefault(stream.parent.name, stream)


def _stamp(data: Mapping[str, Any]) -> tuple[str | None, datetime | None]:
    """The commit and time a producer recorded in its own file (the manifest's are the fallback)."""
    return _str_or_none(data.get("git_commit")), parse_time(data.get("created_at") or data.get("started_at"))


def _str_or_none(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None


def _json(path: Path, problems: list[str]) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: not JSON ({exc})")
        return None
    if not isinstance(data, Mapping):
        problems.append(f"{path.name}: expected a JSON object, got {type(data).__name__}")
        return None
    return data


_RECORD_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "scenario": str, "covers": list, "mode": str, "profile": str, "time_scale": (int, float),
    "git_commit": str, "config_digest": str, "started_at": str, "steps": list, "expectations": list,
    "verdict": str,
}


def _evidence_records(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{EVIDENCE}:{n}: not JSON ({exc.msg})")
            continue
        if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
            problems.append(f"{EVIDENCE}:{n}: not a {SCHEMA} record")
            continue
        bad = [k for k, t in _RECORD_TYPES.items() if not isinstance(rec.get(k), t)]
        if bad:
            problems.append(f"{EVIDENCE}:{n}: missing or mistyped {', '.join(bad)}")
            continue
        if rec["verdict"] not in ("pass", "fail", "error", "skipped") or parse_time(rec["started_at"]) is None:
            problems.append(f"{EVIDENCE}:{n}: verdict {rec['verdict']!r} / started_at {rec['started_at']!r} invalid")
            continue
        records.append(rec)
    return records


def _junit(path: Path, problems: list[str]) -> tuple[list[JUnitCase], datetime | None]:
    try:
        root = ET.parse(path).getroot()  # defusedxml: a tampered junit.xml cannot expand entities
    except (ET.ParseError, DefusedXmlException) as exc:
        problems.append(f"{JUNIT}: not XML ({exc})")
        return [], None
    if root is None:
        problems.append(f"{JUNIT}: no root element")
        return [], None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    cases: list[JUnitCase] = []
    stamp: datetime | None = None
    for suite in suites:
        stamp = stamp or parse_time(suite.get("timestamp"))
        for case in suite.iter("testcase"):
            outcome: Outcome = "passed"
            message = ""
            for tag in ("error", "failure", "skipped"):
                child = case.find(tag)
                if child is not None:
                    outcome = {"error": "error", "failure": "failed", "skipped": "skipped"}[tag]  # type: ignore[assignment]
                    text = (child.get("message") or child.text or "").strip()
                    message = text.splitlines()[0] if text else ""
                    break
            try:
                seconds = float(case.get("time") or 0)
            except ValueError:
                seconds = 0.0
            cases.append(JUnitCase(case.get("classname") or "", case.get("name") or "", outcome, seconds,
                                  message[:300]))
    return cases, stamp


_SCAN_VERDICTS: Mapping[str, ScanVerdict] = {
    "pass": "pass", "passed": "pass", "ok": "pass",
    "fail": "fail", "failed": "fail",
    "not verified": "not_verified", "not_verified": "not_verified", "not-verified": "not_verified",
    "error": "not_verified", "skipped": "not_verified",
}


def _scan_checks(data: Mapping[str, Any], problems: list[str]) -> list[ScanCheck]:
    raw = data.get("checks")
    entries: list[tuple[str, Any]]
    if isinstance(raw, list):
        entries = [(str(c.get("name") or c.get("check") or c.get("tool") or ""), c) if isinstance(c, Mapping)
                   else ("", c) for c in raw]
    elif isinstance(raw, Mapping):
        entries = [(str(k), v) for k, v in raw.items()]
    else:
        problems.append(f"{SECURITY_JSON}: no checks (expected checks: [{{name, verdict, summary}}])")
        return []
    out: list[ScanCheck] = []
    for name, body in entries:
        if not name:
            problems.append(f"{SECURITY_JSON}: a check without a name: {body!r:.80}")
            continue
        fields = body if isinstance(body, Mapping) else {"verdict": body}
        word = str(fields.get("verdict") or fields.get("status") or "").strip().lower()
        verdict = _SCAN_VERDICTS.get(word)
        summary = str(fields.get("summary") or fields.get("message") or fields.get("reason") or "")
        if verdict is None:
            verdict, summary = "not_verified", f"unknown verdict {word!r}; {summary}".strip("; ")
        count = fields.get("findings")
        if isinstance(count, list):
            count = len(count)
        out.append(ScanCheck(name, verdict, summary, count if isinstance(count, int) else None))
    return out


def _sarif(data: Mapping[str, Any], problems: list[str]) -> tuple[list[str], list[Finding]]:
    runs = data.get("runs")
    if not isinstance(runs, list):
        problems.append(f"{SECURITY_SARIF}: no runs (expected SARIF 2.1.0)")
        return [], []
    tools: list[str] = []
    findings: list[Finding] = []
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        driver = (run.get("tool") or {}).get("driver") or {}
        tool = str(driver.get("name") or "unknown tool")
        tools.append(tool)
        for result in run.get("results") or []:
            if not isinstance(result, Mapping):
                continue
            message = result.get("message") or {}
            text = str(message.get("text") or message.get("markdown") or "") if isinstance(message, Mapping) else ""
            location = ""
            locations = result.get("locations") or []
            if locations and isinstance(locations[0], Mapping):
                physical = locations[0].get("physicalLocation") or {}
                uri = ((physical.get("artifactLocation") or {}).get("uri")) or ""
                line = (physical.get("region") or {}).get("startLine")
                location = f"{uri}:{line}" if uri and line else str(uri)
            findings.append(Finding(tool, str(result.get("ruleId") or "-"), str(result.get("level") or "warning"),
                                    " ".join(text.split())[:400], location, bool(result.get("suppressions"))))
    return tools, findings


def _validation(data: Mapping[str, Any], problems: list[str]) -> list[ValidationResult]:
    """`gameday validate`'s document (harness.validate.result.document): one profile per set."""
    if data.get("schema") != VALIDATION_SCHEMA or not isinstance(data.get("profile"), str):
        problems.append(f"{VALIDATION}: not a {VALIDATION_SCHEMA} document with a profile")
        return []
    verdict = str(data.get("verdict") or "")
    if verdict not in ("pass", "fail"):
        problems.append(f"{VALIDATION}: verdict {verdict!r} (expected pass or fail)")
        return []
    lines: list[tuple[str, str]] = []
    for v in data.get("verdicts") or []:
        if isinstance(v, Mapping) and v.get("verdict") != "not_set":
            bound = "at least" if str(v.get("threshold", "")).startswith("min_") else "at most"
            lines.append((str(v.get("verdict")), f"{v.get('figure')}: {_figure(v.get('value'))} "
                                                 f"({bound} {_figure(v.get('limit'))})"
                                                 + (f": {v['why']}" if v.get("why") else "")))
    return [ValidationResult(data["profile"], verdict,  # type: ignore[arg-type]
                             _str_or_none(data.get("config_digest")), lines, str(data.get("reason") or ""))]


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def read_stream(path: Path, limit: int = 20_000) -> list[dict[str, Any]]:
    """A scenario's events (at most `limit`), sorted by time; lines that do not parse are skipped."""
    events: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if len(events) >= limit:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and isinstance(event.get("name"), str) and isinstance(event.get("ts_ms"), int):
                events.append(event)
    events.sort(key=lambda e: e["ts_ms"])
    return events
