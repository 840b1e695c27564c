"""Net-mode faults: each injects one step of a scenario into the real stack.

How each kind is made real (DESIGN.md fault table, mode `n`):

| kind | how |
|---|---|
| ws_lag | Toxiproxy `latency` toxic (lag ms) on the WebSocket proxy, downstream; removed after duration |
| ws_disconnect | WebSocket proxy disabled (open sockets closed, new ones refused) for duration |
| exchange_outage | REST and/or WebSocket proxy disabled for duration (scope rest / ws / all) |
| order_latency | Toxiproxy `latency` toxic on the REST proxy (placement_ms, upstream, so every request pays it) |
| redis_outage | Redis proxy disabled for duration |
| bot_crash | the signal to the bot's process group; then the harness restarts the bot |
| restart | SIGTERM, wait for the exit, start again |
| audit_torn | SIGKILL; 4 KiB of a large record appended to the audit log (a kill mid-append); start again |
| state_lost | SIGTERM (the bot saves its last snapshot); the store changed in Redis directly (below); start |
| disk_full | a tmpfs of the bot's audit log (and marker) filled up; and/or Redis `maxmemory 1` (below) |
| spread_spike, price_gap, stale_book, clock_skew, http_errors, order_reject, | testnet admin API |
| unknown_outcome, key_revoked, key_permissions, drawdown, atr_spike | testnet admin API |
| kill_switch, clear_kill_switch, manual_resume | control API (Bearer token); bot down: the CLI |
| loss_streak, winning_trade | in-thread testnet engine (a BUY on the bot's account) + admin `price` (see below) |
| alert_sink_outage | the channel's receiver proxy (slack, webhook, email, sms; all) disabled for duration |
| alert_sink_latency | Toxiproxy `latency` toxic (ms, downstream) on the channel's receiver proxy for duration |
| credential_leak | the secret written into the watched log / git repo (committed) / drop folder of the run directory |

A loss streak (winning trades) is made the way sim mode makes it (harness/faults/market.py): the
harness opens a small long (STREAK_FRACTION of equity) on the bot's account; the bot adopts it at
its next reconcile (the runner starts it with `--reconcile-ms`); the price is walked in small steps
(far under the one-bar price_move limit) past the bot's stop (loss) or take profit (win) - the bot
judges both on every book tick - until the bot closes the trade; then the price goes back to where
the trade started. Established when the count-th close with the wanted pnl sign happened.

state_lost in Redis: delete (DEL the bot's key), flush (FLUSHALL on a Redis the harness started; on
one from GAMEDAY_REDIS_URL only the bot's keys are deleted), empty / not_a_database (the key set to
"" / to text), stale (the key set back to its value at injection). disk_full: target audit or all
fills, with a file, the tmpfs the runner mounted for the bot's audit log (all: and its marker file)
until ENOSPC - root only, else the step is an ERROR; target state or all sets Redis `CONFIG SET
maxmemory 1` (writes fail with OOM, reads work). Both are undone after `duration`.

A fault that cannot be made real here (an inference delay lives inside the bot; a fill delay
separate from the placement delay) raises
`FaultNotInjectable`: the step is reported with the reason and the scenario is an ERROR, never a
pass. So does a streak trade the bot does not adopt or close in time.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from harness.net.bot_process import ControlClient
from harness.testnet.engine import BinanceError

if TYPE_CHECKING:
    from harness.net.runner import NetRun

Revert = Callable[[], None]
STATE_PREFIX = "gameday:"  # bot.io.state.open_store's default key prefix for Redis


class FaultNotInjectable(Exception):
    """This fault cannot be injected in net mode (the message says why)."""


@dataclass
class Injected:
    """What an injection did: when it was in effect, and how to undo it (None: nothing to undo)."""

    established_ms: int | None = None
    revert: Revert | None = None
    revert_after_ms: int | None = None  # the fault's duration (scaled); None: undone at the end only
    notes: list[str] = field(default_factory=list)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------------------------------------ network


def _disable(run: NetRun, *short: str) -> Revert:
    names = [run.stack.proxy_name(s) for s in short]
    toxi = run.stack.toxi
    assert toxi is not None
    for name in names:
        toxi.disable(name)

    def revert() -> None:
        for name in names:
            toxi.enable(name)

    return revert


def ws_lag(run: NetRun, p: dict[str, Any]) -> Injected:
    toxi, proxy = run.stack.toxi, run.stack.proxy_name("ws")
    assert toxi is not None
    name = toxi.add_latency(proxy, int(p["lag"]), 0, "downstream", name="gameday_ws_lag")
    return Injected(now_ms(), lambda: toxi.remove_toxic(proxy, name), p["duration"])


def ws_disconnect(run: NetRun, p: dict[str, Any]) -> Injected:
    return Injected(now_ms(), _disable(run, "ws"), p["duration"])


def exchange_outage(run: NetRun, p: dict[str, Any]) -> Injected:
    scope = p["scope"]
    proxies = {"rest": ("rest",), "ws": ("ws",), "all": ("rest", "ws")}[scope]
    return Injected(now_ms(), _disable(run, *proxies), p["duration"])


def redis_outage(run: NetRun, p: dict[str, Any]) -> Injected:
    return Injected(now_ms(), _disable(run, "redis"), p["duration"])


def order_latency(run: NetRun, p: dict[str, Any]) -> Injected:
    if p["fill_ms"]:
        raise FaultNotInjectable("order_latency fill_ms: the testnet fills market orders in the request "
                                 "that places them, so a fill delay apart from the placement delay cannot "
                                 "be made on the wire; use placement_ms (REST latency) in net mode")
    if not p["placement_ms"]:
        raise FaultNotInjectable("order_latency with placement_ms 0 injects nothing")
    toxi, proxy = run.stack.toxi, run.stack.proxy_name("rest")
    assert toxi is not None
    # Upstream: each request reaches the exchange placement_ms late (a reply is one chunk later).
    name = toxi.add_latency(proxy, round(p["placement_ms"]), 0, "upstream", name="gameday_rest_latency")
    return Injected(now_ms(), lambda: toxi.remove_toxic(proxy, name))


# ------------------------------------------------------------------------------------------ alerts

_ALERT_PROXY = {"slack": "slack", "webhook": "webhook", "email": "email", "sms": "sms"}


def _alert_proxies(p: dict[str, Any]) -> tuple[str, ...]:
    return tuple(_ALERT_PROXY.values()) if p["channel"] == "all" else (_ALERT_PROXY[p["channel"]],)


def alert_sink_outage(run: NetRun, p: dict[str, Any]) -> Injected:
    return Injected(now_ms(), _disable(run, *_alert_proxies(p)), p["duration"])


def alert_sink_latency(run: NetRun, p: dict[str, Any]) -> Injected:
    toxi = run.stack.toxi
    assert toxi is not None
    added = []
    for short in _alert_proxies(p):
        proxy = run.stack.proxy_name(short)
        added.append((proxy, toxi.add_latency(proxy, round(p["ms"]), 0, "downstream", name="gameday_alert_latency")))

    def revert() -> None:
        for proxy, name in added:
            toxi.remove_toxic(proxy, name)

    return Injected(now_ms(), revert, p["duration"])


# ------------------------------------------------------------------------------------------ process


def bot_crash(run: NetRun, p: dict[str, Any]) -> Injected:
    sig = getattr(signal, p["signal"])
    run.bot.kill(sig)
    if sig != signal.SIGKILL:
        if run.bot.wait_exit(run.stop_timeout_s) is None:
            raise FaultNotInjectable(f"the bot did not exit within {run.stop_timeout_s} s of {p['signal']}")
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"bot {p['signal']} then restarted (pid {run.bot.pid})"])


def restart(run: NetRun, p: dict[str, Any]) -> Injected:
    run.bot.stop()
    return Injected(run.restart_bot())


def audit_torn(run: NetRun, p: dict[str, Any]) -> Injected:
    from harness.faults.process import TORN_RECORD

    run.bot.kill(signal.SIGKILL)
    with open(run.audit_path, "ab") as fh:
        fh.write(TORN_RECORD)
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"bot SIGKILLed mid-append ({len(TORN_RECORD)} bytes torn), restarted "
                                      f"(pid {run.bot.pid})"])


def _redis(run: NetRun) -> Any:
    from harness.services import make_redis_client

    handle = run.stack.redis
    if handle is None:
        raise FaultNotInjectable("no Redis in this run's stack")
    return make_redis_client(f"redis://{handle.host}:{handle.port}/0", timeout=2.0)


def state_lost(run: NetRun, p: dict[str, Any]) -> Injected:
    from harness.faults.process import NOT_A_DATABASE

    how = p["how"]
    client = _redis(run)
    key = STATE_PREFIX + "bot"
    try:
        older = client.get(key)
        if how == "stale" and older is None:
            raise FaultNotInjectable("state_lost how=stale needs a saved state to go back to, and Redis holds none")
        if run.bot.stop() is None:
            raise FaultNotInjectable("state_lost: the bot was not running")
        notes = []
        if how == "delete":
            client.delete(key)
        elif how == "flush":
            assert run.stack.redis is not None
            if run.stack.redis.source == "env":  # someone else's Redis: only what is the bot's
                keys = list(client.scan_iter(match=STATE_PREFIX + "*"))
                if keys:
                    client.delete(*keys)
                notes.append(f"Redis from the environment: deleted the bot's {len(keys)} key(s), not FLUSHALL")
            else:
                client.flushall()
        elif how == "empty":
            client.set(key, b"")
        elif how == "not_a_database":
            client.set(key, NOT_A_DATABASE)
        elif how == "stale":
            client.set(key, older)
        else:
            raise FaultNotInjectable(f"state_lost: no net implementation of how={how!r}")
    finally:
        client.close()
    restarted = run.restart_bot()
    return Injected(restarted, notes=[f"state lost while the bot was down ({how}), restarted (pid {run.bot.pid})",
                                      *notes])


def disk_full(run: NetRun, p: dict[str, Any]) -> Injected:
    from harness.net.runner import FILLER

    target = p["target"]
    undo: list[Revert] = []
    notes: list[str] = []
    if target in ("audit", "all"):
        if run.disk_dir is None or not run.disk_mounted:
            raise FaultNotInjectable(run.disk_problem or "no tmpfs was mounted for the bot's audit log")
        filler = run.disk_dir / FILLER
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):  # until not one more byte fits
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        notes.append(f"filled {run.disk_dir} ({filler.stat().st_size} bytes of filler)")
        undo.append(lambda: filler.unlink(missing_ok=True))
    if target in ("state", "all"):
        client = _redis(run)
        before = client.config_get("maxmemory").get("maxmemory", "0")
        client.config_set("maxmemory", 1)

        def restore() -> None:
            client.config_set("maxmemory", before)
            client.close()

        undo.append(restore)
        notes.append("Redis maxmemory 1: every write fails with OOM")

    def revert() -> None:
        for fn in undo:
            fn()

    return Injected(now_ms(), revert, p["duration"], notes)


# ------------------------------------------------------------------------------------------ testnet admin


def spread_spike(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("spread", {"bps": p["bps"], "symbol": run.symbol, "duration_ms": p["duration"]})
    return Injected(now_ms(), lambda: run.stack.admin("spread/reset", {"symbol": run.symbol}), p["duration"])


def price_gap(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("price/jump", {"symbol": run.symbol, "pct": p["pct"]})
    return Injected(now_ms())


def stale_book(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("feed/stall", {"duration_ms": p["duration"]})
    return Injected(now_ms(), lambda: run.stack.admin("feed/reset", {}), p["duration"])


def clock_skew(run: NetRun, p: dict[str, Any]) -> Injected:
    # offset = bot clock - exchange clock; the testnet's server clock = true clock + offset_ms.
    run.stack.admin("clock_skew", {"offset_ms": -int(p["offset"])})
    return Injected(now_ms(), lambda: run.stack.admin("clock_skew", {"offset_ms": 0}))


def http_errors(run: NetRun, p: dict[str, Any]) -> Injected:
    body: dict[str, Any] = {"path": "*", "count": p["count"], "status": p["status"]}
    if p["code"] is not None:
        body["code"] = p["code"]
    if p["retry_after"] is not None:
        body["retry_after_s"] = max(1, round(p["retry_after"] / 1000))
    run.stack.admin("fail", body)
    return Injected(now_ms())


def order_reject(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("reject", {"count": p["count"], "code": p["code"]})
    return Injected(now_ms())


def unknown_outcome(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("unknown_outcome", {"count": p["count"]})
    return Injected(now_ms())


def key_revoked(run: NetRun, p: dict[str, Any]) -> Injected:
    run.stack.admin("keys/revoke", {"api_key": run.api_key})
    return Injected(now_ms())


_PERMISSION_FLAGS = {"withdraw": "enableWithdrawals", "trade": "enableFutures", "read": "enableReading",
                     "transfer": "enableInternalTransfer", "universal_transfer": "permitsUniversalTransfer"}


def key_permissions(run: NetRun, p: dict[str, Any]) -> Injected:
    flags = {}
    for name in p["flags"]:
        flag = _PERMISSION_FLAGS.get(name, name)
        flags[flag] = True
    run.stack.admin("keys/permissions", {"api_key": run.api_key, "permissions": flags})
    return Injected(now_ms())


def drawdown(run: NetRun, p: dict[str, Any]) -> Injected:
    """Move the price until the bot's equity is depth_pct below its current level (its peak)."""
    acct = run.account()
    qty = float(acct["positions"].get(run.symbol, {}).get("qty", 0.0))
    if abs(qty) < 1e-12:
        raise FaultNotInjectable("drawdown needs an open position to lose on; give the scenario "
                                 "account.position")
    equity = float(acct["wallet"]) + float(acct["unrealized_pnl"])
    price = float(run.stack.admin("state", method="GET")["markets"][run.symbol]["price"])
    loss = equity * p["depth_pct"] / 100.0
    target = price - loss / qty
    if target <= 0:
        raise FaultNotInjectable(f"a {p['depth_pct']}% drawdown needs price {target:.2f}; the position is too small")
    run.stack.admin("price", {"symbol": run.symbol, "price": target})
    return Injected(now_ms(), notes=[f"drawdown: price {price:.2f} -> {target:.2f} (equity {equity:.2f})"])


