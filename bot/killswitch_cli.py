"""The standalone kill switch: works when the bot process is dead (risk_safety_checklist "Kill-Switch Usage").

    python -m bot killswitch --mode immediate --reason "Security breach"
    python -m bot killswitch --mode graceful  --reason "Model deployment"
    python -m bot killswitch --mode pause     --reason "Investigating anomaly"
    python -m bot killswitch --clear
    python -m bot killswitch --status

Every request is authenticated (the operator's token from --token-file or GAMEDAY_KILL_TOKEN,
checked with hmac.compare_digest against the configured token, see bot.io.credentials) and every
attempt, accepted or rejected, is recorded in the audit log. Recording never stops the action: the
CLI acts first - the marker file (KillSwitch.snapshot() format: the halt a restarting bot obeys),
then, for `immediate`, the exchange itself (sync ccxt: cancel every open order, then close every
position with reduce-only market orders, retrying with Retry-After honoured until the account is
flat or the timeout passes) - and then updates the kill-switch entry of the engine snapshot in the
state store and appends its audit records. A torn last line of the audit log is cut on open (and
the cut recorded); when the log cannot be written at all (a disk full, a chain broken inside), the
records are kept in a spill file beside it and appended late by whoever opens the log next, or
printed on stderr when even that fails. graceful and pause take no exchange action: the bot
applies them. A marker that is not a complete kill-switch snapshot counts as immediate.

Exit codes: 0 done; 1 accepted but the account could not be confirmed flat (or a weaker mode was
refused while a stricter one is engaged); 2 rejected (bad or missing credentials, bad input);
3 acted, but recording it failed ("acted; audit write failed: ..." / "marker write failed").
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.clock import Clock, WallClock
from bot.core.events import Event, EventBus
from bot.core.killswitch import MODE_RANK, KillSwitch
from bot.core.policy import Policy
from bot.io.access import CONTROL_TOKEN_ENV, AccessError, open_access
from bot.io.audit_anchor import AnchorError, audit_hmac_key
from bot.io.audit_trail import AuditTrail
from bot.io.credentials import load_api_credentials, presented_token
from bot.io.exchange import (
    AuthError,
    ClockSkewError,
    ExchangeError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
    RetryableError,
    UnknownOutcomeError,
)
from bot.io.marker import read_marker, remove_marker, write_marker
from bot.io.secrets import CredentialError
from bot.io.state import StateStore, StateStoreError, open_store
from bot.live import _with_parent

STATE_KEY = "bot"  # TraderConfig.state_key: the engine snapshot lives under this key
EXIT_OK, EXIT_NOT_FLAT, EXIT_REJECTED, EXIT_UNRECORDED = 0, 1, 2, 3


class _NoSnapshot(Exception):
    pass


# --------------------------------------------------------------------------- state


def stored_killswitch(store: StateStore, key: str = STATE_KEY) -> dict[str, Any] | None:
    saved = store.get(key)
    if saved is None:
        return None
    ks = saved.get("killswitch")
    return ks if isinstance(ks, dict) else None


def store_killswitch(store: StateStore, snapshot: dict[str, Any], key: str = STATE_KEY) -> bool:
    """Replace the kill-switch entry of the bot's engine snapshot; False when the bot never saved one
    (then the marker file alone carries the state: the bot obeys it on start)."""

    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise _NoSnapshot()
        return {**current, "killswitch": snapshot}

    try:
        store.update(key, change)
    except _NoSnapshot:
        return False
    return True


# --------------------------------------------------------------------------- flatten


@dataclass
class FlattenResult:
    flat: bool
    cancelled: int = 0
    closes_sent: int = 0
    rounds: int = 0
    waits_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    positions_left: list[dict[str, Any]] = field(default_factory=list)
    open_orders_left: int = 0


class Flattener:
    """Cancel every open order, then close every position reduce-only; retry until flat or timeout.

    `exchange` is a SyncCcxtExchange (or anything with its methods). `sleep` and `monotonic` are
    injectable so tests can assert the waits without waiting.
    """

    def __init__(self, exchange: Any, symbols: list[str], *, timeout_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 backoff_initial_s: float = 0.25, backoff_max_s: float = 5.0,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.ex = exchange
        self.symbols = list(dict.fromkeys(symbols))
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.log = log
        self._seq = 0
        self._deadline = 0.0
        self.result = FlattenResult(flat=False)

    def _wait(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.result.waits_s.append(seconds)
        self.sleep(seconds)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one exchange call, retrying retryable errors until the deadline."""
        attempts = 0
        while True:
            try:
                return fn(*args)
            except RateLimitedError as exc:
                wait = exc.retry_after_s if exc.retry_after_s is not None else self._backoff(attempts)
                self._note(what, exc, wait)
            except ClockSkewError as exc:
                self._resync()
                wait = 0.0 if attempts == 0 else self._backoff(attempts)
                self._note(what, exc, wait)
            except (RetryableError, UnknownOutcomeError) as exc:
                # reads and cancels are safe to repeat; an order placement's unknown outcome is
                # handled by the caller (it never reaches here: create_order is called directly)
                wait = self._backoff(attempts)
                self._note(what, exc, wait)
            attempts += 1
            if self.monotonic() + wait > self._deadline:
                raise TimeoutError(f"{what}: gave up at the kill-switch deadline ({self.result.errors[-1]})")
            self._wait(wait)

    def _backoff(self, attempts: int) -> float:
        return float(min(self.backoff_initial_s * 2 ** attempts, self.backoff_max_s))

    def _note(self, what: str, exc: Exception, wait: float) -> None:
        text = f"{what}: {type(exc).__name__}: {str(exc)[:160]}; retrying in {wait:.2f}s"
        self.result.errors.append(text)
        self.log(text)

    def _resync(self) -> None:
        try:
            server = self.ex.fetch_time_ms()
        except ExchangeError:
            return
        self.ex.set_time_offset_ms(server - self.wall_ms())

    def _client_id(self) -> str:
        self._seq += 1
        return f"ks-{self.wall_ms():x}-{self._seq}"

    def run(self) -> FlattenResult:
        self._deadline = self.monotonic() + self.timeout_s
        try:
            while True:
                self.result.rounds += 1
                symbols = list(self.symbols)
                open_orders = self._call("fetch open orders", self.ex.fetch_open_orders)
                for order in open_orders:
                    if order.symbol not in symbols:
                        symbols.append(order.symbol)
                for symbol in symbols:  # cancels first: nothing may open while we close
                    self._call(f"cancel all {symbol}", self.ex.cancel_all_orders, symbol)
                    self.result.cancelled += sum(1 for o in open_orders if o.symbol == symbol)
                positions = self._call("fetch positions", self.ex.fetch_all_positions)
                for pos in positions:
                    self._close(pos)
                positions = self._call("fetch positions", self.ex.fetch_all_positions)
                orders = self._call("fetch open orders", self.ex.fetch_open_orders)
                self.result.positions_left = [{"symbol": p.symbol, "qty": p.qty} for p in positions]
                self.result.open_orders_left = len(orders)
                if not positions and not orders:
                    self.result.flat = True
                    return self.result
                if self.monotonic() + self.backoff_initial_s > self._deadline:
                    return self.result
                self._wait(self.backoff_initial_s)
        except TimeoutError as exc:
            self.result.errors.append(str(exc))
            return self.result

    def _close(self, pos: Any) -> None:
        qty = abs(pos.qty)
        if not (math.isfinite(qty) and qty > 0):
            return
        request = OrderRequest(pos.symbol, "sell" if pos.qty > 0 else "buy", qty, "market", self._client_id(),
                               reduce_only=True)
        attempts = 0
        while True:
            try:
                self.ex.create_order(request)
                self.result.closes_sent += 1
                return
            except UnknownOutcomeError as exc:
                # never resend blindly: learn what happened; the next round re-reads the position,
                # and a reduce-only close can never flip or grow it
                self._note(f"close {pos.symbol}", exc, 0.0)
                self.result.closes_sent += 1
                try:
                    self._call(f"query {request.client_id}", self.ex.fetch_order, pos.symbol, request.client_id)
                except ExchangeError:
                    pass
                return
            except OrderRejectedError as exc:  # e.g. -2022: already closed; the next round checks
                self._note(f"close {pos.symbol}", exc, 0.0)
                return
            except RateLimitedError as exc:
                wait = exc.retry_after_s if exc.retry_after_s is not None else self._backoff(attempts)
                self._note(f"close {pos.symbol}", exc, wait)
            except ClockSkewError as exc:
                self._resync()
                wait = 0.0 if attempts == 0 else self._backoff(attempts)
                self._note(f"close {pos.symbol}", exc, wait)
            except RetryableError as exc:  # nothing happened on the exchange: safe to send again
                wait = self._backoff(attempts)
                self._note(f"close {pos.symbol}", exc, wait)
            attempts += 1
            if self.monotonic() + wait > self._deadline:
                raise TimeoutError(f"close {pos.symbol}: gave up at the kill-switch deadline")
            self._wait(wait)


