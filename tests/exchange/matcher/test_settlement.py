"""Collateral at acceptance and settlement of trades into the ledger.

Amounts in the ledger are micro-dollars; the helpers below compute what each rule of
``exchange.services.collateral`` says, independently of its code.
"""

from dataclasses import replace
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher.runtime import Matcher
from exchange.models import Account, Order, OrderHold, Organization, Trade
from exchange.selectors.integrity import order_book_problems
from exchange.services.capacity import hours_by_month
from exchange.services.collateral import fee_micros
from exchange.services.orders import order_cancel, order_replace
from exchange.services.participants import account_main, organization_create
from exchange.simulation import MarketSimulation
from ledger.models import Account as LedgerAccount
from ledger.models import Entry, Hold, Posting
from ledger.selectors import ledger_problems
from tests.exchange.support import place

MICROS = 10**6
FILLED, OPEN = Order.Status.FILLED, Order.Status.OPEN


def usd(amount: str) -> int:
    return int(Decimal(amount) * MICROS)


def ceil(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def balances() -> dict[str, tuple[int, int]]:
    """Every ledger account: (posted debit balance, pending debits - pending credits)."""
    return {
        account.code: (account.balance, account.debits_pending - account.credits_pending)
        for account in LedgerAccount.objects.all()
    }


def changes(before: dict, after: dict) -> dict[str, tuple[int, int]]:
    """What moved: posted and pending, per account code; accounts that did not move are left out."""
    moved = {}
    for code in before.keys() | after.keys():
        old, new = before.get(code, (0, 0)), after.get(code, (0, 0))
        if old != new:
            moved[code] = (new[0] - old[0], new[1] - old[1])
    return moved


def margin(price: str, hours: int, rate: str = "0.15") -> int:
    return ceil(Decimal(rate) * Decimal(price) * hours * MICROS)


# Futures --------------------------------------------------------------------------------


def test_a_futures_trade_changes_exactly_the_balances_it_should(future, buyer, seller):
    # given an ask of 3 at 2.50 resting (the maker)
    hours = future.gpu_hours_per_contract
    place(seller, future, "sell", 3, "2.50")
    before = balances()

    # when a buyer takes 2 of them
    order = place(buyer, future, "buy", 2, "2.50")

    # then exactly these balances moved (amounts in micro-dollars; cash is a liability, so a
    # customer's money leaving it is a debit)
    symbol, per_contract_margin = future.symbol, margin("2.50", hours)
    notional = 2 * usd("2.50") * hours
    b, s = buyer.pk, seller.pk
    assert order.status == FILLED
    assert changes(before, balances()) == {
        f"trading:{b}:position:{symbol}": (2, 0),
        f"trading:{s}:position:{symbol}": (-2, 0),
        f"trading:{b}:cost:{symbol}:USD": (notional, 0),
        f"trading:{s}:cost:{symbol}:USD": (-notional, 0),
        f"trading:{b}:margin:{symbol}:USD": (-2 * per_contract_margin, 0),
        f"trading:{s}:margin:{symbol}:USD": (-2 * per_contract_margin, 0),
        # the taker pays 0.50 a contract, the maker 0.20; the seller's hold shrinks by the
        # fill's whole share of it (margin and the 0.50 held per contract: what its 1 open
        # contract needs stays), the buyer's (fully filled) is consumed and gone
        f"trading:{b}:cash:USD": (2 * per_contract_margin + 2 * usd("0.50"), 0),
        f"trading:{s}:cash:USD": (
            2 * per_contract_margin + 2 * usd("0.20"),
            -(2 * per_contract_margin + 2 * usd("0.50")),
        ),
        "exchange:fees:USD": (-(2 * usd("0.50") + 2 * usd("0.20")), 0),
    }
    assert ledger_problems() == [] and order_book_problems() == []


def test_an_order_that_cannot_be_collateralized_writes_only_its_rejection(future, row_counts):
    # given an account with $100 and a future whose margin is far above it
    poor = account_main(organization_create(slug="seedling", name="Seedling", kind="startup"))
    from exchange.services.funding import deposit_test_funds

    deposit_test_funds(account=poor, amount=Decimal("100"), actor=None)
    before, ledger_before = row_counts(), balances()
    holds, entries = Hold.objects.count(), Entry.objects.count()

    with pytest.raises(OrderRejected) as refused:
        place(poor, future, "buy", 10, "2.50")

    assert refused.value.code == OrderRejectCode.INSUFFICIENT_FUNDS
    assert "the account has 100.00 USD available" in refused.value.message
    assert row_counts() == replace(before, rejections=before.rejections + 1)
    assert (Hold.objects.count(), Entry.objects.count()) == (holds, entries)
    assert balances() == ledger_before


def test_resting_orders_hold_collateral_and_cancelling_releases_it(future, buyer):
    hours = future.gpu_hours_per_contract
    cash = f"trading:{buyer.pk}:cash:USD"
    before = balances()[cash]

    order = place(buyer, future, "buy", 4, "2.40")
    held = 4 * (margin("2.40", hours) + usd("0.50"))  # The higher of maker and taker fees.
    assert balances()[cash] == (before[0], before[1] + held)

    order_cancel(order=order)
    assert balances()[cash] == before
    hold = OrderHold.objects.get(order=order).hold
    assert (hold.status, hold.remaining) == (Hold.Status.VOIDED, 0)


def test_ioc_remainder_releases_its_collateral(future, buyer, seller):
    place(seller, future, "sell", 1, "2.50")
    before = balances()[f"trading:{buyer.pk}:cash:USD"]

    ioc = place(buyer, future, "buy", 5, "2.50", time_in_force="ioc")

    assert (ioc.filled_quantity, ioc.cancelled_quantity) == (1, 4)
    posted, pending = balances()[f"trading:{buyer.pk}:cash:USD"]
    hours = future.gpu_hours_per_contract
    assert (posted - before[0], pending) == (margin("2.50", hours) + usd("0.50"), before[1])


def test_closing_a_position_releases_its_margin_and_realizes_the_profit(
    future, buyer, seller, maker
):
    # given the buyer long 2 at 2.50
    hours, symbol = future.gpu_hours_per_contract, future.symbol
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "buy", 2, "2.50")
    margin_account = f"trading:{buyer.pk}:margin:{symbol}:USD"
    held = balances()[margin_account][0]
    assert held == -2 * margin("2.50", hours)

    # when it sells 1 at 2.60, then the other
    place(maker, future, "buy", 2, "2.60")
    place(buyer, future, "sell", 1, "2.60")
    after_one = balances()[margin_account][0]
    place(buyer, future, "sell", 1, "2.60")

    # then half the margin came back, then the rest; flat, the cost memo shows the profit
    assert after_one == held - held // 2
    moved = balances()
    assert moved[margin_account][0] == 0
    assert moved[f"trading:{buyer.pk}:position:{symbol}"][0] == 0
    assert moved[f"trading:{buyer.pk}:cost:{symbol}:USD"][0] == -2 * usd("0.10") * hours
    assert ledger_problems() == [] and order_book_problems() == []


