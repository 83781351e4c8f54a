"""The caller's trading account: balances of every asset, positions, statements and GPU-hour
entitlements. Dollars are decimal strings, GPU-hours integers, prices strings of USD per
GPU-hour. Everything here reads the caller's main trading account, and only it, but the
notices, which are the organization's (a pool's account's margin call included)."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from decimal import Decimal
from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer, not_found
from exchange.api.pagination import NewestFirst, PageQuery, newest_first_page
from exchange.api.views import ApiView
from exchange.models import ApiKey, Notice
from exchange.selectors.account import (
    balances_of,
    statement_lines,
    statement_postings,
    statement_source,
)
from exchange.selectors.entitlements import entitlements_of
from exchange.selectors.marks import MarkSource
from exchange.selectors.notices import notices_of
from exchange.selectors.positions import portfolio_totals, positions_of
from exchange.selectors.risk import margin_call_of
from exchange.services.ledger_accounts import USD_CODE
from ledger.models import Commodity

PRICE = {"max_digits": 18, "decimal_places": 6}
USD = {"max_digits": 20, "decimal_places": 6}
ASSET_LENGTH_MAX = 64  # The longest commodity code the ledger stores.
READ_ERRORS: dict[int, Any] = {401: ErrorSerializer, 403: ErrorSerializer, 429: ErrorSerializer}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "decimal", "pattern": r"^-?\d+\.\d{6}$"},
            {"type": "integer"},
        ],
        "description": "USD as a decimal string (6 places); GPU-hours as an integer.",
    }
)
class QuantityField(serializers.Field):
    """An amount of an asset in its unit: dollars (``Decimal``) or GPU-hours (``int``)."""

    def to_representation(self, value: Decimal | int) -> str | int:
        if isinstance(value, Decimal):
            return format(value.quantize(Decimal("0.000001")), "f")
        return value


class BalanceSerializer(serializers.Serializer):
    asset = serializers.CharField(help_text="USD, or a GPU-hour entitlement code.")
    kind = serializers.ChoiceField(
        choices=[Commodity.Kind.CURRENCY, Commodity.Kind.ENTITLEMENT],
        help_text="currency (USD) or entitlement (GPU-hours).",
    )
    posted = QuantityField(help_text="Held by the account.")
    pending = QuantityField(help_text="Held for open orders and withdrawals under review.")
    available = QuantityField(help_text="posted - pending: what can be spent or sold.")
    owed = QuantityField(
        help_text=(
            "USD only: losses the account could not pay from cash or margin and owes the "
            "exchange (its deficit), repaid first from the next funds; 0 for GPU-hours."
        )
    )


class Balances(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        responses={200: BalanceSerializer(many=True), **READ_ERRORS},
        summary="Balances: USD first, then each GPU-hour entitlement held",
    )
    def get(self, request: Request) -> Response:
        balances = balances_of(request.caller.account)
        return Response(BalanceSerializer(balances, many=True).data)


class PositionSerializer(serializers.Serializer):
    symbol = serializers.CharField(source="instrument.symbol")
    kind = serializers.CharField(source="instrument.kind")
    contracts = serializers.IntegerField(help_text="Long positive, short negative.")
    gpu_hours = serializers.IntegerField(help_text="contracts x GPU-hours per contract.")
    cost = serializers.DecimalField(
        **USD,
        help_text=(
            "The position's cost memo, USD: its trades' value, bought less sold, since the last "
            "daily settlement for a future (which resets it to the position's settlement "
            "value), since the first trade for an option. Not what the open contracts were "
            "traded at: contracts closed since leave what they realized in it (a gain lowers "
            "it), so pnl = market_value - cost, and once flat cost is minus the realized P&L. "
            "Fees are not part of it."
        ),
    )
    average_price = serializers.DecimalField(
        **PRICE, allow_null=True, help_text="Break-even $/GPU-hr; null when flat."
    )
    mark_price = serializers.DecimalField(
        **PRICE,
        allow_null=True,
        help_text=(
            "The most recent of the latest settlement price and the last trade: a trade at or "
            "after the close the settlement stands for wins, else the settlement price; null "
            "with neither."
        ),
    )
    mark_source = serializers.ChoiceField(
        choices=[
            (source.value, source.label) for source in (MarkSource.SETTLEMENT, MarkSource.TRADE)
        ],
        allow_null=True,
        help_text="Where mark_price comes from: settlement or trade; null with no mark.",
    )
    market_value = serializers.DecimalField(**USD, allow_null=True)
    pnl = serializers.DecimalField(
        **USD, allow_null=True, help_text="market_value - cost (realized once flat)."
    )
    margin = serializers.DecimalField(**USD, help_text="Initial margin held for the position.")


class TotalsSerializer(serializers.Serializer):
    margin = serializers.DecimalField(**USD)
    pnl = serializers.DecimalField(**USD, help_text="Over the positions with a mark price.")


class PortfolioSerializer(serializers.Serializer):
    positions = PositionSerializer(many=True)
    totals = TotalsSerializer()


class Positions(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        responses={200: PortfolioSerializer, **READ_ERRORS},
        summary="Futures, options and resale positions, with mark, P&L and margin",
    )
    def get(self, request: Request) -> Response:
        rows = positions_of(request.caller.account)
        margin, pnl = portfolio_totals(rows)
        data = {"positions": rows, "totals": {"margin": margin, "pnl": pnl}}
        return Response(PortfolioSerializer(data).data)


class StatementQuery(PageQuery):
    asset = serializers.CharField(
        max_length=ASSET_LENGTH_MAX,
        default=USD_CODE,
        help_text="USD (the default) or a GPU-hour entitlement code from the balances.",
    )


class StatementLineSerializer(serializers.Serializer):
    entry_id = serializers.IntegerField(help_text="The ledger entry.")
    posted_at = serializers.DateTimeField()
    description = serializers.CharField()
    amount = QuantityField(help_text="Positive: into the account.")
    balance_after = QuantityField(help_text="The posted balance after this movement.")


class Statement(ApiView):
    required_scope = ApiKey.Scope.READ
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[StatementQuery],
        responses={
            200: StatementLineSerializer(many=True),
            400: ErrorSerializer,
            404: ErrorSerializer,
            **READ_ERRORS,
        },
        summary="Movements of one asset, newest first, with the running balance",
        description=(
            "404 NOT_FOUND with field asset for an asset the account never held; 404 for a "
            "cursor that is not ours."
        ),
    )
    def get(self, request: Request) -> Response:
        query = StatementQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        asset = query.validated_data["asset"]
        source = statement_source(request.caller.account, asset)
        if source is None:
            # Another account's asset is answered as one that does not exist.
            raise not_found(
                f"No asset {asset} in the account: give USD or a GPU-hour entitlement code it "
                "holds or held (GET /api/v1/account/balances/).",
                "asset",
            )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(statement_postings(source), request, view=self)
        lines = statement_lines(source, page or [])
        return paginator.get_paginated_response(StatementLineSerializer(lines, many=True).data)


class EntitlementSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    sku = serializers.CharField(source="sku_code")
    region = serializers.CharField(source="region_code")
    month = serializers.DateField(help_text="First day of the month the GPU-hours are for.")
    held = serializers.IntegerField(source="gpu_hours", help_text="GPU-hours held.")
    on_hold = serializers.IntegerField(help_text="GPU-hours held for open sell orders.")
    available = serializers.IntegerField(help_text="held - on_hold.")


class Entitlements(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        responses={200: EntitlementSerializer(many=True), **READ_ERRORS},
        summary="GPU-hour entitlements held, per SKU, region and month",
    )
    def get(self, request: Request) -> Response:
        holdings = entitlements_of(request.caller.account)
        return Response(EntitlementSerializer(holdings, many=True).data)


class MarginCallSerializer(serializers.Serializer):
    trading_date = serializers.DateField(
        source="call.trading_date", help_text="The daily cycle that made the call."
    )
    created_at = serializers.DateTimeField(source="call.created_at")
    amount_called = serializers.DecimalField(
        **USD,
        help_text="USD the call asked for when it was made (its amount_due then). The figures "
        "below are current: a later daily settlement or a review updates them.",
    )
    figured_at = serializers.DateTimeField(
        source="call.figured_at",
        allow_null=True,
        help_text="When a later daily settlement or a review last updated the figures; null "
        "while they are the call's own.",
    )
    required = serializers.DecimalField(
        **USD, help_text="USD of initial margin the positions need at the latest prices."
    )
    held = serializers.DecimalField(**USD, help_text="USD of margin the account holds for them.")
    deficit = serializers.DecimalField(
        **USD, help_text="USD of losses the account could not pay: owed to the exchange."
    )
    amount_due = serializers.DecimalField(
        **USD,
        help_text="USD to deposit (or free by reducing positions) to cure the call: "
        "required - held, plus the deficit.",
    )


class MarginCallStandingSerializer(serializers.Serializer):
    margin_call = MarginCallSerializer(
        allow_null=True,
        help_text="The open margin call, or null. While open, the account may only place "
        "orders that reduce its positions (with no fee) and sells of resale capacity (with "
        "their fee); others: 422 RISK_REDUCE_ONLY. No cash leaves it until the call is met: "
        "withdrawals are 422 FUNDING_MARGIN_CALL_OPEN; funding a pool, a pool's withdrawal and "
        "repaying pool credit are 422 POOL_MARGIN_CALL_OPEN.",
    )


class MarginCallView(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        responses={200: MarginCallStandingSerializer, **READ_ERRORS},
        summary="The account's open margin call, if any, and what cures it",
    )
    def get(self, request: Request) -> Response:
        standing = margin_call_of(request.caller.account)
        return Response(MarginCallStandingSerializer({"margin_call": standing}).data)


class NoticeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Notice.Kind.choices)
    account = serializers.CharField(
        source="account.name",
        help_text="The organization's account it is about (main, or a pool's).",
    )
    subject = serializers.CharField()
    message = serializers.CharField(help_text="What happened and what to do, as emailed.")
    created_at = serializers.DateTimeField()
    emailed_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was emailed to the members; null until then."
    )


class Notices(ApiView):
    required_scope = ApiKey.Scope.READ
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[PageQuery],
        responses={
            200: NoticeSerializer(many=True),
            400: ErrorSerializer,
            404: ErrorSerializer,
            **READ_ERRORS,
        },
        summary="What the exchange told the organization, newest first",
        description=(
            "Margin calls, their cures and liquidations; deposits credited or reversed; "
            "withdrawals paid, rejected or failed; delivery failure penalties. Each is also "
            "sent on ws/v1/orders/ (a notice message) and emailed to the organization's "
            "members. 404 for a cursor that is not ours."
        ),
    )
    def get(self, request: Request) -> Response:
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        return newest_first_page(
            self,
            request,
            notices_of(request.caller.organization.pk),
            lambda page: NoticeSerializer(page, many=True).data,
        )


urlpatterns = [
    path("account/balances/", Balances.as_view(), name="account-balances"),
    path("account/margin-call/", MarginCallView.as_view(), name="account-margin-call"),
    path("account/positions/", Positions.as_view(), name="account-positions"),
    path("account/statement/", Statement.as_view(), name="account-statement"),
    path("account/entitlements/", Entitlements.as_view(), name="account-entitlements"),
    path("account/notices/", Notices.as_view(), name="account-notices"),
]
