"""The risk policy as typed, validated values (config/*.{yaml,toml} merged with a profile).

Field names follow the source checklist's own examples. Everything here is data: the
breakers, sizing, exits and costs read it; nothing in the core has a threshold literal.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Fraction = Annotated[float, Field(gt=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]

Action = Literal[
    "pause_new_entries", "pause_trading", "backoff", "halt_trading", "flatten_and_halt"
]
PAUSE_ACTIONS: frozenset[str] = frozenset({"pause_new_entries", "pause_trading"})
HALT_ACTIONS: frozenset[str] = frozenset({"halt_trading", "flatten_and_halt"})
ZONES: tuple[str, ...] = ("Z1", "Z2", "Z3", "Z4", "Z5")
Zone = Literal["Z1", "Z2", "Z3", "Z4", "Z5"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- C1: sizing, exits, costs (risk_policy.yaml) -------------------------------------------


class VolatilityScaling(Strict):
    enabled: bool = True
    atr_factor: Positive = 1.5


def _unit_multipliers() -> dict[Zone, float]:
    return {"Z1": 1.0, "Z2": 1.0, "Z3": 1.0, "Z4": 1.0, "Z5": 1.0}


class Zones(Strict):
    enabled: bool = False
    boundaries_atr_pct: tuple[Positive, Positive, Positive, Positive] = (0.25, 0.5, 1.0, 2.0)
    size_multipliers: dict[Zone, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=_unit_multipliers
    )
    blocked: tuple[Zone, ...] = ()


class PositionSizing(Strict):
    method: Literal["fractional_kelly"] = "fractional_kelly"
    kelly_fraction: Fraction
    max_position_pct: Fraction
    max_total_exposure_pct: Fraction
    risk_per_trade: Fraction
    max_risk_per_trade: Fraction
    volatility_scaling: VolatilityScaling = VolatilityScaling()
    zones: Zones = Zones()


class StopLoss(Strict):
    method: Literal["atr_based"] = "atr_based"
    atr_multiplier: Positive
    min_pct: Fraction
    max_pct: Fraction


class TakeProfit(Strict):
    method: Literal["risk_multiple"] = "risk_multiple"
    risk_multiple: Positive


class TimeExit(Strict):
    enabled: bool = True
    max_hold_periods: Count


class VolatilityExit(Strict):
    enabled: bool = True
    expansion_multiple: Annotated[float, Field(gt=1)]
    contraction_multiple: Annotated[float, Field(gt=0, lt=1)]


class Exits(Strict):
    stop_loss: StopLoss
    take_profit: TakeProfit
    time_exit: TimeExit
    volatility_exit: VolatilityExit


class Slippage(Strict):
    model: Literal["market_impact", "fixed"] = "market_impact"
    base_slippage_bps: NonNegative
    volatility_coefficient: NonNegative = 0.0


class MarketImpact(Strict):
    threshold_usd: NonNegative
    bps_per_10k_usd: NonNegative


class ExecutionCosts(Strict):
    maker_fee: Annotated[float, Field(ge=-0.01, le=0.01)]  # negative = rebate
    taker_fee: Annotated[float, Field(ge=0, le=0.01)]
    assumed_fee: Annotated[float, Field(ge=0, le=0.01)]
    slippage: Slippage
    market_impact: MarketImpact
    min_edge_after_costs: NonNegative


class Orders(Strict):
    post_only: bool = False
    entry_type: Literal["market", "limit"] = "market"


# --- C2: breakers, outage matrix, kill switch (circuit_breakers.toml) ----------------------


class DrawdownPeak(Strict):
    enabled: bool = False
    warning_pct: Positive | None = None
    threshold_pct: Positive
    emergency_pct: Positive | None = None


class Drawdown(Strict):
    enabled: bool = True
    warning_pct: Positive | None = None
    threshold_pct: Positive
    emergency_pct: Positive | None = None
    action: Action = "halt_trading"
    emergency_action: Action = "flatten_and_halt"
    require_manual_resume: bool = True
    cooldown_minutes: NonNegative
    peak: DrawdownPeak = DrawdownPeak(threshold_pct=10.0)


class SizeStep(Strict):
    losses: Count
    size_multiplier: Fraction


class ConsecutiveLosses(Strict):
    enabled: bool = True
    max_consecutive_losses: Count
    action: Action = "halt_trading"
    require_manual_resume: bool = False
    cooldown_minutes: NonNegative
    size_reduction: tuple[SizeStep, ...] = ()


class SpreadCheck(Strict):
    enabled: bool = True
    warning_bps: Positive | None = None
    max_spread_bps: Positive
    action: Action = "pause_new_entries"
    require_manual_resume: bool = False


class AtrCheck(Strict):
    enabled: bool = True
    spike_threshold: Annotated[float, Field(gt=1)]
    atr_periods: Count = 14
    baseline_periods: Count = 96
    action: Action = "pause_new_entries"
    require_manual_resume: bool = False


class PriceMoveCheck(Strict):
    enabled: bool = True
    max_move_pct: Positive
    action: Action = "halt_trading"
    require_manual_resume: bool = True


class Volatility(Strict):
    spread: SpreadCheck
    atr: AtrCheck
    price_move: PriceMoveCheck


class WebsocketLatency(Strict):
    enabled: bool = True
    max_lag_seconds: Positive
    action: Action = "pause_trading"
    require_manual_resume: bool = False


class InferenceLatency(Strict):
    enabled: bool = True
    p95_ms: Positive
    p99_ms: Positive
    window: Count = 100
    action: Action = "pause_trading"
    require_manual_resume: bool = False


class OrderLatency(Strict):
    enabled: bool = True
    max_ms: Positive
    action: Action = "backoff"
    require_manual_resume: bool = False


class Backoff(Strict):
    initial_ms: Positive
    max_ms: Positive
    multiplier: Annotated[float, Field(ge=1)]


class Latency(Strict):
    websocket: WebsocketLatency
    inference: InferenceLatency
    order_placement: OrderLatency
    order_fill: OrderLatency
    backoff: Backoff


class CircuitBreakers(Strict):
    drawdown: Drawdown
    consecutive_losses: ConsecutiveLosses
    volatility: Volatility
    latency: Latency


class ExchangeOutage(Strict):
    major_after_minutes: Positive
    minor_action: Action = "pause_new_entries"
    major_action: Action = "flatten_and_halt"


class KillSwitch(Strict):
    require_auth: bool = True
    graceful_timeout_minutes: Positive
    marker_file: str = "state/EMERGENCY_STOP"


# --- deadlines (slas.yaml) -----------------------------------------------------------------


class Reaction(Strict):
    breaker_bars: Count
    breaker_realtime_ms: Positive
    kill_switch_immediate_flat_s: Positive
    kill_switch_graceful_timeout_minutes: Positive


class Alerts(Strict):
    delivery_seconds: Positive


class IncidentResponse(Strict):
    P0_minutes: Positive
    P1_minutes: Positive
    P2_minutes: Positive
    P3_minutes: Positive


class CredentialLeakRunbook(Strict):
    immediate_minutes: Positive
    investigate_minutes: Positive
    contain_minutes: Positive
    recover_minutes: Positive
    post_incident_hours: Positive


class ExchangeOutageRunbook(Strict):
    response_minutes: Positive


class Runbooks(Strict):
    credential_leak: CredentialLeakRunbook
    exchange_outage: ExchangeOutageRunbook


class KeyManagement(Strict):
    api_key_rotation_days: Positive
    telegram_token_rotation_days: Positive
    db_password_rotation_days: Positive
    old_key_deletion_delay_hours: Positive


class Retention(Strict):
    trade_records_years: Positive
    audit_logs_years: Positive
    system_logs_days: Positive
    model_artifacts_years: Positive
    config_history_years: Positive


# --- strategy validation (risk_policy.yaml `validation:`; gameday validate) ----------------


class Validation(Strict):
    """What paper trading must show before real money flows; None: the source document states
    no such figure, and it is not judged."""

    min_trades: int | None = Field(default=None, ge=1)
    min_win_rate: float | None = Field(default=None, ge=0, le=1)  # fraction of trades with P&L > 0
    min_profit_factor: float | None = Field(default=None, ge=0)
    min_sharpe: float | None = None  # annualised from per-bar equity returns
    max_drawdown_pct: float | None = Field(default=None, gt=0, le=100)  # equity incl. unrealised P&L
    min_paper_days: float | None = Field(default=None, gt=0)


# --- production start protocol (risk_policy.yaml `capital_ramp:` / `red_flags:`) ----------


class RampStage(Strict):
    """One step of the capital ramp. `max_capital_usd` caps the equity the bot sizes from and the
    notional it may hold (None: no cap - a paper stage, where no real money trades, or full
    capital). To leave a stage, `min_days` in it and `min_trades` closed in it are needed."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]*$")]
    max_capital_usd: Positive | None
    paper: bool = False  # only a paper venue (testnet / simulator): real money is refused
    min_days: NonNegative = 0
    min_trades: Annotated[int, Field(ge=0)] = 0