def test_a_seller_filled_above_its_price_takes_only_the_margin_it_held(future, buyer, seller):
    # given a bid at 2.60 resting
    hours = future.gpu_hours_per_contract
    place(buyer, future, "buy", 2, "2.60")
    cash = f"trading:{seller.pk}:cash:USD"
    before = balances()[cash]

    # when a seller at 2.50 fills at 2.60
    order = place(seller, future, "sell", 2, "2.50")

    # then its margin is the one fixed at its own price, per contract
    assert order.status == FILLED
    assert balances()[cash][0] - before[0] == 2 * (margin("2.50", hours) + usd("0.50"))


# Market orders ----------------------------------------------------------------------------


def test_a_market_order_is_collateralized_at_its_protection_price(future, buyer, seller):
    hours = future.gpu_hours_per_contract
    place(seller, future, "sell", 1, "2.50")
    before = balances()[f"trading:{buyer.pk}:cash:USD"]

    market = place(buyer, future, "buy", 1, type="market", time_in_force="ioc")

    hold = OrderHold.objects.get(order=market).hold
    assert market.protection_price == Decimal("2.75")
    assert hold.amount == margin("2.75", hours) + usd("0.50")
    # filled at 2.50, taking the margin per contract fixed at acceptance: the whole hold
    assert (hold.status, hold.remaining) == (Hold.Status.POSTED, 0)
    posted = balances()[f"trading:{buyer.pk}:cash:USD"][0] - before[0]
    assert posted == margin("2.75", hours) + usd("0.50")


