"""Trading: place, list, cancel and replace the organization's orders; its fills.

Writes need the ``trade`` scope, reads of the organization's own orders and fills ``read``.
Orders are placed on the organization's main trading account. Prices are strings of USD per
GPU-hour, quantities contracts, fees and collateral strings of USD. Another organization's
orders answer 404, as if they did not exist.
"""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import Http404
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

import matching
from exchange.api.errors import (
    ErrorBodySerializer,
    ErrorSerializer,
    envelope,
    error_answer,
    not_found,
)
from exchange.api.fields import (
    BodySerializer,
    BooleanInputField,
    CodeRelatedField,
    DecimalStringField,
    IntegerInputField,
    QuerySerializer,
    TextField,
)
from exchange.api.pagination import NewestFirst, PageQuery, newest_first_page, page_of
from exchange.api.scopes import ReadOrTrade
from exchange.api.views import ApiView
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import ApiKey, CancelAllTimer, CancelReason, Instrument, Order, Side
from exchange.selectors import market
from exchange.selectors import orders as orders_selector
from exchange.services import cancel_after
from exchange.services.collateral import Preview
from exchange.services.orders import (
    BATCH_CANCELS_MAX,
    BATCH_ORDERS_MAX,
    CLIENT_ORDER_ID_LENGTH_MAX,
    order_cancel,
    order_dry_run,
    order_replace,
    order_submit,
    orders_cancel,
    orders_cancel_each,
    orders_submit,
)

PRICE = {"max_digits": 18, "decimal_places": 6}
# Text inputs never hold NUL (the database cannot store it); the pattern says so in the schema.
PRICE_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
USD = {"max_digits": 24, "decimal_places": 6}
SYMBOL_LENGTH_MAX = 64
ID_MAX = orders_selector.ID_MAX

# What a view may answer besides success, for the OpenAPI document.
# Over the key's rate: 429 (with Retry-After).
AUTH_ERRORS = {401: ErrorSerializer, 403: ErrorSerializer, 429: ErrorSerializer}


