from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from exchange.models import (
    Account,
    AuditEntry,
    Instrument,
    Order,
    OrderCommand,
    Organization,
    ReservedCapacity,
    SettlementPrice,
    Trade,
)
from exchange.selectors.capacity import block_holdings
from exchange.services.orders import order_place
from exchange.services.participants import organization_create

pytestmark = pytest.mark.django_db


def test_admin_needs_a_staff_login(client, django_user_model):
    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))

    trader = django_user_model.objects.create_user("trader", password="x")
    client.force_login(trader)
    assert client.get(reverse("admin:index")).status_code == 302


def test_staff_sees_the_back_office(admin_client):
    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "GPU Exchange back office" in response.content.decode()


def test_halt_action_halts_and_audits_with_the_acting_user(admin_client, admin_user, futures):
    # when
    response = admin_client.post(
        reverse("admin:exchange_instrument_changelist"),
        {
            "action": "halt",
            "_selected_action": [futures[0].pk],
            "confirm": "1",
            "reason": "feed outage",
        },
        follow=True,
    )

    # then
    assert response.status_code == 200
    assert "1 of 1 selected instruments halted." in response.content.decode()
    statuses = dict(Instrument.objects.values_list("pk", "status"))
    assert statuses == {futures[0].pk: "halted", futures[1].pk: "active"}
    entry = AuditEntry.objects.get(action="instrument.halted")
    assert (entry.actor, entry.actor_label) == (admin_user, admin_user.username)
    assert (entry.target_type, entry.target_id) == ("Instrument", str(futures[0].pk))
    assert (entry.before, entry.after) == ({"status": "active"}, {"status": "halted"})
    assert entry.reason == "feed outage"


def test_resume_action_and_a_refused_change_is_reported(admin_client, futures):
    url = reverse("admin:exchange_instrument_changelist")
    confirmed = {"confirm": "1", "reason": "feed outage"}
    admin_client.post(url, {"action": "halt", "_selected_action": [futures[0].pk], **confirmed})

    response = admin_client.post(
        url,
        {"action": "resume", "_selected_action": [f.pk for f in futures], **confirmed},
        follow=True,
    )

    page = response.content.decode()
    assert "1 of 2 selected instruments resumed." in page
    assert "cannot go from active to active" in page
    assert set(Instrument.objects.values_list("status", flat=True)) == {"active"}


def test_order_admin_is_read_only(admin_client, future, buyer):
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=1
    )
    model_admin = site._registry[Order]

    assert admin_client.get(reverse("admin:exchange_order_add")).status_code == 403
    assert admin_client.get(reverse("admin:exchange_order_changelist")).status_code == 200
    detail = admin_client.get(reverse("admin:exchange_order_change", args=[order.pk]))
    assert detail.status_code == 200
    assert not model_admin.has_add_permission(detail.wsgi_request)
    assert not model_admin.has_change_permission(detail.wsgi_request, order)
    assert not model_admin.has_delete_permission(detail.wsgi_request, order)
    response = admin_client.post(
        reverse("admin:exchange_order_change", args=[order.pk]), {"quantity": 99}
    )
    assert response.status_code == 403
    assert Order.objects.get(pk=order.pk).quantity == 1
    for model in (Trade, OrderCommand, AuditEntry):
        assert not site._registry[model].has_add_permission(detail.wsgi_request)


