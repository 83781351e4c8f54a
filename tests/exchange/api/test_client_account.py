"""The typed client's account, capacity, funding, pricing and market-data methods against the
API (the Django test transport of ``test_client_pools``): each answer read whole, every field
of the API's JSON equal to its typed field (``reads_whole``)."""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from exchange.models import MarginCall, Organization, ReservedCapacity, SettlementPrice
from exchange_client import (
    ApiError,
    ExchangeClient,
    HedgeRecommendation,
    SellHedgeRecommendation,
)
from tests.exchange.api.test_capacity import starts
from tests.exchange.api.test_client_pools import client_of
from tests.exchange.api.test_market import listed  # noqa: F401  (a fixture)
from tests.exchange.api.test_pricing import chains, strip  # noqa: F401  (fixtures)
from tests.exchange.conftest import _account
from tests.exchange.funding.conftest import test_funds_mode  # noqa: F401  (a fixture)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def reads_whole(typed: Any, raw: Any, path: str = "") -> list[str]:
    """Where a typed answer differs from the API's JSON for it: every key of the JSON must be a
    field of the same value (a decimal string as ``Decimal``, a time as an aware ``datetime``,
    an object or a list of them field by field)."""
    if isinstance(raw, dict):
        differences = []
        for key, value in raw.items():
            name = "tiers" if key == "orders" and hasattr(typed, "tiers") else key
            if not hasattr(typed, name):
                differences.append(f"{path}{key}: missing")
            else:
                differences += reads_whole(getattr(typed, name), value, f"{path}{key}.")
        return differences
    if isinstance(raw, list):
        if not isinstance(typed, list) or len(typed) != len(raw):
            return [f"{path}: {typed!r} is not {raw!r}"]
        return [
            difference
            for index, (item, value) in enumerate(zip(typed, raw, strict=True))
            for difference in reads_whole(item, value, f"{path}{index}.")
        ]
    if isinstance(raw, str) and isinstance(typed, Decimal):
        same = typed == Decimal(raw)
    elif isinstance(raw, str) and hasattr(typed, "tzinfo"):
        same = typed.isoformat() == raw.replace("Z", "+00:00") and typed.tzinfo is not None
    else:
        same = typed == raw and type(typed) is type(raw)
    return [] if same else [f"{path}: {typed!r} is not {raw!r}"]


def raw(client: ExchangeClient, method: str, path: str, **options: Any) -> Any:
    return client.request(method, path, **options)[1]


def test_an_instrument_and_a_curve(listed, buyer, seller):  # noqa: F811
    client = client_of(buyer.organization)
    front = listed["front"]
    place(buyer, front, "buy", 1, "2.40")
    place(seller, front, "sell", 1, "2.50")

    instrument = client.instrument(listed["call"].symbol)
    curve = client.curve("H100SXM", "USEAST")

    assert (
        reads_whole(instrument, raw(client, "GET", f"instruments/{listed['call'].symbol}/")) == []
    )
    assert reads_whole(curve, raw(client, "GET", "curves/H100SXM/USEAST/")) == []
    assert (instrument.underlying, instrument.halted_by) == (front.symbol, None)
    assert (curve.points[0].symbol, curve.points[0].price) == (front.symbol, Decimal("2.45"))
    assert curve.points[0].source == "mid"


def test_the_margin_call_statement_entitlements_and_keys(buyer, seller, listing):
    client = client_of(seller.organization)
    assert client.margin_call() is None
    MarginCall.objects.create(
        account=seller, trading_date=date(2026, 12, 4), required=10, maintenance=8, held=5
    )
    block_code = next(row.asset for row in client.balances() if row.asset != "USD")

    call = client.margin_call()
    usd = list(client.statement())
    hours = list(client.statement(block_code))
    entitlements = client.entitlements()
    keys = client.keys()

    assert call is not None
    assert reads_whole(call, raw(client, "GET", "account/margin-call/")["margin_call"]) == []
    assert call.trading_date == "2026-12-04"
    statement = raw(client, "GET", "account/statement/")["results"]
    assert reads_whole(usd, statement) == []
    assert isinstance(usd[0].amount, Decimal) and isinstance(hours[0].amount, int)
    assert reads_whole(entitlements, raw(client, "GET", "account/entitlements/")) == []
    assert block_code in {entitlement.code for entitlement in entitlements}
    assert reads_whole(keys, raw(client, "GET", "keys/")) == []
    assert [key.scopes for key in keys] == [["read", "trade", "transfer"]]
    revoked = client.revoke_key(keys[0].prefix)
    assert (revoked.prefix, revoked.revoked_at is not None) == (keys[0].prefix, True)