class OrderSerializer(serializers.ModelSerializer):
    instrument = serializers.CharField(source="instrument.symbol")
    open_quantity = serializers.IntegerField()
    average_price = serializers.DecimalField(
        **PRICE,
        source="average_fill_price",
        allow_null=True,
        help_text="Filled notional over filled quantity, rounded to 6 decimals; null unfilled.",
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "client_order_id",
            "instrument",
            "side",
            "type",
            "time_in_force",
            "post_only",
            "self_trade_prevention",
            "price",
            "protection_price",
            "quantity",
            "filled_quantity",
            "cancelled_quantity",
            "open_quantity",
            "average_price",
            "status",
            "reject_code",
            "done_reason",
            "reduce_only",
            "expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        # Not the model's help text (filled + cancelled + still open), which a rejected order
        # is not; that text stays until a migration of the model's fields is due.
        extra_kwargs = {
            "status": {
                "help_text": (
                    "A resting GTD order whose expires_at has come reads expired (done_reason "
                    "expired, nothing open) at once: nothing more of it trades, and the "
                    "matcher's sweep writes it so within about a second."
                )
            },
            "self_trade_prevention": {
                "help_text": (
                    "What happens, when this order is the incoming one, instead of a trade "
                    "with a resting order of its own organization (any of its accounts, a "
                    "portfolio pool's too): cancel_newest, cancel_oldest, cancel_both or "
                    "decrement, as when it was placed."
                )
            },
            "reduce_only": {
                "help_text": (
                    "Accepted as reducing a position (placed under a margin call, or by a "
                    "liquidation): it holds no margin and pays no fee, and fills no more than "
                    "closes the account's position (the rest is cancelled: done_reason "
                    "reduce_only_exceeded)."
                )
            },
            "quantity": {
                "help_text": (
                    "Contracts the order asked for; a replace sets it to filled + cancelled + "
                    "the new open quantity. But for a rejected order it is filled_quantity + "
                    "cancelled_quantity + open_quantity: a rejected order keeps the quantity it "
                    "asked for, none of it filled, cancelled or open."
                )
            },
        }

    def to_representation(self, order: Order) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(order)
        # A list reads the time once, for its filters and its rows alike.
        now = self.context.get("now") or timezone.now()
        if orders_selector.expired_unswept(order, now):
            assert order.expires_at is not None  # A GTD order's.
            # Out of the book, and nothing more of it trades: answered as the matcher's sweep
            # writes it within about a second (holds released then), so the API says what the
            # pages say and a client does not act on an order that can no longer trade.
            data["cancelled_quantity"] = order.cancelled_quantity + order.open_quantity
            data["open_quantity"] = 0
            data["status"] = Order.Status.EXPIRED.value
            data["done_reason"] = str(matching.CancelReason.EXPIRED)
            data["updated_at"] = self.fields["updated_at"].to_representation(
                max(order.updated_at, order.expires_at)
            )
        return data


class OrderEventSerializer(serializers.Serializer):
    sequence = serializers.IntegerField(
        allow_null=True, help_text="The instrument's sequence at the matcher's event."
    )
    from_status = serializers.ChoiceField(choices=Order.Status.choices)
    to_status = serializers.ChoiceField(choices=Order.Status.choices)
    reason = serializers.CharField(
        help_text="accepted, filled, replaced, replaced_lost_priority, or why the order ended "
        "(done_reason's values)."
    )
    at = serializers.DateTimeField(source="created_at")


class FillSerializer(serializers.Serializer):
    trade_sequence = serializers.IntegerField(help_text="The trade's sequence in its instrument.")
    order_id = serializers.IntegerField()
    instrument = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    price = serializers.DecimalField(**PRICE)
    quantity = serializers.IntegerField()
    fee = serializers.DecimalField(**USD, help_text="USD paid by this order for this fill.")
    liquidity = serializers.ChoiceField(
        choices=[orders_selector.LIQUIDITY_MAKER, orders_selector.LIQUIDITY_TAKER]
    )
    executed_at = serializers.DateTimeField()


class PlacementSerializer(serializers.Serializer):
    order = OrderSerializer()
    fills = FillSerializer(many=True, help_text="This order's fills so far, oldest first.")
    resting_quantity = serializers.IntegerField(help_text="Open contracts resting in the book.")
    market_remainder = serializers.IntegerField(
        help_text="Contracts of a market, IOC or FOK order cancelled unfilled; 0 otherwise."
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "decimal", "description": "USD"},
            {"type": "integer", "description": "GPU-hours"},
        ]
    }
)
class CollateralAmountField(serializers.Field):
    """USD as a decimal string, GPU-hours as an integer."""

    def to_representation(self, value: Decimal | int) -> str | int:
        return value if isinstance(value, int) else format(value, "f")


