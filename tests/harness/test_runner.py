"""The sim runner: deterministic, faults that cannot be injected are errors, and every fault kind
changes what the bot actually sees (checked on the bot's inputs and on the exchange's logs)."""

from __future__ import annotations

import asyncio
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.config import load_policy
from bot.core.market import Bar, BookTick
from bot.core.policy import policy_value
from bot.runtime import Trader
from harness.collect import RUNNERS
from harness.expect import RunRecord, judge
from harness.scenario import load_scenario, resolve_all
from harness.sim.constants import API_SECRET, START_MS
from harness.sim.runner import run_sim
from harness.sim.world import SimWorld

BAR = 300_000


@dataclass
class Seen:
    """What reached the bot: (clock ms, event ms, payload) per input kind."""

    books: list[tuple[int, int, BookTick]] = field(default_factory=list)
    bars: list[tuple[int, int, Bar]] = field(default_factory=list)
    alive: list[tuple[int, int]] = field(default_factory=list)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    record = Seen()
    on_book, on_bar, on_alive = Trader.on_book, Trader.on_bar, Trader.on_feed_alive

    async def book(self: Trader, tick: BookTick, event_ts_ms: int | None = None) -> None:
        record.books.append((self.clock.now_ms(), event_ts_ms if event_ts_ms is not None else tick.ts_ms, tick))
        await on_book(self, tick, event_ts_ms)

    async def bar(self: Trader, b: Bar, event_ts_ms: int | None = None) -> None:
        record.bars.append((self.clock.now_ms(), event_ts_ms if event_ts_ms is not None else b.ts_ms, b))
        await on_bar(self, b, event_ts_ms)

    async def alive(self: Trader, event_ts_ms: int) -> None:
        record.alive.append((self.clock.now_ms(), event_ts_ms))
        await on_alive(self, event_ts_ms)

    monkeypatch.setattr(Trader, "on_book", book)
    monkeypatch.setattr(Trader, "on_bar", bar)
    monkeypatch.setattr(Trader, "on_feed_alive", alive)
    return record


def run(tmp_path: Path, text: str, name: str = "s.yaml") -> tuple[SimWorld, RunRecord]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    scenario = load_scenario(path, checklist_ids=None)  # a runner test: covers are not its subject
    loaded = load_policy(scenario.profile)
    params = resolve_all(scenario, lambda p: policy_value(loaded.policy, p))
    world = SimWorld(scenario, params, loaded.policy, tmp_path / "work")
    (tmp_path / "work").mkdir(exist_ok=True)
    record = asyncio.run(world.run())
    return world, record


def scenario_text(steps: str, *, bars: int = 40, account: str = "{equity: 10000}", profile: str = "futures",
                  seed: int = 5) -> str:
    return f"""
        scenario: t
        profile: {profile}
        seed: {seed}
        market: {{bars: {bars}, vol_bps: 15}}
        account: {account}
        steps:
{textwrap.indent(textwrap.dedent(steps).strip(), " " * 10)}
        """


def names(record: RunRecord) -> list[str]:
    return [e.name for e in record.events]


def at_bar(n: float) -> int:
    return START_MS + round(n * BAR)


# --- the runner itself ---------------------------------------------------------------------


def test_registered_as_the_sim_runner() -> None:
    assert RUNNERS["sim"] is run_sim


def test_same_seed_same_run(tmp_path: Path) -> None:
    text = scenario_text("""
        - {id: gap, at: 20 bars, fault: spread_spike, params: {bps: 80, duration: 10m}}
        - {id: kill, at: 60 bars, fault: kill_switch, params: {mode: pause}}
        """, bars=120, seed=7)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, first = run(tmp_path / "a", text)
    _, second = run(tmp_path / "b", text)
    assert [e.to_dict() for e in first.events] == [e.to_dict() for e in second.events]
    assert [s.to_dict() for s in first.steps] == [s.to_dict() for s in second.steps]
    assert "order.filled" in names(first)  # the bot traded: the runs compare something


def test_a_400_bar_scenario_runs_to_its_end(tmp_path: Path, seen: Seen) -> None:
    _, record = run(tmp_path, scenario_text("[]", bars=400))
    assert len(seen.bars) == 400
    assert seen.bars[-1][2].ts_ms == START_MS + 400 * BAR == record.end_ms
    assert record.end_state["trading"] in ("active", "paused", "halted")
    assert record.end_state["duplicate_orders"] == "none"


