"""Audit rows, written in the same transaction as the change they describe."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from exchange.models import AuditEntry

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
) -> AuditEntry:
    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEntry.objects.create(
        actor=user,
        actor_label=user.get_username() if user is not None else system_label,
        action=action,
        target_type=type(target).__name__,
        target_id=str(target.pk),
        before=before or {},
        after=after or {},
        reason=reason[:300],
    )
