"""A cloud provider's journey end to end: it registers a healing buffer it holds idle (the web
page and the API), sells the months forward with physically settled futures, hedges the
depreciation of its A100s with puts, and the daily cycle delivers its GPU-hours to the buyers
against the settlement price; a block listed for resale can back only one of the two.

Orders go through the REST API where a provider's program would place them; the days are
settled by the real daily cycle (``daily_settlement_run``). Every amount expected here is
computed in this file from the rules (docs/ARCHITECTURE.md, "Collateral and settlement" and
"The daily risk cycle") with Decimal, not by the code under test.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher.runtime import Matcher
from exchange.models import Account, Instrument, Membership, Order, RiskCycle, Sku
from exchange.services.api_keys import api_key_create
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import entitlement_code
from exchange.services.listing import (
    StripSpec,
    futures_list_strip,
    options_list_chain,
    resale_list,
)
from exchange.services.participants import member_add
from exchange.services.risk_cycle import daily_settlement_run
from exchange.services.settlement_prices import settlement_price_override
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from tests.exchange.conftest import _account
from tests.exchange.ledger_figures import (
    balance,
    cash,
    entry_postings,
    fees,
    margin_held,
    scan,
    usd,
    usd_of_accounts,
)
from tests.exchange.support import listing_month, matching_in_thread, place, staff_user

# The days settled here are after today: the exchange's calendar is moved on for them.
pytestmark = pytest.mark.usefixtures("calendar_ahead")

FUNDS = Decimal("100000")
FUTURE_MAKER, FUTURE_TAKER = usd("0.20"), usd("0.50")
OPTION_MAKER, OPTION_TAKER = usd("0.10"), usd("0.25")


def api(account) -> APIClient:
    token = api_key_create(organization=account.organization, name="bot", scopes=["read", "trade"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


def funded(slug: str, kind: str):
    account = _account(slug, kind, funded=False)
    deposit_test_funds(account=account, amount=FUNDS, actor=None)
    return account


def physical_future(sku, region, month: date) -> Instrument:
    spec = StripSpec(settlement=Instrument.Settlement.PHYSICAL)
    return futures_list_strip(sku=sku, region=region, first_month=month, months=1, spec=spec)[0]


def term_of(month: date) -> tuple[datetime, datetime]:
    """The whole calendar month, UTC."""
    starts = datetime.combine(month, time.min, tzinfo=UTC)
    return starts, datetime.combine(calendar.add_months(month, 1), time.min, tzinfo=UTC)


def order(client: APIClient, instrument: Instrument, side: str, quantity: int, price: str):
    response = client.post(
        "/api/v1/orders/",
        {"instrument": instrument.symbol, "side": side, "quantity": quantity, "price": price},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()["order"]


def entitlements(client: APIClient) -> dict[str, tuple[int, int, int]]:
    """The API's entitlements: code -> (held, on hold, available)."""
    rows = client.get("/api/v1/account/entitlements/").json()
    return {row["code"]: (row["held"], row["on_hold"], row["available"]) for row in rows}


def statement(client: APIClient, asset: str = "USD") -> list[dict]:
    return client.get(f"/api/v1/account/statement/?asset={asset}").json()["results"]


def gpu_hours(account, code: str) -> int:
    return balance(f"trading:{account.pk}:gpuh:{code}")


def keys_posted_by(run) -> set[str]:
    before = Entry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    run()
    return set(Entry.objects.filter(id__gt=before).values_list("idempotency_key", flat=True))


def settle(day: date, prices: dict[Instrument, str], staff) -> set[str]:
    for instrument, price in prices.items():
        settlement_price_override(
            instrument=instrument,
            trading_date=day,
            price=Decimal(price),
            reason="Price of the day",
            actor=staff,
        )
    return keys_posted_by(lambda: daily_settlement_run(trading_date=day, actor=staff))


