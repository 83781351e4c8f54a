"""Black-76: European options on a future, their Greeks and implied volatility.

Units, everywhere in this module:

- ``F``: forward (futures) price in $/GPU-hr; ``K``: strike in $/GPU-hr.
- ``T``: time to expiry in years (365-day years are the caller's choice; only the product with
  ``sigma`` and ``r`` matters).
- ``r``: continuously compounded interest rate per year (0.05 is 5%); values are discounted by
  ``exp(-r T)`` because the premium is paid today while the option pays at expiry.
- ``sigma``: annualized volatility of the forward (0.60 is 60% per year).
- ``call``: ``True`` for a call, ``False`` for a put.
- Option values in $/GPU-hr of the underlying, like ``F`` and ``K``.

Every function takes Python scalars or numpy arrays and broadcasts them together with numpy's
rules. Python scalars in give a ``float`` out; any array in gives an array of the broadcast shape.

Inputs are checked up front: a non-positive or non-finite ``F`` or ``K``, a negative ``T`` or
``sigma`` and a non-finite ``r`` raise `InvalidOptionInput` (a `ValueError`), as does a NaN
anywhere in them. Only the observed option price given to `implied_volatility` may be NaN or
outside its no-arbitrage bounds; the vectorized solver reports those per option.

Normal distribution functions come from ``scipy.special`` (``ndtr``, ``erfcx``, ``ndtri``): they
are ufuncs, about an order of magnitude faster per call than ``scipy.stats.norm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar, overload

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]
Value = TypeVar("Value", float, FloatArray)

SQRT_TWO = math.sqrt(2.0)
SQRT_TWO_OVER_PI = math.sqrt(2.0 / math.pi)
ONE_OVER_SQRT_TWO_PI = 1.0 / math.sqrt(2.0 * math.pi)
EPSILON = float(np.finfo(np.float64).eps)

# The implied-volatility solver. Its iterations are safeguarded Halley steps; a step that leaves
# the bracket is replaced by bisection, so the iteration bound is a guard, not a tuning knob: in
# practice every option converges in two to four steps (see tests/pricing/test_black76.py).
SOLVER_ITERATIONS_MAX = 64
# A step smaller than this, relative to the total standard deviation s = sigma sqrt(T), ends the
# iteration. Halley converges cubically, so the error left after such a step is far below it.
SOLVER_STEP_RELATIVE_TOLERANCE = 1e-11
# A Halley denominator below this means the quadratic correction is unreliable there; the
# step falls back to plain Newton (the bracket still catches a bad Newton step).
HALLEY_DENOMINATOR_MIN = 0.5
# The two solver regions meet at s_c = sqrt(2|x|). Their brackets overlap by this relative margin
# so that the rounding in the boundary value b_c can never leave the root outside its bracket.
REGION_BRACKET_MARGIN = 1e-9
# A price below its discounted intrinsic value by no more than this many units in the last
# place of DF * max(F, K) is rounding, not arbitrage: it is treated as intrinsic (sigma 0).
INTRINSIC_ROUNDING_ULPS = 4.0


class InvalidOptionInput(ValueError):
    """An input is outside the model's domain (say F <= 0, T < 0 or a NaN rate)."""


class PriceOutsideBounds(ValueError):
    """An option price outside the Black-76 no-arbitrage bounds: no volatility produces it.

    Attributes
    ----------
    reason : ImpliedVolatilityReason
        ``BELOW_INTRINSIC`` or ``ABOVE_UPPER_BOUND``.
    """

    def __init__(self, message: str, reason: ImpliedVolatilityReason) -> None:
        super().__init__(message)
        self.reason = reason


class PriceBelowIntrinsic(PriceOutsideBounds):
    """The price is below the discounted intrinsic value ``exp(-rT) max(±(F - K), 0)``."""


class PriceAboveUpperBound(PriceOutsideBounds):
    """The price is at or above ``exp(-rT) F`` (calls) or ``exp(-rT) K`` (puts)."""


class ImpliedVolatilityNotConverged(ArithmeticError):
    """The solver reached `SOLVER_ITERATIONS_MAX` without converging (never seen in tests)."""


class ImpliedVolatilityReason(StrEnum):
    """Why an implied volatility is NaN; the empty string means it was solved."""

    SOLVED = ""
    BELOW_INTRINSIC = "below_intrinsic"
    ABOVE_UPPER_BOUND = "above_upper_bound"
    NAN_PRICE = "nan_price"
    NOT_CONVERGED = "not_converged"


