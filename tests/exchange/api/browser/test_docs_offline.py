"""The API's documentation in a real browser: Swagger UI and ReDoc render the exchange's
operations while the browser asks no host but the exchange for anything (ReDoc's bundle names
a logo on cdn.redoc.ly, which the pages' Content-Security-Policy keeps it from fetching)."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        # Swagger UI lists each operation by its path; ReDoc heads each with its summary.
        ("/api/docs/", "/api/v1/orders/"),
        ("/api/redoc/", "Place an order (scope trade)"),
    ],
    ids=["swagger", "redoc"],
)
def test_the_docs_render_from_this_server_alone(live_server, new_page, path, rendered):
    page = new_page()
    here = urlsplit(live_server.url).netloc
    elsewhere: list[str] = []

    def elsewhere_url(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != here

    # A request the page's policy blocks is reported as failed by "csp", never sent; any other
    # request to another host (answered, or aborted by the route below) went out of the page.
    page.on("response", lambda r: elsewhere.append(r.url) if elsewhere_url(r.url) else None)
    page.on(
        "requestfailed",
        lambda r: elsewhere.append(r.url) if elsewhere_url(r.url) and r.failure != "csp" else None,
    )
    # Nothing may leave the machine anyway: a request elsewhere fails at once, not by timeout.
    page.route(elsewhere_url, lambda route: route.abort())
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))

    page.goto(path)
    shown = page.get_by_text(rendered) if path == "/api/docs/" else page.get_by_role("heading")
    expect(shown.filter(has_text=rendered).first).to_be_visible(timeout=20_000)
    page.wait_for_load_state("networkidle")

    assert elsewhere == []
    assert script_errors == []