class CapitalRamp(Strict):
    stages: tuple[RampStage, ...]
    require_validation: bool = True  # an advance needs a passed `gameday validate` result
    declared_capital_usd: Positive | None = None  # all capital, hot and cold; needed for real money
    hot_wallet_max_share: Fraction = 0.20  # entries stop when the venue balance reaches this share


class RedFlagChecks(Strict):
    """How often the live bot runs each periodic red-flag check (bot/checks.py), in seconds."""

    breaker_self_test_s: Positive = 300.0
    emergency_stop_s: Positive = 60.0  # an authenticated read on the kill switch's own path
    backup_s: Positive = 300.0  # the state store written and read back
    monitoring_s: Positive = 60.0
    monitoring_silent_s: Positive = 300.0  # no metrics scrape for this long: monitoring is down


class RedFlags(Strict):
    """The pets checklist's "RED FLAGS - STOP IMMEDIATELY" thresholds a machine judges."""

    min_win_rate: Annotated[float, Field(ge=0, le=1)] = 0.5  # rolling, over the last `win_rate_window` trades
    win_rate_window: Count = 20
    max_drawdown_pct: Annotated[float, Field(gt=0, le=100)] = 40.0  # from peak equity
    # more than this many denied requests (None: a denied request is not a red flag)
    max_unauthorized_attempts: Annotated[int, Field(ge=0)] | None = 0
    # ... counted over this sliding window (None: since the bot started)
    unauthorized_window_minutes: Positive | None = None
    checks: RedFlagChecks = RedFlagChecks()


# --- the whole policy ----------------------------------------------------------------------


class Policy(Strict):
    position_sizing: PositionSizing
    exits: Exits
    execution_costs: ExecutionCosts
    orders: Orders = Orders()
    circuit_breakers: CircuitBreakers
    exchange_outage: ExchangeOutage
    kill_switch: KillSwitch
    reaction: Reaction
    alerts: Alerts
    incident_response: IncidentResponse
    runbooks: Runbooks
    key_management: KeyManagement
    retention: Retention
    validation: Validation = Validation()
    capital_ramp: CapitalRamp = CapitalRamp(stages=(RampStage(name="paper", max_capital_usd=None, paper=True),))
    red_flags: RedFlags = RedFlags()


def policy_value(policy: Policy, dotted: str) -> object:
    """The value at a dotted path (`circuit_breakers.drawdown.threshold_pct`); KeyError if none."""
    node: object = policy
    for part in dotted.split("."):
        if isinstance(node, BaseModel) and part in type(node).model_fields:
            node = getattr(node, part)
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(dotted)
    return node
