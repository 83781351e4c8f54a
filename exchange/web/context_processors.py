"""What the header offers the signed-in user.

The member pages (portfolio, funding, capacity, API keys, team) act for an organization and
answer 404 to a user of none, so the header links them only for members. The back office
opens to staff with a back-office role (the others get 403), so it is linked only for them. A
staff user may be both. Both answers are lazy: a page whose template never reads them costs no
query.
"""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from exchange.backoffice.roles import ALL_ROLES, has_any_role
from exchange.selectors.participants import memberships_of


def navigation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)  # Absent on a page rendered before authentication.
    return {
        "nav_member": SimpleLazyObject(lambda: user is not None and memberships_of(user).exists()),
        "nav_backoffice": SimpleLazyObject(lambda: has_any_role(user, ALL_ROLES)),
    }
