"""Position limits: an order that could take its organization (all its accounts together)
beyond a future's position limit, net in the future and its options (one contract each on the
side of their exposure), worst case with its resting orders on that side, is refused at
acceptance, on a replace that raises the quantity and in a dry run (RISK_POSITION_LIMIT);
an order that reduces the position never is, nor one of an organization staff exempted."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from exchange.errors import (
    CatalogError,
    CatalogErrorCode,
    OrderRejectCode,
    OrderRejected,
    RiskError,
    RiskErrorCode,
)
from exchange.models import (
    Account,
    AuditEntry,
    Instrument,
    MarginCall,
    Order,
    OrderRejection,
)
from exchange.services.funding import deposit_test_funds
from exchange.services.instruments import instrument_position_limit_set
from exchange.services.orders import order_dry_run, order_replace, position_limit
from tests.exchange.conftest import TEST_ACCOUNT_FUNDS
from tests.exchange.support import place, staff_user, statements

pytestmark = pytest.mark.django_db

LIMIT = 10
PREMIUM = "0.10"


@pytest.fixture
def limited(future, settings):
    """The future with the exchange's default limit of 10 contracts."""
    settings.EXCHANGE_POSITION_LIMIT = LIMIT
    return future


@pytest.fixture
def put(call) -> Instrument:
    return Instrument.objects.get(underlying=call.underlying, option_type="put")


def refused(account, instrument, side, quantity, price="2.40") -> OrderRejected:
    with pytest.raises(OrderRejected) as raised:
        place(account, instrument, side, quantity, price)
    return raised.value


def long_position(account, seller, future, quantity):
    """``account`` buys ``quantity`` of ``future`` from ``seller`` at 2.50."""
    place(seller, future, "sell", quantity, "2.50")
    assert place(account, future, "buy", quantity, "2.50").status == Order.Status.FILLED


def test_an_order_to_the_limit_is_accepted_and_one_beyond_it_refused(limited, buyer, seller):
    # given the buyer long 6, with a resting buy of 3
    long_position(buyer, seller, limited, 6)
    place(buyer, limited, "buy", 3, "2.40")
    orders_before = Order.objects.count()

    # when it buys 1 more (6 + 3 + 1 = 10), then 1 more again
    at_limit = place(buyer, limited, "buy", 1, "2.40")
    beyond = refused(buyer, limited, "buy", 1)

    # then the first rests, the second is refused by name and nothing of it is written
    assert at_limit.status == Order.Status.OPEN
    assert (beyond.code, beyond.field) == (OrderRejectCode.POSITION_LIMIT, "quantity")
    assert beyond.code == "RISK_POSITION_LIMIT"
    assert (
        f"could be 11 contracts long in {limited.symbol} with its options, above its position "
        "limit of 10 (net +6, 4 in its live orders on this side, 1 in this one)"
    ) in beyond.message
    assert Order.objects.count() == orders_before + 1
    assert OrderRejection.objects.filter(code="RISK_POSITION_LIMIT").count() == 1


def test_shorts_are_limited_as_longs(limited, buyer, seller):
    long_position(buyer, seller, limited, 4)  # The seller is short 4.

    assert place(seller, limited, "sell", 6, "2.60").status == Order.Status.OPEN
    beyond = refused(seller, limited, "sell", 1, "2.60")

    assert "could be 11 contracts short" in beyond.message
    assert "(net -4, 6 in its live orders on this side, 1 in this one)" in beyond.message


def test_resting_orders_on_the_same_side_count_and_the_other_side_does_not(limited, buyer):
    place(buyer, limited, "buy", LIMIT, "2.40")

    assert refused(buyer, limited, "buy", 1).code == OrderRejectCode.POSITION_LIMIT
    # its sells are counted on their own side: at worst the bids go unfilled and these fill
    assert place(buyer, limited, "sell", LIMIT, "2.60").status == Order.Status.OPEN
    assert refused(buyer, limited, "sell", 1, "2.60").code == OrderRejectCode.POSITION_LIMIT