def test_the_notices_are_read_whole_and_a_feed_message_as_one(buyer):
    from exchange.models import Notice as NoticeRow
    from exchange.services.notices import notice_send
    from exchange_client import Notice

    client = client_of(buyer.organization)
    made = notice_send(
        account=buyer,
        kind=NoticeRow.Kind.MARGIN_CALL,
        key="call",
        subject="Margin call: $12.00 due",
        message="Amount due: $12.00.",
    )

    notices = list(client.notices())

    assert reads_whole(notices, raw(client, "GET", "account/notices/")["results"]) == []
    assert [(notice.id, notice.kind) for notice in notices] == [(made.pk, "margin_call")]
    pushed = {
        "type": "notice",
        "id": made.pk,
        "kind": "margin_call",
        "account": "main",
        "subject": made.subject,
        "message": made.message,
        "created_at": "2026-12-07T10:00:00Z",
    }
    assert Notice.of_message(pushed).emailed_at is None


def test_capacity_registered_listed_and_read(seller, buyer, sku, region):
    provider = client_of(seller.organization)
    begins = starts()

    registered = provider.register_capacity(
        holder=buyer.organization.slug,
        cluster="nw-ashburn-h100-a",
        sku=sku.code,
        region=region.code,
        starts_at=begins,
        ends_at=begins + timedelta(days=40),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    holder = client_of(buyer.organization)
    listed_instrument = holder.list_for_resale(registered.id, lot_gpus=4)
    held = list(holder.capacity())

    assert registered.id == ReservedCapacity.objects.get().pk
    assert (
        registered.starts_at,
        registered.held_gpus,
        registered.listed_symbol,
        registered.listing_trading,
        registered.resale_from,
    ) == (begins, 0, None, False, begins)
    assert reads_whole(held, raw(holder, "GET", "capacity/")["results"]) == []
    assert (held[0].listed_symbol, held[0].listing_trading, held[0].held_gpus) == (
        listed_instrument.symbol,
        True,
        16,
    )
    assert (listed_instrument.kind, listed_instrument.lot_size) == ("resale", 4)


@pytest.mark.usefixtures("test_funds_mode")
def test_deposits_and_withdrawals():
    payer = _account("payer", Organization.Kind.STARTUP, funded=False)
    client = client_of(payer.organization)

    deposit = client.deposit(Decimal("2500.00"))
    withdrawal = client.withdraw(Decimal("100.50"))
    deposits, withdrawals = list(client.deposits()), list(client.withdrawals())

    assert (deposit.amount, deposit.method, deposit.checkout_url) == (
        Decimal("2500.00"),
        "test_funds",
        None,
    )
    assert (withdrawal.amount, withdrawal.status, withdrawal.reviewed_at) == (
        Decimal("100.50"),
        "requested",
        None,
    )
    assert reads_whole(deposits, raw(client, "GET", "funding/deposits/")["results"]) == []
    assert reads_whole(withdrawals, raw(client, "GET", "funding/withdrawals/")["results"]) == []
    with pytest.raises(ApiError) as refused:
        client.withdraw(Decimal("1000000.00"))
    assert refused.value.code == "FUNDING_INSUFFICIENT_FUNDS"
    cancelled = client.cancel_withdrawal(withdrawal.id)
    assert (cancelled.id, cancelled.status) == (withdrawal.id, "cancelled")
    with pytest.raises(ApiError) as again:
        client.cancel_withdrawal(withdrawal.id)
    assert (again.value.status, again.value.code) == (409, "FUNDING_INVALID_STATUS_CHANGE")


def test_option_quotes_implied_volatility_and_the_hedge(strip, chains, buyer):  # noqa: F811
    client = client_of(buyer.organization, sign=True)
    call = next(option for option in chains.values() if option.option_type == "call")
    terms = {
        "forward": Decimal("2.40"),
        "strike": Decimal("2.50"),
        "years": Decimal("0.5"),
        "option_type": "call",
    }

    quote = client.option_quote(**terms, volatility=Decimal("0.6"))
    listed_quote = client.option_quote(instrument=call.symbol)
    sigma = client.implied_volatility(**terms, price=quote.price)
    need = {
        "sku": "H100SXM",
        "region": "USEAST",
        "gpus": 8,
        "first_month": f"{strip[0].delivery_start:%Y-%m}",
        "months": 3,
    }
    hedge = client.hedge(**need)

    body = {key: str(value) for key, value in terms.items()}
    assert (
        reads_whole(
            quote, raw(client, "POST", "pricing/option-quote/", body={**body, "volatility": "0.6"})
        )
        == []
    )
    assert (listed_quote.instrument, listed_quote.forward_source) == (call.symbol, "settlement")
    assert abs(sigma - Decimal("0.6")) < Decimal("0.0001")
    assert reads_whole(hedge, raw(client, "POST", "pricing/hedge/", body=need)) == []
    assert [leg.contracts for leg in hedge.futures.legs] == [8, 8, 8]
    assert hedge.cap.calls[0].available and not hedge.cap.calls[2].available
    first, third = hedge.cap.calls[0], hedge.cap.calls[2]
    assert (first.volatility, first.volatility_source) == (Decimal("0.600000"), "default")
    assert (third.volatility, third.volatility_source) == (None, None)
    # and each month says the volatility it is simulated at: its call's, else its future's
    assert [(leg.volatility, leg.volatility_source) for leg in hedge.futures.legs] == [
        (Decimal("0.600000"), "default")
    ] * 3


def test_a_sellers_hedge_is_read_whole_and_not_as_a_buyers(strip, chains, seller):  # noqa: F811
    client = client_of(seller.organization)
    capacity = {
        "sku": "H100SXM",
        "region": "USEAST",
        "gpus": 8,
        "first_month": f"{strip[0].delivery_start:%Y-%m}",
        "months": 3,
    }

    sale = client.sell_hedge(**capacity, volatility=Decimal("0.5"))

    answer = raw(
        client, "POST", "pricing/hedge/", body={**capacity, "side": "sell", "volatility": "0.5"}
    )
    assert reads_whole(sale, answer) == []
    assert sale.side == "sell"
    assert [leg.contracts for leg in sale.futures.legs] == [8, 8, 8]
    assert sale.futures.expected_revenue == sale.futures.worst_case_revenue
    assert sale.floor.puts[0].available and sale.floor.puts[0].option_type == "put"
    assert sale.collar.calls[0].volatility_source == "requested"
    assert {(leg.volatility, leg.volatility_source) for leg in sale.futures.legs} == {
        (Decimal("0.500000"), "requested")
    }
    assert sale.floor.worst_case_revenue > sale.unhedged.worst_case_revenue
    assert sale.collar.premium == sale.floor.premium - sum(
        leg.premium for leg in sale.collar.calls if leg.premium is not None
    )
    # and neither answer is read as the other's
    with pytest.raises(ValueError, match="SellHedgeRecommendation"):
        HedgeRecommendation.of(answer)
    with pytest.raises(ValueError, match="HedgeRecommendation"):
        SellHedgeRecommendation.of(raw(client, "POST", "pricing/hedge/", body=capacity))
    # and a capacity the API refuses is its error
    with pytest.raises(ApiError) as refused:
        client.sell_hedge(**{**capacity, "months": 4})
    assert (refused.value.code, refused.value.field) == ("PRICING_MONTH_NOT_LISTED", "months")


def test_me_balances_positions_settlements_and_the_chain(strip, chains, buyer):  # noqa: F811
    # given: the buyer holds one contract of the last month (the strip's trade at 2.10)
    client = client_of(buyer.organization)
    front, traded = strip[0], strip[2]

    me = client.me()
    balances = client.balances()
    portfolio = client.positions()
    settlements = client.settlements(front.symbol)
    chain = client.chain(front.symbol)

    assert reads_whole(me, raw(client, "GET", "me/")) == []
    assert (me.organization, me.account) == (buyer.organization.slug, buyer.pk)
    assert reads_whole(balances, raw(client, "GET", "account/balances/")) == []
    assert (balances[0].asset, type(balances[0].available)) == ("USD", Decimal)
    assert reads_whole(portfolio, raw(client, "GET", "account/positions/")) == []
    (position,) = portfolio.positions
    assert (position.symbol, position.contracts, position.mark_price) == (
        traded.symbol,
        1,
        Decimal("2.10"),
    )
    settlements_path = f"instruments/{front.symbol}/settlements/"
    assert reads_whole(settlements, raw(client, "GET", settlements_path)) == []
    assert [settlement.price for settlement in settlements] == [Decimal("2.40")]
    assert reads_whole(chain, raw(client, "GET", f"instruments/{front.symbol}/chain/")) == []
    assert (chain.forward, chain.forward_source, len(chain.rows)) == (
        Decimal("2.40"),
        "settlement",
        7,
    )
    assert chain.rows[0].call is not None and chain.rows[0].call.fair_value is not None


def test_the_clients_settlements_default_to_the_apis_page(future, buyer):
    """The client asked for 10 settlement prices by default where the API answers 50: a
    trader reading a volatility from the history got a fifth of it without asking."""
    start = date(2026, 10, 1)
    SettlementPrice.objects.bulk_create(
        SettlementPrice(
            instrument=future,
            trading_date=start + timedelta(days=day),
            price=Decimal("2.40"),
            source=SettlementPrice.Source.OVERRIDE,
        )
        for day in range(12)
    )

    settlements = client_of(buyer.organization).settlements(future.symbol)

    assert len(settlements) == 12
