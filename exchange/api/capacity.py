"""Reserved GPU capacity: a provider registers a block (its GPU-hours are issued to the block's
holder as entitlements), both see it, and the holder lists it for resale."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from datetime import UTC, datetime
from typing import Any

from django.http import Http404
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer
from exchange.api.fields import CodeRelatedField, IntegerInputField, TextField
from exchange.api.market import InstrumentSerializer
from exchange.api.pagination import NewestFirst, PageQuery
from exchange.api.trading import AwareDateTimeField
from exchange.api.views import ApiView
from exchange.models import ApiKey, Organization, Region, ReservedCapacity, Sku
from exchange.models.catalog import Interconnect
from exchange.selectors.capacity import capacity_held, capacity_of, gpus_held, latest_listing
from exchange.services.capacity import GPUS_MAX, capacity_register
from exchange.services.listing import listing_trades, resale_list, resale_next_term

# Reservations are of this century: the bounds keep calendar arithmetic far from year 9999.
MOMENT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
MOMENT_MAX = datetime(2100, 1, 1, tzinfo=UTC)
CLUSTER_LENGTH_MAX = 100
ID_DIGITS_MAX = 19  # Ids are 64-bit: anything longer is no block.
ERRORS: dict[int, Any] = {401: ErrorSerializer, 403: ErrorSerializer, 429: ErrorSerializer}


class CapacitySerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.slug")
    holder = serializers.CharField(source="holder.slug")
    sku = serializers.CharField(source="sku.code")
    region = serializers.CharField(source="region.code")
    listed_symbol = serializers.SerializerMethodField(
        help_text="The block's latest resale listing (its instrument's symbol), null if never "
        "listed: before the term a listing sells the whole term; during it, from a day's "
        "start (00:00 UTC) to the end (symbol ending -YYYYMM from a month's first day, "
        "-YYYYMMDD from another)."
    )
    listing_trading = serializers.SerializerMethodField(
        help_text="Whether that listing still trades; if not, the holder can list the block "
        "again (see resale_from)."
    )
    resale_from = serializers.SerializerMethodField(
        help_text="The hour a listing made now would deliver from: the term's start until the "
        "day before it, then the first day's start (00:00 UTC) more than a day ahead, the "
        "rest of the month under way included; null when nothing of the term is left to list."
    )
    held_gpus = serializers.SerializerMethodField(
        help_text="GPUs of the block the caller's organization holds now: the block's GPUs if "
        "it is the registered holder, less what it sold on the block's resale listing, plus "
        "what it bought there."
    )

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_listed_symbol(self, reservation: ReservedCapacity) -> str | None:
        listing = latest_listing(reservation)
        return listing.symbol if listing else None

    @extend_schema_field(serializers.BooleanField())
    def get_listing_trading(self, reservation: ReservedCapacity) -> bool:
        listing = latest_listing(reservation)
        return listing is not None and listing_trades(listing, self.context["now"])

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_resale_from(self, reservation: ReservedCapacity) -> str | None:
        term = resale_next_term(reservation, self.context["now"])
        return (
            None if term is None else serializers.DateTimeField().to_representation(term.starts_at)
        )

    def get_held_gpus(self, reservation: ReservedCapacity) -> int:
        held: dict[int, int] = self.context["held"]
        return held[reservation.pk]

    class Meta:
        model = ReservedCapacity
        fields = [
            "id",
            "provider",
            "holder",
            "cluster",
            "sku",
            "region",
            "starts_at",
            "ends_at",
            "gpus",
            "interconnect",
            "contiguous_block_gpus",
            "created_at",
            "listed_symbol",
            "listing_trading",
            "resale_from",
            "held_gpus",
        ]


class CapacityRegisterSerializer(serializers.Serializer):
    holder = CodeRelatedField(
        slug_field="slug",
        queryset=Organization.objects.all(),
        help_text="The organization the GPU-hours are issued to (the provider itself, or the "
        "customer that reserved the block).",
    )
    cluster = TextField(trim_whitespace=True, max_length=CLUSTER_LENGTH_MAX)
    sku = CodeRelatedField(slug_field="code", queryset=Sku.objects.all())
    region = CodeRelatedField(slug_field="code", queryset=Region.objects.all())
    # A time without its zone is refused, not read as UTC: the block's GPU-hours are issued
    # by calendar month from it, and an hour off moves them.
    starts_at = AwareDateTimeField(
        help_text="ISO 8601 with a time zone (Z or an offset), on a whole hour."
    )
    ends_at = AwareDateTimeField(
        help_text="ISO 8601 with a time zone (Z or an offset), on a whole hour, after starts_at."
    )
    gpus = IntegerInputField(min_value=1, max_value=GPUS_MAX)
    interconnect = serializers.ChoiceField(choices=Interconnect.choices)
    contiguous_block_gpus = IntegerInputField(
        min_value=1, max_value=GPUS_MAX, help_text="GPUs per interconnected block."
    )

    def _moment(self, value: datetime) -> datetime:
        if not MOMENT_MIN <= value < MOMENT_MAX:
            raise serializers.ValidationError(
                f"Between {MOMENT_MIN:%Y} and {MOMENT_MAX:%Y}, please."
            )
        return value

    def validate_starts_at(self, value: datetime) -> datetime:
        return self._moment(value)

    def validate_ends_at(self, value: datetime) -> datetime:
        return self._moment(value)


class CapacityList(ApiView):
    pagination_class = NewestFirst

    @property
    def required_scope(self) -> str:
        # Seeing one's capacity is account data (read); registering it issues GPU-hours (trade).
        if self.request.method in SAFE_METHODS:
            return ApiKey.Scope.READ
        return ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[PageQuery],
        responses={
            200: CapacitySerializer(many=True),
            400: ErrorSerializer,
            404: ErrorSerializer,
            **ERRORS,
        },
        summary="Reserved capacity the caller provides, holds or bought GPUs of, newest first",
        description=(
            "Scope read. The blocks the caller's organization provides or is the registered "
            "holder of (whatever it holds of them), and those it holds GPUs of, bought on their "
            "resale listing (while it holds some). 404 for a cursor that is not valid."
        ),
    )
    def get(self, request: Request) -> Response:
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        paginator = self.pagination_class()
        organization = request.caller.organization
        page = paginator.paginate_queryset(capacity_of(organization), request, view=self)
        held = gpus_held(organization.pk, page)
        return paginator.get_paginated_response(
            CapacitySerializer(page, many=True, context={"held": held, "now": timezone.now()}).data
        )

    @extend_schema(
        request=CapacityRegisterSerializer,
        responses={
            201: CapacitySerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            422: ErrorSerializer,
            **ERRORS,
        },
        summary="Register a reserved block (providers only): issues its GPU-hours to the holder",
        description=(
            "Scope trade. 404 NOT_FOUND with the field for a holder, sku or region that names "
            "none; 422 CATALOG_PROVIDER_REQUIRED when the caller is not a provider; "
            "422 CATALOG_HOLDER_IS_OPERATOR for a block held by the exchange operator; "
            "400 INVALID_INPUT for a start or end without its time zone; "
            "422 CATALOG_INVALID_CAPACITY for a term off whole hours, too long or already over "
            "(ends_at), or a contiguous block larger than the reservation or not dividing its "
            "GPUs."
        ),
    )
    def post(self, request: Request) -> Response:
        body = CapacityRegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reservation = capacity_register(
            provider=request.caller.organization,
            actor=request.caller.user,
            **body.validated_data,
        )
        held = gpus_held(request.caller.organization.pk, [reservation])
        return Response(
            CapacitySerializer(reservation, context={"held": held, "now": timezone.now()}).data,
            status=status.HTTP_201_CREATED,
        )


class ResaleListSerializer(serializers.Serializer):
    lot_gpus = IntegerInputField(
        min_value=1,
        max_value=GPUS_MAX,
        required=False,
        allow_null=True,
        help_text="GPUs per contract lot; must divide the block. Default: the contiguous block.",
    )


class CapacityListForResale(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[
            OpenApiParameter("capacity_id", int, OpenApiParameter.PATH, description="A block.")
        ],
        request=ResaleListSerializer,
        responses={
            201: InstrumentSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            422: ErrorSerializer,
            **ERRORS,
        },
        operation_id="v1_capacity_resale_list",
        summary="List a block the caller holds for resale; returns the new instrument",
        description=(
            "Scope trade. The caller must be the block's registered holder or hold GPUs of it "
            "(bought on its listings); 404 otherwise. Before the term (until a day before it "
            "starts, and the close of the day before) the listing sells the whole term; after "
            "that, from the first day's start (00:00 UTC) more than a day ahead, in the month "
            "under way or else from a month's start, to the end of the term (resale_from on "
            "the block). 422 CATALOG_RESERVATION_ALREADY_LISTED while a listing of the block "
            "still trades, CATALOG_RESERVATION_ALREADY_STARTED when the term ends before any "
            "day it could still be listed from, or "
            "CATALOG_INVALID_LISTING (a lot that does not divide it)."
        ),
    )
    def post(self, request: Request, capacity_id: str) -> Response:
        body = ResaleListSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # The route takes any text, so that an id that is no number gets the API's 404 rather
        # than Django's HTML page.
        known = capacity_id.isascii() and capacity_id.isdigit()
        reservation = (
            capacity_held(request.caller.organization, int(capacity_id))
            if known and len(capacity_id) <= ID_DIGITS_MAX
            else None
        )
        if reservation is None:
            raise Http404(capacity_id)
        instrument = resale_list(
            reservation=reservation,
            lot_gpus=body.validated_data.get("lot_gpus"),
            actor=request.caller.user,
        )
        return Response(InstrumentSerializer(instrument).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("capacity/", CapacityList.as_view(), name="capacity"),
    path(
        "capacity/<text:capacity_id>/list/",
        CapacityListForResale.as_view(),
        name="capacity-list-for-resale",
    ),
]
