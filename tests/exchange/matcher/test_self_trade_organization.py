"""Self-trade prevention by organization in the matcher: no two accounts of one organization
(its main account, a further one, a portfolio pool's) trade with each other, whichever mode the
incoming order names, on a book the matcher kept or one it rebuilt; two organizations trade."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange.matcher.runtime import Matcher
from exchange.models import Account, Order, Trade
from exchange.selectors.integrity import order_book_problems
from exchange.services.funding import deposit_test_funds
from exchange.services.orders import order_replace
from exchange.services.participants import account_main
from tests.exchange import support
from tests.exchange.conftest import TEST_ACCOUNT_FUNDS
from tests.exchange.pools.support import sponsor_pool
from tests.exchange.support import database_book, matcher_book

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _external(external_matcher):
    """Every order here waits for a matcher the test runs."""


def place(account, instrument, side, quantity, price, **options):
    order = support.place(account, instrument, side, quantity, price, **options)
    assert order.status == Order.Status.NEW
    return order


def second_account(of: Account) -> Account:
    """A further funded trading account of ``of``'s organization."""
    second = Account.objects.create(organization=of.organization, name="second")
    deposit_test_funds(account=second, amount=TEST_ACCOUNT_FUNDS, actor=None)
    return second


def state(order: Order) -> tuple[str, int, int, str]:
    order.refresh_from_db()
    return (order.status, order.open_quantity, order.cancelled_quantity, order.done_reason)


# The resting order offers 5, the incoming one of the same organization asks for 3 at its
# price: (resting, incoming) as (status, open, cancelled, done_reason) for the incoming mode.
OUTCOMES = {
    "cancel_newest": (("open", 5, 0, ""), ("cancelled", 0, 3, "self_trade")),
    "cancel_oldest": (("cancelled", 0, 5, "self_trade"), ("open", 3, 0, "")),
    "cancel_both": (("cancelled", 0, 5, "self_trade"), ("cancelled", 0, 3, "self_trade")),
    "decrement": (("open", 2, 3, ""), ("cancelled", 0, 3, "self_trade")),
}


@pytest.fixture(params=["second_account", "pool_account"])
def siblings(request, buyer) -> tuple[Account, str, Account]:
    """Two accounts of one organization: (the resting order's, its side, the incoming one's).

    ``second_account``: a further account's offer, met by the organization's main account.
    ``pool_account``: a portfolio pool's bid (the pool buys with its members' money), met by
    its sponsor's main account selling.
    """
    if request.param == "second_account":
        return second_account(buyer), "sell", buyer
    sponsor, _sam, pool = sponsor_pool()
    return pool.account, "buy", account_main(sponsor)


@pytest.mark.parametrize("restarted", [False, True], ids=["kept_book", "rebuilt_book"])
@pytest.mark.parametrize("mode", sorted(OUTCOMES))
def test_two_accounts_of_one_organization_never_trade(future, siblings, mode, restarted):
    # given one account's order resting in the book
    resting_account, side, incoming_account = siblings
    assert resting_account != incoming_account
    assert resting_account.organization_id == incoming_account.organization_id
    matcher = Matcher()
    resting = place(resting_account, future, side, 5, "2.50")
    matcher.process_pending()
    if restarted:
        # (a matcher that starts now rebuilds the book from the database)
        matcher = Matcher()

    # when another account of the same organization sends an order that crosses it
    other_side = "buy" if side == "sell" else "sell"
    incoming = place(incoming_account, future, other_side, 3, "2.50", self_trade_prevention=mode)
    matcher.process_pending()

    # then they do not trade: the incoming order's mode decides, as for one account's orders
    assert not Trade.objects.exists()
    assert (state(resting), state(incoming)) == OUTCOMES[mode]
    assert order_book_problems() == []
    assert matcher_book(matcher, future.pk) == database_book(future.pk)


