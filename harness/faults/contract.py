"""The contract every fault kind follows, in both modes."""

from __future__ import annotations


class FaultError(Exception):
    """A fault could not be injected or established: the scenario is an ERROR, never a pass."""
