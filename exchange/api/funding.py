"""Deposits and withdrawals of the caller's trading account, in USD (whole cents).

A deposit is credited at once in test-funds mode (no Stripe keys configured); with Stripe it
returns the Checkout address to pay at, and Stripe's webhook credits it when paid. A withdrawal
holds the amount at once and is paid out when staff approve it; until then the caller may cancel
it, which releases the amount."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from decimal import Decimal
from typing import Any

from django.http import Http404
from django.urls import path, reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer
from exchange.api.fields import DecimalStringField
from exchange.api.pagination import NewestFirst, PageQuery
from exchange.api.views import ApiView
from exchange.models import ApiKey, Deposit, Withdrawal
from exchange.selectors.funding import deposits_of, withdrawals_of
from exchange.services.funding import deposit_request, withdrawal_cancel, withdrawal_request

ERRORS: dict[int, Any] = {401: ErrorSerializer, 403: ErrorSerializer, 429: ErrorSerializer}
LIST_ERRORS: dict[int, Any] = {400: ErrorSerializer, 404: ErrorSerializer, **ERRORS}
POST_ERRORS: dict[int, Any] = {400: ErrorSerializer, 422: ErrorSerializer, **ERRORS}
CANCEL_ERRORS: dict[int, Any] = {404: ErrorSerializer, 409: ErrorSerializer, **ERRORS}


# A positive amount in whole cents with at most 12 digits before the point, as the column holds
# (14 digits, 2 decimals). Written out for the schema, where DRF's own pattern accepts "" and 0.
CENTS_PATTERN = r"^(0*[1-9][0-9]{0,11}(\.[0-9]{1,2})?|0*\.(0[1-9]|[1-9][0-9]?))$"


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": CENTS_PATTERN, "example": "2500.00"}
)
class CentsField(DecimalStringField):
    """Dollars and cents as a string (a JSON number is parsed as a float, which money never
    is), written out in digits as the schema's pattern says: not ``1e3``, not ``-5``."""

    pattern = CENTS_PATTERN
    default_error_messages = {
        "format": 'Give a positive amount in dollars and cents as a string, e.g. "2500.00".'
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), **kwargs)


class AmountSerializer(serializers.Serializer):
    # Each mode's own maximum is the service's to enforce (FUNDING_AMOUNT_TOO_LARGE, 422).
    amount = CentsField(help_text="USD, a positive whole number of cents.")


class DepositSerializer(serializers.ModelSerializer):
    class Meta:
        model = Deposit
        fields = ["id", "amount", "method", "status", "created_at", "updated_at"]


class DepositCreatedSerializer(DepositSerializer):
    """A new deposit, with where to pay for it."""

    checkout_url = serializers.SerializerMethodField(
        help_text="Stripe Checkout page to pay at; null when credited at once."
    )

    class Meta(DepositSerializer.Meta):
        fields = [*DepositSerializer.Meta.fields, "checkout_url"]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_checkout_url(self, deposit: Deposit) -> str | None:
        checkout_url: str | None = self.context["checkout_url"]
        return checkout_url


class WithdrawalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Withdrawal
        fields = ["id", "amount", "status", "reason", "created_at", "updated_at", "reviewed_at"]


class FundingView(ApiView):
    """Reading the history is account data (read); moving money needs the transfer scope."""

    pagination_class = NewestFirst

    @property
    def required_scope(self) -> str:
        if self.request.method in SAFE_METHODS:
            return ApiKey.Scope.READ
        return ApiKey.Scope.TRANSFER

    def paginated(self, request: Request, rows: Any, serializer: type) -> Response:
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(serializer(page, many=True).data)


