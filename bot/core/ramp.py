"""The capital ramp (Production Start Protocol): which stage the bot is at, what it may risk there,
and whether it may move to the next one.

A stage caps the equity the bot sizes from and the notional it may hold (`RampStage.max_capital_usd`,
None: no cap). A paper stage allows only a paper venue. An advance to the next stage needs evidence
(`min_days` spent in the stage, `min_trades` closed in it, no red flag raised in it, a passed
validation when the ramp requires one) and an approver: `advance_problems` lists every missing
piece, and the io layer decides who may approve (RBAC). Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bot.core.policy import CapitalRamp, RampStage

DAY_MS = 86_400_000
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class RampState:
    stage: int  # index into CapitalRamp.stages
    since_ms: int  # when the stage began
    trades: int = 0  # trades closed in this stage
    red_flag: str | None = None  # the last red flag raised in this stage

    def to_dict(self) -> dict[str, Any]:
        return {"version": SNAPSHOT_VERSION, "stage": self.stage, "since_ms": self.since_ms, "trades": self.trades,
                "red_flag": self.red_flag}

    @classmethod
    def from_dict(cls, data: dict[str, Any], ramp: CapitalRamp) -> RampState:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"ramp snapshot version {data.get('version')!r}; expected {SNAPSHOT_VERSION}")
        stage = int(data["stage"])
        if not 0 <= stage < len(ramp.stages):
            raise ValueError(f"ramp snapshot stage {stage} is not one of the {len(ramp.stages)} configured "
                             "(capital_ramp.stages changed under a running ramp: set the stage again)")
        flag = data["red_flag"]
        return cls(stage, int(data["since_ms"]), int(data["trades"]), None if flag is None else str(flag))


@dataclass(frozen=True, slots=True)
class AdvanceEvidence:
    approver: str | None  # the authorised human who approves (None: nobody has)
    validation: str | None  # None: a passed validation result was read; else why there is none


def current(ramp: CapitalRamp, state: RampState) -> RampStage:
    return ramp.stages[state.stage]


def capital_cap(ramp: CapitalRamp, state: RampState) -> float | None:
    """The stage's cap on equity at risk and on notional (None: none)."""
    return current(ramp, state).max_capital_usd


def hot_wallet_limit(ramp: CapitalRamp) -> float | None:
    """The venue balance at which entries stop (None: no declared capital, nothing to compare with)."""
    if ramp.declared_capital_usd is None:
        return None
    return ramp.hot_wallet_max_share * ramp.declared_capital_usd


def trade_closed(state: RampState) -> RampState:
    return replace(state, trades=state.trades + 1)


def flag_raised(state: RampState, flag: str) -> RampState:
    return replace(state, red_flag=flag)


def advance_problems(ramp: CapitalRamp, state: RampState, evidence: AdvanceEvidence, now_ms: int) -> list[str]:
    """Why the bot may not leave its stage now (empty: it may)."""
    stage = current(ramp, state)
    if state.stage + 1 >= len(ramp.stages):
        return [f"stage {stage.name} is the last stage of capital_ramp.stages"]
    problems = []
    days = (now_ms - state.since_ms) / DAY_MS
    if days < stage.min_days:
        problems.append(f"{days:.2f} days in stage {stage.name}, min_days {stage.min_days:g}")
    if state.trades < stage.min_trades:
        problems.append(f"{state.trades} trades closed in stage {stage.name}, min_trades {stage.min_trades}")
    if state.red_flag is not None:
        problems.append(f"red flag {state.red_flag} was raised in stage {stage.name}")
    if ramp.require_validation and evidence.validation is not None:
        problems.append(f"no passed validation: {evidence.validation}")
    if not evidence.approver:
        problems.append("no approval by an authorised person (Risk Manager)")
    return problems


def advanced(state: RampState, now_ms: int) -> RampState:
    """The next stage, begun now (call after `advance_problems` came back empty)."""
    return RampState(state.stage + 1, now_ms)
