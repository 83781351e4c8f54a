"""Option quotes and implied volatilities for the API: Black-76 (``pricing.black76``) on
inputs given as Decimals, with results returned as quantized Decimals.

Floats exist only at the call into ``pricing``: inputs are converted there, and results are
converted back with `to_decimal`. Units: prices and strikes in $/GPU-hr, times in years,
rates and volatilities per year (0.60 is 60%).

Nothing here writes: these are calculators, kept beside the services whose inputs they read
(``exchange.services.margin``: volatilities, times to expiry; ``exchange.selectors.marks``:
the forward a listed option is valued at).
"""

import dataclasses
import math
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.utils import timezone

from exchange.errors import PricingError, PricingErrorCode
from exchange.models import Instrument
from exchange.selectors.marks import forward_of
from exchange.services import margin
from pricing import black76

# Bounds of the inputs the API accepts: within them every output below is finite (except the
# documented infinite Greeks) and fits its Decimal field.
PRICE_MIN = Decimal("0.000001")
PRICE_MAX = Decimal("1000000")
YEARS_MAX = Decimal("50")
# With RATE_MIN x YEARS_MAX the discount factor stays below e^12.5: values fit $1e12.
RATE_MIN = Decimal("-0.25")
RATE_MAX = Decimal("1")
VOLATILITY_MAX = Decimal("10")

PRICE_QUANTUM = Decimal("0.000001")  # $/GPU-hr.
GREEK_QUANTUM = Decimal("0.00000001")
YEARS_QUANTUM = Decimal("0.00000001")
VOLATILITY_QUANTUM = Decimal("0.000001")
DAYS_PER_YEAR = margin.DAYS_PER_YEAR


def to_decimal(value: float, quantum: Decimal) -> Decimal | None:
    """A float from ``pricing`` as a Decimal on ``quantum`` (half to even); None if infinite."""
    if not math.isfinite(value):
        return None
    return Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_EVEN)


def years_until(expiry: date, on: date) -> Decimal:
    """Years from ``on`` to ``expiry`` on an Actual/365 basis, as the margin model counts."""
    assert expiry >= on, "expiry is validated to be on or after today"
    return Decimal((expiry - on).days) / DAYS_PER_YEAR


@dataclass(frozen=True)
class OptionQuote:
    """A Black-76 value and its Greeks (see ``pricing.black76.Greeks`` for their units), with
    the inputs they were computed from. ``gamma`` and ``theta`` are None where infinite (at
    the strike with no time or no volatility left)."""

    instrument: str | None
    option_type: str
    forward: Decimal
    strike: Decimal
    expiry: date | None
    years: Decimal
    rate: Decimal
    volatility: Decimal
    price: Decimal
    delta: Decimal
    gamma: Decimal | None
    vega: Decimal
    theta: Decimal | None
    rho: Decimal
    # Where a listed option's forward comes from (``MarkSource``); None for terms given.
    forward_source: str | None = None
    # Where a listed option's volatility comes from (``margin.VolatilitySource``: requested
    # when given); None for terms given.
    volatility_source: str | None = None


def _years(years: Decimal | None, expiry: date | None, on: date) -> Decimal:
    if years is not None:
        return years
    assert expiry is not None, "one of years and expiry is validated to be given"
    return years_until(expiry, on)


def option_quote(
    *,
    forward: Decimal,
    strike: Decimal,
    option_type: str,
    volatility: Decimal,
    years: Decimal | None = None,
    expiry: date | None = None,
    rate: Decimal | None = None,
    on: date | None = None,
    instrument: str | None = None,
) -> OptionQuote:
    """Black-76 value and Greeks of a European option on a future.

    Parameters
    ----------
    forward, strike : $/GPU-hr, positive.
    option_type : "call" or "put".
    volatility : annualized, non-negative.
    years, expiry : time to expiry in years, or the expiry date (Actual/365 from ``on``).
    rate : continuously compounded per year; ``EXCHANGE_RISK_FREE_RATE`` when None.
    on : today when None.

    Raises
    ------
    PricingError
        ``PRICING_INVALID_INPUT`` for inputs outside the model's domain.

    Examples
    --------
    >>> option_quote(forward=Decimal(20), strike=Decimal(20), option_type="put",
    ...              volatility=Decimal("0.25"), years=Decimal(4) / 12, rate=Decimal("0.09")).price
    Decimal('1.116641')
    """
    on = on or timezone.now().date()
    time_to_expiry = _years(years, expiry, on)
    if rate is None:
        rate = Decimal(settings.EXCHANGE_RISK_FREE_RATE)
    call = option_type == Instrument.OptionType.CALL
    arguments = (
        float(forward),
        float(strike),
        float(time_to_expiry),
        float(rate),
        float(volatility),
        call,
    )
    try:
        value = black76.price(*arguments)
        greeks = black76.greeks(*arguments)
    except black76.InvalidOptionInput as error:
        raise PricingError(PricingErrorCode.INVALID_INPUT, str(error)) from error
    price = to_decimal(value, PRICE_QUANTUM)
    delta = to_decimal(greeks.delta, GREEK_QUANTUM)
    vega = to_decimal(greeks.vega, GREEK_QUANTUM)
    rho = to_decimal(greeks.rho, GREEK_QUANTUM)
    # Within the input bounds only gamma and theta can be infinite (at the strike, s = 0).
    assert price is not None and delta is not None and vega is not None and rho is not None
    return OptionQuote(
        instrument=instrument,
        option_type=option_type,
        forward=forward,
        strike=strike,
        expiry=expiry,
        years=time_to_expiry.quantize(YEARS_QUANTUM, rounding=ROUND_HALF_EVEN),
        rate=rate,
        volatility=volatility,
        price=price,
        delta=delta,
        gamma=to_decimal(greeks.gamma, GREEK_QUANTUM),
        vega=vega,
        theta=to_decimal(greeks.theta, GREEK_QUANTUM),
        rho=rho,
    )


