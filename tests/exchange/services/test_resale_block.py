"""A resale sell offers GPUs of one reserved block: no more than the seller's organization holds
of that block, whatever GPU-hours of the same SKU, region and months it holds elsewhere."""

import threading
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Account, Interconnect, Order
from exchange.selectors.capacity import block_holdings
from exchange.services import orders as orders_service
from exchange.services.capacity import capacity_register
from exchange.services.orders import order_cancel, order_replace
from ledger.models import Hold
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

PRICE = "2.30"


def other_block(listing, holder, gpus=8):
    """Another block of ``holder``'s with the listed block's SKU, region and term (RoCE, as
    the audit's): its GPU-hours are the same entitlements as the listed block's."""
    reservation = listing.reservation
    return capacity_register(
        provider=reservation.provider,
        holder=holder,
        cluster="elsewhere-roce",
        sku=reservation.sku,
        region=reservation.region,
        starts_at=reservation.starts_at,
        ends_at=reservation.ends_at,
        gpus=gpus,
        interconnect=Interconnect.ROCE,
        contiguous_block_gpus=gpus,
    )


def refused(account, listing, quantity) -> OrderRejected:
    with pytest.raises(OrderRejected) as raised:
        place(account, listing, "sell", quantity, PRICE)
    return raised.value


def test_a_non_holder_with_matching_gpu_hours_cannot_sell_on_the_block(listing, buyer, row_counts):
    # given Lumen holding GPU-hours of the same SKU, region and months, from a block of its own
    other_block(listing, buyer.organization)
    before = row_counts()

    # when it offers them on Northwind's listing (16 GPUs, InfiniBand)
    error = refused(buyer, listing, 8)

    # then it is refused: it holds none of that block; only the rejection is written
    assert (error.code, error.field) == (OrderRejectCode.BLOCK_NOT_HELD, "quantity")
    assert error.code == "RISK_BLOCK_NOT_HELD"
    assert "holds 0 contracts (GPUs) of block" in error.message
    assert "offers 0" in error.message and "may offer 0 more, not 8" in error.message
    assert row_counts() == replace(before, rejections=before.rejections + 1)
    assert not Hold.objects.exists()


def test_a_refusal_counting_a_gtd_sell_whose_time_has_come_says_so(listing, seller, monkeypatch):
    """Until the matcher sweeps it (within about a second) a GTD sell whose time has come still
    counts as offered: a matching batch that began before its expiry may yet fill it. The
    refusal said only that the GPUs were offered, by an order out of the book."""
    # given the holder offering all 16 GPUs of its block in a GTD sell, with other GPU-hours
    other_block(listing, seller.organization, gpus=16)
    expires_at = timezone.now() + timedelta(minutes=5)
    place(seller, listing, "sell", 16, PRICE, time_in_force="gtd", expires_at=expires_at)

    # when its time has come, before the sweep, and it offers 8 more
    monkeypatch.setattr(timezone, "now", lambda: expires_at)
    error = refused(seller, listing, 8)

    # then the refusal says the 16 are in an order whose time has come, to try again shortly
    assert (error.code, error.field) == (OrderRejectCode.BLOCK_NOT_HELD, "quantity")
    assert (
        "offers 16 in its live sell orders of "
        f"{listing.symbol} (16 of them in good-till-date orders whose time has come, which the "
        "matcher ends within about a second: try again then): it may offer 0 more, not 8."
    ) in error.message


