"""The human side of a runbook drill: a person at a terminal, or a script standing in for one.

`TerminalOperator` shows each human step (what to do, who, its SLA window, how it is verified)
and a live countdown to the window's end, and reads one line: `c` confirm, `s` skip, or
`n TEXT` to add a note (then confirm or skip). `ScriptedOperator` answers from a YAML file
(runbooks/operators/*.yaml) after the delay it gives for the step, so a drill runs unattended.
"""

from __future__ import annotations

import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml
from rich.console import Console
from rich.panel import Panel

from harness.runbooks.model import RunbookStep, Window, _fmt
from harness.scenario import Duration

ANSWERS = ("confirm", "skip")


@dataclass(frozen=True)
class Answer:
    answer: str  # confirm | skip
    notes: str
    operator: str


class Operator(Protocol):
    name: str

    def ask(self, step: RunbookStep, window: Window, elapsed_ms: int) -> Answer: ...


class OperatorScriptError(ValueError):
    pass


@dataclass(frozen=True)
class _Scripted:
    after_ms: int
    answer: str
    notes: str


class ScriptedOperator:
    def __init__(self, name: str, path: Path, sleep: Any = time.sleep) -> None:
        self.name = name
        self.sleep = sleep
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise OperatorScriptError(f"{path}: cannot read the operator script: {exc}") from None
        if not isinstance(data, dict) or set(data) - {"default", "steps"}:
            raise OperatorScriptError(f"{path}: expected keys default and steps (got {data!r})")
        self.default = self._entry(path, "default", data.get("default") or {"after": "0s", "answer": "confirm"})
        steps = data.get("steps") or {}
        if not isinstance(steps, dict):
            raise OperatorScriptError(f"{path}: steps: expected a mapping step id -> {{after, answer, notes}}")
        self.steps = {str(k): self._entry(path, f"steps.{k}", v) for k, v in steps.items()}

    @staticmethod
    def _entry(path: Path, where: str, node: Any) -> _Scripted:
        if not isinstance(node, dict) or set(node) - {"after", "answer", "notes"}:
            raise OperatorScriptError(f"{path}: {where}: expected {{after, answer, notes}} (got {node!r})")
        try:
            after = Duration.parse(str(node.get("after", "0s")))
        except ValueError as exc:
            raise OperatorScriptError(f"{path}: {where}.after: {exc} (got {node.get('after')!r})") from None
        if after.in_bars:
            raise OperatorScriptError(f"{path}: {where}.after: a time, not bars (got {node.get('after')!r})")
        answer = node.get("answer", "confirm")
        if answer not in ANSWERS:
            raise OperatorScriptError(f"{path}: {where}.answer: one of {', '.join(ANSWERS)} (got {answer!r})")
        return _Scripted(after.to_ms(), str(answer), str(node.get("notes", "")))

    def check_steps(self, step_ids: set[str], path: Path) -> None:
        unknown = sorted(set(self.steps) - step_ids)
        if unknown:
            raise OperatorScriptError(f"{path}: steps: {unknown} are not human steps of this runbook "
                                      f"(human steps: {sorted(step_ids)})")

    def ask(self, step: RunbookStep, window: Window, elapsed_ms: int) -> Answer:
        scripted = self.steps.get(step.id, self.default)
        self.sleep(scripted.after_ms / 1000)
        return Answer(scripted.answer, scripted.notes, self.name)


class TerminalOperator:
    def __init__(self, name: str, stdin: TextIO = sys.stdin, console: Console | None = None) -> None:
        self.name = name
        self.stdin = stdin
        self.console = console or Console()

    def ask(self, step: RunbookStep, window: Window, elapsed_ms: int) -> Answer:
        started = time.monotonic()
        self.console.print(Panel(
            f"[bold]{step.does}[/bold]\n\nwho: {step.actor} ({self.name})\nSLA window: {window}\n"
            f"verified by: {step.verify}\n\n[c] confirm   [s] skip   [n TEXT] add a note",
            title=f"step {step.id}", expand=False))
        notes: list[str] = []
        while True:
            left = window.end_ms - (elapsed_ms + round((time.monotonic() - started) * 1000))
            whole = abs(left) // 1000 * 1000
            state = f"{_fmt(whole)} left" if left > 0 else f"OVERDUE by {_fmt(whole)}"
            self.console.print(f"\r{step.id}: {state} > ", end="")
            ready, _, _ = select.select([self.stdin], [], [], 1.0)
            if not ready:
                continue
            line = self.stdin.readline()
            if not line:
                return Answer("skip", "; ".join(notes + ["input closed"]), self.name)
            text = line.strip()
            if text in ("c", "confirm"):
                return Answer("confirm", "; ".join(notes), self.name)
            if text in ("s", "skip"):
                return Answer("skip", "; ".join(notes), self.name)
            if text.startswith("n "):
                notes.append(text[2:].strip())
                self.console.print(f"\nnote added ({len(notes)})")
            else:
                self.console.print("\nanswer c (confirm), s (skip) or n TEXT (note)")
