"""Sim mode: one scenario, in-process, under virtual time, against the REAL bot core and runtime.

A discrete-event loop over a `VirtualClock` that starts at 2026-01-05T00:00:00Z
(harness/sim/world.py):

- bars close every `bar_ms`; at each close the exchange (harness.testnet.engine) plays the bar
  (its own seeded walk, or a fixture replayed relative to the current price) and the market-data
  feed publishes a book tick and the closed bar;
- between closes the loop advances straight to the next thing due: the Trader's own deadline
  (`next_deadline_ms()` -> `on_timer()`), a scheduled step, a fault's next phase, a delayed feed
  delivery. While the feed is healthy the kline stream proves it is alive (`on_feed_alive`) with
  the true event time, exactly as often as the bot needs to notice (lazily, so a 400-bar
  scenario stays in the milliseconds);
- faults (harness.faults) only change what the bot sees: prices, spreads, fills, errors, feed
  timing, credentials. None calls a breaker.

What a run leaves is a `RunRecord` (harness.expect): every event, per-step timings and the end
state. `run_sim` is registered as `harness.collect.RUNNERS["sim"]` when this module is imported
(the pytest plugin imports it), as harness/net/runner.py registers "net".
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from harness import collect
from harness.expect import RunRecord
from harness.scenario import Scenario
from harness.sim.world import SimWorld


def run_sim(scenario: Scenario, context: collect.RunContext) -> RunRecord:
    """The sim-mode runner (`harness.collect.RUNNERS["sim"]`)."""
    policy = context.policy.policy
    policy = getattr(policy, "policy", policy)  # a LoadedPolicy or the Policy itself
    return simulate(scenario, context.params, policy)


def simulate(scenario: Scenario, params: dict[str, dict[str, Any]], policy: Any,
             workdir: Path | None = None) -> RunRecord:
    """Run one sim scenario to its end; `params` are the resolved step params by step id."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(SimWorld(scenario, params, policy, workdir).run())
    with tempfile.TemporaryDirectory(prefix=f"gameday-{scenario.id}-", dir=fast_tmp()) as tmp:
        return asyncio.run(SimWorld(scenario, params, policy, Path(tmp)).run())


def fast_tmp() -> str | None:
    """A RAM-backed parent for a run's scratch directory when the host has one: the bot fsyncs its
    audit log per record and SQLite syncs every commit, which on a busy disk cost a 300-bar
    scenario more than its simulation. The bot cannot tell (a crash in the sim loses no page
    cache either way), and the disk_full fault acts on the bot's Disk, not on the filesystem."""
    shm = Path("/dev/shm")  # nosec B108 - only the parent of a private TemporaryDirectory (unique, 0700)
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


collect.RUNNERS["sim"] = run_sim
