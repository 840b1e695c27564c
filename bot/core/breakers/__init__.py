"""Circuit breakers (C2): drawdown, consecutive losses, volatility, latency, and the board."""

from bot.core.breakers.base import (
    BarClosed,
    BookUpdate,
    BreakerInput,
    BreakerVerdict,
    EquityUpdate,
    FeedLag,
    InferenceTiming,
    OrderLatency,
    TimerTick,
    TradeClosed,
)
from bot.core.breakers.board import BoardStatus, BreakerBoard, ResumeResult, TradingState

__all__ = [
    "BarClosed", "BoardStatus", "BookUpdate", "BreakerBoard", "BreakerInput", "BreakerVerdict",
    "EquityUpdate", "FeedLag", "InferenceTiming", "OrderLatency", "ResumeResult", "TimerTick",
    "TradeClosed", "TradingState",
]
