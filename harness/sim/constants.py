"""What every part of a sim run agrees on: the run's start, symbol, the bot's fake key, the
operator principals, and the agenda's priorities at one instant.

A leaf module (it imports nothing from harness/), so fault implementations can use these at import
time without importing the world that runs them.
"""

from __future__ import annotations

import functools

from bot.io.access import Access, Principal, load_access_config, token_digest

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
SYMBOL = "BTCUSDT"
API_KEY = "gameday-sim-key"
API_SECRET = "gameday-FAKE-secret-0000-not-a-real-key"  # what credential_leak leaks
OPERATOR_TOKEN = "gameday-operator-token-sim-only"
OPERATOR = "gameday-operator"  # the Risk Manager principal whose token is OPERATOR_TOKEN
HARNESS_ORDER_PREFIX = "gameday-harness-"
# Agenda priorities at one instant: feed deliveries, fault phases, steps, then the bar close.
P_DELIVERY, P_PHASE, P_STEP, P_BAR = 0, 1, 2, 3
STUCK_POLL_MS = 1_000


def operator_token(role: str) -> str:
    return OPERATOR_TOKEN if role == "risk_manager" else f"gameday-{role}-token-sim-only"


@functools.cache
def operator_access() -> Access:
    """The bot's role-based access (config/access.yaml) with one sim principal per role; the Risk
    Manager is OPERATOR (token OPERATOR_TOKEN)."""
    config = load_access_config()
    return Access(config, [Principal(OPERATOR if role == "risk_manager" else f"gameday-{role.replace('_', '-')}",
                                     role, token_digest(operator_token(role))) for role in config.roles])

