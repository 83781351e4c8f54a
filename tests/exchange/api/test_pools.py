"""/api/v1/pools/: a sponsor's pool through the API, its members' demand, the cut-off, the
round's close and allocation, reports, capacity moved after a graduation, and the isolation
matrix: two sponsors with a pool each, two members of one pool and an outsider. A member never
sees another member's demand, allocations or report (404 for their ids, absent from lists); a
sponsor never sees another sponsor's pool; an organization in neither gets 404 for the pool."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from exchange.models import AuditEntry, MarginCall, Membership, Order, Organization
from exchange.models.pools import (
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolOrder,
    PoolRound,
    PoolTransfer,
)
from exchange.services.api_keys import api_key_create
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import cash_account, position_account
from exchange.services.participants import account_main, member_add
from exchange.services.pools import (
    credit_outstanding,
    demand_submit,
    pool_create,
    pool_cut_off,
    pool_fund,
    pool_member_add,
    pool_member_graduate,
    pool_round_close,
    pool_take_back,
)
from ledger.models import Entry
from tests.exchange.conftest import _account
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

POOLS = "/api/v1/pools/"
ALL_SCOPES = ("read", "trade", "transfer")


def api(organization, scopes=ALL_SCOPES) -> APIClient:
    token = api_key_create(organization=organization, name="bot", scopes=list(scopes)).token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def codes(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


def written() -> tuple[int, ...]:
    """Rows a pool endpoint may write: nothing of these changes when one is refused."""
    return (
        Pool.objects.count(),
        PoolMember.objects.count(),
        PoolDemand.objects.count(),
        PoolRound.objects.count(),
        PoolAllocation.objects.count(),
        PoolTransfer.objects.count(),
        Order.objects.count(),
        Entry.objects.count(),
        # Making a key for a request writes its own audit row; no pool action may.
        AuditEntry.objects.exclude(action__startswith="api_key.").count(),
    )


def _sponsor(slug: str) -> Organization:
    return _account(slug, Organization.Kind.SPONSOR).organization


def _startup(slug: str, funded: bool = True) -> Organization:
    return _account(slug, Organization.Kind.STARTUP, funded=funded).organization


@pytest.fixture
def sponsor(db) -> Organization:
    return _sponsor("foundry")


@pytest.fixture
def pool(sponsor) -> Pool:
    pool = pool_create(
        sponsor=sponsor,
        name="Seed GPUs",
        subsidy_percent=Decimal("10"),
        credit_line=Decimal("20000"),
        actor=None,
    )
    pool_fund(pool=pool, amount=Decimal("500000"), actor=None)
    return pool


@pytest.fixture
def ada(pool) -> PoolMember:
    return pool_member_add(pool=pool, organization=_startup("ada"), priority=10, actor=None)


@pytest.fixture
def bolt(pool) -> PoolMember:
    return pool_member_add(pool=pool, organization=_startup("bolt"), priority=20, actor=None)


@pytest.fixture
def cirrus(pool) -> PoolMember:
    """A member with no cash at all: it relies on the credit line."""
    organization = _startup("cirrus", funded=False)
    return pool_member_add(pool=pool, organization=organization, priority=30, actor=None)


@pytest.fixture
def other_pool(db) -> Pool:
    """Another sponsor's pool, with a member of its own."""
    pool = pool_create(sponsor=_sponsor("kiln"), name="Kiln compute", actor=None)
    pool_member_add(pool=pool, organization=_startup("zephyr"), actor=None)
    return pool


@pytest.fixture
def outsider(buyer) -> Organization:
    """A startup in no pool."""
    return buyer.organization


def submit(member, future, gpus=10, limit="2.50") -> PoolDemand:
    (demand,) = demand_submit(
        member=member,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=gpus,
        limit_price=Decimal(limit),
        actor=None,
    )
    return demand


@pytest.fixture
def allocated(pool, ada, bolt, future, seller) -> PoolRound:
    """A round cut off and allocated: ada asked 30, bolt 10, 20 sold at 2.40 (pro rata 15/5)."""
    submit(ada, future, gpus=30)
    submit(bolt, future, gpus=10)
    place(seller, future, "sell", 20, "2.40")
    round_ = pool_cut_off(pool=pool, actor=None)
    return pool_round_close(round_=round_, actor=None)


def month_of(instrument) -> str:
    return f"{instrument.delivery_start:%Y-%m}"


def demand_body(future, **changes) -> dict:
    return {
        "sku": future.sku.code,
        "region": future.region.code,
        "months": [month_of(future)],
        "gpus": 10,
        "limit_price": "2.50",
        **changes,
    }


# Pools -------------------------------------------------------------------------------------


def test_the_list_shows_the_pools_the_caller_sponsors_or_belongs_to(
    pool, ada, other_pool, sponsor, outsider
):
    def rows(organization):
        return [(r["name"], r["role"]) for r in api(organization).get(POOLS).json()["results"]]

    assert rows(sponsor) == [("Seed GPUs", "sponsor")]
    assert rows(ada.organization) == [("Seed GPUs", "member")]
    assert rows(other_pool.sponsor) == [("Kiln compute", "sponsor")]
    assert rows(outsider) == []
    row = api(ada.organization).get(POOLS).json()["results"][0]
    assert row["sponsor"] == "foundry"
    assert (row["subsidy_percent"], row["credit_line"]) == ("10.00", "20000.000000")


def test_a_sponsor_creates_a_pool(sponsor):
    cutoff = timezone.now() + timedelta(days=3)

    response = api(sponsor).post(
        POOLS,
        {
            "name": "Series A",
            "rule": "priority",
            "subsidy_percent": "12.5",
            "credit_line": "5000",
            "cutoff_at": cutoff.isoformat(),
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["role"], body["rule"]) == ("Series A", "sponsor", "priority")
    assert (body["subsidy_percent"], body["credit_line"]) == ("12.50", "5000.000000")
    assert body["cash"] == {"posted": "0.000000", "pending": "0.000000", "available": "0.000000"}
    assert (body["members"], body["open_demand"], body["membership"]) == ([], [], None)
    pool = Pool.objects.get(pk=body["id"])
    assert (pool.sponsor, pool.credit_line, pool.cutoff_at) == (sponsor, 5000 * 10**6, cutoff)
    assert AuditEntry.objects.filter(action="pool.create").count() == 1


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ""}, (422, "POOL_NAME_INVALID", "name")),
        ({"name": "x" * 101}, (422, "POOL_NAME_INVALID", "name")),
        ({"name": "a\x00b"}, (400, "INVALID_INPUT", "name")),
        ({"rule": "fifo"}, (422, "POOL_RULE_INVALID", "rule")),
        ({"subsidy_percent": "100.01"}, (422, "POOL_SUBSIDY_INVALID", "subsidy_percent")),
        ({"subsidy_percent": "10.125"}, (422, "POOL_SUBSIDY_INVALID", "subsidy_percent")),
        ({"subsidy_percent": 10}, (400, "INVALID_INPUT", "subsidy_percent")),
        ({"subsidy_percent": "-1"}, (400, "INVALID_INPUT", "subsidy_percent")),
        ({"credit_line": "999999999999"}, (422, "POOL_CREDIT_LINE_INVALID", "credit_line")),
        ({"credit_line": "1e3"}, (400, "INVALID_INPUT", "credit_line")),
        ({"cutoff_at": "2020-01-01T00:00:00Z"}, (422, "POOL_CUTOFF_INVALID", "cutoff_at")),
        ({"cutoff_at": "2030-01-01T00:00:00"}, (400, "INVALID_INPUT", "cutoff_at")),
        ({"cutoff_at": "2150-01-01T00:00:00Z"}, (400, "INVALID_INPUT", "cutoff_at")),
    ],
)
def test_a_pool_with_bad_settings_is_refused_with_the_field(sponsor, changes, expected):
    before = written()

    response = api(sponsor).post(POOLS, {"name": "Series A", **changes}, format="json")

    assert codes(response) == expected
    assert written() == before


