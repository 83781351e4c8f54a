"""Migrations that carry data or database code, run backwards and forwards on real rows."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models.functions import Lower

from exchange.models import MarginCall, Order, OrderCommand, Trade
from exchange.services.orders import order_cancel
from tests.exchange.support import place

BEFORE_DONE_REASON = ("exchange", "0011_cancel_all_timer")
DONE_REASON = ("exchange", "0012_order_done_reason")
BEFORE_NAME_UNIQUE = ("exchange", "0014_order_resting_expiry_index")
NAME_UNIQUE = ("exchange", "0015_organization_name_unique")
TRADE_FEES = ("exchange", "0016_trade_fees")
AMOUNT_CALLED = ("exchange", "0017_margin_call_amount_called")
BEFORE_REDUCE_ONLY = ("exchange", "0019_cancel_reason_margin_call_cured")
REDUCE_ONLY = ("exchange", "0020_order_reduce_only")


def migrate_to(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def model_at(target: tuple[str, str], name: str):
    """The model ``name`` of the exchange as it was at migration ``target``: the rows a test
    writes at an older schema have that schema's columns, not the current model's (a column
    added since, as Organization.position_limit_exempt, is not there yet)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor.loader.project_state(target).apps.get_model("exchange", name)


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture(autouse=True)
def _back_to_the_latest():
    """Each test leaves the database at the latest migrations, as it found it: the tests after
    it on the same database (the transactional ones keep its schema) need every column."""
    yield
    migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_0012_gives_finished_orders_their_done_reason_and_keeps_new_orders_queued(
    future, buyer, seller
):
    # given orders that finished before the column existed, and one still resting
    resting = place(seller, future, "sell", 5, "2.500")
    filled = place(buyer, future, "buy", 2, "2.500")
    cancelled = order_cancel(order=place(buyer, future, "buy", 1, "2.400"))
    migrate_to(BEFORE_DONE_REASON)

    # when the migration runs
    migrate_to(DONE_REASON)

    # then each finished order takes the reason of its final transition
    reasons = dict(Order.objects.values_list("pk", "done_reason"))
    assert (reasons[filled.pk], reasons[cancelled.pk], reasons[resting.pk]) == (
        "filled",
        "user",
        "",
    )
    # and the trigger still queues every new order's command, which the matcher runs (with the
    # later migrations too, which the order model needs)
    migrate_to_latest()
    order = place(buyer, future, "buy", 1, "2.450")
    command = OrderCommand.objects.get(order=order)
    assert (command.kind, command.status, command.cancel_reason) == ("new", "done", "")
    assert order.status == Order.Status.OPEN


@pytest.mark.django_db(transaction=True)
def test_0015_tells_apart_organizations_named_alike_then_refuses_another():
    # given organizations created before the rule, three named alike but for case and blanks
    migrate_to(BEFORE_NAME_UNIQUE)
    Then = model_at(BEFORE_NAME_UNIQUE, "Organization")
    for slug, name in [
        ("lumen", "Lumen Labs"),
        ("lumen-2", "LUMEN LABS"),
        ("quanta", "Quanta Bio"),
        ("lumen-3", " lumen labs "),
        ("acme", " Acme "),
    ]:
        Then.objects.create(slug=slug, name=name, kind="startup")

    # when the migration runs
    migrate_to(NAME_UNIQUE)
    Organizations = model_at(NAME_UNIQUE, "Organization").objects

    # then the first keeps its name, the later ones take their short name after theirs
    assert dict(Organizations.values_list("slug", "name")) == {
        "lumen": "Lumen Labs",
        "lumen-2": "LUMEN LABS (lumen-2)",
        "quanta": "Quanta Bio",
        "lumen-3": "lumen labs (lumen-3)",
        "acme": "Acme",  # Its blanks gone, as organization_create strips them.
    }
    # and the database refuses a name taken whatever its case
    with pytest.raises(IntegrityError):
        Organizations.create(slug="quanta-2", name="quanta bio", kind="startup")


@pytest.mark.django_db(transaction=True)
def test_0015_folds_names_as_the_database_index_does():
    # given names that Python's lower() and the database's lower() may fold differently
    # (PostgreSQL folds the dotted capital I to a plain i; Python to i and a combining dot)
    migrate_to(BEFORE_NAME_UNIQUE)
    Then = model_at(BEFORE_NAME_UNIQUE, "Organization")
    for slug, name in [("inci", "\u0130nci Labs"), ("inci-2", "inci labs"), ("sigma", "ΟΔΟΣ")]:
        Then.objects.create(slug=slug, name=name, kind="startup")
    Then.objects.create(slug="sigma-2", name="οδος", kind="startup")

    # when the migration runs, then it does not fail on building the index
    migrate_to(NAME_UNIQUE)

    # and no two names fold alike in the database
    folded = list(Then.objects.annotate(f=Lower("name")).values_list("f", flat=True))
    assert len(folded) == len(set(folded)) == 4