def atr_spike(run: NetRun, p: dict[str, Any]) -> Injected:
    """Swing the price bar over bar by multiple x the per-bar volatility for the duration."""
    price = float(run.stack.admin("state", method="GET")["markets"][run.symbol]["price"])
    bar_real = max(run.bar_real_ms, 1)
    bars = max(2, round(p["duration"] / bar_real))
    amplitude = price * run.vol_bps / 10_000 * p["multiple"] * 2
    prices = [price + (amplitude if i % 2 == 0 else -amplitude) for i in range(bars)]
    run.stack.admin("price/path", {"symbol": run.symbol, "prices": prices, "step_ms": bar_real})
    return Injected(now_ms())


# ------------------------------------------------------------------------------------------ trades

STREAK_FRACTION = 0.05  # notional of each streak trade, as a fraction of equity (far from the drawdown limit)
STEP_PCT = 0.25  # each price step of the walk, % of entry
BEYOND = 0.003  # the walk ends this far past the widest stop / take profit the policy allows (fraction)
ADOPT_TIMEOUT_S = 10.0  # at least; and three of the bot's reconcile periods (run.reconcile_ms)
STEP_PAUSE_S = 0.05  # between steps: the bot sees each step as a book tick and acts on it at once
CLOSE_TIMEOUT_S = 5.0  # after the walk's last step
FLAT_TIMEOUT_S = 5.0