def test_a_fault_that_cannot_be_injected_is_an_error(tmp_path: Path) -> None:
    # atr_spike needs an ATR baseline (atr_periods + baseline_periods bars) before it can act
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(scenario_text("""
        - {id: spike, at: 10 bars, fault: atr_spike, params: {multiple: 3, duration: 2 bars}}
        """)).lstrip("\n"))
    scenario = load_scenario(path, checklist_ids=None)  # a runner test: covers are not its subject
    loaded = load_policy("futures")
    record = asyncio.run(SimWorld(scenario, resolve_all(scenario, lambda p: policy_value(loaded.policy, p)),
                                  loaded.policy, tmp_path).run())
    timing = record.step("spike")
    assert timing is not None and timing.error is not None and "baseline" in timing.error
    assert judge(scenario, record).verdict == "error"


def test_an_unfolding_fault_never_reached_is_an_error(tmp_path: Path) -> None:
    # twenty losing trades (about a minute each: the bot adopts a position at its next reconcile)
    # cannot all close in the two bars left before the end
    _, record = run(tmp_path, scenario_text("""
        - {id: streak, at: 38 bars, fault: loss_streak, params: {count: 20}}
        """, account="{equity: 10000, strategy: off}"))
    timing = record.step("streak")
    assert timing is not None and timing.error is not None and "not established" in timing.error


def test_a_fault_needing_the_bot_before_it_runs_is_an_error(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: kill, at: 0 bars, fault: kill_switch, params: {mode: immediate}}
        """))
    timing = record.step("kill")
    assert timing is not None and timing.error is not None and "running bot" in timing.error


# --- each fault, as the bot saw it ---------------------------------------------------------


def test_spread_spike_widens_the_book_the_bot_receives(tmp_path: Path, seen: Seen) -> None:
    run(tmp_path, scenario_text("""
        - {id: wide, at: 10 bars, fault: spread_spike, params: {bps: 80, duration: 10m}}
        """))
    during = [t for now, _, t in seen.books if at_bar(10) <= now < at_bar(10) + 600_000]
    after = [t for now, _, t in seen.books if now >= at_bar(13)]
    assert during and all(79.9 <= t.spread_bps < 81 for t in during)
    assert after and all(t.spread_bps < 5 for t in after)


def test_ws_lag_delivers_messages_late_with_their_true_event_time(tmp_path: Path, seen: Seen) -> None:
    run(tmp_path, scenario_text("""
        - {id: lag, at: 10 bars, fault: ws_lag, params: {lag: 7s, duration: 10m}}
        """))
    lagged = [(now, e) for now, e, _ in seen.bars if at_bar(10) <= e < at_bar(12)]
    assert lagged and all(now - e == 7000 for now, e in lagged)
    assert all(now == e for now, e, _ in seen.bars if e >= at_bar(13))
    alive = [(now, e) for now, e in seen.alive if at_bar(10) + 10_000 <= now < at_bar(11)]
    assert alive and all(now - e >= 7000 for now, e in alive)


def test_stale_book_silences_the_feed(tmp_path: Path, seen: Seen) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: stale, at: 10 bars, fault: stale_book, params: {duration: 2m}}
        """))
    window = (at_bar(10), at_bar(10) + 120_000)
    delivered = [e for _, e, _ in seen.books + seen.bars if window[0] <= e < window[1]]
    alive = [e for _, e in seen.alive if window[0] < e < window[1]]  # (a message at the start came first)
    assert not delivered and not alive
    assert "feed.stale" in names(record) and "feed.recovered" in names(record)


def test_inference_latency_makes_the_model_call_take_virtual_time(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: slow, at: 10 bars, fault: inference_latency, params: {ms: 1200, duration: 3 bars}}
        """))
    tripped = [e for e in record.events if e.name == "breaker.tripped" and e.fields.get("check") == "inference"]
    assert tripped and tripped[0].fields["value"] == 1200
    assert tripped[0].ts_ms == at_bar(10) + 1200


def test_model_output_replaces_the_fields_it_names_for_its_window_only(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: bug, at: 10 bars, fault: model_output, params: {side: buy, win_prob: 1.3, duration: 2 bars}}
        """, seed=7))
    refused = [e for e in record.events if e.name == "order.refused" and e.fields["rule"] == "invalid"]
    assert [e.ts_ms for e in refused] == [at_bar(10), at_bar(11)]
    assert all(e.fields["reason"] == "win probability must be in [0, 1] (got 1.3)" for e in refused)


