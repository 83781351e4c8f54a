"""A seller's hedge of planned capacity: the strip sold, the put floor and the collar (puts
bought, calls sold), with their revenues; the same simulation and legs as a buyer's."""

import numpy as np
import pytest

from pricing import black76
from pricing.hedge import STRATEGIES, ListedOptions, Side, recommend, simulate_prices
from tests.pricing.test_hedge import FIXED_COST, NEED

# The capacity's GPU-hours each month, and what selling them at the forwards earns.
VOLUME = 64 * np.array(NEED.hours, dtype=np.float64)
FIXED_REVENUE = FIXED_COST


def test_the_sold_strip_fixes_the_revenue_at_the_forwards():
    result = recommend(NEED, sigma=0.6, side=Side.SELL)

    futures = result.revenues["futures"]
    assert result.futures_per_month == (64, 64, 64)
    assert futures.expected == pytest.approx(FIXED_REVENUE)
    assert futures.worst_case == pytest.approx(FIXED_REVENUE)
    assert futures.premium == 0.0


def test_the_worst_case_revenue_is_the_low_tail_of_the_same_simulation():
    # given the same capacity hedged by a seller and needed by a buyer
    sale = recommend(NEED, sigma=0.6, side=Side.SELL)
    purchase = recommend(NEED, sigma=0.6)
    revenues = simulate_prices(NEED, sigma=0.6) @ VOLUME

    # then left unhedged both are the month's prices; the seller's worst case is their 5th
    # percentile, below the expectation, the buyer's their 95th, above it
    none = sale.revenues["none"]
    assert none.expected == pytest.approx(purchase.costs["none"].expected)
    assert none.worst_case == pytest.approx(float(np.quantile(revenues, 0.05)))
    assert none.worst_case < FIXED_REVENUE * 0.8 < purchase.costs["none"].worst_case
    # and the strategies are named for the seller, in the distribution too
    assert tuple(sale.revenues) == STRATEGIES[Side.SELL] == ("none", "futures", "floor", "collar")
    assert tuple(sale.distribution.counts) == STRATEGIES[Side.SELL]
    for counts in sale.distribution.counts.values():
        assert sum(counts) == revenues.size


def test_a_floor_never_earns_less_than_its_strikes_less_its_premium():
    # given puts struck 10% under each forward, expiring at delivery, at a 0 rate (no carry)
    result = recommend(NEED, sigma=0.6, side=Side.SELL)
    floor = result.revenues["floor"]

    # then their premium is the puts' Black-76 value for the capacity's hours...
    strikes = np.array(result.floor_strikes, dtype=np.float64)
    assert strikes == pytest.approx(0.9 * np.array(NEED.forwards))
    values = black76.price(
        np.array(NEED.forwards), strikes, np.array(NEED.years_to_delivery), 0.0, 0.6, False
    )
    assert floor.premium == pytest.approx(float(values @ VOLUME))
    # ...and every month sells at its strike at least: the worst case is no lower than the
    # strikes' revenue less that premium, far above the unhedged one
    bound = float(strikes @ VOLUME) - floor.premium
    assert floor.worst_case >= bound - 1e-6
    assert floor.worst_case > result.revenues["none"].worst_case
    # while the puts, fairly priced, leave the expected revenue as it was
    assert floor.expected == pytest.approx(result.revenues["none"].expected, rel=0.01)
    assert result.floor_strikes == pytest.approx((2.205, 2.16, 2.124))


def test_a_collar_keeps_the_floor_and_caps_the_upside():
    result = recommend(NEED, sigma=0.6, side=Side.SELL)
    floor, collar, none = (result.revenues[name] for name in ("floor", "collar", "none"))

    # the calls sold pay for the puts (here more than all of them: a net premium received),
    # the same floor under it
    calls = np.array(result.cap_strikes, dtype=np.float64)
    puts = np.array(result.floor_strikes, dtype=np.float64)
    assert collar.premium < 0 < floor.premium
    assert collar.worst_case >= float(puts @ VOLUME) - collar.premium - 1e-6
    # but no path earns more than the calls' strikes plus the premium the calls brought in,
    # while unhedged (and with the floor) many do
    ceiling = float(calls @ VOLUME) - collar.premium
    edges = np.array(result.distribution.edges)
    above = edges[:-1] > ceiling  # Bins wholly above the ceiling.
    assert above.any()
    assert sum(np.array(result.distribution.counts["collar"])[above]) == 0
    assert sum(np.array(result.distribution.counts["none"])[above]) > 0
    assert sum(np.array(result.distribution.counts["floor"])[above]) > 0
    assert collar.expected == pytest.approx(none.expected, rel=0.01)
    assert none.worst_case < collar.worst_case


def test_a_sellers_premiums_mirror_a_buyers_on_the_same_options():
    sale = recommend(NEED, sigma=0.6, rate=0.04, side=Side.SELL)
    purchase = recommend(NEED, sigma=0.6, rate=0.04)

    # the seller's floor pays the puts the buyer's collar sells, and its collar nets the
    # calls the buyer's cap pays for: the opposite of the buyer's collar
    assert sale.put_premiums == purchase.put_premiums
    assert sale.revenues["floor"].premium == pytest.approx(sum(sale.put_premiums))
    assert sale.revenues["collar"].premium == pytest.approx(-purchase.costs["collar"].premium)


def test_a_month_without_a_listed_put_is_left_to_its_price():
    # given listed options on the first two months only (the third has none)
    listed = ListedOptions(
        call_strikes=(2.75, 2.75, None),
        call_years_to_expiry=(0.5 / 12, 1.5 / 12, None),
        put_strikes=(2.25, 2.00, None),
        put_years_to_expiry=(0.5 / 12, 1.5 / 12, None),
    )
    result = recommend(NEED, sigma=0.6, options=listed, side=Side.SELL)

    # then the floor pays for two months' puts only, and the third earns its price: a worse
    # worst case than puts on all three months
    assert result.put_premiums[2] is None
    assert result.revenues["floor"].premium == pytest.approx(sum(result.put_premiums[:2]))
    every_month = recommend(NEED, sigma=0.6, side=Side.SELL)
    assert result.revenues["floor"].worst_case < every_month.revenues["floor"].worst_case


def test_a_sellers_revenues_are_not_a_buyers_costs():
    sale = recommend(NEED, sigma=0.6, side="sell")

    assert sale.side is Side.SELL
    with pytest.raises(AssertionError):
        sale.costs  # noqa: B018
    with pytest.raises(AssertionError):
        recommend(NEED, sigma=0.6).revenues  # noqa: B018
    with pytest.raises(ValueError):
        recommend(NEED, sigma=0.6, side="short")