def test_the_holder_offers_at_most_the_blocks_gpus_across_its_orders(listing, seller):
    # given Northwind, the block's holder (16 GPUs), holding GPU-hours of another block too
    other_block(listing, seller.organization, gpus=16)
    first = place(seller, listing, "sell", 8, PRICE)
    place(seller, listing, "sell", 8, "2.40")

    # when it offers 8 more, or raises an order beyond the block
    error = refused(seller, listing, 8)
    with pytest.raises(OrderRejected) as raised:
        order_replace(order=first, price=first.price, quantity=16)

    # then both are refused, saying what it holds and offers
    assert (error.code, error.field) == (OrderRejectCode.BLOCK_NOT_HELD, "quantity")
    assert "holds 16 contracts (GPUs) of block" in error.message
    assert "offers 16 in its live sell orders" in error.message
    assert "may offer 0 more, not 8" in error.message
    assert (raised.value.code, raised.value.field) == (OrderRejectCode.BLOCK_NOT_HELD, "quantity")
    assert "offers 8 in its other live sell orders" in raised.value.message
    first.refresh_from_db()
    assert first.open_quantity == 8
    assert Order.objects.filter(account=seller).count() == 2
    # a new price at the same quantity is no raise; and cancelled offers free their GPUs
    assert order_replace(order=first, price=first.price, quantity=8).open_quantity == 8
    order_cancel(order=Order.objects.get(account=seller, price="2.40"))
    assert order_replace(order=first, price=first.price, quantity=16).open_quantity == 16


def test_a_buyer_of_part_of_the_block_resells_up_to_what_it_bought(listing, seller, buyer):
    # given Lumen, with GPU-hours of its own block of the same months, buying 8 of the 16 GPUs
    other_block(listing, buyer.organization, gpus=16)
    place(seller, listing, "sell", 8, PRICE)
    bought = place(buyer, listing, "buy", 8, PRICE)
    assert bought.status == Order.Status.FILLED

    # when each offers more than it now holds of the block
    lumen_error = refused(buyer, listing, 16)
    northwind_error = refused(seller, listing, 16)

    # then each is refused, and each may offer what it holds: 8
    assert lumen_error.code == northwind_error.code == OrderRejectCode.BLOCK_NOT_HELD
    assert "holds 8 contracts" in lumen_error.message
    assert "holds 8 contracts" in northwind_error.message
    assert place(buyer, listing, "sell", 8, "2.50").status == Order.Status.OPEN
    assert place(seller, listing, "sell", 8, "2.60").status == Order.Status.OPEN
    holdings = block_holdings(listing.reservation)
    lumen, northwind = holdings[buyer.organization_id], holdings[seller.organization_id]
    assert (lumen.held, lumen.offered, lumen.free) == (8, 8, 0)
    assert (northwind.registered, northwind.sold, northwind.held, northwind.free) == (16, 8, 8, 0)


def test_a_pending_replace_raising_a_sell_counts_as_offered(listing, seller, external_matcher):
    # given the holder's offer of 8, raised to 16 by a replace the matcher has not applied yet
    other_block(listing, seller.organization, gpus=16)
    order = place(seller, listing, "sell", 8, PRICE)
    order_replace(order=order, price=order.price, quantity=16)

    # then the block is all offered: another sell is refused
    assert block_holdings(listing.reservation)[seller.organization_id].offered == 16
    assert refused(seller, listing, 8).code == OrderRejectCode.BLOCK_NOT_HELD


