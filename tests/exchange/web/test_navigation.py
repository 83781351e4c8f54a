"""The header's links: the member pages for members of an organization (they answer 404 to
anyone else), the back office for staff with a back-office role (403 to the others)."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from exchange.backoffice.roles import Role
from exchange.services.participants import member_add, organization_create
from exchange.services.staff import staff_roles_grant

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"
MEMBER_PAGES = {
    "Portfolio": "web:portfolio",
    "Funding": "web:funding",
    "Capacity": "web:capacity",
    "API keys": "web:api_keys",
    "Team": "web:team",
}
BACK_OFFICE = ("Back office", "backoffice:dashboard")
# Every page extends base.html: the markets page and a member page show the same header.
PAGES = ["web:markets", "web:hedging"]


@pytest.fixture
def organization():
    return organization_create(slug="lumen", name="Lumen Labs", kind="startup")


@pytest.fixture
def member(organization):
    return member_add(
        organization=organization, username="alice", email="a@l.example", password=PASSWORD
    ).user


@pytest.fixture
def staff():
    """Risk staff who belong to no organization (the demo's ravi)."""
    user = get_user_model().objects.create_user(username="ravi", password=PASSWORD)
    staff_roles_grant(user=user, roles=[Role.RISK], actor=None)
    return user


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("admin", "admin@exchange.example", PASSWORD)


def _header_links(client, page: str = "web:markets") -> set[tuple[str, str]]:
    """(text, href) of each link in the main navigation."""
    content = client.get(reverse(page)).content.decode()
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', content, re.DOTALL)
    assert nav is not None
    return {
        (text.strip(), href)
        for href, text in re.findall(r'<a href="([^"]*)"[^>]*>([^<]*)</a>', nav.group(1))
    }


def _member_links() -> set[tuple[str, str]]:
    return {(text, reverse(name)) for text, name in MEMBER_PAGES.items()}


def _back_office_link() -> tuple[str, str]:
    text, name = BACK_OFFICE
    return text, reverse(name)


@pytest.mark.parametrize("page", PAGES)
def test_a_member_sees_the_member_pages_and_no_back_office(client, member, page):
    client.force_login(member)

    links = _header_links(client, page)

    assert _member_links() <= links
    assert _back_office_link() not in links
    # and each linked page opens for them
    for name in MEMBER_PAGES.values():
        assert client.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("user", ["staff", "superuser"])
def test_staff_of_no_organization_see_the_back_office_and_no_member_pages(client, user, request):
    client.force_login(request.getfixturevalue(user))

    links = _header_links(client)

    assert _back_office_link() in links
    assert not _member_links() & links
    assert {text for text, _href in links}.isdisjoint(MEMBER_PAGES)
    # the member pages that act for an organization would have answered 404 (the portfolio
    # shows nothing), and the back office opens
    for name in ("web:funding", "web:capacity", "web:api_keys", "web:team"):
        assert client.get(reverse(name)).status_code == 404
    assert client.get(reverse(BACK_OFFICE[1])).status_code == 200


def test_staff_who_are_members_see_both(client, member):
    staff_roles_grant(user=member, roles=[Role.FINANCE], actor=None)
    client.force_login(member)

    links = _header_links(client)

    assert _member_links() <= links
    assert _back_office_link() in links


def test_staff_without_a_back_office_role_see_neither(client):
    # given staff who may sign in to the admin but hold no back-office role (403 there)
    user = get_user_model().objects.create_user("nobody", password=PASSWORD, is_staff=True)
    client.force_login(user)

    links = _header_links(client)

    assert client.get(reverse(BACK_OFFICE[1])).status_code == 403
    assert _back_office_link() not in links
    assert not _member_links() & links


def test_anonymous_visitors_see_the_market_pages_only(client):
    links = _header_links(client)

    assert not _member_links() & links
    assert _back_office_link() not in links
    assert ("Hedging", reverse("web:hedging")) in links


@pytest.mark.parametrize(
    ("url", "current"),
    [
        ("/", "Futures"),
        ("/?kind=future", "Futures"),
        ("/?kind=option", "Options"),
        ("/?kind=resale", None),
        ("/capacity/listings/", "Reserved resale"),
        ("/curves/", "Curves"),
        ("/hedging/", "Hedging"),
        ("/portfolio/", "Portfolio"),
        ("/portfolio/statement/", "Portfolio"),
        ("/funding/", "Funding"),
        ("/capacity/", "Capacity"),
        ("/pools/", "Pools"),
        ("/api-keys/", "API keys"),
        ("/team/", "Team"),
    ],
)
def test_the_header_marks_the_link_of_the_pages_section(client, member, url, current):
    """The header marked no link as the current page: a screen reader could not say, nor the
    style show, where in the site the user was."""
    client.force_login(member)

    content = client.get(url).content.decode()

    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', content, re.DOTALL)
    assert nav is not None
    marked = re.findall(r'<a href="[^"]*" aria-current="page">([^<]*)</a>', nav.group(1))
    assert marked == ([current] if current else [])


def test_the_headers_sign_in_comes_back_to_the_page_it_was_followed_from(client, future):
    """The header's Sign in went to the login page alone: a visitor signing in from an
    instrument page (with a query) landed on the portfolio and had to find it again."""
    from exchange.models import Organization

    page = f"/instruments/{future.symbol}/?side=sell&quantity=2"
    html = client.get(page).content.decode()
    quoted = f"/instruments/{future.symbol}/%3Fside%3Dsell%26quantity%3D2"
    assert f'href="/accounts/login/?next={quoted}">Sign in</a>' in html
    # and the login page's own link does not point back at itself
    assert "?next=" not in client.get("/accounts/login/").content.decode().split("<main>")[0]

    member_add(
        organization=organization_create(
            slug="lumen", name="Lumen", kind=Organization.Kind.STARTUP
        ),
        username="alice",
        email="alice@lumen.example",
        password="gpu-hours-by-the-month",
    )
    signed_in = client.post(
        f"/accounts/login/?next={quoted}",
        {"username": "alice", "password": "gpu-hours-by-the-month", "next": page},
    )
    assert signed_in.status_code == 302
    assert signed_in["Location"] == page