def test_the_book_holds_each_order_with_its_organization_as_its_group(future, buyer, seller):
    # given orders of two accounts of one organization and of another organization
    second = second_account(buyer)
    for account, price in ((buyer, "2.40"), (second, "2.45"), (seller, "2.60")):
        place(account, future, "sell" if account == seller else "buy", 1, price)
    matcher = Matcher()

    # when the matcher runs them, and when another rebuilds the book
    matcher.process_pending()
    restarted = Matcher()
    restarted.rebuild_all()

    # then every resting order's group is its account's organization, in both books
    expected = {
        (buyer.pk, buyer.organization_id),
        (second.pk, buyer.organization_id),
        (seller.pk, seller.organization_id),
    }
    for book in (matcher.engine.book(future.pk), restarted.engine.book(future.pk)):
        assert {(resting.account, resting.stp_group) for resting in book.orders()} == expected


def test_two_organizations_still_trade(future, buyer, seller):
    # given a second account of the buyer's organization, so that its groups hold two accounts
    second = second_account(buyer)
    ask = place(seller, future, "sell", 5, "2.50")
    first, other = place(buyer, future, "buy", 2, "2.50"), place(second, future, "buy", 3, "2.50")

    Matcher().process_pending()

    # then both of the buyer's accounts bought from the seller
    assert state(ask) == ("filled", 0, 0, "filled")
    assert state(first)[:3] == state(other)[:3] == ("filled", 0, 0)
    assert sorted(Trade.objects.values_list("taker_order__account_id", "quantity")) == sorted(
        [(buyer.pk, 2), (second.pk, 3)]
    )


def test_a_pool_trades_with_other_organizations(future, seller):
    # given a pool's bid
    sponsor, _sam, pool = sponsor_pool()
    bid = place(pool.account, future, "buy", 4, "2.50")
    # when its sponsor's main account and then another organization sell into it
    own = place(account_main(sponsor), future, "sell", 4, "2.50")
    ask = place(seller, future, "sell", 4, "2.50")
    Matcher().process_pending()

    # then only the other organization's sell trades with it
    assert state(own) == ("cancelled", 0, 4, "self_trade")
    assert state(bid) == state(ask) == ("filled", 0, 0, "filled")
    assert list(Trade.objects.values_list("maker_order_id", "taker_order_id")) == [(bid.pk, ask.pk)]


def test_a_replace_that_crosses_an_order_of_its_organization_does_not_trade(future, buyer):
    # given a bid of the main account and an ask of a second account of the same organization
    second = second_account(buyer)
    bid = place(buyer, future, "buy", 5, "2.45", self_trade_prevention="cancel_oldest")
    ask = place(second, future, "sell", 2, "2.50")
    matcher = Matcher()
    matcher.process_pending()

    # when the bid is replaced up to the ask's price
    order_replace(order=Order.objects.get(pk=bid.pk), price=ask.price, quantity=5)
    matcher.process_pending()

    # then the bid's mode (cancel_oldest) cancels the ask and the bid rests at its new price
    assert not Trade.objects.exists()
    assert state(ask) == ("cancelled", 0, 2, "self_trade")
    assert state(bid) == ("open", 5, 0, "")
    assert matcher_book(matcher, future.pk) == database_book(future.pk)


def account_reads(queries: CaptureQueriesContext) -> int:
    table = connection.ops.quote_name(Account._meta.db_table)
    return sum(f"FROM {table}" in query["sql"] for query in queries.captured_queries)


def test_the_matcher_reads_organizations_once_per_batch_and_keeps_them(
    future, buyer, seller, maker
):
    # given new orders of three accounts the matcher has not met
    matcher = Matcher()
    for account in (buyer, seller, maker):
        place(account, future, "buy" if account == buyer else "sell", 1, "2.60")

    # when it runs them in one batch
    with CaptureQueriesContext(connection) as first:
        matcher.process_pending()
    # and then more of the same accounts
    for account in (buyer, seller, maker, buyer):
        place(account, future, "buy", 1, "2.40")
    with CaptureQueriesContext(connection) as second:
        matcher.process_pending()

    # then one read found the three organizations, and none was needed again
    assert account_reads(first) == 1
    assert account_reads(second) == 0
    assert matcher._organizations == {
        account.pk: account.organization_id for account in (buyer, seller, maker)
    }
