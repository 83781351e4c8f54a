"""Every staff action in the admin writes an audit row: edits in the forms (with the changed
fields before and after, secrets redacted), deletes, and each action of the back office's
functions, recorded with the acting staff user."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from exchange.backoffice.roles import Role, roles_of
from exchange.models import AuditEntry, MarginCall, Order, Region, RiskCycle, SettlementPrice
from exchange.services.funding import deposit_test_funds, withdrawal_request
from exchange.services.staff import margin_call_staff_review, staff_roles_grant
from tests.exchange.conftest import _account
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _region_form(region: Region, **changes) -> dict:
    data = {
        "code": region.code,
        "name": region.name,
        "compliance": '["soc2"]',
        "power_price_usd_per_kwh": str(region.power_price_usd_per_kwh),
    }
    return {**data, **changes}


def test_a_change_in_a_form_is_audited_with_before_and_after(client, superuser, region):
    client.force_login(superuser)
    url = reverse("admin:exchange_region_change", args=[region.pk])

    response = client.post(url, _region_form(region, name="US East (Virginia)"))

    assert response.status_code == 302
    entry = AuditEntry.objects.filter(action="admin.change").latest("id")
    assert (entry.actor, entry.target_type, entry.target_id) == (
        superuser,
        "Region",
        str(region.pk),
    )
    # Django's form calls the JSON field changed too; only what differs is recorded.
    assert entry.before == {"name": region.name}
    assert {key: value for key, value in entry.after.items() if key != "admin_message"} == {
        "name": "US East (Virginia)"
    }
    assert "Name" in entry.after["admin_message"][0]["changed"]["fields"]


def test_an_addition_and_a_deletion_are_audited(client, superuser):
    client.force_login(superuser)
    data = {
        "code": "APSE",
        "name": "Asia Pacific",
        "compliance": "[]",
        "power_price_usd_per_kwh": "0.1200",
    }

    client.post(reverse("admin:exchange_region_add"), data)
    region = Region.objects.get(code="APSE")
    client.post(reverse("admin:exchange_region_delete", args=[region.pk]), {"post": "yes"})

    added = AuditEntry.objects.get(action="admin.add")
    assert added.after["code"] == "APSE" and added.after["power_price_usd_per_kwh"] == "0.1200"
    deleted = AuditEntry.objects.get(action="admin.delete")
    assert (deleted.target_id, deleted.before) == (str(region.pk), {"repr": "Asia Pacific"})
    assert not Region.objects.filter(code="APSE").exists()


def test_a_refused_deletion_writes_no_audit(client, superuser, future, region):
    client.force_login(superuser)

    response = client.post(
        reverse("admin:exchange_region_delete", args=[region.pk]), {"post": "yes"}
    )

    assert response.status_code == 200  # "Cannot delete": instruments protect the region.
    assert Region.objects.filter(pk=region.pk).exists()
    assert not AuditEntry.objects.filter(action="admin.delete").exists()


def _user_form(client, user, **changes) -> dict:
    """The user admin's change form of ``user`` as the signed-in staff would post it."""
    form = client.get(reverse("admin:auth_user_change", args=[user.pk])).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in ("groups", "user_permissions", "password")
    }
    data.update(
        {
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            "is_active": "on",
            "is_staff": "on",
            **changes,
        }
    )
    data.pop("last_login", None)
    data.pop("date_joined", None)
    return data


def test_role_grants_in_the_user_admin_are_audited_and_passwords_redacted(
    client, superuser, roleless
):
    client.force_login(superuser)
    risk_group = Group.objects.get(name="risk")
    url = reverse("admin:auth_user_change", args=[roleless.pk])
    data = _user_form(client, roleless, groups=[risk_group.pk])

    response = client.post(url, data)
    client.post(
        reverse("admin:auth_user_password_change", args=[roleless.pk]),
        {"password1": "n3w-Passw0rd!", "password2": "n3w-Passw0rd!", "usable_password": "true"},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    entries = list(AuditEntry.objects.filter(action="admin.change", target_type="User"))
    grant = next(entry for entry in entries if "groups" in entry.after)
    assert (grant.before["groups"], grant.after["groups"]) == ([], [risk_group.pk])
    password = next(entry for entry in entries if entry is not grant)
    assert "n3w-Passw0rd!" not in str(password.after)
    assert password.after["admin_message"] == [{"changed": {"fields": ["password"]}}]


def test_staff_with_the_user_and_group_permissions_grant_no_roles_in_the_admin(client, roleless):
    # given staff with every role and Django's permissions on users and groups, not a superuser
    desk = get_user_model().objects.create_user("desk", password="x-2026", is_staff=True)
    desk.groups.add(*Group.objects.filter(name__in=list(Role)))
    desk.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="auth", content_type__model__in=["user", "group"]
        )
    )
    client.force_login(desk)
    risk_group = Group.objects.get(name="risk")
    audits = AuditEntry.objects.count()

    # when they post the user form giving another, or themselves, a role and superuser status
    for user in (roleless, desk):
        data = _user_form(client, user, groups=[risk_group.pk], is_superuser="on")
        response = client.post(reverse("admin:auth_user_change", args=[user.pk]), data)

        # then it is refused
        assert response.status_code == 403
    # as are adding a user and renaming a role's group
    added = client.post(
        reverse("admin:auth_user_add"),
        {"username": "new", "password1": "n3w-Passw0rd!", "password2": "n3w-Passw0rd!"},
    )
    renamed = client.post(
        reverse("admin:auth_group_change", args=[risk_group.pk]), {"name": "risky"}
    )
    assert added.status_code == renamed.status_code == 403

    # and nothing changed: the forms are still there to read
    assert roles_of(get_user_model().objects.get(pk=roleless.pk)) == set()
    assert not get_user_model().objects.filter(is_superuser=True).exists()
    assert not get_user_model().objects.filter(username="new").exists()
    assert Group.objects.filter(name="risk").exists()
    assert AuditEntry.objects.count() == audits
    assert client.get(reverse("admin:auth_user_change", args=[roleless.pk])).status_code == 200


