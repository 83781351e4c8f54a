"""The daily cycle while traders keep trading (PostgreSQL only): the cycle locks the books it
settles and the cash it moves in the ledger's order, so neither side deadlocks or posts on a
stale position, and the matchers reload the margin the cycle set. Two days' runs at once settle
one after the other, so the earlier day is never settled after the later one."""

import contextlib
import random
import threading
import time as time_module
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction

from exchange.errors import RiskError, RiskErrorCode
from exchange.models import Order, RiskCycle, SettlementPrice
from exchange.selectors.integrity import collateral_problems, order_book_problems
from exchange.services import settlement_prices
from exchange.services.orders import order_place
from exchange.services.risk_cycle import daily_settlement_run
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from ledger.selectors import ledger_problems
from tests.exchange.matcher.test_concurrency import run_threads

# The days settled here are after today: the exchange's calendar is moved on for them.
pytestmark = pytest.mark.usefixtures("calendar_ahead")

TRADERS = 3
ORDERS_PER_TRADER = 40
# How long a run whose order check passed waits for the other run's check. Without the day
# settlements' lock both pass and meet here; with it the earlier day's run waits for the later
# one to commit before it checks, and the later goes on alone once this runs out.
CHECKS_MEET_SECONDS = 2
WAIT_SECONDS = 30


