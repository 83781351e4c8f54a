"""Staff with the operations role revoke a customer's API key from the admin (API keys,
"Revoke the selected API keys"), with a reason recorded in the audit row; the key's secrets are
never shown there."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import ApiKey, AuditEntry, Organization
from exchange.services.api_keys import api_key_create
from exchange.services.staff import api_key_staff_revoke

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:exchange_apikey_changelist"


@pytest.fixture
def key(member):
    organization = Organization.objects.get(slug="outsider")
    return api_key_create(organization=organization, name="bot", scopes=["read", "trade"]).key


def _revoke(client, key: ApiKey, **extra):
    data = {"action": "revoke", ACTION_CHECKBOX_NAME: [key.pk], **extra}
    return client.post(reverse(CHANGELIST), data)


def test_operations_revoke_a_key_with_a_reason_after_a_confirmation(client, operations, key):
    client.force_login(operations)

    asked = _revoke(client, key)
    key.refresh_from_db()
    revoked_before_confirming = key.revoked_at is not None
    response = _revoke(client, key, confirm="1", reason="Key posted on a public forum")

    assert asked.status_code == 200
    assert b"Revoke API keys" in asked.content
    assert not revoked_before_confirming
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == operations
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert (entry.actor, entry.target_id, entry.reason) == (
        operations,
        str(key.pk),
        "Key posted on a public forum",
    )


def test_the_key_s_secrets_are_not_shown(client, operations, key):
    client.force_login(operations)

    page = client.get(reverse("admin:exchange_apikey_change", args=[key.pk]))

    assert page.status_code == 200
    content = page.content.decode()
    assert key.signing_key_encrypted not in content
    assert key.secret_digest not in content


@pytest.mark.parametrize("who", ["risk", "finance"])
def test_other_roles_are_neither_shown_the_keys_nor_can_revoke_one(client, users, key, who):
    client.force_login(users[who])

    listed = client.get(reverse(CHANGELIST))
    posted = _revoke(client, key, confirm="1", reason="no")

    assert listed.status_code == 403
    assert posted.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None
    assert not AuditEntry.objects.filter(action="api_key.revoke").exists()


def test_the_service_refuses_other_roles_and_a_missing_reason_writing_nothing(
    risk, operations, key
):
    with pytest.raises(OrderRejected) as no_role:
        api_key_staff_revoke(key=key, actor=risk, reason="leaked")
    with pytest.raises(OrderRejected) as no_reason:
        api_key_staff_revoke(key=key, actor=operations, reason="  ")

    assert no_role.value.code == OrderRejectCode.ROLE_REQUIRED
    assert no_reason.value.code == OrderRejectCode.REASON_REQUIRED
    key.refresh_from_db()
    assert key.revoked_at is None
    assert not AuditEntry.objects.filter(action="api_key.revoke").exists()
