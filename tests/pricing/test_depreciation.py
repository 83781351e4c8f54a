"""Depreciation model of a SKU's rental price ($/GPU-hr) against age, and its fit."""

from __future__ import annotations

import datetime
import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import depreciation
from pricing.depreciation import (
    DAYS_PER_YEAR,
    MONTHS_MAX,
    STEP_FRACTION_ASSUMED,
    DepreciationModel,
    FitError,
    InitialGuess,
    fit,
)

RELEASE = datetime.date(2022, 9, 1)
H200_LAUNCH = datetime.date(2024, 3, 1)
B200_LAUNCH = datetime.date(2025, 3, 1)
# An H100-like SKU: $8/GPU-hr at release decaying towards a $1.60 floor, losing a quarter and
# then a fifth of its premium as H200 and B200 ship.
TRUTH = DepreciationModel(
    release_date=RELEASE,
    price_at_release=8.0,
    price_floor=1.6,
    decay_per_year=0.9,
    launch_dates=(H200_LAUNCH, B200_LAUNCH),
    step_fractions=(0.25, 0.2),
)
WEEKLY = np.arange("2022-10-01", "2026-03-01", 7, dtype="datetime64[D]")
FLAT_PRICE = 2.0
FLAT = DepreciationModel(RELEASE, FLAT_PRICE, FLAT_PRICE, 0.0)


def weeks_before(date: datetime.date) -> np.ndarray:
    """The weekly observation days before ``date``."""
    return WEEKLY[: np.searchsorted(WEEKLY, np.datetime64(date, "D"))]


def weeks_from(date: datetime.date) -> np.ndarray:
    """The weekly observation days on or after ``date``."""
    return WEEKLY[np.searchsorted(WEEKLY, np.datetime64(date, "D")) :]


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def reference_price(model: DepreciationModel, age_years: float) -> float:
    """The model's formula, one instant at a time, from its fields alone ($/GPU-hr)."""
    multiplier = 1.0
    for launch, step in zip(model.launch_dates, model.step_fractions, strict=True):
        if (launch - model.release_date).days / DAYS_PER_YEAR <= age_years:
            multiplier *= 1.0 - step
    premium = model.price_at_release - model.price_floor
    decay = math.exp(-model.decay_per_year * max(age_years, 0.0))
    return model.price_floor + premium * multiplier * decay


def reference_contract_value(
    model: DepreciationModel,
    start: datetime.date,
    end: datetime.date,
    gpus: int,
    as_of: datetime.date,
    discount_rate: float,
) -> float:
    """USD: the price at the middle of each remaining hour, discounted to ``as_of``, summed."""
    first = max(start, as_of)
    hours = max((end - first).days, 0) * 24
    first_hours = (first - model.release_date).days * 24
    valuation_years = (as_of - model.release_date).days / DAYS_PER_YEAR
    total = 0.0
    for hour in range(hours):
        age_years = (first_hours + hour + 0.5) / (24 * DAYS_PER_YEAR)
        discount = math.exp(-discount_rate * (age_years - valuation_years))
        total += reference_price(model, age_years) * discount
    return gpus * total


# Price


def test_price_is_the_release_price_at_and_before_release() -> None:
    # Given the H100-like model, when priced at and before its release
    prices = TRUTH.price([RELEASE, datetime.date(2022, 1, 1)])
    # then both are the release price
    assert prices.tolist() == [8.0, 8.0]


def test_price_decays_towards_the_floor() -> None:
    # Given the H100-like model, when priced twenty years after release
    price = float(TRUTH.price(datetime.date(2042, 9, 1)))
    # then it is within a cent of the floor and not below it
    assert 1.6 <= price < 1.61


def test_price_steps_down_on_each_launch_date() -> None:
    # Given the day before and the day of each launch
    for launch, step in zip(TRUTH.launch_dates, TRUTH.step_fractions, strict=True):
        day_before = launch - datetime.timedelta(days=1)
        # when priced
        before, on = TRUTH.price([day_before, launch]) - TRUTH.price_floor
        # then the premium above the floor loses the step fraction plus one day's decay
        one_day_decay = math.exp(-TRUTH.decay_per_year / DAYS_PER_YEAR)
        assert on == pytest.approx(before * (1.0 - step) * one_day_decay, rel=1e-12)
        assert on < 0.8 * before