def option_quote_of_instrument(
    option: Instrument,
    *,
    volatility: Decimal | None = None,
    rate: Decimal | None = None,
    on: date | None = None,
) -> OptionQuote:
    """`option_quote` of a listed option: its strike and expiry, its underlying's forward
    (``exchange.selectors.marks.forward_of``, as the option chain takes it: the most recent of
    the latest settlement price and the last trade, else the mid) and, unless given, the
    volatility the chain and the margin model value it at (``margin.option_volatility``: its
    latest settlement's implied volatility, else its future's historical volatility, else
    ``EXCHANGE_DEFAULT_VOLATILITY``), with where it came from (``volatility_source``:
    ``requested`` when given).

    Raises
    ------
    PricingError
        ``PRICING_NOT_AN_OPTION``, ``PRICING_OPTION_EXPIRED`` (past its last trading day) or
        ``PRICING_NO_REFERENCE_PRICE`` (the underlying has no settlement, trade or two-sided
        quote).
    """
    on = on or timezone.now().date()
    if option.kind != Instrument.Kind.OPTION:
        raise PricingError(
            PricingErrorCode.NOT_AN_OPTION, f"{option.symbol} is not an option.", field="instrument"
        )
    assert option.underlying is not None and option.strike is not None
    if option.status == Instrument.Status.EXPIRED or on > option.last_trading_day:
        raise PricingError(
            PricingErrorCode.OPTION_EXPIRED, f"{option.symbol} has expired.", field="instrument"
        )
    forward = forward_of(option.underlying)
    if forward is None:
        raise PricingError(
            PricingErrorCode.NO_REFERENCE_PRICE,
            f"{option.underlying.symbol} has no settlement price, trade or bid and ask yet.",
            field="instrument",
        )
    if volatility is None:
        own = margin.option_volatility(option)
        volatility, source = Decimal(repr(own.sigma)), own.source
    else:
        source = margin.VolatilitySource.REQUESTED
    quote = option_quote(
        forward=forward.price,
        strike=option.strike,
        option_type=option.option_type,
        volatility=volatility,
        # The margin model's time: at least an hour, so an option is valued as it expires.
        years=Decimal(repr(margin.years_to_expiry(option, on))),
        expiry=option.last_trading_day,
        rate=rate,
        on=on,
        instrument=option.symbol,
    )
    return dataclasses.replace(quote, forward_source=forward.source, volatility_source=str(source))


_BOUND_CODES = {
    black76.ImpliedVolatilityReason.BELOW_INTRINSIC: PricingErrorCode.PRICE_BELOW_INTRINSIC,
    black76.ImpliedVolatilityReason.ABOVE_UPPER_BOUND: PricingErrorCode.PRICE_ABOVE_UPPER_BOUND,
}


def option_implied_volatility(
    *,
    price: Decimal,
    forward: Decimal,
    strike: Decimal,
    option_type: str,
    years: Decimal | None = None,
    expiry: date | None = None,
    rate: Decimal | None = None,
    on: date | None = None,
) -> Decimal:
    """The annualized Black-76 volatility that gives ``price`` (the inputs as for
    `option_quote`; T must be positive), to 6 decimals.

    Raises
    ------
    PricingError
        ``PRICING_PRICE_BELOW_INTRINSIC`` or ``PRICING_PRICE_ABOVE_UPPER_BOUND`` (no volatility
        gives the price), ``PRICING_INVALID_INPUT`` (say no time left), ``PRICING_NOT_CONVERGED``
        (the solver's guard).
    """
    on = on or timezone.now().date()
    time_to_expiry = _years(years, expiry, on)
    if rate is None:
        rate = Decimal(settings.EXCHANGE_RISK_FREE_RATE)
    try:
        sigma = black76.implied_volatility(
            float(price),
            float(forward),
            float(strike),
            float(time_to_expiry),
            float(rate),
            option_type == Instrument.OptionType.CALL,
        )
    except black76.PriceOutsideBounds as error:
        raise PricingError(_BOUND_CODES[error.reason], str(error), field="price") from error
    except black76.InvalidOptionInput as error:
        raise PricingError(PricingErrorCode.INVALID_INPUT, str(error)) from error
    except black76.ImpliedVolatilityNotConverged as error:
        raise PricingError(PricingErrorCode.NOT_CONVERGED, str(error)) from error
    result = to_decimal(sigma, VOLATILITY_QUANTUM)
    if result is None:
        raise PricingError(PricingErrorCode.NOT_CONVERGED, "No finite volatility found.")
    return result
