"""Net-mode runner: a scenario against the real bot process, in real time.

`run_net(scenario, context)` (registered as `harness.collect.RUNNERS["net"]`):

1. starts the stack (`harness.net.stack.NetStack`): the testnet server, Redis, Toxiproxy with
   proxies `rest`, `ws`, `redis`; creates the bot's API key with the scenario's equity and opens
   the scenario's `account.position` on it (the bot inherits it and must adopt it);
2. starts the bot (`python -m bot run`) through the proxies, with `--time-scale`, Redis as its
   state store, its control API on a free loopback port, its events in a JSON-lines file the
   harness follows live, a short reconcile period (`--reconcile-ms`, so exposure the harness
   opens on its account is adopted at once); waits until the control API answers;
3. injects each step at `at x time_scale` after the bot is ready (faults: each kind's `net` in `harness.faults`),
   undoes each fault after its (scaled) duration, completes a fault that finishes later (a
   restart's `down_for`: `Injected.finish`) on time while the other steps go on, and runs until
   `duration x time_scale`, or the latest step end / `within` deadline (counted from when a step is
   established: a restart after its downtime) plus one scaled second;
4. reads the end state from the control API's /status, then stops everything - the bot's
   process group, the proxies, Redis, Toxiproxy, the testnet - pass, fail or error.

Time scale: the scenario's `time_scale`, or `GAMEDAY_NET_TIME_SCALE` when set (a drill runs the
gate files at production thresholds with `GAMEDAY_NET_TIME_SCALE=1`). It multiplies every
duration of the scenario (step times, fault durations, `within`) and every time threshold of the
bot's policy (`python -m bot run --time-scale`); it is recorded in the evidence.

A scenario with a `disk_full` step on the audit log (target audit or all) runs the bot with its
audit log (and, for all, its marker file) on a small tmpfs mounted at `<run dir>/disk` before the
bot starts, which the fault fills; mounting needs root (CI runs as root). Without it the step is
an ERROR naming the reason, never a pass. The tmpfs's files are copied to `<run dir>/disk-copy`
before it is unmounted.

The bot's alert channels point at the harness's receivers (harness.net.receivers) through their
own proxies; the end state's `unconfirmed_alerts` says whether every alert.sent the bot emitted
reached its receiver (for the log channel: the bot's log).

Run artifacts also hold alerts-received.jsonl (what the receivers got).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from bot.core.events import Event
from bot.io.access import add_principal, load_access_config
from harness.allowances import measured
from harness.collect import RUNNERS, RunContext
from harness.evidence import fresh_dir
from harness.expect import RunRecord, StepTiming
from harness.faults import FAULTS
from harness.faults.contract import FaultError, Injected
from harness.net.bot_process import BotProcess, BotProcessError, ControlClient, EventFollower
from harness.net.inject import FILLER, EquityPeak, now_ms, run_cli
from harness.net.stack import NetStack, StackError
from harness.progress import ScenarioWatch
from harness.scenario import Scenario, resolve_all
from harness.services import require_services
from harness.toxiproxy.client import ToxiproxyError

SCALE_ENV = "GAMEDAY_NET_TIME_SCALE"
READY_TIMEOUT_S = 20.0
# The bot's reconcile period: exposure the harness opens is adopted within it. Gate runs (scaled
# time) want it fast; a real-time drill keeps it modest so reconciles do not eat the request
# weight budget over a long run.
RECONCILE_MS_SCALED = 500
RECONCILE_MS_REALTIME = 5_000
LOOP_S = 0.01
DISK_BYTES = 256 * 1024  # the tmpfs for disk_full: room for a run's audit records, until it is filled
HEARTBEAT_S = 2.0  # the bot's alert heartbeat in net runs (its receiver proves alerts still flow)
TIMEFRAMES = {60_000: "1m", 180_000: "3m", 300_000: "5m", 900_000: "15m", 1_800_000: "30m",
              3_600_000: "1h", 7_200_000: "2h", 14_400_000: "4h", 86_400_000: "1d"}
PROJECT = Path(__file__).resolve().parents[2]


def time_scale_for(scenario: Scenario, env: dict[str, str] | None = None) -> float:
    env = dict(os.environ) if env is None else env
    raw = env.get(SCALE_ENV, "").strip()
    if not raw:
        return scenario.time_scale
    try:
        value = float(raw)
    except ValueError:
        raise StackError(f"{SCALE_ENV}={raw!r} is not a number (e.g. {SCALE_ENV}=1.0 for a drill)") from None
    if not value > 0:
        raise StackError(f"{SCALE_ENV}={raw!r} must be > 0")
    return value


def tick_ms_for(ws_limit_ms: float) -> int:
    """The testnet's tick: several book updates inside the bot's WebSocket silence limit."""
    return int(min(250, max(20, ws_limit_ms // 5)))


def end_offset_for(sc: Scenario, scale: float, params: dict[str, dict[str, Any]] | None = None) -> int:
    """When the run ends, in ms after the bot is ready: `duration`, else the latest step end or
    `within` deadline plus one scaled second (DESIGN.md "Scenario files")."""
    if sc.duration is not None:
        return round(sc.duration.to_ms(sc.bar_ms) * scale)
    ends = [0]
    for step in sc.steps:
        ends.append(_established_offset(sc, step, scale, params) + _step_param_ms(sc, step, "duration", scale, params))
    for exp in sc.expect:
        if exp.within is None:
            continue
        start = _established_offset(sc, sc.step(exp.after), scale, params) if exp.after else 0
        _, allowance_ms = measured().resolve(exp.allowance, sc.step(exp.after).fault if exp.after else None)
        ends.append(start + round(exp.within.to_ms(sc.bar_ms) * scale) + allowance_ms)
    return max(ends) + round(1000 * scale)


def _step_param_ms(sc: Scenario, step: Any, name: str, scale: float,
                   params: dict[str, dict[str, Any]] | None) -> int:
    """A time param of a step in scaled ms (0 when it has none): resolved, else read from the file."""
    value = (params or {}).get(step.id, {}).get(name)
    if value is None and name in step.params and hasattr(step.params[name], "to_ms"):
        value = round(step.params[name].to_ms(sc.bar_ms) * scale)
    return int(value or 0)


def _established_offset(sc: Scenario, step: Any, scale: float, params: dict[str, dict[str, Any]] | None) -> int:
    """When a step is expected to be established, in scaled ms after the bot is ready: its `at`,
    plus the downtime of a restart with `down_for` (it is established when the bot starts again)."""
    return round(step.at.to_ms(sc.bar_ms) * scale) + _step_param_ms(sc, step, "down_for", scale, params)


class NetRun:
    """One net-mode run: the stack, the bot process and everything the faults need."""

    def __init__(self, scenario: Scenario, context: RunContext, scale: float, run_dir: Path) -> None:
        from bot.config import scale_time

        self.scenario = scenario
        self.context = context
        self.scale = scale
        self.run_dir = run_dir
        self.secret_dir = Path(tempfile.mkdtemp(prefix="gameday-net-secrets-"))  # 0700, outside evidence
        self.symbol = "BTCUSDT"
        self.api_key = "gameday-" + secrets.token_hex(4)
        self.secret = secrets.token_hex(16)
        self.tokens: dict[str, str] = {}  # role -> the token of the run's principal of that role
        self.token = ""  # the Risk Manager's: the harness operates the bot as this principal
        self.stop_timeout_s = 5.0
        loaded = context.policy.policy
        policy = getattr(loaded, "policy", loaded)
        self.policy = scale_time(policy, scale) if policy is not None else None
        ws_limit = (self.policy.circuit_breakers.latency.websocket.max_lag_seconds * 1000
                    if self.policy is not None else 5000.0)
        self.tick_ms = tick_ms_for(ws_limit)
        self.bar_real_ms = max(self.tick_ms, round(scenario.bar_ms * scale))
        self.vol_bps = scenario.market.vol_bps
        self.stack = NetStack(seed=scenario.seed, bar_ms=scenario.bar_ms, bar_real_ms=self.bar_real_ms,
                              tick_ms=self.tick_ms,
                              testnet_kwargs={"start_prices": {self.symbol: scenario.market.start_price},
                                              "vol_bps": scenario.market.vol_bps})
        self.control: ControlClient = ControlClient("http://127.0.0.1:0", self.token)
        self.events_path = run_dir / "events.jsonl"
        self.follower = EventFollower(self.events_path)
        self.bot: BotProcess = BotProcess([], {}, PROJECT, run_dir / "bot.log")
        self.notes: list[str] = []
        targets = {str(s.params.get("target", "all")) for s in scenario.steps if s.fault == "disk_full"}
        self.disk_dir: Path | None = run_dir / "disk" if targets & {"audit", "all"} else None
        self.disk_problem: str | None = None  # why the tmpfs could not be mounted (the fault then ERRORs)
        self.disk_mounted = False
        self.leak_watch: Any = None  # harness.runbooks.net.NetLeakWatch when a credential_leak step runs
        self.audit_path = (self.disk_dir or run_dir) / "audit.jsonl"
        self.marker_path = (self.disk_dir if "all" in targets and self.disk_dir else run_dir) / "EMERGENCY_STOP"

    # -- setup -----------------------------------------------------------------------------
    def _mount_disk(self) -> None:
        """A small tmpfs for the bot's audit log, so `disk_full` can fill a real disk (root only)."""
        assert self.disk_dir is not None
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.disk_problem = ("disk_full on the audit log needs root to mount a tmpfs for the bot's files "
                                 f"(mount -t tmpfs); running as uid {os.geteuid()}")
            return
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs",  # noqa: S603,S607
                               str(self.disk_dir)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            self.disk_problem = f"mount -t tmpfs failed (exit {done.returncode}): {done.stderr.strip()[:200]}"
            return
        self.disk_mounted = True

    def _unmount_disk(self) -> None:
        if not self.disk_mounted or self.disk_dir is None:
            return
        copy = self.run_dir / "disk-copy"
        copy.mkdir(exist_ok=True)
        for item in self.disk_dir.iterdir():
            if item.is_file() and item.name != FILLER:
                shutil.copy2(item, copy / item.name)
        done = subprocess.run(["umount", str(self.disk_dir)], capture_output=True, text=True, check=False)  # noqa: S603,S607
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.disk_dir)], capture_output=True, check=False)  # noqa: S603,S607
        self.disk_mounted = False

    def start(self) -> None:
        # The allowances' calibration (a bare bot start, timed once per process) runs before the
        # stack and the bot: it must neither compete with this run's bot nor delay its timeline.
        measured()
        if self.disk_dir is not None:
            self._mount_disk()
        self.stack.start()
        self.stack.admin("keys", {"api_key": self.api_key, "secret": self.secret,
                                  "balance": self.scenario.account.equity})
        self._arrange_position()
        testnet = self.stack.testnet
        assert testnet is not None
        engine = testnet.handle.engine
        self.equity_peak = EquityPeak(engine, self.api_key, self.symbol)  # drawdown's peak (harness/faults/market.py)
        testnet.call(lambda: engine.add_listener(self.equity_peak))
        self.principals = self.secret_dir / "principals.yaml"
        access_config = load_access_config()
        for role in access_config.roles:  # one principal per role, tokens stored hashed, 0600
            self.tokens[role] = add_principal(self.principals, access_config, f"gameday-{role.replace('_', '-')}",
                                              role)
        self.token = self.tokens["risk_manager"]
        self.reconcile_ms = RECONCILE_MS_SCALED if self.scale < 1 else RECONCILE_MS_REALTIME
        self.control = ControlClient("http://127.0.0.1:0", self.token)  # the port is the bot's: restart_bot
        timeframe = TIMEFRAMES.get(self.scenario.bar_ms)
        if timeframe is None:
            raise StackError(f"market.bar {self.scenario.market.bar} is not a Binance timeframe "
                             f"({', '.join(TIMEFRAMES.values())})")
        argv = ["run", "--profile", self.scenario.profile, "--exchange", "testnet",
                "--testnet-url", self.stack.bot_rest_url, "--ws-url", self.stack.bot_ws_url,
                "--symbol", self.symbol, "--timeframe", timeframe,
                "--events", str(self.events_path), "--state", self.stack.bot_redis_url,
                "--audit", str(self.audit_path), "--marker", str(self.marker_path),
                *self._access_args(), "--time-scale", repr(self.scale),
                "--control-port", "0", "--store-check-ms", "250", "--startup-attempts", "1",
                "--reconcile-ms", str(self.reconcile_ms), "--alert-heartbeat-seconds", repr(HEARTBEAT_S)]
        if not self.scenario.account.strategy:
            argv.append("--no-entries")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GAMEDAY_API", "GAMEDAY_KILL", "GAMEDAY_CONTROL", "GAMEDAY_PRINCIPALS"))}
        env.update(self.stack.bot_alert_env())
        env.update({"GAMEDAY_API_KEY": self.api_key, "GAMEDAY_API_SECRET": self.secret, "PYTHONUNBUFFERED": "1",
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        config_dir = getattr(self.context, "config_dir", None)
        if config_dir is not None:
            env["GAMEDAY_CONFIG_DIR"] = str(config_dir)
        self.bot = BotProcess(argv, env, PROJECT, self.run_dir / "bot.log")
        if any(s.fault == "credential_leak" for s in self.scenario.steps):
            from harness.runbooks.net import NetLeakWatch

            self.leak_watch = NetLeakWatch(self)
            self.leak_watch.start()
        self.follower.start()
        since = self.follower.count()
        self.restart_bot()
        if self.scenario.account.position is not None:
            adopted = self.follower.wait_for(
                lambda e: e.name == "order.reconciled" and e.fields.get("status") == "position_adopted",
                since=since, timeout=READY_TIMEOUT_S)
            if adopted is None:
                raise StackError("the bot did not adopt the scenario's position at start "
                                 f"(no order.reconciled status=position_adopted); log:\n{self.bot.log_tail()}")

    def _access_args(self) -> list[str]:
        """The bot and the CLI authenticate against the run's principals only: the legacy
        kill-token path points at a file that does not exist (no state/kill_token of the
        working directory sneaks in), and GAMEDAY_CONTROL_TOKEN is not passed."""
        return ["--principals", str(self.principals), "--auth-token-file", str(self.run_dir / "no-legacy-kill-token")]

    def _arrange_position(self) -> None:
        pos = self.scenario.account.position
        if pos is None:
            return
        price = self.scenario.market.start_price
        notional = pos.notional if pos.notional is not None else self.scenario.account.equity * (pos.qty_pct or 0) / 100
        qty = round(notional / price, 3)
        if qty <= 0:
            raise StackError(f"account.position is too small to open ({notional} at {price})")
        side = "BUY" if pos.side == "long" else "SELL"
        testnet = self.stack.testnet
        assert testnet is not None
        engine = testnet.handle.engine
        testnet.call(lambda: engine.place_order(self.api_key, self.symbol, side, "MARKET", qty))

    def restart_bot(self) -> int:
        """Start the bot (again) and wait until its control API answers; the start's wall ms."""
        started = now_ms()
        self.bot.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.bot.alive():
                raise BotProcessError(f"the bot exited at start (code {self.bot.wait_exit(1)}); log:\n"
                                      f"{self.bot.log_tail()}")
            # The bot binds its own port (a port picked here and bound there later was taken by
            # another process under parallel runs) and says which: follow what this process announced.
            url = self.bot.announced_control_url()
            if url is not None:
                self.control.base_url = url
                if self.control.health():
                    return started
            time.sleep(0.02)
        raise BotProcessError(f"the bot's control API did not answer within {READY_TIMEOUT_S} s; log:\n"
                              f"{self.bot.log_tail()}")

    def account(self) -> dict[str, Any]:
        for acct in self.stack.admin("keys", method="GET"):
            if acct["api_key"] == self.api_key:
                return dict(acct)
        raise StackError(f"the testnet has no key {self.api_key}")

    def killswitch_cli(self, args: list[str], token: str | None) -> str:
        env = dict(self.bot.env)
        env.pop("GAMEDAY_KILL_TOKEN", None)
        if token is not None:
            env["GAMEDAY_KILL_TOKEN"] = token
        argv = ["killswitch", *args, "--profile", self.scenario.profile, "--state", self.stack.bot_redis_url,
                "--audit", str(self.audit_path), "--marker", str(self.marker_path),
                *self._access_args(), "--exchange", "testnet",
                "--testnet-url", self.stack.bot_rest_url, "--actor", "gameday", "--timeout", "10"]
        done = run_cli(argv, env, str(PROJECT), timeout=30)
        if done.returncode == 2 and token is not None and "reject" not in (done.stdout + done.stderr).lower():
            raise FaultError(f"python -m bot killswitch failed (exit 2): {done.stderr.strip()[:300]}")
        return f"killswitch CLI {' '.join(args)}: exit {done.returncode}"

    # -- the timeline ----------------------------------------------------------------------
    def scaled(self, ms: float) -> int:
        return round(ms * self.scale)

    def end_offset_ms(self, params: dict[str, dict[str, Any]]) -> int:
        return end_offset_for(self.scenario, self.scale, params)

    def run(self, params: dict[str, dict[str, Any]]) -> RunRecord:
        sc = self.scenario
        offset = self.end_offset_ms(params)  # before t0: nothing may delay the steps after the clock starts
        t0 = now_ms()
        end = t0 + offset
        timings: dict[str, StepTiming] = {}
        reverts: list[tuple[int, str, Any]] = []
        finishes: list[tuple[int, str, Any]] = []  # (due, step id, Injected.finish)
        steps = sorted(sc.steps, key=lambda s: (s.at.to_ms(sc.bar_ms), s.index))
        queue = [(t0 + self.scaled(s.at.to_ms(sc.bar_ms)), s) for s in steps]
        watch = ScenarioWatch.of(sc, self.scale, (end - t0) / 1000)  # live on a terminal (harness/progress.py)
        while True:
            now = now_ms()
            for due, step_id, revert in [r for r in reverts if r[0] <= now]:
                reverts.remove((due, step_id, revert))
                self._undo(step_id, revert)
            for due, step_id, finish in [f for f in finishes if f[0] <= now]:
                finishes.remove((due, step_id, finish))
                timings[step_id] = self._finish(timings[step_id], finish)
            while queue and queue[0][0] <= now:
                _, step = queue.pop(0)
                timing, injected = self._inject(step.id, step.fault, params.get(step.id, {}))
                timings[step.id] = timing
                watch.step(step.id)
                if injected is not None and injected.finish is not None and timing.error is None:
                    assert timing.injected_ms is not None
                    finishes.append((timing.injected_ms + int(injected.finish_after_ms), step.id, injected.finish))
                if injected is not None and injected.revert is not None:
                    if injected.revert_after_ms is not None:
                        reverts.append((timing.injected_ms + int(injected.revert_after_ms),  # type: ignore[operator]
                                        step.id, injected.revert))
                    else:
                        self._at_end.append((step.id, injected.revert))
            if now >= end and not queue:
                break
            next_due = min([end] + [q[0] for q in queue[:1]] + [r[0] for r in reverts] + [f[0] for f in finishes])
            watch.tick(queue[0][1].id if queue else "end", ((queue[0][0] if queue else end) - now) / 1000)
            time.sleep(max(0.0, min(LOOP_S, (next_due - now_ms()) / 1000)))
        watch.close()
        for _, step_id, _finish in finishes:  # the run ended before the fault completed: not established
            timings[step_id] = dataclasses.replace(
                timings[step_id], error="not established by the end of the run: the bot was still down")
        # The record closes before anything is undone: the bot's reaction to cleanup (a spread
        # going back to normal at teardown) is not part of the scenario.
        end_state = self._end_state()
        end_ms = now_ms()
        self.follower.read_now()
        events = [e for e in self._events() if e.ts_ms <= end_ms]
        for _, step_id, revert in reverts:
            self._undo(step_id, revert)
        if self.follower.garbage:
            self.notes.append(f"{len(self.follower.garbage)} event line(s) were not events, e.g. "
                              f"{self.follower.garbage[0][:120]!r}")
        if self.leak_watch is not None:
            self.notes.extend(self.leak_watch.notes)
        self.notes.append(f"net run: time_scale {self.scale}, wall {(end_ms - t0) / 1000:.2f} s, "
                          f"bot pids {self.bot.pids}, artifacts {self.run_dir}")
        return RunRecord(events=events, steps=[timings.get(s.id) or StepTiming(s.id, s.fault, {}, None,
                                                                                error="never injected")
                                               for s in sc.steps],
                         bar_ms=sc.bar_ms, time_scale=self.scale, end_state=end_state, start_ms=t0,
                         end_ms=end_ms, notes=self.notes, allowances=measured())

    _at_end: list[tuple[str, Any]]

    def _inject(self, step_id: str, fault: str, p: dict[str, Any]) -> tuple[StepTiming, Injected | None]:
        kind = FAULTS[fault]
        inject = kind.net
        injected_ms = now_ms()
        if inject is None:  # the loader refuses the kind in a net scenario; a hand-built one lands here
            return StepTiming(step_id, fault, p, injected_ms,
                              error=f"no net-mode implementation of {fault}: {kind.not_in.get('net', '')}"), None
        try:
            result = inject(self, p)
        except (FaultError, StackError, ToxiproxyError, BotProcessError, OSError) as exc:
            return StepTiming(step_id, fault, p, injected_ms, error=f"{type(exc).__name__}: {exc}"), None
        self.notes.extend(f"{step_id}: {n}" for n in result.notes)
        return StepTiming(step_id, fault, p, injected_ms, result.established_ms), result

    def _finish(self, timing: StepTiming, finish: Any) -> StepTiming:
        """Complete a fault that finishes later (Injected.finish): established when it returns."""
        try:
            established = int(finish())
        except (FaultError, StackError, ToxiproxyError, BotProcessError, OSError) as exc:
            return dataclasses.replace(timing, error=f"{type(exc).__name__}: {exc}")
        return dataclasses.replace(timing, established_ms=established)

    def _undo(self, step_id: str, revert: Any) -> None:
        try:
            revert()
        except (StackError, ToxiproxyError, OSError) as exc:
            self.notes.append(f"{step_id}: undoing the fault failed: {exc}")

    def _end_state(self) -> dict[str, Any]:
        if not self.bot.alive():
            self.notes.append(f"the bot was not running at the end (exit {self.bot.wait_exit(0.1)}); "
                              f"log tail:\n{self.bot.log_tail(10)}")
            return {}
        try:
            status = self.control.status()
        except Exception as exc:  # noqa: BLE001 - reported, judged as a missing end state
            self.notes.append(f"control API /status failed at the end: {exc}")
            return {}
        state = {k: status[k] for k in ("trading", "killswitch", "position") if k in status}
        unconfirmed = self.unconfirmed_alerts()
        state["unconfirmed_alerts"] = "some" if unconfirmed else "none"
        if unconfirmed:
            self.notes.append(f"alert.sent without a receipt at the receiver: {unconfirmed[:5]}")
        return state

    def unconfirmed_alerts(self) -> list[str]:
        """alert.sent events the receivers (or, for the log channel, the bot's log) never got."""
        receivers = self.stack.alerts
        got = {(r.channel, r.alert_id) for r in receivers.receipts()} if receivers is not None else set()
        log = self.bot.log_path.read_text(errors="replace") if self.bot.log_path.exists() else ""
        out = []
        for e in self.follower.snapshot():
            if e.name != "alert.sent":
                continue
            channel, alert_id = e.fields.get("channel"), e.fields.get("id")
            seen = f"id {alert_id}," in log if channel == "log" else (channel, alert_id) in got
            if not seen:
                out.append(f"{channel}:{alert_id}")
        return out

    def save_receipts(self) -> None:
        receivers = self.stack.alerts
        if receivers is None:
            return
        with open(self.run_dir / "alerts-received.jsonl", "w", encoding="utf-8") as fh:
            for r in receivers.receipts():
                fh.write(json.dumps({"channel": r.channel, "id": r.alert_id, "received_ms": r.received_ms,
                                     "text": r.text}) + "\n")

    def _events(self) -> list[Event]:
        """The bot's events and those of the watch beside it (the leak watch and its runbook)."""
        beside = self.leak_watch.snapshot() if self.leak_watch is not None else []
        return sorted([*self.follower.snapshot(), *beside], key=lambda e: e.ts_ms)

    # -- teardown --------------------------------------------------------------------------
    def stop(self) -> None:
        for step_id, revert in getattr(self, "_at_end", []):
            self._undo(step_id, revert)
        if self.leak_watch is not None:
            self.leak_watch.stop()
        try:
            self.bot.stop()
            self.save_receipts()
        finally:
            self.follower.stop()
            self.control.close()
            self.stack.stop()
            self._unmount_disk()
            shutil.rmtree(self.secret_dir, ignore_errors=True)  # our own temporary directory


def run_net(scenario: Scenario, context: RunContext) -> RunRecord:
    scale = time_scale_for(scenario)
    params = context.params
    if scale != scenario.time_scale:
        scenario = dataclasses.replace(scenario, time_scale=scale)
        params = resolve_all(scenario, context.policy.lookup)
    run_dir = fresh_dir(Path(context.evidence_dir) / "net", scenario.id)
    run = NetRun(scenario, context, scale, run_dir)
    run._at_end = []
    try:
        try:
            run.start()
        except StackError as exc:
            if exc.missing_service and not require_services():
                pytest.skip(f"net mode: {exc}")
            raise
        return run.run(params)
    finally:
        run.stop()


RUNNERS["net"] = run_net
