"""Forward curve across delivery months from listed futures prices ($/GPU-hr)."""

from __future__ import annotations

import datetime
import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import curve
from pricing.curve import (
    CurveError,
    EmptyCurveError,
    ForwardCurve,
    LengthMismatchError,
    MonthsNotIncreasingError,
    NonPositivePriceError,
    NotMonthStartError,
)
from pricing.depreciation import DepreciationModel

H100 = DepreciationModel(
    release_date=datetime.date(2022, 9, 1),
    price_at_release=8.0,
    price_floor=1.6,
    decay_per_year=0.9,
    launch_dates=(datetime.date(2024, 3, 1), datetime.date(2025, 3, 1), datetime.date(2027, 3, 1)),
    step_fractions=(0.25, 0.2, 0.2),
)
# Quarterly H100 futures listed in March 2026, falling with depreciation.
LISTED_MONTHS = np.array(["2026-04", "2026-07", "2026-10", "2027-01"], dtype="datetime64[M]")
LISTED_PRICES = [2.40, 2.25, 2.20, 2.05]

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)

# Up to twelve listed months among five years, prices from a $0.50 spot to a $12 hyperscaler.
listings = st.lists(st.integers(0, 59), min_size=1, max_size=12, unique=True).flatmap(
    lambda offsets: st.tuples(
        st.just(sorted(offsets)),
        st.lists(st.floats(0.5, 12.0), min_size=len(offsets), max_size=len(offsets)),
    )
)


def months_from(offsets: list[int]) -> np.ndarray:
    return np.datetime64("2026-01", "M") + np.array(offsets, dtype=np.int64)


def every_month(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    return np.arange(first, last + 1, dtype="datetime64[M]")


# Listed and interpolated months


def test_listed_months_price_exactly_at_their_futures_price() -> None:
    # Given the quarterly listing, when priced at each listed month (as dates)
    forward = ForwardCurve.build(LISTED_MONTHS.astype("datetime64[D]"), LISTED_PRICES, H100)
    prices = forward.prices([month.item() for month in LISTED_MONTHS.astype("datetime64[D]")])
    # then each is its listed price exactly
    assert prices.tolist() == LISTED_PRICES


@PROPERTY_SETTINGS
@given(listings)
def test_curve_passes_through_every_listed_price(listing: tuple[list[int], list[float]]) -> None:
    # Given any listing, when priced at its months
    offsets, prices = listing
    forward = ForwardCurve.build(months_from(offsets), prices)
    # then the curve returns exactly the listed prices
    assert forward.prices(months_from(offsets)).tolist() == prices


@PROPERTY_SETTINGS
@given(listings)
def test_curve_never_overshoots_between_listed_months(
    listing: tuple[list[int], list[float]],
) -> None:
    # Given any listing, when priced at every month between consecutive listed months
    offsets, prices = listing
    forward = ForwardCurve.build(months_from(offsets), prices)
    for index in range(len(offsets) - 1):
        between = every_month(*months_from(offsets[index : index + 2]))
        values = forward.prices(between)
        # then each stays within the two listed prices and moves one way only
        low, high = sorted(prices[index : index + 2])
        assert np.all(values >= low - 1e-12)
        assert np.all(values <= high + 1e-12)
        steps = np.diff(values)
        assert np.all(steps <= 1e-12) or np.all(steps >= -1e-12)


@PROPERTY_SETTINGS
@given(listings)
def test_curve_is_monotone_where_listed_prices_are(listing: tuple[list[int], list[float]]) -> None:
    # Given a listing whose prices fall month after month
    offsets, prices = listing
    falling = sorted(prices, reverse=True)
    forward = ForwardCurve.build(months_from(offsets), falling)
    # when priced at every month from the first listed month to the last
    values = forward.prices(every_month(*months_from([offsets[0], offsets[-1]])))
    # then the curve never rises
    assert np.all(np.diff(values) <= 1e-12)


def test_interpolation_is_smooth_between_quarters() -> None:
    # Given the quarterly listing, when priced in May and June 2026
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES)
    may, june = forward.prices(np.array(["2026-05", "2026-06"], dtype="datetime64[M]"))
    # then both lie strictly between April's and July's prices, falling
    assert 2.40 > may > june > 2.25


