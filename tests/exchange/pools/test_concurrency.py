"""A sponsor's actions on the pool's contracts at the same moment (PostgreSQL only: real row
locks): what one sells or moves, the other no longer counts as free."""

import contextlib
import threading
from decimal import Decimal

import pytest
from django.db import connection

from exchange.errors import PoolError, PoolErrorCode
from exchange.models import LIVE_STATUSES, Order
from exchange.services import pools
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import position_account
from ledger.selectors import ledger_problems
from tests.exchange.matcher.test_concurrency import run_threads
from tests.exchange.pools.test_pool_services import _round_with_an_unfunded_member

# How long a check that passed waits for the other action's check. Without the pool's row lock
# both pass and meet here; with it the second check waits for the first action to commit, and
# the first goes on alone once this runs out.
CHECKS_MEET_SECONDS = 2


def _offer(pool, future, actor) -> None:
    pools.pool_offer(pool=pool, instrument=future, quantity=10, price=Decimal("2.60"), actor=actor)


def _reallocate(pool, future, actor, member) -> None:
    pools.pool_reallocate(member=member, instrument=future, quantity=10, actor=actor)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["offer", "reallocate"])
def test_two_actions_on_the_pools_contracts_at_once_use_them_once(
    postgres_only, pool, members, future, seller, sponsor_user, monkeypatch, second
):
    # given a pool holding the 10 contracts of a member it could not fund, which then funds
    # itself (so a reallocation to it can set their margin aside)
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    cirrus = members[2]
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    held = position_account(pool.account, future.symbol).balance
    assert held == 10
    # and two actions of the sponsor (a double-clicked offer, or an offer and a reallocation)
    # that each find the 10 contracts free before the other has written anything
    checks_meet = threading.Barrier(2)
    real_check_free = pools._check_free

    def check_free(*args):
        real_check_free(*args)
        with contextlib.suppress(threading.BrokenBarrierError):
            checks_meet.wait(timeout=CHECKS_MEET_SECONDS)

    monkeypatch.setattr(pools, "_check_free", check_free)
    refusals: list[str] = []

    def work(index: int) -> None:
        try:
            if index == 0 or second == "offer":
                _offer(pool, future, sponsor_user)
            else:
                _reallocate(pool, future, sponsor_user, cirrus)
        except PoolError as error:
            refusals.append(error.code)

    # when both run at once
    errors = run_threads(work, 2)

    # then one is refused: the pool offers and moves no more than the 10 it holds (it offered
    # 20, or moved 10 away while offering them, and a fill would have left it short)
    assert errors == []
    assert refusals == [PoolErrorCode.NOT_ENOUGH_HELD]
    offered = sum(
        order.open_quantity
        for order in Order.objects.filter(
            account=pool.account, side="sell", status__in=LIVE_STATUSES
        )
    )
    moved = held - position_account(pool.account, future.symbol).balance
    assert offered + moved == held
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_reallocation_while_the_member_places_an_order_waits_for_it(
    postgres_only, pool, members, future, seller, sponsor_user, monkeypatch
):
    from exchange.services import collateral
    from tests.exchange.support import place

    # given a pool holding 10 contracts for a member that has since funded itself
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    cirrus = members[2]
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    # and an order of the member that has its collateral held (the member's cash locked) when
    # the sponsor's reallocation to it has read the member
    order_holds, real_holds_place = threading.Event(), collateral.holds_place
    real_check_free = pools._check_free

    def holds_place(*args, **kwargs):
        real_holds_place(*args, **kwargs)
        order_holds.set()

    def check_free(*args):
        assert order_holds.wait(timeout=30)
        real_check_free(*args)

    monkeypatch.setattr(collateral, "holds_place", holds_place)
    monkeypatch.setattr(pools, "_check_free", check_free)

    def work(index: int) -> None:
        if index == 0:
            place(cirrus.account, future, "buy", 1, "2.00")
        else:
            _reallocate(pool, future, sponsor_user, cirrus)

    # when both run at once
    errors = run_threads(work, 2)

    # then both went through (the reallocation had locked the member's account row, which the
    # order's commit waited for while holding the cash the reallocation posts to: a deadlock)
    assert errors == []
    assert position_account(cirrus.account, future.symbol).balance == 10
    assert Order.objects.filter(account=cirrus.account, status=Order.Status.OPEN).count() == 1
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_round_allocated_while_a_member_places_an_order_waits_for_it(
    postgres_only, pool, members, future, seller, sponsor_user, monkeypatch
):
    from exchange.models import PoolAllocation, PoolRound
    from exchange.services import collateral
    from tests.exchange.pools.test_pool_services import _submit
    from tests.exchange.support import place

    # given a round whose tier order bought the 10 contracts a member asked for
    ada = members[0]
    _submit(ada, future, gpus=10)
    place(seller, future, "sell", 10, "2.45")
    round_ = pools.pool_cut_off(pool=pool, actor=sponsor_user)
    # and an order of the member that has its collateral held (the member's cash locked) and
    # commits once the round's allocation has read the member's demand, which then comes to
    # settle it
    order_holds, real_holds_place = threading.Event(), collateral.holds_place
    demand_read, real_settle = threading.Event(), pools._settle

    def holds_place(*args, **kwargs):
        real_holds_place(*args, **kwargs)
        order_holds.set()
        assert demand_read.wait(timeout=30)

    def settle(*args):
        demand_read.set()
        assert order_holds.wait(timeout=30)
        return real_settle(*args)

    monkeypatch.setattr(collateral, "holds_place", holds_place)
    monkeypatch.setattr(pools, "_settle", settle)

    def work(index: int) -> None:
        if index == 0:
            place(ada.account, future, "buy", 1, "2.00")
        else:
            pools.pool_round_close(round_=round_, actor=sponsor_user)

    # when both run at once
    errors = run_threads(work, 2)

    # then both went through (the allocation had locked the member's account row with its
    # demand, which the order's commit waited for while holding the cash the allocation takes
    # the margin from: a deadlock)
    assert errors == []
    assert PoolRound.objects.get(pk=round_.pk).status == PoolRound.Status.ALLOCATED
    assert PoolAllocation.objects.get(member=ada).status == PoolAllocation.Status.SETTLED
    assert position_account(ada.account, future.symbol).balance == 10
    assert Order.objects.filter(account=ada.account, status=Order.Status.OPEN).count() == 1
    assert ledger_problems() == []
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_demand_submitted_during_a_cut_off_waits_for_it(
    postgres_only, pool, members, futures, sponsor_user
):
    from django.db import connections

    from tests.exchange.pools.test_pool_services import _submit

    # given ada's and bolt's open demand for the front month, and a cut-off that has locked
    # the pool and is about to read the demand it aggregates while bolt submits demand for the
    # next month (which locks bolt's member row, then waits for the pool's)
    future, later = futures[0], futures[1]
    _submit(members[0], future)
    _submit(members[1], future)
    pool_locked, submitted = threading.Event(), threading.Event()

    def cut_off_pauses_before_its_demand(execute, sql, params, many, context):
        if "exchange_pooldemand" in sql and "FOR UPDATE" in sql and not pool_locked.is_set():
            pool_locked.set()
            submitted.wait(timeout=1)  # Bolt's submit is under way (blocked on the pool).
        return execute(sql, params, many, context)

    outcomes: dict[str, object] = {}

    def work(index: int) -> None:
        if index == 0:
            with connections["default"].execute_wrapper(cut_off_pauses_before_its_demand):
                outcomes["round"] = pools.pool_cut_off(pool=pool, actor=sponsor_user)
        else:
            pool_locked.wait(timeout=10)
            threading.Timer(0.3, submitted.set).start()
            outcomes["demand"] = _submit(members[1], later)

    # when both run
    errors = run_threads(work, 2)

    # then neither fails: the cut-off locks only the demand rows it aggregates, not the
    # members joined to them, so it never waits on the member row the submit holds while the
    # submit waits on the pool row it holds (on PostgreSQL, a deadlock that failed one)
    assert errors == []
    assert outcomes["round"] is not None and outcomes["demand"] is not None


