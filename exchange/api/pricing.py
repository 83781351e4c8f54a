"""Pricing calculators (public): Black-76 option quotes with Greeks, implied volatilities, and
hedge recommendations for a planned need of GPU-hours. They compute; they read only market
data. Prices are strings of USD per GPU-hour, costs strings of USD, volatilities and rates
per year (0.60 is 60%)."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from datetime import date
from decimal import Decimal
from typing import Any

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer
from exchange.api.fields import CodeRelatedField, DecimalStringField, IntegerInputField
from exchange.api.market import PRICE, instrument_or_404
from exchange.api.trading import PriceInputField
from exchange.api.views import ApiView
from exchange.models import Instrument, Region, Sku
from exchange.selectors.marks import MarkSource
from exchange.services.hedging import (
    GPUS_MAX,
    HEDGE_MONTHS_MAX,
    HEDGE_VOLATILITY_MAX,
    SellHedge,
    hedge_recommendation,
)
from exchange.services.margin import VolatilitySource
from exchange.services.option_pricing import (
    PRICE_MAX,
    PRICE_MIN,
    RATE_MAX,
    RATE_MIN,
    VOLATILITY_MAX,
    YEARS_MAX,
    option_implied_volatility,
    option_quote,
    option_quote_of_instrument,
    years_until,
)
from pricing.hedge import Side

GREEK = {"max_digits": 32, "decimal_places": 8}
USD = {"max_digits": 30, "decimal_places": 2}
VOLATILITY = {"max_digits": 16, "decimal_places": 6}
RATE = {"max_digits": 8, "decimal_places": 6}
YEARS = {"max_digits": 10, "decimal_places": 8}
TERMS = ("forward", "strike", "expiry", "years", "option_type")
# Decimals in a request are strings written out in digits, as many as each field keeps (a JSON
# number is read as a float, which these never are): no exponent, no spaces, a sign only where
# the value may be negative (a rate).
VOLATILITY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,6})?$"
YEARS_PATTERN = r"^[0-9]{1,2}(\.[0-9]{1,8})?$"
RATE_PATTERN = r"^-?[0-9]{1,2}(\.[0-9]{1,6})?$"
# Public, but a request that sends a bad key is refused (401), as is one over the rate (429).
ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 422: ErrorSerializer, 429: ErrorSerializer}


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": VOLATILITY_PATTERN, "example": "0.60"}
)
class VolatilityInputField(DecimalStringField):
    """An annualized volatility as a decimal string (0.60 is 60%)."""

    pattern = VOLATILITY_PATTERN
    default_error_messages = {"format": 'A volatility is a decimal string such as "0.60".'}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**VOLATILITY, min_value=Decimal(0), **kwargs)


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": YEARS_PATTERN, "example": "0.5"}
)
class YearsInputField(DecimalStringField):
    """A time in years as a decimal string."""

    pattern = YEARS_PATTERN
    default_error_messages = {"format": 'A time in years is a decimal string such as "0.5".'}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**YEARS, min_value=Decimal(0), max_value=YEARS_MAX, **kwargs)


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": RATE_PATTERN, "example": "0.045"}
)
class RateInputField(DecimalStringField):
    """A rate per year as a decimal string, negative ones signed."""

    pattern = RATE_PATTERN
    default_error_messages = {"format": 'A rate is a decimal string such as "0.045" or "-0.01".'}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**RATE, min_value=RATE_MIN, max_value=RATE_MAX, **kwargs)


def _price_field(help_text: str, **options: Any) -> PriceInputField:
    return PriceInputField(min_value=PRICE_MIN, max_value=PRICE_MAX, help_text=help_text, **options)


def _rate_field() -> RateInputField:
    return RateInputField(
        required=False,
        help_text="Continuously compounded per year; the exchange's risk-free rate if omitted.",
    )


class OptionTermsSerializer(serializers.Serializer):
    """Forward, strike, time to expiry (``expiry`` or ``years``), rate and type."""

    forward = _price_field("Forward (futures) price, $/GPU-hr.", required=False)
    strike = _price_field("Strike, $/GPU-hr.", required=False)
    expiry = serializers.DateField(
        required=False, help_text="Expiry date, today or later (Actual/365); or give years."
    )
    years = YearsInputField(required=False, help_text="Time to expiry in years; or give expiry.")
    rate = _rate_field()
    option_type = serializers.ChoiceField(choices=Instrument.OptionType.choices, required=False)

    def validate_expiry(self, value: date) -> date:
        today = timezone.now().date()
        if value < today:
            raise serializers.ValidationError("The expiry is in the past.")
        if years_until(value, today) > YEARS_MAX:
            raise serializers.ValidationError(f"The expiry is more than {YEARS_MAX} years away.")
        return value

    def check_terms(self, attrs: dict[str, Any], required: tuple[str, ...]) -> None:
        for name in required:
            if name not in attrs:
                raise serializers.ValidationError({name: "This field is required."})
        if ("expiry" in attrs) == ("years" in attrs):
            raise serializers.ValidationError({"years": "Give either expiry or years."})


class OptionQuoteSerializer(OptionTermsSerializer):
    instrument = serializers.CharField(
        required=False,
        max_length=64,
        help_text=(
            "An option's symbol: its strike, expiry and type, its underlying's reference price "
            "and, without a volatility, the one the option chain values it at are used (give "
            "no terms with it)."
        ),
    )
    volatility = VolatilityInputField(
        max_value=VOLATILITY_MAX,
        required=False,
        help_text="Annualized; required without instrument.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "instrument" in attrs:
            for name in TERMS:
                if name in attrs:
                    raise serializers.ValidationError(
                        {name: "Give either instrument or the option's terms."}
                    )
        else:
            self.check_terms(attrs, ("forward", "strike", "option_type", "volatility"))
        return attrs


def _volatility_source_field(help_text: str) -> serializers.ChoiceField:
    """A ``margin.VolatilitySource`` (a listed option's, or a hedged month's), null where there
    is none."""
    return serializers.ChoiceField(
        choices=[source.value for source in VolatilitySource], allow_null=True, help_text=help_text
    )


class OptionValuationSerializer(serializers.Serializer):
    instrument = serializers.CharField(allow_null=True)
    option_type = serializers.CharField()
    forward = serializers.DecimalField(
        **PRICE,
        help_text=(
            "$/GPU-hr. For a listed option, its future's, as the option chain takes it: the most "
            "recent of the latest settlement price and the last trade, else the mid."
        ),
    )
    forward_source = serializers.ChoiceField(
        choices=MarkSource.choices,
        allow_null=True,
        help_text="Where a listed option's forward comes from: settlement, trade or mid; null "
        "for terms given.",
    )
    strike = serializers.DecimalField(**PRICE)
    expiry = serializers.DateField(allow_null=True)
    years = serializers.DecimalField(**YEARS)
    rate = serializers.DecimalField(**RATE)
    volatility = serializers.DecimalField(**VOLATILITY)
    volatility_source = _volatility_source_field(
        "Where a listed option's volatility comes from, as for a hedge's option leg: implied, "
        "chain, historical, default, or requested (the request's volatility); null for terms "
        "given."
    )
    price = serializers.DecimalField(**PRICE, help_text="Black-76 value, $/GPU-hr.")
    delta = serializers.DecimalField(**GREEK, help_text="dV/dF.")
    gamma = serializers.DecimalField(
        **GREEK, allow_null=True, help_text="d2V/dF2; null where infinite (at the strike, T=0)."
    )
    vega = serializers.DecimalField(**GREEK, help_text="dV/dsigma per 1.00 of volatility.")
    theta = serializers.DecimalField(
        **GREEK,
        allow_null=True,
        help_text="Per year of calendar time; null where infinite (at the strike, T=0).",
    )
    rho = serializers.DecimalField(**GREEK, help_text="dV/dr per 1.00 of rate.")


class OptionQuote(ApiView):
    required_scope = None

    @extend_schema(
        request=OptionQuoteSerializer,
        responses={200: OptionValuationSerializer, 404: ErrorSerializer, **ERRORS},
        summary="Black-76 value and Greeks of an option: given terms, or a listed option",
    )
    def post(self, request: Request) -> Response:
        query = OptionQuoteSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        data = dict(query.validated_data)
        symbol = data.pop("instrument", None)
        if symbol is not None:
            quote = option_quote_of_instrument(instrument_or_404(symbol), **data)
        else:
            quote = option_quote(**data)
        return Response(OptionValuationSerializer(quote).data)


class ImpliedVolatilitySerializer(OptionTermsSerializer):
    price = PriceInputField(
        min_value=Decimal(0),
        max_value=PRICE_MAX,
        help_text="Option price, $/GPU-hr, discounted like Black-76 values.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self.check_terms(attrs, ("forward", "strike", "option_type"))
        return attrs


class ImpliedVolatilityResultSerializer(serializers.Serializer):
    implied_volatility = serializers.DecimalField(**VOLATILITY, help_text="Annualized.")


class ImpliedVolatility(ApiView):
    required_scope = None

    @extend_schema(
        request=ImpliedVolatilitySerializer,
        responses={200: ImpliedVolatilityResultSerializer, **ERRORS},
        summary="Black-76 implied volatility of an option price",
        description=(
            "422 PRICING_PRICE_BELOW_INTRINSIC or PRICING_PRICE_ABOVE_UPPER_BOUND when no "
            "volatility gives the price; PRICING_INVALID_INPUT when no time is left."
        ),
    )
    def post(self, request: Request) -> Response:
        query = ImpliedVolatilitySerializer(data=request.data)
        query.is_valid(raise_exception=True)
        sigma = option_implied_volatility(**query.validated_data)
        return Response(ImpliedVolatilityResultSerializer({"implied_volatility": sigma}).data)


class HedgeSerializer(serializers.Serializer):
    side = serializers.ChoiceField(
        choices=[side.value for side in Side],
        default=Side.BUY.value,
        help_text=(
            "buy (the default): a planned need, hedged by buying (futures strip, call cap, "
            "collar; costs). sell: a planned capacity to sell, hedged by selling (futures "
            "strip sold, put floor, collar; revenues)."
        ),
    )
    sku = CodeRelatedField(slug_field="code", queryset=Sku.objects.all())
    region = CodeRelatedField(slug_field="code", queryset=Region.objects.all())
    gpus = IntegerInputField(
        min_value=1, max_value=GPUS_MAX, help_text="GPUs needed (buy) or to sell (sell)."
    )
    first_month = serializers.RegexField(
        r"^\d{4}-(0[1-9]|1[0-2])$", help_text="First delivery month, YYYY-MM."
    )
    months = IntegerInputField(
        min_value=1, max_value=HEDGE_MONTHS_MAX, help_text="Consecutive delivery months."
    )
    volatility = VolatilityInputField(
        max_value=HEDGE_VOLATILITY_MAX,
        required=False,
        help_text=(
            "Annualized: the simulated prices' and every option leg's. If omitted, each option "
            "leg is valued at its own, as the option chain values it, and each month's prices "
            "are simulated at the volatility of its option bought (a buyer's call, a seller's "
            "put), else its future's historical volatility, else the exchange's default."
        ),
    )
    rate = _rate_field()

    def validate_side(self, value: str) -> Side:
        return Side(value)

    def validate_first_month(self, value: str) -> date:
        year, month = (int(part) for part in value.split("-"))
        if year < 1:
            raise serializers.ValidationError("Year 0000 is not a month.")
        return date(year, month, 1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        first = attrs["first_month"]
        if first.year * 12 + first.month + attrs["months"] - 1 > date.max.year * 12 + 12:
            raise serializers.ValidationError({"months": "The need runs past the year 9999."})
        return attrs


class HedgeCostSerializer(serializers.Serializer):
    expected_cost = serializers.DecimalField(**USD, help_text="USD, the mean of the simulation.")
    worst_case_cost = serializers.DecimalField(**USD, help_text="USD, its 95th percentile.")


class HedgeOrdersSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(help_text="Contracts per order: whole lots.")
    count = serializers.IntegerField(help_text="Orders of that quantity.")


ORDERS_HELP = (
    "The contracts as orders the instrument accepts: each at most its maximum order size "
    "(quantity_max), in whole lots, the fewest such orders; empty when unavailable."
)


class HedgeFuturesLegSerializer(serializers.Serializer):
    month = serializers.DateField()
    symbol = serializers.CharField()
    forward = serializers.DecimalField(**PRICE, help_text="The month's curve price, $/GPU-hr.")
    source = serializers.CharField(help_text="settlement, mid, last_trade or model")
    gpu_hours_per_contract = serializers.IntegerField()
    available = serializers.BooleanField(
        help_text=(
            "False when the future is not traded (halted, no order on it can be placed, or "
            "priced at 0): contracts is 0."
        )
    )
    reason = serializers.CharField(help_text="Why the leg is unavailable; empty when available.")
    contracts = serializers.IntegerField(
        help_text=(
            "To buy (side buy) or sell (side sell): the GPUs rounded up to whole lots; 0 when "
            "unavailable."
        )
    )
    lot_size = serializers.IntegerField(help_text="The future's, contracts.")
    orders = HedgeOrdersSerializer(many=True, help_text=ORDERS_HELP)
    volatility = serializers.DecimalField(
        **VOLATILITY,
        allow_null=True,
        help_text=(
            "Annualized: the one the month's prices are simulated at (the costs or revenues, "
            "whether an option is exercised), at most 5; null for a month priced at 0."
        ),
    )
    volatility_source = _volatility_source_field(
        "requested (the request's volatility, every month's); else the volatility of the "
        "month's option the side buys (a buyer's call, a seller's put), as its leg's "
        "volatility_source: implied, chain, historical or default; else, a month without it, "
        "its future's: historical, or default."
    )


class HedgeOptionLegSerializer(serializers.Serializer):
    month = serializers.DateField()
    underlying = serializers.CharField(help_text="The month's future.")
    option_type = serializers.CharField()
    available = serializers.BooleanField(
        help_text=(
            "False when no listed option carries the leg: none on the protective side of the "
            "target, the one there halted or taking no order, the option the collar buys "
            "missing (for the one it sells), or the month priced at 0."
        )
    )
    reason = serializers.CharField(help_text="Why the leg is unavailable; empty when available.")
    target_strike = serializers.DecimalField(
        **PRICE, help_text="The aim: 10% over (calls) or under (puts) the forward, $/GPU-hr."
    )
    symbol = serializers.CharField(allow_null=True, help_text="The listed option to trade.")
    strike = serializers.DecimalField(
        **PRICE,
        allow_null=True,
        help_text=(
            "The listed option's strike: the lowest at or above the target for a call, the "
            "highest at or below it for a put."
        ),
    )
    expiry = serializers.DateField(allow_null=True, help_text="The option's last trading day.")
    years_to_expiry = serializers.DecimalField(**YEARS, allow_null=True)
    price = serializers.DecimalField(
        **PRICE,
        source="value",
        allow_null=True,
        help_text="Black-76 value at the strike, expiry and volatility, $/GPU-hr.",
    )
    volatility = serializers.DecimalField(
        **VOLATILITY,
        allow_null=True,
        help_text="Annualized: the one the option is valued at (price, premium).",
    )
    volatility_source = _volatility_source_field(
        "implied (its latest settlement's, from the market or an override), chain (its latest "
        "settlement is the model's, at its own earlier, its siblings' or its future's "
        "historical volatility), historical (not settled yet: its future's historical "
        "volatility), default, or requested (the request's volatility)."
    )
    premium = serializers.DecimalField(
        **USD,
        allow_null=True,
        help_text="USD for the contracts: price x GPU-hours, paid if bought, received if sold.",
    )
    contracts = serializers.IntegerField(
        help_text="To trade: the GPUs rounded up to whole lots; 0 when unavailable."
    )
    lot_size = serializers.IntegerField(allow_null=True, help_text="The option's, contracts.")
    orders = HedgeOrdersSerializer(many=True, help_text=ORDERS_HELP)


class HedgeFuturesSerializer(serializers.Serializer):
    legs = HedgeFuturesLegSerializer(many=True, source="futures")
    expected_cost = serializers.DecimalField(**USD, source="futures_outcome.expected_cost")
    worst_case_cost = serializers.DecimalField(**USD, source="futures_outcome.worst_case_cost")


class HedgeCapSerializer(serializers.Serializer):
    calls = HedgeOptionLegSerializer(
        many=True, help_text="Calls to buy: the listed strike nearest 10% over, at or above it."
    )
    premium = serializers.DecimalField(
        **USD, source="cap_outcome.premium", help_text="The calls' premiums."
    )
    expected_cost = serializers.DecimalField(**USD, source="cap_outcome.expected_cost")
    worst_case_cost = serializers.DecimalField(**USD, source="cap_outcome.worst_case_cost")


class HedgeCollarSerializer(serializers.Serializer):
    calls = HedgeOptionLegSerializer(
        many=True, help_text="Calls to buy: the listed strike nearest 10% over, at or above it."
    )
    puts = HedgeOptionLegSerializer(
        many=True, help_text="Puts to sell: the listed strike nearest 10% under, at or below it."
    )
    premium = serializers.DecimalField(
        **USD, source="collar_outcome.premium", help_text="Net of the puts' premium."
    )
    expected_cost = serializers.DecimalField(**USD, source="collar_outcome.expected_cost")
    worst_case_cost = serializers.DecimalField(**USD, source="collar_outcome.worst_case_cost")


class _HedgeAnswerSerializer(serializers.Serializer):
    """What a buyer's and a seller's answers share, first in both."""

    sku = serializers.CharField()
    region = serializers.CharField()
    gpus = serializers.IntegerField()
    volatility = serializers.DecimalField(
        **VOLATILITY,
        help_text=(
            "The one requested, which every month's prices are simulated at; else the "
            "exchange's default, the one a month with neither an option's volatility nor a "
            "history of its future is simulated at. Each month's is on its futures leg "
            "(volatility, volatility_source)."
        ),
    )
    rate = serializers.DecimalField(**RATE)


class HedgeRecommendationSerializer(_HedgeAnswerSerializer):
    unhedged = HedgeCostSerializer(help_text="Paying each month's price when it comes.")
    futures = HedgeFuturesSerializer(source="*", help_text="Buying the strip at its forwards.")
    cap = HedgeCapSerializer(source="*")
    collar = HedgeCollarSerializer(source="*")


class SellHedgeRevenueSerializer(serializers.Serializer):
    expected_revenue = serializers.DecimalField(**USD, help_text="USD, the mean of the simulation.")
    worst_case_revenue = serializers.DecimalField(
        **USD, help_text="USD, its 5th percentile: the 95% worst case of a seller."
    )


class SellHedgeFuturesSerializer(serializers.Serializer):
    legs = HedgeFuturesLegSerializer(many=True, source="futures")
    expected_revenue = serializers.DecimalField(**USD, source="futures_outcome.expected_revenue")
    worst_case_revenue = serializers.DecimalField(
        **USD, source="futures_outcome.worst_case_revenue"
    )


PUTS_TO_BUY = "Puts to buy: the listed strike nearest 10% under, at or below it."


class SellHedgeFloorSerializer(serializers.Serializer):
    puts = HedgeOptionLegSerializer(many=True, help_text=PUTS_TO_BUY)
    premium = serializers.DecimalField(
        **USD, source="floor_outcome.premium", help_text="The puts' premiums, paid."
    )
    expected_revenue = serializers.DecimalField(**USD, source="floor_outcome.expected_revenue")
    worst_case_revenue = serializers.DecimalField(**USD, source="floor_outcome.worst_case_revenue")


class SellHedgeCollarSerializer(serializers.Serializer):
    puts = HedgeOptionLegSerializer(many=True, help_text=PUTS_TO_BUY)
    calls = HedgeOptionLegSerializer(
        many=True, help_text="Calls to sell: the listed strike nearest 10% over, at or above it."
    )
    premium = serializers.DecimalField(
        **USD, source="collar_outcome.premium", help_text="The puts' net of the calls' premium."
    )
    expected_revenue = serializers.DecimalField(**USD, source="collar_outcome.expected_revenue")
    worst_case_revenue = serializers.DecimalField(**USD, source="collar_outcome.worst_case_revenue")


class SellHedgeRecommendationSerializer(_HedgeAnswerSerializer):
    """A seller's answer: its own shape (``side``, revenues, ``floor``), so that it cannot be
    read as a buyer's."""

    side = serializers.CharField(help_text="sell")
    unhedged = SellHedgeRevenueSerializer(help_text="Earning each month's price when it comes.")
    futures = SellHedgeFuturesSerializer(source="*", help_text="Selling the strip at its forwards.")
    floor = SellHedgeFloorSerializer(source="*")
    collar = SellHedgeCollarSerializer(source="*")