class CollateralSerializer(serializers.Serializer):
    asset = serializers.CharField(help_text="USD, or the code of a GPU-hour entitlement.")
    amount = CollateralAmountField()


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.SerializerMethodField()
    instrument = serializers.CharField(source="instrument.symbol")
    collateral = CollateralSerializer(many=True, help_text="What placing the order would hold.")
    margin_per_contract = serializers.DecimalField(**USD)
    fee_per_contract_max = serializers.DecimalField(
        **USD, help_text="The fee of one contract at the higher of the maker and taker rates."
    )
    protection_price = serializers.DecimalField(
        **PRICE, allow_null=True, help_text="A market order's worst fill price."
    )

    def get_dry_run(self, preview: Preview) -> bool:
        return True


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": PRICE_PATTERN, "example": "2.450"}
)
class PriceInputField(DecimalStringField):
    """A price as written in a request: a decimal string of at most 12 digits before the point
    and 6 after. Whether it is on the tick and in the band is the exchange's rule (422)."""

    pattern = PRICE_PATTERN
    default_error_messages = {"format": 'A price is a decimal string such as "2.450".'}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**PRICE, **kwargs)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time that must carry its time zone: a naive one is refused, not guessed."""

    default_error_messages = {"naive": "Give the time with a time zone (e.g. Z or +02:00)."}

    def enforce_timezone(self, value: datetime) -> datetime:
        if timezone.is_naive(value):
            self.fail("naive")
        aware: datetime = super().enforce_timezone(value)
        return aware


class OrderCreateSerializer(BodySerializer):
    instrument = TextField(max_length=SYMBOL_LENGTH_MAX, help_text="Its symbol.")
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=Order.Type.choices, default=Order.Type.LIMIT)
    quantity = IntegerInputField(min_value=1, help_text="Contracts.")
    price = PriceInputField(
        default=None,
        allow_null=True,
        help_text="$/GPU-hr on the instrument's tick: required for limit orders, absent for "
        "market orders.",
    )
    time_in_force = serializers.ChoiceField(
        choices=Order.TimeInForce.choices,
        required=False,
        help_text="Left out: gtc for a limit order, ioc for a market order (which is IOC or FOK).",
    )
    expires_at = AwareDateTimeField(
        default=None, allow_null=True, help_text="GTD orders only: ISO 8601 with a time zone."
    )
    post_only = BooleanInputField(
        default=False,
        help_text="Only rest in the book, never take: refused if it would trade at once. A "
        "GTC or GTD limit order only (with IOC or FOK: ORDER_POST_ONLY_TIME_IN_FORCE).",
    )
    self_trade_prevention = serializers.ChoiceField(
        choices=Order.SelfTradePrevention.choices,
        default=Order.SelfTradePrevention.CANCEL_NEWEST,
        help_text="An order never trades with a resting order of its own organization (any of "
        "its accounts, a portfolio pool's too). What happens instead, this order's mode "
        "deciding: cancel_newest cancels what is left of this order, cancel_oldest the resting "
        "order (matching goes on), cancel_both both, decrement takes the smaller open quantity "
        "off both; done_reason self_trade.",
    )
    client_order_id = TextField(
        min_length=1,
        max_length=CLIENT_ORDER_ID_LENGTH_MAX,
        default=None,
        allow_null=True,
        help_text="Your id for the order: placing it again with the same body returns the "
        "first order (200); with another body it is refused (409).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "time_in_force" not in attrs:
            market = attrs.get("type") == Order.Type.MARKET
            attrs["time_in_force"] = Order.TimeInForce.IOC if market else Order.TimeInForce.GTC
        return attrs


class OrderBatchSerializer(BodySerializer):
    orders = OrderCreateSerializer(
        many=True,
        min_length=1,
        max_length=BATCH_ORDERS_MAX,
        help_text=f"1 to {BATCH_ORDERS_MAX} orders, placed in this order.",
    )


class BatchResultSerializer(serializers.Serializer):
    status = serializers.IntegerField(
        help_text="The status placing this order alone would have answered: 201 placed, 200 "
        "a repeat of a client order id, 404, 409 or 422 refused."
    )
    placement = PlacementSerializer(allow_null=True, help_text="Null when refused.")
    error = ErrorBodySerializer(allow_null=True, help_text="Why it was refused; else null.")


class BatchResultsSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True, help_text="One per order, in the batch's order.")


class CancelBatchSerializer(BodySerializer):
    order_ids = serializers.ListField(
        child=IntegerInputField(min_value=1, max_value=ID_MAX),
        min_length=1,
        max_length=BATCH_CANCELS_MAX,
        required=False,
        help_text=f"1 to {BATCH_CANCELS_MAX} ids of the organization's orders, each once.",
    )
    client_order_ids = serializers.ListField(
        child=TextField(min_length=1, max_length=CLIENT_ORDER_ID_LENGTH_MAX),
        min_length=1,
        max_length=BATCH_CANCELS_MAX,
        required=False,
        help_text=f"Instead of order_ids: 1 to {BATCH_CANCELS_MAX} client order ids the "
        "organization placed orders with, each once.",
    )

    def validate_order_ids(self, order_ids: list[int]) -> list[int]:
        if len(set(order_ids)) != len(order_ids):
            raise serializers.ValidationError("Give each order once.")
        return order_ids

    def validate_client_order_ids(self, client_order_ids: list[str]) -> list[str]:
        if len(set(client_order_ids)) != len(client_order_ids):
            raise serializers.ValidationError("Give each client order id once.")
        return client_order_ids

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("order_ids", "client_order_ids") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"order_ids": "Give order_ids or client_order_ids, one of them."}
            )
        return attrs


class CancelResultSerializer(serializers.Serializer):
    order_id = serializers.IntegerField(
        allow_null=True, help_text="Null for a client order id no order was placed with."
    )
    client_order_id = serializers.CharField(
        allow_null=True, help_text="As asked, when cancelling by client order id; else null."
    )
    status = serializers.IntegerField(
        help_text="The status cancelling this order alone would have answered: 200 asked "
        "(the order as it is after the ask), 404 not the organization's, 409 no longer live."
    )
    order = OrderSerializer(allow_null=True, help_text="Null when refused.")
    error = ErrorBodySerializer(allow_null=True, help_text="Why it was refused; else null.")


class CancelResultsSerializer(serializers.Serializer):
    results = CancelResultSerializer(many=True, help_text="One per id, in the request's order.")


# The order path's serializers, built once per process. A serializer builds its fields anew
# for every instance (a ModelSerializer from the model's metadata), which cost the placement
# about a millisecond; validating and representing use the fields and keep no state, so one
# instance of each serves every request (and thread).
ORDER_CREATE = OrderCreateSerializer()
ORDER_BATCH = OrderBatchSerializer()
PLACEMENT = PlacementSerializer()
ORDER = OrderSerializer()


class DryRunQuery(QuerySerializer):
    dry_run = serializers.BooleanField(
        default=False,
        help_text="Validate and report the collateral the order would hold, writing nothing.",
    )


class InstrumentFilterField(CodeRelatedField):
    """A list's instrument, by its symbol. One that does not exist is answered 404 with the
    field, as an unknown symbol in a body is, not with an empty list (instruments are public:
    saying one does not exist tells nothing). An empty or NUL-holding value is malformed: 400.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data and "\x00" not in data:
            instrument = self.get_queryset().filter(symbol=data).first()
            if instrument is None:
                raise not_found(f"No instrument {data}.", self.field_name)
            return instrument
        return super().to_internal_value(data)