def test_only_sponsors_create_pools_and_names_are_unique(pool, sponsor, outsider):
    before = written()

    assert codes(api(outsider).post(POOLS, {"name": "Mine"}, format="json")) == (
        422,
        "POOL_SPONSOR_REQUIRED",
        "sponsor",
    )
    assert codes(api(sponsor).post(POOLS, {"name": "Seed GPUs"}, format="json")) == (
        409,
        "POOL_NAME_TAKEN",
        "name",
    )
    assert written() == before


@pytest.mark.parametrize(
    ("scopes", "method", "path", "body"),
    [
        (["read"], "post", "", {"name": "X"}),
        (["read"], "patch", "{pool}/", {"subsidy_percent": "5"}),
        (["read", "trade"], "post", "{pool}/fund/", {"amount": "10"}),
        (["read", "trade"], "post", "{pool}/withdraw/", {"amount": "10"}),
        (["read"], "post", "{pool}/members/", {"organization": "ada"}),
        (["read"], "post", "{pool}/cut-off/", None),
        (["trade"], "get", "{pool}/", None),
        (["trade"], "get", "{pool}/report/", None),
    ],
)
def test_each_endpoint_needs_its_scope(pool, sponsor, scopes, method, path, body):
    before = written()

    response = getattr(api(sponsor, scopes), method)(
        POOLS + path.format(pool=pool.pk), body, format="json"
    )

    assert codes(response) == (403, "AUTH_SCOPE_MISSING", None)
    assert written() == before


def test_a_member_needs_trade_to_submit_and_transfer_to_repay(pool, ada, future):
    reader = api(ada.organization, ["read"])
    trader = api(ada.organization, ["read", "trade"])
    before = written()

    assert codes(reader.post(f"{POOLS}{pool.pk}/demands/", demand_body(future), format="json"))[
        :2
    ] == (403, "AUTH_SCOPE_MISSING")
    assert codes(trader.post(f"{POOLS}{pool.pk}/credit/repay/", {"amount": "1"}, format="json"))[
        :2
    ] == (403, "AUTH_SCOPE_MISSING")
    assert written() == before


def test_the_sponsor_sees_the_pool_whole(pool, ada, bolt, future, sponsor):
    submit(ada, future, gpus=30, limit="2.60")
    submit(bolt, future, gpus=10, limit="2.45")

    body = api(sponsor).get(f"{POOLS}{pool.pk}/").json()

    assert body["role"] == "sponsor" and body["membership"] is None
    assert body["cash"]["available"] == "500000.000000"
    assert [(m["organization"], m["priority"]) for m in body["members"]] == [
        ("ada", 10),
        ("bolt", 20),
    ]
    assert body["open_demand"] == [
        {
            "instrument": future.symbol,
            "members": 2,
            "quantity": 40,
            "gpu_hours": 40 * future.gpu_hours_per_contract,
            "lowest_limit": "2.450000",
            "highest_limit": "2.600000",
        }
    ]


def test_a_member_sees_the_terms_and_its_own_membership_only(pool, ada, bolt, future):
    submit(bolt, future)

    body = api(ada.organization).get(f"{POOLS}{pool.pk}/").json()

    assert (body["role"], body["name"], body["sponsor"], body["rule"]) == (
        "member",
        "Seed GPUs",
        "foundry",
        "pro_rata",
    )
    assert (body["cash"], body["members"], body["open_demand"]) == (None, None, None)
    assert body["membership"]["id"] == ada.pk
    assert body["membership"]["organization"] == "ada"
    assert body["membership"]["credit_owed"] == "0.000000"
    assert "bolt" not in str(body)


def test_the_sponsor_changes_settings_and_what_it_leaves_out_stays(pool, sponsor, ada):
    client = api(sponsor)
    cutoff = timezone.now() + timedelta(days=1)

    changed = client.patch(
        f"{POOLS}{pool.pk}/",
        {"subsidy_percent": "25", "cutoff_at": cutoff.isoformat()},
        format="json",
    )

    assert changed.status_code == 200, changed.json()
    pool.refresh_from_db()
    assert (pool.subsidy_percent, pool.rule, pool.credit_line) == (
        Decimal("25"),
        "pro_rata",
        20000 * 10**6,
    )
    assert pool.cutoff_at == cutoff
    cleared = client.patch(f"{POOLS}{pool.pk}/", {"cutoff_at": None}, format="json")
    assert cleared.json()["cutoff_at"] is None
    # A member may not; a bad value is named.
    before = written()
    assert codes(
        api(ada.organization).patch(f"{POOLS}{pool.pk}/", {"rule": "priority"}, format="json")
    ) == (403, "POOL_SPONSOR_ONLY", None)
    assert codes(client.patch(f"{POOLS}{pool.pk}/", {"rule": "x"}, format="json")) == (
        422,
        "POOL_RULE_INVALID",
        "rule",
    )
    assert written() == before


def test_a_body_key_a_pool_endpoint_does_not_take_is_refused_and_nothing_is_done(
    pool, sponsor, ada, future
):
    # given open demand of ada's, and a startup not yet in the pool
    demand = submit(ada, future, gpus=10)
    _startup("dune")
    sponsor_api, ada_api = api(sponsor), api(ada.organization)
    before_pool = Pool.objects.values().get(pk=pool.pk)
    before = written()
    transfer = {"member": ada.pk, "instrument": future.symbol, "quantity": 1}
    pool_path = f"{POOLS}{pool.pk}/"

    # when requests carry a key their endpoint does not take: a rename the settings do not
    # do, a misspelt setting, an amount's currency, a member's role, a demand's misspelt
    # limit, a transfer's or offer's flag, and a key sent to an action that takes no body
    answers = [
        sponsor_api.post(POOLS, {"name": "Next", "subsidy": "10"}, format="json"),
        sponsor_api.patch(pool_path, {"name": "Renamed"}, format="json"),
        sponsor_api.patch(pool_path, {"subsidy_percent": "5", "creditline": "0"}, format="json"),
        sponsor_api.post(f"{pool_path}fund/", {"amount": "1", "currency": "EUR"}, format="json"),
        sponsor_api.post(f"{pool_path}withdraw/", {"amount": "1", "all": True}, format="json"),
        sponsor_api.post(
            f"{pool_path}members/", {"organization": "dune", "role": "lead"}, format="json"
        ),
        sponsor_api.patch(
            f"{pool_path}members/{ada.pk}/", {"priority": 5, "status": "x"}, format="json"
        ),
        sponsor_api.post(
            f"{pool_path}members/{ada.pk}/graduate/", {"keep_demand": True}, format="json"
        ),
        ada_api.post(
            f"{pool_path}demands/",
            {
                "sku": future.sku.code,
                "region": future.region.code,
                "months": [month_of(future)],
                "gpus": 1,
                "limit_price": "2.50",
                "limit": "2.40",
            },
            format="json",
        ),
        ada_api.patch(
            f"{pool_path}demands/{demand.pk}/", {"gpus": 5, "price": "2.40"}, format="json"
        ),
        sponsor_api.post(f"{pool_path}cut-off/", {"instrument": future.symbol}, format="json"),
        sponsor_api.post(f"{pool_path}reallocate/", {**transfer, "price": "2"}, format="json"),
        sponsor_api.post(f"{pool_path}take-back/", {**transfer, "all": True}, format="json"),
        sponsor_api.post(
            f"{pool_path}offer/",
            {"instrument": future.symbol, "quantity": 1, "price": "2.60", "post_only": True},
            format="json",
        ),
        ada_api.post(f"{pool_path}credit/repay/", {"amount": "1", "all": True}, format="json"),
    ]

    # then each is malformed, naming the key, and nothing was written
    assert [(answer.status_code, answer.json()["error"]["field"]) for answer in answers] == [
        (400, "subsidy"),
        (400, "name"),
        (400, "creditline"),
        (400, "currency"),
        (400, "all"),
        (400, "role"),
        (400, "status"),
        (400, "keep_demand"),
        (400, "limit"),
        (400, "price"),
        (400, "instrument"),
        (400, "price"),
        (400, "all"),
        (400, "post_only"),
        (400, "all"),
    ]
    assert {answer.json()["error"]["code"] for answer in answers} == {"INVALID_INPUT"}
    assert written() == before
    assert Pool.objects.values().get(pk=pool.pk) == before_pool
    demand.refresh_from_db()
    assert (demand.status, demand.quantity) == ("open", 10)
    ada.refresh_from_db()
    assert (ada.status, ada.priority) == ("active", 10)


