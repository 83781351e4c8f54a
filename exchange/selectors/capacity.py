"""Reads of reserved capacity blocks, as their provider, holder or a buyer of part of them sees
them, and of what each organization holds of a block once part of it has been resold."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce

from exchange.models import (
    LIVE_STATUSES,
    Instrument,
    Order,
    OrderCommand,
    Organization,
    ReservedCapacity,
    Side,
    Trade,
)


def capacity_of(organization: Organization) -> QuerySet[ReservedCapacity]:
    """The blocks ``organization`` provides, is the registered holder of, or holds GPUs of now
    (bought on the block's resale listing: ``BlockHolding.held`` above 0), with their resale
    resale listings (``listings``, prefetched, in order of their start).

    Its provider and registered holder see a block whatever they hold of it (the holder that
    sold it all sees it with 0 held). Anyone else sees it while it holds some: the GPUs its
    accounts bought on the block's listing, less those they sold there (a buyer that resold
    all it bought holds nothing of it, and no longer sees it)."""
    bought, sold = _traded(
        Trade.objects.filter(instrument__reservation=OuterRef("pk")), organization.pk
    )
    return (
        ReservedCapacity.objects.annotate(bought=bought, sold=sold)
        .filter(
            Q(provider=organization)
            | Q(holder=organization)
            # Registered to another, so what it holds is what it bought less what it sold.
            | Q(
                pk__in=Trade.objects.filter(buyer_account__organization=organization).values(
                    "instrument__reservation"
                ),
                bought__gt=F("sold"),
            )
        )
        .select_related("provider", "holder", "sku", "region")
        .prefetch_related(
            Prefetch("listings", queryset=Instrument.objects.order_by("delivery_start"))
        )
    )


def latest_listing(reservation: ReservedCapacity) -> Instrument | None:
    """The block's latest resale listing (they follow one another, each from a later start),
    None if never listed; from ``capacity_of``'s prefetch when it was read there."""
    return max(reservation.listings.all(), key=lambda i: i.delivery_start, default=None)


def capacity_held(organization: Organization, capacity_id: int) -> ReservedCapacity | None:
    """Block ``capacity_id`` if ``organization`` may list it for resale: its registered holder,
    or an organization holding GPUs of it now (bought on its listings, ``BlockHolding.held``),
    which resells them as the holder would; None otherwise."""
    block = ReservedCapacity.objects.filter(pk=capacity_id).select_related("sku", "region").first()
    if block is None or block.holder_id == organization.pk:
        return block
    holding = block_holdings(block, organization_id=organization.pk)[organization.pk]
    return block if holding.held > 0 else None


@dataclass(frozen=True)
class BlockHolding:
    """What one organization holds of one reserved block, in contracts (1 GPU of the block).

    ``registered``: the block's GPUs for its registered holder, 0 for anyone else; ``bought``
    and ``sold``: contracts its accounts traded on the block's resale listings; ``offered``:
    the open quantity of their live sell orders there (a pending replace that raises one counts
    at its new quantity).

    The block's listings follow one another, each delivering from its start to the end of the
    term, the later from a later month: every contract traded on any of them covers the term of
    the latest. So what these sum is what the organization holds of the block from the latest
    listing's start on (before it, it may hold more: GPUs it sold there it still held until
    then), which is what it may offer on it."""

    organization_id: int
    registered: int
    bought: int
    sold: int
    offered: int

    @property
    def held(self) -> int:
        """GPUs of the block the organization holds now."""
        return self.registered + self.bought - self.sold

    @property
    def free(self) -> int:
        """What it may still offer for sale: held, less what its live sell orders offer."""
        return self.held - self.offered


def _sum_of(queryset: QuerySet[Any], expression: Combinable, group_by: str) -> Coalesce:
    """A correlated subquery summing ``expression`` over ``queryset`` (0 when it is empty)."""
    summed = (
        queryset.order_by()
        .values(group_by)
        .annotate(total=Sum(expression, output_field=IntegerField()))
        .values("total")
    )
    return Coalesce(Subquery(summed, output_field=IntegerField()), Value(0))