def test_price_matches_the_reference_formula_and_keeps_the_shape_of_its_input() -> None:
    # Given a 2-D array of days, when priced
    days = WEEKLY[:12].reshape(3, 4)
    prices = TRUTH.price(days)
    # then each matches the formula evaluated by hand, in the input's shape
    assert prices.shape == (3, 4)
    for day, price in zip(days.ravel(), prices.ravel(), strict=True):
        age_years = (day.item() - RELEASE).days / DAYS_PER_YEAR
        assert price == pytest.approx(reference_price(TRUTH, age_years), rel=1e-12)


models = st.builds(
    lambda p0, floor_fraction, decay, steps, gaps: DepreciationModel(
        release_date=RELEASE,
        price_at_release=p0,
        price_floor=p0 * floor_fraction,
        decay_per_year=decay,
        launch_dates=tuple(
            RELEASE + datetime.timedelta(days=sum(gaps[: index + 1])) for index in range(len(gaps))
        ),
        step_fractions=tuple(steps[: len(gaps)]) + (0.1,) * (len(gaps) - len(steps)),
    ),
    st.floats(0.5, 20.0),
    st.floats(0.0, 1.0),
    st.floats(0.0, 5.0),
    st.lists(st.floats(0.0, 0.9), max_size=3),
    st.lists(st.integers(1, 700), max_size=3),
)


@PROPERTY_SETTINGS
@given(models, st.lists(st.integers(-100, 5000), min_size=1, max_size=30))
def test_price_stays_between_floor_and_release_price_and_never_rises(
    model: DepreciationModel, offsets: list[int]
) -> None:
    # Given any model and any days, when priced in date order
    days = [RELEASE + datetime.timedelta(days=offset) for offset in sorted(offsets)]
    prices = model.price(days)
    # then every price lies in [floor, p0] and the sequence never rises
    assert np.all(prices >= model.price_floor - 1e-12)
    assert np.all(prices <= model.price_at_release + 1e-12)
    assert np.all(np.diff(prices) <= 1e-12)


# Monthly prices


def test_monthly_prices_average_hourly_prices_including_a_mid_month_launch() -> None:
    # Given a launch in the middle of June 2024
    model = DepreciationModel(RELEASE, 8.0, 1.6, 0.9, (datetime.date(2024, 6, 15),), (0.3,))
    # when averaged over May to July 2024
    monthly = model.monthly_prices(datetime.date(2024, 5, 1), 3)
    # then each month is the mean of the prices at the middle of its hours
    month_starts = [datetime.date(2024, month, 1) for month in (5, 6, 7, 8)]
    for average, first, end in zip(monthly, month_starts, month_starts[1:], strict=False):
        hours = (end - first).days * 24
        total = reference_contract_value(model, first, end, 1, first, 0.0)
        assert average == pytest.approx(total / hours, rel=1e-9)
    assert monthly[0] > monthly[1] > monthly[2]


def test_monthly_prices_take_any_day_of_the_first_month() -> None:
    # Given the 20th of January and the 1st, when both start three months of prices
    from_twentieth = TRUTH.monthly_prices(datetime.date(2026, 1, 20), 3)
    from_first = TRUTH.monthly_prices(np.datetime64("2026-01"), 3)
    # then they are the same months, and `monthly_price` agrees with them
    assert from_twentieth.tolist() == from_first.tolist()
    assert TRUTH.monthly_price(datetime.date(2026, 2, 10)) == from_first[1]


@pytest.mark.parametrize("months", [-1, MONTHS_MAX + 1])
def test_monthly_prices_refuse_a_count_out_of_bounds(months: int) -> None:
    with pytest.raises(ValueError, match="months must be in"):
        TRUTH.monthly_prices(datetime.date(2026, 1, 1), months)


# Contract value