# Replace ----------------------------------------------------------------------------------


def test_replacing_to_a_higher_price_holds_the_difference_beside_the_old_hold(future, buyer):
    """Until 2026-12-07 the replace held its whole requirement afresh, beside the old hold
    until the matcher applied it, so raising an order needed its collateral twice over."""
    hours = future.gpu_hours_per_contract
    order = place(buyer, future, "buy", 2, "2.40")
    first = OrderHold.objects.get(order=order).hold

    order_replace(order=order, price=Decimal("2.45"), quantity=2)

    first.refresh_from_db()
    rows = OrderHold.objects.filter(order=order, active=True).select_related("hold")
    held = {row.hold.pk: (row.hold.status, row.hold.amount) for row in rows}
    whole = 2 * (margin("2.45", hours) + usd("0.50"))
    assert held == {
        first.pk: (Hold.Status.PENDING, first.amount),
        max(held): (Hold.Status.PENDING, whole - first.amount),
    }
    order.refresh_from_db()
    assert order.margin_per_contract == margin("2.45", hours)
    pending = balances()[f"trading:{buyer.pk}:cash:USD"][1]
    assert pending == whole


def test_replacing_within_the_collateral_held_keeps_the_hold(future, buyer):
    order = place(buyer, future, "buy", 4, "2.40")

    order_replace(order=order, price=Decimal("2.40"), quantity=2)

    assert OrderHold.objects.filter(order=order).count() == 1


def test_a_fill_takes_from_every_hold_of_an_order_topped_up_by_its_replace(
    future, buyer, seller, maker, external_matcher
):
    """A replace accepted on the order's own holds, which a fill lowered before the matcher
    applied it, tops them up with a second hold. A later fill larger than the first hold's rest
    took from the first alone and raised SettlementError: the batch rolled back, and so did
    every batch after it, the instrument's book stalled."""
    hours = future.gpu_hours_per_contract
    per_contract = margin("2.40", hours) + usd("0.50")
    bid = place(buyer, future, "buy", 4, "2.40")
    Matcher().process_pending()
    # given a sell that will fill 2 of the bid, queued before a replace of the bid to 3 open,
    # accepted on the bid's holds (4 contracts' worth, enough for 3)
    place(seller, future, "sell", 2, "2.40")
    order_replace(order=Order.objects.get(pk=bid.pk), price=Decimal("2.40"), quantity=3)
    Matcher().process_pending()
    holds = [row.hold for row in OrderHold.objects.filter(order=bid, active=True)]
    assert len(holds) == 2  # The first, with 2 contracts' worth left, and the top-up of 1.
    assert sum(hold.remaining for hold in holds) == 3 * per_contract

    # when an order fills all 3 open at once
    taker = place(maker, future, "sell", 3, "2.40")
    Matcher().process_pending()

    # then the bid filled, its holds taken whole, and the books and the ledger agree
    bid.refresh_from_db()
    taker.refresh_from_db()
    assert (bid.status, bid.filled_quantity, taker.status) == (FILLED, 5, FILLED)
    for hold in holds:  # The top-up's rest (the maker's fee below the taker's held) released.
        hold.refresh_from_db()
        assert hold.remaining == 0 and hold.status != Hold.Status.PENDING
    assert balances()[f"trading:{buyer.pk}:cash:USD"][1] == 0
    assert ledger_problems() == [] and order_book_problems() == []


