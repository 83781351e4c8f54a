"""The OpenAPI document and its two renderings, served by the exchange itself (no CDN)."""

import re

import pytest
from django.contrib.staticfiles import finders

from exchange.api.throttling import PerKeyRateThrottle
from exchange.services.api_keys import api_key_create
from exchange.services.pools import NAME_LENGTH_MAX

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_with_the_bearer_scheme(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert "/api/v1/orders/" in schema["paths"]


def test_the_schema_documents_the_rate_limit_headers(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    responses = schema["paths"]["/api/v1/orders/"]["post"]["responses"]

    def names(status: str) -> set[str]:
        return set(responses[status].get("headers", {}))

    standing = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    assert standing <= set(schema["components"]["headers"])
    assert names("201") == names("422") == standing
    assert names("429") == standing | {"Retry-After"}
    assert names("401") == set()  # Refused before the request is counted.
    # Every endpoint counts against the rate, so every operation may answer 429.
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    assert all("Retry-After" in op["responses"]["429"]["headers"] for op in operations)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_docs_load_their_assets_from_this_server_only(client, path):
    page = client.get(path).content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page loads its viewer"
    for source in sources:
        assert not source.startswith(("http://", "https://", "//")), source
    scripts = [s for s in sources if s.endswith(".js")]
    assert scripts and all(s.startswith("/static/drf_spectacular_sidecar/") for s in scripts)
    for script in scripts:  # and every one of them is really there
        assert finders.find(script.removeprefix("/static/")), script


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_docs_forbid_the_browser_any_other_host(client, path):
    """ReDoc's bundle fetches a logo from cdn.redoc.ly; the policy blocks it (and anything
    else not from here). tests/exchange/api/browser checks what Chromium then asks for."""
    policy = client.get(path)["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    for sources in directives.values():
        assert not re.search(r"https?:|\*", sources), sources


def test_the_schema_gives_a_pools_name_the_length_the_service_takes(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    name = schema["components"]["schemas"]["PoolCreateRequest"]["properties"]["name"]

    assert f"1 to {NAME_LENGTH_MAX} characters" in name["description"]


def test_the_schema_says_which_bodies_refuse_a_key_they_do_not_take(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    strict = {
        "OrderCreateRequest",
        "OrderBatchRequest",
        "OrderReplaceRequest",
        "CancelAllRequest",
        "CancelBatchRequest",
        "CancelAllAfterRequest",
        "PoolCreateRequest",
        "PatchedPoolSettingsRequest",
        "PoolAmountRequest",
        "PoolMemberAddRequest",
        "PatchedPoolMemberPriorityRequest",
        "PoolDemandCreateRequest",
        "PatchedPoolDemandAmendRequest",
        "PoolTransferCreateRequest",
        "PoolOfferRequest",
    }

    assert {name for name in strict if components[name].get("additionalProperties") is False} == (
        strict
    )
    # Each keeps a description of its own, not the reason the base class refuses such keys.
    assert all("DRF" not in components[name].get("description", "") for name in strict)


@pytest.mark.parametrize(
    ("query", "accept", "media_type"),
    [
        ("", None, "application/vnd.oai.openapi"),
        ("?format=yaml", None, "application/vnd.oai.openapi"),
        ("?format=json", None, "application/vnd.oai.openapi+json"),
        ("", "application/vnd.oai.openapi+json", "application/vnd.oai.openapi+json"),
    ],
)
def test_the_schema_is_yaml_or_json_by_its_format_or_accept(client, query, accept, media_type):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = client.get(f"/api/schema/{query}", **headers)

    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == media_type


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        # drf-spectacular answered a 404 written in YAML (a bare HTML one for the pages)
        ("/api/schema/", "?format=xml", "format"),
        ("/api/schema/", "?format=openapi", "format"),
        ("/api/docs/", "?format=json", "format"),
        ("/api/redoc/", "?format=yaml", "format"),
        ("/api/schema/", "?format=json&format=yaml", "format"),
        # ...and these with a 200: YAML for a misspelt format, the English document for an
        # unknown language, the one version relabelled "1.0.0 (2)"
        ("/api/schema/", "?fromat=json", "fromat"),
        ("/api/schema/", "?lang=xx", "lang"),
        ("/api/schema/", "?version=2", "version"),
        ("/api/docs/", "?lang=de", "lang"),
        ("/api/redoc/", "?version=2", "version"),
    ],
)
def test_the_schema_and_its_pages_refuse_what_they_do_not_take_in_the_envelope(
    client, path, query, field
):
    response = client.get(f"{path}{query}")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", field)


def test_the_schemas_refusals_name_what_it_takes(client):
    unknown = client.get("/api/schema/?lang=xx").json()["error"]["message"]
    format_ = client.get("/api/schema/?format=xml").json()["error"]["message"]

    assert unknown == (
        "Not a query parameter of this endpoint: 'lang'. It takes format (yaml, the default, "
        "or json)."
    )
    assert format_ == "Give json or yaml, or leave it out."


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_pages_take_their_own_format(client, path):
    response = client.get(f"{path}?format=html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_the_schema_answers_an_unacceptable_accept_in_json_with_the_callers_standing(
    client, buyer, monkeypatch
):
    """It answered in YAML, before the caller was counted: no RateLimit-* headers."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")
    token = api_key_create(organization=buyer.organization, name="bot", scopes=["read"]).token

    response = client.get(
        "/api/schema/", HTTP_ACCEPT="text/html", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "NOT_ACCEPTABLE"
    assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("5", "4")