def test_a_provider_sells_its_healing_buffer_forward_and_delivers_it_at_expiry(client, sku, region):
    staff = staff_user("risk", Role.RISK)
    month = listing_month()
    future = physical_future(sku, region, month)
    hours = future.gpu_hours_per_contract
    code = entitlement_code(sku.code, region.code, month)
    provider = funded("northwind", "provider")
    buyer = funded("lumen", "startup")
    provider_api, buyer_api = api(provider), api(buyer)

    # given the provider registers on the capacity page the healing buffer it holds idle in
    # the delivery month: 16 GPUs of its cluster, in blocks of 8
    nora = member_add(
        organization=provider.organization,
        username="nora",
        email="nora@x.example",
        password="gpu-hours-by-the-month",
        role=Membership.Role.TRADER,
    ).user
    client.force_login(nora)
    starts, ends = term_of(month)
    response = client.post(
        reverse("web:capacity_register"),
        {
            "holder": "northwind",
            "cluster": "nw-ashburn-healing",
            "sku": sku.code,
            "region": region.code,
            "starts_at": starts.strftime("%Y-%m-%dT%H:%M"),
            "ends_at": ends.strftime("%Y-%m-%dT%H:%M"),
            "gpus": "16",
            "interconnect": "infiniband",
            "contiguous_block_gpus": "8",
        },
    )
    assert response.status_code == 302
    # then it holds the month's GPU-hours: 16 GPUs x every hour of the month
    assert entitlements(provider_api) == {code: (16 * hours, 0, 16 * hours)}
    (block,) = provider_api.get("/api/v1/capacity/").json()["results"]
    assert (block["cluster"], block["gpus"], block["held_gpus"]) == ("nw-ashburn-healing", 16, 16)

    # when it sells 10 contracts of the month at 2.50 (its ask rests: it is the maker) and
    # the startup buys them
    order(provider_api, future, "sell", 10, "2.50")
    order(buyer_api, future, "buy", 10, "2.50")

    # then each side holds the initial margin in cash, as the docs promise for futures; the
    # short's GPU-hours are not held: they stay available until the delivery
    assert margin_held(provider, future.symbol) == scan("2.50", 10, hours)
    assert cash(provider) == usd(FUNDS) - scan("2.50", 10, hours) - 10 * FUTURE_MAKER
    assert cash(buyer) == usd(FUNDS) - scan("2.50", 10, hours) - 10 * FUTURE_TAKER
    assert entitlements(provider_api) == {code: (16 * hours, 0, 16 * hours)}

    # when the future's last trading day settles at 2.60
    day = future.last_trading_day
    before = usd_of_accounts(provider, buyer)
    posted = settle(day, {future: "2.60"}, staff)

    # then the final variation margin and the delivery are posted, and nothing else
    assert posted == {
        f"variation:{day}:{provider.pk}",
        f"variation:{day}:{buyer.pk}",
        f"future-expiry:{future.pk}",
    }
    variation = usd(Decimal("0.10") * 10 * hours)
    assert (
        entry_postings(f"variation:{day}:{provider.pk}")[f"trading:{provider.pk}:cash:USD"]
        == variation
    )
    # and the delivery moves 10 contracts x the month's hours of GPU-hours to the buyer,
    # against 2.60 x those hours, the margin returned to both
    delivery = entry_postings(f"future-expiry:{future.pk}")
    paid = usd(Decimal("2.60") * 10 * hours)
    assert delivery[f"trading:{provider.pk}:gpuh:{code}"] == -10 * hours
    assert delivery[f"trading:{buyer.pk}:gpuh:{code}"] == 10 * hours
    assert delivery[f"trading:{buyer.pk}:cash:USD"] == paid - scan("2.50", 10, hours)
    assert delivery[f"trading:{provider.pk}:cash:USD"] == -paid - scan("2.50", 10, hours)
    summary = RiskCycle.objects.get(trading_date=day).summary
    assert summary["futures_expired"] == [
        {"symbol": future.symbol, "holders": 2, "delivered": 10 * hours}
    ]
    assert usd_of_accounts(provider, buyer) == before

    # so the provider sold its hours at its price, 2.50, less its fee; the buyer paid it
    assert cash(provider) == usd(FUNDS) - 10 * FUTURE_MAKER + usd(Decimal("2.50") * 10 * hours)
    assert cash(buyer) == usd(FUNDS) - 10 * FUTURE_TAKER - usd(Decimal("2.50") * 10 * hours)
    for account in (provider, buyer):
        assert margin_held(account, future.symbol) == 0
    assert usd_of_accounts(provider, buyer) + fees() == 2 * usd(FUNDS)

    # and both see it: the entitlements, the GPU-hour and dollar statements, no positions
    assert entitlements(provider_api) == {code: (6 * hours, 0, 6 * hours)}
    assert entitlements(buyer_api) == {code: (10 * hours, 0, 10 * hours)}
    described = f"Final settlement of {future.symbol} at 2.6"
    (line, issued) = statement(provider_api, code)
    assert (line["description"], line["amount"], line["balance_after"]) == (
        described,
        -10 * hours,
        6 * hours,
    )
    assert issued["amount"] == 16 * hours
    (line,) = statement(buyer_api, code)
    assert (line["description"], line["amount"], line["balance_after"]) == (
        described,
        10 * hours,
        10 * hours,
    )
    line = statement(provider_api)[0]
    assert line["description"] == described
    assert usd(line["amount"]) == paid + scan("2.50", 10, hours)
    assert usd(line["balance_after"]) == cash(provider)
    line = statement(buyer_api)[0]
    assert usd(line["amount"]) == -(paid - scan("2.50", 10, hours))
    for client_api in (provider_api, buyer_api):
        assert client_api.get("/api/v1/account/positions/").json()["positions"] == []
    lumen = member_add(
        organization=buyer.organization,
        username="alice",
        email="alice@x.example",
        password="gpu-hours-by-the-month",
        role=Membership.Role.TRADER,
    ).user
    client.force_login(lumen)
    page = client.get(reverse("web:portfolio")).content.decode()
    assert code in page and f"{10 * hours:,}" in page

    client.force_login(nora)
    page = client.get(reverse("web:portfolio")).content.decode()
    assert code in page and f"{6 * hours:,}" in page
    # (the block still counts its 16 GPUs: the delivery took the month's hours, of no block)
    (block,) = provider_api.get("/api/v1/capacity/").json()["results"]
    assert block["held_gpus"] == 16

    # and the delivered hours are the buyer's alone: the provider cannot sell them again on
    # its block's listing (8 GPUs, a lot, need 8 x the hours; it has 6 x them left)
    listing = resale_list(reservation=provider.organization.provided_capacity.get())
    with pytest.raises(OrderRejected) as refused:
        place(provider, listing, "sell", 8, "2.40")
    assert refused.value.code == OrderRejectCode.INSUFFICIENT_ENTITLEMENT
    assert gpu_hours(provider, code) == 6 * hours
    call_command("ledger_check")


