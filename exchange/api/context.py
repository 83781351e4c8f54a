"""Who is calling: an API key of an organization, or a signed-in member (session)."""

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User

from exchange.errors import ApiAuthError, ApiAuthErrorCode
from exchange.models import Account, ApiKey, Membership, Organization
from exchange.services.participants import account_main_recent

ORGANIZATION_HEADER = "HTTP_X_GX_ORGANIZATION"
# Keyed by the role as a membership stores it, text (each ``Membership.Role`` is one).
ROLE_SCOPES: dict[str, frozenset[str]] = {
    Membership.Role.TRADER: frozenset(ApiKey.Scope.values),
    Membership.Role.VIEWER: frozenset({ApiKey.Scope.READ}),
}


class ApiKeyPrincipal:
    """``request.user`` for a request authenticated by an API key. Services record the key's
    creator as the acting user (None for keys made on the command line)."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_active = True

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.user: User | None = key.created_by
        self.pk = None

    def __str__(self) -> str:
        return f"api-key:{self.key.prefix}"

    def get_username(self) -> str:
        return str(self)


@dataclass
class Caller:
    organization: Organization
    scopes: frozenset[str]
    user: User | None  # The acting user for services and audit rows.
    key: ApiKey | None
    _account: Account | None = field(default=None, repr=False)

    @property
    def account(self) -> Account:
        """The organization's main trading account, with its margin-call flag (read at most
        ``EXCHANGE_REFERENCE_CACHE_SECONDS`` ago: ``exchange.recent``)."""
        if self._account is None:
            self._account = account_main_recent(self.organization)
        return self._account


def caller_of(request: Any) -> Caller:
    """The organization and scopes of an authenticated request."""
    key = request.auth if isinstance(request.auth, ApiKey) else None
    if key is not None:
        return Caller(key.organization, frozenset(key.scopes), key.created_by, key)
    user = request.user
    memberships = Membership.objects.filter(user=user).select_related("organization")
    slug = request.META.get(ORGANIZATION_HEADER)
    if slug:
        memberships = memberships.filter(organization__slug=slug)
    membership = memberships.order_by("organization__slug").first()
    if membership is None:
        raise ApiAuthError(
            ApiAuthErrorCode.NO_ORGANIZATION,
            "The signed-in user is not a member of "
            + (f"organization {slug!r}." if slug else "any organization."),
        )
    return Caller(membership.organization, ROLE_SCOPES[membership.role], user, None)