def test_a_replace_the_engine_refuses_after_a_top_up_leaves_the_order_holding_its_need(
    future, buyer, seller, maker, external_matcher
):
    """The matcher tops up the holds of a replace before the engine sees it; when the engine
    then refuses the replace (a post-only order that would trade), the order keeps its terms
    and holds no more than they need."""
    hours = future.gpu_hours_per_contract
    per_contract = margin("2.40", hours) + usd("0.50")
    bid = place(buyer, future, "buy", 4, "2.40", post_only=True)
    place(maker, future, "sell", 3, "2.45")
    Matcher().process_pending()
    # given a sell that will fill 2 of the bid, queued before a replace of the bid to 3 at
    # 2.45, where the ask rests, accepted on the bid's holds (4 contracts' worth at 2.40)
    place(seller, future, "sell", 2, "2.40")
    order_replace(order=Order.objects.get(pk=bid.pk), price=Decimal("2.45"), quantity=3)

    # when the matcher fills the 2, tops the holds up for the replace, and the engine refuses it
    Matcher().process_pending()

    # then the bid rests as it was, 2 open at 2.40, holding what they need and no more
    bid.refresh_from_db()
    assert (bid.status, bid.price, bid.open_quantity) == ("partially_filled", Decimal("2.4"), 2)
    assert balances()[f"trading:{buyer.pk}:cash:USD"][1] == 2 * per_contract
    assert ledger_problems() == [] and order_book_problems() == []


def test_a_replace_that_cannot_be_collateralized_is_refused_and_writes_nothing(future, row_counts):
    poor = account_main(organization_create(slug="sprout", name="Sprout", kind="startup"))
    from exchange.services.funding import deposit_test_funds

    deposit_test_funds(account=poor, amount=Decimal("1000"), actor=None)
    order = place(poor, future, "buy", 1, "2.00")
    before, holds = row_counts(), Hold.objects.count()

    with pytest.raises(OrderRejected) as refused:
        order_replace(order=order, price=Decimal("2.00"), quantity=50)

    assert refused.value.code == OrderRejectCode.INSUFFICIENT_FUNDS
    assert (row_counts(), Hold.objects.count()) == (before, holds)


# Options ----------------------------------------------------------------------------------


def test_an_option_trade_moves_the_premium_and_margins_the_writer(call, buyer, seller):
    # given a writer offering 2 calls (strike 2.50) at 0.120
    hours, symbol = call.gpu_hours_per_contract, call.symbol
    offer = place(seller, call, "sell", 2, "0.120")
    before = balances()

    # when a buyer takes one at 0.120
    place(buyer, call, "buy", 1, "0.120")

    premium = usd("0.120") * hours
    # The writer's scenario margin, fixed on its order (tests/exchange/services/test_margin.py).
    writer_margin = offer.margin_per_contract
    assert writer_margin > 0
    b, s = buyer.pk, seller.pk
    assert changes(before, balances()) == {
        f"trading:{b}:position:{symbol}": (1, 0),
        f"trading:{s}:position:{symbol}": (-1, 0),
        f"trading:{b}:cost:{symbol}:USD": (premium, 0),
        f"trading:{s}:cost:{symbol}:USD": (-premium, 0),
        f"trading:{b}:cash:USD": (premium + usd("0.25"), 0),
        f"trading:{s}:cash:USD": (  # The hold keeps what the open 1 needs (0.25 fee held).
            writer_margin + usd("0.10"),
            -(writer_margin + usd("0.25")),
        ),
        # The premium a writer receives is kept as margin: the end of the day requires the
        # buy-back value on top of the scan risk (exchange.services.margin).
        f"trading:{s}:margin:{symbol}:USD": (-(writer_margin + premium), 0),
        "exchange:fees:USD": (-(usd("0.25") + usd("0.10")), 0),
    }


def test_a_seller_closing_one_call_and_writing_one_keeps_only_the_written_ones_premium(
    call, buyer, seller, maker
):
    # given the seller long 1 call, bought at 0.100 from a writer
    hours, symbol = call.gpu_hours_per_contract, call.symbol
    place(maker, call, "sell", 1, "0.100")
    place(seller, call, "buy", 1, "0.100")
    offer = place(seller, call, "sell", 2, "0.120")
    before = balances()

    # when a buyer takes both at 0.120: the first closes the seller's long, the second writes
    place(buyer, call, "buy", 2, "0.120")

    # then the premium of the contract closed is paid into its cash, the written one's is kept
    # as margin with its scan margin
    premium = usd("0.120") * hours
    writer_margin = offer.margin_per_contract
    s = seller.pk
    assert changes(before, balances())[f"trading:{s}:margin:{symbol}:USD"] == (
        -(writer_margin + premium),
        0,
    )
    assert changes(before, balances())[f"trading:{s}:cash:USD"] == (
        -premium + writer_margin + 2 * usd("0.10"),
        -2 * (offer.margin_per_contract + usd("0.25")),
    )


