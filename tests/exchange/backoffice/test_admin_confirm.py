"""The admin actions that stop trading, cancel customers' orders, move money or liquidate ask
first: choosing the action shows what will happen to each selected object and changes nothing;
the confirmation needs a reason where the audit log records one; only the confirmed post acts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse

from exchange.models import AuditEntry, Instrument, MarginCall, Order, SettlementPrice, Withdrawal
from exchange.services.funding import deposit_test_funds, withdrawal_request
from tests.exchange.conftest import _account
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _choose(client, changelist: str, action: str, pks: list[int], **extra):
    return client.post(
        reverse(f"admin:exchange_{changelist}_changelist"),
        {"action": action, "_selected_action": pks, **extra},
    )


def test_choosing_halt_shows_the_consequence_and_changes_nothing(admin_client, future, buyer):
    place(buyer, future, "buy", 2, "2.40")

    response = _choose(admin_client, "instrument", "halt", [future.pk])

    page = response.content.decode()
    assert response.status_code == 200
    assert "Halt trading" in page and "(ORDER_INSTRUMENT_HALTED)" in page  # As the API says.
    assert future.symbol in page and "Resting orders" in page
    assert 'name="reason"' in page and 'name="confirm"' in page
    assert f'value="{future.pk}"' in page
    future.refresh_from_db()
    assert future.status == Instrument.Status.ACTIVE
    assert not AuditEntry.objects.filter(action="instrument.halt").exists()


def test_a_confirmation_without_a_reason_is_refused_and_changes_nothing(admin_client, future):
    response = _choose(admin_client, "instrument", "halt", [future.pk], confirm="1", reason=" ")

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    future.refresh_from_db()
    assert future.status == Instrument.Status.ACTIVE


def test_choosing_cancel_lists_the_orders_then_the_confirmation_cancels(
    admin_client, future, buyer
):
    order = place(buyer, future, "buy", 3, "2.40")

    page = _choose(admin_client, "order", "cancel", [order.pk]).content.decode()

    assert f"#{order.pk}" in page and "Open (contracts)" in page
    assert Order.objects.get(pk=order.pk).status == Order.Status.OPEN

    _choose(admin_client, "order", "cancel", [order.pk], confirm="1", reason="fat finger")

    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED
    assert AuditEntry.objects.get(action="order.cancel").reason == "fat finger"


def test_the_cancel_confirmation_shows_what_is_still_open_of_each_order(
    admin_client, future, seller, buyer
):
    from tests.exchange.matcher.test_reduce_only import _cured, _long_under_a_call

    # given an order of 10 of which the matcher cut 4 (a reducing offer beyond what its
    # position leaves to close once an ordinary offer of 4 rests beside it): 6 still open
    long, call = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    _cured(call)
    place(long, future, "sell", 4, "2.55")
    place(buyer, future, "buy", 1, "2.00")  # Rests: a command that could trade.
    reducing.refresh_from_db()
    assert (reducing.status, reducing.open_quantity) == (Order.Status.OPEN, 6)
    assert (reducing.quantity, reducing.cancelled_quantity) == (10, 4)

    # when staff choose to cancel it
    response = _choose(admin_client, "order", "cancel", [reducing.pk])

    # then the confirmation shows the 6 that the cancel takes off the book
    row = next(row for row in response.context["rows"] if row[0] == f"#{reducing.pk}")
    assert row[5] == 6
    assert "Open (contracts)" in response.content.decode()
    # and the orders' list shows the cut beside what filled
    listed = admin_client.get(reverse("admin:exchange_order_changelist"))
    assert "cancelled_quantity" in listed.context["cl"].list_display


def test_withdrawal_approval_asks_first_and_needs_no_reason(admin_client, buyer, settings):
    settings.STRIPE_SECRET_KEY = ""
    withdrawal = withdrawal_request(account=buyer, amount=Decimal("125"), actor=None)

    page = _choose(admin_client, "withdrawal", "approve", [withdrawal.pk]).content.decode()

    assert "cannot be undone" in page and "125" in page
    assert 'name="reason"' not in page
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == Withdrawal.Status.REQUESTED

    _choose(admin_client, "withdrawal", "approve", [withdrawal.pk], confirm="1")

    assert Withdrawal.objects.get(pk=withdrawal.pk).status == Withdrawal.Status.PAID


def test_withdrawal_review_names_the_api_key_that_asked(admin_client, buyer):
    from exchange.services.api_keys import api_key_create

    # given a withdrawal asked for with a key that has no user (made on the command line)
    key = api_key_create(
        organization=buyer.organization, name="treasury bot", scopes=["transfer"], actor=None
    ).key
    withdrawal = withdrawal_request(account=buyer, amount=Decimal("125"), actor=None, api_key=key)

    # then the list and the confirmation say which key asked
    listed = admin_client.get(reverse("admin:exchange_withdrawal_changelist")).content.decode()
    page = _choose(admin_client, "withdrawal", "approve", [withdrawal.pk]).content.decode()
    assert f"API key {key.prefix}" in listed
    assert f"API key {key.prefix}" in page


def test_withdrawal_rejection_shows_the_customer_the_reason(admin_client, buyer):
    withdrawal = withdrawal_request(account=buyer, amount=Decimal("80"), actor=None)

    refused = _choose(admin_client, "withdrawal", "reject", [withdrawal.pk], confirm="1")
    assert refused.status_code == 400
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == Withdrawal.Status.REQUESTED

    _choose(
        admin_client,
        "withdrawal",
        "reject",
        [withdrawal.pk],
        confirm="1",
        reason="bank details do not match",
    )

    rejected = Withdrawal.objects.get(pk=withdrawal.pk)
    assert (rejected.status, rejected.reason) == (
        Withdrawal.Status.REJECTED,
        "bank details do not match",
    )


@pytest.mark.usefixtures("calendar_ahead")  # It settles a day after today.
def test_choosing_liquidate_shows_the_positions_that_would_be_closed(
    admin_client, future, seller, buyer
):
    poor = _account("sprout", "startup", funded=False)
    deposit_test_funds(account=poor, amount=Decimal("4000"), actor=None)
    place(seller, future, "sell", 10, "2.50")
    place(poor, future, "buy", 10, "2.50")
    day = future.last_trading_day - timedelta(days=3)
    SettlementPrice.objects.create(
        instrument=future, trading_date=day, price=Decimal("2.10"), source="override"
    )
    call_command("settle_day", "--date", day.isoformat())
    call = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)

    page = _choose(admin_client, "margincall", "liquidate", [call.pk]).content.decode()

    assert "Liquidate accounts" in page and "cannot be undone" in page
    assert f"{future.symbol} +10" in page
    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.OPEN
    assert not AuditEntry.objects.filter(action="account.liquidate").exists()

    place(buyer, future, "buy", 10, "2.05")
    _choose(admin_client, "margincall", "liquidate", [call.pk], confirm="1", reason="unpaid")

    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.LIQUIDATED
    entry = AuditEntry.objects.get(action="account.liquidate")
    assert entry.before["positions"] == {future.symbol: 10}
    assert entry.reason.endswith("unpaid")
