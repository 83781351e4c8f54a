"""Block fee tiers follow what an order fills, not the size it asks for; each fill's fee is
stored on its trade, and what the fills, the ledger and the pools show is that fee."""

import importlib
from decimal import Decimal

from django.core.management import call_command

from exchange.models import Order, Trade
from exchange.selectors.orders import fills_in, trades_of
from exchange.services import collateral
from exchange.services.ledger_accounts import cash_account
from tests.exchange.ledger_figures import fees as fees_collected
from tests.exchange.support import place

MICROS = 10**6


def test_an_order_asking_for_a_block_but_filling_less_pays_the_whole_rate(buyer, seller, future):
    # given 64 contracts offered
    place(seller, future, "sell", 64, "2.45")

    # when an IOC buy asks for 128 (a size with the 80% tier) and fills the 64
    order = place(buyer, future, "buy", 128, "2.45", time_in_force="ioc")

    # then its fill pays the schedule's 0.50 taker fee: it bought 64, below the 100 of a tier
    assert (order.filled_quantity, order.status) == (64, Order.Status.CANCELLED)
    [trade] = Trade.objects.all()
    assert (trade.buyer_fee, trade.seller_fee) == (64 * 500_000, 64 * 200_000)
    [fill] = fills_in(trades_of(buyer), buyer)
    assert fill.fee == Decimal("32.00")
    assert fees_collected() == trade.buyer_fee + trade.seller_fee
    # and nothing of its hold stays behind
    assert cash_account(buyer).debits_pending == 0
    call_command("ledger_check")


def test_a_fill_that_takes_the_order_to_a_tier_pays_the_tiers_rate(buyer, seller, future):
    # given a resting buy of 600
    resting = place(buyer, future, "buy", 600, "2.45")

    # when sells of 60, 40, 400 and 100 take it
    for quantity in (60, 40, 400, 100):
        place(seller, future, "sell", quantity, "2.45")

    # then each fill pays the tier its order reached with it, maker (buyer) and taker alike:
    # 60 filled (whole rate), 100 (80%), 500 (60%), 600 (60%); each sell is its own order
    trades = list(Trade.objects.order_by("sequence"))
    assert [t.buyer_fee for t in trades] == [
        60 * 200_000,
        40 * 160_000,
        400 * 120_000,
        100 * 120_000,
    ]
    assert [t.seller_fee for t in trades] == [
        60 * 500_000,
        40 * 500_000,
        400 * 400_000,  # A sell of 400 filled at once reaches the 100 tier, not the 500.
        100 * 400_000,
    ]
    resting.refresh_from_db()
    assert resting.filled_quantity == 600
    fills = fills_in(trades_of(buyer), buyer)
    assert sorted(f.fee for f in fills) == sorted(Decimal(t.buyer_fee) / MICROS for t in trades)
    assert fees_collected() == sum(t.buyer_fee + t.seller_fee for t in trades)
    assert cash_account(buyer).debits_pending == 0
    call_command("ledger_check")


def test_tiered_rates_round_in_the_customers_favour():
    # per contract: whole micro-dollars, rounded down
    assert collateral.tiered_rate("future", Decimal("0.333333"), Decimal("0.80")) == Decimal(
        "0.266666"
    )
    assert collateral.tiered_rate("future", Decimal("0.50"), Decimal(1)) == Decimal("0.50")
    # on the notional: the fraction itself, the fee rounded up per fill as always
    assert collateral.tiered_rate("resale", Decimal("0.02"), Decimal("0.60")) == Decimal("0.012")
    assert collateral.fill_fee_micros(
        "resale", taker(Decimal("0.02"), 98), False, 1, 1_000_001
    ) == (20_001)
    assert collateral.fill_fee_micros(
        "resale", taker(Decimal("0.02"), 99), False, 2, 1_000_001
    ) == (16_001)
    # a fill never pays more than the rate its order's hold covers
    for filled in (0, 99, 100, 499, 500, 10_000):
        assert collateral.fill_fee_micros(
            "future", taker(Decimal("0.50"), filled), False, 7, 0
        ) <= collateral.fee_micros("future", Decimal("0.50"), 7, 0)
    # and an order whose rates already carry its size's tier pays them as they are
    tiered = taker(Decimal("0.30"), 600)
    tiered.fee_rates_tiered = True
    assert collateral.fill_fee_micros("future", tiered, False, 10, 0) == 10 * 300_000


def taker(rate: Decimal, filled: int) -> Order:
    """An order (not saved) with a taker ``rate`` that has filled ``filled`` contracts."""
    return Order(maker_fee_rate=Decimal(0), taker_fee_rate=rate, filled_quantity=filled)


def test_the_migrations_resale_fee_rounds_up_on_the_notional():
    migration = importlib.import_module("exchange.migrations.0016_trade_fees")
    # 2% of 1 contract x 744 GPU-hours at 0.01: 0.1488 USD exactly; 3 at 0.013: rounded up
    assert migration._fee("resale", Decimal("0.02"), 1, Decimal("0.01"), 744) == 148_800
    assert migration._fee("resale", Decimal("0.015"), 3, Decimal("0.013"), 7) == 4_095
    assert migration._fee("resale", Decimal("0.015"), 1, Decimal("0.013"), 7) == 1_365
    assert migration._fee("resale", Decimal("0.0123"), 1, Decimal("0.013"), 1) == 160
    assert migration._fee("option", Decimal("0.25"), 3, Decimal("0.1"), 744) == 750_000