def _instrument_filter() -> InstrumentFilterField:
    return InstrumentFilterField(
        slug_field="symbol",
        queryset=Instrument.objects.all(),
        required=False,
        help_text="An instrument's symbol (404 NOT_FOUND if there is none such).",
    )


class OrderFilter(PageQuery):
    status = serializers.ChoiceField(
        choices=[*Order.Status.values, orders_selector.STATUS_LIVE, orders_selector.STATUS_DONE],
        required=False,
        help_text=(
            "An order status; live (new, open or partially filled); or done (filled, "
            "cancelled, expired or rejected: see each order's done_reason). A resting GTD "
            "order whose time has come is expired, as the orders say."
        ),
    )
    updated_since = AwareDateTimeField(
        required=False,
        help_text="Orders that changed (placed, filled, replaced, cancelled, expired) at or "
        "after this time: what changed while a client was away. A change carries the time of "
        "the matcher's pass, committed a moment later: ask from a few seconds before the last "
        "answer. ISO 8601 with its zone; in a URL, + is written %2B.",
    )
    instrument = _instrument_filter()
    side = serializers.ChoiceField(choices=Side.choices, required=False)
    client_order_id = TextField(
        max_length=CLIENT_ORDER_ID_LENGTH_MAX,
        required=False,
        help_text="The order placed with this client order id (a placement whose answer was lost).",
    )


class FillFilter(PageQuery):
    """Read with the caller's ``account`` in the context, to which ``order`` must belong."""

    instrument = _instrument_filter()
    order = serializers.IntegerField(
        min_value=1,
        max_value=orders_selector.ID_MAX,
        required=False,
        help_text="One of the organization's order ids.",
    )
    since = AwareDateTimeField(
        required=False,
        help_text="Fills executed at or after this time (ISO 8601 with its zone; in a URL, "
        "+ is written %2B).",
    )
    until = AwareDateTimeField(
        required=False, help_text="Fills executed before this time (after since)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if "since" in attrs and "until" in attrs and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": "Give a time after since."})
        order_id = attrs.get("order")
        # Another organization's order is answered as one that does not exist: 404, as for
        # the order's own URL.
        if (
            order_id is not None
            and orders_selector.order_of(self.context["account"], order_id) is None
        ):
            raise not_found(f"No order {order_id} among the organization's orders.", "order")
        return attrs


OrderPageSerializer = page_of(OrderSerializer, "OrderPage")


FillPageSerializer = page_of(FillSerializer, "FillPage")