def test_model_output_that_changes_nothing_is_an_error(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: bug, at: 10 bars, fault: model_output, params: {duration: 2 bars}}
        """))
    timing = record.step("bug")
    assert timing is not None and timing.error is not None and "changes nothing" in timing.error


def test_order_latency_delays_replies_and_fills(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: slow, at: 10 bars, fault: order_latency, params: {placement_ms: 2500, fill_ms: 6000}}
        - {id: trade, at: 10 bars, fault: loss_streak, params: {count: 1}}
        """, account="{equity: 10000, strategy: off}"))
    checks = {e.fields["check"]: e.fields["value"] for e in record.events
              if e.name == "breaker.tripped" and e.fields.get("breaker") == "latency"}
    assert checks.get("order_placement") == 2500
    assert checks.get("order_fill", 0) >= 6000


def test_exchange_outage_fails_rest_and_the_bot_notices(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: down, at: 10 bars, fault: exchange_outage, params: {duration: 2m, scope: rest}}
        """))
    assert world.net.rest_failures > 0
    down = [e for e in record.events if e.name == "exchange.down"]
    up = [e for e in record.events if e.name == "exchange.up"]
    assert down and at_bar(10) <= down[0].ts_ms <= at_bar(10) + 60_000
    assert up and up[0].ts_ms >= at_bar(10) + 120_000


def test_http_errors_answer_with_the_status_and_retry_after(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: limit, at: 10 bars, fault: http_errors, params: {status: 429, code: -1003, count: 2, retry_after: 20s}}
        """))
    hits = [r for r in world.xe.request_log if r["status"] == 429]
    assert len(hits) == 2 and all(r["code"] == -1003 for r in hits)
    assert hits[1]["ts"] - hits[0]["ts"] >= 20_000, "the bot waited Retry-After before asking again"
    warnings = [e for e in record.events if e.name == "alert.sent" and e.fields["severity"] == "warning"]
    assert warnings and "Retry-After" in warnings[0].fields["title"]
    assert "exchange.down" not in names(record), "a 429 is a request to back off, not an outage"


def test_order_reject_rejects_the_bots_next_order(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: trade, at: 10 bars, fault: loss_streak, params: {count: 1}}
        - {id: reject, at: 10 bars, fault: order_reject, params: {code: -2021, count: 1}}
        """, account="{equity: 10000, strategy: off}"))
    rejected = [r for r in world.xe.order_log if r["event"] == "rejected"]
    assert [r["code"] for r in rejected] == [-2021]
    assert any(e.name == "order.rejected" and e.fields["code"] == -2021 for e in record.events)


def test_unknown_outcome_books_the_order_and_loses_the_reply(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: lost, at: 10 bars, fault: unknown_outcome, params: {count: 1}}
        - {id: kill, at: 10 bars, fault: kill_switch, params: {mode: immediate}}
        """, account="{equity: 10000, strategy: off, position: {side: long, qty_pct: 10}}"))
    assert [r["event"] for r in world.xe.order_log if r["event"] == "reply_lost"] == ["reply_lost"]
    assert "order.unknown" in names(record)
    assert record.end_state["duplicate_orders"] == "none"
    assert world.duplicate_orders() == []


def test_clock_skew_is_rejected_with_1021_and_the_bot_resyncs(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: skew, at: 10 bars, fault: clock_skew, params: {offset: 3s}}
        - {id: kill, at: 10 bars, fault: kill_switch, params: {mode: immediate}}
        """, account="{equity: 10000, strategy: off, position: {side: long, qty_pct: 10}}"))
    skewed = [r for r in world.xe.request_log if r["code"] == -1021]
    assert skewed and skewed[0]["ts"] == at_bar(10)
    assert any(e.name == "alert.sent" and "resynced" in e.fields["title"] for e in record.events)
    later = [r for r in world.xe.request_log if r["ts"] > at_bar(11)]
    assert later and all(r["status"] == 200 for r in later)
    assert record.end_state["position"] == "flat"


def test_malformed_fill_reports_a_non_finite_price(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: trade, at: 10 bars, fault: loss_streak, params: {count: 1}}
        - {id: bad, at: 10 bars, fault: malformed_fill, params: {count: 1}}
        """, account="{equity: 10000, strategy: off}"))
    assert world.net.malformed_sent == 1
    filled = [e for e in record.events if e.name == "order.filled"]
    assert filled and math.isnan(filled[0].fields["price"])
    assert record.end_state["trading"] == "halted"


