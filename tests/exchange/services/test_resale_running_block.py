"""A block whose term has begun is resold from a day's start (00:00 UTC) more than a day ahead
to the end of its term: the hours its holder will not use, the rest of the month under way
included. Each listing's trades deliver the GPU-hours of its own hours, and what an
organization may offer of the block is counted across the block's listings."""

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange import calendar
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Instrument, Order, Trade
from exchange.selectors.capacity import block_holdings, capacity_held
from exchange.selectors.entitlements import entitlements_of
from exchange.selectors.funding import cash_balance
from exchange.services.capacity import capacity_register, entitlements_retire
from exchange.services.collateral import fee_rates, notional_micros
from exchange.services.ledger_accounts import micros_to_usd
from exchange.services.listing import listing_trades, resale_list
from exchange.services.risk_cycle import daily_settlement_run
from ledger.models import Hold
from tests.exchange.ledger_figures import cash
from tests.exchange.support import listing_month, place, resale_start_after

pytestmark = pytest.mark.django_db

PRICE = "2.30"
# The hours in [start, end) counted one by one: too slow for the exchange, obviously right.
HOURS_COUNTED_MAX = 24 * 400


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


@pytest.fixture
def midway(sku, region, seller):
    """Northwind's 16-GPU block (lots of 8) from 06:00 on the 4th of a month a while ahead, for
    100 days, registered now (so every hour of it issued), and listed as its holder would list
    it on the 10th at 09:00, mid-way through the month, once the term runs: from the 12th."""
    term_starts = datetime.combine(listing_month().replace(day=4), time(6), tzinfo=UTC)
    reservation = capacity_register(
        provider=seller.organization,
        holder=seller.organization,
        cluster="nw-ashburn-midway",
        sku=sku,
        region=region,
        starts_at=term_starts,
        ends_at=term_starts + timedelta(days=100),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    listed_at = datetime.combine(listing_month().replace(day=10), time(9), tzinfo=UTC)
    return resale_list(reservation=reservation, now=listed_at)


def hours_by_month(account) -> dict:
    return {holding.month: holding.gpu_hours for holding in entitlements_of(account)}


def held_by_month(account) -> dict:
    return {holding.month: holding.on_hold for holding in entitlements_of(account)}


def hours_counted(start: datetime, end: datetime) -> dict[date, int]:
    """The hours of [start, end) in each UTC month, counted hour by hour."""
    months: Counter[date] = Counter()
    hour = start
    for _ in range(HOURS_COUNTED_MAX):
        if hour >= end:
            return dict(months)
        months[hour.date().replace(day=1)] += 1
        hour += timedelta(hours=1)
    raise AssertionError(f"more than {HOURS_COUNTED_MAX} hours from {start}")


def test_a_listing_from_mid_month_sells_the_rest_of_the_month_and_the_months_after(midway):
    # given the listing made on the 10th at 09:00
    first_day = listing_month().replace(day=12)
    reservation = midway.reservation

    # then it sells from the 12th at 00:00, the first day's start more than a day ahead, and
    # stops trading at the close of the 11th
    assert midway.symbol == f"H100SXM-USEAST-R{reservation.pk}-{first_day:%Y%m%d}"
    assert midway.resale_starts_at == datetime.combine(first_day, time.min, tzinfo=UTC)
    assert midway.last_trading_day == first_day - timedelta(days=1)
    # and a contract is 1 GPU for every hour from then to the end of the term
    counted = hours_counted(midway.resale_starts_at, reservation.ends_at)
    assert midway.gpu_hours_per_contract == sum(counted.values())
    days_in_month = (calendar.add_months(first_day.replace(day=1), 1) - first_day).days
    assert counted[first_day.replace(day=1)] == days_in_month * 24


def test_a_sell_on_a_mid_month_listing_holds_the_rest_of_the_month_and_the_months_after(
    midway, seller
):
    # given Northwind holding every hour of its block: 16 GPUs from the 4th at 06:00
    reservation = midway.reservation
    issued = hours_counted(reservation.starts_at, reservation.ends_at)
    assert hours_by_month(seller) == {month: 16 * hours for month, hours in issued.items()}

    # when it offers 8 GPUs of it
    place(seller, midway, "sell", 8, PRICE)

    # then the order holds 8 GPUs' hours from the 12th on: of the month under way only its hours
    # from then, of each month after them all, and nothing of what is not sold
    sold = hours_counted(midway.resale_starts_at, reservation.ends_at)
    assert held_by_month(seller) == {month: 8 * sold.get(month, 0) for month in issued}
    first = min(issued)
    assert 0 < sold[first] < issued[first]
    assert hours_by_month(seller) == {month: 16 * hours for month, hours in issued.items()}


def test_a_trade_on_a_mid_month_listing_delivers_the_rest_of_the_month_to_the_buyer(
    midway, seller, buyer
):
    reservation = midway.reservation
    issued = hours_counted(reservation.starts_at, reservation.ends_at)
    sold = hours_counted(midway.resale_starts_at, reservation.ends_at)
    hours = sum(sold.values())
    cash_before = cash(buyer)
    available_before = cash_balance(buyer).available

    # when Lumen bids for 8 GPUs of it, then Northwind sells them
    bid = place(buyer, midway, "buy", 8, PRICE)

    # then the bid holds the full price of those hours and the highest fee on it
    price_micros = notional_micros(Decimal(PRICE), 1, hours)
    fee_rate = fee_rates(Instrument.Kind.RESALE).highest
    fee_hold = int((fee_rate * price_micros).to_integral_value(rounding="ROUND_CEILING"))
    held = micros_to_usd(8 * (price_micros + fee_hold))
    assert available_before - cash_balance(buyer).available == held

    place(seller, midway, "sell", 8, PRICE)

    # and the trade moves 8 GPUs' hours from the 12th on: the rest of the month under way,
    # which Northwind keeps the first days of, and every month after
    bid.refresh_from_db()
    assert bid.status == Order.Status.FILLED
    assert hours_by_month(buyer) == {month: 8 * count for month, count in sold.items()}
    assert hours_by_month(seller) == {
        month: 16 * count - 8 * sold.get(month, 0) for month, count in issued.items()
    }
    # and Lumen paid the price of those hours only, with its fee
    trade = Trade.objects.get()
    assert cash_before - cash(buyer) == notional_micros(trade.price, 8, hours) + trade.buyer_fee
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()


def test_a_mid_month_listing_stops_trading_before_its_first_hour(
    midway, seller, buyer, calendar_ahead
):
    """The daily cycle expires the listing on its last trading day, the day before its hours
    begin, cancelling its orders and releasing their holds; the block can then be listed again
    from a later day."""
    ask = place(seller, midway, "sell", 8, "2.40")
    bid = place(buyer, midway, "buy", 8, "2.30")
    last_day = midway.last_trading_day
    close = calendar.trading_ends_at(last_day)
    assert close < midway.resale_starts_at
    assert listing_trades(midway, close - timedelta(seconds=1))
    assert not listing_trades(midway, close)

    # when the day before its last trading day is settled, then that day
    before = daily_settlement_run(trading_date=last_day - timedelta(days=1))
    after = daily_settlement_run(trading_date=last_day)

    # then it expired on its last day, its orders cancelled and their holds released
    assert before.summary["resale_expired"] == []
    assert after.summary["resale_expired"] == [midway.symbol]
    for order in (ask, bid):
        order.refresh_from_db()
        assert (order.status, order.done_reason) == (Order.Status.CANCELLED, "instrument_expired")
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()
    # and after that close the block is listed again, from the first day more than a day on
    again = resale_list(reservation=midway.reservation, now=close + timedelta(minutes=1))
    assert again.resale_starts_at == midway.resale_starts_at + timedelta(days=1)


def test_the_rest_of_a_month_sold_is_retired_with_the_month(midway, seller, buyer, monkeypatch):
    """Once the month under way has ended, what both hold of it is retired: the buyer's hours
    of it as the seller's, the later months left as they are."""
    place(seller, midway, "sell", 8, PRICE)
    place(buyer, midway, "buy", 8, PRICE)
    month = midway.delivery_start.replace(day=1)
    reservation = midway.reservation
    issued = hours_counted(reservation.starts_at, reservation.ends_at)
    later = {held: hours for held, hours in hours_by_month(buyer).items() if held > month}

    # when the next month has begun
    after = datetime.combine(calendar.add_months(month, 1), time(1), tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: after)
    retired = entitlements_retire()

    # then the month's GPU-hours are retired whole, from both
    assert [(row.gpu_hours, row.accounts) for row in retired] == [(16 * issued[month], 2)]
    assert month not in hours_by_month(seller)
    assert hours_by_month(buyer) == later


def test_a_trade_on_a_running_blocks_listing_delivers_the_hours_from_its_start_on(
    running, seller, buyer
):
    # given the block listed now, from the first day it can still be listed from
    listing = resale_list(reservation=running)
    first = resale_start_after(datetime.now(UTC))
    assert listing.resale_starts_at == first
    northwind_before = hours_by_month(seller)
    sold = hours_counted(first, running.ends_at)
    cash_before = cash(buyer)

    # when Lumen buys 8 GPUs of it
    place(seller, listing, "sell", 8, PRICE)
    bought = place(buyer, listing, "buy", 8, PRICE)

    # then Lumen holds 8 GPUs' hours of every hour from then to the end of the term, and none
    # before, which Northwind keeps
    assert bought.status == Order.Status.FILLED
    assert hours_by_month(buyer) == {month: 8 * hours for month, hours in sold.items()}
    assert sum(hours_by_month(buyer).values()) == 8 * listing.gpu_hours_per_contract
    assert hours_by_month(seller) == {
        month: hours - 8 * sold.get(month, 0) for month, hours in northwind_before.items()
    }
    # and it paid the price of those hours only, with its fee
    trade = Trade.objects.get()
    assert trade.quantity == 8
    notional = notional_micros(trade.price, 8, listing.gpu_hours_per_contract)
    assert cash_before - cash(buyer) == notional + trade.buyer_fee


def test_a_buyer_resells_on_the_blocks_next_listing_what_it_bought(running, seller, buyer, fourth):
    """Lumen bought 8 GPUs on the block's listing from one day, and resells them on its next
    listing from a later day: it keeps the hours between, and may offer no more than the 8."""
    first = resale_list(reservation=running)
    place(seller, first, "sell", 8, PRICE)
    place(buyer, first, "buy", 8, PRICE)
    # the next listing, as the block would be listed once the first has ended
    later = first.resale_starts_at + timedelta(days=1)
    first.status = first.Status.EXPIRED
    first.save(update_fields=["status"])
    second = resale_list(reservation=running, now=later)
    assert second.resale_starts_at == resale_start_after(later)
    assert second.resale_starts_at > first.resale_starts_at
    # Lumen holds GPUs of the block, so it may list it as the holder may
    assert capacity_held(buyer.organization, running.pk) == running
    assert capacity_held(fourth.organization, running.pk) is None

    with pytest.raises(OrderRejected) as raised:
        place(buyer, second, "sell", 16, PRICE)
    assert raised.value.code == OrderRejectCode.BLOCK_NOT_HELD
    place(buyer, second, "sell", 8, PRICE)
    place(fourth, second, "buy", 8, PRICE)

    # then Lumen keeps the hours from the first listing's start to the second's, Quanta has the
    # rest, and the block's holdings count both listings' trades
    kept = hours_counted(first.resale_starts_at, second.resale_starts_at)
    resold = hours_counted(second.resale_starts_at, running.ends_at)
    assert hours_by_month(buyer) == {month: 8 * hours for month, hours in kept.items()}
    assert hours_by_month(fourth) == {month: 8 * hours for month, hours in resold.items()}
    assert sum(resold.values()) == second.gpu_hours_per_contract
    holdings = block_holdings(running)
    assert holdings[seller.organization_id].held == 8
    assert holdings[buyer.organization_id].held == 0
    assert holdings[fourth.organization_id].held == 8