def test_reserved_capacity_admin_is_read_only(admin_client, listing):
    # given a registered block (16 GPUs, its GPU-hours issued to its holder) listed for resale
    block = listing.reservation
    holder = block.holder_id
    change_url = reverse("admin:exchange_reservedcapacity_change", args=[block.pk])
    model_admin = site._registry[ReservedCapacity]

    # then staff browse it, but neither add a block (it would issue no GPU-hours, yet its
    # holder would hold its GPUs and offer them on its listing) nor change or delete one whose
    # GPU-hours are issued: only capacity_register writes a block, with its GPU-hours
    changelist = reverse("admin:exchange_reservedcapacity_changelist")
    assert admin_client.get(changelist).status_code == 200
    detail = admin_client.get(change_url)
    assert detail.status_code == 200
    assert not model_admin.has_add_permission(detail.wsgi_request)
    assert not model_admin.has_change_permission(detail.wsgi_request, block)
    assert not model_admin.has_delete_permission(detail.wsgi_request, block)
    assert admin_client.get(reverse("admin:exchange_reservedcapacity_add")).status_code == 403
    form = {
        "provider": block.provider_id,
        "holder": holder,
        "cluster": block.cluster,
        "sku": block.sku_id,
        "region": block.region_id,
        "starts_at_0": block.starts_at.strftime("%Y-%m-%d"),
        "starts_at_1": block.starts_at.strftime("%H:%M:%S"),
        "ends_at_0": block.ends_at.strftime("%Y-%m-%d"),
        "ends_at_1": block.ends_at.strftime("%H:%M:%S"),
        "gpus": 64,
        "interconnect": block.interconnect,
        "contiguous_block_gpus": block.contiguous_block_gpus,
    }
    assert admin_client.post(change_url, form).status_code == 403
    delete_url = reverse("admin:exchange_reservedcapacity_delete", args=[block.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    # and the holder still holds the 16 GPUs that were issued, no more
    assert ReservedCapacity.objects.get(pk=block.pk).gpus == 16
    assert block_holdings(block, organization_id=holder)[holder].held == 16


def test_instrument_admin_shows_contract_terms_read_only(admin_client, listing):
    # given a resale listing (made by resale_list, which checks the block and its dates)
    change_url = reverse("admin:exchange_instrument_change", args=[listing.pk])
    model_admin = site._registry[Instrument]
    detail = admin_client.get(change_url)
    assert detail.status_code == 200

    # then staff neither add an instrument (a listing the services never checked: a block
    # already started, one listed twice, a future outside the calendar) nor change the terms
    # of one that trades: its tick and lot (the book's resting orders are in them), its
    # GPU-hours (what its orders hold), its last trading day (trading past the block's start)
    assert not model_admin.has_add_permission(detail.wsgi_request)
    assert not model_admin.has_change_permission(detail.wsgi_request, listing)
    assert not model_admin.has_delete_permission(detail.wsgi_request, listing)
    assert admin_client.get(reverse("admin:exchange_instrument_add")).status_code == 403
    later = listing.last_trading_day + timedelta(days=30)
    form = {
        "symbol": listing.symbol,
        "kind": listing.kind,
        "sku": listing.sku_id,
        "region": listing.region_id,
        "tick_size": "0.005",
        "lot_size": 1,
        "gpu_hours_per_contract": 1,
        "price_max": "1000",
        "quantity_max": listing.quantity_max,
        "delivery_start": listing.delivery_start.isoformat(),
        "delivery_end": listing.delivery_end.isoformat(),
        "last_trading_day": later.isoformat(),
        "settlement": listing.settlement,
        "reservation": listing.reservation_id,
        "option_type": "",
        "risk_version": listing.risk_version,
    }
    assert admin_client.post(change_url, form).status_code == 403
    unchanged = Instrument.objects.get(pk=listing.pk)
    terms = ("tick_size", "lot_size", "gpu_hours_per_contract", "last_trading_day")
    assert [getattr(unchanged, name) for name in terms] == [
        getattr(listing, name) for name in terms
    ]


def test_order_admin_cancel_action_goes_through_the_matcher(
    admin_client, admin_user, future, buyer
):
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=1
    )

    admin_client.post(
        reverse("admin:exchange_order_changelist"),
        {
            "action": "cancel",
            "_selected_action": [order.pk],
            "confirm": "1",
            "reason": "customer asked by phone",
        },
    )

    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED
    assert OrderCommand.objects.filter(order=order).last().requested_by == admin_user


def test_the_organization_admin_refuses_a_name_taken_whatever_its_case(admin_client, buyer):
    # given Lumen (the buyer's organization), then a new organization of its name in capitals
    before = Organization.objects.count()
    form = {
        "slug": "lumen-2",
        "name": buyer.organization.name.upper(),
        "kind": "startup",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }

    response = admin_client.post(reverse("admin:exchange_organization_add"), form)

    assert response.status_code == 200  # The form again, with the refusal.
    assert "An organization of this name already exists." in response.content.decode()
    assert Organization.objects.count() == before


def test_the_organization_admin_refuses_a_second_exchange_operator(admin_client):
    # given the operator's organization, opened at set-up
    organization_create(slug="gpux", name="GPU Exchange", kind=Organization.Kind.EXCHANGE)
    before = Organization.objects.count()
    form = {
        "slug": "gpux-2",
        "name": "GPU Exchange Two",
        "kind": "exchange",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }

    response = admin_client.post(reverse("admin:exchange_organization_add"), form)

    # then the form again, the refusal by name, nothing written
    assert response.status_code == 200
    assert "The exchange operator&#x27;s organization already exists" in response.content.decode()
    assert Organization.objects.count() == before


def test_an_organization_added_in_the_admin_is_opened_with_its_main_account(admin_client):
    # given a new organization filled in on the admin's add form, with one member
    member = User.objects.create_user("nadia", password="x-long-password-1")
    form = {
        "slug": "nimbus",
        "name": "  Nimbus Compute ",
        "kind": "provider",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-user": str(member.pk),
        "memberships-0-role": "trader",
    }

    response = admin_client.post(reverse("admin:exchange_organization_add"), form)

    # then it exists as sign-up opens one: its main trading account, its member, its audit
    assert response.status_code == 302, response.content.decode()[:2000]
    organization = Organization.objects.get(slug="nimbus")
    assert organization.name == "Nimbus Compute"
    assert list(organization.accounts.values_list("name", flat=True)) == ["main"]
    assert organization.memberships.get().user == member
    audited = AuditEntry.objects.filter(target_type="Organization")
    actions = set(audited.filter(target_id=str(organization.pk)).values_list("action", flat=True))
    assert {"organization.create", "admin.add"} <= actions


def _counts_of_the_whole_table(queries, model) -> list[str]:
    """The queries that count every row of ``model``'s table: what takes a change list seconds
    once the table holds millions of rows."""
    table = connection.ops.quote_name(model._meta.db_table)
    return [
        query["sql"]
        for query in queries.captured_queries
        if "COUNT(" in query["sql"].upper()
        and f"FROM {table}" in query["sql"]
        and " WHERE " not in query["sql"].upper()
    ]


@pytest.fixture
def traded(futures, buyer, seller):
    """Three trades in the front month (six orders), and a settlement price per future for
    three days."""
    for _ in range(3):
        order_place(
            account=buyer, instrument=futures[0], side="buy", price=Decimal("2.45"), quantity=1
        )
        order_place(
            account=seller, instrument=futures[0], side="sell", price=Decimal("2.45"), quantity=1
        )
    for day in (date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)):
        for future in futures:
            SettlementPrice.objects.create(
                instrument=future, trading_date=day, price=Decimal("2.45"), source="vwap"
            )
    assert (Order.objects.count(), Trade.objects.count()) == (6, 3)