def loss_streak(run: NetRun, p: dict[str, Any]) -> Injected:
    return _trades(run, p, win=False)


def winning_trade(run: NetRun, p: dict[str, Any]) -> Injected:
    return _trades(run, p, win=True)


def _trades(run: NetRun, p: dict[str, Any], *, win: bool) -> Injected:
    fault = "winning_trade" if win else "loss_streak"
    kind = "winning" if win else "losing"
    count = int(p["count"])
    if count < 1:
        raise FaultNotInjectable(f"{fault} with count {count} injects nothing")
    if run.policy is None:
        raise FaultNotInjectable(f"{fault}: no policy loaded, so the bot's stop / take profit are unknown")
    exits = run.policy.exits
    # The stop is entry x stop_distance_pct (ATR-based, clamped to [min_pct, max_pct]); the take
    # profit risk_multiple times that. The bot's ATR is not visible from here, so the walk may go to
    # the widest level the policy allows, and stops as soon as the bot has closed - but never as far
    # as the one-bar price_move limit (that would test the gap breaker, not the streak).
    reach = exits.stop_loss.max_pct * (exits.take_profit.risk_multiple if win else 1.0) + BEYOND
    check = run.policy.circuit_breakers.volatility.price_move
    if check.enabled:
        reach = min(reach, 0.9 * check.max_move_pct / 100)
    testnet = run.stack.testnet
    assert testnet is not None
    engine = testnet.handle.engine
    spec = engine.market(run.symbol).spec
    notes: list[str] = []
    closed_ms: int | None = None
    adopt_timeout = max(ADOPT_TIMEOUT_S, 3 * run.reconcile_ms / 1000)
    for n in range(1, count + 1):
        trade = f"{fault}: trade {n} of {count}"
        _wait_flat(run, trade)
        start = _price(run)
        acct = run.account()
        equity = float(acct["wallet"]) + float(acct["unrealized_pnl"])
        qty = max(math.floor(STREAK_FRACTION * equity / start / spec.step_size) * spec.step_size,
                  math.ceil(spec.min_notional * 1.2 / start / spec.step_size) * spec.step_size)
        qty = round(qty, spec.quantity_precision)
        client_id = f"gameday-harness-{now_ms()}-{n}"
        since = run.follower.count()
        try:
            testnet.call(partial(engine.place_order, run.api_key, run.symbol, "BUY", "MARKET", qty,
                                 client_id=client_id))
        except BinanceError as exc:
            raise FaultNotInjectable(f"{trade}: the testnet refused the harness's BUY {qty} {run.symbol} on "
                                     f"the bot's account: HTTP {exc.status} code {exc.code} {exc.msg}") from None
        adopted = run.follower.wait_for(
            lambda e: e.name == "position.opened" and e.fields.get("reason") == "reconciled",
            since=since, timeout=adopt_timeout)
        if adopted is None:
            raise FaultNotInjectable(f"{trade}: the bot did not adopt the BUY {qty} {run.symbol} opened on its "
                                     f"account within {adopt_timeout:.0f} s (no position.opened"
                                     f"{{reason=reconciled}}; bot {'running' if run.bot.alive() else 'down'})")
        entry = float(adopted.fields.get("entry") or start)
        goal = entry * (1 + reach if win else 1 - reach)
        closed = _walk_until_closed(run, goal, entry * STEP_PCT / 100, since)
        if closed is None:
            raise FaultNotInjectable(f"{trade}: the bot did not close the adopted position within "
                                     f"{CLOSE_TIMEOUT_S:.0f} s of the price reaching {goal:.2f} ({reach * 100:.2f}% "
                                     f"{'above' if win else 'below'} its entry {entry:.2f}: past the widest "
                                     f"{'take profit' if win else 'stop'} the policy allows, or as far as the "
                                     f"price may go under the price_move limit)")
        pnl = closed.fields.get("pnl")
        if not isinstance(pnl, int | float) or (pnl <= 0 if win else pnl >= 0):
            raise FaultNotInjectable(f"{trade}: the bot closed it ({closed.fields.get('reason')}) with pnl "
                                     f"{pnl!r}, not a {kind} trade")
        closed_ms = closed.ts_ms
        notes.append(f"trade {n}: BUY {qty} at {entry:.2f}, closed by the bot ({closed.fields.get('reason')}) "
                     f"at {closed.fields.get('exit')}, pnl {pnl:.2f}")
        run.stack.admin("price", {"symbol": run.symbol, "price": start})  # back where the trade started
    return Injected(closed_ms, notes=notes)


