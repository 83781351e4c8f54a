"""Market data (public): instruments, L2 book, trades, candles, settlement prices, forward
curves and option chains. Prices are strings of USD per GPU-hour; quantities contracts."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from datetime import date
from typing import Any

from django.conf import settings
from django.http import Http404
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer
from exchange.api.fields import CodeRelatedField, QuerySerializer
from exchange.api.views import ApiView
from exchange.models import Instrument, Region, SettlementPrice, Sku
from exchange.selectors import market, risk
from exchange.selectors.market_data import (
    CANDLE_INTERVALS,
    CANDLES_MAX,
    candles,
    forward_curve,
)
from exchange.selectors.marks import MarkSource
from exchange.services.orders import position_limit, price_limits
from exchange.symbols import parse_symbol

PRICE = {"max_digits": 18, "decimal_places": 6}
BAD_INPUT = {400: ErrorSerializer}
NOT_FOUND = {404: ErrorSerializer}
# Public, but a request that sends a bad key is refused (401), as is one over the rate (429).
REFUSED = {401: ErrorSerializer, 429: ErrorSerializer}


class InstrumentSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="sku.code")
    region = serializers.CharField(source="region.code")
    underlying = serializers.CharField(source="underlying.symbol", allow_null=True, default=None)
    halted_by = serializers.CharField(
        source="halted_by.symbol",
        allow_null=True,
        default=None,
        read_only=True,
        help_text="For an option whose future is halted, the future's symbol: the option is "
        "halted with it (an order is refused with ORDER_INSTRUMENT_HALTED) until it resumes, "
        "while its own status stays as it is. Null otherwise.",
    )
    trading_ends_at = serializers.DateTimeField(
        read_only=True,
        help_text="When it stops trading: the close of its last trading day (UTC). An order "
        "from then on is refused with ORDER_INSTRUMENT_EXPIRED, though its status stays "
        "active until the daily cycle expires it.",
    )

    class Meta:
        model = Instrument
        fields = [
            "symbol",
            "kind",
            "status",
            "sku",
            "region",
            "tick_size",
            "lot_size",
            "gpu_hours_per_contract",
            "price_max",
            "quantity_max",
            "delivery_start",
            "delivery_end",
            "last_trading_day",
            "trading_ends_at",
            "settlement",
            "underlying",
            "halted_by",
            "option_type",
            "strike",
        ]


class InstrumentDetailSerializer(InstrumentSerializer):
    price_limit_low = serializers.SerializerMethodField(
        help_text="A future's lowest sell price accepted now, its mark less EXCHANGE_PRICE_LIMIT "
        "(a sell below it is refused with ORDER_PRICE_OUTSIDE_LIMIT); null for an option, a "
        "resale listing or a future with no mark yet, which have no price limits."
    )
    price_limit_high = serializers.SerializerMethodField(
        help_text="A future's highest buy price accepted now, its mark plus EXCHANGE_PRICE_LIMIT; "
        "null as price_limit_low."
    )

    position_limit = serializers.SerializerMethodField(
        help_text="The most contracts one organization, all its accounts together, may hold net "
        "in the future (an option: its future) with the future's options, each option one "
        "contract on the side of its exposure (a long call or short put long, a long put or "
        "short call short), worst case with its resting orders on that side: an order that "
        "could go beyond it is refused with RISK_POSITION_LIMIT, one that reduces the "
        "position never. Null for a resale listing or a future with no limit; organizations "
        "staff exempted are not held to it."
    )

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_position_limit(self, instrument: Instrument) -> int | None:
        return position_limit(instrument)

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True))
    def get_price_limit_low(self, instrument: Instrument) -> str | None:
        return self._limit(instrument, 0)

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True))
    def get_price_limit_high(self, instrument: Instrument) -> str | None:
        return self._limit(instrument, 1)

    def _limit(self, instrument: Instrument, end: int) -> str | None:
        limits = price_limits(instrument)
        field = serializers.DecimalField(max_digits=12, decimal_places=6)
        return None if limits is None else field.to_representation(limits[end])

    class Meta(InstrumentSerializer.Meta):
        fields = [
            *InstrumentSerializer.Meta.fields,
            "price_limit_low",
            "price_limit_high",
            "position_limit",
        ]


class InstrumentFilter(QuerySerializer):
    kind = serializers.ChoiceField(choices=Instrument.Kind.choices, required=False)
    sku = CodeRelatedField(slug_field="code", queryset=Sku.objects.all(), required=False)
    region = CodeRelatedField(slug_field="code", queryset=Region.objects.all(), required=False)
    delivery_month = serializers.RegexField(
        r"^\d{4}-(0[1-9]|1[0-2])$",
        required=False,
        help_text="YYYY-MM: those whose delivery starts in that month (a resale listing's on "
        "any day of it).",
    )
    status = serializers.ChoiceField(choices=Instrument.Status.choices, required=False)

    def validate_delivery_month(self, value: str) -> str:
        if value.startswith("0000"):  # The one year the pattern lets through that no date has.
            raise serializers.ValidationError("Year 0000 is not a month.")
        return value


def instrument_or_404(symbol: str) -> Instrument:
    try:
        parse_symbol(symbol)
    except Exception as error:
        raise Http404(symbol) from error
    instrument = market.instrument_by_symbol(symbol)
    if instrument is None:
        raise Http404(symbol)
    return instrument


class InstrumentList(ApiView):
    required_scope = None

    @extend_schema(
        parameters=[InstrumentFilter],
        responses={200: InstrumentSerializer(many=True), **BAD_INPUT, **NOT_FOUND, **REFUSED},
        summary="List instruments",
    )
    def get(self, request: Request) -> Response:
        query = InstrumentFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        month = None
        if "delivery_month" in filters:
            year, month_number = (int(part) for part in filters["delivery_month"].split("-"))
            month = date(year, month_number, 1)
        instruments = market.instruments_listed(
            kind=filters.get("kind"),
            sku=filters["sku"].code if "sku" in filters else None,
            region=filters["region"].code if "region" in filters else None,
            status=filters.get("status"),
            delivery_month=month,
        )
        return Response(InstrumentSerializer(instruments, many=True).data)


class InstrumentDetail(ApiView):
    required_scope = None

    @extend_schema(
        responses={200: InstrumentDetailSerializer, **NOT_FOUND, **REFUSED},
        summary="One instrument, with a future's price limits now",
    )
    def get(self, request: Request, symbol: str) -> Response:
        return Response(InstrumentDetailSerializer(instrument_or_404(symbol)).data)


class LevelSerializer(serializers.Serializer):
    price = serializers.DecimalField(**PRICE)
    quantity = serializers.IntegerField()
    orders = serializers.IntegerField()


class BookSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    bids = LevelSerializer(many=True)
    asks = LevelSerializer(many=True)
    as_of = serializers.DateTimeField()


class DepthQuery(QuerySerializer):
    depth = serializers.IntegerField(min_value=1, max_value=market.DEPTH_LEVELS_MAX, default=10)


class Book(ApiView):
    required_scope = None

    @extend_schema(
        parameters=[DepthQuery],
        responses={200: BookSerializer, **BAD_INPUT, **NOT_FOUND, **REFUSED},
        summary="L2 order book",
    )
    def get(self, request: Request, symbol: str) -> Response:
        instrument = instrument_or_404(symbol)
        query = DepthQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        now = timezone.now()
        bids, asks = market.book_depth(instrument, levels=query.validated_data["depth"], now=now)
        return Response(
            BookSerializer(
                {"symbol": instrument.symbol, "bids": bids, "asks": asks, "as_of": now}
            ).data
        )


class TradeSerializer(serializers.Serializer):
    sequence = serializers.IntegerField()
    price = serializers.DecimalField(**PRICE)
    quantity = serializers.IntegerField()
    taker_side = serializers.CharField()
    executed_at = serializers.DateTimeField()


class LimitQuery(QuerySerializer):
    limit = serializers.IntegerField(min_value=1, max_value=market.TRADES_PAGE_MAX, default=50)


class Trades(ApiView):
    required_scope = None

    @extend_schema(
        parameters=[LimitQuery],
        responses={200: TradeSerializer(many=True), **BAD_INPUT, **NOT_FOUND, **REFUSED},
        summary="Recent trades",
    )
    def get(self, request: Request, symbol: str) -> Response:
        instrument = instrument_or_404(symbol)
        query = LimitQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        trades = market.trades_recent(instrument, limit=query.validated_data["limit"])
        return Response(TradeSerializer(trades, many=True).data)


class CandleSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    open = serializers.DecimalField(**PRICE)
    high = serializers.DecimalField(**PRICE)
    low = serializers.DecimalField(**PRICE)
    close = serializers.DecimalField(**PRICE)
    volume = serializers.IntegerField(help_text="Contracts.")
    trades = serializers.IntegerField()


class CandleQuery(QuerySerializer):
    interval = serializers.ChoiceField(choices=sorted(CANDLE_INTERVALS), default="1h")
    limit = serializers.IntegerField(min_value=1, max_value=CANDLES_MAX, default=100)


class Candles(ApiView):
    required_scope = None

    @extend_schema(
        parameters=[CandleQuery],
        responses={200: CandleSerializer(many=True), **BAD_INPUT, **NOT_FOUND, **REFUSED},
        summary="OHLCV candles, oldest first (periods without trades are left out)",
    )
    def get(self, request: Request, symbol: str) -> Response:
        instrument = instrument_or_404(symbol)
        query = CandleQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = candles(
            instrument,
            interval=query.validated_data["interval"],
            limit=query.validated_data["limit"],
        )
        return Response(CandleSerializer(rows, many=True).data)


class SettlementSerializer(serializers.ModelSerializer):
    class Meta:
        model = SettlementPrice
        fields = ["trading_date", "price", "source", "volume", "implied_volatility"]


class Settlements(ApiView):
    required_scope = None

    @extend_schema(
        parameters=[LimitQuery],
        responses={200: SettlementSerializer(many=True), **BAD_INPUT, **NOT_FOUND, **REFUSED},
        summary="Daily settlement prices, newest first",
    )
    def get(self, request: Request, symbol: str) -> Response:
        instrument = instrument_or_404(symbol)
        query = LimitQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = instrument.settlement_prices.order_by("-trading_date")[
            : query.validated_data["limit"]
        ]
        return Response(SettlementSerializer(rows, many=True).data)


class CurvePointSerializer(serializers.Serializer):
    month = serializers.DateField()
    symbol = serializers.CharField(allow_null=True)
    price = serializers.DecimalField(**PRICE)
    source = serializers.CharField(
        help_text="The future's mark (settlement or last_trade, whichever is newer), else its "
        "book's mid, else the model for a month nothing prices"
    )


class CurveSerializer(serializers.Serializer):
    sku = serializers.CharField()
    region = serializers.CharField()
    points = CurvePointSerializer(many=True)


class Curve(ApiView):
    required_scope = None

    @extend_schema(
        responses={200: CurveSerializer, **NOT_FOUND, **REFUSED},
        summary="Forward curve of a SKU in a region: the market's months, then the model",
    )
    def get(self, request: Request, sku: str, region: str) -> Response:
        found_sku = Sku.objects.filter(code=sku).first()
        found_region = Region.objects.filter(code=region).first()
        if found_sku is None or found_region is None:
            raise Http404(f"{sku}/{region}")
        points = forward_curve(found_sku, found_region, at=timezone.now())
        return Response(CurveSerializer({"sku": sku, "region": region, "points": points}).data)


class ChainSideSerializer(serializers.Serializer):
    symbol = serializers.CharField(source="option.symbol")
    status = serializers.ChoiceField(
        choices=Instrument.Status.choices,
        source="option.status",
        help_text="The option's own status, as in GET /api/v1/instruments/.",
    )
    halted_by = serializers.CharField(
        source="option.halted_by.symbol",
        allow_null=True,
        default=None,
        help_text="The future's symbol while the future is halted (its options are halted "
        "with it), else null.",
    )
    bid = serializers.DecimalField(**PRICE, source="quote.best_bid.price", allow_null=True)
    ask = serializers.DecimalField(**PRICE, source="quote.best_ask.price", allow_null=True)
    last = serializers.DecimalField(**PRICE, source="quote.last_price", allow_null=True)
    fair_value = serializers.DecimalField(**PRICE, allow_null=True)
    implied_volatility = serializers.DecimalField(max_digits=10, decimal_places=6, allow_null=True)
    # Black-76's float, quantized where it leaves pricing like every other figure.
    delta = serializers.DecimalField(max_digits=10, decimal_places=6, allow_null=True)


class ChainRowSerializer(serializers.Serializer):
    strike = serializers.DecimalField(**PRICE)
    call = ChainSideSerializer(allow_null=True)
    put = ChainSideSerializer(allow_null=True)


class ChainSerializer(serializers.Serializer):
    future = serializers.CharField()
    forward = serializers.DecimalField(
        **PRICE,
        allow_null=True,
        help_text=(
            "The future's price the options are valued at, as POST /pricing/option-quote/ takes "
            "it: the most recent of the latest settlement price and the last trade, else the "
            "mid; null with none."
        ),
    )
    forward_source = serializers.ChoiceField(
        choices=MarkSource.choices,
        allow_null=True,
        help_text="Where forward comes from: settlement, trade or mid.",
    )
    rows = ChainRowSerializer(many=True)


class Chain(ApiView):
    required_scope = None

    @extend_schema(
        responses={200: ChainSerializer, **NOT_FOUND, **REFUSED},
        summary="Option chain of a future: bid/ask, Black-76 fair value, implied vol, delta",
    )
    def get(self, request: Request, symbol: str) -> Response:
        future = instrument_or_404(symbol)
        if future.kind != Instrument.Kind.FUTURE:
            raise Http404(symbol)
        chain = risk.option_chain(future, at=timezone.now())
        data: dict[str, Any] = {
            "future": future.symbol,
            "forward": chain.forward,
            "forward_source": chain.forward_source,
            "rows": chain.rows,
        }
        return Response(ChainSerializer(data).data)


class ServerTimeSerializer(serializers.Serializer):
    server_time = serializers.DateTimeField(help_text="The exchange's clock (UTC).")
    epoch_seconds = serializers.IntegerField(
        help_text="The same in Unix seconds: what X-GX-Timestamp is compared with."
    )
    signature_window_seconds = serializers.IntegerField(
        help_text="How far X-GX-Timestamp may be from this clock."
    )


class ServerTime(ApiView):
    """The exchange's clock, for clients that sign: a signature's timestamp must be within the
    window of it, so a client whose clock drifts measures the offset here."""

    required_scope = None

    @extend_schema(
        responses={200: ServerTimeSerializer, **REFUSED},
        summary="The exchange's clock and the signature window",
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        data = {
            "server_time": now,
            "epoch_seconds": int(now.timestamp()),
            "signature_window_seconds": settings.EXCHANGE_API_SIGNATURE_WINDOW_SECONDS,
        }
        return Response(ServerTimeSerializer(data).data)


SYMBOL = "<text:symbol>"

urlpatterns = [
    path("instruments/", InstrumentList.as_view(), name="instruments"),
    path(f"instruments/{SYMBOL}/", InstrumentDetail.as_view(), name="instrument"),
    path(f"instruments/{SYMBOL}/book/", Book.as_view(), name="book"),
    path(f"instruments/{SYMBOL}/trades/", Trades.as_view(), name="trades"),
    path(f"instruments/{SYMBOL}/candles/", Candles.as_view(), name="candles"),
    path(f"instruments/{SYMBOL}/settlements/", Settlements.as_view(), name="settlements"),
    path(f"instruments/{SYMBOL}/chain/", Chain.as_view(), name="chain"),
    path("curves/<text:sku>/<text:region>/", Curve.as_view(), name="curve"),
    path("time/", ServerTime.as_view(), name="time"),
]