@pytest.mark.django_db(transaction=True)
def test_a_daily_cycle_runs_while_orders_trade(
    postgres_only, futures, buyer, seller, maker, fourth
):
    # given positions in both futures, and a day priced by override
    accounts = [buyer, seller, maker, fourth]
    for future in futures:
        order_place(
            account=seller, instrument=future, side="sell", price=Decimal("2.45"), quantity=20
        )
        order_place(
            account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=20
        )
    day = futures[0].last_trading_day - timedelta(days=5)
    for future in futures:
        SettlementPrice.objects.create(
            instrument=future, trading_date=day, price=Decimal("2.50"), source="override"
        )
    started = threading.Event()

    def work(index: int) -> None:
        if index == TRADERS:  # The last thread settles the day once the traders are going.
            started.wait(timeout=30)
            daily_settlement_run(trading_date=day)
            return
        rng = random.Random(index)
        for count in range(ORDERS_PER_TRADER):
            if count == 5:
                started.set()
            order_place(
                account=accounts[index + 1],
                instrument=rng.choice(futures),
                side=rng.choice(("buy", "sell")),
                price=Decimal("0.005") * (500 + rng.randint(-3, 3)),
                quantity=rng.choice((1, 2, 3)),
                time_in_force=rng.choice(("gtc", "ioc")),
            )

    # when the cycle runs among the traders
    errors = run_threads(work, TRADERS + 1)

    # then nothing failed, the day is settled, and books, collateral and ledger agree
    assert errors == []
    assert RiskCycle.objects.get(trading_date=day).status == RiskCycle.Status.SETTLED
    assert Entry.objects.filter(idempotency_key__startswith=f"variation:{day}:").exists()
    assert Order.objects.filter(status=Order.Status.NEW).count() == 0
    assert order_book_problems() == []
    assert collateral_problems() == []
    assert ledger_problems() == []
    # and no margin account went negative (a matcher releasing stale margin would overdraw it)
    margins = LedgerAccount.objects.filter(code__contains=":margin:")
    assert all(account.balance <= 0 for account in margins)
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_margin_call_review_during_the_daily_cycle_waits_for_it(
    postgres_only, future, monkeypatch
):
    from exchange import calendar
    from exchange.models import MarginCall
    from exchange.services import risk_cycle
    from exchange.services.funding import deposit_test_funds
    from exchange.services.risk_cycle import margin_call_review
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.conftest import _account
    from tests.exchange.ledger_figures import scan
    from tests.exchange.support import place

    # given a long of 2 at 2.50 on $800, called after a fall to 2.10, and the next day priced
    hours = future.gpu_hours_per_contract
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    next_day = calendar.business_days_before(future.last_trading_day, 4)
    for when, price in ((day, "2.10"), (next_day, "2.00")):
        settlement_price_override(
            instrument=future, trading_date=when, price=Decimal(price), reason="Brokers", actor=None
        )
    daily_settlement_run(trading_date=day)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    # and a review (the beat's, or staff's) that reaches the books just after the cycle of the
    # next day has locked them: the cycle then updates the open call, which the review read
    real_lock, cycle_holds_books, roles = risk_cycle.instruments_lock, threading.Event(), {}

    def instruments_lock(ids):
        if roles.get(threading.get_ident()) == "review":
            assert cycle_holds_books.wait(timeout=30)
            return real_lock(ids)
        locked = real_lock(ids)
        cycle_holds_books.set()
        return locked

    monkeypatch.setattr(risk_cycle, "instruments_lock", instruments_lock)

    def work(index: int) -> None:
        if index == 0:
            roles[threading.get_ident()] = "cycle"
            daily_settlement_run(trading_date=next_day)
        else:
            roles[threading.get_ident()] = "review"
            margin_call_review(call)

    # when the cycle and the review run at once
    errors = run_threads(work, 2)

    # then neither failed (they had deadlocked: the review held the call and waited for the
    # books, the cycle held the books and waited for the call): the review came after the
    # cycle, and the call is figured at the next day's price
    assert errors == []
    assert RiskCycle.objects.get(trading_date=next_day).status == RiskCycle.Status.SETTLED
    call.refresh_from_db()
    assert call.status == MarginCall.Status.OPEN
    assert call.required == scan("2.00", 2, hours)
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_an_earlier_day_run_beside_a_later_one_is_refused_not_settled_after_it(
    postgres_only, future, buyer, seller, monkeypatch
):
    from exchange import calendar
    from tests.exchange.support import place

    # given positions in a future, and two closed days it trades on
    place(seller, future, "sell", 10, "2.50")
    place(buyer, future, "buy", 10, "2.50")
    later = calendar.business_days_before(future.last_trading_day, 4)
    earlier = calendar.business_days_before(future.last_trading_day, 5)
    # and the later day's run that passes its order check first, then meets the earlier day's
    # run passing its own before either has settled; the earlier one goes on once the later
    # has committed (the order the check exists to refuse)
    later_checked, later_done = threading.Event(), threading.Event()
    checks_meet = threading.Barrier(2)
    real_check = settlement_prices.trading_date_check

    def trading_date_check(trading_date, close=None):
        real_check(trading_date, close)
        if trading_date == later:
            later_checked.set()
        with contextlib.suppress(threading.BrokenBarrierError):
            checks_meet.wait(timeout=CHECKS_MEET_SECONDS)
        if trading_date == earlier:
            later_done.wait(timeout=WAIT_SECONDS)

    monkeypatch.setattr(settlement_prices, "trading_date_check", trading_date_check)
    refusals: list[str] = []

    def work(index: int) -> None:
        if index == 0:
            try:
                daily_settlement_run(trading_date=later)
            finally:
                later_done.set()
            return
        assert later_checked.wait(timeout=WAIT_SECONDS)
        try:
            daily_settlement_run(trading_date=earlier)
        except RiskError as error:
            refusals.append(error.code)

    # when both run at once
    errors = run_threads(work, 2)

    # then the later day is settled, and the earlier one refused as out of order and unsettled
    assert errors == []
    assert refusals == [RiskErrorCode.DAY_OUT_OF_ORDER]
    settled = RiskCycle.objects.filter(status=RiskCycle.Status.SETTLED)
    assert list(settled.values_list("trading_date", flat=True)) == [later]
    assert not Entry.objects.filter(idempotency_key__startswith=f"variation:{earlier}:").exists()
    assert ledger_problems() == []
    connection.close()