_REASON_CODES = {reason: code for code, reason in enumerate(ImpliedVolatilityReason)}
_REASON_STRINGS = np.array([reason.value for reason in ImpliedVolatilityReason])


class Greeks(NamedTuple, Generic[Value]):
    """Sensitivities of a Black-76 value, each a float or an array of the broadcast shape.

    Attributes
    ----------
    delta : dV/dF, per $1 of forward price (dimensionless, discounted).
    gamma : d2V/dF2, per $1 of forward price, per $1.
    vega : dV/dsigma in $/GPU-hr per 1.00 (100 volatility points) of sigma.
    theta : dV/dt in $/GPU-hr per year as calendar time passes (that is -dV/dT).
    rho : dV/dr in $/GPU-hr per 1.00 (10,000 basis points) of rate.
    """

    delta: Value
    gamma: Value
    vega: Value
    theta: Value
    rho: Value


class ImpliedVolatilityResult(NamedTuple):
    """Everything the implied-volatility solver knows, as arrays of the broadcast shape.

    Attributes
    ----------
    sigma : annualized implied volatility; NaN where ``reasons`` is not empty.
    reasons : strings, the values of `ImpliedVolatilityReason` ("" when solved).
    iterations : solver steps per option (0 when none were needed).
    converged : True where sigma was solved to tolerance.
    """

    sigma: FloatArray
    reasons: npt.NDArray[np.str_]
    iterations: IntArray
    converged: BoolArray


# Python scalars in give a float out. mypy sees that float is also ArrayLike and calls the
# overloads unsafe; numpy's own stubs use the same pattern.
@overload
def price(  # type: ignore[overload-overlap]
    F: float, K: float, T: float, r: float, sigma: float, call: bool
) -> float: ...
@overload
def price(
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    sigma: npt.ArrayLike,
    call: npt.ArrayLike,
) -> FloatArray: ...
def price(
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    sigma: npt.ArrayLike,
    call: npt.ArrayLike,
) -> float | FloatArray:
    """Black-76 value of a European option on a future, discounted to today.

    ``V = exp(-rT) [F N(d1) - K N(d2)]`` for a call and ``exp(-rT) [K N(-d2) - F N(-d1)]`` for
    a put, with ``d1 = (ln(F/K) + sigma^2 T / 2) / (sigma sqrt(T))`` and
    ``d2 = d1 - sigma sqrt(T)``.

    Parameters
    ----------
    F : forward price, $/GPU-hr, positive.
    K : strike, $/GPU-hr, positive.
    T : time to expiry, years, non-negative.
    r : continuously compounded rate, per year.
    sigma : annualized volatility, non-negative.
    call : True for a call, False for a put (bool or bool array).

    Returns
    -------
    float or ndarray
        Option value in $/GPU-hr. Where ``T = 0`` or ``sigma = 0`` it is the discounted
        intrinsic value ``exp(-rT) max(±(F - K), 0)``, without warnings.

    Raises
    ------
    InvalidOptionInput
        An input outside the domain above, or a NaN.

    Examples
    --------
    >>> round(price(20.0, 20.0, 4 / 12, 0.09, 0.25, call=False), 4)  # Hull, Example 18.6
    1.1166
    """
    forward, strike, expiry, rate, volatility = _checked_inputs(F, K, T, r, sigma)
    sign = _call_sign(call)
    value = _value(forward, strike, expiry, rate, volatility, sign)
    return _as_output(value, (F, K, T, r, sigma, call))


def _value(
    forward: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    volatility: FloatArray,
    sign: FloatArray,
) -> FloatArray:
    """Black-76 value; ``sign`` is +1 for calls and -1 for puts. Inputs already checked."""
    stdev = volatility * np.sqrt(expiry)
    d1 = _d1(forward, strike, stdev)
    d2 = d1 - stdev
    undiscounted: FloatArray = forward * _ndtr(sign * d1) - strike * _ndtr(sign * d2)
    value: FloatArray = sign * np.exp(-rate * expiry) * undiscounted
    return value