def test_a_round_closed_with_a_body_key_is_refused_and_left_working(pool, sponsor, ada, future):
    submit(ada, future, gpus=10)
    round_ = pool_cut_off(pool=pool, actor=None)
    before = written()

    refused = api(sponsor).post(
        f"{POOLS}{pool.pk}/rounds/{round_.pk}/close/", {"allocate": False}, format="json"
    )

    assert codes(refused) == (400, "INVALID_INPUT", "allocate")
    assert written() == before
    round_.refresh_from_db()
    assert round_.status == "working"
    assert PoolOrder.objects.get(round=round_).order.status == "open"


# Cash --------------------------------------------------------------------------------------


def test_the_sponsor_funds_the_pool_and_takes_cash_back(pool, sponsor):
    client = api(sponsor)

    funded = client.post(f"{POOLS}{pool.pk}/fund/", {"amount": "1000.50"}, format="json")
    taken = client.post(f"{POOLS}{pool.pk}/withdraw/", {"amount": "500000"}, format="json")

    assert funded.status_code == 200, funded.json()
    assert funded.json()["cash"]["available"] == "501000.500000"
    assert funded.json()["amount"] == "1000.500000"
    assert taken.json()["cash"]["available"] == "1000.500000"
    assert Entry.objects.filter(pk=taken.json()["entry"]).exists()


@pytest.mark.parametrize(
    ("path", "amount", "expected"),
    [
        ("fund", "0", (422, "POOL_AMOUNT_INVALID", "amount")),
        ("fund", "99999999", (422, "POOL_INSUFFICIENT_FUNDS", "amount")),
        ("withdraw", "500000.01", (422, "POOL_INSUFFICIENT_FUNDS", "amount")),
        ("withdraw", "1.0000001", (400, "INVALID_INPUT", "amount")),
        ("withdraw", 5, (400, "INVALID_INPUT", "amount")),
    ],
)
def test_cash_moves_that_cannot_be_made_are_refused(pool, sponsor, path, amount, expected):
    before = written()

    response = api(sponsor).post(f"{POOLS}{pool.pk}/{path}/", {"amount": amount}, format="json")

    assert codes(response) == expected
    assert written() == before


def _margin_call(account) -> MarginCall:
    return MarginCall.objects.create(
        account=account,
        trading_date=timezone.localdate(),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=0,
    )


@pytest.mark.parametrize("path", ["fund", "withdraw"])
def test_no_cash_leaves_an_account_under_a_margin_call_through_the_pool(pool, sponsor, path):
    # given the account the cash would leave (funding: the sponsor's; withdrawing: the pool's)
    # is under a margin call
    sponsor_account = account_main(sponsor)
    _margin_call(pool.account if path == "withdraw" else sponsor_account)
    before = written()
    cash = (cash_account(sponsor_account).balance, cash_account(pool.account).balance)

    response = api(sponsor).post(f"{POOLS}{pool.pk}/{path}/", {"amount": "1000"}, format="json")

    assert codes(response) == (422, "POOL_MARGIN_CALL_OPEN", None)
    assert "margin call" in response.json()["error"]["message"]
    assert written() == before
    assert (cash_account(sponsor_account).balance, cash_account(pool.account).balance) == cash


# Members -----------------------------------------------------------------------------------


def test_the_sponsor_adds_lists_prioritizes_and_graduates_members(pool, sponsor, ada, future):
    client = api(sponsor)
    newcomer = _startup("dyad")
    submit(ada, future)

    added = client.post(
        f"{POOLS}{pool.pk}/members/", {"organization": "dyad", "priority": 5}, format="json"
    )
    listed = client.get(f"{POOLS}{pool.pk}/members/").json()["results"]
    prioritized = client.patch(
        f"{POOLS}{pool.pk}/members/{ada.pk}/", {"priority": 50}, format="json"
    )
    graduated = client.post(f"{POOLS}{pool.pk}/members/{ada.pk}/graduate/")

    assert added.status_code == 201, added.json()
    assert (added.json()["organization"], added.json()["priority"]) == ("dyad", 5)
    assert PoolMember.objects.get(pk=added.json()["id"]).organization == newcomer
    assert [m["organization"] for m in listed] == ["dyad", "ada"]  # Newest first.
    assert prioritized.json()["priority"] == 50
    assert graduated.json()["status"] == "graduated"
    assert list(PoolDemand.objects.values_list("status", flat=True)) == ["withdrawn"]
    detail = client.get(f"{POOLS}{pool.pk}/members/{ada.pk}/").json()
    assert (detail["status"], detail["credit_owed"]) == ("graduated", "0.000000")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"organization": "ada"}, (409, "POOL_ALREADY_MEMBER", "organization")),
        ({"organization": "foundry"}, (422, "POOL_MEMBER_NOT_STARTUP", "organization")),
        ({"organization": "helix"}, (422, "POOL_MEMBER_NOT_STARTUP", "organization")),
        ({"organization": "northwind"}, (422, "POOL_MEMBER_NOT_STARTUP", "organization")),
        ({"organization": "nobody"}, (404, "NOT_FOUND", "organization")),
        ({"organization": ""}, (400, "INVALID_INPUT", "organization")),
        ({"organization": "dyad", "priority": 10001}, (422, "POOL_PRIORITY_INVALID", "priority")),
        ({"organization": "dyad", "priority": "high"}, (400, "INVALID_INPUT", "priority")),
    ],
)
def test_members_that_cannot_be_added_are_refused(pool, sponsor, ada, body, expected):
    _startup("dyad")
    # A trading firm and a provider: organizations with main accounts, but not startups.
    _account("helix", Organization.Kind.TRADING_FIRM)
    _account("northwind", Organization.Kind.PROVIDER)
    before = written()

    response = api(sponsor).post(f"{POOLS}{pool.pk}/members/", body, format="json")

    assert codes(response) == expected
    assert written() == before


