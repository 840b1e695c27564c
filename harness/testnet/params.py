"""Request parameters as Binance parses them (strings in, typed values or a -1102 error out)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.testnet.errors import BinanceError

# The format specs of fmt, built once: a sim run formats ~25 numbers per account reply.
_SPECS = tuple(f".{d}f" for d in range(16))


def fmt(x: float, decimals: int = 8) -> str:
    """`f"{x:.{decimals}f}"`, byte for byte."""
    return format(x, _SPECS[decimals] if 0 <= decimals < len(_SPECS) else f".{decimals}f")


def on_grid(value: float, step: float) -> bool:
    n = value / step
    return abs(n - round(n)) < 1e-6


def param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def number(params: Mapping[str, str], name: str, required: bool = True) -> float | None:
    if not required and params.get(name) in (None, ""):
        return None
    raw = param(params, name)
    try:
        value = float(raw)
    except ValueError:
        raise BinanceError(400, -1102, f"Parameter '{name}' was malformed: {raw!r}") from None
    if not math.isfinite(value):
        raise BinanceError(400, -1102, f"Parameter '{name}' was malformed: {raw!r}")
    return value


def integer(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        if default is None:
            param(params, name)
        return default  # type: ignore[return-value]
    try:
        return int(raw)  # type: ignore[arg-type]
    except ValueError:
        raise BinanceError(400, -1102, f"Parameter '{name}' was malformed: {raw!r}") from None


def boolean(params: Mapping[str, str], name: str) -> bool:
    raw = str(params.get(name, "false")).lower()
    if raw not in ("true", "false"):
        raise BinanceError(400, -1102, f"Parameter '{name}' must be true or false, got {raw!r}")
    return raw == "true"
