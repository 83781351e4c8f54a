"""Hedge recommendations: costs with and without hedges, and the minimum-variance ratio."""

import math
from dataclasses import replace

import numpy as np
import pytest

from pricing import black76
from pricing.hedge import (
    VOLATILITY_MAX,
    HedgeInputError,
    ListedOptions,
    PlannedNeed,
    minimum_variance_hedge_ratio,
    recommend,
    simulate_prices,
)

# 64 H100s for three months from next month, on a gently falling curve (MARKET.md prices).
NEED = PlannedNeed(
    gpus=64,
    hours=(744, 720, 744),
    forwards=(2.45, 2.40, 2.36),
    years_to_delivery=(1.5 / 12, 2.5 / 12, 3.5 / 12),
)
FIXED_COST = 64 * (744 * 2.45 + 720 * 2.40 + 744 * 2.36)


def test_the_simulation_is_seeded_and_centred_on_the_forwards():
    first = simulate_prices(NEED, sigma=0.6, paths=50_000, seed=7)
    again = simulate_prices(NEED, sigma=0.6, paths=50_000, seed=7)

    assert np.array_equal(first, again)
    # The forward is the expected price: within 4 standard errors of the sample mean.
    standard_error = first.std(axis=0) / np.sqrt(first.shape[0])
    assert np.all(np.abs(first.mean(axis=0) - NEED.forwards) < 4 * standard_error)


def test_a_full_futures_hedge_fixes_the_cost():
    result = recommend(NEED, sigma=0.6)

    futures = result.costs["futures"]
    assert futures.expected == pytest.approx(FIXED_COST)
    assert futures.worst_case == pytest.approx(FIXED_COST)
    assert result.futures_per_month == (64, 64, 64)


def test_options_cut_the_worst_case_and_the_collar_bounds_it():
    result = recommend(NEED, sigma=0.6)
    none, cap, collar = (result.costs[name] for name in ("none", "cap", "collar"))

    # Unhedged the expected cost is the forward cost (Monte Carlo error aside)...
    assert none.expected == pytest.approx(FIXED_COST, rel=0.01)
    # ...but its worst case is far above; a cap and a collar bring it down.
    assert none.worst_case > FIXED_COST * 1.2
    assert cap.worst_case < none.worst_case
    assert collar.worst_case <= cap.worst_case
    # The collar never costs more than the cap strikes plus the net premium.
    volume = 64 * np.array(NEED.hours)
    ceiling = float(np.array(result.cap_strikes) @ volume) + collar.premium
    assert collar.worst_case <= ceiling + 1e-6
    assert cap.premium > collar.premium > -cap.premium


def test_the_hedge_ratio_scales_the_strip():
    result = recommend(NEED, sigma=0.6, hedge_ratio=0.5)

    assert result.futures_per_month == (32, 32, 32)
    assert result.costs["futures"].worst_case < result.costs["none"].worst_case


def test_futures_given_per_month_fix_those_months_and_leave_a_month_without_to_its_price():
    # given the strip buys whole lots of 70 contracts (over the 64 GPUs) of the first and last
    # month, and none of the second (its future cannot be bought)
    result = recommend(NEED, sigma=0.6, futures_per_month=(70, 0, 70))
    prices = simulate_prices(NEED, sigma=0.6)

    # then the first and last months cost their forwards for 70 GPUs, less the 6 GPUs over the
    # need sold at the month's price; the second costs its price on each path
    volume = 64 * np.array(NEED.hours)
    fixed = np.array([70 / 64, 0.0, 70 / 64]) * np.array(NEED.forwards)
    costs = (fixed + np.array([-6 / 64, 1.0, -6 / 64]) * prices) @ volume
    assert result.futures_per_month == (70, 0, 70)
    assert result.costs["futures"].expected == pytest.approx(float(costs.mean()))
    assert result.costs["futures"].worst_case == pytest.approx(float(np.quantile(costs, 0.95)))
    assert result.costs["futures"].worst_case > FIXED_COST


@pytest.mark.parametrize("futures", [(64, 64), (64, -1, 64)])
def test_futures_per_month_need_a_count_of_0_or_more_per_month(futures):
    with pytest.raises(HedgeInputError, match="per month"):
        recommend(NEED, sigma=0.6, futures_per_month=futures)