def test_an_option_buyer_filled_below_its_price_pays_the_fill_price(call, buyer, seller):
    hours = call.gpu_hours_per_contract
    place(seller, call, "sell", 1, "0.100")
    before = balances()[f"trading:{buyer.pk}:cash:USD"]

    order = place(buyer, call, "buy", 1, "0.150")

    assert order.status == FILLED
    after = balances()[f"trading:{buyer.pk}:cash:USD"]
    assert (after[0] - before[0], after[1]) == (usd("0.100") * hours + usd("0.25"), before[1])


# Resale -----------------------------------------------------------------------------------


def test_a_resale_trade_moves_cash_and_every_month_of_entitlements(listing, buyer, seller):
    # given the holder offering 8 GPUs (one lot) of its block at 2.30
    place(seller, listing, "sell", 8, "2.30")
    before = balances()
    reservation = listing.reservation

    # when a buyer takes them
    place(buyer, listing, "buy", 8, "2.30")

    # then the buyer paid the price and a 2% fee, the holder got the price less 1%, and the
    # GPU-hours of both months of the term moved
    notional = 8 * usd("2.30") * listing.gpu_hours_per_contract
    taker_fee = ceil(Decimal("0.02") * notional)
    maker_fee = ceil(Decimal("0.01") * notional)
    b, s = buyer.pk, seller.pk
    expected = {
        f"trading:{b}:cash:USD": (notional + taker_fee, 0),
        f"trading:{s}:cash:USD": (-notional + maker_fee, 0),
        "exchange:fees:USD": (-(taker_fee + maker_fee), 0),
    }
    for part in hours_by_month(reservation.starts_at, reservation.ends_at):
        code = f"GPUH-{listing.sku.code}-{listing.region.code}-{part.month:%Y%m}"
        expected[f"trading:{b}:gpuh:{code}"] = (8 * part.hours, 0)
        # the seller's entitlements were held when it offered them, then delivered
        expected[f"trading:{s}:gpuh:{code}"] = (-8 * part.hours, 8 * part.hours)
    assert changes(before, balances()) == expected
    assert ledger_problems() == [] and order_book_problems() == []
    # and each side's cash moved in one posting, so its statement has one line for the trade
    # (the seller's fee is not a second line of the same description)
    trade = Trade.objects.get(instrument=listing)
    cash = Posting.objects.filter(
        entry__idempotency_key=f"trade:{listing.pk}:{trade.sequence}",
        account__code__in=[f"trading:{b}:cash:USD", f"trading:{s}:cash:USD"],
    )
    assert sorted(cash.values_list("amount", flat=True)) == sorted(
        [notional + taker_fee, -notional + maker_fee]
    )


def test_selling_gpu_hours_one_does_not_hold_is_refused(listing, seller, row_counts):
    # given a second account of the block's holder: its organization holds the block, but the
    # block's GPU-hours were issued to the main account
    second = Account.objects.create(organization=seller.organization, name="second")
    before = row_counts()

    with pytest.raises(OrderRejected) as refused:
        place(second, listing, "sell", 8, "2.30")

    assert refused.value.code == OrderRejectCode.INSUFFICIENT_ENTITLEMENT
    message = refused.value.message
    month = listing.delivery_start.strftime("%B %Y")
    assert f" GPU-hours of H100SXM in USEAST, {month}; the account has 0 available." in message
    assert "GPU-hours of GPU-hours" not in message
    assert row_counts() == replace(before, rejections=before.rejections + 1)


# Fees -------------------------------------------------------------------------------------


def test_a_notional_fee_rounds_up_and_never_to_zero():
    assert fee_micros("resale", Decimal("0.01"), 1, 1) == 1
    assert fee_micros("resale", Decimal("0.01"), 1, 100) == 1
    assert fee_micros("resale", Decimal("0.01"), 1, 101) == 2
    assert fee_micros("resale", Decimal("0"), 1, 101) == 0
    assert fee_micros("future", Decimal("0.50"), 3, 999) == 1_500_000


