"""Audit rows, written in the same transaction as the change they describe."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from exchange.models import ApiKey, AuditEntry

SYSTEM_ACTOR_LABEL = "system"


def audit_record(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    target: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
    system_label: str = SYSTEM_ACTOR_LABEL,
    api_key: ApiKey | None = None,
) -> AuditEntry:
    """``api_key``: the key of a request made through the API. The key acted, so the row is
    labelled with it (``API key <prefix>``) and names its prefix in ``after`` (``api_key``), as
    a withdrawal's row does; ``actor`` stays the user who made the key (None for a key made on
    the command line). An organization's keys share their maker: labelled by the user alone,
    its rows could not say which key did what."""
    user = actor if actor is not None and actor.is_authenticated else None
    label = user.get_username() if user is not None else system_label
    if api_key is not None:
        label = f"API key {api_key.prefix}"
        after = {**(after or {}), "api_key": api_key.prefix}
    return AuditEntry.objects.create(
        actor=user,
        actor_label=label,
        action=action,
        target_type=type(target).__name__,
        target_id=str(target.pk),
        before=before or {},
        after=after or {},
        reason=reason[:300],
    )