@overload
def greeks(  # type: ignore[overload-overlap]
    F: float, K: float, T: float, r: float, sigma: float, call: bool
) -> Greeks[float]: ...
@overload
def greeks(
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    sigma: npt.ArrayLike,
    call: npt.ArrayLike,
) -> Greeks[FloatArray]: ...
def greeks(
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    sigma: npt.ArrayLike,
    call: npt.ArrayLike,
) -> Greeks[float] | Greeks[FloatArray]:
    """Black-76 delta, gamma, vega, theta and rho.

    With ``DF = exp(-rT)``, ``n`` the standard normal density and ``w`` = +1 (call) or -1
    (put): delta ``= w DF N(w d1)``, gamma ``= DF n(d1) / (F sigma sqrt(T))``, vega
    ``= DF F n(d1) sqrt(T)``, theta ``= r V - DF F n(d1) sigma / (2 sqrt(T))`` and
    rho ``= -T V``.

    Parameters
    ----------
    F, K, T, r, sigma, call : as for `price` ($/GPU-hr, $/GPU-hr, years, per year, per year,
        bool).

    Returns
    -------
    Greeks
        ``delta`` (dV/dF), ``gamma`` (d2V/dF2, per $/GPU-hr), ``vega`` (per 1.00 of sigma),
        ``theta`` (per year of calendar time, -dV/dT) and ``rho`` (per 1.00 of rate); floats
        for scalar inputs, otherwise arrays of the broadcast shape. Where ``sigma sqrt(T) = 0``
        they are the limits: delta is ``w DF`` in the money, ``w DF / 2`` at the strike and 0
        out of it; gamma and theta are 0 away from the strike and infinite at it.

    Raises
    ------
    InvalidOptionInput
        An input outside the domain of `price`, or a NaN.

    Examples
    --------
    >>> g = greeks(20.0, 20.0, 4 / 12, 0.09, 0.25, call=True)
    >>> round(g.delta, 4), round(g.vega, 4)
    (0.5131, 4.4588)
    """
    forward, strike, expiry, rate, volatility = _checked_inputs(F, K, T, r, sigma)
    sign = _call_sign(call)
    root_expiry = np.sqrt(expiry)
    stdev = volatility * root_expiry
    d1 = _d1(forward, strike, stdev)
    discount = np.exp(-rate * expiry)
    density = ONE_OVER_SQRT_TWO_PI * np.exp(-0.5 * d1 * d1)
    value = sign * discount * (forward * _ndtr(sign * d1) - strike * _ndtr(sign * (d1 - stdev)))
    shape = np.broadcast_shapes(*(np.shape(argument) for argument in (F, K, T, r, sigma, call)))
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = sign * discount * _ndtr(sign * d1)
        gamma = discount * density / (forward * stdev)
        vega = discount * forward * density * root_expiry
        theta = rate * value - discount * forward * density * volatility / (2.0 * root_expiry)
        rho = -expiry * value
    results = [np.array(np.broadcast_to(g, shape)) for g in (delta, gamma, vega, theta, rho)]
    if np.any(stdev == 0):
        # 0/0 where sigma sqrt(T) is zero away from the strike: the limit there is 0. The
        # inputs hold no NaN (checked), so every NaN here is one of those.
        for result in results:
            np.nan_to_num(result, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)
    if _all_scalars((F, K, T, r, sigma, call)):
        return Greeks(*(float(result) for result in results))
    return Greeks(*results)


