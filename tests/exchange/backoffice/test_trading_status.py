"""Halt and resume trading per instrument from the back office: a confirmation page asks for a
reason, only a POST with one acts, every change is audited, and the order path and the matcher
refuse new orders while the instrument is halted."""

import pytest
from django.urls import reverse

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher.runtime import Matcher
from exchange.models import AuditEntry, Instrument, Order, Trade
from exchange.services.orders import order_cancel
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _url(instrument, change):
    return reverse("backoffice:instrument_status", args=[instrument.pk, change])


def _status(instrument) -> str:
    return Instrument.objects.get(pk=instrument.pk).status


def _status_audits():
    return AuditEntry.objects.filter(action__in=["instrument.halted", "instrument.active"])


def test_the_list_shows_each_status_with_its_action(client, operations, futures):
    halted = futures[1]
    client.force_login(operations)
    client.post(_url(halted, "halt"), {"reason": "feed outage"})

    response = client.get(reverse("backoffice:instruments"))

    page = response.content.decode()
    assert response.status_code == 200
    assert _url(futures[0], "halt") in page
    assert _url(halted, "resume") in page
    assert _url(halted, "halt") not in page
    only_halted = client.get(reverse("backoffice:instruments"), {"status": "halted"})
    assert [i.symbol for i in only_halted.context["page"]] == [halted.symbol]
    by_symbol = client.get(reverse("backoffice:instruments"), {"symbol": futures[0].symbol[-6:]})
    assert futures[0].symbol in {i.symbol for i in by_symbol.context["page"]}


@pytest.mark.parametrize(
    "filters", [{"status": "suspended"}, {"kind": "swap", "symbol": "H100"}, {"symbol": "H" * 65}]
)
def test_a_refused_filter_lists_no_instrument_not_every_one(client, operations, futures, filters):
    client.force_login(operations)

    response = client.get(reverse("backoffice:instruments"), filters)

    assert response.status_code == 200
    assert response.context["form"].errors
    assert list(response.context["page"]) == []
    page = response.content.decode()
    assert "No instruments match." in page
    assert all(future.symbol not in page for future in futures)