def _price(run: NetRun) -> float:
    return float(run.stack.admin("state", method="GET")["markets"][run.symbol]["price"])


def _wait_flat(run: NetRun, trade: str) -> None:
    deadline = time.monotonic() + FLAT_TIMEOUT_S
    while True:
        qty = float(run.account()["positions"].get(run.symbol, {}).get("qty", 0.0))
        if abs(qty) < 1e-12:
            return
        if time.monotonic() >= deadline:
            raise FaultNotInjectable(f"{trade}: the bot's account holds {qty} {run.symbol}; it did not go "
                                     f"flat within {FLAT_TIMEOUT_S:.0f} s, so the next trade cannot start")
        time.sleep(0.05)


def _walk_until_closed(run: NetRun, goal: float, step: float, since: int) -> Any:
    """Step the price toward goal, one step per pause, until the bot reports position.closed."""

    def is_closed(e: Any) -> bool:
        return bool(e.name == "position.closed")

    price = _price(run)
    while True:
        closed = run.follower.wait_for(is_closed, since=since, timeout=STEP_PAUSE_S)
        if closed is not None:
            return closed
        if not run.bot.alive():
            raise FaultNotInjectable(f"the bot exited while the price walked to {goal:.2f}")
        if price == goal:
            return run.follower.wait_for(is_closed, since=since, timeout=CLOSE_TIMEOUT_S)
        price = min(price + step, goal) if goal > price else max(price - step, goal)
        run.stack.admin("price", {"symbol": run.symbol, "price": price})