class OrderReplaceSerializer(BodySerializer):
    price = PriceInputField(help_text="The new price, $/GPU-hr.")
    quantity = IntegerInputField(
        min_value=0, help_text="The new open quantity in contracts; 0 cancels the order."
    )


class CancelAllSerializer(BodySerializer):
    instrument = TextField(
        max_length=SYMBOL_LENGTH_MAX,
        required=False,
        help_text="Only this instrument's orders.",
    )


class CancelledSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="How many live orders were asked to cancel.")


class CancelAllAfterSerializer(BodySerializer):
    timeout_seconds = IntegerInputField(
        help_text=f"Cancel every live order this many seconds from now unless armed again: "
        f"{cancel_after.TIMEOUT_SECONDS_MIN} to {cancel_after.TIMEOUT_SECONDS_MAX}; 0 disarms."
    )


class CancelAllTimerSerializer(serializers.Serializer):
    armed = serializers.BooleanField()
    timeout_seconds = serializers.IntegerField(help_text="As last armed; 0 when disarmed.")
    fires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When every live order is cancelled unless the switch is armed again; the "
        "sweep runs every second. Null when disarmed.",
    )
    armed_at = serializers.DateTimeField(allow_null=True)


def _timer_answer(timer: CancelAllTimer | None) -> dict[str, Any]:
    if timer is None:
        return {"armed": False, "timeout_seconds": 0, "fires_at": None, "armed_at": None}
    return {
        "armed": True,
        "timeout_seconds": timer.timeout_seconds,
        "fires_at": timer.fires_at,
        "armed_at": timer.armed_at,
    }


def _order_or_404(request: Request, order_id: str) -> Order:
    """The caller's order; 404 for another's, a missing one, or an id that is no number (the
    route takes any text, so a malformed id gets the API's 404 rather than Django's page)."""
    order = (
        orders_selector.order_of(request.caller.account, int(order_id))
        if order_id.isascii() and order_id.isdigit() and len(order_id) <= len(str(ID_MAX))
        else None
    )
    if order is None:
        raise Http404(order_id)
    return order


class OrderList(ReadOrTrade):
    @extend_schema(
        parameters=[OrderFilter],
        responses={
            200: OrderPageSerializer,
            400: ErrorSerializer,
            **AUTH_ERRORS,
            404: ErrorSerializer,
        },
        operation_id="orders_list",
        summary="The organization's orders, newest first (scope read)",
    )
    def get(self, request: Request) -> Response:
        query = OrderFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        instrument = filters.get("instrument")
        now = timezone.now()
        orders = orders_selector.orders_of(
            request.caller.account,
            status=filters.get("status"),
            instrument=instrument.symbol if instrument is not None else None,
            side=filters.get("side"),
            client_order_id=filters.get("client_order_id"),
            updated_since=filters.get("updated_since"),
            now=now,  # As the orders are answered: OrderSerializer.
        )
        return newest_first_page(
            self,
            request,
            orders,
            lambda page: OrderSerializer(page, many=True, context={"now": now}).data,
        )

    @extend_schema(
        parameters=[DryRunQuery],
        request=OrderCreateSerializer,
        responses={
            201: PlacementSerializer,
            200: PolymorphicProxySerializer(
                component_name="PlacementRepeatOrDryRun",
                serializers=[PlacementSerializer, DryRunSerializer],
                resource_type_field_name=None,
            ),
            400: ErrorSerializer,
            **AUTH_ERRORS,
            404: ErrorSerializer,
            409: ErrorSerializer,
            422: ErrorSerializer,
        },
        operation_id="orders_create",
        summary="Place an order (scope trade); ?dry_run=true only validates it and reports the "
        "collateral it would hold",
        description="201: a new order, with its fills so far. 200: the order placed before "
        "with the same client order id and body, or a dry run's report. An order the matcher "
        "refused after accepting it is a 201 with status rejected and its reject_code.",
    )
    def post(self, request: Request) -> Response:
        dry_run = False
        if request.query_params:  # Without any, the query's defaults: no need to build it.
            query = DryRunQuery(data=request.query_params)
            query.is_valid(raise_exception=True)
            dry_run = query.validated_data["dry_run"]
        order = ORDER_CREATE.run_validation(request.data)
        caller = request.caller
        if dry_run:
            preview = order_dry_run(account=caller.account, **order)
            return Response(DryRunSerializer(preview).data)
        placement = order_submit(
            account=caller.account,
            placed_by=caller.user,
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
            **order,
        )
        outcome = orders_selector.order_outcome(placement.order)
        return Response(
            PLACEMENT.to_representation(outcome),
            status=status.HTTP_201_CREATED if placement.created else status.HTTP_200_OK,
        )