def test_a_get_only_asks_for_confirmation(client, operations, future, buyer):
    place(buyer, future, "buy", 2, "2.45")
    client.force_login(operations)

    response = client.get(_url(future, "halt"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Confirm: halt trading in" in page
    assert '<label for="id_reason">Reason</label>' in page
    assert response.context["resting_orders"] == 1
    assert _status(future) == Instrument.Status.ACTIVE
    assert not _status_audits().exists()


def test_halting_a_future_says_its_options_halt_with_it(client, operations, future, call):
    client.force_login(operations)

    future_page = client.get(_url(future, "halt")).content.decode()
    option_page = client.get(_url(call, "halt")).content.decode()

    assert "Its options are halted with it" in future_page
    assert "Its options are halted with it" not in option_page


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_post_without_a_reason_is_refused_next_to_the_field(client, operations, future, reason):
    client.force_login(operations)

    response = client.post(_url(future, "halt"), {"reason": reason})

    assert response.status_code == 400
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert 'id="id_reason_error"' in response.content.decode()
    assert _status(future) == Instrument.Status.ACTIVE
    assert not _status_audits().exists()


def test_halt_then_resume_is_audited_and_gates_new_orders(
    client, operations, future, buyer, seller
):
    # given a bid resting on the book
    bid = place(buyer, future, "buy", 3, "2.45")
    client.force_login(operations)
    confirmation = client.get(_url(future, "halt"))

    # when operations halt the instrument with a reason
    response = client.post(_url(future, "halt"), {"reason": "Exchange feed incident 42"})

    # then it is halted, audited with who, before/after and why
    assert response.status_code == 302
    assert _status(future) == Instrument.Status.HALTED
    entry = AuditEntry.objects.get(action="instrument.halted")
    assert (entry.actor, entry.actor_label) == (operations, "olivia")
    assert (entry.target_type, entry.target_id) == ("Instrument", str(future.pk))
    assert (entry.before, entry.after) == ({"status": "active"}, {"status": "halted"})
    assert entry.reason == "Exchange feed incident 42"
    assert "halted" in client.get(response["Location"]).content.decode()

    # and a new order is refused with the named code, while the resting bid stays
    with pytest.raises(OrderRejected) as refused:
        place(seller, future, "sell", 3, "2.45")
    assert refused.value.code == OrderRejectCode.INSTRUMENT_HALTED
    # ...the code the back office's pages name
    for page in (client.get(reverse("backoffice:instruments")), confirmation):
        assert f"<code>{refused.value.code}</code>" in page.content.decode()
    assert Order.objects.get(pk=bid.pk).status == Order.Status.OPEN
    assert not Trade.objects.exists()

    # when they resume it
    client.post(_url(future, "resume"), {"reason": "Feed restored"})

    # then orders are accepted again and trade against the resting bid
    assert _status(future) == Instrument.Status.ACTIVE
    resumed = AuditEntry.objects.get(action="instrument.active")
    assert (resumed.before, resumed.after, resumed.reason) == (
        {"status": "halted"},
        {"status": "active"},
        "Feed restored",
    )
    ask = place(seller, future, "sell", 3, "2.45")
    assert Order.objects.get(pk=ask.pk).status == Order.Status.FILLED
    assert Trade.objects.get().quantity == 3


def test_resting_orders_can_still_be_cancelled_while_halted(client, operations, future, buyer):
    bid = place(buyer, future, "buy", 3, "2.45")
    client.force_login(operations)
    client.post(_url(future, "halt"), {"reason": "incident"})

    cancelled = order_cancel(order=Order.objects.get(pk=bid.pk))

    assert cancelled.status == Order.Status.CANCELLED


def test_an_order_accepted_before_the_halt_is_rejected_by_the_matcher(
    client, operations, future, buyer, external_matcher
):
    order = place(buyer, future, "buy", 5, "2.45")
    client.force_login(operations)

    client.post(_url(future, "halt"), {"reason": "incident"})
    Matcher().process_pending()

    order = Order.objects.get(pk=order.pk)
    assert (order.status, order.reject_code) == (Order.Status.REJECTED, "ORDER_INSTRUMENT_HALTED")


def test_a_refused_change_is_shown_and_writes_nothing(client, operations, future):
    client.force_login(operations)

    response = client.post(_url(future, "resume"), {"reason": "it trades already"})

    assert response.status_code == 400
    assert "cannot go from active to active" in response.content.decode()
    assert _status(future) == Instrument.Status.ACTIVE
    assert not _status_audits().exists()


@pytest.mark.parametrize(
    ("status", "change", "message"),
    [
        (Instrument.Status.ACTIVE, "resume", "cannot go from active to active"),
        (Instrument.Status.HALTED, "halt", "cannot go from halted to halted"),
        (Instrument.Status.EXPIRED, "halt", "cannot go from expired to halted"),
        (Instrument.Status.EXPIRED, "resume", "cannot go from expired to active"),
    ],
)
def test_a_change_the_status_rules_out_is_refused_before_a_reason_is_asked(
    client, operations, future, status, change, message
):
    Instrument.objects.filter(pk=future.pk).update(status=status)
    client.force_login(operations)

    response = client.get(_url(future, change))

    page = response.content.decode()
    assert response.status_code == 200
    assert f"{future.symbol} {message}." in page
    assert 'name="reason"' not in page
    assert "Confirm:" not in page
    assert _status(future) == status
    assert not _status_audits().exists()


def test_an_expired_instrument_cannot_be_resumed(client, operations, future):
    Instrument.objects.filter(pk=future.pk).update(status=Instrument.Status.EXPIRED)
    client.force_login(operations)

    response = client.post(_url(future, "resume"), {"reason": "by mistake"})

    assert response.status_code == 400
    assert _status(future) == Instrument.Status.EXPIRED


def test_unknown_changes_and_instruments_are_not_found(client, operations, future):
    client.force_login(operations)

    assert client.get(_url(future, "delist")).status_code == 404
    missing = reverse("backoffice:instrument_status", args=[future.pk + 1000, "halt"])
    assert client.get(missing).status_code == 404


def test_a_member_cannot_halt_by_posting(client, member, risk, future):
    for user in (member, risk):
        client.force_login(user)
        response = client.post(_url(future, "halt"), {"reason": "not mine to do"})
        assert response.status_code in (302, 403)
    assert _status(future) == Instrument.Status.ACTIVE
    assert not _status_audits().exists()


def test_the_list_says_an_option_is_halted_with_its_future(client, operations, future, call):
    # given the future halted (its call's own status stays active)
    client.force_login(operations)
    client.post(_url(future, "halt"), {"reason": "feed outage"})

    # when operations list the options
    response = client.get(reverse("backoffice:instruments"), {"kind": "option"})

    # then the call is shown halted with its future, not as trading, with the future's resume
    # beside it (a halt of its own stays offered: it would outlast the future's)
    page = response.content.decode()
    assert f"Halted with {future.symbol}" in page
    assert _url(future, "resume") in page
    assert _url(call, "halt") in page
    assert _status(call) == Instrument.Status.ACTIVE


def test_the_status_filter_lists_the_options_of_a_halted_future_as_halted(
    client, operations, futures, call
):
    # given the front month halted: its call and put (their own status active) are halted with
    # it; the second month trades
    client.force_login(operations)
    client.post(_url(futures[0], "halt"), {"reason": "feed outage"})
    options = set(
        Instrument.objects.filter(kind=Instrument.Kind.OPTION).values_list("symbol", flat=True)
    )
    assert len(options) == 2

    # when operations filter the list by status
    halted = client.get(reverse("backoffice:instruments"), {"status": "halted"})
    trading = client.get(reverse("backoffice:instruments"), {"status": "active"})
    every = client.get(reverse("backoffice:instruments"))

    # then the options are listed as halted, with their future, and not as trading (as the
    # dashboard counts them and the order path refuses them); the halted come first unfiltered
    assert {i.symbol for i in halted.context["page"]} == {futures[0].symbol} | options
    assert [i.symbol for i in trading.context["page"]] == [futures[1].symbol]
    assert [i.symbol for i in every.context["page"]][-1] == futures[1].symbol
    assert _status(call) == Instrument.Status.ACTIVE