@overload
def implied_volatility(  # type: ignore[overload-overlap]
    price: float, F: float, K: float, T: float, r: float, call: bool
) -> float: ...
@overload
def implied_volatility(
    price: npt.ArrayLike,
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    call: npt.ArrayLike,
) -> FloatArray: ...
def implied_volatility(
    price: npt.ArrayLike,
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    call: npt.ArrayLike,
) -> float | FloatArray:
    """Annualized Black-76 volatility that reproduces an option price.

    Parameters
    ----------
    price : observed option price, $/GPU-hr (discounted, like `price` returns).
    F : forward price, $/GPU-hr, positive.
    K : strike, $/GPU-hr, positive.
    T : time to expiry, years, positive (at T = 0 no volatility is implied).
    r : continuously compounded rate, per year.
    call : True for a call, False for a put (bool or bool array).

    Returns
    -------
    float or ndarray
        sigma per year. A price equal to the discounted intrinsic value gives 0.

    Raises
    ------
    PriceBelowIntrinsic, PriceAboveUpperBound
        Scalar input only (both are `PriceOutsideBounds`, a `ValueError`): the price is below
        the discounted intrinsic value ``exp(-rT) max(±(F - K), 0)``, or at or above the
        discounted upper bound, ``exp(-rT) F`` for a call and ``exp(-rT) K`` for a put.
    InvalidOptionInput
        F, K or T not positive and finite, r not finite; for scalar input also a NaN price.
    ImpliedVolatilityNotConverged
        Scalar input only, if the solver hits its iteration bound (a guard; not seen in tests).

    Notes
    -----
    Array input never raises for a price: each position that has no volatility is NaN in the
    result. `implied_volatility_with_reasons` returns the same array together with an array of
    reason strings: "below_intrinsic", "above_upper_bound", "nan_price", "not_converged", or
    "" where sigma was solved.

    Method: the price is reduced to the normalized out-of-the-money call of Jäckel ("By
    Implication", Wilmott 2006): an in-the-money option becomes its out-of-the-money twin by
    put-call parity, so ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)`` with
    ``x = -|ln(F/K)|`` and ``s = sigma sqrt(T)``. Jäckel's closed-form guesses below and above
    the inflection point ``s_c = sqrt(2|x|)`` start safeguarded Halley iterations on ``ln b``
    (below) and on ``-ln(e^{x/2} - b)`` (above), both evaluated with ``erfcx`` so that nothing
    underflows or cancels; a step that leaves the bracket is replaced by bisection. All options
    are solved at once with numpy; converged ones drop out of the working set.

    The result is as accurate as the price allows: a float price determines sigma to about
    ``ulp(price) / vega``, so deep in-the-money options with a tiny vega cannot round-trip to
    1e-10 however they are solved.

    Examples
    --------
    >>> value = price(20.0, 20.0, 4 / 12, 0.09, 0.25, call=False)
    >>> round(implied_volatility(value, 20.0, 20.0, 4 / 12, 0.09, call=False), 12)
    0.25
    """
    result = implied_volatility_result(price, F, K, T, r, call)
    if not _all_scalars((price, F, K, T, r, call)):
        return result.sigma
    reason = ImpliedVolatilityReason(result.reasons.item())
    if reason == ImpliedVolatilityReason.SOLVED:
        return float(result.sigma)
    message = f"no Black-76 volatility gives price {price!r} for {F=}, {K=}, {T=}, {r=}, {call=}"
    if reason == ImpliedVolatilityReason.BELOW_INTRINSIC:
        raise PriceBelowIntrinsic(f"{message}: below the discounted intrinsic value", reason)
    if reason == ImpliedVolatilityReason.ABOVE_UPPER_BOUND:
        raise PriceAboveUpperBound(f"{message}: at or above the discounted upper bound", reason)
    if reason == ImpliedVolatilityReason.NAN_PRICE:
        raise InvalidOptionInput("price is NaN")
    raise ImpliedVolatilityNotConverged(message)


def implied_volatility_with_reasons(
    price: npt.ArrayLike,
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    call: npt.ArrayLike,
) -> tuple[FloatArray, npt.NDArray[np.str_]]:
    """Implied volatilities and, for each, why it is missing; never raises for a price.

    Parameters
    ----------
    price, F, K, T, r, call : as for `implied_volatility` ($/GPU-hr, $/GPU-hr, $/GPU-hr,
        years, per year, bool); scalars or arrays, broadcast together.

    Returns
    -------
    sigma : ndarray
        Annualized implied volatility, NaN where no volatility exists.
    reasons : ndarray of str
        Same shape: "below_intrinsic" (price below ``exp(-rT) max(±(F - K), 0)``),
        "above_upper_bound" (price at or above ``exp(-rT) F`` for a call, ``exp(-rT) K`` for a
        put), "nan_price", "not_converged" (a guard, not seen in tests) or "" where solved.
        The strings are the values of `ImpliedVolatilityReason`.

    Raises
    ------
    InvalidOptionInput
        F, K or T not positive and finite, or r not finite.

    Examples
    --------
    >>> sigma, reasons = implied_volatility_with_reasons([0.9, 1.1], 20.0, 21.0, 0.5, 0.0, False)
    >>> reasons.tolist()
    ['below_intrinsic', '']
    """
    result = implied_volatility_result(price, F, K, T, r, call)
    return result.sigma, result.reasons