def test_staff_roles_grant_is_audited_once(roleless, superuser):
    staff_roles_grant(user=roleless, roles=[Role.FINANCE, Role.RISK], actor=superuser)
    staff_roles_grant(user=roleless, roles=[Role.RISK], actor=superuser)

    (entry,) = AuditEntry.objects.filter(action="staff.roles_grant", target_id=str(roleless.pk))
    assert (entry.before, entry.after) == (
        {"is_staff": True, "roles": []},
        {"is_staff": True, "roles": ["finance", "risk"]},
    )
    assert roles_of(roleless) == {Role.FINANCE, Role.RISK}


def test_the_order_cancel_action_is_audited(client, operations, future, buyer):
    order = place(buyer, future, "buy", 2, "2.45")
    client.force_login(operations)

    client.post(
        reverse("admin:exchange_order_changelist"),
        {
            "action": "cancel",
            "_selected_action": [order.pk],
            "confirm": "1",
            "reason": "duplicate order",
        },
    )

    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED
    entry = AuditEntry.objects.get(action="order.cancel")
    assert (entry.actor, entry.target_id) == (operations, str(order.pk))
    assert (entry.before["status"], entry.after["status"]) == ("open", "cancelled")
    assert entry.reason == "duplicate order"


def test_withdrawal_review_by_finance_is_audited(client, finance, buyer, seller, settings):
    settings.STRIPE_SECRET_KEY = ""
    first = withdrawal_request(account=buyer, amount=Decimal("100"), actor=None)
    second = withdrawal_request(account=seller, amount=Decimal("200"), actor=None)
    client.force_login(finance)
    url = reverse("admin:exchange_withdrawal_changelist")

    client.post(url, {"action": "approve", "_selected_action": [first.pk], "confirm": "1"})
    client.post(
        url,
        {
            "action": "reject",
            "_selected_action": [second.pk],
            "confirm": "1",
            "reason": "account under review",
        },
    )

    entries = {
        (entry.action, entry.target_id): entry
        for entry in AuditEntry.objects.filter(actor=finance, target_type="Withdrawal")
    }
    assert set(entries) == {
        ("withdrawal.approve", str(first.pk)),
        ("withdrawal.pay", str(first.pk)),
        ("withdrawal.reject", str(second.pk)),
    }
    statuses = {
        key: (entry.before["status"], entry.after["status"]) for key, entry in entries.items()
    }
    assert statuses == {
        ("withdrawal.approve", str(first.pk)): ("requested", "approved"),
        ("withdrawal.pay", str(first.pk)): ("approved", "paid"),
        ("withdrawal.reject", str(second.pk)): ("requested", "rejected"),
    }
    assert entries["withdrawal.reject", str(second.pk)].reason == "account under review"


@pytest.mark.usefixtures("calendar_ahead")  # It settles a day after today.
def test_the_daily_cycle_and_an_override_by_risk_are_audited_once(client, risk, future):
    day = future.last_trading_day - timedelta(days=3)
    client.force_login(risk)
    override = {
        "instrument": future.pk,
        "trading_date": day.isoformat(),
        "price": "2.555",
        "reason": "Block trade reported late",
    }

    client.post(reverse("admin:exchange_settlementprice_add"), override)
    run = reverse("admin:exchange_riskcycle_run")
    client.post(run, {"trading_date": day.isoformat(), "confirm": "1", "confirm_date": str(day)})

    assert SettlementPrice.objects.get(instrument=future, trading_date=day).set_by == risk
    assert RiskCycle.objects.get(trading_date=day).settled_by == risk
    by_risk = list(AuditEntry.objects.filter(actor=risk).values_list("action", flat=True))
    assert sorted(by_risk) == [
        "risk.daily_settlement",
        "settlement_price.override",
        "settlement_price.set",  # The day's other prices, which the run set.
    ]
    # The overridden price was kept, not set again.
    prices_set = AuditEntry.objects.get(action="settlement_price.set").after["prices"]
    assert future.symbol not in prices_set
    assert SettlementPrice.objects.filter(trading_date=day).count() == len(prices_set) + 1


def test_a_margin_call_review_by_staff_is_audited(risk, future, seller):
    poor = _account("sprout", "startup", funded=False)
    deposit_test_funds(account=poor, amount=Decimal("4000"), actor=None)
    place(seller, future, "sell", 10, "2.50")
    place(poor, future, "buy", 10, "2.50")
    call = MarginCall.objects.create(
        account=poor, trading_date=future.last_trading_day, required=10, maintenance=8, held=5
    )

    reviewed = margin_call_staff_review(call=call, actor=risk)

    entry = AuditEntry.objects.get(action="margin_call.review")
    assert (entry.actor, entry.target_id) == (risk, str(call.pk))
    assert entry.before["status"] == "open"
    assert entry.after["status"] == reviewed.status
    assert entry.after["held"] == reviewed.held
