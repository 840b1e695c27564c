"""Model faults: the bot's model (its strategy) answers, but with a wrong signal.

- model_output (sim): during `duration` every signal the bot's model returns has the given fields
  replaced - `side` (buy, sell: an entry wanted on every bar the account is flat; none: no entry),
  `win_prob`, `payoff`, `expected_edge`, `expected_move` - as a model with a bug, a bad weights file or a feature
  pipeline gone wrong would hand it over. The bot must size nothing on a signal outside what sizing
  accepts (a win probability outside [0, 1], a payoff ratio <= 0) and say why (order.refused, rule
  invalid), and size a signal at the edge of what it accepts like any other. Net mode has no wire to
  the model: it runs inside the bot process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.faults.contract import DURATION, FaultError, kind
from harness.faults.contract import ParamSpec as P

if TYPE_CHECKING:
    from harness.sim.steps import ActiveStep
    from harness.sim.world import SimWorld

SIGNAL_FIELDS = ("side", "win_prob", "payoff", "expected_edge", "expected_move")


async def model_output(world: SimWorld, step: ActiveStep) -> None:
    fields = {k: step.params[k] for k in SIGNAL_FIELDS if step.params.get(k) is not None}
    if not fields:
        raise FaultError("model_output changes nothing: give at least one of " + ", ".join(SIGNAL_FIELDS))
    if fields.get("side") == "none":
        fields["side"] = None
    window = (world.now, world.now + int(step.params["duration"]), fields)
    world.model_output.append(window)
    step.on_cleanup(lambda: world.model_output.remove(window) if window in world.model_output else None)


KINDS = (
    kind("model_output", "model", "the bot's model returns a wrong signal (side, win_prob, payoff, edge, move)",
         sim=model_output, net=None, duration=DURATION,
         side=P("enum", required=False, choices=("buy", "sell", "none"), doc="the signal's side"),
         win_prob=P("number", required=False, doc="the signal's win probability"),
         payoff=P("number", required=False, doc="the signal's average win / average loss"),
         expected_edge=P("number", required=False, doc="the signal's edge before costs (fraction of notional)"),
         expected_move=P("number", required=False, doc="the market's typical move over the holding horizon "
                                                       "(fraction of price)"),
         not_in={"net": "the model runs inside the bot process; there is no wire to change its output "
                        "(run it in sim mode)"}),
)
