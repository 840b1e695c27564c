"""API keys, permissions, wallets, leverage, margin and one-way positions.

A mixin of `Engine` (harness.testnet.engine), whose constructor sets the state it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.testnet.errors import BinanceError
from harness.testnet.model import LOOPBACK_IPS, Account, Permissions, PositionBook


class Accounts:
    """Keys and the money behind them."""

    def create_key(self, api_key: str, secret: str, *, permissions: Mapping[str, Any] | None = None,
                   ip_allowlist: Iterable[str] | None = LOOPBACK_IPS, balance: float | None = None) -> Account:
        if not api_key or not secret:
            raise ValueError("api_key and secret must be non-empty")
        if api_key in self.accounts and not self.accounts[api_key].revoked:
            raise ValueError(f"API key {api_key!r} already exists")
        perms = Permissions()
        if permissions:
            perms.update(permissions)
        allow = list(ip_allowlist or [])
        if not allow:
            perms.ip_restrict = False
        wallet = self.starting_balance if balance is None else float(balance)
        acct = Account(api_key=api_key, secret=secret, permissions=perms, ip_allowlist=allow,
                       wallet=wallet, deposits=wallet, create_time=self.server_time_ms())
        self.accounts[api_key] = acct
        self._log_order("key_created", None, api_key=api_key)
        return acct

    def _account(self, api_key: str) -> Account:
        acct = self.accounts.get(api_key)
        if acct is None:
            raise KeyError(f"no such API key {api_key!r}")
        return acct

    def revoke_key(self, api_key: str) -> None:
        self._account(api_key).revoked = True
        self._log_order("key_revoked", None, api_key=api_key)

    def rotate_key(self, old_key: str, new_key: str, secret: str, *, permissions: Mapping[str, Any] | None = None,
                   ip_allowlist: Iterable[str] | None = LOOPBACK_IPS) -> Account:
        """Replace a (leaked) key by a new one on the same funds: the old key is revoked and its flat
        wallet moves to the new key. Refused while the old key holds a position or a resting order."""
        old = self._account(old_key)
        exposed = [s for s, p in old.positions.items() if p.qty] + [str(o.client_id) for o in old.orders.values()
                                                                      if o.status in ("NEW", "PARTIALLY_FILLED")]
        if exposed:
            raise ValueError(f"key {old_key!r} still has positions or open orders ({exposed}); flatten first")
        acct = self.create_key(new_key, secret, permissions=permissions, ip_allowlist=ip_allowlist, balance=old.wallet)
        acct.deposits, acct.realized_pnl, acct.fees_paid = old.deposits, old.realized_pnl, old.fees_paid
        old.wallet = 0.0
        old.revoked = True
        self._log_order("key_rotated", None, api_key=old_key, new_api_key=new_key)
        return acct

    def set_permissions(self, api_key: str, flags: Mapping[str, Any] | None = None, *,
                        ip_allowlist: Iterable[str] | None = None) -> Permissions:
        acct = self._account(api_key)
        if flags:
            acct.permissions.update(flags)
        if ip_allowlist is not None:
            acct.ip_allowlist = list(ip_allowlist)
        return acct.permissions

    def secret_of(self, api_key: str) -> str | None:
        acct = self.accounts.get(api_key)
        return acct.secret if acct else None

    def unrealized_pnl(self, acct: Account, symbol: str | None = None) -> float:
        total = 0.0
        for sym, pos in acct.positions.items():
            if pos.qty and (symbol is None or sym == symbol):
                total += (self.markets[sym].price - pos.entry_price) * pos.qty
        return total

    def _leverage(self, acct: Account, symbol: str) -> int:
        return acct.leverage.get(symbol, self.default_leverage)

    def initial_margin(self, acct: Account, *, include_orders: bool = True) -> float:
        total = 0.0
        for sym, pos in acct.positions.items():
            if pos.qty:
                total += abs(pos.qty) * self.markets[sym].price / self._leverage(acct, sym)
        if include_orders:
            for sym, book in self._open.items():
                for a, o in book.values():
                    if a is acct and not o.reduce_only and o.price is not None:
                        total += (o.qty - o.executed_qty) * o.price / self._leverage(acct, sym)
        return total

    def available_balance(self, acct: Account) -> float:
        return acct.wallet + self.unrealized_pnl(acct) - self.initial_margin(acct)

    def balance_summary(self, acct: Account) -> dict[str, float]:
        upnl = self.unrealized_pnl(acct)
        im = self.initial_margin(acct)
        return {"wallet": acct.wallet, "unrealized_pnl": upnl, "initial_margin": im,
                "available": acct.wallet + upnl - im, "realized_pnl": acct.realized_pnl, "fees": acct.fees_paid}

    def set_leverage(self, api_key: str, symbol: str, leverage: int) -> None:
        if not 1 <= leverage <= 125:
            raise BinanceError(400, -4028)
        self._account(api_key).leverage[self.market(symbol).spec.symbol] = leverage

    @staticmethod
    def _apply_to_position(pos: PositionBook, signed_qty: float, price: float) -> float:
        """Apply a fill to a one-way position; returns the realised P&L."""
        q = pos.qty
        if q == 0 or (q > 0) == (signed_qty > 0):
            new = q + signed_qty
            pos.entry_price = (abs(q) * pos.entry_price + abs(signed_qty) * price) / abs(new)
            pos.qty = new
            return 0.0
        closing = min(abs(signed_qty), abs(q))
        realized = closing * (price - pos.entry_price) * (1 if q > 0 else -1)
        new = q + signed_qty
        if abs(new) < 1e-12:
            pos.qty, pos.entry_price = 0.0, 0.0
        elif (new > 0) == (q > 0):
            pos.qty = new
        else:
            pos.qty, pos.entry_price = new, price
        return realized