# ------------------------------------------------------------------------------------------ operator


def kill_switch(run: NetRun, p: dict[str, Any]) -> Injected:
    token = {"valid": run.tokens[p.get("role", "risk_manager")], "invalid": "not-the-token",
             "missing": None}[p["credentials"]]
    body = {"mode": p["mode"], "reason": p["reason"]}
    sent = now_ms()  # the call returns after the bot acted: the SLA clock starts when it is sent
    if run.bot.alive():
        response = run.control.post("/killswitch", body, token)
        if response.status_code not in (200, 401, 403):
            raise FaultNotInjectable(f"control API POST /killswitch answered {ControlClient.outcome(response)}")
        return Injected(sent, notes=[f"kill switch via control API: {ControlClient.outcome(response)}"])
    return Injected(sent, notes=[run.killswitch_cli(["--mode", p["mode"], "--reason", p["reason"]], token)])


def clear_kill_switch(run: NetRun, p: dict[str, Any]) -> Injected:
    if run.bot.alive():
        response = run.control.post("/killswitch/clear", {}, run.token)
        if response.status_code != 200:
            raise FaultNotInjectable(f"control API clear answered {ControlClient.outcome(response)}")
        return Injected(now_ms())
    return Injected(now_ms(), notes=[run.killswitch_cli(["--clear"], run.token)])