@given(
    rate=st.decimals(min_value=0, max_value=Decimal("0.1"), places=4),
    limit_micros=st.integers(min_value=1, max_value=10**10),
    fills=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 10**6)), min_size=1, max_size=8),
)
def test_the_fee_held_covers_the_rounded_fees_of_any_split_into_fills(rate, limit_micros, fills):
    # The hold covers ceil(rate x per-contract notional at the limit) per contract; fills at or
    # below the limit, in any split, with each fill's fee rounded up, never need more.
    contracts = sum(quantity for quantity, _ in fills)
    held = contracts * fee_micros("resale", rate, 1, limit_micros)
    charged = sum(
        fee_micros("resale", rate, quantity, quantity * max(limit_micros - improvement, 1))
        for quantity, improvement in fills
    )
    assert charged <= held


# Everything at once -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_random_trading_keeps_the_ledger_and_the_collateral_exact(
    seed, future, call, listing, buyer, seller, maker, fourth
):
    # given futures, options and resale traded at random by four accounts (the seller holds
    # the resale block's GPU-hours; the others' resale sells are refused for want of them)
    simulation = MarketSimulation(
        accounts=[buyer, seller, maker, fourth], instruments=[future, call, listing], seed=seed
    )

    report = simulation.run(400)

    # then every check of books, collateral and ledger holds
    assert report.actions
    assert order_book_problems() == []
    assert ledger_problems() == []
    for instrument in (future, call):
        positions = LedgerAccount.objects.filter(commodity__code=instrument.symbol)
        assert sum(account.balance for account in positions) == 0
    live = Order.objects.filter(status__in=["open", "partially_filled", "new"])
    finished = Order.objects.exclude(pk__in=live)
    assert not Hold.objects.filter(
        status=Hold.Status.PENDING,
        pk__in=OrderHold.objects.filter(order__in=finished).values("hold_id"),
    ).exists()
    assert Organization.objects.count() >= 4


def test_an_expired_gtd_order_releases_its_collateral(future, buyer, external_matcher):
    # given a GTD bid accepted and resting, its collateral held
    cash = f"trading:{buyer.pk}:cash:USD"
    before = balances()[cash]
    order = place(
        buyer,
        future,
        "buy",
        2,
        "2.40",
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    matcher = Matcher()
    matcher.process_instrument(future.pk)
    assert balances()[cash][1] > before[1]

    # when its time passes
    matcher.process_instrument(future.pk, now=timezone.now() + timedelta(minutes=10))

    # then it expired and everything it held is available again
    order.refresh_from_db()
    hold = OrderHold.objects.get(order=order).hold
    assert (order.status, hold.status) == (Order.Status.EXPIRED, Hold.Status.VOIDED)
    assert balances()[cash] == before


def test_the_holds_of_a_few_orders_are_read_by_key_whatever_the_statistics(
    postgres_only, future, buyer
):
    """A young database has no column statistics; the plain join then hashed every pending hold
    (``PENDING_HOLDS_OF_ORDERS``), a read that grew with the book."""
    from django.db import connection

    from exchange.matcher.settlement import PENDING_HOLDS_OF_ORDERS

    orders = [place(buyer, future, "buy", 1, f"2.{index:02d}") for index in range(10, 70)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'ledger_hold'")
        assert cursor.fetchone()[0] == 0  # Never analyzed.
        statement = PENDING_HOLDS_OF_ORDERS.sized(2).sql()
        cursor.execute("EXPLAIN " + statement, [orders[0].pk, orders[1].pk])
        plan = "\n".join(line for (line,) in cursor.fetchall())

    assert "Index Scan using ledger_hold_pkey" in plan, plan
    assert "Seq Scan on ledger_hold" not in plan and "Hash" not in plan, plan
    found = PENDING_HOLDS_OF_ORDERS.rows_in([orders[0].pk, orders[1].pk])
    assert sorted(row.order_id for row, _hold in found) == [orders[0].pk, orders[1].pk]
    assert {hold.status for _row, hold in found} == {Hold.Status.PENDING}
