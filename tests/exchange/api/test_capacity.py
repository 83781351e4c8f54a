"""/api/v1/capacity/: providers register reserved blocks, providers and holders see theirs, and
holders list them for resale. Other organizations' blocks are 404, never listed."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from exchange import calendar
from exchange.models import AuditEntry, Instrument, Organization, ReservedCapacity
from exchange.services.api_keys import api_key_create
from exchange.services.capacity import capacity_register
from exchange.services.ledger_accounts import entitlement_account_code, entitlement_code
from exchange.services.listing import resale_list
from exchange.services.participants import account_main, organization_create
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from tests.exchange.support import (
    ending_before_any_resale_start,
    listing_month,
    place,
    resale_start_after,
)

pytestmark = pytest.mark.django_db

CAPACITY = "/api/v1/capacity/"


@pytest.fixture
def other_provider(db):
    """A second provider, with a customer of its own."""
    return account_main(
        organization_create(slug="coreweft", name="Coreweft", kind=Organization.Kind.PROVIDER)
    )


def api(account, scopes=("read", "trade")) -> APIClient:
    token = api_key_create(organization=account.organization, name="bot", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


def starts() -> datetime:
    """Ten days into the listing month: more than a day away, so the block can be listed."""
    return datetime.combine(listing_month(), time.min, tzinfo=UTC) + timedelta(days=10)


def body(holder, sku, region, changes: dict | None = None) -> dict:
    begins = starts()
    return {
        "holder": holder.organization.slug,
        "cluster": "nw-ashburn-h100-a",
        "sku": sku.code,
        "region": region.code,
        "starts_at": begins.isoformat(),
        "ends_at": (begins + timedelta(days=40)).isoformat(),
        "gpus": 16,
        "interconnect": "infiniband",
        "contiguous_block_gpus": 8,
        **(changes or {}),
    }


def block(provider, holder, sku, region, *, cluster="block", begins=None, days=40, ends=None):
    begins = begins or starts()
    return capacity_register(
        provider=provider.organization,
        holder=holder.organization,
        cluster=cluster,
        sku=sku,
        region=region,
        starts_at=begins,
        ends_at=ends or begins + timedelta(days=days),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )


def written() -> tuple[int, int, int, int]:
    """Rows that registering or listing capacity writes."""
    return (
        ReservedCapacity.objects.count(),
        Entry.objects.count(),
        Instrument.objects.filter(kind=Instrument.Kind.RESALE).count(),
        AuditEntry.objects.filter(action__in=["capacity.register", "instrument.list"]).count(),
    )


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


# Registering ------------------------------------------------------------------------------


def test_a_provider_registers_a_block_and_its_gpu_hours_go_to_the_holder(
    seller, buyer, sku, region
):
    # when the provider registers a 16-GPU block for the buyer over 40 days from the 11th
    response = api(seller).post(CAPACITY, body(buyer, sku, region), format="json")

    # then it is recorded as given
    assert response.status_code == 201
    reservation = ReservedCapacity.objects.get()
    begins = starts()
    assert response.json() == {
        "id": reservation.pk,
        "provider": seller.organization.slug,
        "holder": buyer.organization.slug,
        "cluster": "nw-ashburn-h100-a",
        "sku": sku.code,
        "region": region.code,
        "starts_at": begins.isoformat().replace("+00:00", "Z"),
        "ends_at": (begins + timedelta(days=40)).isoformat().replace("+00:00", "Z"),
        "gpus": 16,
        "interconnect": "infiniband",
        "contiguous_block_gpus": 8,
        "created_at": response.json()["created_at"],
        "listed_symbol": None,
        "listing_trading": False,
        # Listed now, the block would sell its whole term.
        "resale_from": begins.isoformat().replace("+00:00", "Z"),
        "held_gpus": 0,  # The provider's: the block is the buyer's.
    }
    # and the holder's ledger holds 16 GPUs x the hours of each month it spans
    next_month = calendar.add_months(listing_month(), 1)
    hours_first = int(
        (datetime.combine(next_month, time.min, tzinfo=UTC) - begins).total_seconds() // 3600
    )
    hours_second = 40 * 24 - hours_first
    for month, hours in ((listing_month(), hours_first), (next_month, hours_second)):
        code = entitlement_account_code(buyer, entitlement_code(sku.code, region.code, month))
        assert LedgerAccount.objects.get(code=code).balance == 16 * hours
    # and the act is audited
    assert AuditEntry.objects.filter(action="capacity.register").count() == 1


def test_a_provider_may_hold_its_own_block(seller, sku, region):
    response = api(seller).post(CAPACITY, body(seller, sku, region), format="json")

    assert response.status_code == 201
    assert response.json()["holder"] == response.json()["provider"] == "northwind"


@pytest.mark.parametrize("kind", ["startup", "trading_firm", "sponsor", "exchange"])
def test_only_providers_register_capacity_and_a_refusal_writes_nothing(db, sku, region, kind):
    # given an organization that is not a provider
    account = account_main(organization_create(slug="notprov", name="Not", kind=kind))
    before = written()

    # when it tries to register a block for itself
    response = api(account).post(CAPACITY, body(account, sku, region), format="json")

    # then it is refused with a named code, and nothing is written
    assert error_of(response) == (422, "CATALOG_PROVIDER_REQUIRED", "provider")
    assert written() == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"holder": None}, "holder"),
        ({"holder": ""}, "holder"),
        ({"sku": 9000}, "sku"),
        ({"region": "MO\x00ON"}, "region"),
        ({"cluster": ""}, "cluster"),
        ({"cluster": "   "}, "cluster"),
        ({"cluster": "x" * 101}, "cluster"),
        ({"cluster": 7}, "cluster"),  # text is a JSON string, not a number read as digits
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"starts_at": "9999-12-31T23:00:00-05:00"}, "starts_at"),
        ({"ends_at": "1999-01-01T00:00:00Z"}, "ends_at"),
        ({"gpus": 0}, "gpus"),
        ({"gpus": 100_001}, "gpus"),
        ({"gpus": "many"}, "gpus"),
        ({"gpus": 2**70}, "gpus"),
        ({"interconnect": "carrier-pigeon"}, "interconnect"),
        ({"contiguous_block_gpus": -1}, "contiguous_block_gpus"),
    ],
)
def test_malformed_registrations_are_400_and_write_nothing(
    seller, buyer, sku, region, changes, field
):
    before = written()

    response = api(seller).post(CAPACITY, body(buyer, sku, region, changes), format="json")

    assert error_of(response) == (400, "INVALID_INPUT", field)
    assert written() == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"holder": "nobody"}, "holder"), ({"sku": "Z9000"}, "sku"), ({"region": "MOON"}, "region")],
)
def test_a_registration_naming_what_does_not_exist_is_404_with_the_field(
    seller, buyer, sku, region, changes, field
):
    before = written()

    response = api(seller).post(CAPACITY, body(buyer, sku, region, changes), format="json")

    # as an unknown instrument in an order is: the body is well formed, what it names is not there
    assert error_of(response) == (404, "NOT_FOUND", field)
    assert changes[field] in response.json()["error"]["message"]
    assert written() == before


def test_a_registration_missing_a_field_is_400(seller, buyer, sku, region):
    payload = body(buyer, sku, region)
    del payload["gpus"]

    response = api(seller).post(CAPACITY, payload, format="json")

    assert error_of(response) == (400, "INVALID_INPUT", "gpus")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starts_at": "2031-01-01T00:30:00Z"}, "starts_at"),
        ({"ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": "2099-01-01T00:00:00Z"}, "ends_at"),
        ({"contiguous_block_gpus": 32}, "contiguous_block_gpus"),
        ({"contiguous_block_gpus": 6}, "contiguous_block_gpus"),  # 16 GPUs: not whole blocks
        ({"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-02-01T00:00:00Z"}, "ends_at"),
    ],
)
def test_registrations_the_exchange_refuses_are_422_and_write_nothing(
    seller, buyer, sku, region, changes, field
):
    before = written()

    response = api(seller).post(CAPACITY, body(buyer, sku, region, changes), format="json")

    assert error_of(response) == (422, "CATALOG_INVALID_CAPACITY", field)
    assert written() == before


def test_a_block_for_the_exchange_operator_is_422_and_writes_nothing(seller, sku, region):
    operator = account_main(organization_create(slug="gpux", name="GPU Exchange", kind="exchange"))
    before = written()

    response = api(seller).post(CAPACITY, body(operator, sku, region), format="json")

    assert error_of(response) == (422, "CATALOG_HOLDER_IS_OPERATOR", "holder")
    assert written() == before


@pytest.mark.parametrize("field", ["starts_at", "ends_at"])
def test_a_time_without_its_time_zone_is_400_and_writes_nothing(seller, buyer, sku, region, field):
    # given a registration whose start or end is otherwise valid, but says no time zone
    payload = body(buyer, sku, region)
    payload[field] = payload[field].removesuffix("+00:00")
    before = written()

    # when the provider registers it
    response = api(seller).post(CAPACITY, payload, format="json")

    # then it is refused with the field, not read as UTC
    assert error_of(response) == (400, "INVALID_INPUT", field)
    assert "time zone" in response.json()["error"]["message"]
    assert written() == before


def test_a_read_key_cannot_register_capacity(seller, buyer, sku, region):
    before = written()

    response = api(seller, scopes=("read",)).post(CAPACITY, body(buyer, sku, region), format="json")

    assert error_of(response)[:2] == (403, "AUTH_SCOPE_MISSING")
    assert written() == before


def test_a_key_without_read_cannot_list_capacity(seller):
    response = api(seller, scopes=("trade", "transfer")).get(CAPACITY)

    assert error_of(response)[:2] == (403, "AUTH_SCOPE_MISSING")


# Listing what one provides or holds -------------------------------------------------------


def test_each_organization_sees_the_blocks_it_provides_or_holds_and_no_others(
    seller, buyer, fourth, other_provider, sku, region
):
    # given three blocks: the seller's for the buyer, the seller's for itself, and another
    # provider's for a fourth organization
    for_buyer = block(seller, buyer, sku, region, cluster="a")
    own = block(seller, seller, sku, region, cluster="b")
    elsewhere = block(other_provider, fourth, sku, region, cluster="c")

    def ids(account) -> list[int]:
        return [row["id"] for row in api(account, scopes=("read",)).get(CAPACITY).json()["results"]]

    # then each sees its own, newest first, and nothing else
    assert ids(seller) == [own.pk, for_buyer.pk]
    assert ids(buyer) == [for_buyer.pk]
    assert ids(fourth) == [elsewhere.pk]
    assert ids(other_provider) == [elsewhere.pk]


def test_the_capacity_list_is_paginated_and_shows_the_listing(seller, buyer, sku, region):
    # given three blocks, the oldest listed for resale
    listed = block(seller, buyer, sku, region, cluster="a")
    instrument = resale_list(reservation=listed)
    block(seller, buyer, sku, region, cluster="b")
    block(seller, buyer, sku, region, cluster="c")
    client = api(buyer, scopes=("read",))

    # when it is read one block a page
    clusters, symbols, url = [], [], f"{CAPACITY}?limit=1"
    while url:
        page = client.get(url).json()
        clusters += [row["cluster"] for row in page["results"]]
        symbols += [row["listed_symbol"] for row in page["results"]]
        url = page["next"]

    # then every block comes once, newest first, with its resale symbol once listed
    assert clusters == ["c", "b", "a"]
    assert symbols == [None, None, instrument.symbol]


def test_each_organization_sees_what_it_holds_of_a_block_after_part_of_it_was_sold(
    seller, buyer, sku, region
):
    # given Northwind's own block of 16, listed, of which Lumen bought 8, and a block of 16 it
    # registered for Lumen, not listed
    own = block(seller, seller, sku, region, cluster="own")
    instrument = resale_list(reservation=own)
    place(seller, instrument, "sell", 8, "2.30")
    place(buyer, instrument, "buy", 8, "2.30")
    for_lumen = block(seller, buyer, sku, region, cluster="for-lumen")

    def held(account) -> dict[int, int]:
        results = api(account, scopes=("read",)).get(CAPACITY).json()["results"]
        return {row["id"]: row["held_gpus"] for row in results}

    # then Northwind holds 8 of its block (no longer all 16) and none of Lumen's; Lumen sees
    # its own block whole, and the 8 it bought of Northwind's
    assert held(seller) == {own.pk: 8, for_lumen.pk: 0}
    assert held(buyer) == {for_lumen.pk: 16, own.pk: 8}


def test_a_buyer_on_a_blocks_resale_listing_sees_the_block_while_it_holds_some(
    seller, buyer, fourth, sku, region
):
    # given Northwind's own block of 16, listed, of which Lumen bought 8
    own = block(seller, seller, sku, region, cluster="own")
    instrument = resale_list(reservation=own, lot_gpus=4)
    place(seller, instrument, "sell", 8, "2.30")
    place(buyer, instrument, "buy", 8, "2.30")

    def rows(account) -> list[tuple[int, str | None, int]]:
        results = api(account, scopes=("read",)).get(CAPACITY).json()["results"]
        return [(row["id"], row["listed_symbol"], row["held_gpus"]) for row in results]

    # then Lumen sees the block, with the 8 GPUs it holds; a stranger sees nothing
    assert rows(buyer) == [(own.pk, instrument.symbol, 8)]
    assert rows(fourth) == []
    # and Lumen, which holds GPUs of it, may list it, but not while its listing trades; the
    # stranger may not list it at all
    listed = api(buyer).post(f"{CAPACITY}{own.pk}/list/", {}, format="json")
    assert error_of(listed)[:2] == (422, "CATALOG_RESERVATION_ALREADY_LISTED")
    stranger = api(fourth).post(f"{CAPACITY}{own.pk}/list/", {}, format="json")
    assert error_of(stranger)[:2] == (404, "NOT_FOUND")

    # when Lumen resells 4 to the fourth organization, and Northwind sells it its other 8
    place(buyer, instrument, "sell", 4, "2.40")
    place(fourth, instrument, "buy", 4, "2.40")
    place(seller, instrument, "sell", 8, "2.50")
    place(fourth, instrument, "buy", 8, "2.50")

    # then each sees what it holds now: Northwind, the registered holder, sees it with none
    assert rows(buyer) == [(own.pk, instrument.symbol, 4)]
    assert rows(fourth) == [(own.pk, instrument.symbol, 12)]
    assert rows(seller) == [(own.pk, instrument.symbol, 0)]

    # when Lumen resells its last 4, it holds none and no longer sees the block
    place(buyer, instrument, "sell", 4, "2.60")
    place(fourth, instrument, "buy", 4, "2.60")
    assert rows(buyer) == []
    assert rows(fourth) == [(own.pk, instrument.symbol, 16)]


def test_a_registered_block_answers_what_the_provider_holds_of_it(seller, buyer, sku, region):
    own = api(seller).post(CAPACITY, body(seller, sku, region), format="json")
    for_buyer = api(seller).post(CAPACITY, body(buyer, sku, region), format="json")

    assert (own.status_code, for_buyer.status_code) == (201, 201)
    assert (own.json()["held_gpus"], for_buyer.json()["held_gpus"]) == (16, 0)


# Listing for resale -----------------------------------------------------------------------


def test_the_holder_lists_its_block_for_resale(seller, buyer, sku, region):
    reservation = block(seller, buyer, sku, region)

    response = api(buyer).post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json")

    assert response.status_code == 201
    instrument = Instrument.objects.get(reservation=reservation)
    assert response.json()["symbol"] == instrument.symbol
    assert (response.json()["kind"], response.json()["lot_size"]) == ("resale", 8)
    assert response.json()["quantity_max"] == 16
    assert response.json()["gpu_hours_per_contract"] == 40 * 24


def test_the_holder_chooses_a_lot_that_divides_the_block(seller, buyer, sku, region):
    reservation = block(seller, buyer, sku, region)

    response = api(buyer).post(f"{CAPACITY}{reservation.pk}/list/", {"lot_gpus": 4}, format="json")

    assert response.status_code == 201
    assert response.json()["lot_size"] == 4


def test_the_listing_body_may_be_empty(seller, buyer, sku, region):
    reservation = block(seller, buyer, sku, region)

    response = api(buyer).post(f"{CAPACITY}{reservation.pk}/list/")

    assert response.status_code == 201


def test_blocks_that_are_not_the_callers_to_list_are_404_and_nothing_is_listed(
    seller, buyer, fourth, sku, region
):
    # given a block the seller provides and the buyer holds
    reservation = block(seller, buyer, sku, region)
    before = written()

    # when the provider, a stranger, or the holder with ids of no block try to list it
    responses = [
        api(seller).post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json"),
        api(fourth).post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json"),
        api(buyer).post(f"{CAPACITY}{reservation.pk + 1000}/list/", {}, format="json"),
        api(buyer).post(f"{CAPACITY}{2**70}/list/", {}, format="json"),
        api(buyer).post(f"{CAPACITY}{10**30}/list/", {}, format="json"),
        api(buyer).post(f"{CAPACITY}one/list/", {}, format="json"),
    ]

    # then each is 404 in the API's envelope, as for a block that does not exist, and nothing
    # is listed
    assert [error_of(response)[:2] for response in responses] == [(404, "NOT_FOUND")] * 6
    assert written() == before


def test_listing_twice_is_refused(seller, buyer, sku, region):
    reservation = block(seller, buyer, sku, region)
    client = api(buyer)
    client.post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json")
    before = written()

    response = client.post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json")

    assert error_of(response)[:2] == (422, "CATALOG_RESERVATION_ALREADY_LISTED")
    assert written() == before


def test_a_block_starting_within_a_day_is_listed_from_the_next_day_it_can_be(
    seller, buyer, sku, region
):
    """Within a day of its start a block is listed from the first day's start (00:00 UTC) more
    than a day ahead: the day after tomorrow in its month, or a month's start at a month's
    end. A listing from a month's start keeps the month's symbol, one from another day names
    the day."""
    now = timezone.now()
    soon = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    reservation = block(seller, buyer, sku, region, begins=soon.astimezone(UTC))
    starts = resale_start_after(now, soon)
    assert starts - timedelta(days=1) > now
    assert api(buyer).get(CAPACITY).json()["results"][0]["resale_from"] == (
        starts.isoformat().replace("+00:00", "Z")
    )

    response = api(buyer).post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json")

    assert response.status_code == 201
    term = f"{starts:%Y%m}" if starts.day == 1 else f"{starts:%Y%m%d}"
    assert response.json()["symbol"] == f"{sku.code}-{region.code}-R{reservation.pk}-{term}"
    assert response.json()["delivery_start"] == starts.date().isoformat()
    assert response.json()["gpu_hours_per_contract"] == (
        (reservation.ends_at - starts).total_seconds() // 3600
    )
    rows = api(buyer).get(CAPACITY).json()["results"]
    assert [(row["listed_symbol"], row["listing_trading"]) for row in rows] == [
        (response.json()["symbol"], True)
    ]


def test_a_running_block_is_listed_from_a_day_of_the_month_under_way(
    seller, buyer, sku, region, monkeypatch
):
    """On the 10th at 09:00 of a month its term runs in, a block's resale_from is the 12th at
    00:00 UTC, the first day's start more than a day ahead; the listing is named by that day,
    and a contract is 1 GPU for every hour from then to the end of the term."""
    # given a block from the 4th at 06:00 of a month ahead, for 40 days
    begins = datetime.combine(listing_month().replace(day=4), time(6), tzinfo=UTC)
    twelfth = begins.date().replace(day=12)
    reservation = block(seller, buyer, sku, region, begins=begins)
    client = api(buyer)
    # when its holder looks on the 10th at 09:00 and lists it
    monkeypatch.setattr(timezone, "now", lambda: begins + timedelta(days=6, hours=3))
    resale_from = client.get(CAPACITY).json()["results"][0]["resale_from"]
    response = client.post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json")

    # then it sells from the 12th at 00:00 to the end of the term
    assert resale_from == f"{twelfth:%Y-%m-%d}T00:00:00Z"
    assert response.status_code == 201
    listing = response.json()
    assert listing["symbol"] == f"{sku.code}-{region.code}-R{reservation.pk}-{twelfth:%Y%m%d}"
    assert listing["delivery_start"] == twelfth.isoformat()
    assert listing["last_trading_day"] == (twelfth - timedelta(days=1)).isoformat()
    # From the 12th at 00:00 to the 4th at 06:00 forty days after: 32 days and 6 hours.
    assert listing["gpu_hours_per_contract"] == 32 * 24 + 6
    # and the market API finds it by its symbol
    detail = client.get(f"/api/v1/instruments/{listing['symbol']}/")
    assert (detail.status_code, detail.json()["symbol"]) == (200, listing["symbol"])


def test_a_block_with_no_day_left_to_list_cannot_be_listed(seller, buyer, sku, region):
    now = timezone.now()
    soon = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    ends = ending_before_any_resale_start(now, soon + timedelta(days=2), soon)
    reservation = block(seller, buyer, sku, region, begins=soon.astimezone(UTC), ends=ends)
    before = written()

    response = api(buyer).post(f"{CAPACITY}{reservation.pk}/list/", {}, format="json")

    assert error_of(response)[:2] == (422, "CATALOG_RESERVATION_ALREADY_STARTED")
    assert written() == before
    assert api(buyer).get(CAPACITY).json()["results"][0]["resale_from"] is None


@pytest.mark.parametrize(
    ("lot", "status", "code"),
    [
        (3, 422, "CATALOG_INVALID_LISTING"),
        (0, 400, "INVALID_INPUT"),
        ("eight", 400, "INVALID_INPUT"),
    ],
)
def test_a_bad_lot_is_refused(seller, buyer, sku, region, lot, status, code):
    reservation = block(seller, buyer, sku, region)
    before = written()

    response = api(buyer).post(
        f"{CAPACITY}{reservation.pk}/list/", {"lot_gpus": lot}, format="json"
    )

    assert error_of(response) == (status, code, "lot_gpus")
    assert written() == before


def test_a_read_key_cannot_list_for_resale(seller, buyer, sku, region):
    reservation = block(seller, buyer, sku, region)

    response = api(buyer, scopes=("read",)).post(
        f"{CAPACITY}{reservation.pk}/list/", {}, format="json"
    )

    assert error_of(response)[:2] == (403, "AUTH_SCOPE_MISSING")
    assert not Instrument.objects.filter(reservation=reservation).exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": ""}, "limit")],
)
def test_a_malformed_page_query_is_400(seller, query, field):
    response = api(seller, scopes=("read",)).get(CAPACITY, query)

    assert error_of(response) == (400, "INVALID_INPUT", field)


def test_a_forged_cursor_is_404(seller):
    response = api(seller, scopes=("read",)).get(CAPACITY, {"cursor": "not-a-cursor"})

    assert error_of(response)[:2] == (404, "NOT_FOUND")