@pytest.mark.django_db(transaction=True)
def test_0016_stores_each_trades_fees_as_the_ledger_posted_them(future, buyer, seller):
    # given a trade of 100 made when an order's rates held its block tier (0.16 / 0.40), as the
    # database held it before fees were stored on trades
    place(seller, future, "sell", 100, "2.45")
    place(buyer, future, "buy", 100, "2.45")
    trade = Trade.objects.get()
    Order.objects.filter(pk=trade.maker_order_id).update(maker_fee_rate=Decimal("0.16"))
    Order.objects.filter(pk=trade.taker_order_id).update(taker_fee_rate=Decimal("0.40"))
    migrate_to(NAME_UNIQUE)

    # when the migration runs
    migrate_to(TRADE_FEES)

    # then each side's fee is its order's stored rate on the fill, as the settlement charged it
    trade = Trade.objects.get()
    assert (trade.seller_fee, trade.buyer_fee) == (100 * 160_000, 100 * 400_000)


@pytest.mark.django_db(transaction=True)
def test_0016_an_order_resting_across_it_keeps_its_tiered_rates(future, buyer, seller):
    # given a sell of 500 resting from before, accepted with its size's tier in its rates
    # (0.60 of the 0.20 maker fee) and its hold computed on them
    resting = place(seller, future, "sell", 500, "2.45")
    Order.objects.filter(pk=resting.pk).update(maker_fee_rate=Decimal("0.12"))
    migrate_to(NAME_UNIQUE)

    # when the migration runs and a buy of 500 takes it (with the columns added since)
    migrate_to(TRADE_FEES)
    migrate_to_latest()
    resting = Order.objects.get(pk=resting.pk)
    assert resting.fee_rates_tiered
    place(buyer, future, "buy", 500, "2.45")

    # then its fill pays the 0.12 it was accepted with, not a tier of it again (0.072)
    trade = Trade.objects.get()
    assert trade.seller_fee == 500 * 120_000
    # while an order accepted since pays the tier its fills reach
    assert not Order.objects.get(pk=trade.taker_order_id).fee_rates_tiered
    assert trade.buyer_fee == 500 * 300_000


@pytest.mark.django_db(transaction=True)
def test_0017_gives_calls_made_before_it_what_their_figures_say_is_due(buyer):
    # given a call made before calls kept what they asked for
    migrate_to(TRADE_FEES)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO exchange_margincall (account_id, trading_date, required, maintenance,"
            " held, deficit, status, reviews, created_at)"
            " VALUES (%s, '2026-12-04', 30000000, 24000000, 10000000, 5000000, 'open', 0,"
            " CURRENT_TIMESTAMP)",
            [buyer.pk],
        )

    # when the migration runs
    migrate_to(AMOUNT_CALLED)

    # then its amount called is what it says is due: required - held + deficit
    call = MarginCall.objects.get()
    assert (call.amount_called, call.figured_at) == (25_000_000, None)


@pytest.mark.django_db(transaction=True)
def test_0020_marks_the_live_orders_accepted_without_fees_as_reducing(future, buyer, seller):
    # given, from before the column, a live offer accepted to reduce (no fees), an ordinary
    # live bid, and an order without fees that has ended
    reducing = place(seller, future, "sell", 2, "2.60")
    ordinary = place(buyer, future, "buy", 2, "2.40")
    ended = place(seller, future, "sell", 1, "2.70")
    order_cancel(order=ended)
    Order.objects.filter(pk__in=[reducing.pk, ended.pk]).update(maker_fee_rate=0, taker_fee_rate=0)
    migrate_to(BEFORE_REDUCE_ONLY)

    # when the migration runs
    migrate_to(REDUCE_ONLY)

    # then only the live one without fees is reducing, and new orders still reach the matcher
    marked = dict(Order.objects.values_list("pk", "reduce_only"))
    assert marked == {reducing.pk: True, ordinary.pk: False, ended.pk: False}
    migrate_to_latest()  # The order path reads the instrument's columns added since.
    assert place(buyer, future, "buy", 1, "2.30").status == Order.Status.OPEN