def test_any_day_of_a_month_prices_that_month() -> None:
    # Given the quarterly listing
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES, H100)
    # when priced on the 1st and the 17th of May 2026, and on 31 December 2027
    # then each day gives its month's price
    assert forward.price(datetime.date(2026, 5, 17)) == forward.price(datetime.date(2026, 5, 1))
    assert forward.price(np.datetime64("2027-12-31")) == forward.price(np.datetime64("2027-12"))


def test_prices_keep_the_shape_of_their_input() -> None:
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES, H100)
    grid = every_month(np.datetime64("2026-01"), np.datetime64("2027-12")).reshape(4, 6)
    assert forward.prices(grid).shape == (4, 6)
    assert forward.prices(np.datetime64("2026-05")).shape == ()


# Before the first and after the last listed month


def test_months_before_the_first_listed_month_take_its_price() -> None:
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES, H100)
    before = forward.prices(np.array(["2025-01", "2026-03"], dtype="datetime64[M]"))
    assert before.tolist() == [2.40, 2.40]


def test_months_after_the_last_listed_month_are_flat_without_a_model() -> None:
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES)
    after = forward.prices(every_month(np.datetime64("2027-01"), np.datetime64("2030-12")))
    assert np.all(after == 2.05)


def test_months_after_the_last_listed_month_follow_the_model_shape() -> None:
    # Given the listing and the H100 depreciation model, with a launch in March 2027
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES, H100)
    # when priced for the two years after the last listed month (January 2027)
    months = every_month(np.datetime64("2027-01"), np.datetime64("2029-01"))
    values = forward.prices(months)
    # then the curve is the model's monthly prices scaled to meet $2.05 in January 2027
    model_prices = H100.monthly_prices(datetime.date(2027, 1, 1), months.size)
    assert values == pytest.approx(2.05 * model_prices / model_prices[0], rel=1e-12)
    # and it is continuous at the last listed month and falls, stepping down in March 2027
    assert values[0] == 2.05
    assert np.all(np.diff(values) < 0)
    steps = -np.diff(values)
    assert int(np.argmax(steps)) == 1


def test_extrapolation_continues_from_a_single_listed_month() -> None:
    # Given one listed month, when priced before, at and after it
    forward = ForwardCurve.build([datetime.date(2026, 6, 1)], [2.35], H100)
    before, at, after = forward.prices(np.array(["2026-01", "2026-06", "2026-07"], "datetime64[M]"))
    # then flat before, exact at, and the model's ratio after
    ratio = H100.monthly_price(datetime.date(2026, 7, 1)) / H100.monthly_price(
        datetime.date(2026, 6, 1)
    )
    assert (before, at) == (2.35, 2.35)
    assert after == pytest.approx(2.35 * ratio, rel=1e-12)


def test_extrapolation_refuses_months_beyond_the_model_horizon() -> None:
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES, H100)
    with pytest.raises(ValueError, match="out of range"):
        forward.price(datetime.date(2200, 1, 1))


# Validation


@pytest.mark.parametrize(
    ("months", "prices", "error"),
    [
        ([], [], EmptyCurveError),
        (["2026-04-01", "2026-07-01"], [2.4], LengthMismatchError),
        (["2026-07-01", "2026-04-01"], [2.4, 2.3], MonthsNotIncreasingError),
        (["2026-04-01", "2026-04-01"], [2.4, 2.3], MonthsNotIncreasingError),
        (["2026-04-01", "2026-07-15"], [2.4, 2.3], NotMonthStartError),
        (["2026-04-01", "2026-07-01"], [2.4, 0.0], NonPositivePriceError),
        (["2026-04-01", "2026-07-01"], [2.4, -1.0], NonPositivePriceError),
        (["2026-04-01", "2026-07-01"], [2.4, float("nan")], NonPositivePriceError),
    ],
)
def test_build_refuses_malformed_listings(
    months: list[str], prices: list[float], error: type[CurveError]
) -> None:
    with pytest.raises(error):
        ForwardCurve.build(np.array(months, dtype="datetime64[D]"), prices)


def test_curve_errors_are_value_errors() -> None:
    assert issubclass(CurveError, ValueError)


def test_listed_arrays_are_read_only() -> None:
    forward = ForwardCurve.build(LISTED_MONTHS, LISTED_PRICES)
    with pytest.raises(ValueError, match="read-only"):
        forward.listed_prices[0] = 9.0
    assert forward.first_month == np.datetime64("2026-04")
    assert forward.last_month == np.datetime64("2027-01")


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(curve)
    assert results.attempted > 0
    assert results.failed == 0
