"""Point an unmodified ccxt `binanceusdm` (sync, or async with ccxt.pro streams) at the testnet.

This is the pattern of ../shared/specs/binance-usdm-subset.md: `fetchCurrencies: False`, every
`fapi*` and `sapi*` URL rewritten to the testnet, the linear WebSocket URL set, and Binance's
linear error table restored (ccxt picks it by hostname, which a local URL does not match).
"""

from __future__ import annotations

from typing import Any

FAPI_ORIGIN = "https://fapi.binance.com"
SAPI_ORIGIN = "https://api.binance.com"


def make_ccxt_client(rest_base: str, ws_url: str, key: str, secret: str, async_: bool = True, *,
                     enable_rate_limit: bool = True, timeout_ms: int = 10_000,
                     options: dict[str, Any] | None = None) -> Any:
    """A ccxt binanceusdm client for the testnet at `rest_base` (e.g. http://127.0.0.1:8900).

    async_=True returns a `ccxt.pro.binanceusdm` (async REST + watch_* streams on `ws_url`);
    async_=False returns a synchronous `ccxt.binanceusdm`. Close async clients with `await ex.close()`.
    """
    rest_base = rest_base.rstrip("/")
    if async_:
        import ccxt.pro as ccxt_mod
    else:
        import ccxt as ccxt_mod  # type: ignore[no-redef]
    config: dict[str, Any] = {
        "apiKey": key,
        "secret": secret,
        "enableRateLimit": enable_rate_limit,
        "timeout": timeout_ms,
        "options": {"fetchCurrencies": False, **(options or {})},
    }
    ex = ccxt_mod.binanceusdm(config)
    api = ex.urls["api"]
    for name, url in list(api.items()):
        if not isinstance(url, str):
            continue
        if name.startswith("fapi"):
            api[name] = url.replace(FAPI_ORIGIN, rest_base)
        elif name.startswith("sapi"):
            api[name] = url.replace(SAPI_ORIGIN, rest_base)
    if isinstance(api.get("ws"), dict):
        api["ws"]["linear"] = ws_url
    linear = ex.exceptions["linear"]
    ex.get_exceptions_by_url = lambda url, kind: linear.get(kind, {})
    return ex
