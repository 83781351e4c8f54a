"""Rental price of one GPU SKU against its age, stepping down when a newer generation ships.

Model
-----
For a SKU released on ``release_date`` the expected rental price in $/GPU-hr on date ``t`` is::

    price(t) = floor + (p0 - floor) * exp(-k * age(t)) * prod over launches g <= t of (1 - s_g)

- ``age(t)``: years since ``release_date`` (days / 365.25), clamped at 0, so before its release
  a SKU is worth ``p0``.
- ``p0`` (`DepreciationModel.price_at_release`): $/GPU-hr at release.
- ``floor`` (`DepreciationModel.price_floor`): $/GPU-hr the price decays towards, for example a
  provider's break-even (about $1.65 for an H100); 0 <= floor <= p0.
- ``k`` (`DepreciationModel.decay_per_year`): exponential decay rate of the premium above the
  floor, per year.
- ``s_g`` (`DepreciationModel.step_fractions`): the fraction of the premium above the floor lost
  on the launch date of generation ``g`` (the next SKUs' release dates, inputs of the model). The
  step is a hard step at 00:00 UTC of the launch date: the launch dates are known, so the fitted
  parameters enter the model smoothly and a logistic ramp would only add a parameter.

The price is therefore never below the floor, never above ``p0`` and never increasing with time.
Observed prices are not that tidy (H100 rent rose from about $1.70 in October 2025 to about $2.35
for one-year terms in March 2026); the model is the expected trend that futures and reserved
contracts are valued against, not a forecast of such swings.

Dates are calendar days (`datetime.date` or ``numpy.datetime64``; UTC), time is in years of
365.25 days and one year holds 365.25 * 24 = 8,766 hours (a month about 730).

Integrals (monthly averages and contract values) are exact: between two launches the price is a
constant plus an exponential, whose (discounted) integral has a closed form. That equals summing
hourly prices in the limit of short hours and costs the same for a day or ten years.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeResult, least_squares

DateLike: TypeAlias = datetime.date | np.datetime64
DatesLike: TypeAlias = DateLike | Sequence[DateLike] | NDArray[np.datetime64]
FloatArray: TypeAlias = NDArray[np.float64]

DAYS_PER_YEAR: Final = 365.25
HOURS_PER_DAY: Final = 24
HOURS_PER_YEAR: Final = DAYS_PER_YEAR * HOURS_PER_DAY
# One hundred years of monthly prices: far beyond any listed month, small enough to compute.
MONTHS_MAX: Final = 1200
# Bounds of the fit. A premium that halves in less than two weeks is not a rental market.
DECAY_PER_YEAR_MAX: Final = 20.0
STEP_FRACTION_MAX: Final = 0.95
# Step of a launch with no observed price after it when no launch has been observed either.
STEP_FRACTION_ASSUMED: Final = 0.15
FIT_EVALUATIONS_MAX: Final = 2000
# The fit starts from each of these decay rates (and from `initial`, if given) and keeps the best.
FIT_STARTS_DECAY_PER_YEAR: Final = (0.3, 1.0, 3.0)
# Starting points are kept this far inside the bounds, where the trust-region solver moves freely.
_INTERIOR_MARGIN: Final = 1e-3


class FitError(ValueError):
    """The depreciation model cannot be fitted: too few points, or the solver did not converge."""


@dataclass(frozen=True)
class InitialGuess:
    """A starting point for `fit`.

    Parameters
    ----------
    price_at_release : float
        $/GPU-hr at release, > 0.
    price_floor : float
        $/GPU-hr the price decays towards, 0 <= price_floor <= price_at_release.
    decay_per_year : float
        Decay rate of the premium above the floor, per year, >= 0.
    step_fraction : float
        Fraction of the premium lost at each generation launch, in [0, 1).
    """

    price_at_release: float
    price_floor: float
    decay_per_year: float
    step_fraction: float

    def __post_init__(self) -> None:
        _check_parameters(
            self.price_at_release, self.price_floor, self.decay_per_year, (self.step_fraction,)
        )


@dataclass(frozen=True)
class DepreciationModel:
    """Expected rental price of one SKU against its age (see the module docstring for the form).

    Parameters
    ----------
    release_date : datetime.date
        The SKU's release (age 0).
    price_at_release : float
        ``p0``, $/GPU-hr at release, > 0.
    price_floor : float
        ``floor``, $/GPU-hr, 0 <= price_floor <= price_at_release.
    decay_per_year : float
        ``k``, decay rate of the premium above the floor, per year, >= 0.
    launch_dates : tuple of datetime.date
        Release dates of the next generations, increasing, after ``release_date``.
    step_fractions : tuple of float
        ``s_g`` for each launch, in [0, 1): the fraction of the premium lost on that date.

    Examples
    --------
    An H100-like SKU released in September 2022 at $8/GPU-hr that decays towards $1.60 and loses
    15% of its premium when H200 and then B200 ship:

    >>> h100 = DepreciationModel(
    ...     release_date=datetime.date(2022, 9, 1),
    ...     price_at_release=8.0,
    ...     price_floor=1.6,
    ...     decay_per_year=1.2,
    ...     launch_dates=(datetime.date(2024, 6, 1), datetime.date(2025, 3, 1)),
    ...     step_fractions=(0.15, 0.15),
    ... )
    >>> h100.price([datetime.date(2024, 1, 15), datetime.date(2025, 10, 1)]).round(2)
    array([2.83, 1.71])

    The expected average price of each of the first three months of 2026, and the value of a
    reserved contract for 8 GPUs over those months (2,160 hours each), in USD:

    >>> h100.monthly_prices(datetime.date(2026, 1, 1), 3).round(3)
    array([1.68 , 1.673, 1.666])
    >>> round(h100.contract_value(datetime.date(2026, 1, 1), datetime.date(2026, 4, 1), gpus=8))
    28913
    """

    release_date: datetime.date
    price_at_release: float
    price_floor: float
    decay_per_year: float
    launch_dates: tuple[datetime.date, ...] = ()
    step_fractions: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_parameters(
            self.price_at_release, self.price_floor, self.decay_per_year, self.step_fractions
        )
        if len(self.launch_dates) != len(self.step_fractions):
            raise ValueError(
                f"{len(self.launch_dates)} launch dates need as many step fractions, "
                f"got {len(self.step_fractions)}"
            )
        _check_launches(_day(self.release_date), self.launch_dates)

    def price(self, dates: DatesLike) -> FloatArray:
        """Expected rental price on each date.

        Parameters
        ----------
        dates : datetime.date, numpy.datetime64, or a sequence or array of them
            Calendar days (UTC); the price at 00:00 of each day.

        Returns
        -------
        numpy.ndarray of float64
            $/GPU-hr, the shape of ``dates`` (0-d for one date: use ``float()``).
        """
        return self._price_at_age(_age_years(_days(dates), _day(self.release_date)))

    def monthly_prices(self, first_month: DateLike, months: int) -> FloatArray:
        """Expected average price over each of ``months`` calendar months.

        Parameters
        ----------
        first_month : datetime.date or numpy.datetime64
            Any day of the first month.
        months : int
            Number of months, 0 <= months <= `MONTHS_MAX`.

        Returns
        -------
        numpy.ndarray of float64
            $/GPU-hr: the time average of `price` over each month (its integral over the month
            divided by the month's length), shape ``(months,)``.
        """
        if not 0 <= months <= MONTHS_MAX:
            raise ValueError(f"months must be in [0, {MONTHS_MAX}], got {months}")
        first = int(np.asarray(first_month, dtype="datetime64[M]").astype(np.int64))
        month_starts = np.arange(first, first + months + 1).astype("datetime64[M]")
        ages = _age_years(_days(month_starts), _day(self.release_date))
        starts, ends = ages[:-1], ages[1:]
        integrals = self._integral(starts, ends, valuation_years=starts, rate=0.0)
        averages: FloatArray = integrals / (ends - starts)
        return averages

    def monthly_price(self, month: DateLike) -> float:
        """Expected average price over the calendar month containing ``month``, $/GPU-hr."""
        return float(self.monthly_prices(month, 1)[0])

    def contract_value(
        self,
        start: DateLike,
        end: DateLike,
        gpus: int,
        as_of: DateLike | None = None,
        discount_rate: float = 0.0,
    ) -> float:
        """Value of the remaining GPU-hours of a reserved contract at the model's prices.

        The contract runs from 00:00 of ``start`` to 00:00 of ``end`` (``end`` excluded: 1 to 31
        January is 30 days, 720 hours per GPU). What remains on ``as_of`` is the part from
        ``max(start, as_of)``; each hour is worth the model's price at that instant, discounted
        continuously to ``as_of``::

            value = gpus * 8766 * integral over [max(start, as_of), end] of
                    price(t) * exp(-discount_rate * (t - as_of)) dt      (t in years)

        Parameters
        ----------
        start, end : datetime.date or numpy.datetime64
            First day of the contract and the day after its last, end >= start.
        gpus : int
            GPUs reserved, >= 0.
        as_of : datetime.date or numpy.datetime64, optional
            Valuation date; ``None`` values the whole contract as of ``start``.
        discount_rate : float
            Continuously compounded rate per year (0 for no discounting).

        Returns
        -------
        float
            USD; 0 when nothing remains.
        """
        start_day, end_day = _day(start), _day(end)
        if end_day < start_day:
            raise ValueError(f"end ({end}) is before start ({start})")
        if gpus < 0:
            raise ValueError(f"gpus must be >= 0, got {gpus}")
        if not math.isfinite(discount_rate):
            raise ValueError(f"discount_rate must be finite, got {discount_rate}")
        valuation_day = start_day if as_of is None else _day(as_of)
        first_day = max(start_day, valuation_day)
        if first_day >= end_day:
            return 0.0
        release_day = _day(self.release_date)
        ages = _age_years(np.array([first_day, end_day, valuation_day]), release_day)
        integral = self._integral(ages[:1], ages[1:2], valuation_years=ages[2:], rate=discount_rate)
        return float(gpus * HOURS_PER_YEAR * integral[0])

    def _launch_years(self) -> FloatArray:
        days = np.array([_day(date) for date in self.launch_dates], dtype=np.int64)
        return _age_years(days, _day(self.release_date))

    def _multipliers(self) -> FloatArray:
        """Product of (1 - s_g) over the first j launches, for j = 0 .. number of launches."""
        remaining = 1.0 - np.asarray(self.step_fractions, dtype=np.float64)
        return np.concatenate(([1.0], np.cumprod(remaining)))

    def _price_at_age(self, age_years: FloatArray) -> FloatArray:
        launched = np.searchsorted(self._launch_years(), age_years, side="right")
        decay = np.exp(-self.decay_per_year * np.maximum(age_years, 0.0))
        premium = self.price_at_release - self.price_floor
        prices: FloatArray = self.price_floor + premium * self._multipliers()[launched] * decay
        return prices

    def _integral(
        self,
        start_years: FloatArray,
        end_years: FloatArray,
        valuation_years: FloatArray,
        rate: float,
    ) -> FloatArray:
        """Integral of price(t) * exp(-rate * (t - valuation)) dt over [start, end], t in years.

        $/GPU-hr x years. The price is ``level + amplitude * exp(-k * t)`` on each segment
        between consecutive boundaries (before release: p0 flat; then one segment per launch),
        and each segment's integral is closed-form.
        """
        boundaries = np.concatenate(([-np.inf, 0.0], self._launch_years(), [np.inf]))
        premium = self.price_at_release - self.price_floor
        levels = [self.price_at_release] + [self.price_floor] * (len(boundaries) - 2)
        amplitudes = [0.0] + [premium * multiplier for multiplier in self._multipliers()]
        total = np.zeros(np.shape(start_years), dtype=np.float64)
        for segment, (level, amplitude) in enumerate(zip(levels, amplitudes, strict=True)):
            low = np.clip(start_years, boundaries[segment], boundaries[segment + 1])
            high = np.clip(end_years, boundaries[segment], boundaries[segment + 1])
            width = high - low
            discount = np.exp(-rate * (low - valuation_years))
            total += level * discount * width * _mean_exponential(rate * width)
            if amplitude != 0.0:
                decay = np.exp(-self.decay_per_year * low)
                decayed = _mean_exponential((rate + self.decay_per_year) * width)
                total += amplitude * decay * discount * width * decayed
        return total


def fit(
    dates: DatesLike,
    prices: ArrayLike,
    release_date: DateLike,
    next_generation_launches: Sequence[DateLike],
    initial: InitialGuess | None = None,
    *,
    unobserved_step_fraction: float | None = None,
    evaluations_max: int = FIT_EVALUATIONS_MAX,
) -> DepreciationModel:
    """Fit a `DepreciationModel` to observed prices by bounded nonlinear least squares.

    The residuals are log(model price) - log(observed price), so every observation counts by its
    relative error whether it is $8 or $1.70. The solver is ``scipy.optimize.least_squares``
    (trust region reflective) with bounds 0 <= floor <= p0, 0 <= k <= `DECAY_PER_YEAR_MAX`,
    0 <= s_g <= `STEP_FRACTION_MAX`, started from each decay rate in
    `FIT_STARTS_DECAY_PER_YEAR` (and from ``initial`` first); the best converged fit wins.

    A launch's step is fitted when some observation falls on or after it. Steps of later launches
    cannot be seen in the data: they take ``unobserved_step_fraction``, else the mean of the
    fitted steps, else `STEP_FRACTION_ASSUMED`.

    Parameters
    ----------
    dates : sequence or array of datetime.date or numpy.datetime64
        Observation days, on or after ``release_date``.
    prices : array_like of float
        Observed prices, $/GPU-hr, finite and > 0, one per date.
    release_date : datetime.date or numpy.datetime64
        The SKU's release.
    next_generation_launches : sequence of datetime.date or numpy.datetime64
        Release dates of the following generations, increasing, after ``release_date``.
    initial : InitialGuess, optional
        An extra starting point, tried first.
    unobserved_step_fraction : float, optional
        Step of launches after the last observation, in [0, 1).
    evaluations_max : int
        Bound on model evaluations per starting point.

    Returns
    -------
    DepreciationModel

    Raises
    ------
    ValueError
        Malformed input (lengths, non-positive prices, dates before release, unordered launches).
    FitError
        Fewer distinct observation days than parameters + 1, a period between observed launches
        without observations (its step cannot be told apart from the next), or no starting
        point converged within ``evaluations_max`` evaluations.

    Examples
    --------
    >>> truth = DepreciationModel(
    ...     datetime.date(2022, 9, 1), 8.0, 1.6, 1.2, (datetime.date(2024, 6, 1),), (0.15,)
    ... )
    >>> days = np.arange("2022-10-01", "2026-03-01", 14, dtype="datetime64[D]")
    >>> model = fit(days, truth.price(days), datetime.date(2022, 9, 1), [datetime.date(2024, 6, 1)])
    >>> round(model.price_at_release, 4), round(model.step_fractions[0], 4)
    (8.0, 0.15)
    """
    days, observed = _checked_observations(dates, prices, release_date)
    release_day = _day(release_date)
    _check_launches(release_day, next_generation_launches)
    launch_days = np.array([_day(date) for date in next_generation_launches], dtype=np.int64)
    if unobserved_step_fraction is not None and not 0.0 <= unobserved_step_fraction < 1.0:
        raise ValueError(
            f"unobserved_step_fraction must be in [0, 1), got {unobserved_step_fraction}"
        )

    segments = np.searchsorted(launch_days, days, side="right")
    fitted_count = int(segments.max()) if days.size else 0
    _check_identifiable(days, segments, fitted_count, launch_days)
    ages = _age_years(days, release_day)
    best = _best_least_squares(
        ages, segments, np.log(observed), fitted_count, initial, evaluations_max
    )

    fitted_steps = tuple(float(step) for step in best.x[3:])
    if unobserved_step_fraction is not None:
        later_step = unobserved_step_fraction
    elif fitted_steps:
        later_step = float(np.mean(fitted_steps))
    else:
        later_step = STEP_FRACTION_ASSUMED
    price_at_release = float(np.exp(best.x[0]))
    return DepreciationModel(
        release_date=_to_date(release_date),
        price_at_release=price_at_release,
        price_floor=float(best.x[1]) * price_at_release,
        decay_per_year=float(best.x[2]),
        launch_dates=tuple(_to_date(date) for date in next_generation_launches),
        step_fractions=fitted_steps + (later_step,) * (len(launch_days) - fitted_count),
    )


def _checked_observations(
    dates: DatesLike, prices: ArrayLike, release_date: DateLike
) -> tuple[NDArray[np.int64], FloatArray]:
    """Observation days (since 1970-01-01) and prices ($/GPU-hr), or `ValueError`."""
    days = _days(dates)
    observed = np.asarray(prices, dtype=np.float64)
    if days.ndim != 1 or days.shape != observed.shape:
        raise ValueError(
            f"dates and prices must be 1-D of one length, got {days.shape} and {observed.shape}"
        )
    if not np.all(np.isfinite(observed)) or np.any(observed <= 0.0):
        raise ValueError("prices must be finite and > 0 ($/GPU-hr)")
    if days.size and days.min() < _day(release_date):
        raise ValueError(f"observations precede the release date {release_date}")
    return days, observed


def _check_identifiable(
    days: NDArray[np.int64],
    segments: NDArray[np.intp],
    fitted_count: int,
    launch_days: NDArray[np.int64],
) -> None:
    """Raise `FitError` unless the observations can determine every fitted parameter."""
    parameter_count = 3 + fitted_count
    distinct_days = np.unique(days).size
    if distinct_days <= parameter_count:
        raise FitError(
            f"{distinct_days} distinct observation days cannot fit {parameter_count} parameters "
            f"(p0, floor, k and {fitted_count} step fractions): need at least {parameter_count + 1}"
        )
    empty = sorted(set(range(fitted_count + 1)) - {int(segment) for segment in segments})
    if empty:
        since = (
            "release" if empty[0] == 0 else str(launch_days[empty[0] - 1].astype("datetime64[D]"))
        )
        raise FitError(
            f"no observation in the period starting at {since}, so the steps around it cannot be "
            "told apart"
        )


def _best_least_squares(
    ages: FloatArray,
    segments: NDArray[np.intp],
    log_observed: FloatArray,
    fitted_count: int,
    initial: InitialGuess | None,
    evaluations_max: int,
) -> OptimizeResult:
    """Run the bounded least squares from each starting point; return the best converged one.

    Parameters are x = [log p0, floor / p0, k, s_1, ..., s_fitted_count].
    """

    def residuals(x: FloatArray) -> FloatArray:
        remaining = np.concatenate(([1.0], np.cumprod(1.0 - x[3:])))
        decayed = remaining[segments] * np.exp(-x[2] * ages)
        model: FloatArray = x[0] + np.log(x[1] + (1.0 - x[1]) * decayed) - log_observed
        return model

    lower = np.array([-np.inf, 0.0, 0.0] + [0.0] * fitted_count)
    upper = np.array([np.inf, 1.0, DECAY_PER_YEAR_MAX] + [STEP_FRACTION_MAX] * fitted_count)
    best: OptimizeResult | None = None
    for start in _starting_points(log_observed, initial):
        x0 = np.array(
            [np.log(start.price_at_release), start.price_floor / start.price_at_release]
            + [start.decay_per_year]
            + [start.step_fraction] * fitted_count
        )
        x0[1:] = np.clip(x0[1:], lower[1:] + _INTERIOR_MARGIN, upper[1:] - _INTERIOR_MARGIN)
        result = least_squares(
            residuals, x0, bounds=(lower, upper), method="trf", max_nfev=evaluations_max
        )
        converged = result.status > 0 and bool(np.isfinite(result.cost))
        if converged and (best is None or result.cost < best.cost):
            best = result
    if best is None:
        raise FitError(
            f"least squares did not converge within {evaluations_max} evaluations from any "
            "starting point"
        )
    return best


def _starting_points(log_observed: FloatArray, initial: InitialGuess | None) -> list[InitialGuess]:
    highest, lowest = float(np.exp(log_observed.max())), float(np.exp(log_observed.min()))
    defaults = [
        InitialGuess(
            price_at_release=highest,
            price_floor=lowest / 2.0,
            decay_per_year=decay_per_year,
            step_fraction=0.1,
        )
        for decay_per_year in FIT_STARTS_DECAY_PER_YEAR
    ]
    return ([initial] if initial is not None else []) + defaults


def _check_parameters(
    price_at_release: float,
    price_floor: float,
    decay_per_year: float,
    step_fractions: Sequence[float],
) -> None:
    if not (math.isfinite(price_at_release) and price_at_release > 0.0):
        raise ValueError(f"price_at_release must be finite and > 0, got {price_at_release}")
    if not 0.0 <= price_floor <= price_at_release:
        raise ValueError(
            f"price_floor must be in [0, price_at_release={price_at_release}], got {price_floor}"
        )
    if not (math.isfinite(decay_per_year) and decay_per_year >= 0.0):
        raise ValueError(f"decay_per_year must be finite and >= 0, got {decay_per_year}")
    for step in step_fractions:
        if not 0.0 <= step < 1.0:
            raise ValueError(f"step fractions must be in [0, 1), got {step}")


def _check_launches(release_day: int, launch_dates: Sequence[DateLike]) -> None:
    previous = release_day
    for date in launch_dates:
        if _day(date) <= previous:
            raise ValueError(
                "launch dates must be increasing and after the release date, "
                f"got {date} after {np.datetime64(previous, 'D')}"
            )
        previous = _day(date)


def _days(dates: DatesLike) -> NDArray[np.int64]:
    """Days since 1970-01-01, the shape of ``dates``."""
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64)


def _day(date: DateLike) -> int:
    """Days since 1970-01-01 of one date."""
    return int(np.asarray(date, dtype="datetime64[D]").astype(np.int64))


def _to_date(date: DateLike) -> datetime.date:
    day: datetime.date = np.asarray(date, dtype="datetime64[D]").item()
    return day


def _age_years(days: NDArray[np.int64], release_day: int) -> FloatArray:
    ages: FloatArray = (days - release_day) / DAYS_PER_YEAR
    return ages


def _mean_exponential(x: FloatArray) -> FloatArray:
    """(1 - exp(-x)) / x, the mean of exp(-x * u) for u in [0, 1]; 1 at x = 0."""
    small = np.abs(x) < 1e-9
    safe = np.where(small, 1.0, x)
    means: FloatArray = np.where(small, 1.0 - x / 2.0, -np.expm1(-safe) / safe)
    return means