def test_contract_value_of_a_flat_price_is_price_times_gpu_hours() -> None:
    # Given a flat $2.00/GPU-hr, when 8 GPUs are reserved for the 30 days from 1 April 2026
    value = FLAT.contract_value(datetime.date(2026, 4, 1), datetime.date(2026, 5, 1), gpus=8)
    # then the value is 2.00 x 8 x 30 x 24 = 11,520 USD
    assert value == pytest.approx(11_520.0, rel=1e-12)


def test_contract_value_counts_only_the_hours_left_after_as_of() -> None:
    start, end = datetime.date(2026, 4, 1), datetime.date(2026, 5, 1)
    # Given the flat contract valued ten days in, before it starts, and after it ends
    ten_days_in = FLAT.contract_value(start, end, 8, as_of=datetime.date(2026, 4, 11))
    before_start = FLAT.contract_value(start, end, 8, as_of=datetime.date(2026, 1, 1))
    after_end = FLAT.contract_value(start, end, 8, as_of=datetime.date(2026, 5, 1))
    # then 20 days remain (2.00 x 8 x 20 x 24 = 7,680 USD), then all of it, then nothing
    assert ten_days_in == pytest.approx(7_680.0, rel=1e-12)
    assert before_start == pytest.approx(11_520.0, rel=1e-12)
    assert after_end == 0.0


def test_contract_value_discounts_continuously() -> None:
    # Given the flat contract for one year of 365 days at 5% a year
    start, end = datetime.date(2026, 1, 1), datetime.date(2027, 1, 1)
    value = FLAT.contract_value(start, end, 8, discount_rate=0.05)
    # then it is 2.00 x 8 x 8,766 hours/year x (1 - exp(-0.05 T)) / 0.05 with T = 365 / 365.25
    years = 365 / DAYS_PER_YEAR
    expected = FLAT_PRICE * 8 * 8_766 * (1 - math.exp(-0.05 * years)) / 0.05
    assert value == pytest.approx(expected, rel=1e-12)
    assert value < FLAT_PRICE * 8 * 365 * 24


@pytest.mark.parametrize(
    ("start", "end", "as_of", "discount_rate"),
    [
        (datetime.date(2024, 1, 1), datetime.date(2025, 6, 1), datetime.date(2024, 1, 1), 0.0),
        (datetime.date(2024, 1, 1), datetime.date(2025, 6, 1), datetime.date(2024, 5, 20), 0.04),
        (datetime.date(2022, 6, 1), datetime.date(2022, 12, 1), datetime.date(2022, 3, 1), 0.08),
        (datetime.date(2026, 1, 1), datetime.date(2026, 1, 2), datetime.date(2025, 1, 1), -0.01),
    ],
)
def test_contract_value_matches_an_hourly_sum(
    start: datetime.date, end: datetime.date, as_of: datetime.date, discount_rate: float
) -> None:
    # Given contracts across launches, before release and with discounting, when valued
    value = TRUTH.contract_value(start, end, 8, as_of=as_of, discount_rate=discount_rate)
    # then the closed form equals the sum of discounted hourly prices
    expected = reference_contract_value(TRUTH, start, end, 8, as_of, discount_rate)
    assert value == pytest.approx(expected, rel=1e-8)


@PROPERTY_SETTINGS
@given(models, st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 400))
def test_contract_value_falls_as_as_of_advances(
    model: DepreciationModel, first_offset: int, second_offset: int, length_days: int
) -> None:
    # Given a contract of at least one day
    start = datetime.date(2024, 1, 1)
    end = start + datetime.timedelta(days=length_days)
    earlier, later = sorted((first_offset, second_offset))
    # when valued on two days without discounting
    values = [
        model.contract_value(start, end, 4, as_of=start + datetime.timedelta(days=offset))
        for offset in (earlier, later)
    ]
    # then the later value is no larger, and strictly smaller when an hour of it has passed
    assert values[1] <= values[0] * (1 + 1e-12)
    if earlier < later and earlier < length_days:
        assert values[1] < values[0]