class Deposits(FundingView):
    @extend_schema(
        parameters=[PageQuery],
        responses={200: DepositSerializer(many=True), **LIST_ERRORS},
        summary="The account's deposits, newest first",
        description="Scope read. 404 for a cursor that is not valid.",
    )
    def get(self, request: Request) -> Response:
        return self.paginated(request, deposits_of(request.caller.account), DepositSerializer)

    @extend_schema(
        request=AmountSerializer,
        responses={201: DepositCreatedSerializer, **POST_ERRORS},
        summary="Deposit USD: credited at once (test funds) or paid through Stripe Checkout",
        description=(
            "Scope transfer. In test-funds mode the deposit is `credited` and `checkout_url` is "
            "null; with Stripe it is `pending` until paid at `checkout_url`. 422 "
            "FUNDING_AMOUNT_TOO_LARGE, FUNDING_AMOUNT_TOO_SMALL (with Stripe, below its "
            "minimum charge of 0.50 USD), FUNDING_ACCOUNT_INACTIVE or FUNDING_STRIPE_ERROR."
        ),
    )
    def post(self, request: Request) -> Response:
        body = AmountSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        portfolio = request.build_absolute_uri(reverse("web:portfolio"))
        deposit, checkout_url = deposit_request(
            account=request.caller.account,
            amount=body.validated_data["amount"],
            actor=request.caller.user,
            success_url=portfolio,
            cancel_url=portfolio,
        )
        created = DepositCreatedSerializer(deposit, context={"checkout_url": checkout_url})
        return Response(created.data, status=status.HTTP_201_CREATED)


class Withdrawals(FundingView):
    @extend_schema(
        parameters=[PageQuery],
        responses={200: WithdrawalSerializer(many=True), **LIST_ERRORS},
        summary="The account's withdrawals, newest first",
        description="Scope read. 404 for a cursor that is not valid.",
    )
    def get(self, request: Request) -> Response:
        return self.paginated(request, withdrawals_of(request.caller.account), WithdrawalSerializer)

    @extend_schema(
        request=AmountSerializer,
        responses={201: WithdrawalSerializer, **POST_ERRORS},
        summary="Withdraw USD: held at once, paid out when staff approve",
        description=(
            "Scope transfer. 422 FUNDING_INSUFFICIENT_FUNDS when more than the available cash, "
            "FUNDING_AMOUNT_TOO_LARGE, FUNDING_ACCOUNT_INACTIVE, or FUNDING_MARGIN_CALL_OPEN "
            "while the account is under a margin call (no cash leaves it until the call is met)."
        ),
    )
    def post(self, request: Request) -> Response:
        body = AmountSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        withdrawal = withdrawal_request(
            account=request.caller.account,
            amount=body.validated_data["amount"],
            actor=request.caller.user,
            api_key=request.caller.key,
        )
        return Response(WithdrawalSerializer(withdrawal).data, status=status.HTTP_201_CREATED)


class WithdrawalCancel(FundingView):
    @extend_schema(
        request=None,
        responses={200: WithdrawalSerializer, **CANCEL_ERRORS},
        summary="Cancel a withdrawal staff have not reviewed: its held amount is available again",
        description=(
            "Scope transfer. 404 for an id that is not one of the account's withdrawals, 409 "
            "FUNDING_INVALID_STATUS_CHANGE once it is approved, paid, failed, rejected or "
            "cancelled."
        ),
    )
    def post(self, request: Request, withdrawal_id: int) -> Response:
        try:
            withdrawal = withdrawal_cancel(
                account=request.caller.account,
                withdrawal_id=withdrawal_id,
                actor=request.caller.user,
                api_key=request.caller.key,
            )
        except Withdrawal.DoesNotExist as error:
            raise Http404(withdrawal_id) from error
        return Response(WithdrawalSerializer(withdrawal).data)


urlpatterns = [
    path("funding/deposits/", Deposits.as_view(), name="deposits"),
    path("funding/withdrawals/", Withdrawals.as_view(), name="withdrawals"),
    path(
        "funding/withdrawals/<int:withdrawal_id>/cancel/",
        WithdrawalCancel.as_view(),
        name="withdrawal-cancel",
    ),
]