def test_member_changes_that_cannot_be_made_are_refused(pool, sponsor, ada, other_pool):
    client = api(sponsor)
    pool_member_graduate(member=ada, actor=None)
    theirs = other_pool.members.get()
    before = written()

    assert codes(
        client.patch(f"{POOLS}{pool.pk}/members/{ada.pk}/", {"priority": -1}, format="json")
    ) == (422, "POOL_PRIORITY_INVALID", "priority")
    assert codes(client.post(f"{POOLS}{pool.pk}/members/{ada.pk}/graduate/")) == (
        422,
        "POOL_MEMBER_GRADUATED",
        None,
    )
    # Another pool's member is no member of this one.
    assert codes(client.get(f"{POOLS}{pool.pk}/members/{theirs.pk}/"))[:2] == (404, "NOT_FOUND")
    assert codes(client.post(f"{POOLS}{pool.pk}/members/{theirs.pk}/graduate/"))[:2] == (
        404,
        "NOT_FOUND",
    )
    assert codes(client.get(f"{POOLS}{pool.pk}/members/x1/"))[:2] == (404, "NOT_FOUND")
    assert written() == before


def test_members_do_not_manage_the_pool(pool, ada, bolt, future):
    mine = api(ada.organization)
    submit(bolt, future)
    before = written()

    answers = {
        "members": mine.get(f"{POOLS}{pool.pk}/members/"),
        "member": mine.get(f"{POOLS}{pool.pk}/members/{ada.pk}/"),
        "add": mine.post(f"{POOLS}{pool.pk}/members/", {"organization": "ada"}, format="json"),
        "priority": mine.patch(
            f"{POOLS}{pool.pk}/members/{bolt.pk}/", {"priority": 1}, format="json"
        ),
        "graduate": mine.post(f"{POOLS}{pool.pk}/members/{bolt.pk}/graduate/"),
        "fund": mine.post(f"{POOLS}{pool.pk}/fund/", {"amount": "1"}, format="json"),
        "withdraw": mine.post(f"{POOLS}{pool.pk}/withdraw/", {"amount": "1"}, format="json"),
        "cut-off": mine.post(f"{POOLS}{pool.pk}/cut-off/"),
        "offer": mine.post(
            f"{POOLS}{pool.pk}/offer/",
            {"instrument": future.symbol, "quantity": 1, "price": "3"},
            format="json",
        ),
        "reallocate": mine.post(
            f"{POOLS}{pool.pk}/reallocate/",
            {"member": ada.pk, "instrument": future.symbol, "quantity": 1},
            format="json",
        ),
        "take-back": mine.post(
            f"{POOLS}{pool.pk}/take-back/",
            {"member": bolt.pk, "instrument": future.symbol, "quantity": 1},
            format="json",
        ),
    }

    assert {name: codes(r)[:2] for name, r in answers.items()} == {
        name: (403, "POOL_SPONSOR_ONLY") for name in answers
    }
    assert written() == before


# Demand ------------------------------------------------------------------------------------


def test_a_member_submits_demand_per_month(pool, ada, futures):
    first, second = futures
    client = api(ada.organization)
    body = demand_body(first, months=[month_of(second), month_of(first)], gpus=4)

    response = client.post(f"{POOLS}{pool.pk}/demands/", body, format="json")

    assert response.status_code == 201, response.json()
    rows = response.json()
    assert [(r["instrument"], r["month"], r["status"]) for r in rows] == [
        (first.symbol, month_of(first), "open"),
        (second.symbol, month_of(second), "open"),
    ]
    assert [r["quantity"] for r in rows] == [4, 4]
    assert {(r["member"], r["organization"], r["limit_price"]) for r in rows} == {
        (ada.pk, "ada", "2.500000")
    }
    assert PoolDemand.objects.filter(member=ada).count() == 2
    # or in GPU-hours, whole contracts of the month
    hours = second.gpu_hours_per_contract
    body = demand_body(second, months=[month_of(second)], gpus=None, gpu_hours=3 * hours)
    (row,) = client.post(f"{POOLS}{pool.pk}/demands/", body, format="json").json()
    assert (row["quantity"], row["gpu_hours"]) == (3, 3 * hours)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"gpus": None}, (422, "POOL_QUANTITY_INVALID", "gpu_hours")),
        ({"gpu_hours": 720}, (422, "POOL_QUANTITY_INVALID", "gpu_hours")),
        ({"gpus": 0}, (422, "POOL_QUANTITY_INVALID", "gpus")),
        ({"gpus": None, "gpu_hours": 7}, (422, "POOL_NOT_WHOLE_CONTRACTS", "gpu_hours")),
        ({"gpus": "ten"}, (400, "INVALID_INPUT", "gpus")),
        ({"months": []}, (422, "POOL_MONTHS_INVALID", "months")),
        ({"months": ["2001-01"]}, (422, "POOL_MONTHS_INVALID", "months")),
        ({"months": ["2027-13"]}, (400, "INVALID_INPUT", "months.0")),
        ({"months": "2027-01"}, (400, "INVALID_INPUT", "months")),
        ({"limit_price": "2.501"}, (422, "POOL_PRICE_INVALID", "limit_price")),
        ({"limit_price": "0"}, (422, "POOL_PRICE_INVALID", "limit_price")),
        ({"limit_price": 2.5}, (400, "INVALID_INPUT", "limit_price")),
        ({"sku": "NOPE"}, (404, "NOT_FOUND", "sku")),
        ({"sku": 7}, (400, "INVALID_INPUT", "sku")),
        ({"region": ""}, (400, "INVALID_INPUT", "region")),
    ],
)
def test_bad_demand_is_refused_with_the_field(pool, ada, future, changes, expected):
    before = written()

    response = api(ada.organization).post(
        f"{POOLS}{pool.pk}/demands/", demand_body(future, **changes), format="json"
    )

    assert codes(response) == expected
    assert written() == before


def test_the_sponsor_reads_demand_but_does_not_submit_or_change_it(pool, sponsor, ada, future):
    client = api(sponsor)
    demand = submit(ada, future)
    before = written()

    listed = client.get(f"{POOLS}{pool.pk}/demands/").json()["results"]
    one = client.get(f"{POOLS}{pool.pk}/demands/{demand.pk}/")

    assert [d["id"] for d in listed] == [demand.pk]
    assert one.json()["organization"] == "ada"
    assert codes(client.post(f"{POOLS}{pool.pk}/demands/", demand_body(future), format="json"))[
        :2
    ] == (403, "POOL_NOT_A_MEMBER")
    path = f"{POOLS}{pool.pk}/demands/{demand.pk}/"
    assert codes(client.patch(path, {"gpus": 5}, format="json"))[:2] == (403, "POOL_NOT_A_MEMBER")
    assert codes(client.delete(path))[:2] == (403, "POOL_NOT_A_MEMBER")
    assert codes(client.post(f"{POOLS}{pool.pk}/credit/repay/", {"amount": "1"}, format="json"))[
        :2
    ] == (403, "POOL_NOT_A_MEMBER")
    assert written() == before


def test_a_member_amends_and_withdraws_its_open_demand(pool, ada, future):
    client = api(ada.organization)
    demand = submit(ada, future, gpus=10, limit="2.50")
    path = f"{POOLS}{pool.pk}/demands/{demand.pk}/"

    priced = client.patch(path, {"limit_price": "2.55"}, format="json")
    sized = client.patch(path, {"gpus": 12}, format="json")
    withdrawn = client.delete(path)

    assert priced.status_code == 200, priced.json()
    assert (priced.json()["limit_price"], priced.json()["quantity"]) == ("2.550000", 10)
    assert (sized.json()["limit_price"], sized.json()["quantity"]) == ("2.550000", 12)
    assert withdrawn.json()["status"] == "withdrawn"
    # Locked once withdrawn, or after the cut-off.
    before = written()
    assert codes(client.patch(path, {"gpus": 3}, format="json")) == (
        409,
        "POOL_DEMAND_LOCKED",
        None,
    )
    assert codes(client.delete(path))[:2] == (409, "POOL_DEMAND_LOCKED")
    assert written() == before


