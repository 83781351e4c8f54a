"""Every error envelope reaches the typed client's caller as ``ApiError`` with the answer's
status, code and field, as docs/API.md's table of errors lists them."""

from decimal import Decimal

import pytest

from exchange.models import Order, Organization
from exchange.services.api_keys import api_key_revoke
from exchange.services.pools import pool_create, pool_member_add
from exchange_client import ApiError
from tests.exchange.api.test_client_pools import client_of
from tests.exchange.conftest import _account
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def refusal(call) -> tuple[int, str, str | None]:
    with pytest.raises(ApiError) as refused:
        call()
    return refused.value.status, refused.value.code, refused.value.field


def test_each_kind_of_error_is_an_api_error_with_its_status_code_and_field(future, buyer, seller):
    client = client_of(buyer.organization)
    place(seller, future, "sell", 1, "2.50")
    filled = client.place_order(
        instrument=future.symbol, side="buy", quantity=1, price=Decimal("2.50")
    ).order

    def malformed():
        body = {"instrument": future.symbol, "side": "buy", "quantity": "4", "price": "2.40"}
        client.request("POST", "orders/", body=body)

    answers = {
        "malformed": refusal(malformed),
        "unknown instrument": refusal(
            lambda: client.place_order(
                instrument="H100SXM-NOWHERE-202701", side="buy", quantity=1, price=Decimal("2")
            )
        ),
        "method": refusal(lambda: client.request("PUT", "orders/")),
        "not live": refusal(lambda: client.cancel(filled.id)),
        "off the tick": refusal(
            lambda: client.place_order(
                instrument=future.symbol, side="buy", quantity=1, price=Decimal("2.4001")
            )
        ),
    }
    batch = client.place_orders(
        [
            {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": Decimal("2.40")},
            {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": Decimal("2.4001")},
        ]
    )
    api_key_revoke(key=buyer.organization.api_keys.get())
    answers["revoked"] = refusal(client.me)

    assert answers == {
        "malformed": (400, "INVALID_INPUT", "quantity"),
        "unknown instrument": (404, "ORDER_UNKNOWN_INSTRUMENT", "instrument"),
        "method": (405, "METHOD_NOT_ALLOWED", None),
        "not live": (409, "ORDER_NOT_LIVE", "order"),
        "off the tick": (422, "ORDER_PRICE_OFF_TICK", "price"),
        "revoked": (401, "AUTH_KEY_REVOKED", None),
    }
    refused = batch[1]
    assert isinstance(refused, ApiError)
    assert (refused.status, refused.code, refused.field) == answers["off the tick"]


def test_the_clients_cancel_all_of_an_empty_symbol_cancels_nothing(futures, buyer):
    # given live bids in two instruments
    client = client_of(buyer.organization)
    bids = [place(buyer, instrument, "buy", 1, "2.40") for instrument in futures[:2]]

    # when a program cancels "all of one instrument" whose symbol it left empty
    with pytest.raises(ApiError) as refused:
        client.cancel_all("")

    # then the exchange refuses it, and both bids still rest: it was never a cancel of all
    assert (refused.value.status, refused.value.code) == (400, "INVALID_INPUT")
    assert refused.value.field == "instrument"
    assert [Order.objects.get(pk=bid.pk).status for bid in bids] == [Order.Status.OPEN] * 2
    assert client.cancel_all(futures[0].symbol) == 1
    assert client.cancel_all() == 1


def test_prices_are_sent_in_digits_whatever_the_decimals_exponent(future, buyer, pool_member):
    # given prices a program may well compute: normalized decimals, which str() writes with an
    # exponent ("1E+1"), which the API refuses as malformed
    client = client_of(buyer.organization)
    ten = Decimal("10.00").normalize()
    assert str(ten) == "1E+1"

    # when it checks, places and replaces orders at them, and submits demand at one
    checked = client.dry_run(instrument=future.symbol, side="buy", quantity=1, price=ten)
    placed = client.place_orders(
        [{"instrument": future.symbol, "side": "buy", "quantity": 1, "price": ten}]
    )
    order = client.place_order(instrument=future.symbol, side="buy", quantity=1, price=ten).order
    replaced = client.replace(order.id, price=Decimal("2E+1"), quantity=1)
    pool, member = pool_member
    (demand,) = member.submit_demand(
        pool.pk,
        sku=future.sku.code,
        region=future.region.code,
        months=[f"{future.delivery_start:%Y-%m}"],
        gpus=1,
        limit_price=ten,
    )

    # then each went through at its price
    assert checked.instrument == future.symbol
    assert [result.order.price for result in placed if not isinstance(result, ApiError)] == [ten]
    assert (order.price, replaced.price, demand.limit_price) == (ten, Decimal(20), ten)


@pytest.fixture
def pool_member():
    sponsor = _account("foundry", Organization.Kind.SPONSOR).organization
    pool = pool_create(sponsor=sponsor, name="Seed GPUs", actor=None)
    member = _account("ada", Organization.Kind.STARTUP).organization
    pool_member_add(pool=pool, organization=member, actor=None)
    return pool, client_of(member)
