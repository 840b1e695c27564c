"""Progress of long work: live (rich) on a terminal, a few plain lines in CI logs.

`tracker(label, total)` counts units of work (a drill's schedules); `scenario_watch(id, ...)` shows
one real-time scenario: the step reached, the next step and when it is due, the elapsed time
against the run's planned length. On a terminal both redraw in place (rich); elsewhere (CI, a
pipe, a file) they print one line at each tenth of the work and at most one more every
`LINE_EVERY_S` seconds, so a log stays short and still shows the run is alive.

The mode: ``GAMEDAY_PROGRESS`` = ``live`` | ``lines`` | ``off`` when set; else ``lines`` when
``CI`` is set or the stream is not a terminal, ``live`` otherwise. Under pytest the stream is the
terminal pytest found at start, written with its output capture suspended (`use_pytest`), so a
net scenario's live progress reaches the terminal while pytest runs it; lines go to stderr as it
is, which pytest keeps with the test's output (shown for a failure: CI logs stay quiet).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

PROGRESS_ENV = "GAMEDAY_PROGRESS"
MODES = ("live", "lines", "off")
LINE_EVERY_S = 30.0

_stream: IO[str] | None = None  # the terminal pytest found (use_pytest); None: sys.stderr
_stream_tty = False  # whether it was a terminal (asked then: during a test its fd points at pytest's capture)
_suspend: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext


def use_pytest(config: Any) -> None:
    """Write progress to the terminal of this pytest session, with its capture suspended."""
    global _stream, _stream_tty, _suspend
    before = (_stream, _stream_tty, _suspend)
    capman = config.pluginmanager.getplugin("capturemanager")
    _stream, _stream_tty = sys.stderr, sys.stderr.isatty()
    if capman is not None:
        _suspend = capman.global_and_fixture_disabled

    def restore() -> None:  # a pytest session run inside another one ends: back to the outer terminal
        global _stream, _stream_tty, _suspend
        _stream, _stream_tty, _suspend = before

    config.add_cleanup(restore)


def mode(stream: IO[str] | None = None, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    chosen = env.get(PROGRESS_ENV, "").strip().lower()
    if chosen in MODES:
        return chosen
    if stream is None and _stream is not None:
        tty = _stream_tty
    else:
        tty = bool(getattr(stream or sys.stderr, "isatty", lambda: False)())
    return "lines" if env.get("CI") or not tty else "live"


class Tracker:
    """`advance()` once per unit done; `note` says what is going on (shown live, and in lines)."""

    def __init__(self, label: str, total: int, *, unit: str = "", stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, how: str | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.how = how or mode(stream)
        # live: the terminal (under pytest, around its capture); lines: stderr as it is (pytest keeps
        # them with the test's output, so a CI log shows them only for a failure)
        self.stream = stream or ((_stream or sys.stderr) if self.how == "live" else sys.stderr)
        self.clock = clock
        self.done = 0
        self.note = ""
        self._t0 = clock()
        self._last_line = self._t0
        self._tenth = 0
        self._live: Any = None
        self._task: Any = None
        if self.how == "live":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._live = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                                  console=Console(file=self.stream), auto_refresh=False, transient=False)
            self._task = self._live.add_task(label, total=total or None, note="")
            with _suspend():
                self._live.start()

    def elapsed_s(self) -> float:
        return self.clock() - self._t0

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        self.update(note)

    def update(self, note: str | None = None) -> None:
        if note is not None:
            self.note = note
        if self.how == "live":
            with _suspend():
                self._live.update(self._task, completed=self.done, note=self.note)
                self._live.refresh()
        elif self.how == "lines":
            tenth = 10 * self.done // self.total if self.total else 0
            now = self.clock()
            if tenth > self._tenth or now - self._last_line >= LINE_EVERY_S:
                self._tenth, self._last_line = max(tenth, self._tenth), now
                self._line()

    def _line(self) -> None:
        count = f"{self.done}/{self.total}{' ' + self.unit if self.unit else ''}" if self.total else ""
        parts = [p for p in (count, f"{self.elapsed_s():.1f} s elapsed", self.note) if p]
        print(f"{self.label}: " + ", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self.how == "live" and self._live is not None:
            with _suspend():
                self._live.stop()
            self._live = None


@contextlib.contextmanager
def tracker(label: str, total: int, **kwargs: Any) -> Iterator[Tracker]:
    t = Tracker(label, total, **kwargs)
    try:
        yield t
    finally:
        t.close()


class ScenarioWatch:
    """One real-time scenario: `step()` when a step is injected, `tick()` from the wait loop.

    `slas`: step id -> (what, seconds) of each expectation timed from that step (`within`, scaled):
    once the step is reached the open window nearest its end is shown, elapsed against its SLA."""

    def __init__(self, scenario_id: str, steps: int, planned_s: float,
                 slas: dict[str, list[tuple[str, float]]] | None = None, **kwargs: Any) -> None:
        self.planned_s = planned_s
        self.tracker = Tracker(f"scenario {scenario_id}", steps, unit="steps", **kwargs)
        self.reached = "start"
        self.slas = slas or {}
        self._windows: list[tuple[float, str, float]] = []  # (opened at, what, sla s)

    @classmethod
    def of(cls, scenario: Any, scale: float, planned_s: float, **kwargs: Any) -> ScenarioWatch:
        """From a loaded scenario (harness.scenario.Scenario) run at `scale`."""
        slas: dict[str, list[tuple[str, float]]] = {}
        for exp in scenario.expect:
            if exp.kind == "event" and exp.after and exp.within is not None:
                sla_s = exp.within.to_ms(scenario.bar_ms) * scale / 1000
                slas.setdefault(exp.after, []).append((exp.event, sla_s))
        return cls(scenario.id, len(scenario.steps), planned_s, slas, **kwargs)

    def step(self, step_id: str) -> None:
        self.reached = step_id
        now = self.tracker.elapsed_s()
        self._windows += [(now, what, sla) for what, sla in self.slas.get(step_id, [])]
        self.tracker.advance(note=self._note(None))

    def tick(self, next_step: str | None, next_due_in_s: float | None) -> None:
        self.tracker.update(self._note((next_step, next_due_in_s) if next_step is not None else None))

    def _note(self, upcoming: tuple[str, float | None] | None) -> str:
        elapsed = self.tracker.elapsed_s()
        text = f"at {self.reached}; {elapsed:.0f} s of {self.planned_s:.0f} s planned"
        if elapsed > self.planned_s:
            text += " (over plan: waiting for the bot)"
        self._windows = [w for w in self._windows if elapsed - w[0] <= w[2]]
        if self._windows:
            opened, what, sla = min(self._windows, key=lambda w: w[0] + w[2])
            text += f"; {what}: {elapsed - opened:.1f} s of {sla:.1f} s SLA"
        if upcoming is not None:
            name, due = upcoming
            text += f"; next {name}" + (f" in {max(0.0, due):.0f} s" if due is not None else "")
        return text

    def close(self) -> None:
        self.tracker.close()