def test_key_revoked_is_refused_by_the_exchange(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: revoke, at: 10 bars, fault: key_revoked}
        """))
    refused = [r for r in world.xe.request_log if r["code"] == -2015]
    assert refused and refused[0]["ts"] >= at_bar(10)
    assert "exchange.down" in names(record)


def test_key_permissions_set_what_the_exchange_reports(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: perms, at: 0 bars, fault: key_permissions, params: {flags: [read, trade, withdraw]}}
        """))
    perms = world.account.permissions
    assert perms.enable_withdrawals and not perms.ip_restrict
    refused = [e for e in record.events if e.name == "startup.refused"]
    assert refused and "withdrawals" in refused[0].fields["reason"]
    assert record.end_state["trading"] == "halted"


def test_key_permissions_rejects_unknown_flags(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: perms, at: 0 bars, fault: key_permissions, params: {flags: [read, fly]}}
        """))
    timing = record.step("perms")
    assert timing is not None and timing.error is not None and "fly" in timing.error


@pytest.mark.parametrize("where", ["log", "repo", "paste"])
def test_credential_leak_writes_the_secret_where_it_must_not_be(tmp_path: Path, where: str) -> None:
    world, _ = run(tmp_path, scenario_text(f"""
        - {{id: leak, at: 5 bars, fault: credential_leak, params: {{where: {where}}}}}
        """, bars=10))
    leaked = [p for p in world.workdir.rglob("*") if p.is_file() and API_SECRET in p.read_text(errors="replace")]
    assert len(leaked) == 1


def test_restart_builds_a_new_process_that_restores_state(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: kill, at: 5 bars, fault: kill_switch, params: {mode: pause}}
        - {id: restart, at: 10 bars, fault: restart}
        """))
    restored = [e for e in record.events if e.name == "state.restored"]
    assert restored and restored[0].ts_ms == at_bar(10)
    assert restored[0].fields["killswitch"]["engaged"] is True
    assert record.end_state["killswitch"] == "engaged"


def test_restart_down_for_keeps_the_bot_down_while_the_market_goes_on(tmp_path: Path, seen: Seen) -> None:
    """restart down_for: no bot between the stop and the start, the exchange's bars close all the
    same (the position stays there, unmanaged), the step is established when the bot is back."""
    world, record = run(tmp_path, scenario_text("""
        - {id: crash, at: 10 bars, fault: restart, params: {down_for: 5 bars}}
        """, account="{equity: 10000, strategy: off, position: {side: long, qty_pct: 10}}"))
    bar_times = [b.ts_ms for _, _, b in seen.bars]
    assert at_bar(9) in bar_times and at_bar(15) in bar_times
    assert not [t for t in bar_times if at_bar(10) <= t < at_bar(15)]  # bars 10-14: the bot was down
    assert not [t for t, _, _ in seen.books if at_bar(10) <= t < at_bar(15)]
    assert world.bar_index == 40  # the exchange's market did not wait for it
    restored = [e.ts_ms for e in record.events if e.name == "state.restored"]
    assert restored == [at_bar(15)]
    adopted = [e for e in record.events if e.name == "position.opened" and e.fields["plan"] == "restored"]
    assert [e.ts_ms for e in adopted] == [at_bar(15)]
    timing = record.step("crash")
    assert timing is not None and timing.error is None and timing.params["down_for"] == 5 * BAR
    assert (timing.injected_ms, timing.established_ms) == (at_bar(10), at_bar(15))
    assert any("down for 1500000 ms" in n for n in record.notes), record.notes


def test_restart_without_down_for_is_the_instant_restart(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("- {id: restart, at: 10 bars, fault: restart}"))
    timing = record.step("restart")
    assert timing is not None and timing.params == {"down_for": 0}
    assert timing.established_ms is None  # established at its injection, as before down_for existed
    assert [e.ts_ms for e in record.events if e.name == "state.restored"] == [at_bar(10)]


def test_a_run_that_ends_while_the_bot_is_down_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(scenario_text("""
        - {id: crash, at: 35 bars, fault: restart, params: {down_for: 10 bars}}
        """)).lstrip("\n"))
    scenario = load_scenario(path, checklist_ids=None)
    _, record = run(tmp_path, path.read_text())
    timing = record.step("crash")
    assert timing is not None and timing.error is not None
    assert "not established by the end of the run" in timing.error and "still down" in timing.error
    assert judge(scenario, record).verdict == "error"