def test_minimum_variance_ratio_recovers_a_known_relation():
    # given a need whose returns are 0.8 x the hedge's plus independent noise
    rng = np.random.default_rng(3)
    hedge_returns = rng.normal(0, 0.03, 20_000)
    need_returns = 0.8 * hedge_returns + rng.normal(0, 0.01, 20_000)
    hedge = 2.4 * np.exp(np.concatenate([[0.0], np.cumsum(hedge_returns)]))
    need = 2.6 * np.exp(np.concatenate([[0.0], np.cumsum(need_returns)]))

    ratio, correlation = minimum_variance_hedge_ratio(need, hedge)

    assert ratio == pytest.approx(0.8, abs=0.01)
    expected_correlation = 0.8 * 0.03 / np.sqrt((0.8 * 0.03) ** 2 + 0.01**2)
    assert correlation == pytest.approx(expected_correlation, abs=0.01)


@pytest.mark.parametrize(
    "changes",
    [
        {"gpus": 0},
        {"hours": (744, 720)},
        {"forwards": (2.45, -1.0, 2.36)},
        {"years_to_delivery": (0.3, 0.2, 0.4)},
    ],
)
def test_bad_needs_are_refused(changes):
    fields = {
        "gpus": NEED.gpus,
        "hours": NEED.hours,
        "forwards": NEED.forwards,
        "years_to_delivery": NEED.years_to_delivery,
    }
    with pytest.raises(HedgeInputError):
        PlannedNeed(**{**fields, **changes})