# --------------------------------------------------------------------------- command


def _actor(args: argparse.Namespace) -> str:
    name = args.actor or os.environ.get("GAMEDAY_OPERATOR") or getpass.getuser()
    return f"operator:{name}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--mode", choices=["immediate", "graceful", "pause"], help="engage in this mode")
    action.add_argument("--clear", action="store_true", help="clear the kill switch")
    action.add_argument("--status", action="store_true", help="print the kill-switch state")
    parser.add_argument("--reason", help="why (required with --mode)")
    parser.add_argument("--profile", default="futures", help="config/profiles/NAME.yaml (default: futures)")
    parser.add_argument("--token-file", type=Path, help="the operator's token (mode 0600); else env GAMEDAY_KILL_TOKEN")
    parser.add_argument("--auth-token-file", type=Path,
                        help="the configured token the bot accepts (0600; the token or sha256:<hex>); "
                             "else env GAMEDAY_KILL_TOKEN_FILE, else state/kill_token")
    parser.add_argument("--principals", type=Path,
                        help="principals file (python -m bot access add); else env GAMEDAY_PRINCIPALS_FILE, else "
                             "principals_file of config/access.yaml")
    parser.add_argument("--actor", help="who claims to act, recorded beside the authenticated principal (default: "
                                        "GAMEDAY_OPERATOR or login); the actor is the principal of the token")
    parser.add_argument("--state", default="state/bot.db", help="state store: SQLite path or redis://… "
                                                                "(default: state/bot.db)")
    parser.add_argument("--audit", type=Path, default=Path("state/audit.jsonl"), help="audit log (JSONL)")
    parser.add_argument("--marker", type=Path, help="marker file (default: policy kill_switch.marker_file)")
    parser.add_argument("--exchange", choices=["testnet", "binance"], default="binance")
    parser.add_argument("--testnet-url", help="testnet REST base URL (with --exchange testnet)")
    parser.add_argument("--symbol", action="append", help="symbol(s) to cancel orders on (default: BTCUSDT); "
                                                          "every open position is closed")
    parser.add_argument("--key-file", type=Path, help="API key file (mode 0600); else env GAMEDAY_API_KEY/SECRET")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to keep trying to flatten (default 60)")
    parser.add_argument("--control-url", default=os.environ.get("GAMEDAY_CONTROL_URL"),
                        help="the running bot's control API (else env GAMEDAY_CONTROL_URL); when it answers, "
                             "the request goes through the bot; when it does not, this command acts itself")


