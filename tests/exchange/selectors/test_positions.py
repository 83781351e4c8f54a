"""Positions, cost, profit and margin of a trading account, read from the ledger."""

from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from exchange.backoffice.roles import Role
from exchange.selectors.positions import PositionRow, portfolio_totals, positions_of
from exchange.services.risk_cycle import daily_settlement_run
from exchange.services.settlement_prices import now_date, settlement_price_override
from tests.exchange.support import place, staff_user

pytestmark = pytest.mark.django_db


def test_no_trades_means_no_positions(future, buyer, seller):
    # given resting orders that have not traded
    place(buyer, future, "buy", 3, "2.45")
    place(seller, future, "sell", 3, "2.55")

    # then neither account has a position
    assert positions_of(buyer) == []
    assert positions_of(seller) == []
    assert portfolio_totals([]) == (Decimal(0), Decimal(0))


def test_a_trade_opens_a_long_and_a_short_at_cost_with_margin(future, buyer, seller):
    # given a resting offer of 3 at 2.50
    place(seller, future, "sell", 3, "2.50")

    # when the buyer lifts it
    place(buyer, future, "buy", 3, "2.50")

    # then the buyer is long 3, the seller short 3, each at the trade's value, marked at it
    hours = future.gpu_hours_per_contract
    notional = Decimal("2.50") * 3 * hours
    margin = settings.EXCHANGE_PRICE_SCAN * notional
    assert positions_of(buyer) == [
        PositionRow(
            instrument=future,
            contracts=3,
            gpu_hours=3 * hours,
            cost=notional,
            average_price=Decimal("2.500000"),
            mark_price=Decimal("2.50"),
            mark_source="trade",
            market_value=notional,
            pnl=Decimal(0),
            margin=margin,
        )
    ]
    assert positions_of(seller) == [
        PositionRow(
            instrument=future,
            contracts=-3,
            gpu_hours=-3 * hours,
            cost=-notional,
            average_price=Decimal("2.500000"),
            mark_price=Decimal("2.50"),
            mark_source="trade",
            market_value=-notional,
            pnl=Decimal(0),
            margin=margin,
        )
    ]
    assert portfolio_totals(positions_of(buyer)) == (margin, Decimal(0))


