"""A block whose term has begun is resold from a month's start to the end of its term: the
months its holder will not use. Each listing's trades deliver the GPU-hours of its own months,
and what an organization may offer of the block is counted across the block's listings."""

from datetime import UTC, datetime, timedelta

import pytest

from exchange import calendar
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Order, Trade
from exchange.selectors.capacity import block_holdings, capacity_held
from exchange.selectors.entitlements import entitlements_of
from exchange.services.capacity import capacity_register
from exchange.services.collateral import notional_micros
from exchange.services.listing import resale_list
from tests.exchange.ledger_figures import cash
from tests.exchange.support import place, resale_month_after

pytestmark = pytest.mark.django_db

PRICE = "2.30"


@pytest.fixture
def running(sku, region, seller):
    """Northwind's own 16-GPU block (lots of 8) that began 20 days ago, for 150 days."""
    began = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=20)
    return capacity_register(
        provider=seller.organization,
        holder=seller.organization,
        cluster="nw-ashburn-running",
        sku=sku,
        region=region,
        starts_at=began,
        ends_at=began + timedelta(days=150),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )


def hours_by_month(account) -> dict:
    return {holding.month: holding.gpu_hours for holding in entitlements_of(account)}


def test_a_trade_on_a_running_blocks_listing_delivers_the_hours_from_its_month_on(
    running, seller, buyer
):
    # given the block listed now, from the first month it can still be listed for
    listing = resale_list(reservation=running)
    first = resale_month_after(datetime.now(UTC))
    assert listing.resale_starts_at == first
    northwind_before = hours_by_month(seller)
    cash_before = cash(buyer)

    # when Lumen buys 8 GPUs of it
    place(seller, listing, "sell", 8, PRICE)
    bought = place(buyer, listing, "buy", 8, PRICE)

    # then Lumen holds 8 GPUs' hours of every month from that one to the end of the term, and
    # none of the months before it, which Northwind keeps whole
    assert bought.status == Order.Status.FILLED
    lumen = hours_by_month(buyer)
    northwind = hours_by_month(seller)
    assert min(lumen) == first.date()
    assert sum(lumen.values()) == 8 * listing.gpu_hours_per_contract
    for month, hours in northwind_before.items():
        if month < first.date():
            assert northwind[month] == hours
        else:
            assert northwind[month] == hours - lumen[month]
            assert lumen[month] == hours // 2
    # and it paid the price of those hours only, with its fee
    trade = Trade.objects.get()
    assert trade.quantity == 8
    notional = notional_micros(trade.price, 8, listing.gpu_hours_per_contract)
    assert cash_before - cash(buyer) == notional + trade.buyer_fee


def test_a_buyer_resells_on_the_blocks_next_listing_what_it_bought(running, seller, buyer, fourth):
    """Lumen bought 8 GPUs on the block's listing from one month, and resells them on its next
    listing from a later month: it keeps the months between, and may offer no more than the 8."""
    first = resale_list(reservation=running)
    place(seller, first, "sell", 8, PRICE)
    place(buyer, first, "buy", 8, PRICE)
    # the next listing, as the block would be listed once the first has ended
    later = first.resale_starts_at + timedelta(days=1)
    first.status = first.Status.EXPIRED
    first.save(update_fields=["status"])
    second = resale_list(reservation=running, now=later)
    assert second.delivery_start == calendar.add_months(first.delivery_start, 1)
    # Lumen holds GPUs of the block, so it may list it as the holder may
    assert capacity_held(buyer.organization, running.pk) == running
    assert capacity_held(fourth.organization, running.pk) is None

    with pytest.raises(OrderRejected) as raised:
        place(buyer, second, "sell", 16, PRICE)
    assert raised.value.code == OrderRejectCode.BLOCK_NOT_HELD
    place(buyer, second, "sell", 8, PRICE)
    place(fourth, second, "buy", 8, PRICE)

    # then Lumen keeps the first listing's first month, Quanta has the rest, and the block's
    # holdings count both listings' trades
    lumen = hours_by_month(buyer)
    quanta = hours_by_month(fourth)
    assert list(lumen) == [first.delivery_start]
    assert min(quanta) == second.delivery_start
    assert sum(quanta.values()) == 8 * second.gpu_hours_per_contract
    holdings = block_holdings(running)
    assert holdings[seller.organization_id].held == 8
    assert holdings[buyer.organization_id].held == 0
    assert holdings[fourth.organization_id].held == 8
