"""Binance's error replies: the codes and messages the testnet answers with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.testnet.model import Order

MSG: dict[int, str] = {
    -1000: "An unknown error occurred while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1003: "Too many requests; please use WebSocket Streams for live updates to avoid polling the API.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1100: "Illegal characters found in a parameter.",
    -1102: "Mandatory parameter was not sent, was empty/null, or malformed.",
    -1106: "Parameter sent when not required.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -1120: "Invalid interval.",
    -1121: "Invalid symbol.",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4028: "Leverage is not valid.",
    -4116: "ClientOrderId is duplicated.",
    -4164: "Order's notional must be no smaller than the minimum notional (unless you choose reduce only).",
    -5000: "Path not found.",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected. "
           "The order will not be recorded in the order's history",
}


class BinanceError(Exception):
    """A Binance error reply: HTTP status + JSON `{"code", "msg"}` (+ Retry-After seconds).

    `order` is set when the order was booked but the reply is lost (unknown outcome);
    `drop_connection` asks a network transport to drop the connection instead of answering;
    `html` asks it to answer with an HTML body (a proxy's 502/503 page) instead of JSON.
    """

    def __init__(self, status: int, code: int | None, msg: str | None = None,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        self.code = code
        self.msg = msg if msg is not None else MSG.get(code or 0, "error")
        self.retry_after_s = retry_after_s
        self.headers: dict[str, str] = {}
        self.order: Order | None = None
        self.drop_connection = False
        self.html = code is None
        super().__init__(f"HTTP {status} code {code}: {self.msg}")

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}
