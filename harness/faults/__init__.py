"""The fault catalog: every fault kind, once, in its family module (harness/faults/contract.py
says what a kind is). `FAULTS` is the registry the loader, both runners, the drill and the docs
table read; nothing else lists kinds.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.faults import alerts, credentials, exchange, latency, market, model, operator, process, trades
from harness.faults.contract import FaultError, FaultKind

FAMILIES = (market, trades, latency, model, exchange, credentials, process, operator, alerts)


def _registry() -> dict[str, FaultKind]:
    kinds: dict[str, FaultKind] = {}
    for family in FAMILIES:
        for k in family.KINDS:
            if k.kind in kinds:
                raise ValueError(f"fault kind {k.kind} is defined twice ({family.__name__})")
            kinds[k.kind] = k
    return kinds


FAULTS: Mapping[str, FaultKind] = _registry()

__all__ = ["FAULTS", "FaultError", "FaultKind"]
