"""Leak detection: the bot's key material showing up where it must not, found by fingerprint.

The watcher holds, per key, only a fingerprint of the secret - its length and a salted SHA-256 -
never the secret. It reads text from the places it is told to watch and hashes every run of
secret-like characters as long as a secret (sliding over longer runs), so a secret embedded in
`secret=...`, a quoted string or a URL is found; a match names the key and the place, and the
finding carries neither the secret nor the line it was found in.

Places (`LeakPlaces`):
- log files (the bot's own logs): read incrementally from the last offset;
- git repositories: the working tree (tracked and untracked files) and every commit's patch in the
  history (`git log -p --all`), commits already read are not read again;
- drop folders (pastes, dumps): every file, re-read when its size or mtime changes.
Each kind has its own scan interval and detection SLA in config (config/leak_detection.yaml,
`load_leak_config`), the SLA for logs at most one minute.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets as _random
import subprocess  # nosec B404 - git with fixed arguments, never a shell
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("log", "repo", "paste")
SECRET_CHARS = re.compile(r"[A-Za-z0-9_\-+/.]+")
MAX_FILE_BYTES = 8 * 1024 * 1024  # a bigger file in a drop folder is read up to this much


@dataclass(frozen=True)
class Fingerprint:
    """What the watcher keeps of one secret: enough to recognise it, not to recover it."""

    key_id: str
    length: int
    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, key_id: str, secret: str) -> Fingerprint:
        salt = _random.token_bytes(16)
        return cls(key_id, len(secret), salt, _hash(salt, secret))

    def matches(self, candidate: str) -> bool:
        return len(candidate) == self.length and _hash(self.salt, candidate) == self.digest

    def __repr__(self) -> str:  # the digest is not the secret, but it has no business in a log either
        return f"Fingerprint(key_id={self.key_id!r}, length={self.length})"


def _hash(salt: bytes, text: str) -> bytes:
    return hashlib.sha256(salt + text.encode("utf-8")).digest()


@dataclass(frozen=True)
class Finding:
    key_id: str
    kind: str  # log | repo | paste
    where: str  # file (and line), or repo:commit:file

    def to_fields(self) -> dict[str, str]:
        return {"key_id": self.key_id, "where": f"{self.kind}:{self.where}"}


def find_in_text(text: str, fingerprints: Iterable[Fingerprint]) -> Iterator[tuple[str, int]]:
    """(key_id, 1-based line) of every fingerprinted secret in `text`."""
    prints = list(fingerprints)
    lengths = sorted({f.length for f in prints})
    if not lengths:
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        found: set[str] = set()
        for run in SECRET_CHARS.findall(line):
            for n in lengths:
                for start in range(0, len(run) - n + 1):
                    candidate = run[start:start + n]
                    for f in prints:
                        if f.key_id not in found and f.matches(candidate):
                            found.add(f.key_id)
        for key_id in sorted(found):
            yield key_id, lineno


@dataclass
class LeakPlaces:
    logs: list[Path] = field(default_factory=list)  # files or directories of log files
    repos: list[Path] = field(default_factory=list)
    drops: list[Path] = field(default_factory=list)


class LeakWatch:
    """Scans the places for the fingerprints; each finding is reported once."""

    def __init__(self, fingerprints: Iterable[Fingerprint], places: LeakPlaces, *, root: Path | None = None) -> None:
        self.fingerprints = list(fingerprints)
        self.places = places
        self.root = root  # places are reported relative to it
        self._repo_signatures: dict[Path, tuple[tuple[str, int, int], ...]] = {}
        self._offsets: dict[Path, int] = {}
        self._seen_files: dict[Path, tuple[int, int]] = {}
        self._seen_commits: set[str] = set()
        self._reported: set[tuple[str, str, str]] = set()

    def scan(self, kind: str) -> list[Finding]:
        if kind not in KINDS:
            raise ValueError(f"unknown place kind {kind!r}; allowed: {', '.join(KINDS)}")
        found = {"log": self._scan_logs, "repo": self._scan_repos, "paste": self._scan_drops}[kind]()
        new = []
        for finding in found:
            ident = (finding.key_id, finding.kind, finding.where)
            if ident not in self._reported:
                self._reported.add(ident)
                new.append(finding)
        return new

    def _scan_logs(self) -> list[Finding]:
        out = []
        for path in _files(self.places.logs):
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < offset:  # rotated or truncated: read it again from the start
                    offset = 0
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(MAX_FILE_BYTES)
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1  # a line still being written is read when it is complete
            self._offsets[path] = offset + cut
            first_line = self._line_of(path, offset)
            for key_id, line in find_in_text(data[:cut].decode("utf-8", "replace"), self.fingerprints):
                out.append(Finding(key_id, "log", f"{self._show(path)}:{first_line + line - 1}"))
        return out

    @staticmethod
    def _line_of(path: Path, offset: int) -> int:
        if offset == 0:
            return 1
        with open(path, "rb") as fh:
            return fh.read(offset).count(b"\n") + 1

    def _scan_drops(self) -> list[Finding]:
        return [Finding(k, "paste", w) for k, w in self._changed_files(_files(self.places.drops))]

    def _changed_files(self, paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            if self._seen_files.get(path) == sig:
                continue
            self._seen_files[path] = sig
            try:
                with open(path, "rb") as fh:
                    text = fh.read(MAX_FILE_BYTES).decode("utf-8", "replace")
            except OSError:
                continue
            for key_id, line in find_in_text(text, self.fingerprints):
                yield key_id, f"{self._show(path)}:{line}"

    def _scan_repos(self) -> list[Finding]:
        out = []
        for repo in self.places.repos:
            if not (repo / ".git").exists():
                continue
            signature = _tree_signature(repo)
            if self._repo_signatures.get(repo) == signature:
                continue  # nothing changed in the tree or the refs: no git process
            self._repo_signatures[repo] = signature
            tree = [repo / name for name in _git(repo, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
                    .split("\0") if name]
            out += [Finding(k, "repo", w) for k, w in self._changed_files(tree)]
            out += self._scan_history(repo)
        return out

    def _scan_history(self, repo: Path) -> list[Finding]:
        commits = [c for c in _git(repo, "rev-list", "--all").split() if c not in self._seen_commits]
        out = []
        for commit in commits:
            self._seen_commits.add(commit)
            patch = _git(repo, "show", "--format=", "--no-color", "--unified=0", commit)
            current = "?"
            added: list[str] = []
            for line in patch.splitlines():
                if line.startswith("+++ "):
                    current = line[6:] if line.startswith("+++ b/") else line[4:]
                elif line.startswith("+"):
                    added.append(f"{current}\0{line[1:]}")
            for entry in added:
                name, text = entry.split("\0", 1)
                for key_id, _ in find_in_text(text, self.fingerprints):
                    out.append(Finding(key_id, "repo", f"{self._show(repo)}@{commit[:12]}:{name}"))
        return out


    def _show(self, path: Path) -> str:
        if self.root is not None and path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return str(path)


def _tree_signature(repo: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of the working tree's files and of git's index, HEAD and refs."""
    git = repo / ".git"
    paths = _files([repo]) + [p for p in (git / "index", git / "HEAD", git / "packed-refs") if p.is_file()]
    paths += _files([git / "refs"])
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _files(roots: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                out += [Path(dirpath) / f for f in sorted(filenames)]
    return out


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False,  # nosec B603, B607 - git by name with a fixed argv, no shell
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else ""


class LeakConfigError(ValueError):
    pass


@dataclass(frozen=True)
class LeakConfig:
    scan_interval_ms: dict[str, int]
    detection_sla_ms: dict[str, int]
    places: LeakPlaces

    def resolve(self, root: Path) -> LeakPlaces:
        """The places with relative paths taken from `root` (the bot's working directory)."""
        def under(paths: list[Path]) -> list[Path]:
            return [p if p.is_absolute() else root / p for p in paths]

        return LeakPlaces(under(self.places.logs), under(self.places.repos), under(self.places.drops))


def default_leak_config_path() -> Path:
    from bot.config import config_dir

    return config_dir() / "leak_detection.yaml"


def load_leak_config(path: Path | None = None) -> LeakConfig:
    """config/leak_detection.yaml, validated; LeakConfigError naming file, key, value and the fix."""
    path = path or default_leak_config_path()
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LeakConfigError(f"{path}: cannot read the leak-detection config: {exc}") from None
    problems: list[str] = []

    def seconds(section: str) -> dict[str, int]:
        node = data.get(section) if isinstance(data, dict) else None
        if not isinstance(node, dict) or set(node) != set(KINDS):
            problems.append(f"{path.name}: {section}: expected one number of seconds for each of "
                            f"{', '.join(KINDS)} (got {node!r})")
            return {}
        out = {}
        for kind, value in node.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                problems.append(f"{path.name}: {section}.{kind}: expected seconds > 0 (got {value!r})")
            else:
                out[kind] = round(value * 1000)
        return out

    interval, sla = seconds("scan_interval_s"), seconds("detection_sla_s")
    for kind in set(interval) & set(sla):
        if interval[kind] >= sla[kind]:
            problems.append(f"{path.name}: detection_sla_s.{kind}: {sla[kind] / 1000:g} s cannot be met when "
                            f"scan_interval_s.{kind} is {interval[kind] / 1000:g} s; scan more often")
    node = data.get("places") if isinstance(data, dict) else None
    lists: dict[str, list[Path]] = {}
    for name in ("logs", "repos", "drops"):
        value = node.get(name) if isinstance(node, dict) else None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append(f"{path.name}: places.{name}: expected a list of paths (got {value!r})")
            value = []
        lists[name] = [Path(v) for v in value]
    if problems:
        raise LeakConfigError("\n".join(problems))
    return LeakConfig(interval, sla, LeakPlaces(lists["logs"], lists["repos"], lists["drops"]))
