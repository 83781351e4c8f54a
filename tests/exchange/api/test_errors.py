"""Answers that no API view gives: a path no route matches, a request Django refuses before
routing, an unhandled error. Under /api/ they come in the error envelope; pages keep Django's."""

import pytest
from django.test import Client, override_settings

from exchange.api.throttling import PerKeyRateThrottle
from exchange.selectors import market
from exchange.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db


def envelope_of(response) -> tuple[int, str, str]:
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/no-such-thing/"),
        ("post", "/api/v1/no-such-thing/"),
        ("get", "/api/v2/instruments/"),
        ("delete", "/api/v1/curves/H100SXM/USEAST/extra/"),
        ("get", "/api/v1/curves/H100%00SXM/USEAST/"),  # No route takes a NUL.
        ("get", "/api/"),
    ],
)
def test_a_path_no_route_matches_is_a_json_404(method, path):
    response = getattr(Client(), method)(path)

    status, code, message = envelope_of(response)
    assert (status, code) == (404, "NOT_FOUND")
    assert "/api/schema/" in message


@pytest.mark.parametrize("debug", [False, True])
def test_the_json_404_holds_with_debug_on_and_names_a_missing_trailing_slash(settings, debug):
    settings.DEBUG = debug
    client = Client(enforce_csrf_checks=True)

    unknown = client.post("/api/v1/no-such-thing/", {"a": 1})
    no_slash = client.post("/api/v1/orders", {"a": 1})

    assert envelope_of(unknown)[:2] == (404, "NOT_FOUND")
    status, code, message = envelope_of(no_slash)
    assert (status, code) == (404, "NOT_FOUND")
    assert "did you mean /api/v1/orders/" in message


def test_a_path_no_route_matches_counts_and_tells_a_keys_standing(buyer, monkeypatch):
    """It answered without RateLimit-* and counted nothing: a client calling a wrong path in a
    loop was never slowed, nor told where it stood. The key is checked and counted first, as
    at any endpoint; whatever its Accept, the answer is the JSON 404."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "3/minute")
    token = api_key_create(organization=buyer.organization, name="bot", scopes=["read"]).token
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    forged = Client(HTTP_AUTHORIZATION=f"Bearer {token[:-4]}AAAA")

    unknown = client.get("/api/v1/no-such-thing/", HTTP_ACCEPT="text/html")
    no_slash = client.post("/api/v1/orders", {}, content_type="application/json")
    client.get("/api/v1/me/")
    limited = client.get("/api/v1/no-such-thing/")

    assert envelope_of(unknown)[:2] == (404, "NOT_FOUND")
    assert (unknown["RateLimit-Limit"], unknown["RateLimit-Remaining"]) == ("3", "2")
    assert "did you mean /api/v1/orders/" in envelope_of(no_slash)[2]
    assert no_slash["RateLimit-Remaining"] == "1"
    assert envelope_of(limited)[:2] == (429, "RATE_LIMITED")
    assert envelope_of(forged.get("/api/v1/no-such-thing/"))[:2] == (401, "AUTH_KEY_INVALID")


def test_a_page_no_route_matches_keeps_the_html_404():
    response = Client().get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    ("method", "path"), [("get", "/api/v1/instruments/"), ("post", "/api/v1/orders/")]
)
def test_a_request_for_a_host_not_served_is_a_json_400_with_debug_on_too(debug, method, path):
    """With DEBUG on (as ``make run`` has it), Django answered its HTML debug page, settings
    and all: handler400 only applies with DEBUG off."""
    with override_settings(DEBUG=debug):
        response = getattr(Client(), method)(path, headers={"host": "evil.example"})

    assert envelope_of(response)[:2] == (400, "BAD_REQUEST")
    assert b"DEBUG" not in response.content


def test_a_page_for_a_host_not_served_keeps_djangos_answer():
    with override_settings(DEBUG=True):
        response = Client().get("/", headers={"host": "evil.example"})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_an_unhandled_error_is_a_json_500_and_is_logged(monkeypatch, caplog):
    # given: a selector that fails as a bug would
    def broken(**filters):
        raise RuntimeError("a bug")

    monkeypatch.setattr(market, "instruments_listed", broken)

    # when
    response = Client(raise_request_exception=False).get("/api/v1/instruments/")

    # then: the envelope, with nothing of the error's text, and the traceback in the log
    status, code, message = envelope_of(response)
    assert (status, code) == (500, "SERVER_ERROR")
    assert "a bug" not in message
    assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)


def test_a_page_that_fails_keeps_the_html_500(monkeypatch):
    from exchange.web import markets

    monkeypatch.setattr(markets, "render", lambda *args, **kwargs: 1 / 0)

    response = Client(raise_request_exception=False).get("/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_a_ledger_refusal_no_service_named_is_answered_in_words_under_its_code(buyer):
    from exchange.api.errors import error_answer
    from exchange.services.ledger_accounts import cash_account, cash_account_code
    from ledger.errors import LedgerError
    from ledger.models import Hold
    from ledger.services import hold_create

    # given a refusal of the ledger's, whose message is for staff: the cash account's ledger
    # code and the shortfall in micro-dollars
    cash = cash_account(buyer)
    with pytest.raises(LedgerError) as refused:
        hold_create(
            key="beyond",
            account=cash,
            side=Hold.Side.DEBIT,
            amount=cash.available + 1_500_000,
            description="More than the account has",
        )
    assert refused.value.message == f"Account {cash_account_code(buyer)} would be short by 1500000."

    # when it reaches the API unnamed by a service
    status, body, _ = error_answer(refused.value)

    # then its stable code, a message for the customer, and no field of the ledger's
    assert (status, body) == (
        422,
        {
            "error": {
                "code": "LEDGER_INSUFFICIENT_FUNDS",
                "message": "The account does not have the cash available for this.",
                "field": None,
            }
        },
    )