def test_contract_value_refuses_bad_input() -> None:
    start, end = datetime.date(2026, 4, 1), datetime.date(2026, 5, 1)
    with pytest.raises(ValueError, match="before start"):
        FLAT.contract_value(end, start, 8)
    with pytest.raises(ValueError, match="gpus"):
        FLAT.contract_value(start, end, -1)
    with pytest.raises(ValueError, match="discount_rate"):
        FLAT.contract_value(start, end, 8, discount_rate=math.nan)


# Model validation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"price_at_release": 0.0}, "price_at_release"),
        ({"price_floor": 9.0}, "price_floor"),
        ({"price_floor": -0.1}, "price_floor"),
        ({"decay_per_year": -1.0}, "decay_per_year"),
        ({"step_fractions": (0.25, 1.0)}, "step fractions"),
        ({"step_fractions": (0.25,)}, "launch dates need"),
        ({"launch_dates": (B200_LAUNCH, H200_LAUNCH)}, "increasing"),
        ({"launch_dates": (RELEASE, B200_LAUNCH)}, "after the release"),
    ],
)
def test_model_refuses_inconsistent_parameters(changes: dict[str, object], message: str) -> None:
    fields = {
        "release_date": RELEASE,
        "price_at_release": 8.0,
        "price_floor": 1.6,
        "decay_per_year": 0.9,
        "launch_dates": (H200_LAUNCH, B200_LAUNCH),
        "step_fractions": (0.25, 0.2),
    } | changes
    with pytest.raises(ValueError, match=message):
        DepreciationModel(**fields)  # type: ignore[arg-type]


# Fit