def test_orders_that_reduce_are_accepted_above_the_limit(limited, buyer, seller, settings):
    # given the buyer long 8, then the limit lowered to 5 (positions above it stay)
    long_position(buyer, seller, limited, 8)
    settings.EXCHANGE_POSITION_LIMIT = 5

    # then it may not add, but may sell its 8, and even go short up to the limit
    assert refused(buyer, limited, "buy", 1).code == OrderRejectCode.POSITION_LIMIT
    assert place(buyer, limited, "sell", 8, "2.60").status == Order.Status.OPEN
    assert place(buyer, limited, "sell", 5, "2.60").status == Order.Status.OPEN  # -8 + 13 = 5.
    assert refused(buyer, limited, "sell", 1, "2.60").code == OrderRejectCode.POSITION_LIMIT


def test_all_the_organizations_accounts_count_together(limited, buyer, seller):
    second = Account.objects.create(organization=buyer.organization, name="desk-2")
    deposit_test_funds(account=second, amount=TEST_ACCOUNT_FUNDS, actor=None)
    long_position(buyer, seller, limited, 7)
    place(buyer, limited, "buy", 2, "2.40")

    assert place(second, limited, "buy", 1, "2.40").status == Order.Status.OPEN
    beyond = refused(second, limited, "buy", 1)

    assert "(net +7, 3 in its live orders on this side, 1 in this one)" in beyond.message


def test_options_count_one_contract_each_on_the_side_of_their_exposure(
    limited, call, put, buyer, seller, maker
):
    # given the buyer long 4 calls and short 2 puts (both long exposure), and long 1 future
    place(maker, call, "sell", 4, PREMIUM)
    place(buyer, call, "buy", 4, PREMIUM)
    place(maker, put, "buy", 2, PREMIUM)
    place(buyer, put, "sell", 2, PREMIUM)
    long_position(buyer, seller, limited, 1)

    # then it is long 7: 3 more on the long side are accepted in any of them, a 4th refused
    assert place(buyer, call, "buy", 1, "0.05").status == Order.Status.OPEN
    assert place(buyer, put, "sell", 1, "0.50").status == Order.Status.OPEN
    assert place(buyer, limited, "buy", 1, "2.40").status == Order.Status.OPEN
    for instrument, side, price in ((limited, "buy", "2.40"), (call, "buy", "0.05")):
        beyond = refused(buyer, instrument, side, 1, price)
        assert beyond.code == OrderRejectCode.POSITION_LIMIT
        assert "(net +7, 3 in its live orders on this side, 1 in this one)" in beyond.message
    beyond = refused(buyer, put, "sell", 1, "0.50")
    assert f"could be 11 contracts long in {limited.symbol}" in beyond.message
    # and the short side has room for 17 (net +7 offsets them): a bought put or a sold call
    assert place(buyer, put, "buy", 17, "0.05").status == Order.Status.OPEN
    assert refused(buyer, call, "sell", 1, "0.50").code == OrderRejectCode.POSITION_LIMIT


def test_an_option_counts_against_its_futures_limit(limited, call):
    limited.position_limit = 3
    limited.save(update_fields=["position_limit"])

    assert position_limit(Instrument.objects.get(pk=limited.pk)) == 3
    assert position_limit(call) == 3


def test_a_replace_that_raises_the_quantity_is_checked_without_the_order_itself(
    limited, buyer, seller
):
    long_position(buyer, seller, limited, 4)
    order = place(buyer, limited, "buy", 3, "2.40")

    raised = order_replace(order=order, price=Decimal("2.40"), quantity=6)  # 4 + 6 = 10.
    with pytest.raises(OrderRejected) as beyond:
        order_replace(order=raised, price=Decimal("2.40"), quantity=7)

    assert (raised.status, raised.open_quantity) == (Order.Status.OPEN, 6)
    assert beyond.value.code == OrderRejectCode.POSITION_LIMIT
    assert "(net +4, 0 in its other live orders on this side, 7 in this one)" in (
        beyond.value.message
    )
    assert Order.objects.get(pk=order.pk).open_quantity == 6


def test_a_replace_that_keeps_or_lowers_the_quantity_is_accepted_above_the_limit(
    limited, buyer, settings
):
    order = place(buyer, limited, "buy", 8, "2.40")
    settings.EXCHANGE_POSITION_LIMIT = 5

    moved = order_replace(order=order, price=Decimal("2.35"), quantity=8)
    lowered = order_replace(order=moved, price=Decimal("2.35"), quantity=6)

    assert (lowered.price, lowered.open_quantity) == (Decimal("2.35"), 6)


