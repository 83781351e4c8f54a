"""What the header offers the signed-in user.

The member pages (portfolio, funding, capacity, API keys, team) act for an organization and
answer 404 to a user of none, so the header links them only for members. The back office
opens to staff with a back-office role (the others get 403), so it is linked only for them. A
staff user may be both. Both answers are lazy: a page whose template never reads them costs no
query.

The header marks the link of the page's own section (``aria-current="page"``), so a screen
reader says, and the style shows, where the user is; it marked none.
"""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from exchange.backoffice.roles import ALL_ROLES, has_any_role
from exchange.selectors.participants import memberships_of

# The header's section of each page, by its URL name in the web namespace; the markets page's
# depends on the kind it lists (its resale list is no section of the header's).
NAV_SECTIONS = {
    "resale_listings": "resale",
    "curves": "curves",
    "hedging": "hedging",
    "portfolio": "portfolio",
    "statement": "portfolio",
    "funding": "funding",
    "capacity": "capacity",
    "pools": "pools",
    "pool": "pools",
    "api_keys": "api_keys",
    "team": "team",
}
MARKETS_SECTIONS = {"future": "futures", "option": "options"}


def nav_section(request: HttpRequest) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None or match.namespace != "web":
        return None
    if match.url_name == "markets":
        kind = request.GET.get("kind") or ""
        # An unknown kind lists the futures, as the page does; its resale list is no section.
        return None if kind == "resale" else MARKETS_SECTIONS.get(kind, "futures")
    return NAV_SECTIONS.get(match.url_name or "")


def navigation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)  # Absent on a page rendered before authentication.
    return {
        "nav_current": nav_section(request),
        "nav_member": SimpleLazyObject(lambda: user is not None and memberships_of(user).exists()),
        "nav_backoffice": SimpleLazyObject(lambda: has_any_role(user, ALL_ROLES)),
    }
