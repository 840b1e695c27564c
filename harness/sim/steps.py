"""A step of a sim run as it is being carried out: the state a sim fault fills in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.expect import StepTiming
from harness.scenario import Step


@dataclass
class ActiveStep:
    """One step as it is being carried out; faults fill in establishment or an error."""

    step: Step
    params: dict[str, Any]
    unfolds: bool = False  # the kind is established when its condition is reached, not at injection
    injected_ms: int | None = None
    established_ms: int | None = None
    error: str | None = None
    first_event: int | None = None
    pending: str | None = None  # an unfolding fault: what it is still waiting for
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.step.id

    def establish(self, ts_ms: int) -> None:
        if self.established_ms is None and self.error is None:
            self.established_ms = ts_ms
            self.pending = None

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
            self.pending = None

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        self.cleanups.append(fn)

    def timing(self) -> StepTiming:
        error = self.error
        if error is None and self.pending is not None:
            error = f"not established by the end of the run: {self.pending}"
        # An instantaneous fault is established at its injection (None), unless it said otherwise:
        # a restart with down_for is established when the bot starts again.
        return StepTiming(self.step.id, self.step.fault, dict(self.params), self.injected_ms,
                          self.established_ms, error, self.first_event)
