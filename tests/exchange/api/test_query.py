"""Query parameters: an endpoint refuses one it does not take (400 INVALID_INPUT, the parameter
as the field) rather than answering as if it had not been asked, and takes exactly those its
operation declares in the OpenAPI document (``exchange.api.views.ApiView``)."""

import re
from base64 import b64encode

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from exchange.models import ApiKey, Order
from exchange.services.api_keys import api_key_create
from tests.exchange.support import place

ORDERS = "/api/v1/orders/"
SCOPES = [ApiKey.Scope.READ, ApiKey.Scope.TRADE, ApiKey.Scope.TRANSFER]
UNKNOWN = "zz_unknown"


def _operations() -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path, declared query parameters, documented statuses) of every operation of
    ``/api/schema/``."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    parameters = schema["components"].get("parameters", {})
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = []
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = parameters[parameter["$ref"].rsplit("/", 1)[1]]
                if parameter["in"] == "query":
                    names.append(parameter["name"])
            found.append((method.upper(), path, sorted(names), sorted(operation["responses"])))
    return found


OPERATIONS = _operations()


@pytest.fixture
def api(buyer) -> APIClient:
    created = api_key_create(organization=buyer.organization, name="tests", scopes=SCOPES)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.token}")
    return client


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


def test_a_misspelt_filter_is_refused_rather_than_listing_every_order(api, futures, buyer):
    # given orders on two instruments
    place(buyer, futures[0], "buy", 1, "2.40")
    place(buyer, futures[1], "buy", 1, "2.40")

    # when the instrument filter is misspelt
    response = api.get(ORDERS, {"symbl": futures[0].symbol})

    # then it is refused, naming the parameter and what the list takes
    assert error_of(response) == (400, "INVALID_INPUT", "symbl")
    message = response.json()["error"]["message"]
    assert "'symbl'" in message and "instrument" in message
    spelt = api.get(ORDERS, {"instrument": futures[0].symbol}).json()["results"]
    assert [row["instrument"] for row in spelt] == [futures[0].symbol]


def test_an_unknown_parameter_beside_known_ones_is_refused_and_nothing_is_done(
    api, future, row_counts
):
    before = row_counts()

    response = api.post(
        f"{ORDERS}?dry_run=false&reduce_only=true",
        {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": "2.40"},
        format="json",
    )

    assert error_of(response) == (400, "INVALID_INPUT", "reduce_only")
    assert row_counts() == before
    assert not Order.objects.exists()


@pytest.mark.parametrize(("method", "path", "declared", "statuses"), OPERATIONS)
def test_every_operation_refuses_an_unknown_parameter_and_takes_what_it_declares(
    api, db, method, path, declared, statuses
):
    # A path's variables filled with any value: the parameters are checked before the view
    # looks anything up, so nothing needs to exist.
    url = re.sub(r"\{[^}]+\}", "1", path)

    response = api.generic(method, f"{url}?{UNKNOWN}=1")

    assert error_of(response) == (400, "INVALID_INPUT", UNKNOWN), response.content
    taken = re.search(r"It takes (.*) \(see /api/schema/\)", response.json()["error"]["message"])
    assert taken is not None
    said = [] if taken.group(1) == "none" else taken.group(1).split(", ")
    assert sorted([*said, "format"]) == declared
    assert "400" in statuses


def test_the_format_override_and_a_page_cursor_with_its_filters_are_taken(api, future, buyer):
    for price in ("2.40", "2.41", "2.42"):
        place(buyer, future, "buy", 1, price)
    place(buyer, future, "sell", 1, "2.60")

    first = api.get(ORDERS, {"side": "buy", "limit": 2, "format": "json"})
    second = api.get(first.json()["next"])

    assert first.status_code == second.status_code == 200, second.content
    rows = first.json()["results"] + second.json()["results"]
    assert [row["price"] for row in rows] == ["2.420000", "2.410000", "2.400000"]
    assert second.json()["next"] is None


def test_a_method_the_path_does_not_take_is_still_405_with_an_unknown_parameter(api, db):
    response = api.put(f"{ORDERS}?{UNKNOWN}=1")

    assert error_of(response)[:2] == (405, "METHOD_NOT_ALLOWED")


def test_a_public_endpoint_refuses_an_unknown_parameter_without_a_key(future):
    response = APIClient().get(f"/api/v1/instruments/{future.symbol}/book/", {"levels": 5})

    assert error_of(response) == (400, "INVALID_INPUT", "levels")
    assert "depth" in response.json()["error"]["message"]


def test_a_format_other_than_json_is_a_malformed_parameter_not_an_unknown_path(api, db):
    xml = api.get(ORDERS, {"format": "xml"})
    twice = api.get(f"{ORDERS}?format=json&format=json")

    assert error_of(xml) == (400, "INVALID_INPUT", "format")
    assert error_of(twice) == (400, "INVALID_INPUT", "format")


@pytest.mark.parametrize("position", ["1.5", "abc", "5\x00", " 5", "99999999999999999999999"])
@pytest.mark.parametrize(
    "path", [ORDERS, "/api/v1/fills/", "/api/v1/account/statement/", "/api/v1/pools/"]
)
def test_a_cursor_whose_position_is_no_id_is_404_not_500(
    api, future, buyer, seller, path, position
):
    """DRF decodes any position and compares the ids with it in the query, which failed."""
    place(seller, future, "sell", 1, "2.45")
    place(buyer, future, "buy", 1, "2.45")
    cursor = b64encode(f"r=1&p={position}".encode()).decode()

    response = api.get(path, {"cursor": cursor})

    assert error_of(response) == (404, "NOT_FOUND", None)
