"""The breaker self-test behind the red flag breaker_not_working ("Circuit breaker not working").

A copy of the live board's breakers (their current state included) is fed a synthetic breach -
a drawdown past its threshold and a streak of losing trades one past the limit - on a board of its
own with a private event bus, so the live board, its events and its state are never touched. The
test passes when every enabled halting breaker reaches at least `critical`. Pure.
"""

from __future__ import annotations

import copy

from bot.core.breakers.base import LEVEL_RANK, EquityUpdate, TradeClosed
from bot.core.breakers.board import BreakerBoard
from bot.core.clock import VirtualClock
from bot.core.events import EventBus

_EQUITY = 100_000.0  # any positive figure: the breach is relative to it


def breaker_self_test(board: BreakerBoard, now_ms: int) -> tuple[bool, str]:
    """(ok, detail) of feeding a copy of `board`'s breakers a drawdown and a losing streak."""
    policy = board.policy
    cb = policy.circuit_breakers
    trial = BreakerBoard(policy, EventBus(), VirtualClock(now_ms), breakers=copy.deepcopy(board.breakers))
    expected: list[str] = []
    if cb.drawdown.enabled:
        expected.append("drawdown.intraday")
        depth = (cb.drawdown.threshold_pct + 1.0) / 100.0
        trial.observe(EquityUpdate(now_ms, _EQUITY))
        trial.observe(EquityUpdate(now_ms, _EQUITY * (1.0 - depth)))
    if cb.consecutive_losses.enabled:
        expected.append("consecutive_losses.streak")
        for _ in range(cb.consecutive_losses.max_consecutive_losses + 1):
            trial.observe(TradeClosed(now_ms, -1.0))
    if not expected:
        return False, "no halting breaker (drawdown, consecutive_losses) is enabled"
    levels = {v.key: v.level for v in trial.verdicts}
    silent = [key for key in expected if LEVEL_RANK[levels.get(key, "ok")] < LEVEL_RANK["critical"]]
    if silent:
        return False, (f"self-test breach did not trip {', '.join(silent)} "
                       f"(levels: {', '.join(k + '=' + levels.get(k, 'missing') for k in expected)})")
    return True, f"self-test breach tripped {', '.join(expected)}"