def test_a_provider_hedges_its_a100s_with_puts_exercised_into_a_delivered_short(region):
    staff = staff_user("risk", Role.RISK)
    a100 = Sku.objects.create(
        code="A100",
        name="NVIDIA A100 80GB SXM",
        vendor="NVIDIA",
        generation="Ampere",
        memory_gb=80,
        interconnect="nvlink",
        release_date=date(2020, 5, 14),
        power_watts=400,
    )
    month = listing_month()
    future = physical_future(a100, region, month)
    chain = options_list_chain(
        future=future,
        reference_price=Decimal("1.20"),
        strike_step=Decimal("0.10"),
        strikes_each_side=0,
    )
    put = next(option for option in chain if option.option_type == Instrument.OptionType.PUT)
    assert (put.strike, put.settlement) == (Decimal("1.20"), Instrument.Settlement.PHYSICAL)
    hours = future.gpu_hours_per_contract
    code = entitlement_code(a100.code, region.code, month)
    provider = funded("northwind", "provider")
    writer = funded("helix", "trading_firm")
    provider_api = api(provider)

    # given the provider registers its A100 block for the month through the API
    starts, ends = term_of(month)
    response = provider_api.post(
        "/api/v1/capacity/",
        {
            "holder": "northwind",
            "cluster": "nw-ashburn-a100",
            "sku": "A100",
            "region": region.code,
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
            "gpus": 8,
            "interconnect": "infiniband",
            "contiguous_block_gpus": 8,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert entitlements(provider_api) == {code: (8 * hours, 0, 8 * hours)}

    # and buys 4 puts struck at 1.20 for 0.05 (Helix writes them, its ask resting)
    place(writer, put, "sell", 4, "0.050")
    order(provider_api, put, "buy", 4, "0.050")
    premium = usd(Decimal("0.05") * 4 * hours)
    assert cash(provider) == usd(FUNDS) - premium - 4 * OPTION_TAKER

    # when A100s fall to 1.00 on the puts' expiry
    day1 = put.last_trading_day
    day3 = future.last_trading_day
    day2 = calendar.business_days_before(day3, 1)
    assert day1 < day2 < day3
    posted = settle(day1, {future: "1.00"}, staff)

    # then the puts are exercised: the provider is short 4 futures at the strike, the writer
    # long, and variation margin marks them to 1.00 the same day
    assert f"option-expiry:{put.pk}" in posted
    exercise = entry_postings(f"option-expiry:{put.pk}")
    assert exercise[f"trading:{provider.pk}:position:{future.symbol}"] == -4
    assert exercise[f"trading:{provider.pk}:cost:{future.symbol}:USD"] == -usd(
        Decimal("1.20") * 4 * hours
    )
    assert exercise[f"trading:{writer.pk}:position:{future.symbol}"] == 4
    gain = usd(Decimal("0.20") * 4 * hours)
    assert (
        entry_postings(f"variation:{day1}:{provider.pk}")[f"trading:{provider.pk}:cash:USD"]
        == -gain
    )
    assert margin_held(provider, future.symbol) == scan("1.00", 4, hours)
    assert entitlements(provider_api) == {code: (8 * hours, 0, 8 * hours)}

    # when the future settles at 0.95, then finally at 0.90
    settle(day2, {future: "0.95"}, staff)
    before = usd_of_accounts(provider, writer)
    posted = settle(day3, {future: "0.90"}, staff)

    # then the provider delivers 4 x the month's hours to the writer at 0.90, and with the
    # variation margin it was paid on the way down it sold them at the strike: the hedge held
    assert f"future-expiry:{future.pk}" in posted
    delivery = entry_postings(f"future-expiry:{future.pk}")
    assert delivery[f"trading:{provider.pk}:gpuh:{code}"] == -4 * hours
    assert delivery[f"trading:{writer.pk}:gpuh:{code}"] == 4 * hours
    assert usd_of_accounts(provider, writer) == before
    assert cash(provider) == (
        usd(FUNDS) - premium - 4 * OPTION_TAKER + usd(Decimal("1.20") * 4 * hours)
    )
    assert cash(writer) == (
        usd(FUNDS) + premium - 4 * OPTION_MAKER - usd(Decimal("1.20") * 4 * hours)
    )
    assert margin_held(provider, future.symbol) == margin_held(writer, future.symbol) == 0
    assert entitlements(provider_api) == {code: (4 * hours, 0, 4 * hours)}
    assert entitlements(api(writer)) == {code: (4 * hours, 0, 4 * hours)}
    assert usd_of_accounts(provider, writer) + fees() == 2 * usd(FUNDS)
    call_command("ledger_check")


def month_after_a_weekday() -> date:
    """A listed month whose previous month ends on a business day: the last trading day of
    its future and of a listing of a block starting with it are then the same day."""
    month = listing_month()
    while (month - timedelta(days=1)).weekday() >= 5:
        month = calendar.add_months(month, 1)
    return month


def test_a_resale_offer_left_on_a_closed_listing_does_not_stop_the_futures_delivery(sku, region):
    staff = staff_user("risk", Role.RISK)
    month = month_after_a_weekday()
    future = physical_future(sku, region, month)
    hours = future.gpu_hours_per_contract
    code = entitlement_code(sku.code, region.code, month)
    provider = funded("northwind", "provider")
    buyer = funded("lumen", "startup")

    # given the provider's 8-GPU block of the month, listed for resale before its term, and
    # an offer of the whole block that nobody takes: it holds all its GPU-hours
    starts, ends = term_of(month)
    reservation = capacity_register(
        provider=provider.organization,
        holder=provider.organization,
        cluster="nw-ashburn-b",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=ends,
        gpus=8,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    listing = resale_list(reservation=reservation)
    assert listing.last_trading_day == future.last_trading_day
    offer = place(provider, listing, "sell", 8, "2.40")
    # and 5 futures of the month it sold
    place(provider, future, "sell", 5, "2.50")
    place(buyer, future, "buy", 5, "2.50")

    # when that day settles: both the listing and the future have stopped trading
    settle(future.last_trading_day, {future: "2.60"}, staff)

    # then the offer, which could no longer trade, is cancelled and the provider delivers:
    # its hours were not kept back for an offer past its close (until 2026-12-07 the futures
    # were cash-settled and the provider kept all its GPU-hours)
    offer.refresh_from_db()
    assert (offer.status, offer.done_reason) == (Order.Status.CANCELLED, "instrument_expired")
    assert gpu_hours(buyer, code) == 5 * hours
    assert gpu_hours(provider, code) == 3 * hours
    assert cash(provider) == usd(FUNDS) - 5 * FUTURE_MAKER + usd(Decimal("2.50") * 5 * hours)
    assert cash(buyer) == usd(FUNDS) - 5 * FUTURE_TAKER - usd(Decimal("2.50") * 5 * hours)
    call_command("ledger_check")


def test_gpu_hours_sold_on_a_block_listing_cannot_also_be_delivered_on_a_future(sku, region):
    staff = staff_user("risk", Role.RISK)
    month = listing_month()
    future = physical_future(sku, region, month)
    hours = future.gpu_hours_per_contract
    code = entitlement_code(sku.code, region.code, month)
    provider = funded("northwind", "provider")
    futures_buyer = funded("lumen", "startup")
    block_buyer = funded("quanta", "startup")

    # given the provider's 8-GPU block of the month, listed for resale, and sold on it whole
    starts, ends = term_of(month)
    reservation = capacity_register(
        provider=provider.organization,
        holder=provider.organization,
        cluster="nw-ashburn-b",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=ends,
        gpus=8,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    listing = resale_list(reservation=reservation)
    offer = place(provider, listing, "sell", 8, "2.40")
    # (the offer holds every GPU-hour of the month: a second one on the block is refused)
    assert balance(f"trading:{provider.pk}:gpuh:{code}") == 8 * hours
    with pytest.raises(OrderRejected) as refused:
        place(provider, listing, "sell", 8, "2.30")
    assert refused.value.code in {
        OrderRejectCode.INSUFFICIENT_ENTITLEMENT,
        OrderRejectCode.BLOCK_NOT_HELD,
    }
    place(block_buyer, listing, "buy", 8, "2.40")
    offer.refresh_from_db()
    assert offer.status == Order.Status.FILLED
    assert gpu_hours(block_buyer, code) == 8 * hours

    # and 5 futures of the same month it sold too (a future's short holds cash margin, not
    # GPU-hours: docs/ARCHITECTURE.md, "Collateral and settlement")
    place(provider, future, "sell", 5, "2.50")
    place(futures_buyer, future, "buy", 5, "2.50")

    # when the future's last trading day settles
    day = future.last_trading_day
    posted = settle(day, {future: "2.60"}, staff)

    # then no GPU-hour is delivered twice: the provider has none left, so the futures are
    # cash-settled (the documented fallback), and the block's buyer keeps what it bought
    assert f"future-expiry:{future.pk}" in posted
    delivery = entry_postings(f"future-expiry:{future.pk}")
    assert not [account for account in delivery if ":gpuh:" in account]
    assert gpu_hours(provider, code) == 0
    assert gpu_hours(futures_buyer, code) == 0
    assert gpu_hours(block_buyer, code) == 8 * hours
    # the futures buyer is paid its gain on the contracts in cash, and the provider, which
    # could not deliver them, pays it the delivery failure penalty: 10% of 2.60 x H a contract
    penalty = usd(Decimal("0.10") * Decimal("2.60") * 5 * hours)
    assert entry_postings(f"delivery-penalty:{future.pk}:{provider.pk}") == {
        f"trading:{provider.pk}:cash:USD": penalty,
        f"trading:{futures_buyer.pk}:cash:USD": -penalty,
    }
    assert cash(futures_buyer) == (
        usd(FUNDS) - 5 * FUTURE_TAKER + usd(Decimal("0.10") * 5 * hours) + penalty
    )
    call_command("ledger_check")


@dataclass
class Offering:
    future: Instrument
    code: str
    provider: Account
    buyer: Account
    issued: int
    offer: Order


def short_offering_its_hours(sku, region, *, settle_orders=lambda: None) -> Offering:
    """A provider short 5 futures of a month, offering its whole block of the month on its
    listing at a price nobody pays over the future's last trading day (a block starting on
    the 10th: its listing trades past the future's expiry). ``settle_orders``: run after each
    order, for a matcher the test runs itself."""
    month = listing_month()
    future = physical_future(sku, region, month)
    hours = future.gpu_hours_per_contract
    code = entitlement_code(sku.code, region.code, month)
    provider = funded("northwind", "provider")
    buyer = funded("lumen", "startup")
    starts = datetime.combine(month, time.min, tzinfo=UTC) + timedelta(days=9)
    ends = datetime.combine(calendar.add_months(month, 2), time.min, tzinfo=UTC)
    reservation = capacity_register(
        provider=provider.organization,
        holder=provider.organization,
        cluster="nw-ashburn-b",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=ends,
        gpus=8,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    issued = gpu_hours(provider, code)
    assert issued == 8 * (hours - 9 * 24)
    listing = resale_list(reservation=reservation)
    assert listing.last_trading_day > future.last_trading_day
    place(provider, future, "sell", 5, "2.50")
    settle_orders()
    place(buyer, future, "buy", 5, "2.50")
    settle_orders()
    offer = place(provider, listing, "sell", 8, "9.00")
    settle_orders()
    offer.refresh_from_db()
    assert offer.status == Order.Status.OPEN
    assert LedgerAccount.objects.get(code=f"trading:{provider.pk}:gpuh:{code}").available == 0
    return Offering(future, code, provider, buyer, issued, offer)


def assert_delivered_over_the_offer(offering: Offering) -> None:
    """The delivery took the hours the provider owes and its offer of them was cancelled (until
    2026-12-07 the offer kept them back, the futures were cash-settled and the provider kept
    the hours it had sold forward)."""
    hours = offering.future.gpu_hours_per_contract
    offering.offer.refresh_from_db()
    assert (offering.offer.status, offering.offer.done_reason) == (
        Order.Status.CANCELLED,
        "futures_delivery",
    )
    assert gpu_hours(offering.buyer, offering.code) == 5 * hours
    assert gpu_hours(offering.provider, offering.code) == offering.issued - 5 * hours
    assert cash(offering.provider) == (
        usd(FUNDS) - 5 * FUTURE_MAKER + usd(Decimal("2.50") * 5 * hours)
    )
    call_command("ledger_check")


def test_a_short_cannot_keep_the_hours_it_owes_back_by_offering_them_on_a_listing(sku, region):
    staff = staff_user("risk", Role.RISK)
    # given a provider short 5 futures, its hours offered on its block's listing
    offering = short_offering_its_hours(sku, region)

    # when the future's last trading day settles (the listing trades on)
    settle(offering.future.last_trading_day, {offering.future: "2.60"}, staff)

    # then the delivery comes first
    assert_delivered_over_the_offer(offering)


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_the_cycle_waits_for_the_offers_cancel_before_delivering(
    sku, region, external_matcher
):
    staff = staff_user("risk", Role.RISK)
    matcher = Matcher()
    offering = short_offering_its_hours(sku, region, settle_orders=matcher.process_pending)

    # when the day settles while the matcher runs in its own thread
    with matching_in_thread(matcher):
        settle(offering.future.last_trading_day, {offering.future: "2.60"}, staff)

    # then the cycle waited for the matcher to cancel the offer, and delivered
    assert_delivered_over_the_offer(offering)


@dataclass
class Purchase:
    future: Instrument
    code: str
    provider: Account
    buyer: Account
    bid: Order


def buyer_bidding_its_delivery_cash(sku, region, *, settle_orders=lambda: None) -> Purchase:
    """A provider with a whole 8-GPU block of the month, short 5 futures of it at 2.50 to a
    startup whose cash, after its fee, pays for the 5 at 2.50 to the cent, and which then
    bids for 4 futures of the next month: the bid holds cash the delivery needs.
    ``settle_orders``: run after each order, for a matcher the test runs itself."""
    month = listing_month()
    future = physical_future(sku, region, month)
    later = physical_future(sku, region, calendar.add_months(month, 1))
    hours = future.gpu_hours_per_contract
    code = entitlement_code(sku.code, region.code, month)
    provider = funded("northwind", "provider")
    buyer = _account("lumen", "startup", funded=False)
    value = Decimal("2.50") * 5 * hours
    deposit_test_funds(account=buyer, amount=Decimal("0.50") * 5 + value, actor=None)
    capacity_register(
        provider=provider.organization,
        holder=provider.organization,
        cluster="nw-ashburn-b",
        sku=sku,
        region=region,
        starts_at=datetime.combine(month, time.min, tzinfo=UTC),
        ends_at=datetime.combine(calendar.add_months(month, 1), time.min, tzinfo=UTC),
        gpus=8,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    place(provider, future, "sell", 5, "2.50")
    settle_orders()
    place(buyer, future, "buy", 5, "2.50")
    settle_orders()
    bid = place(buyer, later, "buy", 4, "2.00")
    settle_orders()
    bid.refresh_from_db()
    assert bid.status == Order.Status.OPEN
    held = LedgerAccount.objects.get(code=f"trading:{buyer.pk}:cash:USD")
    assert held.available + margin_held(buyer, future.symbol) < usd(value)
    return Purchase(future, code, provider, buyer, bid)


def assert_delivered_over_the_bid(purchase: Purchase) -> None:
    """The buyer's bid was cancelled before the delivery, which took all 5 contracts (until
    2026-12-07 the bid's hold came first: 2 of them were cash-settled and the provider lost
    the sale)."""
    hours = purchase.future.gpu_hours_per_contract
    purchase.bid.refresh_from_db()
    assert (purchase.bid.status, purchase.bid.done_reason) == (
        Order.Status.CANCELLED,
        "delivery_payment",
    )
    assert gpu_hours(purchase.buyer, purchase.code) == 5 * hours
    assert gpu_hours(purchase.provider, purchase.code) == 3 * hours
    assert cash(purchase.buyer) == 0
    assert cash(purchase.provider) == (
        usd(FUNDS) - 5 * FUTURE_MAKER + usd(Decimal("2.50") * 5 * hours)
    )
    assert not Entry.objects.filter(idempotency_key__startswith="delivery-penalty:").exists()
    call_command("ledger_check")


def test_a_buyer_bidding_the_cash_its_delivery_needs_has_its_bid_cancelled_first(sku, region):
    staff = staff_user("risk", Role.RISK)
    purchase = buyer_bidding_its_delivery_cash(sku, region)

    settle(purchase.future.last_trading_day, {purchase.future: "2.50"}, staff)

    assert_delivered_over_the_bid(purchase)


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_the_cycle_waits_for_the_bids_cancel_before_delivering(
    sku, region, external_matcher
):
    staff = staff_user("risk", Role.RISK)
    matcher = Matcher()
    purchase = buyer_bidding_its_delivery_cash(sku, region, settle_orders=matcher.process_pending)

    with matching_in_thread(matcher):
        settle(purchase.future.last_trading_day, {purchase.future: "2.50"}, staff)

    assert_delivered_over_the_bid(purchase)
