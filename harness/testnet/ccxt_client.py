"""Point an unmodified ccxt `binanceusdm` (sync, or async with ccxt.pro streams) at the testnet.

This is the pattern of ../shared/specs/binance-usdm-subset.md: `fetchCurrencies: False`, every
`fapi*` and `sapi*` URL rewritten to the testnet, the linear WebSocket URL set, and Binance's
linear error table restored (ccxt picks it by hostname, which a local URL does not match).
"""

from __future__ import annotations

from typing import Any

from bot.io.exchange_ccxt import configure_client


def make_ccxt_client(rest_base: str, ws_url: str, key: str, secret: str, async_: bool = True, *,
                     enable_rate_limit: bool = True, timeout_ms: int = 10_000,
                     options: dict[str, Any] | None = None) -> Any:
    """A ccxt binanceusdm client for the testnet at `rest_base` (e.g. http://127.0.0.1:8900).

    async_=True returns a `ccxt.pro.binanceusdm` (async REST + watch_* streams on `ws_url`);
    async_=False returns a synchronous `ccxt.binanceusdm`. Close async clients with `await ex.close()`.
    The URL rewrite is the bot's own (`configure_client`): tests see exactly what the bot does.
    """
    if async_:
        import ccxt.pro as ccxt_mod
    else:
        import ccxt as ccxt_mod  # type: ignore[no-redef]
    config: dict[str, Any] = {"apiKey": key, "secret": secret, "enableRateLimit": enable_rate_limit,
                              "timeout": timeout_ms, "options": {"fetchCurrencies": False, **(options or {})}}
    return configure_client(ccxt_mod.binanceusdm(config), rest_url=rest_base, ws_url=ws_url)