@pytest.mark.parametrize("model", [Order, Trade, SettlementPrice])
def test_the_order_trade_and_price_lists_do_not_count_the_whole_table(
    admin_client, traded, monkeypatch, model
):
    # given two rows a page, so that the last page holds the oldest row
    model_admin = site._registry[model]
    monkeypatch.setattr(model_admin, "list_per_page", 2)
    url = reverse(f"admin:exchange_{model._meta.model_name}_changelist")
    total = model.objects.count()

    # when the whole list is paged through, first and last page, and a filtered page
    with CaptureQueriesContext(connection) as queries:
        first = admin_client.get(url)
        last = admin_client.get(url, {"p": (total + 1) // 2})
        filtered = admin_client.get(url, {"instrument__kind": "future"})

    # then no query counts the whole table, yet the pager still says how many rows it holds
    # (read from the ends of its key: the table only grows) and reaches the oldest row, and a
    # filtered page counts what it matches exactly
    assert (first.status_code, last.status_code, filtered.status_code) == (200, 200, 200)
    assert _counts_of_the_whole_table(queries, model) == []
    assert first.context["cl"].result_count == total
    oldest = model.objects.order_by("pk").first()
    assert oldest in list(last.context["cl"].result_list)
    assert filtered.context["cl"].result_count == total
    assert filtered.context["cl"].full_result_count is None


def test_the_instrument_admin_s_status_filter_lists_the_options_of_a_halted_future_as_halted(
    admin_client, futures, call
):
    # given the front month halted: its call and put (their own status active) are halted with
    # it (Instrument.halted_by); the second month trades
    admin_client.post(
        reverse("admin:exchange_instrument_changelist"),
        {"action": "halt", "_selected_action": [futures[0].pk], "confirm": "1", "reason": "x"},
    )
    options = set(Instrument.objects.filter(kind="option").values_list("symbol", flat=True))
    url = reverse("admin:exchange_instrument_changelist")

    # when staff filter the instruments by status
    halted = admin_client.get(url, {"status__exact": "halted"})
    trading = admin_client.get(url, {"status__exact": "active"})

    # then the options are among the halted, not among those trading
    assert (halted.status_code, trading.status_code) == (200, 200)
    listed = {i.symbol for i in halted.context["cl"].result_list}
    assert listed == {futures[0].symbol} | options
    assert [i.symbol for i in trading.context["cl"].result_list] == [futures[1].symbol]
    assert Instrument.objects.get(pk=call.pk).status == "active"


def test_an_organization_s_kind_cannot_be_changed_in_the_admin(admin_client, buyer, future):
    # given a startup whose account is funded and has an order resting
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=1)
    organization = buyer.organization
    url = reverse("admin:exchange_organization_change", args=[organization.pk])
    kind = organization.kind

    # when a superuser opens its change form and posts it as a provider, then as the operator
    page = admin_client.get(url)
    responses = [
        admin_client.post(
            url,
            {
                "slug": organization.slug,
                "name": organization.name,
                "kind": new_kind,
                "memberships-TOTAL_FORMS": "0",
                "memberships-INITIAL_FORMS": "0",
                "memberships-MIN_NUM_FORMS": "0",
                "memberships-MAX_NUM_FORMS": "1000",
            },
        )
        for new_kind in (Organization.Kind.PROVIDER, Organization.Kind.EXCHANGE)
    ]

    # then the form shows the kind without a field to change it, and it stays what it was
    # (the order path, the ledger and the pools rely on it); the rest of the form still saves
    assert page.status_code == 200
    assert 'name="kind"' not in page.content.decode()
    assert "kind" in page.context["adminform"].readonly_fields
    assert [response.status_code for response in responses] == [302, 302]
    assert Organization.objects.get(pk=organization.pk).kind == kind
    changes = AuditEntry.objects.filter(
        action="admin.change", target_type="Organization", target_id=str(organization.pk)
    )
    assert all("kind" not in entry.after for entry in changes)


def test_an_organization_s_kind_is_chosen_when_it_is_added_in_the_admin(admin_client):
    page = admin_client.get(reverse("admin:exchange_organization_add"))

    assert 'name="kind"' in page.content.decode()


def test_an_account_s_organization_cannot_be_changed_in_the_admin(admin_client, buyer, seller):
    # given the buyer's main account
    url = reverse("admin:exchange_account_change", args=[buyer.pk])

    # when a superuser opens its change form and posts it with another organization
    page = admin_client.get(url)
    response = admin_client.post(
        url, {"organization": seller.organization_id, "name": buyer.name, "status": "active"}
    )

    # then the form shows the organization without a field to change it, and it stays the
    # buyer's (its positions, cash and orders are, and the matcher keeps it as the group of
    # the account's orders for self-trade prevention); the rest of the form still saves
    assert page.status_code == 200
    assert 'name="organization"' not in page.content.decode()
    assert response.status_code == 302
    assert Account.objects.get(pk=buyer.pk).organization_id == buyer.organization_id


def test_an_account_s_organization_is_chosen_when_it_is_added_in_the_admin(admin_client):
    page = admin_client.get(reverse("admin:exchange_account_add"))

    assert 'name="organization"' in page.content.decode()