def test_demand_changes_after_the_cut_off_time_are_conflicts(pool, ada, future):
    client = api(ada.organization)
    demand = submit(ada, future)
    path = f"{POOLS}{pool.pk}/demands/{demand.pk}/"
    Pool.objects.filter(pk=pool.pk).update(cutoff_at=timezone.now() - timedelta(seconds=5))
    before = written()

    assert codes(client.patch(path, {"gpus": 3}, format="json"))[:2] == (
        409,
        "POOL_CUTOFF_PASSED",
    )
    assert codes(client.delete(path))[:2] == (409, "POOL_CUTOFF_PASSED")
    assert written() == before


def test_bad_amendments_are_refused_with_the_field(pool, ada, future):
    client = api(ada.organization)
    demand = submit(ada, future)
    path = f"{POOLS}{pool.pk}/demands/{demand.pk}/"
    before = written()

    assert codes(client.patch(path, {"gpus": 1, "gpu_hours": 720}, format="json")) == (
        422,
        "POOL_QUANTITY_INVALID",
        "gpu_hours",
    )
    assert codes(client.patch(path, {"limit_price": "2.503"}, format="json")) == (
        422,
        "POOL_PRICE_INVALID",
        "limit_price",
    )
    assert codes(client.patch(path, {"gpus": "x"}, format="json")) == (
        400,
        "INVALID_INPUT",
        "gpus",
    )
    assert written() == before


def test_a_graduate_submits_no_demand(pool, ada, future):
    pool_member_graduate(member=ada, actor=None)
    before = written()

    response = api(ada.organization).post(
        f"{POOLS}{pool.pk}/demands/", demand_body(future), format="json"
    )

    assert codes(response)[:2] == (422, "POOL_MEMBER_GRADUATED")
    assert written() == before


# The cut-off, rounds and allocations -------------------------------------------------------


def test_the_sponsor_cuts_off_and_closes_a_round(pool, sponsor, ada, bolt, future, seller):
    client = api(sponsor)
    submit(ada, future, gpus=30)
    submit(bolt, future, gpus=10)
    place(seller, future, "sell", 20, "2.40")

    cut = client.post(f"{POOLS}{pool.pk}/cut-off/")

    assert cut.status_code == 201, cut.json()
    round_ = cut.json()
    assert (round_["number"], round_["status"], round_["allocations"]) == (1, "working", [])
    (tier,) = round_["orders"]
    assert (tier["instrument"], tier["price"], tier["quantity"]) == (future.symbol, "2.500000", 40)
    assert (tier["order"]["filled_quantity"], tier["order"]["status"]) == (20, "partially_filled")
    again = client.post(f"{POOLS}{pool.pk}/cut-off/")
    assert codes(again) == (409, "POOL_ROUND_WORKING", None)

    closed = client.post(f"{POOLS}{pool.pk}/rounds/{round_['id']}/close/")

    assert closed.status_code == 200, closed.json()
    assert closed.json()["status"] == "allocated"
    rows = {a["organization"]: a for a in closed.json()["allocations"]}
    assert {name: (a["requested"], a["quantity"]) for name, a in rows.items()} == {
        "ada": (30, 15),
        "bolt": (10, 5),
    }
    hours = future.gpu_hours_per_contract
    assert rows["ada"]["cost"] == f"{Decimal('2.40') * 15 * hours:.6f}"
    assert rows["ada"]["subsidy"] == f"{Decimal('2.40') * 15 * hours / 10:.6f}"
    before = written()
    assert codes(client.post(f"{POOLS}{pool.pk}/rounds/{round_['id']}/close/"))[:2] == (
        422,
        "POOL_ROUND_NOT_WORKING",
    )
    assert written() == before


def test_a_sponsors_key_closes_its_round_after_the_keys_maker_left(pool, sponsor, ada, future):
    # given a key of the sponsor's made by sam, who has since left the sponsor
    sam = member_add(organization=sponsor, username="sam", email="s@f.example", password="x-26")
    token = api_key_create(
        organization=sponsor, name="ops", scopes=list(ALL_SCOPES), actor=sam.user
    ).token
    Membership.objects.filter(pk=sam.pk).delete()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    submit(ada, future, gpus=10)
    round_ = pool_cut_off(pool=pool, actor=None)

    # when the key closes the round
    closed = client.post(f"{POOLS}{pool.pk}/rounds/{round_.pk}/close/")

    # then it is the sponsor's: the round closes, as the key's organization sponsors it
    assert closed.status_code == 200, closed.json()
    assert closed.json()["status"] == "allocated"
    assert PoolOrder.objects.get(round=round_).order.status == "cancelled"


def test_pool_audit_rows_name_the_api_key_that_acted(pool, sponsor, ada, future, seller):
    """An organization's keys are often made by one user: a row naming that user could not say
    which key acted. Each row names the key (its label and ``after.api_key``), and keeps the
    key's maker as the actor (none for a key made on the command line, as ada's)."""
    # given two keys of the sponsor's, both made by sam, and ada's bot
    sam = member_add(organization=sponsor, username="sam", email="s@f.example", password="x-26")
    keys, clients = {}, {}
    for name, organization, maker in (
        ("ops", sponsor, sam.user),
        ("desk", sponsor, sam.user),
        ("bot", ada.organization, None),
    ):
        created = api_key_create(
            organization=organization, name=name, scopes=list(ALL_SCOPES), actor=maker
        )
        keys[name] = created.key
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Bearer {created.token}")
    ops, desk, bot = clients["ops"], clients["desk"], clients["bot"]
    path = f"{POOLS}{pool.pk}/"
    _startup("dune")
    since = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()

    # when each acts on the pool
    answers = [
        ops.patch(path, {"subsidy_percent": "5"}, format="json"),
        ops.post(f"{path}fund/", {"amount": "10"}, format="json"),
        desk.post(f"{path}withdraw/", {"amount": "1"}, format="json"),
        desk.post(f"{path}members/", {"organization": "dune"}, format="json"),
        ops.patch(f"{path}members/{ada.pk}/", {"priority": 5}, format="json"),
        bot.post(f"{path}demands/", demand_body(future, gpus=10), format="json"),
    ]
    demand_id = answers[-1].json()[0]["id"]
    answers.append(bot.patch(f"{path}demands/{demand_id}/", {"gpus": 8}, format="json"))
    place(seller, future, "sell", 8, "2.45")
    answers.append(desk.post(f"{path}cut-off/"))
    answers.append(ops.post(f"{path}rounds/{answers[-1].json()['id']}/close/"))
    answers.append(desk.post(f"{path}members/{ada.pk}/graduate/"))
    transfer = {"member": ada.pk, "instrument": future.symbol, "quantity": 8}
    answers.append(ops.post(f"{path}take-back/", transfer, format="json"))
    offer = {"instrument": future.symbol, "quantity": 8, "price": "2.70"}
    answers.append(desk.post(f"{path}offer/", offer, format="json"))
    answers.append(ops.delete(f"{path}offer/{answers[-1].json()['id']}/"))
    assert [answer.status_code for answer in answers] == [
        200, 200, 200, 201, 200, 201, 200, 201, 200, 200, 201, 201, 200
    ]  # fmt: skip

    # then every pool row names the key that acted, and its maker
    rows = AuditEntry.objects.filter(id__gt=since, action__startswith="pool.").order_by("id")
    acted = [(row.action, row.actor_label, row.after.get("api_key"), row.actor) for row in rows]
    by = {name: (f"API key {key.prefix}", key.prefix) for name, key in keys.items()}
    assert acted == [
        ("pool.settings", *by["ops"], sam.user),
        ("pool.fund", *by["ops"], sam.user),
        ("pool.withdraw", *by["desk"], sam.user),
        ("pool.member_add", *by["desk"], sam.user),
        ("pool.member_priority", *by["ops"], sam.user),
        ("pool.demand_submit", *by["bot"], None),
        ("pool.demand_amend", *by["bot"], None),
        ("pool.cut_off", *by["desk"], sam.user),
        ("pool.round_close", *by["ops"], sam.user),
        ("pool.allocate", *by["ops"], sam.user),
        ("pool.member_graduate", *by["desk"], sam.user),
        ("pool.take_back", *by["ops"], sam.user),
        ("pool.offer", *by["desk"], sam.user),
        ("pool.offer_cancel", *by["ops"], sam.user),
    ]