def test_closing_at_a_higher_price_realizes_the_profit_exactly(future, buyer, seller, maker):
    # given the buyer long 3 bought at 2.50
    place(seller, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")

    # when it sells the 3 to a third account at 2.65
    place(buyer, future, "sell", 3, "2.65")
    place(maker, future, "buy", 3, "2.65")

    # then the buyer is flat, its margin released, and its P&L is the realized profit
    hours = future.gpu_hours_per_contract
    profit = (Decimal("2.65") - Decimal("2.50")) * 3 * hours
    (row,) = positions_of(buyer)
    assert (row.contracts, row.gpu_hours, row.average_price) == (0, 0, None)
    assert row.cost == -profit
    assert row.market_value == Decimal(0)
    assert row.pnl == profit
    assert row.margin == Decimal(0)
    assert portfolio_totals([row]) == (Decimal(0), profit)
    # and, fees aside, the market is zero-sum: the seller lost what the buyer made
    (short,) = positions_of(seller)
    (long,) = positions_of(maker)
    assert short.pnl == -profit
    assert long.pnl == Decimal(0)
    assert row.pnl + short.pnl + long.pnl == 0


def test_partial_close_keeps_the_rest_of_the_position_and_margin(future, buyer, seller, maker):
    # given the buyer long 4 bought at 2.50
    place(seller, future, "sell", 4, "2.50")
    place(buyer, future, "buy", 4, "2.50")

    # when it sells 1 at 2.60
    place(buyer, future, "sell", 1, "2.60")
    place(maker, future, "buy", 1, "2.60")

    # then it is long 3, holds the margin of 3, and its P&L is at the new mark
    hours = future.gpu_hours_per_contract
    (row,) = positions_of(buyer)
    assert row.contracts == 3
    assert row.margin == settings.EXCHANGE_PRICE_SCAN * Decimal("2.50") * 3 * hours
    assert row.mark_price == Decimal("2.60")
    assert row.pnl == (Decimal("2.60") - Decimal("2.50")) * 4 * hours


def test_mark_is_the_last_trade_price(futures, buyer, seller, maker, fourth):
    # given the buyer long 3 bought at 2.50
    future = futures[0]
    place(seller, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")

    # when two other accounts trade 1 at 2.55, then 1 at 2.45
    place(maker, future, "sell", 1, "2.55")
    place(fourth, future, "buy", 1, "2.55")
    place(fourth, future, "sell", 1, "2.45")
    place(maker, future, "buy", 1, "2.45")

    # then the buyer's position is marked at 2.45, the last trade
    hours = future.gpu_hours_per_contract
    (row,) = positions_of(buyer)
    assert row.mark_price == Decimal("2.45")
    assert row.market_value == Decimal("2.45") * 3 * hours
    assert row.pnl == (Decimal("2.45") - Decimal("2.50")) * 3 * hours
    assert row.pnl < 0


def settle_today(prices: dict, staff) -> None:
    """Run today's risk cycle with its close now (so later trades come after it), at
    ``prices`` (instrument: price) set by staff."""
    close = timezone.now()
    for instrument, price in prices.items():
        settlement_price_override(
            instrument=instrument,
            trading_date=now_date(),
            price=Decimal(price),
            reason="Price of the day from brokers",
            actor=staff,
        )
    daily_settlement_run(trading_date=now_date(), close=close, actor=staff)


@pytest.fixture
def staff(db, clock_after_the_close):
    """Risk staff, settling today after its close (``settle_today``), whatever the hour."""
    return staff_user("risk", Role.RISK)


def test_after_the_daily_cycle_positions_are_marked_at_the_settlement_price(
    future, call, buyer, seller, maker, fourth, staff
):
    # given the buyer long 3 futures at 2.50 and 2 calls at 0.120, and a later trade of the
    # future at 2.44 between two others
    place(seller, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")
    place(seller, call, "sell", 2, "0.120")
    place(buyer, call, "buy", 2, "0.120")
    place(maker, future, "sell", 1, "2.44")
    place(fourth, future, "buy", 1, "2.44")

    # when the day settles the future at 2.435 and the call at 0.105, with no trade since
    settle_today({future: "2.435", call: "0.105"}, staff)

    # then the future is marked at the settlement price, and its P&L, paid as variation
    # margin, is 0; the call (premium-style) is marked at its settlement price against its
    # premium
    hours = future.gpu_hours_per_contract
    rows = {row.instrument: row for row in positions_of(buyer)}
    assert (rows[future].mark_price, rows[future].mark_source) == (Decimal("2.435"), "settlement")
    assert rows[future].cost == Decimal("2.435") * 3 * hours
    assert rows[future].pnl == 0
    assert (rows[call].mark_price, rows[call].mark_source) == (Decimal("0.105"), "settlement")
    assert rows[call].pnl == (Decimal("0.105") - Decimal("0.120")) * 2 * hours
    assert portfolio_totals(list(rows.values()))[1] == rows[call].pnl


def test_a_trade_after_the_settlement_moves_the_mark(future, buyer, seller, maker, fourth, staff):
    # given the buyer long 3 at 2.50, settled at 2.435
    place(seller, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")
    settle_today({future: "2.435"}, staff)

    # when two others trade 1 at 2.45 after the close
    place(maker, future, "sell", 1, "2.45")
    place(fourth, future, "buy", 1, "2.45")

    # then the buyer's position is marked at that trade, with what accrued since the settlement
    hours = future.gpu_hours_per_contract
    (row,) = positions_of(buyer)
    assert (row.mark_price, row.mark_source) == (Decimal("2.45"), "trade")
    assert row.pnl == (Decimal("2.45") - Decimal("2.435")) * 3 * hours


def test_money_is_decimal_never_float(future, buyer, seller):
    # given an open position
    place(seller, future, "sell", 3, "2.505")
    place(buyer, future, "buy", 3, "2.505")

    # then every amount is a Decimal, exact to the micro-dollar
    (row,) = positions_of(buyer)
    for amount in (row.cost, row.average_price, row.mark_price, row.market_value, row.pnl):
        assert isinstance(amount, Decimal)
    assert isinstance(row.margin, Decimal)
    assert row.cost == Decimal("2.505") * 3 * future.gpu_hours_per_contract
    assert row.average_price == Decimal("2.505000")


def test_queries_do_not_grow_with_positions(futures, buyer, seller, django_assert_max_num_queries):
    # given the buyer long in one future, then in two
    place(seller, futures[0], "sell", 3, "2.50")
    place(buyer, futures[0], "buy", 3, "2.50")
    with django_assert_max_num_queries(4):
        assert len(positions_of(buyer)) == 1
    place(seller, futures[1], "sell", 2, "2.60")
    place(buyer, futures[1], "buy", 2, "2.60")

    # then reading two positions takes no more queries than reading one
    with django_assert_max_num_queries(4):
        rows = positions_of(buyer)
    assert [row.instrument for row in rows] == futures
    assert [row.contracts for row in rows] == [3, 2]


def test_only_the_accounts_own_positions(futures, buyer, seller, maker, fourth):
    # given two other accounts trading a second future
    place(buyer, futures[0], "buy", 3, "2.50")
    place(seller, futures[0], "sell", 3, "2.50")
    place(maker, futures[1], "sell", 5, "2.60")
    place(fourth, futures[1], "buy", 5, "2.60")

    # then each account sees only the instrument it traded
    assert [row.instrument for row in positions_of(buyer)] == [futures[0]]
    assert [row.instrument for row in positions_of(fourth)] == [futures[1]]
    assert [row.contracts for row in positions_of(fourth)] == [5]


def test_flat_at_the_price_it_opened_at_drops_out(future, buyer, seller, maker):
    # given the buyer bought 2 at 2.50 and sold them back at 2.50
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "buy", 2, "2.50")
    place(buyer, future, "sell", 2, "2.50")
    place(maker, future, "buy", 2, "2.50")

    # then nothing is left to show: no contracts, no cost, no margin
    assert positions_of(buyer) == []
    assert [row.contracts for row in positions_of(maker)] == [2]