class Hedge(ApiView):
    required_scope = None

    @extend_schema(
        request=HedgeSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="HedgeAnswer",
                serializers=[HedgeRecommendationSerializer, SellHedgeRecommendationSerializer],
                resource_type_field_name=None,
            ),
            404: ErrorSerializer,
            **ERRORS,
        },
        summary=(
            "Hedge a planned need of GPUs (futures strip, call cap and collar, with costs) or "
            "a capacity to sell (strip sold, put floor and collar, with revenues)"
        ),
        description=(
            "Costs (side buy) or revenues (side sell) are simulated around the SKU and "
            "region's forward curve (seeded: results repeat). Option legs are listed options, "
            "valued at their strike and expiry and at the volatility requested, else their own "
            "as the option chain values them; a month without one has the leg unavailable "
            "(the cap, floor or collar leaves that month unhedged). A buy answer is a "
            "HedgeRecommendation; a sell answer a SellHedgeRecommendation, with side sell. "
            "422 PRICING_NO_FUTURES, PRICING_NO_PRICES or PRICING_MONTH_NOT_LISTED when the "
            "months cannot be hedged with listed futures."
        ),
    )
    def post(self, request: Request) -> Response:
        query = HedgeSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        recommendation = hedge_recommendation(**query.validated_data)
        if isinstance(recommendation, SellHedge):
            return Response(SellHedgeRecommendationSerializer(recommendation).data)
        return Response(HedgeRecommendationSerializer(recommendation).data)


urlpatterns = [
    path("pricing/option-quote/", OptionQuote.as_view(), name="pricing-option-quote"),
    path(
        "pricing/implied-volatility/",
        ImpliedVolatility.as_view(),
        name="pricing-implied-volatility",
    ),
    path("pricing/hedge/", Hedge.as_view(), name="pricing-hedge"),
]