def test_a_cut_off_with_no_demand_is_refused(pool, sponsor, ada):
    before = written()

    assert codes(api(sponsor).post(f"{POOLS}{pool.pk}/cut-off/")) == (
        422,
        "POOL_NO_DEMAND",
        None,
    )
    assert written() == before


def test_rounds_show_the_sponsor_everything_and_a_member_its_own(allocated, pool, sponsor, ada):
    path = f"{POOLS}{pool.pk}/rounds/"

    listed = api(ada.organization).get(path).json()["results"]
    theirs = api(sponsor).get(f"{path}{allocated.pk}/").json()
    mine = api(ada.organization).get(f"{path}{allocated.pk}/").json()

    assert [(r["id"], r["number"], r["status"]) for r in listed] == [(allocated.pk, 1, "allocated")]
    assert len(theirs["orders"]) == 1
    assert {a["organization"] for a in theirs["allocations"]} == {"ada", "bolt"}
    assert mine["orders"] is None
    assert [a["organization"] for a in mine["allocations"]] == ["ada"]


def test_allocations_are_the_members_own_or_all_for_the_sponsor(allocated, pool, sponsor, ada):
    path = f"{POOLS}{pool.pk}/allocations/"

    mine = api(ada.organization).get(path).json()["results"]
    everyone = api(sponsor).get(path).json()["results"]
    one_round = api(sponsor).get(f"{path}?round={allocated.pk}&member={ada.pk}").json()

    assert [(a["organization"], a["quantity"], a["status"]) for a in mine] == [
        ("ada", 15, "settled")
    ]
    assert {a["organization"] for a in everyone} == {"ada", "bolt"}
    assert [a["organization"] for a in one_round["results"]] == ["ada"]
    assert codes(api(sponsor).get(f"{path}?round={allocated.pk + 1000}")) == (
        404,
        "NOT_FOUND",
        "round",
    )
    assert codes(api(sponsor).get(f"{path}?round=")) == (400, "INVALID_INPUT", "round")


def test_reports_are_the_members_own_or_the_pools(allocated, pool, sponsor, ada, bolt, future):
    path = f"{POOLS}{pool.pk}/report/"
    hours = future.gpu_hours_per_contract

    mine = api(ada.organization).get(path).json()
    whole = api(sponsor).get(path).json()
    theirs = api(sponsor).get(f"{path}?member={bolt.pk}").json()

    assert [line["organization"] for line in mine["lines"]] == ["ada"]
    assert (mine["gpu_hours_requested"], mine["gpu_hours_filled"]) == (30 * hours, 15 * hours)
    assert (mine["fill_ratio"], mine["average_price"]) == ("50.00", "2.400000")
    assert mine["subsidy"] == f"{Decimal('2.40') * 15 * hours / 10:.6f}"
    assert whole["gpu_hours_filled"] == 20 * hours
    assert {line["organization"] for line in whole["lines"]} == {"ada", "bolt"}
    assert [line["organization"] for line in theirs["lines"]] == ["bolt"]
    assert codes(api(sponsor).get(f"{path}?member=abc")) == (400, "INVALID_INPUT", "member")


@pytest.mark.parametrize("endpoint", ["report", "holdings"])
def test_a_member_filter_given_twice_is_refused(allocated, pool, sponsor, ada, bolt, endpoint):
    # Given two members; when the sponsor names both in one filter
    path = f"{POOLS}{pool.pk}/{endpoint}/?member={ada.pk}&member={bolt.pk}"

    response = api(sponsor).get(path)

    # Then it is malformed (one filter, one value), not the last member's report
    assert codes(response) == (400, "INVALID_INPUT", "member")


# Capacity after a graduation, and credit ---------------------------------------------------


def test_the_sponsor_withdraws_an_offer_and_its_contracts_are_free_again(
    allocated, pool, sponsor, ada, bolt, future
):
    # given the pool took back ada's 15 and offers them all at a price nobody pays
    client = api(sponsor)
    pool_member_graduate(member=ada, actor=None)
    taken = {"member": ada.pk, "instrument": future.symbol, "quantity": 15}
    assert client.post(f"{POOLS}{pool.pk}/take-back/", taken, format="json").status_code == 201
    offered = client.post(
        f"{POOLS}{pool.pk}/offer/",
        {"instrument": future.symbol, "quantity": 15, "price": "9.00"},
        format="json",
    ).json()
    given = {"member": bolt.pk, "instrument": future.symbol, "quantity": 4}
    refused = client.post(f"{POOLS}{pool.pk}/reallocate/", given, format="json")
    assert codes(refused) == (422, "POOL_NOT_ENOUGH_HELD", "quantity")
    offer_url = f"{POOLS}{pool.pk}/offer/{offered['id']}/"
    tier_buy = PoolOrder.objects.filter(round=allocated).first().order

    # then only the sponsor withdraws it, and only the pool's sells
    assert codes(api(bolt.organization).delete(offer_url)) == (403, "POOL_SPONSOR_ONLY", None)
    assert client.delete(f"{POOLS}{pool.pk}/offer/{tier_buy.pk}/").status_code == 404
    assert client.delete(f"{POOLS}{pool.pk}/offer/999999/").status_code == 404
    withdrawn = client.delete(offer_url)
    assert withdrawn.status_code == 200, withdrawn.json()
    assert (withdrawn.json()["status"], withdrawn.json()["cancelled_quantity"]) == ("cancelled", 15)
    assert AuditEntry.objects.filter(action="pool.offer_cancel").count() == 1
    # and its contracts go to a member again; a second withdrawal finds nothing live
    assert client.post(f"{POOLS}{pool.pk}/reallocate/", given, format="json").status_code == 201
    assert codes(client.delete(offer_url))[:2] == (409, "ORDER_NOT_LIVE")


def test_holdings_show_a_members_contracts_from_the_pool_not_its_own_trading(
    allocated, pool, sponsor, ada, bolt, future, seller
):
    # given ada (15 from the pool) and bolt (5) each bought 7 more in the market themselves
    for member in (ada, bolt):
        place(seller, future, "sell", 7, "2.40")
        place(member.account, future, "buy", 7, "2.40")
    assert position_account(bolt.account, future.symbol).balance == 12

    # then the sponsor sees only what the pool gave each, and so does the member itself
    sponsor_client = api(sponsor)
    assert sponsor_client.get(f"{POOLS}{pool.pk}/holdings/?member={bolt.pk}").json() == [
        {"instrument": future.symbol, "contracts": 5}
    ]
    assert api(ada.organization).get(f"{POOLS}{pool.pk}/holdings/").json() == [
        {"instrument": future.symbol, "contracts": 15}
    ]
    # and a member that sold some of them holds fewer from the pool
    place(bolt.account, future, "sell", 10, "2.30")
    place(seller, future, "buy", 10, "2.30")
    assert sponsor_client.get(f"{POOLS}{pool.pk}/holdings/?member={bolt.pk}").json() == [
        {"instrument": future.symbol, "contracts": 2}
    ]