def _batch_weight(request: Request, key: str, most: int) -> int:
    """A batch counts against the key's rate as one request per item of its list ``key`` (at
    least one, and no more than a batch may hold: a longer list is refused doing nothing)."""
    items = request.data.get(key) if isinstance(request.data, dict) else None
    return min(max(len(items), 1), most) if isinstance(items, list) else 1


class OrderBatch(ApiView):
    required_scope = ApiKey.Scope.TRADE

    def rate_weight(self, request: Request) -> int:
        return _batch_weight(request, "orders", BATCH_ORDERS_MAX)

    @extend_schema(
        request=OrderBatchSerializer,
        responses={
            200: BatchResultsSerializer,
            400: ErrorSerializer,
            **AUTH_ERRORS,
        },
        operation_id="orders_create_batch",
        summary=f"Place up to {BATCH_ORDERS_MAX} orders in one request (scope trade)",
        description="A batch any of whose orders is malformed (what the order's own request "
        "would refuse with 400) is refused whole, and nothing is placed. Otherwise each order "
        "is placed on its own, in the order given, as its own request would place it, and "
        "its result says what happened: placed (with its fills so far), a repeat of its client "
        "order id, or refused with the error its own request would answer. An order refused "
        "does not stop those after it. A batch counts one request per order against the "
        "key's rate limit.",
    )
    def post(self, request: Request) -> Response:
        if "dry_run" in request.query_params:
            # A trader checking a batch must not have it placed for real.
            raise serializers.ValidationError(
                {
                    "dry_run": "A batch cannot be a dry run: check each order with "
                    "POST /api/v1/orders/?dry_run=true."
                }
            )
        orders = ORDER_BATCH.run_validation(request.data)["orders"]
        caller = request.caller
        results = orders_submit(
            account=caller.account,
            placed_by=caller.user,
            orders=orders,
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
        )
        placed = [result.order for result in results if not isinstance(result, OrderRejected)]
        outcomes = iter(orders_selector.order_outcomes(placed))
        answers = []
        for result in results:
            if isinstance(result, OrderRejected):
                answer = error_answer(result)
                assert answer is not None
                code, body, _ = answer
                answers.append({"status": code, "placement": None, "error": body["error"]})
            else:
                answers.append(
                    {
                        "status": status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
                        "placement": PLACEMENT.to_representation(next(outcomes)),
                        "error": None,
                    }
                )
        return Response({"results": answers})


class OrderBatchCancel(ApiView):
    required_scope = ApiKey.Scope.TRADE

    def rate_weight(self, request: Request) -> int:
        return max(
            _batch_weight(request, "order_ids", BATCH_CANCELS_MAX),
            _batch_weight(request, "client_order_ids", BATCH_CANCELS_MAX),
        )

    @extend_schema(
        request=CancelBatchSerializer,
        responses={200: CancelResultsSerializer, 400: ErrorSerializer, **AUTH_ERRORS},
        operation_id="orders_cancel_batch",
        summary=f"Cancel up to {BATCH_CANCELS_MAX} orders by id or by client order id in one "
        "request (scope trade)",
        description="Each order is answered as cancelling it alone would be: the order after "
        "its cancel was asked for, 404 for an id that is not one of the organization's "
        "orders (or a client order id none of them was placed with), 409 for an order no "
        "longer live. A batch counts one request per order against the key's rate limit.",
    )
    def post(self, request: Request) -> Response:
        body = CancelBatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        field = "order_ids" if "order_ids" in body.validated_data else "client_order_ids"
        asked = body.validated_data[field]
        results = orders_cancel_each(
            account=request.caller.account,
            requested_by=request.caller.user,
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
            **{field: asked},
        )
        answers = []
        for named, (order_id, result) in zip(asked, results, strict=True):
            answer = {
                "order_id": order_id if field == "client_order_ids" else named,
                "client_order_id": named if field == "client_order_ids" else None,
                "status": 200,
                "order": None,
                "error": None,
            }
            if result is None:  # Not the organization's: as if it did not exist.
                answer["status"] = status.HTTP_404_NOT_FOUND
                answer["error"] = envelope("NOT_FOUND", "Not found.", field)["error"]
            elif isinstance(result, OrderRejected):
                refusal = error_answer(result)
                assert refusal is not None
                answer["status"], answer["error"] = refusal[0], refusal[1]["error"]
            else:
                answer["order"] = ORDER.to_representation(result)
            answers.append(answer)
        return Response({"results": answers})


