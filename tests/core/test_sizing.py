"""Position sizing: every cap holds for any input, under both profiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import load_policy
from bot.core.exits import plan_exits
from bot.core.policy import Policy, VolatilityScaling
from bot.core.sizing import SizeDecision, kelly_fraction, size_position, zone_for

PROFILES = ("futures", "pets")
POLICIES: dict[str, Policy] = {name: load_policy(name).policy for name in PROFILES}

equities = st.floats(min_value=1.0, max_value=1e9)
prices = st.floats(min_value=1e-4, max_value=1e7)
atr_fracs = st.floats(min_value=0.0, max_value=0.5)  # ATR as a fraction of price
probs = st.floats(min_value=0.0, max_value=1.0)
payoffs = st.floats(min_value=0.01, max_value=100.0)
exposure_fracs = st.floats(min_value=0.0, max_value=1.5)  # open exposure as a fraction of equity
factors = st.floats(min_value=0.0, max_value=1.0)


def _size(policy: Policy, equity: float, price: float, atr_frac: float, p: float, b: float,
          exposure_frac: float = 0.0, factor: float = 1.0) -> SizeDecision:
    return size_position(policy, equity=equity, price=price, atr=price * atr_frac, win_prob=p, payoff=b,
                         open_exposure=equity * exposure_frac, size_factor=factor)


def _with_sizing(policy: Policy, **changes: object) -> Policy:
    return policy.model_copy(update={"position_sizing": policy.position_sizing.model_copy(update=changes)})


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=400, deadline=None)
@given(equity=equities, price=prices, atr_frac=atr_fracs, p=probs, b=payoffs, exposure_frac=exposure_fracs,
       factor=factors)
def test_size_never_exceeds_any_cap(profile: str, equity: float, price: float, atr_frac: float, p: float,
                                    b: float, exposure_frac: float, factor: float) -> None:
    policy = POLICIES[profile]
    ps = policy.position_sizing
    open_exposure = equity * exposure_frac
    d = _size(policy, equity, price, atr_frac, p, b, exposure_frac, factor)

    assert math.isfinite(d.qty) and d.qty >= 0.0
    assert math.isfinite(d.notional) and d.notional >= 0.0
    assert d.notional <= ps.max_position_pct * equity
    assert d.qty == 0.0 or d.notional + open_exposure <= ps.max_total_exposure_pct * equity
    # Kelly is a target, not a cap: allow the rounding of qty x price
    assert d.notional <= max(kelly_fraction(p, b, ps.kelly_fraction), 0.0) * equity * (1 + 1e-12)
    for side in ("buy", "sell"):
        plan = plan_exits(side, price, price * atr_frac, policy.exits)
        loss_at_stop = d.qty * abs(price - plan.stop)
        assert loss_at_stop <= ps.max_risk_per_trade * equity
        if ps.volatility_scaling.enabled:
            assert loss_at_stop <= ps.risk_per_trade * equity
    assert d.zone == zone_for(price * atr_frac / price * 100.0, ps.zones)
    if ps.zones.enabled and d.zone in ps.zones.blocked:
        assert d.qty == 0.0 and d.binding_constraint == "zone_blocked"


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=300, deadline=None)
@given(equity=equities, price=prices, atr_frac=atr_fracs, p=probs, b=payoffs, exposure_frac=exposure_fracs,
       a=factors, c=factors)
def test_factors_compose_and_are_monotone(profile: str, equity: float, price: float, atr_frac: float,
                                          p: float, b: float, exposure_frac: float, a: float, c: float) -> None:
    policy = POLICIES[profile]
    with_a = _size(policy, equity, price, atr_frac, p, b, exposure_frac, a)
    with_ac = _size(policy, equity, price, atr_frac, p, b, exposure_frac, a * c)
    assert math.isclose(with_ac.qty, with_a.qty * c, rel_tol=1e-9, abs_tol=1e-290)
    low, high = sorted((a, c))
    assert (_size(policy, equity, price, atr_frac, p, b, exposure_frac, low).qty
            <= _size(policy, equity, price, atr_frac, p, b, exposure_frac, high).qty)


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=300, deadline=None)
@given(equity=st.floats(allow_nan=True, allow_infinity=True),
       price=st.floats(allow_nan=True, allow_infinity=True),
       atr=st.none() | st.floats(allow_nan=True, allow_infinity=True),
       p=st.floats(allow_nan=True, allow_infinity=True),
       b=st.floats(allow_nan=True, allow_infinity=True),
       exposure=st.floats(allow_nan=True, allow_infinity=True),
       factor=st.floats(allow_nan=True, allow_infinity=True))
def test_any_input_gives_a_finite_non_negative_size(profile: str, equity: float, price: float,
                                                    atr: float | None, p: float, b: float, exposure: float,
                                                    factor: float) -> None:
    policy = POLICIES[profile]
    d = size_position(policy, equity=equity, price=price, atr=atr, win_prob=p, payoff=b,
                      open_exposure=exposure, size_factor=factor)
    assert math.isfinite(d.qty) and d.qty >= 0.0
    assert math.isfinite(d.notional) and d.notional >= 0.0
    if d.qty > 0.0:
        ps = policy.position_sizing
        assert d.notional <= ps.max_position_pct * equity
        assert d.notional + exposure <= ps.max_total_exposure_pct * equity


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("field", "value"), [
    ("equity", 0.0), ("equity", -1.0), ("equity", math.nan), ("equity", math.inf),
    ("price", 0.0), ("price", -5.0), ("price", math.nan), ("price", math.inf),
    ("atr", None), ("atr", math.nan), ("atr", -1.0), ("atr", math.inf),
    ("win_prob", -0.1), ("win_prob", 1.5), ("win_prob", math.nan),
    ("payoff", 0.0), ("payoff", -2.0), ("payoff", math.inf),
    ("open_exposure", -1.0), ("open_exposure", math.nan),
    ("size_factor", math.nan),
])
def test_invalid_input_gives_zero_with_reason(profile: str, field: str, value: float | None) -> None:
    args: dict[str, float | None] = {"equity": 10_000.0, "price": 100.0, "atr": 0.5, "win_prob": 0.6,
                                     "payoff": 2.0, "open_exposure": 0.0, "size_factor": 1.0}
    args[field] = value
    d = size_position(POLICIES[profile], **args)  # type: ignore[arg-type]
    assert d.qty == 0.0 and d.notional == 0.0
    assert d.binding_constraint == "invalid_input"
    assert d.reason


@pytest.mark.parametrize("profile", PROFILES)
def test_no_edge_gives_zero(profile: str) -> None:
    d = size_position(POLICIES[profile], equity=10_000, price=100, atr=0.3, win_prob=0.5, payoff=1.0)
    assert d.qty == 0.0 and d.binding_constraint == "no_edge"
    d = size_position(POLICIES[profile], equity=10_000, price=100, atr=0.3, win_prob=0.2, payoff=1.5)
    assert d.qty == 0.0 and d.binding_constraint == "no_edge"


def test_fractional_kelly_binds_when_edge_is_small() -> None:
    policy = POLICIES["futures"]
    # f* = 0.6 - 0.4 / 2 = 0.4; half Kelly = 0.2
    assert math.isclose(kelly_fraction(0.6, 2.0, policy.position_sizing.kelly_fraction), 0.2)
    # f* = 0.55 - 0.45 / 1.5 = 0.25; half Kelly = 0.125 of equity
    d = size_position(policy, equity=10_000, price=100, atr=0.3, win_prob=0.55, payoff=1.5)
    assert d.binding_constraint == "kelly"
    assert math.isclose(d.notional, 1_250.0, rel_tol=1e-9)
    assert math.isclose(d.kelly_f, 0.125)


def test_max_position_binds_at_twenty_percent_for_futures() -> None:
    d = size_position(POLICIES["futures"], equity=10_000, price=100, atr=0.5, win_prob=0.9, payoff=3.0)
    assert d.binding_constraint == "max_position_pct"
    assert math.isclose(d.notional, 2_000.0, rel_tol=1e-9) and d.notional <= 2_000.0
    assert math.isclose(d.qty, 20.0, rel_tol=1e-9)
    assert d.stop_pct == POLICIES["futures"].exits.stop_loss.min_pct  # 1.5 x 0.5 % clamped up to 1 %


def test_risk_per_trade_binds_in_a_wild_market() -> None:
    policy = POLICIES["futures"]
    # ATR 7 % of price: stop clamps at max 5 %, risk distance = atr_factor 1.5 x 7 % = 10.5 %
    d = size_position(policy, equity=10_000, price=100, atr=7.0, win_prob=0.9, payoff=3.0)
    assert d.binding_constraint == "risk_per_trade"
    assert d.stop_pct == policy.exits.stop_loss.max_pct
    assert math.isclose(d.risk_distance_pct, 0.105)
    assert math.isclose(d.notional, 0.02 * 10_000 / 0.105, rel_tol=1e-9)
    assert d.loss_at_stop <= 0.02 * 10_000


def test_max_risk_per_trade_is_a_ceiling_even_without_volatility_scaling() -> None:
    base = POLICIES["futures"]
    policy = _with_sizing(base, volatility_scaling=VolatilityScaling(enabled=False), kelly_fraction=1.0,
                          max_position_pct=1.0, max_total_exposure_pct=1.0, max_risk_per_trade=0.03)
    d = size_position(policy, equity=10_000, price=100, atr=4.0, win_prob=0.99, payoff=100.0)
    assert d.binding_constraint == "max_risk_per_trade"
    assert d.stop_pct == policy.exits.stop_loss.max_pct
    assert math.isclose(d.loss_at_stop, 0.03 * 10_000, rel_tol=1e-9) and d.loss_at_stop <= 300.0


@pytest.mark.parametrize("profile", PROFILES)
def test_total_exposure_leaves_only_the_room_left(profile: str) -> None:
    policy = POLICIES[profile]
    cap = policy.position_sizing.max_total_exposure_pct * 10_000
    d = size_position(policy, equity=10_000, price=100, atr=0.2, win_prob=0.9, payoff=3.0,
                      open_exposure=cap - 1_000)
    assert d.binding_constraint == "max_total_exposure_pct"
    assert math.isclose(d.notional, 1_000.0, rel_tol=1e-9) and d.notional + cap - 1_000 <= cap
    full = size_position(policy, equity=10_000, price=100, atr=0.2, win_prob=0.9, payoff=3.0, open_exposure=cap)
    assert full.qty == 0.0 and full.binding_constraint == "max_total_exposure_pct"


@pytest.mark.parametrize("profile", PROFILES)
def test_size_factor_is_applied_and_clamped(profile: str) -> None:
    policy = POLICIES[profile]
    args = {"equity": 10_000.0, "price": 100.0, "atr": 0.2, "win_prob": 0.55, "payoff": 1.5}
    full = size_position(policy, **args)
    half = size_position(policy, **args, size_factor=0.5)
    assert math.isclose(half.qty, full.qty * 0.5, rel_tol=1e-12)
    assert half.binding_constraint == full.binding_constraint and half.size_factor == 0.5
    assert size_position(policy, **args, size_factor=3.0).qty == full.qty
    zero = size_position(policy, **args, size_factor=0.0)
    assert zero.qty == 0.0 and zero.binding_constraint == "size_factor"
    assert size_position(policy, **args, size_factor=-1.0).qty == 0.0


# --- zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_zone_boundaries_belong_to_the_higher_zone(profile: str) -> None:
    zones = POLICIES[profile].position_sizing.zones
    names = ("Z1", "Z2", "Z3", "Z4", "Z5")
    assert zone_for(0.0, zones) == "Z1"
    for i, boundary in enumerate(zones.boundaries_atr_pct):
        assert zone_for(boundary, zones) == names[i + 1]
        assert zone_for(math.nextafter(boundary, 0.0), zones) == names[i]
    assert zone_for(math.inf, zones) == "Z5"
    assert zone_for(math.nan, zones) == "Z5"


@pytest.mark.parametrize(("atr_pct", "zone"), [(0.1, "Z1"), (0.3, "Z2"), (0.7, "Z3"), (1.0, "Z4"), (1.5, "Z4"),
                                               (2.0, "Z5"), (10.0, "Z5")])
def test_pets_blocks_z4_and_z5(atr_pct: float, zone: str) -> None:
    policy = POLICIES["pets"]
    d = size_position(policy, equity=10_000, price=100, atr=atr_pct, win_prob=0.6, payoff=2.0)
    assert d.zone == zone
    if zone in ("Z4", "Z5"):
        assert d.qty == 0.0 and d.binding_constraint == "zone_blocked" and zone in d.reason
    else:
        multiplier = policy.position_sizing.zones.size_multipliers[d.zone]
        assert d.qty > 0.0 and d.zone_multiplier == multiplier


def test_pets_zone_multiplier_scales_size() -> None:
    policy = POLICIES["pets"]
    z1 = size_position(policy, equity=10_000, price=100, atr=0.1, win_prob=0.55, payoff=1.5)
    z3 = size_position(policy, equity=10_000, price=100, atr=0.7, win_prob=0.55, payoff=1.5)
    assert (z1.zone, z3.zone) == ("Z1", "Z3")
    assert math.isclose(z3.notional, z1.notional * policy.position_sizing.zones.size_multipliers["Z3"],
                        rel_tol=1e-9)


def test_pets_max_fifteen_percent_per_position() -> None:
    policy = POLICIES["pets"]
    assert policy.position_sizing.max_position_pct == 0.15
    d = size_position(policy, equity=10_000, price=100, atr=0.1, win_prob=0.95, payoff=5.0)
    assert d.binding_constraint == "max_position_pct"
    assert d.notional <= 1_500.0 and math.isclose(d.notional, 1_500.0, rel_tol=1e-9)


def test_futures_zones_are_reported_but_do_not_scale() -> None:
    policy = POLICIES["futures"]
    assert not policy.position_sizing.zones.enabled
    d = size_position(policy, equity=10_000, price=100, atr=3.0, win_prob=0.55, payoff=1.5)
    assert d.zone == "Z5" and d.zone_multiplier == 1.0 and d.qty > 0.0


@pytest.mark.parametrize("profile", PROFILES)
def test_blocked_size_reports_no_loss_at_stop(profile: str) -> None:
    d = _size(POLICIES[profile], 0.0, 100.0, 0.01, 0.6, 2.0)
    assert d.blocked and d.binding_constraint == "invalid_input"
    assert d.loss_at_stop == 0.0 and d.notional == 0.0


def test_open_exposure_defaults_to_nothing_open() -> None:
    # total exposure binding (its cap below the position cap): nothing open means the whole cap is room
    policy = _with_sizing(POLICIES["futures"], max_total_exposure_pct=0.01)
    d = size_position(policy, equity=10_000.0, price=100.0, atr=1.0, win_prob=0.9, payoff=3.0)
    assert d.binding_constraint == "max_total_exposure_pct"
    assert d.notional == pytest.approx(0.01 * 10_000.0, rel=1e-9)


@pytest.mark.parametrize("profile", PROFILES)
def test_zone_missing_from_the_multipliers_is_not_scaled(profile: str) -> None:
    policy = POLICIES[profile]
    zones = policy.position_sizing.zones.model_copy(
        update={"enabled": True, "size_multipliers": {"Z1": 0.5}, "blocked": ()})
    policy = _with_sizing(policy, zones=zones)
    d = size_position(policy, equity=10_000.0, price=100.0, atr=0.75, win_prob=0.9, payoff=3.0)
    assert d.zone == "Z3" and d.zone_multiplier == 1.0 and d.qty > 0.0


def test_equal_caps_name_the_position_cap() -> None:
    # the first cap that binds is the one reported: a tie does not move the blame to total exposure
    futures = POLICIES["futures"]
    policy = _with_sizing(futures, max_total_exposure_pct=futures.position_sizing.max_position_pct)
    d = size_position(policy, equity=10_000.0, price=100.0, atr=0.1, win_prob=0.9, payoff=3.0)
    assert d.binding_constraint == "max_position_pct"


@pytest.mark.parametrize("profile", PROFILES)
def test_a_refused_size_still_reports_the_market_zone(profile: str) -> None:
    # refused for another input (no equity): the zone is still the market's, from ATR / price
    policy = POLICIES[profile]
    d = size_position(policy, equity=0.0, price=100.0, atr=0.75, win_prob=0.6, payoff=2.0)
    assert d.binding_constraint == "invalid_input" and d.zone == zone_for(0.75, policy.position_sizing.zones)
    assert d.zone != zone_for(75.0 * 100.0, policy.position_sizing.zones)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_size_without_an_atr_reports_the_most_extreme_zone(profile: str) -> None:
    d = size_position(POLICIES[profile], equity=10_000.0, price=100.0, atr=None, win_prob=0.6, payoff=2.0)
    assert d.blocked and d.zone == "Z5"


@pytest.mark.parametrize("profile", PROFILES)
def test_a_size_reports_the_zone_of_its_atr_at_and_just_under_each_boundary(profile: str) -> None:
    """The zone comes from ATR as a percentage of price: 0.5 % of price is Z3, 0.4975 % still Z2."""
    zones = POLICIES[profile].position_sizing.zones
    names = ("Z1", "Z2", "Z3", "Z4", "Z5")
    price = 100.0
    for i, boundary in enumerate(zones.boundaries_atr_pct):
        at = size_position(POLICIES[profile], equity=10_000.0, price=price, atr=boundary, win_prob=0.6, payoff=2.0)
        under = size_position(POLICIES[profile], equity=10_000.0, price=price, atr=boundary * 0.995,
                              win_prob=0.6, payoff=2.0)
        assert (at.zone, under.zone) == (names[i + 1], names[i]), boundary


@pytest.mark.parametrize(("equity", "price", "factor"), [
    (1e300, 1e-10, 1.0),  # the quantity overflows to infinity
    (10_000.0, 1e6, 5e-324),  # a vanishing size factor: the quantity underflows to 0
])
def test_a_quantity_that_cannot_be_represented_is_refused_as_invalid_input(equity: float, price: float,
                                                                         factor: float) -> None:
    d = size_position(POLICIES["futures"], equity=equity, price=price, atr=price * 0.01, win_prob=0.6, payoff=2.0,
                      size_factor=factor)
    assert (d.qty, d.notional, d.binding_constraint) == (0.0, 0.0, "invalid_input")
    assert d.reason.startswith("quantity not representable")
