"""GET /api/v1/account/notices/: what the exchange told the caller's organization, newest
first, paged by cursor; and the same notice on the private feed channel."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from exchange.asgi import application
from exchange.models import Notice
from exchange.services.api_keys import api_key_create
from exchange.services.notices import notice_send
from exchange.services.pools import pool_create
from tests.exchange.api.test_auth import client_with, error_of
from tests.exchange.conftest import _account
from tests.exchange.feed.test_feed import ORDERS_PATH, bearer, connected

PATH = "/api/v1/account/notices/"


def _notice(account, key: str, kind=Notice.Kind.MARGIN_CALL) -> Notice:
    return notice_send(account=account, kind=kind, key=key, subject=f"S {key}", message="M")


def _reader(account) -> str:
    return api_key_create(organization=account.organization, name="r", scopes=["read"]).token


@pytest.mark.django_db
def test_the_organization_s_notices_newest_first_with_their_fields(buyer):
    first = _notice(buyer, "one")
    second = _notice(buyer, "two", Notice.Kind.WITHDRAWAL_PAID)

    response = client_with(_reader(buyer)).get(PATH)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [second.pk, first.pk]
    assert rows[0] == {
        "id": second.pk,
        "kind": "withdrawal_paid",
        "account": "main",
        "subject": "S two",
        "message": "M",
        "created_at": rows[0]["created_at"],
        "emailed_at": None,  # The test's transaction never commits: not emailed.
    }
    assert rows[0]["created_at"].endswith("Z")


@pytest.mark.django_db
def test_a_pool_s_notice_is_its_sponsor_s():
    sponsor = _account("atlas", "sponsor")
    pool = pool_create(sponsor=sponsor.organization, name="Cohort 7", actor=None)
    notice = _notice(pool.account, "pool")

    rows = client_with(_reader(sponsor)).get(PATH).json()["results"]

    assert [(row["id"], row["account"]) for row in rows] == [(notice.pk, pool.account.name)]


@pytest.mark.django_db
def test_notices_page_by_cursor_and_refuse_a_bad_limit(buyer):
    made = [_notice(buyer, f"n{number}").pk for number in range(3)]
    client = client_with(_reader(buyer))

    first = client.get(PATH, {"limit": 2}).json()
    second = client.get(first["next"]).json()

    assert [row["id"] for row in first["results"] + second["results"]] == made[::-1]
    assert second["next"] is None
    assert error_of(client.get(PATH, {"limit": 0}))[0] == 400
    assert error_of(client.get(PATH, {"cursor": "cD1hYmM="}))[0] == 404


@pytest.mark.django_db
def test_notices_need_a_key_with_the_read_scope(buyer):
    assert client_with().get(PATH).status_code == 401
    trader = api_key_create(organization=buyer.organization, name="t", scopes=["trade"]).token
    assert error_of(client_with(trader).get(PATH)) == (403, "AUTH_SCOPE_MISSING")


@pytest.mark.django_db(transaction=True)
def test_a_notice_reaches_the_organization_s_feed_at_its_commit_and_no_other(buyer, seller):
    tokens = [_reader(account) for account in (buyer, seller)]

    async def scenario():
        feeds = [
            await connected(WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(t)))
            for t in tokens
        ]
        for feed in feeds:
            await feed.receive_json_from()  # subscribed
        notice = await database_sync_to_async(_notice)(buyer, "feed")
        pushed = await feeds[0].receive_json_from()
        quiet = await feeds[1].receive_nothing()
        for feed in feeds:
            await feed.disconnect()
        return notice, pushed, quiet

    notice, pushed, quiet = async_to_sync(scenario)()

    rest = client_with(tokens[0]).get(PATH).json()["results"][0]
    assert pushed == {
        "type": "notice",
        **{key: rest[key] for key in ("id", "kind", "account", "subject", "message")},
        "created_at": rest["created_at"],
    }
    assert pushed["id"] == notice.pk
    assert quiet