@pytest.mark.django_db(transaction=True)
def test_two_sells_of_one_organization_at_once_offer_no_more_than_the_block(
    postgres_only, listing, seller, monkeypatch
):
    # given the holder with GPU-hours for twice the block, and a count that takes its time
    other_block(listing, seller.organization, gpus=16)
    counted = orders_service.block_holdings

    def slow_count(*args, **kwargs):
        found = counted(*args, **kwargs)
        time.sleep(0.3)  # Another acceptance counting now would not see this one's order.
        return found

    monkeypatch.setattr(orders_service, "block_holdings", slow_count)
    outcomes: list[Order | OrderRejected] = []
    barrier = threading.Barrier(2)

    def sell() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(place(seller, listing, "sell", 16, PRICE))
        except OrderRejected as error:
            outcomes.append(error)
        finally:
            connection.close()

    # when two sells of the whole block are accepted at once
    threads = [threading.Thread(target=sell) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then one is accepted and the other refused: the second counted after the first committed
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["Order", "OrderRejected"]
    (error,) = [outcome for outcome in outcomes if isinstance(outcome, OrderRejected)]
    assert error.code == OrderRejectCode.BLOCK_NOT_HELD
    assert Order.objects.filter(account=seller).count() == 1


def test_another_account_of_the_holder_shares_the_organizations_block(listing, seller):
    # given a second account of the holder's organization, the block all offered by the main one
    second = Account.objects.create(organization=seller.organization, name="second")
    other_block(listing, seller.organization, gpus=16)
    place(seller, listing, "sell", 16, PRICE)

    # then the block is the organization's: the second account may offer none of it
    assert refused(second, listing, 8).code == OrderRejectCode.BLOCK_NOT_HELD


def test_under_a_margin_call_a_resale_sell_is_accepted_and_pays_its_fee(listing, seller, buyer):
    """Selling capacity raises cash, so the call does not refuse it; but it closes no position,
    so it is not one of the reducing orders that go without a fee."""
    from datetime import date

    from exchange.models import MarginCall, Trade

    MarginCall.objects.create(
        account=seller, trading_date=date(2026, 12, 4), required=10, maintenance=8, held=5
    )
    sell = place(seller, listing, "sell", 8, PRICE)
    place(buyer, listing, "buy", 8, PRICE)

    sell.refresh_from_db()
    assert (sell.maker_fee_rate, sell.taker_fee_rate) == (Decimal("0.01"), Decimal("0.02"))
    trade = Trade.objects.get()
    notional = 8 * Decimal(PRICE) * listing.gpu_hours_per_contract * 10**6
    assert trade.seller_fee == int(notional * Decimal("0.01")) > 0


def test_under_a_margin_call_a_resale_sell_may_move_its_price_and_a_buy_may_not(
    listing, seller, buyer
):
    """Under a call only what would be accepted anew moves: a sell of capacity (it raises
    cash), not a buy placed before the call (acceptance refuses one under it)."""
    from datetime import date

    from exchange.models import MarginCall

    # given a sell and a buy resting apart, placed before their accounts' calls
    sell = place(seller, listing, "sell", 8, "2.60")
    bid = place(buyer, listing, "buy", 8, "2.00")
    for account in (seller, buyer):
        MarginCall.objects.create(
            account=account, trading_date=date(2026, 12, 4), required=10, maintenance=8, held=5
        )

    # when each moves its price
    moved = order_replace(order=sell, price=Decimal("2.50"), quantity=8)
    with pytest.raises(OrderRejected) as refused:
        order_replace(order=bid, price=Decimal("2.50"), quantity=8)

    # then the sell moved, and the buy is refused by name, resting where it was
    assert (moved.status, moved.price) == (Order.Status.OPEN, Decimal("2.50"))
    assert (refused.value.code, refused.value.field) == (OrderRejectCode.REDUCE_ONLY, "price")
    bid.refresh_from_db()
    assert (bid.status, bid.price, bid.filled_quantity) == (Order.Status.OPEN, Decimal("2.00"), 0)


@pytest.mark.parametrize("instrument", ["listing", "future"])
def test_the_exchange_operator_s_account_cannot_trade(
    request, listing, seller, row_counts, instrument
):
    # given the operator's own account, funded, and the seller's block offered on its listing
    from exchange.services.orders import order_dry_run
    from tests.exchange.conftest import _account

    operator = _account("gpux", "exchange")
    place(seller, listing, "sell", 8, PRICE)
    bought = request.getfixturevalue(instrument)
    before = row_counts()

    # when the operator buys on the listing (or on a future), or asks what it would hold
    with pytest.raises(OrderRejected) as placed:
        place(operator, bought, "buy", 8, PRICE)
    error = placed.value
    with pytest.raises(OrderRejected) as dry_run:
        order_dry_run(
            account=operator,
            instrument=bought.symbol,
            side="buy",
            quantity=8,
            price=Decimal(PRICE),
        )

    # then it is refused by name at acceptance: the operator runs the market and trades in
    # none of it (as no GPU-hours are issued to it); only the rejection is written
    assert (error.code, error.field) == (OrderRejectCode.ACCOUNT_IS_OPERATOR, "account")
    assert error.code == "ORDER_ACCOUNT_IS_OPERATOR"
    assert dry_run.value.code == OrderRejectCode.ACCOUNT_IS_OPERATOR
    assert row_counts() == replace(before, rejections=before.rejections + 1)
    assert not Hold.objects.filter(account__code__startswith=f"trading:{operator.pk}:").exists()