def test_a_dry_run_is_refused_as_the_order_would_be_and_writes_nothing(limited, buyer):
    place(buyer, limited, "buy", 9, "2.40")
    rejections = OrderRejection.objects.count()

    preview = order_dry_run(
        account=buyer, instrument=limited.symbol, side="buy", quantity=1, price=Decimal("2.40")
    )
    with pytest.raises(OrderRejected) as beyond:
        order_dry_run(
            account=buyer, instrument=limited.symbol, side="buy", quantity=2, price=Decimal("2.4")
        )

    assert preview.margin_per_contract > 0
    assert beyond.value.code == OrderRejectCode.POSITION_LIMIT
    assert OrderRejection.objects.count() == rejections


def test_an_exempt_organization_is_not_held_to_the_limit(limited, buyer):
    place(buyer, limited, "buy", LIMIT, "2.40")
    organization = buyer.organization
    organization.position_limit_exempt = True
    organization.save()  # Its signal forgets what the order path kept of it.

    assert place(buyer, limited, "buy", 50, "2.40").status == Order.Status.OPEN

    organization.position_limit_exempt = False
    organization.save()
    assert refused(buyer, limited, "buy", 1).code == OrderRejectCode.POSITION_LIMIT


def test_a_futures_own_limit_overrides_the_default_and_zero_means_none(limited, buyer, settings):
    instrument_position_limit_set(instrument=limited, position_limit=20, actor=None)
    assert place(buyer, limited, "buy", 20, "2.40").status == Order.Status.OPEN
    assert refused(buyer, limited, "buy", 1).code == OrderRejectCode.POSITION_LIMIT

    instrument_position_limit_set(instrument=limited, position_limit=0, actor=None)
    assert place(buyer, limited, "buy", 100, "2.40").status == Order.Status.OPEN

    instrument_position_limit_set(instrument=limited, position_limit=None, actor=None)
    assert position_limit(Instrument.objects.get(pk=limited.pk)) == LIMIT
    settings.EXCHANGE_POSITION_LIMIT = 0
    assert position_limit(Instrument.objects.get(pk=limited.pk)) is None
    settings.EXCHANGE_POSITION_LIMIT = None
    assert position_limit(Instrument.objects.get(pk=limited.pk)) is None


def test_reducing_orders_under_a_margin_call_are_not_checked(limited, buyer, seller, settings):
    """An account's reducing order only closes its own position: it is accepted even where
    its organization, flat overall, would count it as opening a short."""
    from django.utils import timezone

    # given the buyer long 8 in one account and short 8 in another: flat as an organization
    second = Account.objects.create(organization=buyer.organization, name="desk-2")
    deposit_test_funds(account=second, amount=TEST_ACCOUNT_FUNDS, actor=None)
    long_position(buyer, seller, limited, 8)
    place(second, limited, "sell", 8, "2.50")
    place(seller, limited, "buy", 8, "2.50")
    settings.EXCHANGE_POSITION_LIMIT = 1
    assert refused(buyer, limited, "sell", 8, "2.60").code == OrderRejectCode.POSITION_LIMIT
    MarginCall.objects.create(
        account=buyer, trading_date=timezone.now().date(), required=10, maintenance=8, held=5
    )

    # when the first account, under a margin call, sells its 8
    closing = place(buyer, limited, "sell", 8, "2.60")

    # then the order is accepted as reducing
    assert (closing.status, closing.reduce_only) == (Order.Status.OPEN, True)


def test_setting_a_limit_is_the_risk_roles_and_audited(limited, call):
    risk = staff_user("rita", "risk")
    operations = staff_user("otto", "operations")

    with pytest.raises(RiskError) as not_risk:
        instrument_position_limit_set(instrument=limited, position_limit=7, actor=operations)
    with pytest.raises(CatalogError) as option:
        instrument_position_limit_set(instrument=call, position_limit=7, actor=risk)
    with pytest.raises(CatalogError) as negative:
        instrument_position_limit_set(instrument=limited, position_limit=-1, actor=risk)
    # (beyond the column: named, not the database's error)
    with pytest.raises(CatalogError) as too_large:
        instrument_position_limit_set(instrument=limited, position_limit=2**31, actor=risk)
    instrument_position_limit_set(instrument=limited, position_limit=7, actor=risk)

    assert not_risk.value.code == RiskErrorCode.ROLE_REQUIRED
    assert option.value.code == negative.value.code == CatalogErrorCode.POSITION_LIMIT_INVALID
    assert too_large.value.code == CatalogErrorCode.POSITION_LIMIT_INVALID
    assert Instrument.objects.get(pk=limited.pk).position_limit == 7
    entry = AuditEntry.objects.get(action="instrument.position_limit")
    assert (entry.actor, entry.before, entry.after) == (
        risk,
        {"position_limit": None},
        {"position_limit": 7},
    )