def _traded(trades: QuerySet[Trade], organization: int | OuterRef) -> tuple[Coalesce, Coalesce]:
    """The contracts ``organization``'s accounts bought and sold in ``trades`` (0 when none),
    as expressions to annotate."""
    bought = trades.filter(Q(buyer_account__organization=organization))
    sold = trades.filter(Q(seller_account__organization=organization))
    return (
        _sum_of(bought, F("quantity"), "buyer_account__organization"),
        _sum_of(sold, F("quantity"), "seller_account__organization"),
    )


def block_holdings(
    reservation: ReservedCapacity,
    *,
    organization_id: int | None = None,
    excluding_order: Order | None = None,
) -> dict[int, BlockHolding]:
    """What each organization holds of ``reservation``'s block (see ``BlockHolding``), by
    organization id: its registered holder and every organization that traded it or offers it
    on its resale instrument; only organization ``organization_id`` if given (then always
    present). The live
    sell orders leave out ``excluding_order`` (a replace is checked without the order it
    replaces).

    One statement, so it reads one snapshot: a matcher batch committing between two reads
    could otherwise show a fill's contracts as neither offered any more nor sold yet. The
    resale sell check (``orders.check_block_held``) and the capacity pages both read this.
    """
    trades = Trade.objects.filter(instrument__reservation=reservation)
    live_sells = Order.objects.filter(
        instrument__reservation=reservation, side=Side.SELL, status__in=LIVE_STATUSES
    )
    if excluding_order is not None:
        live_sells = live_sells.exclude(pk=excluding_order.pk)
    # A pending replace raising a live sell counts its increase over the order's open quantity
    # (several pending on one order each count theirs: more than the order may end at, never
    # less).
    raises = OrderCommand.objects.filter(
        kind=OrderCommand.Kind.REPLACE,
        status=OrderCommand.Status.PENDING,
        order__in=live_sells,
        quantity__gt=F("order__quantity")
        - F("order__filled_quantity")
        - F("order__cancelled_quantity"),
    )
    open_quantity = F("quantity") - F("filled_quantity") - F("cancelled_quantity")
    increase = (
        F("quantity")
        - F("order__quantity")
        + F("order__filled_quantity")
        + F("order__cancelled_quantity")
    )
    organizations = Organization.objects.all()
    if organization_id is not None:
        organizations = organizations.filter(pk=organization_id)
    else:
        organizations = organizations.filter(
            Q(pk=reservation.holder_id)
            | Q(pk__in=trades.values("buyer_account__organization"))
            | Q(pk__in=trades.values("seller_account__organization"))
            | Q(pk__in=live_sells.values("account__organization"))
        )
    bought, sold = _traded(trades, OuterRef("pk"))
    rows = organizations.annotate(
        bought=bought,
        sold=sold,
        offered=_sum_of(
            live_sells.filter(account__organization=OuterRef("pk")),
            open_quantity,
            "account__organization",
        ),
        raised=_sum_of(
            raises.filter(order__account__organization=OuterRef("pk")),
            increase,
            "order__account__organization",
        ),
    ).values_list("pk", "bought", "sold", "offered", "raised")
    return {
        organization_id: BlockHolding(
            organization_id=organization_id,
            registered=reservation.gpus if organization_id == reservation.holder_id else 0,
            bought=bought,
            sold=sold,
            offered=offered + raised,
        )
        for organization_id, bought, sold, offered, raised in rows.order_by("pk")
    }


def gpus_held(organization_id: int, reservations: Iterable[ReservedCapacity]) -> dict[int, int]:
    """What organization ``organization_id`` holds now of each block of ``reservations``
    (``BlockHolding.held``: its registered GPUs, less sold, plus bought), by reservation id.

    A block never listed for resale is wholly its registered holder's; a listed one is counted
    by ``block_holdings``, one query each (read with ``capacity_of``, whose prefetch of the
    listings tells which are listed)."""
    held = {}
    for reservation in reservations:
        if not reservation.listings.all():
            registered = reservation.gpus if reservation.holder_id == organization_id else 0
            held[reservation.pk] = registered
            continue
        holding = block_holdings(reservation, organization_id=organization_id)
        held[reservation.pk] = holding[organization_id].held
    return held