ORDER_ID = OpenApiParameter(
    "order_id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": orders_selector.ID_MAX},
    OpenApiParameter.PATH,
)


class OrderDetail(ReadOrTrade):
    @extend_schema(
        parameters=[ORDER_ID],
        responses={200: OrderSerializer, **AUTH_ERRORS, 404: ErrorSerializer},
        operation_id="order_retrieve",
        summary="One of the organization's orders (scope read)",
    )
    def get(self, request: Request, order_id: str) -> Response:
        return Response(OrderSerializer(_order_or_404(request, order_id)).data)

    @extend_schema(
        parameters=[ORDER_ID],
        responses={200: OrderSerializer, **AUTH_ERRORS, 404: ErrorSerializer, 409: ErrorSerializer},
        operation_id="order_cancel",
        summary="Cancel an order (scope trade); answers the order after the cancel",
    )
    def delete(self, request: Request, order_id: str) -> Response:
        order = order_cancel(
            order=_order_or_404(request, order_id),
            requested_by=request.caller.user,
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
        )
        return Response(OrderSerializer(order).data)


class OrderHistory(ApiView):
    required_scope = ApiKey.Scope.READ
    pagination_class = NewestFirst  # For the schema: newest_first_page builds the page.

    @extend_schema(
        parameters=[ORDER_ID, PageQuery],
        responses={
            200: OrderEventSerializer(many=True),
            400: ErrorSerializer,
            **AUTH_ERRORS,
            404: ErrorSerializer,
        },
        operation_id="order_history",
        summary="What the matcher did to an order, newest first (scope read): each status change "
        "and replace, with its reason and sequence",
        description="Partial fills that leave the status unchanged are not events here: "
        "GET /api/v1/fills/?order=<id> lists every fill.",
    )
    def get(self, request: Request, order_id: str) -> Response:
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        events = orders_selector.transitions_of(_order_or_404(request, order_id))
        return newest_first_page(
            self, request, events, lambda page: OrderEventSerializer(page, many=True).data
        )


class OrderReplace(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[ORDER_ID],
        request=OrderReplaceSerializer,
        responses={
            200: OrderSerializer,
            400: ErrorSerializer,
            **AUTH_ERRORS,
            404: ErrorSerializer,
            409: ErrorSerializer,
            422: ErrorSerializer,
        },
        operation_id="order_replace",
        summary="Change a live limit order's price and open quantity (scope trade; 0 cancels)",
        description="quantity is the new open quantity: a partly filled order keeps its fills. "
        "The same price with the same or a smaller quantity keeps the order's place in the "
        "queue; any other change sends it to the back. Quantity 0 cancels it, also on a halted "
        "instrument (as DELETE does). A replace the matcher refuses (e.g. "
        "MATCHING_POST_ONLY_WOULD_CROSS) is a 422 with its code, the order unchanged by it; "
        "one of an order that ended first (a GTD order whose time passed) is a 409 "
        "ORDER_NOT_LIVE.",
    )
    def post(self, request: Request, order_id: str) -> Response:
        order = _order_or_404(request, order_id)
        body = OrderReplaceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        replaced = order_replace(
            order=order,
            price=body.validated_data["price"],
            quantity=body.validated_data["quantity"],
            requested_by=request.caller.user,
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
        )
        return Response(OrderSerializer(replaced).data)


