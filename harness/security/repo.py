"""git-dotenv: `.env` is git-ignored, not tracked, absent from every branch's history, and private.

The pets checklist's "Private keys NEVER committed": `.env` in `.gitignore`, and
`git log --all --full-history -- .env` empty. Also any `.env` below the root (`**/.env`), and a
`.env` lying in the tree must be mode 0600 ("`.env` permissions 600").
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

from harness.security.model import CheckResult, Finding, judge, not_verified
from harness.security.proc import run

NAME = "git-dotenv"
PATHSPECS = [".env", ":(glob)**/.env"]


def run_git_dotenv(root: Path) -> CheckResult:
    started = time.monotonic()
    inside = run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, timeout_s=30)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return not_verified(NAME, "gameday", f"{root} is not a git work tree ({inside.problem or inside.tail()})")
    findings: list[Finding] = []
    items: list[dict[str, object]] = []

    ignored = run(["git", "check-ignore", "-q", "--no-index", ".env"], cwd=root, timeout_s=30)
    ok = ignored.returncode == 0
    items.append({"id": "dotenv.ignored", "ok": ok, "detail": ".env is git-ignored" if ok else ".env is not ignored"})
    if not ok:
        findings.append(Finding("dotenv.not_ignored", "HIGH", ".env is not in .gitignore (add a line: .env)",
                                ".gitignore"))
    tracked = run(["git", "ls-files", "--", *PATHSPECS], cwd=root, timeout_s=30)
    names = tracked.stdout.split()
    items.append({"id": "dotenv.untracked", "ok": not names, "detail": f"tracked: {names or 'none'}"})
    for name in names:
        findings.append(Finding("dotenv.tracked", "CRITICAL", f"{name} is tracked by git (git rm --cached {name}, "
                                "then rotate every secret it held)", name))
    history = run(["git", "log", "--all", "--full-history", "--format=%H", "--", *PATHSPECS], cwd=root, timeout_s=120)
    if history.returncode != 0:
        return not_verified(NAME, "gameday", f"git log failed: {history.problem or history.tail()}")
    commits = history.stdout.split()
    items.append({"id": "dotenv.history", "ok": not commits,
                  "detail": "git log --all --full-history -- .env '**/.env': "
                            + (f"{len(commits)} commit(s), e.g. {commits[0][:12]}" if commits else "empty")})
    if commits:
        findings.append(Finding("dotenv.in_history", "CRITICAL",
                                f".env is in the history of {len(commits)} commit(s) (first {commits[-1][:12]}, last "
                                f"{commits[0][:12]}): rotate its secrets and rewrite the history",
                                properties={"commits": commits[:20]}))
    dotenv = root / ".env"
    if dotenv.exists():
        mode = stat.S_IMODE(dotenv.stat().st_mode)
        ok = not mode & 0o077
        items.append({"id": "dotenv.mode", "ok": ok, "detail": f".env mode {mode:04o}"})
        if not ok:
            findings.append(Finding("dotenv.mode", "HIGH", f".env is mode {mode:04o}: run chmod 600 .env", ".env"))
    verdict = judge(len(findings), 0, [])
    summary = "; ".join(str(i["detail"]) for i in items)
    return CheckResult(NAME, "gameday", verdict, summary, findings=findings, items=items,
                       command=history.argv, duration_s=time.monotonic() - started)