def _exposure_reads(run: list[str]) -> list[str]:
    return [sql for sql in run if ":position:" in sql]


def test_a_futures_order_runs_two_more_statements_only_when_a_limit_applies(
    future, buyer, settings
):
    """The order path is benchmarked: with no limit (none set, or the organization exempt) a
    futures order runs the statements it ran before position limits; with one, exactly two
    more: the organization's row lock and ``positions.organization_exposure``."""
    settings.EXCHANGE_POSITION_LIMIT = 0
    place(buyer, future, "buy", 1, "2.40")  # Keeps the instrument and the organization.

    with statements() as unlimited:
        place(buyer, future, "buy", 1, "2.40")
    settings.EXCHANGE_POSITION_LIMIT = LIMIT
    with statements() as limited:
        place(buyer, future, "buy", 1, "2.40")
    buyer.organization.position_limit_exempt = True
    buyer.organization.save()
    place(buyer, future, "buy", 1, "2.40")  # Reads the organization again, once.
    with statements() as exempt:
        place(buyer, future, "buy", 1, "2.40")

    assert _exposure_reads(unlimited) == [] and _exposure_reads(exempt) == []
    assert len(_exposure_reads(limited)) == 1
    assert len(limited) == len(unlimited) + 2
    assert len(exempt) == len(unlimited)


def test_an_order_whose_cancel_is_queued_is_not_counted(limited, buyer, external_matcher):
    """The matcher runs a queued cancel before any later command of the instrument, so the
    order trades nothing a new one could add to: a cancel then a new order is not refused
    while the matcher has yet to reach the cancel."""
    from exchange.services.orders import order_cancel

    resting = place(buyer, limited, "buy", LIMIT, "2.40")
    assert refused(buyer, limited, "buy", 1).code == OrderRejectCode.POSITION_LIMIT

    pending = order_cancel(order=resting)

    assert pending.command_pending
    assert place(buyer, limited, "buy", LIMIT, "2.40").status == Order.Status.NEW


@pytest.mark.django_db(transaction=True)
def test_two_accounts_of_one_organization_ordering_at_once_stay_within_the_limit(
    postgres_only, limited, buyer, monkeypatch
):
    """Each order's count is read under the organization's row lock, in the transaction that
    writes it: the second waits for the first to commit, then counts it. Read before (as until
    2026-12-07), each counted without the other and both passed."""
    from exchange.selectors import positions as positions_selector
    from exchange.services import orders as orders_service

    second = Account.objects.create(organization=buyer.organization, name="second")
    deposit_test_funds(account=second, amount=TEST_ACCOUNT_FUNDS, actor=None)
    counted = positions_selector.organization_exposure

    def slow_count(*args, **kwargs):
        found = counted(*args, **kwargs)
        time.sleep(0.3)  # Another acceptance counting now would not see this one's order.
        return found

    monkeypatch.setattr(orders_service.positions_selector, "organization_exposure", slow_count)
    outcomes: list[Order | OrderRejected] = []
    barrier = threading.Barrier(2)

    def buy(account: Account) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(place(account, limited, "buy", 6, "2.40"))
        except OrderRejected as error:
            outcomes.append(error)
        finally:
            connection.close()

    # when each account buys 6 at once (12 together, above the limit of 10)
    threads = [threading.Thread(target=buy, args=(account,)) for account in (buyer, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then one is accepted and the other refused
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["Order", "OrderRejected"]
    (error,) = [outcome for outcome in outcomes if isinstance(outcome, OrderRejected)]
    assert error.code == OrderRejectCode.POSITION_LIMIT
    assert Order.objects.filter(account__organization=buyer.organization).count() == 1