class OrderCancelAll(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        request=CancelAllSerializer,
        responses={
            200: CancelledSerializer,
            400: ErrorSerializer,
            **AUTH_ERRORS,
            404: ErrorSerializer,
        },
        operation_id="orders_cancel_all",
        summary="Cancel all live orders, or those of one instrument (scope trade)",
    )
    def post(self, request: Request) -> Response:
        body = CancelAllSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        symbol = body.validated_data.get("instrument")
        if symbol is not None and market.instrument_by_symbol(symbol) is None:
            raise OrderRejected(
                OrderRejectCode.UNKNOWN_INSTRUMENT, f"No instrument {symbol!r}.", field="instrument"
            )
        # The orders the API answers live (``now``): a resting GTD order whose time has come
        # is expired, by the matcher before any cancel, and is not counted as cancelled.
        live = orders_selector.orders_of(
            request.caller.account,
            status=orders_selector.STATUS_LIVE,
            instrument=symbol,
            now=timezone.now(),
        )
        cancelled = orders_cancel(
            orders=live,
            reason=CancelReason.CANCEL_ALL,
            requested_by=request.caller.user,
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
        )
        return Response(CancelledSerializer({"cancelled": cancelled}).data)


class OrderCancelAllAfter(ReadOrTrade):
    """The organization's dead man's switch (``exchange.services.cancel_after``)."""

    @extend_schema(
        responses={200: CancelAllTimerSerializer, **AUTH_ERRORS},
        operation_id="orders_cancel_all_after_read",
        summary="The cancel-all-after switch as it stands (scope read)",
    )
    def get(self, request: Request) -> Response:
        timer = orders_selector.cancel_all_timer_of(request.caller.account)
        return Response(CancelAllTimerSerializer(_timer_answer(timer)).data)

    @extend_schema(
        request=CancelAllAfterSerializer,
        responses={
            200: CancelAllTimerSerializer,
            400: ErrorSerializer,
            **AUTH_ERRORS,
            422: ErrorSerializer,
        },
        operation_id="orders_cancel_all_after",
        summary="Arm the dead man's switch: cancel every live order after a timeout unless "
        "armed again (scope trade); 0 disarms",
        description="Arm it again every few seconds while your program runs: if it stops, "
        "its orders are cancelled about timeout_seconds after its last call.",
    )
    def post(self, request: Request) -> Response:
        body = CancelAllAfterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        timer = cancel_after.cancel_all_after_set(
            account=request.caller.account,
            timeout_seconds=body.validated_data["timeout_seconds"],
            armed_by=request.caller.user,
        )
        return Response(CancelAllTimerSerializer(_timer_answer(timer)).data)


class FillList(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        parameters=[FillFilter],
        responses={
            200: FillPageSerializer,
            400: ErrorSerializer,
            **AUTH_ERRORS,
            404: ErrorSerializer,
        },
        operation_id="fills_list",
        summary="The organization's fills, newest first (scope read)",
    )
    def get(self, request: Request) -> Response:
        account = request.caller.account
        query = FillFilter(data=request.query_params, context={"account": account})
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        instrument = filters.get("instrument")
        trades = orders_selector.trades_of(
            account,
            instrument=instrument.symbol if instrument is not None else None,
            order_id=filters.get("order"),
            since=filters.get("since"),
            until=filters.get("until"),
        )
        return newest_first_page(
            self,
            request,
            trades,
            lambda page: (
                FillSerializer(
                    orders_selector.fills_in(page, account, order_id=filters.get("order")),
                    many=True,
                ).data
            ),
        )


urlpatterns = [
    path("orders/", OrderList.as_view(), name="orders"),
    path("orders/batch/", OrderBatch.as_view(), name="orders-batch"),
    path("orders/batch/cancel/", OrderBatchCancel.as_view(), name="orders-batch-cancel"),
    path("orders/cancel-all/", OrderCancelAll.as_view(), name="orders-cancel-all"),
    path("orders/cancel-all-after/", OrderCancelAllAfter.as_view(), name="orders-cancel-all-after"),
    path("orders/<text:order_id>/", OrderDetail.as_view(), name="order"),
    path("orders/<text:order_id>/replace/", OrderReplace.as_view(), name="order-replace"),
    path("orders/<text:order_id>/history/", OrderHistory.as_view(), name="order-history"),
    path("fills/", FillList.as_view(), name="fills"),
]