def test_a_step_that_starts_the_bot_during_the_downtime_is_an_error(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: crash, at: 10 bars, fault: restart, params: {down_for: 5 bars}}
        - {id: again, at: 12 bars, fault: restart}
        """))
    timing = record.step("crash")
    assert timing is not None and timing.error is not None and "overlapping restarts" in timing.error


def test_the_net_downtime_scenario_means_the_same_in_sim(tmp_path: Path) -> None:
    """scenarios/net/restart-down-stop-crossed.yaml run with mode sim: the same file passes."""
    import dataclasses

    net_file = Path(__file__).resolve().parents[2] / "scenarios" / "net" / "restart-down-stop-crossed.yaml"
    scenario = dataclasses.replace(load_scenario(net_file), mode="sim")
    loaded = load_policy(scenario.profile)
    params = resolve_all(scenario, lambda p: policy_value(loaded.policy, p))
    (tmp_path / "work").mkdir()
    record = asyncio.run(SimWorld(scenario, params, loaded.policy, tmp_path / "work").run())
    verdict = judge(scenario, record)
    assert verdict.passed, verdict.message


@pytest.mark.parametrize("credentials,engaged", [("valid", True), ("invalid", False), ("missing", False)])
def test_kill_switch_credentials(tmp_path: Path, credentials: str, engaged: bool) -> None:
    _, record = run(tmp_path, scenario_text(f"""
        - {{id: kill, at: 5 bars, fault: kill_switch, params: {{mode: immediate, credentials: {credentials}}}}}
        """, bars=10))
    assert ("killswitch.engaged" in names(record)) is engaged
    assert ("killswitch.rejected" in names(record)) is not engaged


def test_price_gap_moves_the_bar_close(tmp_path: Path, seen: Seen) -> None:
    run(tmp_path, scenario_text("""
        - {id: gap, at: 10 bars, fault: price_gap, params: {pct: -7}}
        """))
    closes = {b.ts_ms: b.close for _, _, b in seen.bars}
    move = closes[at_bar(10)] / closes[at_bar(9)] - 1
    assert move == pytest.approx(-0.07, abs=1e-5)


def test_atr_spike_bars_have_the_range_that_drives_atr_to_the_multiple(tmp_path: Path, seen: Seen) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: spike, at: 115 bars, fault: atr_spike, params: {multiple: 3, duration: 1 bar}}
        """, bars=120))
    bar = next(b for _, _, b in seen.bars if b.ts_ms == at_bar(115))
    assert bar.open == bar.close and bar.high > bar.low
    tripped = [e for e in record.events if e.name == "breaker.tripped" and e.fields.get("check") == "atr"]
    assert tripped and tripped[0].fields["value"] == pytest.approx(3.0, rel=1e-3)


def test_drawdown_takes_real_equity_to_the_depth(tmp_path: Path) -> None:
    world, record = run(tmp_path, scenario_text("""
        - {id: dd, at: 10 bars, fault: drawdown, params: {depth_pct: 3.5}}
        """, account="{equity: 10000, strategy: off}"))
    timing = record.step("dd")
    assert timing is not None and timing.error is None and timing.established_ms is not None
    tripped = [e for e in record.events if e.name == "breaker.tripped" and e.fields.get("breaker") == "drawdown"]
    assert tripped and tripped[0].fields["value"] == pytest.approx(3.5, abs=0.01)
    moves = [b for b in world.xe.markets["BTCUSDT"].history]  # no bar moved by the price_move limit
    assert all(abs(b.close / a.close - 1) < 0.1 for a, b in zip(moves, moves[1:], strict=False))


@pytest.mark.parametrize("fault,sign", [("loss_streak", -1), ("winning_trade", 1)])
def test_trades_close_with_the_wanted_sign(tmp_path: Path, fault: str, sign: int) -> None:
    _, record = run(tmp_path, scenario_text(f"""
        - {{id: t, at: 10 bars, fault: {fault}, params: {{count: 2}}}}
        """, account="{equity: 10000, strategy: off}"))
    closed = [e.fields["pnl"] for e in record.events if e.name == "position.closed"]
    assert len(closed) == 2 and all(p * sign > 0 for p in closed)
    timing = record.step("t")
    assert timing is not None and timing.established_ms is not None


def test_manual_resume_and_clear_go_through_the_operator_surface(tmp_path: Path) -> None:
    _, record = run(tmp_path, scenario_text("""
        - {id: kill, at: 5 bars, fault: kill_switch, params: {mode: pause}}
        - {id: clear, at: 8 bars, fault: clear_kill_switch}
        - {id: gap, at: 10 bars, fault: price_gap, params: {pct: 12}}
        - {id: resume, at: 12 bars, fault: manual_resume}
        """))
    order = [n for n in names(record) if n in ("killswitch.engaged", "killswitch.cleared", "trading.halted",
                                                 "trading.resumed")]
    assert order == ["killswitch.engaged", "killswitch.cleared", "trading.resumed", "trading.halted",
                     "trading.resumed"]

