"""An organization's exemption from the position limits is the risk role's to grant, in the
organization's admin page (its other fields stay the superuser's), through
``organization_position_limit_exempt_set``, which writes one audit row."""

import pytest
from django.urls import reverse

from exchange.errors import RiskError, RiskErrorCode
from exchange.models import AuditEntry, Organization
from exchange.services.instruments import organization_position_limit_exempt_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def organization(member):
    return Organization.objects.get(slug="outsider")


def _url(organization: Organization) -> str:
    return reverse("admin:exchange_organization_change", args=[organization.pk])


def _form(organization: Organization, **changes) -> dict:
    data = {
        "slug": organization.slug,
        "name": organization.name,
        "position_limit_exempt": "on",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    return {**data, **changes}


def test_risk_staff_grant_the_exemption_in_the_organization_s_page(client, risk, organization):
    client.force_login(risk)

    page = client.get(_url(organization))
    # The page offers the exemption to change, and nothing else of the organization.
    response = client.post(_url(organization), _form(organization, name="Renamed"))

    assert page.status_code == 200
    fields = page.context["adminform"].form.fields
    assert set(fields) == {"position_limit_exempt"}
    assert response.status_code == 302
    organization.refresh_from_db()
    assert organization.position_limit_exempt is True
    assert organization.name == "Outsider"
    entry = AuditEntry.objects.get(action="organization.position_limit_exempt")
    assert (entry.actor, entry.target_id) == (risk, str(organization.pk))
    assert (entry.before, entry.after) == (
        {"position_limit_exempt": False},
        {"position_limit_exempt": True},
    )
    assert not AuditEntry.objects.filter(action="admin.change").exists()


def test_staff_without_the_risk_role_cannot_change_an_organization(
    client, operations, organization
):
    client.force_login(operations)

    response = client.post(_url(organization), _form(organization))

    assert response.status_code == 403
    organization.refresh_from_db()
    assert organization.position_limit_exempt is False
    assert (
        not AuditEntry.objects.filter(target_type="Organization")
        .exclude(action="organization.create")
        .exists()
    )


def test_a_superuser_s_other_changes_are_audited_apart_from_the_exemption(
    client, superuser, organization
):
    client.force_login(superuser)

    response = client.post(_url(organization), _form(organization, name="Outsider Labs"))

    assert response.status_code == 302
    organization.refresh_from_db()
    assert (organization.name, organization.position_limit_exempt) == ("Outsider Labs", True)
    exempt = AuditEntry.objects.get(action="organization.position_limit_exempt")
    change = AuditEntry.objects.get(action="admin.change", target_type="Organization")
    assert exempt.actor == change.actor == superuser
    assert change.before == {"name": "Outsider"}
    assert {key: value for key, value in change.after.items() if key != "admin_message"} == {
        "name": "Outsider Labs"
    }


def test_the_service_refuses_staff_without_the_risk_role_and_writes_nothing(
    operations, organization
):
    with pytest.raises(RiskError) as refused:
        organization_position_limit_exempt_set(
            organization=organization, exempt=True, actor=operations
        )

    assert refused.value.code == RiskErrorCode.ROLE_REQUIRED
    organization.refresh_from_db()
    assert organization.position_limit_exempt is False
    assert (
        not AuditEntry.objects.filter(target_type="Organization")
        .exclude(action="organization.create")
        .exists()
    )


def test_setting_the_exemption_it_has_writes_nothing(risk, organization):
    organization_position_limit_exempt_set(organization=organization, exempt=True, actor=risk)

    again = organization_position_limit_exempt_set(
        organization=organization, exempt=True, actor=risk
    )

    assert again.position_limit_exempt is True
    assert AuditEntry.objects.filter(action="organization.position_limit_exempt").count() == 1