@pytest.mark.django_db(transaction=True)
def test_two_repayments_of_the_whole_credit_at_once_repay_it_once(
    postgres_only, pool, members, future, seller, monkeypatch
):
    from tests.exchange.pools.test_pool_services import _submit
    from tests.exchange.support import place

    # given cirrus borrowed from the pool for an allocation, and has the cash to repay it twice
    cirrus = members[2]
    _submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.45")
    pools.pool_round_close(round_=pools.pool_cut_off(pool=pool, actor=None), actor=None)
    owed = pools.credit_outstanding(cirrus)
    assert owed > 0
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    # and two repayments of all of it (a double-click) that each find it owed before the other
    # has written anything
    checks_meet = threading.Barrier(2)
    real_outstanding = pools.credit_outstanding

    def credit_outstanding(member):
        found = real_outstanding(member)
        with contextlib.suppress(threading.BrokenBarrierError):
            checks_meet.wait(timeout=CHECKS_MEET_SECONDS)
        return found

    monkeypatch.setattr(pools, "credit_outstanding", credit_outstanding)
    refusals: list[PoolError] = []

    def work(_index: int) -> None:
        try:
            pools.pool_credit_repay(member=cirrus, amount=Decimal(owed) / 10**6, actor=None)
        except PoolError as error:
            refusals.append(error)

    # when both run at once
    errors = run_threads(work, 2)

    # then the second is refused for more than is owed (nothing is), not for want of cash
    assert errors == []
    [refusal] = refusals
    assert refusal.code == PoolErrorCode.AMOUNT_INVALID
    assert refusal.message.endswith("owes the pool 0.00 USD.")
    assert real_outstanding(cirrus) == 0
    assert ledger_problems() == []
    connection.close()
