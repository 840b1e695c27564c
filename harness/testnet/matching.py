"""Orders: validation, booking, matching against the quoted book, fills, cancels, the dead-man switch.

A mixin of `Engine` (harness.testnet.engine), whose constructor sets the state it reads.
"""

from __future__ import annotations

from typing import Any

from harness.testnet.errors import BinanceError
from harness.testnet.model import MINUTE_MS, Account, Order
from harness.testnet.params import on_grid


class Matching:
    """The order book of each account and the fills against the market."""

    def _log_order(self, event: str, order: Order | None, **extra: Any) -> None:
        rec: dict[str, Any] = {"seq": next(self._order_seq), "ts": extra.pop("ts", self.now_ms()), "event": event}
        if order is not None:
            rec.update(order_id=order.order_id, client_id=order.client_id, api_key=order.api_key,
                       symbol=order.symbol, side=order.side, type=order.type, tif=order.time_in_force,
                       qty=order.qty, price=order.price, reduce_only=order.reduce_only, status=order.status,
                       executed_qty=order.executed_qty)
        rec.update(extra)
        self.order_log.append(rec)

    def place_order(self, api_key: str, symbol: str, side: str, type_: str, qty: float, *,
                    price: float | None = None, time_in_force: str | None = None, reduce_only: bool = False,
                    client_id: str | None = None) -> Order:
        """Validate, book and (when it takes liquidity) fill a new order. Raises BinanceError.

        Direct use (tests, harness) skips request gating; `handle` applies it first.
        """
        self.poll()
        acct = self._account(api_key)
        m = self.market(symbol)
        spec = m.spec
        side, type_ = side.upper(), type_.upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, f"Invalid side: {side!r}.")
        if type_ not in ("MARKET", "LIMIT"):
            raise BinanceError(400, -1116, f"Invalid orderType: {type_!r}.")
        tif = (time_in_force or "GTC").upper()
        if tif not in ("GTC", "IOC", "GTX", "FOK"):
            raise BinanceError(400, -1115, f"Invalid timeInForce: {tif!r}.")
        if type_ == "LIMIT":
            if price is None:
                raise BinanceError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, "
                                               "or malformed.")
            if not price > 0:
                raise BinanceError(400, -1102, f"Parameter 'price' must be > 0, got {price}.")
            if not on_grid(price, spec.tick_size):
                raise BinanceError(400, -1111, f"Price {price} is not a multiple of tickSize {spec.tick_size}.")
        else:
            if price is not None:
                raise BinanceError(400, -1106, "Parameter 'price' sent when not required.")
            tif = "GTC"
        if not qty > 0:
            raise BinanceError(400, -4003)
        if not on_grid(qty, spec.step_size):
            raise BinanceError(400, -1111, f"Quantity {qty} is not a multiple of stepSize {spec.step_size}.")
        if qty < spec.min_qty or qty > spec.max_qty:
            raise BinanceError(400, -4003 if qty < spec.min_qty else -1013,
                               f"Quantity {qty} outside [{spec.min_qty}, {spec.max_qty}].")
        if client_id is not None:
            if not client_id or len(client_id) > 36:
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; "
                                               "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
            if client_id in acct.by_client_id:
                self._log_order("rejected", None, api_key=api_key, client_id=client_id, code=-4116)
                raise BinanceError(400, -4116)

        def reject(code: int, msg: str | None = None) -> BinanceError:
            self._log_order("rejected", None, api_key=api_key, client_id=client_id, symbol=spec.symbol,
                            side=side, type=type_, qty=qty, price=price, reduce_only=reduce_only, code=code)
            return BinanceError(400, code, msg)

        if self._reject_next:
            code, msg = self._reject_next.pop(0)
            raise reject(code, msg)
        sign = 1 if side == "BUY" else -1
        pos = acct.position(spec.symbol)
        if reduce_only and (pos.qty == 0 or (pos.qty > 0) == (sign > 0)):
            raise reject(-2022)
        bid, ask = self.book(spec.symbol)
        touch = ask if sign > 0 else bid
        takes = type_ == "MARKET" or (price is not None and (price >= ask if sign > 0 else price <= bid))
        if tif == "GTX" and takes:
            raise reject(-5022)
        ref_price = touch if takes else float(price)  # type: ignore[arg-type]
        if not reduce_only and qty * ref_price < spec.min_notional:
            raise reject(-4164, f"Order's notional must be no smaller than {spec.min_notional:g} "
                                f"(unless you choose reduce only).")
        if reduce_only:
            qty = min(qty, abs(pos.qty)) if takes else qty
        else:
            lev = self._leverage(acct, spec.symbol)
            base_margin = self.initial_margin(acct)
            if takes:
                after = pos.qty + sign * qty
                extra = (abs(after) - abs(pos.qty)) * ref_price / lev + qty * ref_price * self.taker_fee
            else:
                extra = qty * ref_price / lev
            equity = acct.wallet + self.unrealized_pnl(acct)
            if extra > 0 and base_margin + extra > equity:
                raise reject(-2019)
        if (tif in ("IOC", "FOK")) and not takes:
            status = "EXPIRED"
        else:
            status = "NEW"
        now = self.now_ms()
        order = Order(order_id=next(self._order_ids), client_id=client_id or f"testnet-{len(acct.by_client_id) + 1}"
                      f"-{now}", api_key=api_key, symbol=spec.symbol, side=side, type=type_, time_in_force=tif,
                      qty=qty, price=price, reduce_only=reduce_only, time=now, status=status, update_time=now)
        acct.orders[order.order_id] = order
        acct.by_client_id[order.client_id] = order.order_id
        minute, count = acct.order_window
        cur = now // MINUTE_MS
        acct.order_window = (cur, count + 1 if minute == cur else 1)
        self._log_order("new", order)
        if takes:
            price = touch if self.taker_fill_price is None else self.taker_fill_price(spec.symbol, sign, qty, touch)
            self._fill(acct, order, price, maker=False)
        elif status == "NEW":
            self._open[spec.symbol][order.order_id] = (acct, order)
        else:
            self._log_order("expired", order)
        if self._unknown_next:
            mode = self._unknown_next.pop(0)
            self._log_order("reply_lost", order, mode=mode)
            err = BinanceError(503, -1007)
            err.order = order
            err.drop_connection = mode == "drop"
            raise err
        return order

    def _fill(self, acct: Account, order: Order, price: float, *, maker: bool) -> None:
        pos = acct.position(order.symbol)
        qty = order.qty - order.executed_qty
        if order.reduce_only:
            if pos.qty == 0 or (pos.qty > 0) == (order.sign > 0):
                order.status = "EXPIRED"
                order.update_time = self.now_ms()
                self._open[order.symbol].pop(order.order_id, None)
                self._log_order("expired", order, reason="reduce_only_nothing_to_reduce")
                return
            if qty > abs(pos.qty):
                qty = abs(pos.qty)
                order.qty = order.executed_qty + qty
        fee = qty * price * (self.maker_fee if maker else self.taker_fee)
        realized = self._apply_to_position(pos, order.sign * qty, price)
        pos.update_time = self.now_ms()
        acct.wallet += realized - fee
        acct.realized_pnl += realized
        acct.fees_paid += fee
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.status = "FILLED"
        order.update_time = self.now_ms()
        self._open[order.symbol].pop(order.order_id, None)
        self.markets[order.symbol].volume += qty
        self._log_order("filled", order, fill_qty=qty, fill_price=price, fee=fee, realized_pnl=realized,
                        maker=maker, position_qty=pos.qty)

    def _match_resting(self, symbol: str) -> None:
        book = self._open.get(symbol)
        if not book:
            return
        bid, ask = self.book(symbol)
        for order_id in sorted(book):
            entry = book.get(order_id)
            if entry is None:
                continue
            acct, order = entry
            assert order.price is not None
            if (order.sign > 0 and ask <= order.price) or (order.sign < 0 and bid >= order.price):
                self._fill(acct, order, order.price, maker=True)

    def find_order(self, api_key: str, symbol: str, *, order_id: int | None = None,
                   client_id: str | None = None) -> Order:
        acct = self._account(api_key)
        sym = self.market(symbol).spec.symbol
        if order_id is None and client_id is not None:
            order_id = acct.by_client_id.get(client_id)
        order = acct.orders.get(order_id) if order_id is not None else None
        if order is None or order.symbol != sym:
            raise BinanceError(400, -2013)
        return order

    def cancel_order(self, api_key: str, symbol: str, *, order_id: int | None = None,
                     client_id: str | None = None) -> Order:
        self.poll()
        try:
            order = self.find_order(api_key, symbol, order_id=order_id, client_id=client_id)
        except BinanceError:
            raise BinanceError(400, -2011) from None
        if not order.is_open:
            raise BinanceError(400, -2011)
        self._cancel(order, self.now_ms(), "user")
        return order

    def _cancel(self, order: Order, ts: int, reason: str) -> None:
        order.status = "CANCELED"
        order.update_time = ts
        self._open[order.symbol].pop(order.order_id, None)
        self._log_order("canceled", order, reason=reason, ts=ts)

    def _cancel_all(self, acct: Account, symbol: str, ts: int, reason: str) -> int:
        book = self._open[symbol]
        mine = [o for a, o in book.values() if a is acct]
        for o in mine:
            self._cancel(o, ts, reason)
        return len(mine)

    def cancel_all(self, api_key: str, symbol: str) -> int:
        self.poll()
        return self._cancel_all(self._account(api_key), self.market(symbol).spec.symbol, self.now_ms(), "user")

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[Order]:
        self.poll()
        acct = self._account(api_key)
        symbols = [self.market(symbol).spec.symbol] if symbol else list(self._open)
        return sorted((o for s in symbols for a, o in self._open[s].values() if a is acct),
                      key=lambda o: o.order_id)

    def countdown_cancel_all(self, api_key: str, symbol: str, countdown_ms: int) -> None:
        """Dead-man switch: cancel the symbol's open orders unless renewed within `countdown_ms` (0 = off)."""
        self.poll()
        acct = self._account(api_key)
        sym = self.market(symbol).spec.symbol
        if countdown_ms < 0:
            raise BinanceError(400, -1102, "countdownTime must be >= 0.")
        if countdown_ms == 0:
            acct.countdowns.pop(sym, None)
            return
        deadline = self.now_ms() + countdown_ms
        acct.countdowns[sym] = (countdown_ms, deadline)
        self._schedule_poll(deadline)
