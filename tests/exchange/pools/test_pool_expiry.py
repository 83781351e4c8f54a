"""A round still buying when its future stops trading closes itself: the fills go to the
members by the pool's rule before the final settlement settles them, what rests is cancelled,
and the round says why it closed (its API answer, the sponsor's page, the audit row).

Until 2026-12-07 the daily settlement expired the future first: the pool's position was
settled with the pool, the round then allocated, found nothing in the pool's account, and left
every member's lots ``unfunded``, with no contracts in the pool to reallocate."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from exchange import calendar, tasks
from exchange.matcher.runtime import Matcher
from exchange.models import AuditEntry, Instrument, Order, PoolAllocation, PoolRound
from exchange.services.api_keys import api_key_create
from exchange.services.ledger_accounts import cash_account, margin_account, position_account
from exchange.services.pools import (
    demand_submit,
    pool_cut_off,
    pool_round_close,
    pool_rounds_close_expired,
    pools_run_due,
)
from ledger.models import Entry, Hold
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _submit(member, instrument, gpus):
    demand_submit(
        member=member,
        sku=instrument.sku,
        region=instrument.region,
        months=[instrument.delivery_start],
        gpus=gpus,
        limit_price=Decimal("2.50"),
        actor=None,
    )


def _round_partly_filled(pool, members, future, seller, sponsor_user) -> PoolRound:
    """ada asks 6 contracts, bolt 4; 5 of the tier's 10 fill at 2.45 and 5 rest. The round
    closes by its time only after the future's close (it was cut off within its length of
    it), as the test moves the clock there."""
    ada, bolt, _ = members
    _submit(ada, future, 6)
    _submit(bolt, future, 4)
    place(seller, future, "sell", 5, "2.45")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    ends = calendar.trading_ends_at(future.last_trading_day)
    PoolRound.objects.filter(pk=round_.pk).update(closes_at=ends + timedelta(minutes=30))
    round_.refresh_from_db()
    order = round_.orders.get().order
    if order.status != Order.Status.NEW:  # The external matcher fills it later.
        assert (order.status, order.filled_quantity) == (Order.Status.PARTIALLY_FILLED, 5)
    return round_


def _postings(key: str) -> dict[str, int]:
    entry = Entry.objects.get(idempotency_key=key)
    return {posting.account.code: posting.amount for posting in entry.postings.all()}


def _assert_allocated_on_expiry(round_, members, future):
    ada, bolt, _ = members
    round_.refresh_from_db()
    assert (round_.status, round_.close_reason) == ("allocated", "instrument_expired")
    assert future.symbol in round_.close_message
    allocations = PoolAllocation.objects.filter(round=round_)
    rows = {a.member_id: (a.status, a.quantity) for a in allocations}
    assert rows == {ada.pk: ("settled", 3), bolt.pk: ("settled", 2)}  # Pro rata, 6:4 of 5.
    audit = AuditEntry.objects.get(action="pool.allocate", target_id=str(round_.pk))
    assert audit.after["close_reason"] == "instrument_expired"
    assert audit.after["tiers"][0]["settled"] == 5
    order = Order.objects.get(pool_order__round=round_)
    assert (order.status, order.filled_quantity) == (Order.Status.CANCELLED, 5)


@pytest.mark.usefixtures("calendar_ahead")
def test_the_expiry_run_closes_a_working_round_and_its_members_are_settled(
    pool, members, future, seller, sponsor_user
):
    # given a round working on the future's last trading day, half filled
    ada, bolt, _ = members
    round_ = _round_partly_filled(pool, members, future, seller, sponsor_user)

    # when the daily settlement task runs the future's last trading day
    done = tasks.risk_daily_settlement.delay(future.last_trading_day.isoformat()).get()

    # then the round closed itself before the expiry and allocated the fills by its rule
    assert done["status"] == "settled"
    assert Instrument.objects.get(pk=future.pk).status == Instrument.Status.EXPIRED
    _assert_allocated_on_expiry(round_, members, future)
    # and the final settlement settled the members' contracts, not the pool's
    final = _postings(f"future-expiry:{future.pk}")
    assert final[f"trading:{ada.account_id}:position:{future.symbol}"] == -3
    assert final[f"trading:{bolt.account_id}:position:{future.symbol}"] == -2
    assert f"trading:{pool.account_id}:position:{future.symbol}" not in final
    for account in (pool.account, ada.account, bolt.account):
        assert position_account(account, future.symbol).balance == 0
        assert margin_account(account, future.symbol).balance == 0
    # and the unfilled rest released the pool's collateral
    assert not Hold.objects.filter(
        status=Hold.Status.PENDING, account=cash_account(pool.account)
    ).exists()
    assert pools_run_due(now=round_.closes_at + timedelta(seconds=1))["closed"] == 0
    call_command("ledger_check")


def test_the_scheduler_closes_a_round_once_its_future_stops_trading(
    pool, members, future, seller, sponsor_user
):
    ada, bolt, _ = members
    round_ = _round_partly_filled(pool, members, future, seller, sponsor_user)
    ends = calendar.trading_ends_at(future.last_trading_day)

    # before the close the round works on; from the close (before any settlement) it closes
    assert pools_run_due(now=ends - timedelta(seconds=1))["closed"] == 0
    assert PoolRound.objects.get(pk=round_.pk).status == "working"
    assert pools_run_due(now=ends) == {"cut_off": 0, "closed": 1, "allocated": 1}

    _assert_allocated_on_expiry(round_, members, future)
    assert position_account(ada.account, future.symbol).balance == 3
    assert position_account(bolt.account, future.symbol).balance == 2
    assert position_account(pool.account, future.symbol).balance == 0
    call_command("ledger_check")


@pytest.mark.usefixtures("calendar_ahead")
def test_with_an_external_matcher_the_expiry_run_allocates_before_the_cancel_is_processed(
    pool, members, future, seller, sponsor_user, external_matcher
):
    # given a round whose tier order the matcher half filled
    round_ = _round_partly_filled(pool, members, future, seller, sponsor_user)
    matcher = Matcher()
    matcher.process_pending()

    # when the expiry run closes it, its cancel still waiting for the matcher: trading has
    # ended, so no fill can come to the order any more and the round allocates at once
    tasks.risk_daily_settlement.delay(future.last_trading_day.isoformat()).get()
    round_.refresh_from_db()
    assert (round_.status, round_.close_reason) == ("allocated", "instrument_expired")
    assert Order.objects.get(pool_order__round=round_).status == Order.Status.PARTIALLY_FILLED

    # then the matcher cancels the rest
    matcher.process_pending()
    _assert_allocated_on_expiry(round_, members, future)
    call_command("ledger_check")


def test_a_round_on_a_future_still_trading_keeps_working(pool, members, futures, sponsor_user):
    _submit(members[0], futures[1], 3)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    ends = calendar.trading_ends_at(futures[0].last_trading_day)

    assert round_.closes_at < ends
    assert pools_run_due(now=round_.closes_at - timedelta(seconds=1))["closed"] == 0

    round_.refresh_from_db()
    assert (round_.status, round_.close_reason, round_.close_message) == ("working", "", "")


@pytest.mark.parametrize(
    ("by", "reason"), [("sponsor", "sponsor"), ("schedule", "scheduled"), ("staff", "staff")]
)
def test_every_close_says_why(pool, members, future, sponsor_user, by, reason, django_user_model):
    from exchange.backoffice.roles import Role
    from tests.exchange.support import staff_user

    _submit(members[0], future, 3)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    if by == "sponsor":
        pool_round_close(round_=round_, actor=sponsor_user)
    elif by == "staff":
        desk = staff_user("ops", Role.OPERATIONS)
        pool_round_close(round_=round_, actor=desk, reason="instrument halted")
    else:
        pools_run_due(now=round_.closes_at)

    round_.refresh_from_db()
    assert (round_.status, round_.close_reason) == ("allocated", reason)
    assert round_.close_message


def test_the_close_reason_is_in_the_rounds_api_answer_and_on_the_sponsors_page(
    pool, members, future, seller, sponsor, sponsor_user, client
):
    round_ = _round_partly_filled(pool, members, future, seller, sponsor_user)
    pools_run_due(now=calendar.trading_ends_at(future.last_trading_day))
    round_.refresh_from_db()

    token = api_key_create(organization=sponsor, name="bot", scopes=["read"]).token
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    answer = api.get(f"/api/v1/pools/{pool.pk}/rounds/{round_.pk}/").json()
    listed = api.get(f"/api/v1/pools/{pool.pk}/rounds/").json()["results"][0]
    client.force_login(sponsor_user)
    page = client.get(reverse("web:pool", args=[pool.pk])).content.decode()

    for row in (answer, listed):
        assert (row["close_reason"], row["close_message"]) == (
            "instrument_expired",
            round_.close_message,
        )
    assert f"Closed: {round_.close_message}" in page


def test_a_day_settled_with_an_earlier_close_closes_the_round_before_its_expiry(
    pool, members, future, seller, sponsor_user, monkeypatch
):
    """Staff settle the future's last trading day with a close two hours before the standard
    one, an hour before the standard close: the run expires the day's futures, so the round
    on it closes first, though by the standard close the future still trades."""
    from exchange.services import settlement_prices
    from exchange.services.risk_cycle import daily_settlement_run

    ada, bolt, _ = members
    round_ = _round_partly_filled(pool, members, future, seller, sponsor_user)
    ends = calendar.trading_ends_at(future.last_trading_day)
    monkeypatch.setattr(settlement_prices, "now", lambda: ends - timedelta(hours=1))

    daily_settlement_run(trading_date=future.last_trading_day, close=ends - timedelta(hours=2))

    assert Instrument.objects.get(pk=future.pk).status == Instrument.Status.EXPIRED
    _assert_allocated_on_expiry(round_, members, future)
    final = _postings(f"future-expiry:{future.pk}")
    assert final[f"trading:{ada.account_id}:position:{future.symbol}"] == -3
    assert final[f"trading:{bolt.account_id}:position:{future.symbol}"] == -2
    call_command("ledger_check")


@pytest.mark.usefixtures("calendar_ahead")
def test_with_an_external_matcher_a_round_on_two_months_allocates_the_expiring_one_first(
    pool, members, futures, seller, sponsor_user, external_matcher
):
    """A round buying two months whose later month's cancel still waits for the matcher when
    the first month expires: the expiring month's fills go to the members before its final
    settlement, the later month's once its cancel is processed. Until 2026-12-07 the round
    waited whole for the cancel, the final settlement settled the expiring month with the
    pool, and its members' lots were left unfunded."""
    ada, bolt, _ = members
    front, later = futures
    for instrument in (front, later):
        _submit(ada, instrument, 6)
        _submit(bolt, instrument, 4)
        place(seller, instrument, "sell", 5, "2.45")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    matcher = Matcher()
    matcher.process_pending()  # Each month's tier half filled, the rest resting.
    closed = calendar.trading_ends_at(front.last_trading_day)

    # when the front month's daily settlement closes the round before it expires the front
    # month (as risk_cycle calls it, with the day it settles), the cancels still waiting
    pool_rounds_close_expired(
        now=closed + timedelta(minutes=10), expiring_through=front.last_trading_day
    )

    # then the front month's fills are the members' already, the later month's wait
    round_.refresh_from_db()
    assert (round_.status, round_.close_reason) == ("working", "instrument_expired")
    rows = {
        (a.member_id, a.instrument_id): (a.status, a.quantity)
        for a in PoolAllocation.objects.filter(round=round_)
    }
    assert rows == {(ada.pk, front.pk): ("settled", 3), (bolt.pk, front.pk): ("settled", 2)}
    assert position_account(ada.account, front.symbol).balance == 3
    assert position_account(pool.account, front.symbol).balance == 0
    assert position_account(pool.account, later.symbol).balance == 5
    partial = AuditEntry.objects.get(action="pool.allocate_expiring", target_id=str(round_.pk))
    assert [tier["instrument"] for tier in partial.after["tiers"]] == [front.symbol]

    # and once the matcher has cancelled the rest, the later month is allocated too
    matcher.process_pending()
    pools_run_due(now=closed + timedelta(hours=1))
    round_.refresh_from_db()
    assert round_.status == "allocated"
    rows = {
        (a.member_id, a.instrument_id): (a.status, a.quantity)
        for a in PoolAllocation.objects.filter(round=round_)
    }
    assert rows[(ada.pk, later.pk)] == ("settled", 3)
    assert rows[(bolt.pk, later.pk)] == ("settled", 2)
    assert position_account(ada.account, later.symbol).balance == 3
    assert position_account(pool.account, later.symbol).balance == 0
    call_command("ledger_check")