def test_a_take_back_refused_for_a_gtd_sell_whose_time_has_come_says_so(
    allocated, pool, sponsor, ada, future, monkeypatch
):
    """Until the matcher sweeps it, the member's GTD sell still counts as offered (a batch that
    began before its expiry may yet fill it); the refusal said only that it was offered."""
    # given the graduate ada offering its 15 contracts in a GTD sell
    pool_member_graduate(member=ada, actor=None)
    expires_at = timezone.now() + timedelta(minutes=5)
    place(ada.account, future, "sell", 15, "9.00", time_in_force="gtd", expires_at=expires_at)

    # when its time has come, before the sweep, and the sponsor takes 10 back
    monkeypatch.setattr(timezone, "now", lambda: expires_at)
    refused = api(sponsor).post(
        f"{POOLS}{pool.pk}/take-back/",
        {"member": ada.pk, "instrument": future.symbol, "quantity": 10},
        format="json",
    )

    # then it is refused, saying the 15 are in an order whose time has come
    assert codes(refused) == (422, "POOL_NOT_ENOUGH_HELD", "quantity")
    assert (
        "offers 15 of them for sale (15 of them in good-till-date orders whose time has come, "
        "which the matcher ends within about a second: try again then)"
    ) in refused.json()["error"]["message"]


def test_the_sponsor_takes_back_reallocates_and_offers_capacity(
    allocated, pool, sponsor, ada, bolt, future
):
    client = api(sponsor)
    pool_member_graduate(member=ada, actor=None)

    taken = client.post(
        f"{POOLS}{pool.pk}/take-back/",
        {"member": ada.pk, "instrument": future.symbol, "quantity": 10},
        format="json",
    )
    held = client.get(f"{POOLS}{pool.pk}/holdings/").json()
    given = client.post(
        f"{POOLS}{pool.pk}/reallocate/",
        {"member": bolt.pk, "instrument": future.symbol, "quantity": 4},
        format="json",
    )
    offered = client.post(
        f"{POOLS}{pool.pk}/offer/",
        {"instrument": future.symbol, "quantity": 6, "price": "2.70"},
        format="json",
    )

    assert taken.status_code == 201, taken.json()
    assert (taken.json()["kind"], taken.json()["quantity"], taken.json()["organization"]) == (
        "take_back",
        10,
        "ada",
    )
    assert held == [{"instrument": future.symbol, "contracts": 10}]
    assert given.status_code == 201, given.json()
    assert given.json()["kind"] == "reallocate"
    assert offered.status_code == 201, offered.json()
    assert (offered.json()["side"], offered.json()["quantity"]) == ("sell", 6)
    assert Order.objects.get(pk=offered.json()["id"]).account == pool.account
    # Each sees its own holdings and transfers.
    assert api(ada.organization).get(f"{POOLS}{pool.pk}/holdings/").json() == [
        {"instrument": future.symbol, "contracts": 5}
    ]
    assert client.get(f"{POOLS}{pool.pk}/holdings/?member={bolt.pk}").json() == [
        {"instrument": future.symbol, "contracts": 9}
    ]
    kinds = [t["kind"] for t in client.get(f"{POOLS}{pool.pk}/transfers/").json()["results"]]
    assert kinds == ["reallocate", "take_back"]
    bolts = api(bolt.organization).get(f"{POOLS}{pool.pk}/transfers/").json()["results"]
    assert [t["organization"] for t in bolts] == ["bolt"]


def test_capacity_is_reallocated_only_against_a_members_uncovered_demand(
    allocated, pool, sponsor, ada, bolt, cirrus, future
):
    # given the pool holds the 10 taken back from ada; bolt asked 10 and got 5; cirrus never
    # asked for anything
    client = api(sponsor)
    pool_member_graduate(member=ada, actor=None)
    pool_take_back(member=ada, instrument=future, quantity=10, actor=None)
    path = f"{POOLS}{pool.pk}/reallocate/"
    cash = {m: cash_account(m.account).balance for m in (bolt, cirrus)}
    before = written()

    to_cirrus = client.post(
        path, {"member": cirrus.pk, "instrument": future.symbol, "quantity": 2}, format="json"
    )
    too_many = client.post(
        path, {"member": bolt.pk, "instrument": future.symbol, "quantity": 6}, format="json"
    )

    assert codes(to_cirrus) == (422, "POOL_REALLOCATION_BEYOND_DEMAND", "member")
    assert codes(too_many) == (422, "POOL_REALLOCATION_BEYOND_DEMAND", "quantity")
    assert written() == before
    assert {m: cash_account(m.account).balance for m in (bolt, cirrus)} == cash
    assert position_account(cirrus.account, future.symbol).balance == 0
    assert position_account(bolt.account, future.symbol).balance == 5

    # bolt's 5 uncovered contracts it does receive
    given = client.post(
        path, {"member": bolt.pk, "instrument": future.symbol, "quantity": 5}, format="json"
    )
    assert given.status_code == 201, given.json()
    assert position_account(bolt.account, future.symbol).balance == 10


@pytest.mark.parametrize(
    ("path", "changes", "expected"),
    [
        ("take-back", {"quantity": 16}, (422, "POOL_NOT_ENOUGH_HELD", "quantity")),
        ("take-back", {"quantity": 0}, (422, "POOL_QUANTITY_INVALID", "quantity")),
        ("take-back", {"instrument": "NOPE"}, (422, "POOL_INSTRUMENT_INVALID", "instrument")),
        ("take-back", {"member": 10**6}, (404, "NOT_FOUND", "member")),
        ("take-back", {"member": 0}, (400, "INVALID_INPUT", "member")),
        ("reallocate", {"quantity": 1}, (422, "POOL_NOT_ENOUGH_HELD", "quantity")),
        ("reallocate", {"member": "ada"}, (422, "POOL_MEMBER_GRADUATED", "member")),
        ("offer", {"quantity": 1, "price": "2.70"}, (422, "POOL_NOT_ENOUGH_HELD", "quantity")),
        ("offer", {"quantity": 1, "price": "x"}, (400, "INVALID_INPUT", "price")),
    ],
)
def test_capacity_moves_that_cannot_be_made_are_refused(
    allocated, pool, sponsor, ada, bolt, future, path, changes, expected
):
    pool_member_graduate(member=ada, actor=None)
    # Taken back from the graduate; given to the member still active; offered by the pool.
    body = {
        "take-back": {"member": ada.pk, "instrument": future.symbol, "quantity": 1},
        "reallocate": {"member": bolt.pk, "instrument": future.symbol, "quantity": 1},
        "offer": {"instrument": future.symbol},
    }[path]
    if changes.get("member") == "ada":
        changes = {**changes, "member": ada.pk}
    before = written()

    response = api(sponsor).post(f"{POOLS}{pool.pk}/{path}/", {**body, **changes}, format="json")

    assert codes(response) == expected
    assert written() == before


def test_a_member_repays_the_credit_it_drew(pool, cirrus, future, seller):
    submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.40")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    owed = credit_outstanding(cirrus)
    assert owed > 0
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    client = api(cirrus.organization)
    path = f"{POOLS}{pool.pk}/credit/repay/"

    before = written()
    too_much = client.post(path, {"amount": "20000.01"}, format="json")
    assert codes(too_much) == (422, "POOL_AMOUNT_INVALID", "amount")
    assert written() == before
    shown = client.get(f"{POOLS}{pool.pk}/").json()["membership"]["credit_owed"]
    assert Decimal(shown) * 10**6 == owed

    repaid = client.post(path, {"amount": "100"}, format="json")

    assert repaid.status_code == 200, repaid.json()
    assert Decimal(repaid.json()["credit_owed"]) * 10**6 == owed - 100 * 10**6
    assert credit_outstanding(cirrus) == owed - 100 * 10**6