def manual_resume(run: NetRun, p: dict[str, Any]) -> Injected:
    if not run.bot.alive():
        raise FaultNotInjectable("manual_resume needs the running bot's control API; the bot is down")
    response = run.control.post("/resume", {}, run.token)
    if response.status_code not in (200, 409):
        raise FaultNotInjectable(f"control API /resume answered {ControlClient.outcome(response)}")
    return Injected(now_ms(), notes=[f"resume: {ControlClient.outcome(response)}"])


# ------------------------------------------------------------------------------------------ credentials


def credential_leak(run: NetRun, p: dict[str, Any]) -> Injected:
    """The bot's secret written into a watched place under the run directory (harness.faults.credentials)."""
    from harness.faults.contract import FaultError
    from harness.faults.credentials import write_leak

    at = now_ms()
    try:
        name = write_leak(run.run_dir, p["where"], at, run.api_key, run.secret)
    except FaultError as exc:
        raise FaultNotInjectable(str(exc)) from None
    return Injected(at, notes=[f"leaked the bot's secret into {name}"])


# ------------------------------------------------------------------------------------------ not injectable


def _not_injectable(why: str) -> Callable[[NetRun, dict[str, Any]], Injected]:
    def inject(run: NetRun, p: dict[str, Any]) -> Injected:
        raise FaultNotInjectable(why)

    return inject


NET_FAULTS: dict[str, Callable[[NetRun, dict[str, Any]], Injected]] = {
    "ws_lag": ws_lag, "ws_disconnect": ws_disconnect, "exchange_outage": exchange_outage,
    "redis_outage": redis_outage, "order_latency": order_latency, "bot_crash": bot_crash, "restart": restart,
    "spread_spike": spread_spike, "price_gap": price_gap, "stale_book": stale_book, "clock_skew": clock_skew,
    "http_errors": http_errors, "order_reject": order_reject, "unknown_outcome": unknown_outcome,
    "key_revoked": key_revoked, "key_permissions": key_permissions, "drawdown": drawdown, "atr_spike": atr_spike,
    "kill_switch": kill_switch, "clear_kill_switch": clear_kill_switch, "manual_resume": manual_resume,
    "loss_streak": loss_streak, "winning_trade": winning_trade,
    "audit_torn": audit_torn, "state_lost": state_lost, "disk_full": disk_full,
    "alert_sink_outage": alert_sink_outage, "alert_sink_latency": alert_sink_latency,
    "inference_latency": _not_injectable("inference runs inside the bot process; there is no wire to slow "
                                         "(run it in sim mode)"),
    "credential_leak": credential_leak,
}


def run_cli(argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *argv], env=env, cwd=cwd, capture_output=True,  # noqa: S603
                          text=True, timeout=timeout, check=False)