# Sessions of this database waiting for the day settlements' lock (a lock of two int4 keys is
# classid, objid and objsubid 2; pg_locks lists every database of the server).
DAY_SETTLEMENTS_LOCK_WAITERS = """
    SELECT count(*) FROM pg_locks
    WHERE NOT granted AND locktype = 'advisory' AND classid::bigint = %s
        AND objid::bigint = %s AND objsubid = 2
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
DAY_SETTLEMENTS_LOCK = [
    settlement_prices.DAY_SETTLEMENTS_LOCK_CLASS,
    settlement_prices.DAY_SETTLEMENTS_LOCK_KEY,
]


@pytest.mark.parametrize("service", ["override", "set"])
@pytest.mark.django_db(transaction=True)
def test_a_price_change_for_an_earlier_day_waits_for_a_running_settlement_then_is_refused(
    postgres_only, future, buyer, seller, monkeypatch, service
):
    import time

    from exchange import calendar
    from exchange.models import AuditEntry
    from exchange.services import risk_cycle
    from tests.exchange.support import place

    # given positions in a future, two closed days it trades on, and the earlier day priced
    place(seller, future, "sell", 10, "2.50")
    place(buyer, future, "buy", 10, "2.50")
    later = calendar.business_days_before(future.last_trading_day, 4)
    earlier = calendar.business_days_before(future.last_trading_day, 5)
    settlement_prices.settlement_price_override(
        instrument=future, trading_date=earlier, price=Decimal("2.50"), reason="Brokers", actor=None
    )
    audits = AuditEntry.objects.count()
    # and the later day's settlement, held in the middle of its run (its prices set, its books
    # locked, nothing committed) until the test lets it go on
    settling, go_on = threading.Event(), threading.Event()
    real_check_prices = risk_cycle._check_prices

    def check_prices(trading_date, close):
        real_check_prices(trading_date, close)
        settling.set()
        assert go_on.wait(timeout=WAIT_SECONDS)

    monkeypatch.setattr(risk_cycle, "_check_prices", check_prices)
    outcome: list[BaseException | object] = []

    def run(target) -> threading.Thread:
        def work() -> None:
            try:
                outcome.append(target())
            except BaseException as error:  # Checked below.
                outcome.append(error)
            finally:
                connection.close()

        thread = threading.Thread(target=work)
        thread.start()
        return thread

    def change_earlier():
        if service == "set":
            return settlement_prices.settlement_prices_set(trading_date=earlier)
        return settlement_prices.settlement_price_override(
            instrument=future,
            trading_date=earlier,
            price=Decimal("2.40"),
            reason="Late correction",
            actor=None,
        )

    # when the earlier day's price changes while the later day settles
    settlement = run(lambda: daily_settlement_run(trading_date=later))
    assert settling.wait(timeout=WAIT_SECONDS)
    change = run(change_earlier)
    with connection.cursor() as cursor:
        for _ in range(200):  # Until the change waits for the day settlements' lock.
            cursor.execute(DAY_SETTLEMENTS_LOCK_WAITERS, DAY_SETTLEMENTS_LOCK)
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
        else:
            go_on.set()
            settlement.join(timeout=WAIT_SECONDS)
            change.join(timeout=WAIT_SECONDS)
            pytest.fail("the price change did not wait for the running settlement")
    go_on.set()
    settlement.join(timeout=WAIT_SECONDS)
    change.join(timeout=WAIT_SECONDS)

    # then it waited for the later day to settle, and was refused as out of order: the
    # earlier day keeps the price the later day settled after, and no row says otherwise
    assert not settlement.is_alive() and not change.is_alive()
    [error] = [item for item in outcome if not isinstance(item, RiskCycle)]
    assert isinstance(error, RiskError) and error.code == RiskErrorCode.DAY_OUT_OF_ORDER
    assert RiskCycle.objects.get(trading_date=later).status == RiskCycle.Status.SETTLED
    row = SettlementPrice.objects.get(instrument=future, trading_date=earlier)
    assert (row.price, row.reason) == (Decimal("2.50"), "Brokers")
    assert SettlementPrice.objects.filter(trading_date=earlier).count() == 1
    # The later day's only: its prices set, and its settlement.
    written = AuditEntry.objects.order_by("pk")[audits:]
    assert [(entry.action, entry.after["trading_date"]) for entry in written] == [
        ("settlement_price.set", later.isoformat()),
        ("risk.daily_settlement", later.isoformat()),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("party", ["short", "long"])
def test_a_physical_delivery_locks_the_gpu_hours_in_the_ledgers_order(
    postgres_only, sku, region, party
):
    from datetime import UTC, datetime, time

    from exchange.models import Instrument
    from exchange.services.capacity import capacity_register
    from exchange.services.listing import StripSpec, futures_list_strip
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.conftest import _account
    from tests.exchange.support import listing_month, place

    # given a physically settled future, a provider holding 2 GPUs of its month and a long
    # holding 1 GPU of it (registered to it by the provider)
    [future] = futures_list_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=1,
        spec=StripSpec(settlement=Instrument.Settlement.PHYSICAL),
    )
    provider = _account("northwind", "provider")
    long = _account("lumen", "startup")
    for holder, gpus in ((provider, 2), (long, 1)):
        capacity_register(
            provider=provider.organization,
            holder=holder.organization,
            cluster=f"nw-ashburn-{gpus}",
            sku=sku,
            region=region,
            starts_at=datetime.combine(future.delivery_start, time(0), tzinfo=UTC),
            ends_at=datetime.combine(future.delivery_end, time(0), tzinfo=UTC),
            gpus=gpus,
            interconnect="infiniband",
            contiguous_block_gpus=1,
        )
    # and a trader that joined after, so its cash account comes after those GPU-hours in the
    # ledger's order (the order every entry locks its accounts in); the provider sold 2 to
    # the long and 1 to the trader
    trader = _account("helix", "trading_firm")
    place(provider, future, "sell", 3, "2.50")
    place(long, future, "buy", 2, "2.50")
    place(trader, future, "buy", 1, "2.50")
    day = future.last_trading_day
    settlement_price_override(
        instrument=future, trading_date=day, price=Decimal("2.60"), reason="Brokers", actor=None
    )
    code = f"GPUH-{sku.code}-{region.code}-{future.delivery_start:%Y%m}"
    owner = provider if party == "short" else long
    gpu_hours = LedgerAccount.objects.get(code=f"trading:{owner.pk}:gpuh:{code}")
    trader_cash = LedgerAccount.objects.get(code=f"trading:{trader.pk}:cash:USD")
    assert gpu_hours.pk < trader_cash.pk
    holding = threading.Event()

    def work(index: int) -> None:
        if index == 0:
            # An entry moving those GPU-hours and the trader's cash, as the ledger posts it (a
            # resale trade of the month's hours between them, say): its accounts locked in id
            # order.
            with transaction.atomic():
                LedgerAccount.objects.select_for_update().get(pk=gpu_hours.pk)
                holding.set()
                assert _waits_for_a_lock()
                LedgerAccount.objects.select_for_update().get(pk=trader_cash.pk)
            return
        assert holding.wait(timeout=WAIT_SECONDS)
        daily_settlement_run(trading_date=day)

    # when the day's delivery settles while that entry holds the GPU-hours
    errors = run_threads(work, 2)

    # then neither deadlocked: the cycle waited for the entry, then delivered the provider's 2
    # contracts' hours to the first long in account order, the trader's contract cash-settled
    assert errors == []
    assert RiskCycle.objects.get(trading_date=day).status == RiskCycle.Status.SETTLED
    expiry = Entry.objects.get(idempotency_key=f"future-expiry:{future.pk}")
    assert expiry.metadata["delivered"] == {str(long.pk): 2, str(provider.pk): -2}
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_resale_listing_expires_without_deadlocking_with_its_matcher(
    postgres_only, futures, listing, buyer, seller
):
    from exchange.models import Instrument
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.support import place

    # given positions in the second month's future, settled on its last trading day, when the
    # resale listing's trading has ended too (the day before its block's term starts)
    future = futures[1]
    day = future.last_trading_day
    assert listing.last_trading_day <= day
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "buy", 2, "2.50")
    settlement_price_override(
        instrument=future, trading_date=day, price=Decimal("2.60"), reason="Brokers", actor=None
    )
    buyer_cash = LedgerAccount.objects.get(code=f"trading:{buyer.pk}:cash:USD")
    holding = threading.Event()

    def work(index: int) -> None:
        if index == 0:
            # A matcher's pass on the listing, as it runs (a cancel after the close, say): the
            # book's row lock, then the ledger accounts its entry moves (the buyer's cash).
            with transaction.atomic():
                Instrument.objects.select_for_update(no_key=True).get(pk=listing.pk)
                holding.set()
                assert _waits_for_a_lock()
                LedgerAccount.objects.select_for_update().get(pk=buyer_cash.pk)
            return
        assert holding.wait(timeout=WAIT_SECONDS)
        daily_settlement_run(trading_date=day)

    # when the day settles while that pass holds the listing
    errors = run_threads(work, 2)

    # then neither deadlocked: the cycle waited for the pass, then expired the listing
    assert errors == []
    assert RiskCycle.objects.get(trading_date=day).status == RiskCycle.Status.SETTLED
    assert Instrument.objects.get(pk=listing.pk).status == Instrument.Status.EXPIRED
    assert ledger_problems() == []
    connection.close()


def _waits_for_a_lock() -> bool:
    """Whether another session of the test database comes to wait for a lock (polled for up
    to ``WAIT_SECONDS``)."""
    with connection.cursor() as cursor:
        for _ in range(int(WAIT_SECONDS / 0.05)):
            # Statistics are read once per transaction unless the snapshot is cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return True
            time_module.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cured", ["before the locks", "under the locks"])
def test_a_cure_beside_a_liquidation_comes_wholly_before_or_wholly_after_it(
    postgres_only, futures, monkeypatch, cured
):
    from exchange import calendar
    from exchange.models import MarginCall
    from exchange.selectors.integrity import collateral_problems
    from exchange.services import risk_cycle
    from exchange.services.funding import deposit_test_funds
    from exchange.services.risk_cycle import account_liquidate, margin_call_review
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.conftest import _account
    from tests.exchange.ledger_figures import position
    from tests.exchange.support import place

    future, later = futures
    # given a long of 2 at 2.50 on $800 with a bid on the next month, called on a fall to
    # 2.10, 2 contracts bid by another account, and then $1000 deposited: a review cures it
    long = _account("lumen", "startup", funded=False)
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(_account("northwind", "provider"), future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    far_bid = place(long, later, "buy", 1, "0.10")
    day = calendar.business_days_before(future.last_trading_day, 5)
    for instrument, price in ((future, "2.10"), (later, "2.00")):
        settlement_price_override(
            instrument=instrument,
            trading_date=day,
            price=Decimal(price),
            reason="Brokers",
            actor=None,
        )
    daily_settlement_run(trading_date=day)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    place(_account("helix", "trading_firm"), future, "buy", 2, "2.05")
    deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)
    # and staff's liquidation of it, beside that review: the review runs once the liquidation
    # has checked the call (before its locks), or while it holds them (after its check there)
    checked, reviewed = threading.Event(), threading.Event()
    real_check = risk_cycle._call_to_liquidate

    def check(account, call_named, *, lock):
        real_check(account, call_named, lock=lock)
        if lock == (cured == "under the locks"):
            checked.set()
            if lock:
                assert _waits_for_a_lock()  # The review waits for the liquidation's commit.
            else:
                assert reviewed.wait(timeout=WAIT_SECONDS)

    monkeypatch.setattr(risk_cycle, "_call_to_liquidate", check)
    outcome: list[object] = []

    def work(index: int) -> None:
        if index == 0:
            try:
                outcome.append(account_liquidate(account=long, actor=None, reason="Call not met"))
            except RiskError as error:
                outcome.append(error.code)
            return
        assert checked.wait(timeout=WAIT_SECONDS)
        try:
            margin_call_review(call)
        finally:
            reviewed.set()

    # when both run at once
    errors = run_threads(work, 2)

    # then neither failed, and the liquidation was done whole or not at all: refused with the
    # account's orders working and its position kept, or done with them cancelled and sold
    assert errors == []
    far_bid.refresh_from_db()
    if cured == "before the locks":
        assert outcome == [RiskErrorCode.NO_OPEN_MARGIN_CALL]
        assert (far_bid.status, position(long, future.symbol)) == (Order.Status.OPEN, 2)
        assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.CURED
    else:
        [result] = outcome
        assert isinstance(result, dict) and [row["filled"] for row in result["orders"]] == [2]
        assert (far_bid.status, far_bid.done_reason) == (Order.Status.CANCELLED, "liquidation")
        assert position(long, future.symbol) == 0
        assert MarginCall.objects.get(pk=call.pk).status in (
            MarginCall.Status.CURED,
            MarginCall.Status.LIQUIDATED,
        )
    assert collateral_problems() == []
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_review_of_a_call_on_a_position_closed_today_waits_for_the_daily_cycle(
    postgres_only, future, monkeypatch
):
    from exchange import calendar
    from exchange.models import MarginCall
    from exchange.services import risk_cycle
    from exchange.services.funding import deposit_test_funds
    from exchange.services.risk_cycle import margin_call_review
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.conftest import _account
    from tests.exchange.ledger_figures import position
    from tests.exchange.support import place

    # given a long of 2 at 2.50 on $800, called after a fall to 2.10, that then closes its
    # position under the call at 2.05: flat, its margin back in cash, a loss in its cost memo
    # that the next day's settlement realizes (so the cycle settles its account, and locks
    # its cash), while a review locks no book for it
    long = _account("lumen", "startup", funded=False)
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(_account("northwind", "provider"), future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    next_day = calendar.business_days_before(future.last_trading_day, 4)
    for when, price in ((day, "2.10"), (next_day, "2.00")):
        settlement_price_override(
            instrument=future, trading_date=when, price=Decimal(price), reason="Brokers", actor=None
        )
    daily_settlement_run(trading_date=day)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    place(_account("helix", "trading_firm"), future, "buy", 2, "2.05")
    place(long, future, "sell", 2, "2.05")
    assert position(long, future.symbol) == 0
    # and a review (the beat's, or staff's) that starts once the next day's cycle has locked
    # the cash of the accounts it settles, and before it updates their calls
    cycle_holds_cash = threading.Event()
    real_check_prices = risk_cycle._check_prices

    def check_prices(trading_date, close):
        real_check_prices(trading_date, close)
        cycle_holds_cash.set()
        assert _waits_for_a_lock()  # The review waits for the cycle.

    monkeypatch.setattr(risk_cycle, "_check_prices", check_prices)

    def work(index: int) -> None:
        if index == 0:
            daily_settlement_run(trading_date=next_day)
        else:
            assert cycle_holds_cash.wait(timeout=WAIT_SECONDS)
            margin_call_review(call)

    # when the cycle and the review run at once
    errors = run_threads(work, 2)

    # then neither failed (they deadlocked: the review held the call and waited for the cash,
    # the cycle held the cash and waited for the call), and the cycle cured the flat account's
    # call, the review finding it cured
    assert errors == []
    assert RiskCycle.objects.get(trading_date=next_day).status == RiskCycle.Status.SETTLED
    call.refresh_from_db()
    assert call.status == MarginCall.Status.CURED
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_cure_during_a_reducing_orders_acceptance_waits_and_then_cancels_it(
    postgres_only, future, monkeypatch
):
    from exchange import calendar
    from exchange.models import MarginCall
    from exchange.services import orders
    from exchange.services.funding import deposit_test_funds
    from exchange.services.risk_cycle import margin_call_review
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.conftest import _account
    from tests.exchange.support import place

    # given a long of 2 at 2.50 on $800, called after a fall to 2.10, and then cash that
    # cures the call at the next review
    long = _account("lumen", "startup", funded=False)
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(_account("northwind", "provider"), future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    settlement_price_override(
        instrument=future, trading_date=day, price=Decimal("2.10"), reason="Brokers", actor=None
    )
    daily_settlement_run(trading_date=day)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    deposit_test_funds(account=long, amount=Decimal("5000"), actor=None)
    # and a reducing offer of the long's in the middle of its acceptance transaction (the
    # call found open there) when that review starts
    accepting = threading.Event()
    real_check = orders._check_reduces

    def check_reduces(account, instrument, request, *, liquidation=False):
        real_check(account, instrument, request, liquidation=liquidation)
        if connection.in_atomic_block:  # Again in the transaction (first before it).
            accepting.set()
            assert _waits_for_a_lock()  # The review waits for the offer's commit.

    monkeypatch.setattr(orders, "_check_reduces", check_reduces)
    placed: list[Order] = []

    def work(index: int) -> None:
        if index == 0:
            placed.append(place(long, future, "sell", 2, "2.60"))
        else:
            assert accepting.wait(timeout=WAIT_SECONDS)
            margin_call_review(call)

    # when both run at once
    errors = run_threads(work, 2)

    # then the review cured the call after the offer committed, and its cancel of the orders
    # placed under the call found the offer: nothing works on a reducing order's terms
    assert errors == []
    call.refresh_from_db()
    assert call.status == MarginCall.Status.CURED
    [offer] = placed
    offer.refresh_from_db()
    assert offer.reduce_only
    assert (offer.status, offer.done_reason) == (Order.Status.CANCELLED, "margin_call_cured")
    assert ledger_problems() == []
    connection.close()