def test_a_member_under_a_margin_call_does_not_repay_credit(pool, cirrus, future, seller):
    submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.40")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    _margin_call(cirrus.account)
    owed, cash, before = credit_outstanding(cirrus), cash_account(cirrus.account).balance, written()

    response = api(cirrus.organization).post(
        f"{POOLS}{pool.pk}/credit/repay/", {"amount": "100"}, format="json"
    )

    assert codes(response) == (422, "POOL_MARGIN_CALL_OPEN", None)
    assert written() == before
    assert (credit_outstanding(cirrus), cash_account(cirrus.account).balance) == (owed, cash)


# Isolation ---------------------------------------------------------------------------------


@pytest.fixture
def world(allocated, pool, sponsor, ada, bolt, other_pool, outsider, future):
    """Both members have demand (allocated, and open), the pool a transfer."""
    open_demand = submit(bolt, future, gpus=3)
    return {
        "bolt_demand": open_demand,
        "bolt_allocation": PoolAllocation.objects.get(member=bolt),
        "ada_allocation": PoolAllocation.objects.get(member=ada),
    }


def every_pool_request(pool_id, round_id, member_id, demand_id, symbol):
    """(name, method, path, body) of every pool endpoint, for a pool and ids in it."""
    base = f"{POOLS}{pool_id}/"
    transfer = {"member": member_id, "instrument": symbol, "quantity": 1}
    return [
        ("detail", "get", base, None),
        ("settings", "patch", base, {"subsidy_percent": "50"}),
        ("fund", "post", f"{base}fund/", {"amount": "1"}),
        ("withdraw", "post", f"{base}withdraw/", {"amount": "1"}),
        ("members", "get", f"{base}members/", None),
        ("add member", "post", f"{base}members/", {"organization": "lumen"}),
        ("member", "get", f"{base}members/{member_id}/", None),
        ("priority", "patch", f"{base}members/{member_id}/", {"priority": 1}),
        ("graduate", "post", f"{base}members/{member_id}/graduate/", None),
        ("demands", "get", f"{base}demands/", None),
        ("submit", "post", f"{base}demands/", {}),
        ("demand", "get", f"{base}demands/{demand_id}/", None),
        ("amend", "patch", f"{base}demands/{demand_id}/", {"gpus": 1}),
        ("withdraw demand", "delete", f"{base}demands/{demand_id}/", None),
        ("cut-off", "post", f"{base}cut-off/", None),
        ("rounds", "get", f"{base}rounds/", None),
        ("round", "get", f"{base}rounds/{round_id}/", None),
        ("close", "post", f"{base}rounds/{round_id}/close/", None),
        ("allocations", "get", f"{base}allocations/", None),
        ("transfers", "get", f"{base}transfers/", None),
        ("report", "get", f"{base}report/", None),
        ("holdings", "get", f"{base}holdings/", None),
        ("reallocate", "post", f"{base}reallocate/", transfer),
        ("take-back", "post", f"{base}take-back/", transfer),
        ("offer", "post", f"{base}offer/", {"instrument": symbol, "quantity": 1, "price": "3"}),
        ("withdraw offer", "delete", f"{base}offer/1/", None),
        ("repay", "post", f"{base}credit/repay/", {"amount": "1"}),
    ]


@pytest.mark.parametrize("who", ["outsider", "other sponsor", "other pool's member"])
def test_a_pool_is_not_found_by_anyone_outside_it(world, pool, allocated, bolt, other_pool, who):
    organization = {
        "outsider": Organization.objects.get(slug="lumen"),
        "other sponsor": other_pool.sponsor,
        "other pool's member": other_pool.members.get().organization,
    }[who]
    client = api(organization)
    requests = every_pool_request(
        pool.pk, allocated.pk, bolt.pk, world["bolt_demand"].pk, "H100SXM"
    )
    before = written()

    answers = {
        name: codes(getattr(client, method)(path, body, format="json"))[:2]
        for name, method, path, body in requests
    }

    assert answers == {name: (404, "NOT_FOUND") for name, *_ in requests}
    assert written() == before
    assert pool.pk not in {p["id"] for p in client.get(POOLS).json()["results"]}


def test_a_sponsor_does_not_reach_another_pool_through_its_own(
    world, pool, sponsor, other_pool, allocated
):
    """Ids of the other pool's objects, asked for through the sponsor's own pool: 404."""
    client = api(other_pool.sponsor)
    theirs = other_pool.members.get()

    assert codes(client.get(f"{POOLS}{other_pool.pk}/members/{world['bolt_demand'].member_id}/"))[
        :2
    ] == (404, "NOT_FOUND")
    assert codes(client.get(f"{POOLS}{other_pool.pk}/demands/{world['bolt_demand'].pk}/"))[:2] == (
        404,
        "NOT_FOUND",
    )
    assert codes(client.get(f"{POOLS}{other_pool.pk}/rounds/{allocated.pk}/"))[:2] == (
        404,
        "NOT_FOUND",
    )
    assert codes(
        client.get(f"{POOLS}{other_pool.pk}/report/?member={world['bolt_demand'].member_id}")
    )[:2] == (404, "NOT_FOUND")
    assert client.get(f"{POOLS}{other_pool.pk}/allocations/").json()["results"] == []
    assert [m["id"] for m in client.get(f"{POOLS}{other_pool.pk}/members/").json()["results"]] == [
        theirs.pk
    ]


def test_a_member_never_sees_another_members_demand_allocations_or_report(
    world, pool, ada, bolt, future
):
    mine = api(ada.organization)
    base = f"{POOLS}{pool.pk}/"
    their_demand = world["bolt_demand"]
    path = f"{base}demands/{their_demand.pk}/"
    before = written()

    answers = {
        "their demand": mine.get(path),
        "amend it": mine.patch(path, {"gpus": 1}, format="json"),
        "withdraw it": mine.delete(path),
        "their allocations": mine.get(f"{base}allocations/?member={bolt.pk}"),
        "their report": mine.get(f"{base}report/?member={bolt.pk}"),
        "their holdings": mine.get(f"{base}holdings/?member={bolt.pk}"),
        "their transfers": mine.get(f"{base}transfers/?member={bolt.pk}"),
    }

    assert {name: codes(r)[:2] for name, r in answers.items()} == {
        name: (404, "NOT_FOUND") for name in answers
    }
    assert written() == before
    their_demand.refresh_from_db()
    assert (their_demand.status, their_demand.quantity) == ("open", 3)
    # and never listed
    demands = mine.get(f"{base}demands/").json()["results"]
    assert {d["organization"] for d in demands} == {"ada"}
    allocations = mine.get(f"{base}allocations/").json()["results"]
    assert [a["id"] for a in allocations] == [world["ada_allocation"].pk]
    report = mine.get(f"{base}report/").json()
    assert [line["allocation"] for line in report["lines"]] == [world["ada_allocation"].pk]
    assert "bolt" not in str(mine.get(f"{base}rounds/{world['ada_allocation'].round_id}/").json())
    assert "bolt" not in str(mine.get(base).json())
    # Its own id is fine.
    assert mine.get(f"{base}report/?member={ada.pk}").status_code == 200


def test_ids_that_are_no_numbers_are_not_found(pool, sponsor):
    client = api(sponsor)

    for path in ("abc/", "0/", "99999999999999999999/", f"{pool.pk}/demands/1.5/"):
        assert codes(client.get(POOLS + path))[:2] == (404, "NOT_FOUND"), path
