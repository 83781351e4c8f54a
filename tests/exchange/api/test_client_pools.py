"""The typed client (``exchange_client``) through a pool's cycle: a member's demand, the
sponsor's cut-off and close, the allocations and the reports, and a refusal as ``ApiError``.

The client's requests session is served by the Django test client (no server, no network): the
same requests, headers and bodies the client sends over HTTP."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.test import Client
from django.utils import timezone
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from exchange.models import LIVE_STATUSES, Order, Organization
from exchange.services.api_keys import api_key_create
from exchange.services.funding import deposit_test_funds
from exchange.services.pools import pool_create, pool_fund, pool_member_add
from exchange_client import ApiError, CancelAllTimer, ExchangeClient, Placement, RateLimit
from tests.exchange.conftest import _account
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

BASE_URL = "http://testserver"


class DjangoAdapter(BaseAdapter):
    """A requests transport that hands each request to Django's test client; with a
    ``script_name``, as a proxy serving the exchange under that prefix does: it takes only
    paths under it (others are a 404 of its own) and passes the prefix on as SCRIPT_NAME
    (``says_prefix`` False: it strips the prefix and does not say so)."""

    def __init__(self, script_name: str = "", *, says_prefix: bool = True) -> None:
        super().__init__()
        self.client = Client()
        self.script_name = script_name
        self.says_prefix = says_prefix
        self.paths: list[str] = []  # Each request's path, as the client sent it.

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url)
        self.paths.append(parts.path)
        if not parts.path.startswith(f"{self.script_name}/"):
            return self._answer(request, 404, b"", {}, "Not Found")
        path = parts.path.removeprefix(self.script_name)
        target = f"{path}?{parts.query}" if parts.query else path
        headers = {
            f"HTTP_{name.upper().replace('-', '_')}": value
            for name, value in request.headers.items()
            if name.lower() not in {"content-type", "content-length"}
        }
        answer = self.client.generic(
            request.method,
            target,
            data=request.body or b"",
            content_type=request.headers.get("Content-Type", "application/octet-stream"),
            **({"SCRIPT_NAME": self.script_name} if self.script_name and self.says_prefix else {}),
            **headers,
        )
        return self._answer(
            request,
            answer.status_code,
            answer.content,
            dict(answer.headers.items()),
            answer.reason_phrase,
        )

    def _answer(
        self,
        request: requests.PreparedRequest,
        status: int,
        content: bytes,
        headers: dict[str, str],
        reason: str,
    ) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = content
        response.headers = CaseInsensitiveDict(headers)
        response.reason = reason
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def client_of(organization: Organization, *, sign: bool = False) -> ExchangeClient:
    token = api_key_create(
        organization=organization, name="client", scopes=["read", "trade", "transfer"]
    ).token
    session = requests.Session()
    session.mount(BASE_URL, DjangoAdapter())
    return ExchangeClient(BASE_URL, token, sign=sign, session=session)


def test_the_example_of_the_api_guide_runs(future, buyer, seller, maker, capsys):
    # given the guide's example, pointed at this test's API and instrument
    guide = (Path(settings.BASE_DIR) / "docs" / "API.md").read_text()
    example = guide.split("## The Python client", 1)[1].split("```python\n", 1)[1].split("```")[0]
    connect = 'client = ExchangeClient("http://127.0.0.1:8000", "gx_...", sign=False)'
    assert connect in example and "H100SXM-USEAST-202701" in example
    example = example.replace(connect, "client = connect()").replace(
        "H100SXM-USEAST-202701", future.symbol
    )
    place(seller, future, "sell", 10, "2.600")
    place(maker, future, "buy", 3, "2.400")

    # when it runs as the buyer
    exec(
        compile(example, "docs/API.md", "exec"), {"connect": lambda: client_of(buyer.organization)}
    )

    # then it placed, replaced, cancelled and read back its orders and fills
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["best bid 2.400000 best ask 2.600000", "open 4 []", "open", "open"]
    assert [line.split()[1:] for line in lines[4:7]] == [["cancelled", "cancel_all"]] * 3
    assert lines[7] == "0 contracts filled"
    assert not Order.objects.filter(account=buyer, status__in=LIVE_STATUSES).exists()
    assert Order.objects.filter(account=buyer, done_reason="cancel_all").exists()


@pytest.fixture
def pool():
    sponsor = _account("foundry", Organization.Kind.SPONSOR).organization
    pool = pool_create(sponsor=sponsor, name="Seed GPUs", subsidy_percent=Decimal("10"), actor=None)
    pool_fund(pool=pool, amount=Decimal("500000"), actor=None)
    return pool


def test_a_pool_cycle_through_the_client(pool, future, seller):
    ada = _account("ada", Organization.Kind.STARTUP).organization
    bolt = _account("bolt", Organization.Kind.STARTUP).organization
    for organization in (ada, bolt):
        pool_member_add(pool=pool, organization=organization, actor=None)
    sponsor, member, other = client_of(pool.sponsor), client_of(ada, sign=True), client_of(bolt)
    month = f"{future.delivery_start:%Y-%m}"
    hours = future.gpu_hours_per_contract

    # given each member's demand, and sellers in the book
    (mine,) = member.submit_demand(
        pool.pk,
        sku=future.sku.code,
        region=future.region.code,
        months=[month],
        gpu_hours=30 * hours,
        limit_price=Decimal("2.50"),
    )
    other.submit_demand(
        pool.pk,
        sku=future.sku.code,
        region=future.region.code,
        months=[month],
        gpus=10,
        limit_price=Decimal("2.50"),
    )
    place(seller, future, "sell", 20, "2.40")

    # when the sponsor cuts off and closes the round
    cut = sponsor.cut_off(pool.pk)
    closed = sponsor.close_round(pool.pk, cut.id)

    # then
    assert [p.role for p in member.pools()] == ["member"]
    assert [(p.name, p.role, p.subsidy_percent) for p in sponsor.pools()] == [
        ("Seed GPUs", "sponsor", Decimal("10.00"))
    ]
    assert (mine.instrument, mine.month, mine.quantity, mine.status) == (
        future.symbol,
        month,
        30,
        "open",
    )
    assert cut.status == "working" and cut.tiers is not None
    (tier,) = cut.tiers
    assert (tier.quantity, tier.price) == (40, Decimal("2.50"))
    assert tier.order is not None and tier.order.filled_quantity == 20
    assert closed.status == "allocated"
    assert {(a.organization, a.quantity) for a in closed.allocations} == {("ada", 15), ("bolt", 5)}
    (own,) = member.pool_allocations(pool.pk)
    assert (own.organization, own.quantity, own.cost) == ("ada", 15, Decimal("2.40") * 15 * hours)
    assert own.subsidy == own.cost / 10
    assert len(list(sponsor.pool_allocations(pool.pk, round_id=cut.id))) == 2
    report = member.pool_report(pool.pk)
    assert (report.gpu_hours_filled, report.fill_ratio) == (15 * hours, Decimal("50.00"))
    assert report.average_price == Decimal("2.40")
    assert sponsor.pool_report(pool.pk).gpu_hours_filled == 20 * hours
    assert [d.status for d in member.demands(pool.pk)] == ["allocated"]
    membership = member.pool(pool.pk).membership
    assert membership is not None and membership.organization == "ada"


def test_refusals_and_other_members_ids_are_api_errors(pool, future):
    ada = _account("ada", Organization.Kind.STARTUP).organization
    bolt = _account("bolt", Organization.Kind.STARTUP).organization
    for organization in (ada, bolt):
        pool_member_add(pool=pool, organization=organization, actor=None)
    member, other = client_of(ada), client_of(bolt)
    (theirs,) = other.submit_demand(
        pool.pk,
        sku=future.sku.code,
        region=future.region.code,
        months=[f"{future.delivery_start:%Y-%m}"],
        gpus=1,
        limit_price=Decimal("2.50"),
    )

    with pytest.raises(ApiError) as refused:
        member.submit_demand(
            pool.pk,
            sku=future.sku.code,
            region=future.region.code,
            months=[f"{future.delivery_start:%Y-%m}"],
            gpus=1,
            limit_price=Decimal("2.503"),
        )
    with pytest.raises(ApiError) as hidden:
        member.withdraw_demand(pool.pk, theirs.id)
    with pytest.raises(ApiError) as forbidden:
        member.cut_off(pool.pk)

    assert (refused.value.status, refused.value.code, refused.value.field) == (
        422,
        "POOL_PRICE_INVALID",
        "limit_price",
    )
    assert (hidden.value.status, hidden.value.code) == (404, "NOT_FOUND")
    assert (forbidden.value.status, forbidden.value.code) == (403, "POOL_SPONSOR_ONLY")
    assert [d.id for d in other.demands(pool.pk, status="open")] == [theirs.id]


def test_the_client_keeps_the_rate_limit_standing_and_the_wait_of_a_refusal(buyer, monkeypatch):
    from exchange.api import throttling

    monkeypatch.setitem(throttling.PerKeyRateThrottle.THROTTLE_RATES, "key", "2/minute")
    monkeypatch.setattr(throttling.time, "monotonic", lambda: 1000.0)
    client = client_of(buyer.organization)

    client.me()
    after_first = client.rate_limit
    client.me()
    with pytest.raises(ApiError) as refused:
        client.me()

    assert after_first == RateLimit(limit=2, remaining=1, reset_seconds=60)
    assert client.rate_limit == RateLimit(limit=2, remaining=0, reset_seconds=60)
    assert (refused.value.status, refused.value.code) == (429, "RATE_LIMITED")
    assert refused.value.retry_after_seconds == 60


def test_a_signing_client_whose_clock_drifts_syncs_with_the_exchange(buyer, monkeypatch):
    import time
    from types import SimpleNamespace

    import exchange_client.client as client_module

    client = client_of(buyer.organization, sign=True)
    # given: the client's clock two minutes behind the exchange's (30 s window)
    monkeypatch.setattr(client_module, "time", SimpleNamespace(time=lambda: time.time() - 120))

    with pytest.raises(ApiError) as refused:
        client.me()
    offset = client.sync_clock()
    me = client.me()

    assert refused.value.code == "AUTH_SIGNATURE_EXPIRED"
    assert 119 < offset < 121
    assert me.organization == buyer.organization.slug
    # and its now() reads the exchange's time, not the machine's two minutes behind
    assert abs((client.now() - timezone.now()).total_seconds()) < 1


def test_a_signing_client_may_send_the_same_request_twice_in_a_second(buyer, monkeypatch):
    from types import SimpleNamespace

    import exchange_client.client as client_module

    client = client_of(buyer.organization, sign=True)
    # given a clock that reads the same second for both requests
    second = float(int(time.time()))
    ticks = iter([second + 0.25, second + 0.75])
    monkeypatch.setattr(client_module, "time", SimpleNamespace(time=lambda: next(ticks)))

    # then both are answered: each signs its own timestamp
    assert client.me().organization == client.me().organization == buyer.organization.slug


def test_the_client_finds_an_order_by_its_client_order_id(future, buyer):
    client = client_of(buyer.organization)
    placed = client.place_order(
        instrument=future.symbol,
        side="buy",
        quantity=2,
        price=Decimal("2.40"),
        client_order_id="lost-answer-1",
    )

    found = client.order_by_client_order_id("lost-answer-1")

    assert found is not None and found.id == placed.order.id
    assert client.order_by_client_order_id("never-sent") is None
    assert [order.id for order in client.orders(side="buy")] == [placed.order.id]


def test_the_client_places_a_market_order_without_naming_its_time_in_force(future, buyer, seller):
    client_of(seller.organization).place_order(
        instrument=future.symbol, side="sell", quantity=1, price=Decimal("2.50")
    )

    placed = client_of(buyer.organization).place_order(
        instrument=future.symbol, side="buy", quantity=3, type="market"
    )

    # An IOC order: what it could not fill is cancelled at once.
    assert (placed.order.time_in_force, placed.order.status) == ("ioc", "cancelled")
    assert placed.order.filled_quantity == 1


def test_the_client_reads_an_orders_history(future, buyer):
    client = client_of(buyer.organization)
    placed = client.place_order(
        instrument=future.symbol, side="buy", quantity=1, price=Decimal("2.40")
    )
    client.cancel(placed.order.id)

    events = list(client.order_history(placed.order.id))

    assert [(e.from_status, e.to_status, e.reason) for e in events] == [
        ("open", "cancelled", "user"),
        ("new", "open", "accepted"),
    ]
    assert events[0].sequence > events[1].sequence and events[0].at is not None
    with pytest.raises(ApiError) as missing:
        list(client.order_history(placed.order.id + 1000))
    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")


def test_the_client_catches_up_on_fills_and_orders_since_a_time(future, buyer, seller):
    client = client_of(buyer.organization)
    before = datetime.now(UTC) - timedelta(seconds=5)
    place(seller, future, "sell", 1, "2.500")
    bought = client.place_order(
        instrument=future.symbol, side="buy", quantity=1, price=Decimal("2.50")
    )
    later = datetime.now(UTC) + timedelta(hours=1)

    assert [fill.order_id for fill in client.fills(since=before)] == [bought.order.id]
    assert list(client.fills(since=before, until=before + timedelta(seconds=1))) == []
    assert [order.id for order in client.orders(updated_since=before)] == [bought.order.id]
    assert list(client.orders(updated_since=later)) == []
    with pytest.raises(ValueError, match="no time zone"):
        list(client.fills(since=datetime(2026, 12, 1, 9)))  # noqa: DTZ001 (naive on purpose)


def test_an_error_answer_that_is_not_json_is_still_an_api_error(buyer):
    client = client_of(buyer.organization)

    with pytest.raises(ApiError) as refused:
        client.request("GET", "/no-such-page/")  # Django's HTML 404, as a proxy's page would be.

    assert (refused.value.status, refused.value.code) == (404, "HTTP_ERROR")
    assert refused.value.message == "Not Found"


def test_the_client_places_a_batch_and_gets_each_orders_result(future, buyer, seller):
    place(seller, future, "sell", 1, "2.500")
    client = client_of(buyer.organization)

    results = client.place_orders(
        [
            {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": Decimal("2.50")},
            {"instrument": "NOPE-2099", "side": "buy", "quantity": 1, "price": Decimal("2.40")},
            {"instrument": future.symbol, "side": "buy", "quantity": 2, "price": Decimal("2.40")},
        ]
    )
    with pytest.raises(ApiError) as malformed:
        client.place_orders([{"instrument": future.symbol, "side": "hold", "quantity": 1}])

    filled, unknown, resting = results
    assert isinstance(filled, Placement) and filled.created
    assert (filled.order.status, [fill.price for fill in filled.fills]) == (
        "filled",
        [Decimal("2.5")],
    )
    assert isinstance(unknown, ApiError)
    assert (unknown.status, unknown.code, unknown.field) == (
        404,
        "ORDER_UNKNOWN_INSTRUMENT",
        "instrument",
    )
    assert isinstance(resting, Placement) and resting.resting_quantity == 2
    assert (malformed.value.status, malformed.value.field) == (400, "orders.0.side")


def test_the_client_cancels_orders_by_id_and_gets_each_result(future, buyer, seller):
    client = client_of(buyer.organization)
    bid = client.place_order(
        instrument=future.symbol, side="buy", quantity=1, price=Decimal("2.40")
    )
    theirs = place(seller, future, "sell", 1, "2.600")

    cancelled, missing = client.cancel_orders([bid.order.id, theirs.pk])

    assert (cancelled.id, cancelled.status, cancelled.done_reason) == (
        bid.order.id,
        "cancelled",
        "user",
    )
    assert bid.order.done_reason == ""  # Resting when placed.
    assert isinstance(missing, ApiError)
    assert (missing.status, missing.code) == (404, "NOT_FOUND")


def test_the_client_cancels_orders_by_client_order_id(future, buyer):
    client = client_of(buyer.organization)
    bid = client.place_order(
        instrument=future.symbol,
        side="buy",
        quantity=1,
        price=Decimal("2.40"),
        client_order_id="mm-7",
    )

    cancelled, unknown = client.cancel_orders(client_order_ids=["mm-7", "mm-8"])

    assert (cancelled.id, cancelled.status) == (bid.order.id, "cancelled")
    assert isinstance(unknown, ApiError) and unknown.status == 404
    for wrong in ({}, {"order_ids": [1], "client_order_ids": ["mm-7"]}):
        with pytest.raises(ValueError, match="one of them"):
            client.cancel_orders(**wrong)


def test_the_client_arms_reads_and_disarms_the_dead_mans_switch(buyer):
    client = client_of(buyer.organization)

    armed = client.cancel_all_after(20)

    assert armed.armed and armed.timeout_seconds == 20
    assert armed.fires_at is not None and armed.armed_at is not None
    assert (armed.fires_at - armed.armed_at).total_seconds() == 20
    assert client.cancel_all_timer() == armed
    disarmed = client.cancel_all_after(0)
    assert disarmed == CancelAllTimer(armed=False, timeout_seconds=0, fires_at=None, armed_at=None)
    with pytest.raises(ApiError) as refused:
        client.cancel_all_after(1)
    assert (refused.value.status, refused.value.code) == (422, "ORDER_CANCEL_AFTER_TIMEOUT_INVALID")


def test_the_rest_of_a_pools_life_through_the_client(future, seller):
    from tests.exchange.api.test_client_account import raw, reads_whole

    # given a sponsor's new pool, funded, and two startups in it; the first has no cash, so
    # the pool lends it what its allocation costs
    sponsor = client_of(_account("forge", Organization.Kind.SPONSOR).organization)
    ada = _account("ada", Organization.Kind.STARTUP, funded=False)
    bolt = _account("bolt", Organization.Kind.STARTUP).organization
    created = sponsor.create_pool(
        name="Forge GPUs", subsidy_percent=Decimal("10"), credit_line=Decimal("50000")
    )
    pool_id = created.id
    funded = sponsor.fund_pool(pool_id, Decimal("500000"))
    back = sponsor.withdraw_from_pool(pool_id, Decimal("1000.00"))
    updated = sponsor.update_pool(pool_id, rule="priority")
    first = sponsor.add_pool_member(pool_id, "ada", priority=2)
    second = sponsor.add_pool_member(pool_id, bolt.slug)
    raised = sponsor.set_member_priority(pool_id, second.id, 5)
    member = client_of(ada.organization)
    month = f"{future.delivery_start:%Y-%m}"
    (demand,) = member.submit_demand(
        pool_id,
        sku=future.sku.code,
        region=future.region.code,
        months=[month],
        gpus=4,
        limit_price=Decimal("2.50"),
    )
    amended = member.amend_demand(pool_id, demand.id, gpus=12)
    place(seller, future, "sell", 10, "2.40")

    # when the round allocates, the sponsor takes two contracts back, gives one again and
    # offers the other, and the member repays some of its credit
    cut = sponsor.cut_off(pool_id)
    sponsor.close_round(pool_id, cut.id)
    taken = sponsor.take_back(pool_id, member=first.id, instrument=future.symbol, quantity=2)
    given = sponsor.reallocate(pool_id, member=first.id, instrument=future.symbol, quantity=1)
    offered = sponsor.offer(pool_id, instrument=future.symbol, quantity=1, price=Decimal("2.60"))
    withdrawn = sponsor.withdraw_offer(pool_id, offered.id)
    owed = sponsor.pool_member(pool_id, first.id).credit_owed
    deposit_test_funds(account=ada, amount=Decimal("100"), actor=None)
    repaid = member.repay_credit(pool_id, Decimal("100"))
    graduated = sponsor.graduate_member(pool_id, second.id)

    # then each answer is read whole
    assert (created.role, created.sponsor_name, created.membership) == ("sponsor", "Forge", None)
    assert created.cash is not None and created.cash.posted == 0
    assert (funded.cash.posted, back.cash.posted) == (Decimal(500000), Decimal(499000))
    assert updated.rule == "priority"
    assert (first.organization, first.priority, raised.priority) == ("ada", 2, 5)
    assert reads_whole(sponsor.pool(pool_id), raw(sponsor, "GET", f"pools/{pool_id}/")) == []
    members = list(sponsor.pool_members(pool_id))
    assert reads_whole(members, raw(sponsor, "GET", f"pools/{pool_id}/members/")["results"]) == []
    assert (amended.id, amended.quantity, amended.sku) == (demand.id, 12, future.sku.code)
    demand_path = f"pools/{pool_id}/demands/{demand.id}/"
    assert reads_whole(member.demand(pool_id, demand.id), raw(member, "GET", demand_path)) == []
    (round_,) = sponsor.pool_rounds(pool_id)
    assert (round_.id, round_.status, round_.allocated_at is not None) == (
        cut.id,
        "allocated",
        True,
    )
    round_path = f"pools/{pool_id}/rounds/{cut.id}/"
    assert reads_whole(sponsor.pool_round(pool_id, cut.id), raw(sponsor, "GET", round_path)) == []
    report_path = f"pools/{pool_id}/report/"
    assert reads_whole(sponsor.pool_report(pool_id), raw(sponsor, "GET", report_path)) == []
    assert (taken.kind, taken.quantity, given.kind, given.quantity) == (
        "take_back",
        2,
        "reallocate",
        1,
    )
    transfers = list(sponsor.pool_transfers(pool_id, member=first.id))
    transfers_path = f"pools/{pool_id}/transfers/"
    assert reads_whole(transfers, raw(sponsor, "GET", transfers_path)["results"]) == []
    assert [(h.instrument, h.contracts) for h in member.pool_holdings(pool_id)] == [
        (future.symbol, 9)
    ]
    assert [(h.instrument, h.contracts) for h in sponsor.pool_holdings(pool_id)] == [
        (future.symbol, 1)
    ]
    assert (offered.side, offered.price, withdrawn.status) == ("sell", Decimal("2.60"), "cancelled")
    assert owed is not None and owed > 100
    assert (repaid.amount, repaid.credit_owed) == (Decimal(100), owed - 100)
    assert graduated.status == "graduated"