def run(args: argparse.Namespace, *, exchange_factory: Callable[..., Any] | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Clock | None = None) -> int:
    from bot.config import ConfigError, load_policy

    clock = clock or WallClock()
    out, err = sys.stdout, sys.stderr
    if args.mode and not (args.reason and args.reason.strip()):
        print("killswitch: --reason TEXT is required with --mode", file=err)
        return EXIT_REJECTED
    if args.mode == "immediate" and exchange_factory is None and args.exchange == "testnet" and not args.testnet_url:
        print("killswitch: --exchange testnet needs --testnet-url URL", file=err)
        return EXIT_REJECTED
    try:
        policy: Policy = load_policy(args.profile).policy
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return EXIT_REJECTED
    marker = Path(args.marker or policy.kill_switch.marker_file)
    actor = _actor(args)
    try:
        hmac_key = audit_hmac_key()
    except (AnchorError, CredentialError) as exc:  # the kill switch acts anyway; its records go unauthenticated
        print(f"killswitch: audit HMAC key unusable ({exc}); recording without it", file=err)
        hmac_key = None
    books = Books(AuditTrail(_with_parent(args.audit), now_ms=clock.now_ms, hmac_key=hmac_key), err)
    try:
        store = open_store(_with_parent(args.state))
    except (StateStoreError, OSError) as exc:
        print(f"killswitch: state store {args.state} unavailable ({exc}); the marker file still works", file=err)
        store = None
    code = EXIT_REJECTED
    try:
        code = _run(args, policy, marker, actor, books, store, clock, exchange_factory, sleep, out, err)
    finally:
        if store is not None:
            store.close()
        code = books.close(code, acted=not args.status)
    return code


