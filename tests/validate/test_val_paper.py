"""The paper venue charges what the policy says, and the bot's books agree with the venue's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import load_policy
from bot.core.policy import Policy
from harness.validate.markets import generated_market
from harness.validate.paper import API_KEY, PaperSession

BAR = 300_000


def play(policy: Policy, tmp_path: Path, bars: int, regime: str = "trend_up") -> PaperSession:
    tmp_path.mkdir(parents=True, exist_ok=True)

    async def go() -> PaperSession:
        session = PaperSession(generated_market(regime, 1, BAR), policy, 10_000.0, tmp_path)
        await session.start()
        await session.play(bars)
        await session.close()
        return session

    return asyncio.run(go())


def without_slippage(policy: Policy) -> Policy:
    tree = policy.model_dump()
    tree["execution_costs"]["slippage"].update(base_slippage_bps=0.0, volatility_coefficient=0.0)
    tree["execution_costs"]["market_impact"]["bps_per_10k_usd"] = 0.0
    return Policy.model_validate(tree)


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory: pytest.TempPathFactory) -> PaperSession:
    # a range-bound market: the strategy's own entries trade often enough to stop on a loss streak
    return play(load_policy("pets").policy, tmp_path_factory.mktemp("pets"), 2400, "range")


def test_the_bot_trades_and_its_pnl_agrees_with_the_venue(pets_run: PaperSession) -> None:
    s = pets_run
    assert len(s.tally.trades) >= 5
    assert len(s.equity_curve) == s.bars + 1 == 2401
    assert s.equity_ts[1] - s.equity_ts[0] == BAR
    account = s.xe.accounts[API_KEY]  # type: ignore[union-attr]
    open_pnl = s.equity_curve[-1] - account.wallet
    if not s.open_position:
        assert open_pnl == pytest.approx(0.0, abs=1e-9)
    # every closed trade's P&L (the bot's own accounting) adds up to the venue's wallet change
    assert sum(t["pnl"] for t in s.tally.trades) == pytest.approx(account.wallet - 10_000.0, abs=1e-6)
    assert s.fees_paid == pytest.approx(account.fees_paid) and s.fees_paid > 0


def test_pets_enters_post_only_as_maker_and_exits_pay_taker_slippage(pets_run: PaperSession) -> None:
    fills = [r for r in s_log(pets_run) if r["event"] == "filled"]
    entries = [r for r in fills if not r["reduce_only"]]
    exits = [r for r in fills if r["reduce_only"]]
    assert entries and exits
    assert all(r["maker"] and r["tif"] == "GTX" for r in entries)
    assert all(r["fill_price"] == r["price"] for r in entries)  # a post-only order fills at its limit
    assert not any(r["maker"] for r in exits)
    assert pets_run.slippage_paid > 0


def s_log(session: PaperSession) -> list[dict]:
    return [r for r in session.xe.order_log if r.get("api_key") == API_KEY]  # type: ignore[union-attr]


def test_taker_fills_are_moved_by_the_policys_slippage_model(tmp_path: Path) -> None:
    policy = load_policy("futures").policy
    costs = policy.execution_costs
    s = play(policy, tmp_path / "a", 1, "crash")
    touch = 60_000.0
    # calm start (no ATR yet): base slippage only, below the impact threshold
    assert s._taker_fill_price("BTCUSDT", 1, 0.01, touch) == pytest.approx(
        touch * (1 + costs.slippage.base_slippage_bps / 10_000))
    # above the impact threshold the notional's excess adds its bps; a sell is moved down
    qty = 1.0  # 60k notional
    impact = costs.market_impact.bps_per_10k_usd * (qty * touch - costs.market_impact.threshold_usd) / 10_000
    assert s._taker_fill_price("BTCUSDT", -1, qty, touch) == pytest.approx(
        touch * (1 - (costs.slippage.base_slippage_bps + impact) / 10_000))


def test_costs_really_come_out_of_the_figures(tmp_path: Path) -> None:
    policy = load_policy("pets").policy
    costly = play(policy, tmp_path / "costly", 2400)
    free = play(without_slippage(policy), tmp_path / "free", 2400)
    assert costly.slippage_paid > 0 and free.slippage_paid == 0
    assert free.equity_curve[-1] > costly.equity_curve[-1]


def test_a_halt_that_needs_a_manual_resume_is_resumed_by_the_paper_operator(pets_run: PaperSession) -> None:
    tally = pets_run.tally
    assert tally.breaker_trips["consecutive_losses/critical"] >= 1
    assert tally.halts >= 1 and tally.resumes >= 1
    assert any("consecutive_losses" in reason for reason in tally.halt_reasons)


def test_paper_sessions_are_deterministic(tmp_path: Path, pets_run: PaperSession) -> None:
    again = play(load_policy("pets").policy, tmp_path, 2400, "range")
    assert again.equity_curve == pets_run.equity_curve
    assert again.tally.trades == pets_run.tally.trades
