"""Forward curve across delivery months from listed futures prices ($/GPU-hr).

A futures contract delivers GPU-hours over one calendar month, so the curve is indexed by month
(``numpy.datetime64[M]``; any day of a month stands for that month). For a month ``m``:

- a listed month: its futures price, exactly;
- between the first and last listed months: a monotone cubic (PCHIP,
  ``scipy.interpolate.PchipInterpolator``) through the listed prices against the month index.
  On each interval between listed months it stays between the two listed prices, so it never
  overshoots and it is monotone wherever the listed prices are;
- before the first listed month: the first listed price (flat);
- after the last listed month: the depreciation model's shape scaled to meet the last listed
  price, ``price_last * model.monthly_price(m) / model.monthly_price(last)``, or the last listed
  price (flat) without a model. The curve is continuous at the last listed month either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import PchipInterpolator

from pricing.depreciation import MONTHS_MAX, DateLike, DatesLike, DepreciationModel, FloatArray


class CurveError(ValueError):
    """The listed months or prices cannot make a forward curve."""


class EmptyCurveError(CurveError):
    """No listed month: a curve needs at least one price."""


class LengthMismatchError(CurveError):
    """Months and prices are not 1-D arrays of one length."""


class MonthsNotIncreasingError(CurveError):
    """Listed months are not strictly increasing (unsorted or repeated)."""


class NotMonthStartError(CurveError):
    """A listed month is not the first day of a month."""


class NonPositivePriceError(CurveError):
    """A listed price is not finite and > 0."""


@dataclass(frozen=True, eq=False)
class ForwardCurve:
    """Forward price for every delivery month (see the module docstring for the rules).

    Parameters
    ----------
    listed_months : numpy.ndarray of datetime64[M]
        Listed delivery months, strictly increasing. Read-only.
    listed_prices : numpy.ndarray of float64
        Their futures prices, $/GPU-hr, > 0. Read-only.
    model : DepreciationModel, optional
        Shape of the curve beyond the last listed month; flat when ``None``.

    Examples
    --------
    Quarterly listings of an H100 future at $2.40, $2.20 and $2.10/GPU-hr:

    >>> import datetime
    >>> curve = ForwardCurve.build(
    ...     [datetime.date(2026, 4, 1), datetime.date(2026, 7, 1), datetime.date(2026, 10, 1)],
    ...     [2.40, 2.20, 2.10],
    ... )
    >>> curve.price(datetime.date(2026, 7, 1))
    2.2
    >>> curve.prices([datetime.date(2026, 1, 1), datetime.date(2027, 6, 1)]).tolist()
    [2.4, 2.1]
    """

    listed_months: NDArray[np.datetime64]
    listed_prices: FloatArray
    model: DepreciationModel | None = None
    _month_indexes: NDArray[np.int64] = field(init=False, repr=False)
    _interpolator: PchipInterpolator | None = field(init=False, repr=False)

    @classmethod
    def build(
        cls,
        months: DatesLike,
        prices: ArrayLike,
        model: DepreciationModel | None = None,
    ) -> ForwardCurve:
        """Build the curve from listed futures.

        Parameters
        ----------
        months : sequence or array of datetime.date or numpy.datetime64
            First day of each listed delivery month, strictly increasing.
        prices : array_like of float
            Futures prices, $/GPU-hr, finite and > 0, one per month.
        model : DepreciationModel, optional
            The SKU's depreciation model, for months after the last listed one.

        Raises
        ------
        EmptyCurveError, LengthMismatchError, MonthsNotIncreasingError, NotMonthStartError,
        NonPositivePriceError
            All subclasses of `CurveError` (a `ValueError`).
        """
        days = np.asarray(months, dtype="datetime64[D]")
        month_starts = days.astype("datetime64[M]")
        if np.any(month_starts.astype("datetime64[D]") != days):
            raise NotMonthStartError(f"listed months must be first days of months, got {days}")
        return cls(month_starts, np.asarray(prices, dtype=np.float64), model)

    def __post_init__(self) -> None:
        months = np.array(self.listed_months, dtype="datetime64[M]")
        prices = np.array(self.listed_prices, dtype=np.float64)
        if months.ndim != 1 or months.shape != prices.shape:
            raise LengthMismatchError(
                f"months and prices must be 1-D of one length, got {months.shape} and "
                f"{prices.shape}"
            )
        if months.size == 0:
            raise EmptyCurveError("a forward curve needs at least one listed month")
        month_indexes = months.astype(np.int64)
        if np.any(np.diff(month_indexes) <= 0):
            raise MonthsNotIncreasingError(
                f"listed months must be strictly increasing, got {months}"
            )
        if not np.all(np.isfinite(prices)) or np.any(prices <= 0.0):
            raise NonPositivePriceError(f"prices must be finite and > 0 $/GPU-hr, got {prices}")
        for array in (months, prices, month_indexes):
            array.setflags(write=False)
        interpolator = (
            PchipInterpolator(month_indexes, prices, extrapolate=False)
            if months.size >= 2
            else None
        )
        # The dataclass is frozen; these assignments complete its construction.
        object.__setattr__(self, "listed_months", months)
        object.__setattr__(self, "listed_prices", prices)
        object.__setattr__(self, "_month_indexes", month_indexes)
        object.__setattr__(self, "_interpolator", interpolator)

    @property
    def first_month(self) -> np.datetime64:
        """First listed delivery month."""
        first: np.datetime64 = self.listed_months[0]
        return first

    @property
    def last_month(self) -> np.datetime64:
        """Last listed delivery month."""
        last: np.datetime64 = self.listed_months[-1]
        return last

    def price(self, month: DateLike) -> float:
        """Forward price of the month containing ``month``, $/GPU-hr."""
        return float(self.prices([month])[0])

    def prices(self, months: DatesLike) -> FloatArray:
        """Forward prices of the months containing each of ``months``.

        Parameters
        ----------
        months : datetime.date, numpy.datetime64, or a sequence or array of them
            Any day of each delivery month.

        Returns
        -------
        numpy.ndarray of float64
            $/GPU-hr, the shape of ``months``.

        Raises
        ------
        ValueError
            A month more than `pricing.depreciation.MONTHS_MAX` months after the last listed
            one, when the curve has a model.
        """
        wanted = np.asarray(months, dtype="datetime64[M]").astype(np.int64)
        flat = wanted.reshape(-1)
        listed, listed_prices = self._month_indexes, self.listed_prices
        result = np.full(flat.shape, listed_prices[0], dtype=np.float64)
        inside = (flat > listed[0]) & (flat < listed[-1])
        if self._interpolator is not None and np.any(inside):
            result[inside] = self._interpolator(flat[inside])
        # Listed months take their price itself, not the interpolant's rounding of it.
        position = np.minimum(np.searchsorted(listed, flat), listed.size - 1)
        exact = listed[position] == flat
        result[exact] = listed_prices[position[exact]]
        after = flat > listed[-1]
        if np.any(after):
            result[after] = listed_prices[-1] * self._shape_after_last(flat[after] - listed[-1])
        shaped: FloatArray = result.reshape(wanted.shape)
        return shaped

    def _shape_after_last(self, offsets: NDArray[np.int64]) -> FloatArray:
        """Model price ``offsets`` months after the last listed month over its price then."""
        if self.model is None:
            return np.ones(offsets.shape, dtype=np.float64)
        offset_max = int(offsets.max())
        if offset_max >= MONTHS_MAX:
            raise ValueError(
                f"months more than {MONTHS_MAX - 1} after the last listed month are out of range"
            )
        monthly = self.model.monthly_prices(self.last_month, offset_max + 1)
        ratios: FloatArray = monthly[offsets] / monthly[0]
        return ratios