def implied_volatility_result(
    price: npt.ArrayLike,
    F: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: npt.ArrayLike,
    call: npt.ArrayLike,
) -> ImpliedVolatilityResult:
    """Solve implied volatilities and report reasons, iteration counts and convergence.

    Parameters
    ----------
    price, F, K, T, r, call : as for `implied_volatility`.

    Returns
    -------
    ImpliedVolatilityResult
        ``sigma`` (per year), ``reasons``, ``iterations`` and ``converged``, arrays of the
        broadcast shape (0-d for scalar input).

    Raises
    ------
    InvalidOptionInput
        F, K or T not positive and finite, or r not finite.
    """
    premium = _float_array(price, "price")
    forward = _checked(F, "F", positive=True)
    strike = _checked(K, "K", positive=True)
    expiry = _checked(T, "T", positive=True)
    rate = _checked(r, "r", positive=False)
    is_call = _bool_array(call)
    shape = np.broadcast_shapes(*(a.shape for a in (premium, forward, strike, expiry, rate)))
    shape = np.broadcast_shapes(shape, is_call.shape)
    premium, forward, strike, expiry, rate = (
        np.broadcast_to(a, shape).ravel() for a in (premium, forward, strike, expiry, rate)
    )
    sign = np.where(np.broadcast_to(is_call, shape).ravel(), 1.0, -1.0)

    discount = np.exp(-rate * expiry)
    intrinsic = discount * np.maximum(sign * (forward - strike), 0.0)
    # Put-call parity: an in-the-money option's time value is the price of its out-of-the-money
    # twin, so every option becomes an out-of-the-money call on the normalized forward.
    time_value = premium - intrinsic
    log_moneyness = -np.abs(np.log(forward / strike))
    normalized = time_value / (discount * np.sqrt(forward * strike))
    normalized_max = np.exp(0.5 * log_moneyness)
    rounding = INTRINSIC_ROUNDING_ULPS * EPSILON * discount * np.maximum(forward, strike)

    codes = np.zeros(premium.shape, dtype=np.int8)
    codes[np.isnan(premium)] = _REASON_CODES[ImpliedVolatilityReason.NAN_PRICE]
    codes[time_value < -rounding] = _REASON_CODES[ImpliedVolatilityReason.BELOW_INTRINSIC]
    codes[normalized >= normalized_max] = _REASON_CODES[ImpliedVolatilityReason.ABOVE_UPPER_BOUND]
    stdev = np.where(codes == 0, 0.0, np.nan)
    iterations = np.zeros(premium.shape, dtype=np.int32)
    converged = codes == 0
    solvable = np.flatnonzero((codes == 0) & (normalized > 0.0))
    if solvable.size:
        solved = _solve_normalized(log_moneyness[solvable], normalized[solvable])
        stdev[solvable], iterations[solvable], converged[solvable] = solved
        failed = solvable[~solved[2]]
        codes[failed] = _REASON_CODES[ImpliedVolatilityReason.NOT_CONVERGED]
        stdev[failed] = np.nan
    sigma = stdev / np.sqrt(expiry)
    return ImpliedVolatilityResult(
        sigma=sigma.reshape(shape),
        reasons=_REASON_STRINGS[codes].reshape(shape),
        iterations=iterations.reshape(shape),
        converged=converged.reshape(shape),
    )


def _solve_normalized(
    log_moneyness: FloatArray, normalized: FloatArray
) -> tuple[FloatArray, IntArray, BoolArray]:
    """Solve ``b(x, s) = beta`` for s, with x <= 0 and 0 < beta < e^{x/2} (all checked)."""
    x, beta = log_moneyness, normalized
    beta_max = np.exp(0.5 * x)
    inflection = np.sqrt(-2.0 * x)
    # b at the inflection point, where d1 = 0 and d2 = -s_c.
    beta_inflection = 0.5 * beta_max - _ndtr(-inflection) / beta_max
    lower = beta < beta_inflection
    stdev = np.empty_like(x)
    iterations = np.empty(x.shape, dtype=np.int32)
    converged = np.empty(x.shape, dtype=np.bool_)

    below = np.flatnonzero(lower)
    if below.size:
        x_below, inflection_below = x[below], inflection[below]
        target = np.log(beta[below])
        # Jäckel's lower guess: exact at s_c, asymptotically exact as beta -> 0.
        guess = np.sqrt(
            2.0 * x_below**2 / (-x_below - 4.0 * (target - np.log(beta_inflection[below])))
        )
        bracket_high = inflection_below * (1.0 + REGION_BRACKET_MARGIN)
        solution = _halley(
            x_below, target, guess, np.zeros_like(guess), bracket_high, _lower_objective
        )
        stdev[below], iterations[below], converged[below] = solution

    above = np.flatnonzero(~lower)
    if above.size:
        x_above, inflection_above = x[above], inflection[above]
        headroom = beta_max[above] - beta[above]
        target = np.log(headroom)
        # Jäckel's upper guess: exact at s_c and as beta -> e^{x/2}, and exact for x = 0.
        fraction = headroom / (beta_max[above] - beta_inflection[above])
        guess = -2.0 * special.ndtri(fraction * _ndtr(-0.5 * inflection_above))
        bracket_low = inflection_above * (1.0 - REGION_BRACKET_MARGIN)
        bracket_high = np.full_like(guess, np.inf)
        solution = _halley(x_above, target, guess, bracket_low, bracket_high, _upper_objective)
        stdev[above], iterations[above], converged[above] = solution
    return stdev, iterations, converged


