"""What the minimum edge after costs does to the strategy's own trading, per market regime.

Run: .venv/bin/python benchmarks/edge_after_costs.py [--seeds 20] [--bars 300] [--profile futures]
     [--vol-bps 2 --vol-bps 15]

For each volatility (vol_bps of the testnet's random walk: 2 is a dead-calm market whose moves
cannot pay a round trip, 15 a normal 5-minute BTC market) it runs the same seeds as sim-mode
scenarios with no faults - the real bot, its strategy on, against the in-process exchange - and
counts the trades the strategy opened (position.closed), the winners (pnl > 0), the net P&L after
fees (sum of pnl, quote currency) and the entries the edge check refused (order.refused{rule:
edge}). Deterministic: the same command prints the same table. Exits non-zero when the edge
check refused nothing or the strategy traded nothing (the table would measure nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import load_policy  # noqa: E402
from bot.core.policy import policy_value  # noqa: E402
from harness.scenario import load_scenario, resolve_all  # noqa: E402
from harness.sim.runner import simulate  # noqa: E402


@dataclass
class Tally:
    trades: int = 0
    wins: int = 0
    net: float = 0.0
    refused_edge: int = 0


def run_seed(profile: str, seed: int, bars: int, vol_bps: float, workdir: Path) -> Tally:
    path = workdir / f"edge-{profile}-{vol_bps:g}-{seed}.yaml"
    path.write_text(textwrap.dedent(f"""\
        scenario: edge-{profile}-{seed}
        title: strategy alone at vol_bps {vol_bps}
        covers: [C1.costs]
        profile: {profile}
        seed: {seed}
        market: {{bars: {bars}, vol_bps: {vol_bps}}}
        account: {{equity: 10000}}
        """))
    scenario = load_scenario(path)
    policy = load_policy(profile).policy
    record = simulate(scenario, resolve_all(scenario, lambda p: policy_value(policy, p)), policy)
    tally = Tally()
    for event in record.events:
        if event.name == "position.closed":
            pnl = float(event.fields["pnl"])
            tally.trades += 1
            tally.wins += pnl > 0
            tally.net += pnl
        elif event.name == "order.refused" and event.fields.get("rule") == "edge":
            tally.refused_edge += 1
    return tally


def measure(profile: str, seeds: int, bars: int, vols: list[float]) -> dict[float, Tally]:
    """The summed tally of seeds 1..N per volatility."""
    out: dict[float, Tally] = {}
    with tempfile.TemporaryDirectory(prefix="gameday-edge-") as tmp:
        for vol in vols:
            total = out.setdefault(vol, Tally())
            for seed in range(1, seeds + 1):
                t = run_seed(profile, seed, bars, vol, Path(tmp))
                total.trades += t.trades
                total.wins += t.wins
                total.net += t.net
                total.refused_edge += t.refused_edge
    return out


def measured(tallies: dict[float, Tally]) -> dict[float, Tally]:
    """The table, or SystemExit when it shows nothing of the edge check: a check that refuses no
    entry anywhere (or a strategy that never trades) makes the same fast, empty figures."""
    if not any(t.refused_edge for t in tallies.values()):
        raise SystemExit("the edge check refused no entry in any regime: the figure measures nothing "
                         "(is entry_allowed_by_edge still called before an entry?)")
    if not any(t.trades for t in tallies.values()):
        raise SystemExit("the strategy closed no trade in any regime: the figure measures nothing "
                         "(add a livelier --vol-bps or more --seeds)")
    return tallies


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds 1..N")
    ap.add_argument("--bars", type=int, default=300)
    ap.add_argument("--profile", default="futures", choices=["futures", "pets"])
    ap.add_argument("--vol-bps", type=float, action="append")
    args = ap.parse_args(argv)
    print(f"profile {args.profile}, seeds 1..{args.seeds}, {args.bars} bars each")
    print(f"{'vol_bps':>8} {'trades':>7} {'wins':>5} {'net P&L':>10} {'refused (edge)':>15}")
    for vol, total in measured(measure(args.profile, args.seeds, args.bars, args.vol_bps or [2.0, 15.0])).items():
        print(f"{vol:>8g} {total.trades:>7} {total.wins:>5} {total.net:>10.2f} {total.refused_edge:>15}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
