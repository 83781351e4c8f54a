"""Reads of an organization's API keys (never their secrets)."""

from django.db.models import QuerySet

from exchange.models import ApiKey, Organization


def api_keys_of(organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization=organization)


def api_key_of(organization: Organization, prefix: str) -> ApiKey | None:
    """The organization's key with ``prefix``; None for another organization's."""
    return api_keys_of(organization).filter(prefix=prefix).first()


def api_key_revoked(key_id: int) -> bool:
    """Whether the key has been revoked (read afresh: no process's memory of keys)."""
    return ApiKey.objects.filter(pk=key_id, revoked_at__isnull=False).exists()