def test_bad_strategy_inputs_are_refused():
    with pytest.raises(HedgeInputError):
        recommend(NEED, sigma=0.6, cap_moneyness=0.9)
    with pytest.raises(HedgeInputError):
        minimum_variance_hedge_ratio([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(HedgeInputError):
        minimum_variance_hedge_ratio([1.0, 2.0, float("nan"), 3.0], [1.0, 2.0, 2.5, 3.0])


# Listed options: strikes on the chain's grid, expiring before their month is delivered.
LISTED = ListedOptions(
    call_strikes=(2.75, 2.75, None),
    call_years_to_expiry=(0.5 / 12, 1.5 / 12, None),
    put_strikes=(2.25, 2.00, None),
    put_years_to_expiry=(0.5 / 12, 1.5 / 12, None),
)


def test_listed_options_are_valued_at_their_strike_and_expiry():
    result = recommend(NEED, sigma=0.6, rate=0.04, options=LISTED)

    assert result.cap_strikes == (2.75, 2.75, None)
    assert result.floor_strikes == (2.25, 2.00, None)
    for month in range(2):
        call = black76.price(
            NEED.forwards[month], 2.75, LISTED.call_years_to_expiry[month], 0.04, 0.6, True
        )
        put = black76.price(
            NEED.forwards[month],
            LISTED.put_strikes[month],
            LISTED.put_years_to_expiry[month],
            0.04,
            0.6,
            False,
        )
        assert result.call_values[month] == pytest.approx(call, rel=1e-12)
        assert result.put_values[month] == pytest.approx(put, rel=1e-12)
        volume = NEED.gpus * NEED.hours[month]
        assert result.call_premiums[month] == pytest.approx(call * volume, rel=1e-12)
    # The third month has no option: no value, no premium.
    assert (result.call_values[2], result.put_premiums[2]) == (None, None)
    premium = sum(value for value in result.call_premiums if value is not None)
    assert result.costs["cap"].premium == pytest.approx(premium)


def test_the_prices_at_delivery_do_not_depend_on_the_expiries():
    with_options = recommend(NEED, sigma=0.6, options=LISTED)
    without = recommend(NEED, sigma=0.6)

    assert with_options.costs["none"] == without.costs["none"]
    assert with_options.distribution.counts["none"] == without.distribution.counts["none"]


def test_a_month_without_options_is_left_unhedged():
    # given one month, with no call and no put listed
    need = PlannedNeed(gpus=8, hours=(744,), forwards=(2.4,), years_to_delivery=(0.2,))
    nothing = ListedOptions((None,), (None,), (None,), (None,))

    result = recommend(need, sigma=0.6, options=nothing)

    # then the cap and the collar cost what leaving it unhedged costs, with no premium
    none = result.costs["none"]
    for name in ("cap", "collar"):
        assert (result.costs[name].expected, result.costs[name].worst_case) == (
            none.expected,
            none.worst_case,
        )
        assert result.costs[name].premium == 0.0


def test_an_option_expiring_before_delivery_caps_less_than_one_at_delivery():
    # given one month's call at 2.64, expiring at delivery or a month and a half before it
    need = PlannedNeed(gpus=8, hours=(744,), forwards=(2.4,), years_to_delivery=(0.25,))

    def cap(years_to_expiry: float):
        listed = ListedOptions((2.64,), (years_to_expiry,), (None,), (None,))
        return recommend(need, sigma=0.6, options=listed, paths=50_000)

    at_delivery, before = cap(0.25), cap(0.125)

    # then at delivery the cost never exceeds the strike plus the premium...
    ceiling = 8 * 744 * 2.64 + at_delivery.costs["cap"].premium
    assert at_delivery.costs["cap"].worst_case <= ceiling + 1e-6
    # ...but a call expired out of the money leaves the rest of the way up unhedged
    assert before.costs["cap"].worst_case > ceiling
    # and, the forward being a martingale, the expected cost is the forward's (rate 0)
    assert before.costs["cap"].expected == pytest.approx(8 * 744 * 2.4, rel=0.01)


def test_each_option_is_valued_at_its_own_volatility_and_exercised_in_the_simulated_market():
    # given the same listed options, the first month's call and the second's put at volatilities
    # of their own, the others at the simulation's
    own = replace(LISTED, call_volatilities=(0.45, None, None), put_volatilities=(None, 0.9, None))

    result = recommend(NEED, sigma=0.6, rate=0.04, options=own)
    simulated = recommend(NEED, sigma=0.6, rate=0.04, options=LISTED)

    # then each option is worth its Black-76 value at its own volatility
    forwards, calls, puts = NEED.forwards, LISTED.call_years_to_expiry, LISTED.put_years_to_expiry
    call = black76.price(forwards[0], 2.75, calls[0], 0.04, 0.45, True)
    put = black76.price(forwards[1], 2.00, puts[1], 0.04, 0.9, False)
    assert result.call_values[0] == pytest.approx(call, rel=1e-12)
    assert result.put_values[1] == pytest.approx(put, rel=1e-12)
    assert result.call_values[0] < simulated.call_values[0]
    assert result.put_values[1] > simulated.put_values[1]
    # and the others at the simulation's
    assert result.call_values[1] == simulated.call_values[1]
    assert result.put_values[0] == simulated.put_values[0]
    # while the prices, and so which options are exercised, are the simulation's: the cap's
    # costs differ from the simulation's only by the premiums carried to delivery
    assert result.costs["none"] == simulated.costs["none"]
    carry = math.exp(0.04 * NEED.years_to_delivery[0])
    volume = NEED.gpus * NEED.hours[0]
    difference = (result.call_values[0] - simulated.call_values[0]) * volume * carry
    assert result.costs["cap"].expected - simulated.costs["cap"].expected == pytest.approx(
        difference, rel=1e-9
    )


@pytest.mark.parametrize(
    "volatilities",
    [
        {"call_volatilities": (0.5, 0.5)},  # Too few months.
        {"call_volatilities": (0.5, 0.5, 0.5)},  # The third month has no call.
        {"put_volatilities": (-0.1, None, None)},
        {"put_volatilities": (math.nan, None, None)},
        {"call_volatilities": (math.inf, None, None)},
    ],
)
def test_bad_option_volatilities_are_refused(volatilities):
    with pytest.raises(HedgeInputError):
        recommend(NEED, sigma=0.6, options=replace(LISTED, **volatilities))


@pytest.mark.parametrize(
    "listed",
    [
        ListedOptions((2.75,) * 3, (0.1, 0.2, 0.4), (None,) * 3, (None,) * 3),  # After delivery.
        ListedOptions((2.75,) * 3, (0.1, None, 0.2), (None,) * 3, (None,) * 3),  # No expiry.
        ListedOptions((2.75,) * 2, (0.1, 0.2), (None,) * 3, (None,) * 3),  # Too few months.
        ListedOptions((-1.0, None, None), (0.1, None, None), (None,) * 3, (None,) * 3),
    ],
)
def test_bad_listed_options_are_refused(listed):
    with pytest.raises(HedgeInputError):
        recommend(NEED, sigma=0.6, options=listed)


# One volatility per month: the market may expect one month to move more than another.
MONTH_SIGMAS = np.array([0.3, 0.9, 0.5])


def test_each_month_is_simulated_at_its_own_volatility():
    # when the need's months are simulated at 30%, 90% and 50%
    prices = simulate_prices(NEED, sigma=MONTH_SIGMAS, paths=50_000, seed=7)

    # then each month's log price spreads as its own volatility says: sigma x sqrt(T)
    times = np.asarray(NEED.years_to_delivery)
    spread = np.log(prices).std(axis=0, ddof=1)
    assert spread == pytest.approx(MONTH_SIGMAS * np.sqrt(times), rel=0.02)
    # so the 90% month's prices are spread wider than the others' around their forwards
    relative = (prices / np.asarray(NEED.forwards)).std(axis=0)
    assert relative[1] > relative[2] > relative[0]
    # each month still centred on its forward (within 4 standard errors)
    standard_error = prices.std(axis=0) / np.sqrt(prices.shape[0])
    assert np.all(np.abs(prices.mean(axis=0) - NEED.forwards) < 4 * standard_error)
    # and the same seed gives the same prices, another seed others
    assert np.array_equal(prices, simulate_prices(NEED, sigma=MONTH_SIGMAS, paths=50_000, seed=7))
    assert not np.array_equal(
        prices, simulate_prices(NEED, sigma=MONTH_SIGMAS, paths=50_000, seed=8)
    )


def test_one_volatility_is_every_months():
    same = np.full(3, 0.6)

    assert np.array_equal(simulate_prices(NEED, sigma=0.6), simulate_prices(NEED, sigma=same))
    assert recommend(NEED, sigma=same, options=LISTED) == recommend(NEED, sigma=0.6, options=LISTED)


def test_a_month_at_a_higher_volatility_widens_the_costs_and_values_its_options():
    # given the need at 60% every month, then with its second month at 90%
    flat = recommend(NEED, sigma=0.6, rate=0.04, options=LISTED, paths=50_000)
    wider = recommend(
        NEED, sigma=np.array([0.6, 0.9, 0.6]), rate=0.04, options=LISTED, paths=50_000
    )

    # then leaving the need unhedged has a higher worst case, the same expected cost (within
    # the simulation's error)
    assert wider.costs["none"].worst_case > flat.costs["none"].worst_case
    assert wider.costs["none"].expected == pytest.approx(flat.costs["none"].expected, rel=0.01)
    # and the second month's options, with no volatility of their own, are valued at its 90%
    forward, strike, years = NEED.forwards[1], 2.75, LISTED.call_years_to_expiry[1]
    assert wider.call_values[1] == pytest.approx(
        black76.price(forward, strike, years, 0.04, 0.9, True), rel=1e-12
    )
    assert wider.call_values[0] == flat.call_values[0]
    # and the option exercised in the simulated market at 90%: the cap's expected cost is the
    # unhedged one plus the premium carried, less the call's simulated payoff, which at 90%
    # is worth (to the simulation's error) what its higher value says
    carry = np.exp(0.04 * np.asarray(NEED.years_to_delivery))
    volume = NEED.gpus * np.asarray(NEED.hours, dtype=np.float64)
    premium = (np.array([v or 0.0 for v in wider.call_values]) * carry) @ volume
    payoff = wider.costs["none"].expected + premium - wider.costs["cap"].expected
    assert payoff == pytest.approx(premium, rel=0.03)


@pytest.mark.parametrize(
    "sigma",
    [
        np.array([0.6, 0.6]),  # Too few months.
        np.array([0.6, -0.1, 0.6]),
        np.array([0.6, math.nan, 0.6]),
        np.array([0.6, math.inf, 0.6]),
        np.array([0.6, VOLATILITY_MAX + 0.01, 0.6]),  # The simulation's bound.
        -0.1,
        VOLATILITY_MAX * 2,
    ],
)
def test_bad_month_volatilities_are_refused(sigma):
    with pytest.raises(HedgeInputError):
        recommend(NEED, sigma=sigma)
    with pytest.raises(HedgeInputError):
        simulate_prices(NEED, sigma=sigma)