def test_fit_recovers_the_parameters_of_noise_free_data() -> None:
    # Given weekly prices generated by the model itself
    # when fitted
    model = fit(WEEKLY, TRUTH.price(WEEKLY), RELEASE, [H200_LAUNCH, B200_LAUNCH])
    # then every parameter comes back to 1e-6
    assert model.release_date == RELEASE
    assert model.launch_dates == (H200_LAUNCH, B200_LAUNCH)
    assert model.price_at_release == pytest.approx(8.0, rel=1e-6)
    assert model.price_floor == pytest.approx(1.6, rel=1e-6)
    assert model.decay_per_year == pytest.approx(0.9, rel=1e-6)
    assert model.step_fractions == pytest.approx((0.25, 0.2), abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_fit_recovers_the_parameters_from_noisy_data(seed: int) -> None:
    # Given weekly prices from the model with 2% log-normal noise
    rng = np.random.default_rng(seed)
    observed = TRUTH.price(WEEKLY) * np.exp(rng.normal(0.0, 0.02, WEEKLY.size))
    # when fitted
    model = fit(WEEKLY, observed, RELEASE, [H200_LAUNCH, B200_LAUNCH])
    # then the parameters come back within these tolerances. By the B200 launch the premium
    # above the floor is about $0.7, so its step moves the price by about 6%, three noise
    # standard deviations: that step is the loosest.
    assert model.price_at_release == pytest.approx(8.0, rel=0.03)
    assert model.price_floor == pytest.approx(1.6, abs=0.06)
    assert model.decay_per_year == pytest.approx(0.9, rel=0.05)
    assert model.step_fractions[0] == pytest.approx(0.25, abs=0.04)
    assert model.step_fractions[1] == pytest.approx(0.2, abs=0.08)


def test_fitted_model_steps_down_at_the_launch() -> None:
    # Given noisy observations, fitted
    rng = np.random.default_rng(7)
    observed = TRUTH.price(WEEKLY) * np.exp(rng.normal(0.0, 0.02, WEEKLY.size))
    model = fit(WEEKLY, observed, RELEASE, [H200_LAUNCH, B200_LAUNCH])
    # when priced on the day before the H200 launch and on the launch day
    before, on = model.price([H200_LAUNCH - datetime.timedelta(days=1), H200_LAUNCH])
    # then the price drops by far more than one day of decay: about $0.30 of $2.8
    assert before - on > 0.2


def test_fit_accepts_an_initial_guess() -> None:
    # Given noise-free data and a starting point near the truth
    initial = InitialGuess(
        price_at_release=7.0, price_floor=1.0, decay_per_year=0.5, step_fraction=0.3
    )
    # when fitted from it
    model = fit(WEEKLY, TRUTH.price(WEEKLY), RELEASE, [H200_LAUNCH, B200_LAUNCH], initial)
    # then it converges to the truth
    assert model.decay_per_year == pytest.approx(0.9, rel=1e-6)


def test_fit_gives_launches_after_the_data_the_mean_of_the_fitted_steps() -> None:
    # Given data up to February 2026 and a further launch announced for 2026-09
    launches = [H200_LAUNCH, B200_LAUNCH, datetime.date(2026, 9, 1)]
    # when fitted with and without an explicit step for that launch
    model = fit(WEEKLY, TRUTH.price(WEEKLY), RELEASE, launches)
    explicit = fit(WEEKLY, TRUTH.price(WEEKLY), RELEASE, launches, unobserved_step_fraction=0.4)
    # then the later launch takes the mean of the fitted steps, or the given one
    assert model.step_fractions[2] == pytest.approx(0.225, abs=1e-6)
    assert explicit.step_fractions[2] == 0.4
    assert explicit.step_fractions[:2] == pytest.approx((0.25, 0.2), abs=1e-6)


def test_fit_assumes_a_step_when_no_launch_was_observed() -> None:
    # Given data only before the H200 launch
    days = weeks_before(H200_LAUNCH)
    # when fitted
    model = fit(days, TRUTH.price(days), RELEASE, [H200_LAUNCH, B200_LAUNCH])
    # then both launches take the documented assumption
    assert model.step_fractions == (STEP_FRACTION_ASSUMED, STEP_FRACTION_ASSUMED)
    assert model.decay_per_year == pytest.approx(0.9, rel=1e-6)


def test_fit_refuses_too_few_points() -> None:
    # Given five weekly points after both launches: five parameters need six distinct days
    days = [*WEEKLY[:3].tolist(), datetime.date(2024, 6, 1), datetime.date(2025, 6, 1)]
    with pytest.raises(FitError, match="5 distinct observation days cannot fit 5 parameters"):
        fit(days, TRUTH.price(days), RELEASE, [H200_LAUNCH, B200_LAUNCH])


def test_fit_counts_distinct_days() -> None:
    # Given six points on only three days
    days = WEEKLY[:3].tolist() * 2
    with pytest.raises(FitError, match="3 distinct observation days"):
        fit(days, TRUTH.price(days), RELEASE, [])


def test_fit_refuses_a_period_without_observations_between_launches() -> None:
    # Given no observation between the H200 and B200 launches, so their steps are confounded
    days = np.concatenate((weeks_before(H200_LAUNCH), weeks_from(B200_LAUNCH)))
    with pytest.raises(FitError, match="period starting at 2024-03-01"):
        fit(days, TRUTH.price(days), RELEASE, [H200_LAUNCH, B200_LAUNCH])


def test_fit_reports_non_convergence() -> None:
    # Given one model evaluation per starting point, when fitted, then it did not converge
    with pytest.raises(FitError, match="did not converge within 1 evaluations"):
        fit(WEEKLY, TRUTH.price(WEEKLY), RELEASE, [H200_LAUNCH, B200_LAUNCH], evaluations_max=1)


def test_fit_error_is_a_value_error() -> None:
    assert issubclass(FitError, ValueError)


@pytest.mark.parametrize(
    ("days", "prices", "launches", "message"),
    [
        (WEEKLY[:10], np.ones(9), [], "one length"),
        (WEEKLY[:10], np.r_[np.ones(9), 0.0], [], "finite and > 0"),
        (WEEKLY[:10], np.r_[np.ones(9), math.inf], [], "finite and > 0"),
        (np.r_[np.datetime64("2022-08-01"), WEEKLY[:9]], np.ones(10), [], "precede the release"),
        (WEEKLY[:10], np.ones(10), [B200_LAUNCH, H200_LAUNCH], "increasing"),
    ],
)
def test_fit_refuses_malformed_input(
    days: np.ndarray, prices: np.ndarray, launches: list[datetime.date], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        fit(days, prices, RELEASE, launches)
    assert not isinstance(raised.value, FitError)


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(depreciation, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0
    assert results.failed == 0