Objective = Callable[[FloatArray, FloatArray, FloatArray], tuple[FloatArray, ...]]


def _lower_objective(
    x: FloatArray, stdev: FloatArray, target: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``f = ln b(x, s) - ln beta``, increasing in s, with f' and f''/f'. For s near or below s_c.

    With ``N(d) = erfcx(-d / sqrt 2) e^{-d^2/2} / 2`` and the identity
    ``x/2 - d1^2/2 = -x/2 - d2^2/2``: ``b = e^{x/2 - d1^2/2} (erfcx(-d1/√2) - erfcx(-d2/√2)) / 2``
    and ``b'/b = sqrt(2/pi) / (erfcx(-d1/√2) - erfcx(-d2/√2))``: no underflow for tiny prices.
    """
    d1 = x / stdev + 0.5 * stdev
    difference = special.erfcx(-d1 / SQRT_TWO) - special.erfcx((stdev - d1) / SQRT_TWO)
    value = 0.5 * x - 0.5 * d1 * d1 + np.log(0.5 * difference) - target
    slope = SQRT_TWO_OVER_PI / difference
    # (ln b')' = x^2/s^3 - s/4, and (ln b)'' = (ln b')' b'/b - (b'/b)^2.
    curvature_ratio = x * x / (stdev * stdev * stdev) - 0.25 * stdev - slope
    return value, slope, curvature_ratio


def _upper_objective(
    x: FloatArray, stdev: FloatArray, target: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``f = ln(e^{x/2} - beta) - ln(e^{x/2} - b(x, s))``, increasing in s, with f' and f''/f'.

    ``e^{x/2} - b = e^{x/2} N(-d1) + e^{-x/2} N(d2)`` is a sum of positive terms (d1 >= 0 and
    d2 < 0 above s_c), written with erfcx as in `_lower_objective`.
    """
    d1 = x / stdev + 0.5 * stdev
    total = special.erfcx(d1 / SQRT_TWO) + special.erfcx((stdev - d1) / SQRT_TWO)
    value = target - (0.5 * x - 0.5 * d1 * d1 + np.log(0.5 * total))
    slope = SQRT_TWO_OVER_PI / total
    curvature_ratio = x * x / (stdev * stdev * stdev) - 0.25 * stdev + slope
    return value, slope, curvature_ratio


def _halley(
    x: FloatArray,
    target: FloatArray,
    guess: FloatArray,
    bracket_low: FloatArray,
    bracket_high: FloatArray,
    objective: Objective,
) -> tuple[FloatArray, IntArray, BoolArray]:
    """Safeguarded Halley iterations on an increasing objective, all options at once.

    Each step first narrows the bracket with the sign of f, then takes the Halley step (Newton
    where Halley's denominator is unreliable) and bisects instead when that leaves the bracket
    (doubling while the bracket is unbounded above). Options leave the working set as they
    converge, so later iterations only touch the stragglers.
    """
    stdev = guess.copy()
    iterations = np.full(x.shape, SOLVER_ITERATIONS_MAX, dtype=np.int32)
    converged = np.zeros(x.shape, dtype=np.bool_)
    active = np.arange(x.size)
    low, high = bracket_low.copy(), bracket_high.copy()
    current = _inside_or_bisected(guess, low, high)
    with np.errstate(all="ignore"):
        for iteration in range(1, SOLVER_ITERATIONS_MAX + 1):
            value, slope, curvature_ratio = objective(x, current, target)
            too_low = value < 0.0
            low = np.where(too_low, current, low)
            high = np.where(too_low, high, current)
            newton = value / slope
            denominator = 1.0 - 0.5 * newton * curvature_ratio
            step = np.where(denominator >= HALLEY_DENOMINATOR_MIN, newton / denominator, newton)
            following = _inside_or_bisected(current - step, low, high)
            done = (np.abs(following - current) <= SOLVER_STEP_RELATIVE_TOLERANCE * following) | (
                value == 0.0
            )
            finished = active[done]
            stdev[finished] = np.where(value[done] == 0.0, current[done], following[done])
            iterations[finished] = iteration
            converged[finished] = True
            keep = ~done
            if not keep.any():
                break
            active = active[keep]
            x, target, low, high = x[keep], target[keep], low[keep], high[keep]
            current = following[keep]
        else:
            stdev[active] = current
    return stdev, iterations, converged


def _inside_or_bisected(candidate: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    """The candidate where it lies strictly inside (low, high), else the bisection point."""
    inside = (candidate > low) & (candidate < high)  # False for NaN
    bisection = np.where(np.isinf(high), 2.0 * low + 1.0, 0.5 * (low + high))
    result: FloatArray = np.where(inside, candidate, bisection)
    return result


def _d1(forward: FloatArray, strike: FloatArray, stdev: FloatArray) -> FloatArray:
    """d1 = ln(F/K)/s + s/2 with its limits where s = 0: +-inf, or 0 at the strike."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d1: FloatArray = np.log(forward / strike) / stdev + 0.5 * stdev
    if np.any(stdev == 0):
        # ln(F/K)/0 is +-inf, the limit; only 0/0 at the strike is NaN, and its limit is 0.
        d1 = np.where(np.isnan(d1), 0.0, d1)
    return d1


def _ndtr(values: Any) -> FloatArray:
    """Standard normal CDF (scipy's ufunc has no type stubs)."""
    result: FloatArray = special.ndtr(values)
    return result


def _float_array(value: npt.ArrayLike, name: str) -> FloatArray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidOptionInput(f"{name} must be numeric") from error


def _checked(value: npt.ArrayLike, name: str, *, positive: bool) -> FloatArray:
    """The value as a float array; finite, and positive when asked (NaN fails both)."""
    array = _float_array(value, name)
    if positive and not np.all(array > 0.0):
        raise InvalidOptionInput(f"{name} must be positive")
    if not np.all(np.isfinite(array)):
        raise InvalidOptionInput(f"{name} must be finite")
    return array


def _checked_inputs(
    F: npt.ArrayLike, K: npt.ArrayLike, T: npt.ArrayLike, r: npt.ArrayLike, sigma: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Float arrays of the pricing inputs, each checked against the domain of `price`."""
    expiry = _checked(T, "T", positive=False)
    if not np.all(expiry >= 0.0):
        raise InvalidOptionInput("T must be non-negative")
    volatility = _checked(sigma, "sigma", positive=False)
    if not np.all(volatility >= 0.0):
        raise InvalidOptionInput("sigma must be non-negative")
    forward = _checked(F, "F", positive=True)
    strike = _checked(K, "K", positive=True)
    return forward, strike, expiry, _checked(r, "r", positive=False), volatility


def _bool_array(call: npt.ArrayLike) -> BoolArray:
    array = np.asarray(call)
    if array.dtype != np.bool_:
        raise InvalidOptionInput(f"call must be a bool or bool array, not {array.dtype}")
    return array


def _call_sign(call: npt.ArrayLike) -> FloatArray:
    """+1.0 for calls, -1.0 for puts (two arithmetic passes: cheaper than np.where)."""
    is_call = _bool_array(call)
    sign: FloatArray = 2.0 * is_call - 1.0
    return sign


def _all_scalars(arguments: tuple[object, ...]) -> bool:
    return not any(isinstance(a, np.ndarray) or np.ndim(a) > 0 for a in arguments)


def _as_output(value: FloatArray, arguments: tuple[object, ...]) -> float | FloatArray:
    """A float for all-scalar arguments, else the array (in the broadcast shape)."""
    if _all_scalars(arguments):
        return float(value)
    return value
