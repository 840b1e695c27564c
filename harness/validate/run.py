"""A validation run: every market on its own paper account, until the trade count is reached.

Every market first plays its base length (a generated regime `bars` bars, a recording all of
its rows). If the profile asks for `min_trades` and the markets together closed fewer, the
generated markets play on, `bars` more each round, in the same order, until the count is
reached or each has played `max_bars`; recordings are never replayed. Deterministic: the same
plan, policy and code give the same figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.core.policy import Policy
from harness.validate.markets import Market, generated_market, recorded_market
from harness.validate.paper import PaperSession, scratch_dir
from harness.validate.result import MarketRun


@dataclass(frozen=True)
class Plan:
    markets: tuple[Market, ...]
    bars: int  # base length of a generated market
    max_bars: int  # the most a generated market plays while the trade count is not reached
    equity: float  # each market's starting paper equity
    bar_ms: int
    seed: int

    def describe(self) -> dict[str, Any]:
        return {"bars_per_market": self.bars, "max_bars_per_market": self.max_bars,
                "starting_equity": self.equity, "bar_ms": self.bar_ms, "seed": self.seed,
                "markets": [m.name for m in self.markets]}


def build_markets(regimes: Sequence[str], candle_files: Sequence[Path], seed: int, bar_ms: int) -> tuple[Market, ...]:
    markets = [generated_market(r, seed, bar_ms) for r in regimes]
    markets += [recorded_market(Path(f), bar_ms) for f in candle_files]
    seen: dict[str, int] = {}
    named: list[Market] = []
    for m in markets:  # two files with one stem (or a regime twice) still get distinct names
        n = seen.get(m.name, 0)
        seen[m.name] = n + 1
        named.append(m if n == 0 else replace(m, name=f"{m.name}-{n + 1}"))
    return tuple(named)


def paper_trade(plan: Plan, policy: Policy) -> tuple[list[MarketRun], int]:
    """Run the plan; returns each market's run and how many extension rounds were played."""
    return asyncio.run(_paper_trade(plan, policy))


async def _paper_trade(plan: Plan, policy: Policy) -> tuple[list[MarketRun], int]:
    min_trades = policy.validation.min_trades or 0
    with scratch_dir() as tmp:
        sessions: list[PaperSession] = []
        try:
            for i, market in enumerate(plan.markets):
                workdir = Path(tmp) / f"{i:02d}"
                workdir.mkdir()
                session = PaperSession(market, policy, plan.equity, workdir)
                sessions.append(session)
                await session.start()
                await session.play(plan.bars if market.kind == "generated" else len(market.candles))
            rounds = 0
            while sum(len(s.tally.trades) for s in sessions) < min_trades:
                growing = [s for s in sessions if s.market.kind == "generated" and s.bars < plan.max_bars]
                if not growing:
                    break
                rounds += 1
                for s in growing:
                    await s.play(min(plan.bars, plan.max_bars - s.bars))
                    if sum(len(x.tally.trades) for x in sessions) >= min_trades:
                        break
            return [_market_run(s) for s in sessions], rounds
        finally:
            for s in sessions:
                await s.close()


def _market_run(s: PaperSession) -> MarketRun:
    tally = s.tally
    activity = {
        "breaker_trips": dict(sorted(tally.breaker_trips.items())),
        "halts": tally.halts,
        "halt_reasons": dict(tally.halt_reasons.most_common(10)),
        "pauses": tally.pauses,
        "operator_resumes": tally.resumes,
        "orders_placed": tally.orders_placed,
        "orders_rejected": tally.orders_rejected,
        "exits": dict(sorted(tally.exits.items())),
        "open_position_at_end": s.open_position,
    }
    return MarketRun(description=s.market.describe(), bar_ms=s.bar_ms, starting_equity=s.starting_equity,
                     equity=list(s.equity_curve), equity_ts=list(s.equity_ts), trades=list(tally.trades),
                     fees_paid=s.fees_paid, slippage_paid=s.slippage_paid, activity=activity)
