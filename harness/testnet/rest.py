"""The REST handlers: Binance USD-M routes and their JSON shapes.

A mixin of `Engine` (harness.testnet.engine); `ROUTES` names each route's handler, weight and
permission, and the request gate (harness.testnet.gate) dispatches to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.testnet.errors import BinanceError
from harness.testnet.market import Candle
from harness.testnet.model import Account, PositionBook, Route, SymbolSpec
from harness.testnet.params import boolean, fmt, integer, number, param

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/fapi/v1/ping"): Route(1, False, None, "_r_ping"),
    ("GET", "/fapi/v1/time"): Route(1, False, None, "_r_time"),
    ("GET", "/fapi/v1/exchangeInfo"): Route(1, False, None, "_r_exchange_info"),
    ("GET", "/fapi/v1/klines"): Route(5, False, None, "_r_klines"),
    ("GET", "/fapi/v1/ticker/24hr"): Route(1, False, None, "_r_ticker_24hr"),
    ("GET", "/fapi/v1/ticker/bookTicker"): Route(2, False, None, "_r_book_ticker"),
    ("GET", "/fapi/v1/ticker/price"): Route(1, False, None, "_r_ticker_price"),
    ("GET", "/fapi/v1/premiumIndex"): Route(1, False, None, "_r_premium_index"),
    ("GET", "/fapi/v2/account"): Route(5, True, "read", "_r_account"),
    ("GET", "/fapi/v3/account"): Route(5, True, "read", "_r_account"),
    ("GET", "/fapi/v2/balance"): Route(5, True, "read", "_r_balance"),
    ("GET", "/fapi/v3/balance"): Route(5, True, "read", "_r_balance"),
    ("GET", "/fapi/v1/leverageBracket"): Route(1, True, "read", "_r_leverage_bracket"),
    ("GET", "/fapi/v2/positionRisk"): Route(5, True, "read", "_r_position_risk_v2"),
    ("GET", "/fapi/v3/positionRisk"): Route(5, True, "read", "_r_position_risk_v3"),
    ("POST", "/fapi/v1/leverage"): Route(1, True, "trade", "_r_set_leverage"),
    ("POST", "/fapi/v1/order"): Route(1, True, "trade", "_r_create_order", order_count=True),
    ("GET", "/fapi/v1/order"): Route(1, True, "read", "_r_get_order"),
    ("DELETE", "/fapi/v1/order"): Route(1, True, "trade", "_r_cancel_order"),
    ("GET", "/fapi/v1/openOrders"): Route(1, True, "read", "_r_open_orders"),
    ("GET", "/fapi/v1/allOrders"): Route(5, True, "read", "_r_all_orders"),
    ("DELETE", "/fapi/v1/allOpenOrders"): Route(1, True, "trade", "_r_cancel_all"),
    ("POST", "/fapi/v1/countdownCancelAll"): Route(10, True, "trade", "_r_countdown"),
    ("GET", "/sapi/v1/account/apiRestrictions"): Route(1, True, None, "_r_api_restrictions"),
}


INTERVALS_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}


class RestHandlers:
    """One method per route (`_r_*`) plus the public shapes they share."""

    def _r_ping(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        return {}

    def _r_time(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        return {"serverTime": self.server_time_ms()}

    def symbol_info(self, spec: SymbolSpec) -> dict[str, Any]:
        return {
            "symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
            "pricePrecision": spec.price_precision, "quantityPrecision": spec.quantity_precision,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": ["PoW"],
            "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt(spec.tick_size, spec.price_precision),
                 "maxPrice": "4529764", "tickSize": fmt(spec.tick_size, spec.price_precision)},
                {"filterType": "LOT_SIZE", "minQty": fmt(spec.min_qty, spec.quantity_precision),
                 "maxQty": fmt(spec.max_qty, spec.quantity_precision),
                 "stepSize": fmt(spec.step_size, spec.quantity_precision)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(spec.min_qty, spec.quantity_precision),
                 "maxQty": fmt(spec.max_qty, spec.quantity_precision),
                 "stepSize": fmt(spec.step_size, spec.quantity_precision)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": f"{spec.min_notional:g}"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def _r_exchange_info(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        return {
            "timezone": "UTC", "serverTime": self.server_time_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit_1m},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": self.order_limit_1m},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [self.symbol_info(m.spec) for m in self.markets.values()],
        }

    def _r_klines(self, acct: Account | None, params: Mapping[str, str]) -> list[list[Any]]:
        m = self.market(param(params, "symbol"))
        interval = param(params, "interval")
        if interval not in INTERVALS_MS:
            raise BinanceError(400, -1120)
        step = INTERVALS_MS[interval]
        limit = min(max(integer(params, "limit", 500), 1), 1500)
        start = integer(params, "startTime", -1)
        end = integer(params, "endTime", -1)
        bars = self.candles(m.spec.symbol, step)
        if start >= 0:
            bars = [b for b in bars if b.open_time >= start]
        if end >= 0:
            bars = [b for b in bars if b.open_time <= end]
        bars = bars[:limit] if start >= 0 else bars[-limit:]
        return [self.kline_row(m.spec, b, step) for b in bars]

    @staticmethod
    def kline_row(spec: SymbolSpec, b: Candle, step: int) -> list[Any]:
        pp = spec.price_precision
        quote = b.volume * b.close
        return [b.open_time, fmt(b.open, pp), fmt(b.high, pp), fmt(b.low, pp), fmt(b.close, pp),
                fmt(b.volume, 3), b.open_time + step - 1, fmt(quote, 4), max(int(b.volume * 10), 1),
                fmt(b.volume / 2, 3), fmt(quote / 2, 4), "0"]

    def ticker_24hr(self, symbol: str) -> dict[str, Any]:
        m = self.market(symbol)
        pp = m.spec.price_precision
        n = max(1, 86_400_000 // self.bar_ms)
        bars = (list(m.history) + [m.current_candle()])[-n:]
        open_, last = bars[0].open, m.price
        vol = sum(b.volume for b in bars)
        qvol = sum(b.volume * b.close for b in bars)
        now = self.server_time_ms()
        return {
            "symbol": m.spec.symbol, "priceChange": fmt(last - open_, pp),
            "priceChangePercent": fmt((last - open_) / open_ * 100, 3),
            "weightedAvgPrice": fmt(qvol / vol if vol else last, pp), "lastPrice": fmt(last, pp),
            "lastQty": "0.001", "openPrice": fmt(open_, pp), "highPrice": fmt(max(b.high for b in bars), pp),
            "lowPrice": fmt(min(b.low for b in bars), pp), "volume": fmt(vol, 3), "quoteVolume": fmt(qvol, 2),
            "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": m.update_id,
            "count": m.update_id,
        }

    def _r_ticker_24hr(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        if params.get("symbol"):
            return self.ticker_24hr(params["symbol"])
        return [self.ticker_24hr(s) for s in self.markets]

    def book_ticker(self, symbol: str) -> dict[str, Any]:
        m = self.market(symbol)
        bid, ask = self.book(symbol)
        pp, qp = m.spec.price_precision, m.spec.quantity_precision
        return {"symbol": m.spec.symbol, "bidPrice": fmt(bid, pp), "bidQty": fmt(self.book_qty, qp),
                "askPrice": fmt(ask, pp), "askQty": fmt(self.book_qty, qp), "time": self.server_time_ms(),
                "lastUpdateId": m.update_id}

    def _r_book_ticker(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        if params.get("symbol"):
            return self.book_ticker(params["symbol"])
        return [self.book_ticker(s) for s in self.markets]

    def _r_ticker_price(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        def one(s: str) -> dict[str, Any]:
            m = self.market(s)
            return {"symbol": m.spec.symbol, "price": fmt(m.price, m.spec.price_precision),
                    "time": self.server_time_ms()}
        return one(params["symbol"]) if params.get("symbol") else [one(s) for s in self.markets]

    def premium_index(self, symbol: str) -> dict[str, Any]:
        m = self.market(symbol)
        pp = m.spec.price_precision
        now = self.server_time_ms()
        return {"symbol": m.spec.symbol, "markPrice": fmt(m.price, pp), "indexPrice": fmt(m.price, pp),
                "estimatedSettlePrice": fmt(m.price, pp), "lastFundingRate": "0.00010000",
                "interestRate": "0.00010000", "nextFundingTime": (now // 28_800_000 + 1) * 28_800_000,
                "time": now}

    def _r_premium_index(self, acct: Account | None, params: Mapping[str, str]) -> Any:
        if params.get("symbol"):
            return self.premium_index(params["symbol"])
        return [self.premium_index(s) for s in self.markets]

    def _position_row_v3(self, acct: Account, sym: str, pos: PositionBook) -> dict[str, Any]:
        m = self.markets[sym]
        qp = m.spec.quantity_precision
        lev = self._leverage(acct, sym)
        notional = pos.qty * m.price
        upnl = (m.price - pos.entry_price) * pos.qty if pos.qty else 0.0
        open_margin = sum((o.qty - o.executed_qty) * (o.price or 0) / lev for a, o in self._open[sym].values()
                          if a is acct and not o.reduce_only)
        return {
            "symbol": sym, "positionSide": "BOTH", "positionAmt": fmt(pos.qty, qp),
            "entryPrice": fmt(pos.entry_price, 8), "breakEvenPrice": fmt(pos.entry_price, 8),
            "markPrice": fmt(m.price, 8), "unRealizedProfit": fmt(upnl, 8), "liquidationPrice": "0",
            "isolatedMargin": "0", "notional": fmt(notional, 8), "marginAsset": "USDT", "isolatedWallet": "0",
            "initialMargin": fmt(abs(notional) / lev + open_margin, 8),
            "maintMargin": fmt(abs(notional) * 0.004, 8),
            "positionInitialMargin": fmt(abs(notional) / lev, 8), "openOrderInitialMargin": fmt(open_margin, 8),
            "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_time,
        }

    def _r_position_risk_v3(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        want = self.market(params["symbol"]).spec.symbol if params.get("symbol") else None
        return [self._position_row_v3(acct, s, p) for s, p in sorted(acct.positions.items())
                if p.qty and (want is None or s == want)]

    def _r_position_risk_v2(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        want = self.market(params["symbol"]).spec.symbol if params.get("symbol") else None
        rows = []
        for s in self.markets:
            if want is None or s == want:
                row = self._position_row_v3(acct, s, acct.position(s))
                row.update(leverage=str(self._leverage(acct, s)), marginType="cross", isAutoAddMargin="false",
                           maxNotionalValue="1000000")
                rows.append(row)
        return rows

    def _r_account(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        b = self.balance_summary(acct)
        margin_balance = b["wallet"] + b["unrealized_pnl"]
        pos_im = self.initial_margin(acct, include_orders=False)
        maint = sum(abs(p.qty) * self.markets[s].price * 0.004 for s, p in acct.positions.items())
        now = self.server_time_ms()
        wallet, upnl = fmt(b["wallet"]), fmt(b["unrealized_pnl"])  # each stands twice in the reply
        asset = {
            "asset": "USDT", "walletBalance": wallet, "unrealizedProfit": upnl,
            "marginBalance": fmt(margin_balance), "maintMargin": fmt(maint),
            "initialMargin": fmt(b["initial_margin"]),
            "positionInitialMargin": fmt(pos_im), "openOrderInitialMargin": fmt(b["initial_margin"] - pos_im),
            "crossWalletBalance": wallet, "crossUnPnl": upnl,
            "availableBalance": fmt(b["available"]), "maxWithdrawAmount": fmt(max(b["available"], 0.0)),
            "marginAvailable": True, "updateTime": now,
        }
        positions = [{"symbol": s, "positionSide": "BOTH", "positionAmt": fmt(p.qty, 3),
                      "unrealizedProfit": fmt(self.unrealized_pnl(acct, s)), "isolatedMargin": "0",
                      "notional": fmt(p.qty * self.markets[s].price), "isolatedWallet": "0",
                      "initialMargin": fmt(abs(p.qty) * self.markets[s].price / self._leverage(acct, s)),
                      "maintMargin": fmt(abs(p.qty) * self.markets[s].price * 0.004), "updateTime": p.update_time}
                     for s, p in sorted(acct.positions.items()) if p.qty]
        return {
            "totalInitialMargin": asset["initialMargin"], "totalMaintMargin": asset["maintMargin"],
            "totalWalletBalance": asset["walletBalance"], "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": asset["marginBalance"], "totalPositionInitialMargin": asset["positionInitialMargin"],
            "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
            "totalCrossWalletBalance": asset["walletBalance"], "totalCrossUnPnl": asset["unrealizedProfit"],
            "availableBalance": asset["availableBalance"], "maxWithdrawAmount": asset["maxWithdrawAmount"],
            "canTrade": acct.permissions.enable_futures, "canDeposit": True,
            "canWithdraw": acct.permissions.enable_withdrawals, "feeTier": 0, "updateTime": now,
            "assets": [asset], "positions": positions,
        }

    def _r_balance(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        b = self.balance_summary(acct)
        return [{"accountAlias": "testnet", "asset": "USDT", "balance": fmt(b["wallet"]),
                 "crossWalletBalance": fmt(b["wallet"]), "crossUnPnl": fmt(b["unrealized_pnl"]),
                 "availableBalance": fmt(b["available"]), "maxWithdrawAmount": fmt(max(b["available"], 0.0)),
                 "marginAvailable": True, "updateTime": self.server_time_ms()}]

    def _r_leverage_bracket(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        syms = [self.market(params["symbol"]).spec.symbol] if params.get("symbol") else list(self.markets)
        caps = [(125, 50_000, 0, 0.004, 0), (100, 250_000, 50_000, 0.005, 50), (50, 3_000_000, 250_000, 0.01, 1300),
                (20, 10_000_000, 3_000_000, 0.025, 46_300), (10, 20_000_000, 10_000_000, 0.05, 296_300)]
        return [{"symbol": s, "notionalCoef": 1.0, "brackets": [
            {"bracket": i + 1, "initialLeverage": lev, "notionalCap": cap, "notionalFloor": floor,
             "maintMarginRatio": mmr, "cum": cum} for i, (lev, cap, floor, mmr, cum) in enumerate(caps)]}
            for s in syms]

    def _r_set_leverage(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        sym = self.market(param(params, "symbol")).spec.symbol
        lev = integer(params, "leverage")
        self.set_leverage(acct.api_key, sym, lev)
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}

    def _r_create_order(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        symbol = param(params, "symbol")
        spec = self.market(symbol).spec
        order = self.place_order(
            acct.api_key, symbol, param(params, "side"), param(params, "type"),
            number(params, "quantity") or 0.0, price=number(params, "price", required=False),
            time_in_force=params.get("timeInForce"), reduce_only=boolean(params, "reduceOnly"),
            client_id=params.get("newClientOrderId") or None)
        return order.to_binance(spec)

    def _order_ref(self, params: Mapping[str, str]) -> tuple[int | None, str | None]:
        oid = params.get("orderId")
        cid = params.get("origClientOrderId") or None
        if not oid and not cid:
            raise BinanceError(400, -1102, "Either orderId or origClientOrderId must be sent.")
        try:
            return (int(oid) if oid else None), cid
        except ValueError:
            raise BinanceError(400, -1102, f"Parameter 'orderId' was malformed: {oid!r}") from None

    def _r_get_order(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        spec = self.market(param(params, "symbol")).spec
        oid, cid = self._order_ref(params)
        return self.find_order(acct.api_key, spec.symbol, order_id=oid, client_id=cid).to_binance(spec)

    def _r_cancel_order(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        spec = self.market(param(params, "symbol")).spec
        oid, cid = self._order_ref(params)
        return self.cancel_order(acct.api_key, spec.symbol, order_id=oid, client_id=cid).to_binance(spec)

    def _r_open_orders(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        return [o.to_binance(self.markets[o.symbol].spec)
                for o in self.open_orders(acct.api_key, params.get("symbol") or None)]

    def _r_all_orders(self, acct: Account | None, params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert acct is not None
        spec = self.market(param(params, "symbol")).spec
        limit = min(max(integer(params, "limit", 500), 1), 1000)
        rows = [o for o in acct.orders.values() if o.symbol == spec.symbol]
        return [o.to_binance(spec) for o in rows[-limit:]]

    def _r_cancel_all(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        self.cancel_all(acct.api_key, param(params, "symbol"))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _r_countdown(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        sym = self.market(param(params, "symbol")).spec.symbol
        countdown = integer(params, "countdownTime")
        self.countdown_cancel_all(acct.api_key, sym, countdown)
        return {"symbol": sym, "countdownTime": str(countdown)}

    def _r_api_restrictions(self, acct: Account | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert acct is not None
        out: dict[str, Any] = dict(acct.permissions.to_binance())
        out["enableVanillaOptions"] = False
        out["enablePortfolioMarginTrading"] = False
        out["enableFixApiTrade"] = False
        out["enableFixReadOnly"] = False
        out["createTime"] = acct.create_time
        out["tradingAuthorityExpirationTime"] = acct.create_time + 90 * 86_400_000
        return out