class Books:
    """The CLI's audit trail: never in the way of the action; what failed to be recorded is
    reported at the end ("acted; audit write failed: ...") and changes the exit code."""

    def __init__(self, trail: AuditTrail, err: Any) -> None:
        self.trail = trail
        self.err = err
        self.problems: list[str] = []
        for repair in trail.take_repairs():
            print(f"killswitch: audit log {trail.path}: a torn last line was cut ({repair.cut_bytes} bytes, sha256 "
                  f"{repair.cut_sha256[:16]}, kept in {repair.saved_to}) and the repair recorded", file=err)
        if trail.problem is not None:
            print(f"killswitch: audit log {trail.path} cannot be written ({trail.problem}); acting anyway", file=err)

    def append(self, actor: str, action: str, details: dict[str, Any], ts_ms: int) -> None:
        error = self.trail.record(actor, action, details, ts_ms)
        if error is not None:
            self.failed(f"audit write failed: {error}")

    def failed(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def close(self, code: int, *, acted: bool) -> int:
        left = self.trail.close()
        unwritten = self.trail.pending
        problems = [p for p in self.problems if unwritten or not p.startswith("audit write failed")]
        if not problems:
            if self.problems:
                print(f"killswitch: the audit log took the records late, on a retry ({self.problems[0]})",
                      file=self.err)
            return code
        kept = unwritten - len(left)
        note = (f"; {kept} record(s) kept in a spill file beside {self.trail.path}, appended late when the log "
                "can be written" if kept else "")
        if left:
            note += f"; {len(left)} record(s) could not be kept anywhere and follow here"
        print(f"killswitch: {'acted' if acted else 'done'}; {'; '.join(problems)}{note}", file=self.err)
        for record in left:
            print("killswitch: audit record not written: " + record.line().decode().strip(), file=self.err)
        return EXIT_UNRECORDED if code == EXIT_OK and acted else code


def _by_strictness(*snapshots: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Candidate kill-switch states, the strictest engaged one first (ties: the first given)."""
    present = [s for s in snapshots if s is not None]
    return sorted(present, key=lambda s: -MODE_RANK.get(str(s.get("mode")), 0) if s.get("engaged") else 1)


def _run(args: argparse.Namespace, policy: Policy, marker: Path, actor: str, books: Books,
         store: StateStore | None, clock: Clock, exchange_factory: Callable[..., Any] | None,
         sleep: Callable[[float], None], out: Any, err: Any) -> int:
    current = None
    store_problem = None
    if store is not None:
        try:
            current = stored_killswitch(store)
        except StateStoreError as exc:
            store_problem = str(exc)
    marker_data = read_marker(marker, clock.now_ms())

    if args.status:
        books.append(actor, "killswitch.status", {}, clock.now_ms())
        status = {"marker_file": str(marker), "marker": marker_data, "store": current,
                  "store_problem": store_problem,
                  "engaged": marker_data is not None or bool((current or {}).get("engaged"))}
        print(json.dumps(status, indent=2, sort_keys=True), file=out)
        return EXIT_OK

    try:  # the roles the running bot applies, from the same files
        access = open_access(principals=args.principals, kill_token_file=args.auth_token_file,
                             control_token=os.environ.get(CONTROL_TOKEN_ENV))
    except AccessError as exc:
        print(f"killswitch: {exc}", file=err)
        return 2
    verify = access.killswitch_verifier()
    auth_problem = "; ".join(access.current().problems) or None
    credential: str | None = None
    token_problem: str | None = None
    try:
        credential = presented_token(args.token_file)
    except CredentialError as exc:
        token_problem = str(exc)
    principal = access.current().authenticate(credential)
    claimed, actor = actor, principal.name if principal is not None else "anonymous"

    if args.control_url and not args.status:
        via_bot = _through_running_bot(args, actor, credential, token_problem, books, clock, out, err)
        if via_bot is not None:
            return via_bot

    bus = EventBus()
    rejected: list[Event] = []
    bus.subscribe(lambda e: rejected.append(e) if e.name == "killswitch.rejected" else None)
    ks = KillSwitch(policy, bus, clock, verify)
    for candidate in _by_strictness(marker_data, current):
        try:
            ks.restore(candidate)
            break
        except (KeyError, ValueError, TypeError):
            continue  # a damaged store record: the next candidate, or clear; the request writes a fresh one

    if args.clear:
        result = ks.clear(actor, credential)
        action = "killswitch.clear"
        details: dict[str, Any] = {"accepted": result.accepted, "why": result.reason}
    else:
        result = ks.engage(args.mode, args.reason, actor, credential)
        action = "killswitch.engage"
        details = {"mode": args.mode, "reason": args.reason, "accepted": result.accepted, "why": result.reason,
                   "via": "cli"}
    details.update({"role": principal.role if principal is not None else None, "claimed_actor": claimed,
                    "source": "cli"})
    if not result.accepted:
        why = result.reason
        if rejected:
            extra = token_problem or auth_problem
            if extra:
                why = f"{why} ({extra})"
            details["why"] = why
        books.append(actor, "killswitch.rejected", {**details, "request": action}, clock.now_ms())
        print(f"killswitch: {why}", file=err)
        return EXIT_REJECTED if rejected else EXIT_NOT_FLAT

    # Act first - the marker (the halt a restarting bot obeys), then the exchange - and only then
    # the bookkeeping; nothing that fails to be recorded stops or delays the action.
    snapshot = ks.snapshot()
    marker_ok = True
    try:
        if args.clear:
            remove_marker(marker)
        else:
            write_marker(marker, snapshot)
    except OSError as exc:
        marker_ok = False
        books.failed(f"marker write failed: {marker}: {exc}")
    flatten = _flatten(args, exchange_factory, sleep, err) if args.mode == "immediate" else None
    stored = False
    if store is not None:
        try:
            stored = store_killswitch(store, snapshot)
        except StateStoreError as exc:
            print(f"killswitch: state store not updated ({exc}); the marker file holds the state", file=err)
            if not marker_ok:
                books.failed(f"state store not updated either: {exc}")
    books.append(actor, action, details, clock.now_ms())
    marker_done = ("removed" if args.clear else "written") if marker_ok else "NOT " + (
        "removed" if args.clear else "written")
    print(f"killswitch: {result.reason} (marker {marker_done}: {marker}; "
          f"state store {'updated' if stored else 'has no bot snapshot yet' if store is not None else 'unavailable'})",
          file=out)
    if flatten is None:
        return EXIT_OK
    return _report_flatten(flatten, actor, books, clock, out, err)


def _through_running_bot(args: argparse.Namespace, actor: str, credential: str | None, token_problem: str | None,
                         audit: Books, clock: Clock, out: Any, err: Any) -> int | None:
    """Ask the live bot to act (it flattens with its own state and order book) and explain its
    answer as precisely as the bot-dead path would. None: the bot did not answer (or could not
    take the request: rate limited, failing), so the caller acts on the exchange and the state itself."""
    import requests

    request = "killswitch.clear" if args.clear else "killswitch.engage"
    if token_problem is None and credential is None:
        token_problem = "missing credentials: pass --token-file PATH (mode 0600) or set GAMEDAY_KILL_TOKEN"
    if token_problem is not None:  # no token, or a token file others can read: refused before any request
        audit.append(actor, "killswitch.rejected", {"request": request, "accepted": False, "why": token_problem,
                                                   "via": "cli"}, clock.now_ms())
        print(f"killswitch: rejected: {token_problem}", file=err)
        return 2
    base = args.control_url.rstrip("/")
    try:
        health = requests.get(f"{base}/health", timeout=1.0)
    except requests.RequestException as exc:
        print(f"killswitch: the bot does not answer at {base} ({type(exc).__name__}); acting directly", file=err)
        return None
    if health.status_code not in (200, 429):
        print(f"killswitch: the bot at {base} is not healthy (HTTP {health.status_code}); acting directly", file=err)
        return None
    path, body = ("/killswitch/clear", {}) if args.clear else (
        "/killswitch", {"mode": args.mode, "reason": args.reason})
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    try:
        reply = requests.post(base + path, json=body, headers=headers,  # nosec B113 - bandit cannot read a computed timeout
                              timeout=max(args.timeout, 1.0))
    except requests.RequestException as exc:
        print(f"killswitch: the bot stopped answering mid-request ({type(exc).__name__}); acting directly", file=err)
        return None
    try:
        answer = reply.json()
        answer = answer if isinstance(answer, dict) else {}
    except ValueError:
        answer = {}
    code = str(answer.get("error") or ("ok" if reply.status_code == 200 else f"http_{reply.status_code}"))
    reason = str(answer.get("reason") or reply.text[:200])
    accepted = reply.status_code == 200
    actor = str(answer.get("actor") or actor) if accepted else actor
    audit.append(actor, request if accepted else "killswitch.rejected",
                 {**body, "request": request, "accepted": accepted, "via": "control-api", "status": reply.status_code,
                  "outcome": code, "why": reason[:300]}, clock.now_ms())
    if reply.status_code == 429 or reply.status_code >= 500:
        print(f"killswitch: the running bot could not take the request ({code}, HTTP {reply.status_code}: {reason}); "
              "acting directly", file=err)
        return None
    if not accepted:
        print(f"killswitch: rejected by the running bot: {reason} ({code}, HTTP {reply.status_code})", file=err)
        return 1 if code == "weaker_mode" else 2
    print(f"killswitch: {reason} (through the running bot at {base})", file=out)
    if answer.get("audit"):
        print(f"killswitch: acted; audit write failed in the bot: {answer['audit']}", file=err)
        return 1
    return 0


def _flatten(args: argparse.Namespace, exchange_factory: Callable[..., Any] | None,
             sleep: Callable[[float], None], err: Any) -> FlattenResult:
    from bot.io.exchange_ccxt import SyncCcxtExchange

    try:
        creds = load_api_credentials(args.key_file)
    except CredentialError as exc:
        return FlattenResult(flat=False, errors=[f"cannot flatten: {exc}"])
    if exchange_factory is not None:
        ex = exchange_factory(creds)
    elif args.exchange == "testnet":
        ex = SyncCcxtExchange(creds.api_key, creds.secret, rest_url=args.testnet_url)
    else:
        ex = SyncCcxtExchange(creds.api_key, creds.secret)
    flattener = Flattener(ex, args.symbol or ["BTCUSDT"], timeout_s=args.timeout, sleep=sleep,
                          log=lambda line: print(f"killswitch: {line}", file=err))
    try:
        result = flattener.run()
    except AuthError as exc:
        result = flattener.result
        result.errors.append(f"exchange refused the API key: {exc}")
    finally:
        close = getattr(ex, "close", None)
        if close is not None:
            close()
    return result


def _report_flatten(result: FlattenResult, actor: str, books: Books, clock: Clock, out: Any, err: Any) -> int:
    books.append(actor, "killswitch.flatten",
                 {"flat": result.flat, "cancelled": result.cancelled, "closes_sent": result.closes_sent,
                  "rounds": result.rounds, "positions_left": result.positions_left,
                  "open_orders_left": result.open_orders_left, "errors": result.errors[-5:]}, clock.now_ms())
    if result.flat:
        books.append(actor, "account.flat", {"via": "killswitch_cli"}, clock.now_ms())
        print(f"killswitch: account flat ({result.cancelled} orders cancelled, {result.closes_sent} closes sent)",
              file=out)
        return EXIT_OK
    print(f"killswitch: account NOT confirmed flat: positions {result.positions_left}, open orders "
          f"{result.open_orders_left}; last error: {result.errors[-1] if result.errors else 'none'}", file=err)
    return EXIT_NOT_FLAT
