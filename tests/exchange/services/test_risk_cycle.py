"""The daily risk cycle, one rule at a time: physical delivery of an expiring future, cash
exercise of options, losses beyond cash and margin (the deficit), liquidation, the matcher's
reload of what the cycle changed, idempotence and missing prices.

Every amount expected here is computed in this file from the rules (the module docstring of
``exchange.services.risk_cycle``) with Decimal, not by the code under test; the margin of a
futures position is the price scan range of its value, ``0.15 x price x contracts x H``.
"""

import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from statistics import NormalDist

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.errors import OrderRejectCode, OrderRejected, RiskError, RiskErrorCode
from exchange.models import (
    AuditEntry,
    Instrument,
    MarginCall,
    Notice,
    Order,
    OrderCommand,
    RiskCycle,
    SettlementPrice,
)
from exchange.services import margin
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import micros_to_usd
from exchange.services.listing import StripSpec, futures_list_strip, options_list_chain
from exchange.services.risk_cycle import (
    _fallback_pairs,
    _FallbackPair,
    account_liquidate,
    daily_settlement_run,
    margin_call_review,
)
from exchange.services.settlement_prices import settlement_price_override
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from ledger.selectors import ledger_problems
from tests.exchange.conftest import _account
from tests.exchange.ledger_figures import (
    balance,
    cash,
    cost,
    deficit,
    entry_postings,
    fees,
    margin_held,
    position,
    scan,
    usd,
    usd_of_accounts,
)
from tests.exchange.support import listing_month, place, staff_user

# The days settled here are after today: the exchange's calendar is moved on for them.
pytestmark = pytest.mark.usefixtures("calendar_ahead")


def gpuh_code(account, future) -> str:
    """The account's GPU-hour entitlements of the future's SKU, region and delivery month."""
    commodity = f"GPUH-{future.sku.code}-{future.region.code}-{future.delivery_start:%Y%m}"
    return f"trading:{account.pk}:gpuh:{commodity}"


def business_day_after(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def override(instrument, day: date, price: str, staff) -> None:
    settlement_price_override(
        instrument=instrument,
        trading_date=day,
        price=Decimal(price),
        reason="Price of the day from brokers",
        actor=staff,
    )


@pytest.fixture
def staff(db):
    return staff_user("risk", Role.RISK)


@pytest.fixture
def physical(sku, region) -> Instrument:
    """A physically settled monthly future: at expiry it turns into GPU-hour entitlements."""
    spec = StripSpec(settlement=Instrument.Settlement.PHYSICAL)
    [future] = futures_list_strip(
        sku=sku, region=region, first_month=listing_month(), months=1, spec=spec
    )
    return future


def register_capacity(account, future, *, gpus: int, days: int | None = None) -> None:
    """Issue ``account`` GPU-hours of the future's delivery month: ``gpus`` GPUs from the
    month's first hour, for the whole month or ``days`` days of it."""
    starts = datetime.combine(future.delivery_start, time(0), tzinfo=UTC)
    ends = (
        datetime.combine(future.delivery_end, time(0), tzinfo=UTC)
        if days is None
        else starts + timedelta(days=days)
    )
    capacity_register(
        provider=account.organization,
        holder=account.organization,
        cluster=f"nw-ashburn-{gpus}-{days}",
        sku=future.sku,
        region=future.region,
        starts_at=starts,
        ends_at=ends,
        gpus=gpus,
        interconnect="infiniband",
        contiguous_block_gpus=1,
    )


# 1. Physical delivery ---------------------------------------------------------------------


def test_a_physical_future_delivers_gpu_hours_against_payment_on_its_last_trading_day(
    physical, staff
):
    hours = physical.gpu_hours_per_contract
    symbol = physical.symbol
    # given a provider holding 2 contracts' worth of GPU-hours of the delivery month
    provider = _account("northwind", "provider")
    startup = _account("lumen", "startup")
    register_capacity(provider, physical, gpus=2)
    assert balance(gpuh_code(provider, physical)) == 2 * hours
    # and short 2 contracts at 2.50 against a startup long 2
    place(provider, physical, "sell", 2, "2.50")
    place(startup, physical, "buy", 2, "2.50")
    margin = scan("2.50", 2, hours)
    assert margin_held(provider, symbol) == margin_held(startup, symbol) == margin
    before = {account: cash(account) for account in (provider, startup)}
    total = usd_of_accounts(provider, startup)

    # when the final settlement price is 2.80 (an override) and the last day is settled
    day = physical.last_trading_day
    override(physical, day, "2.80", staff)
    cycle = daily_settlement_run(trading_date=day, actor=staff)

    # then the last variation margin marks the 2 contracts from 2.50 to 2.80
    gain = usd(Decimal("0.30") * 2 * hours)
    assert entry_postings(f"variation:{day}:{startup.pk}") == {
        f"trading:{startup.pk}:cost:{symbol}:USD": gain,
        f"trading:{startup.pk}:cash:USD": -gain,
    }
    assert entry_postings(f"variation:{day}:{provider.pk}") == {
        f"trading:{provider.pk}:cost:{symbol}:USD": -gain,
        f"trading:{provider.pk}:cash:USD": gain,
    }
    # and the expiry moves 2 x H GPU-hours to the long, 2 x H x 2.80 USD to the short, returns
    # both margins to cash and closes positions and cost memos (marked at 2.80)
    payment = usd(Decimal("2.80") * 2 * hours)
    assert entry_postings(f"future-expiry:{physical.pk}") == {
        gpuh_code(startup, physical): 2 * hours,
        gpuh_code(provider, physical): -2 * hours,
        f"trading:{startup.pk}:cash:USD": payment - margin,
        f"trading:{provider.pk}:cash:USD": -payment - margin,
        f"trading:{startup.pk}:margin:{symbol}:USD": margin,
        f"trading:{provider.pk}:margin:{symbol}:USD": margin,
        f"trading:{startup.pk}:position:{symbol}": -2,
        f"trading:{provider.pk}:position:{symbol}": 2,
        f"trading:{startup.pk}:cost:{symbol}:USD": -payment,
        f"trading:{provider.pk}:cost:{symbol}:USD": payment,
    }
    expiry = Entry.objects.get(idempotency_key=f"future-expiry:{physical.pk}")
    assert expiry.metadata["delivered"] == {str(startup.pk): 2, str(provider.pk): -2}
    assert cycle.summary["futures_expired"] == [
        {"symbol": symbol, "holders": 2, "delivered": 2 * hours}
    ]
    # so both are flat, with nothing held, and the startup owns the GPU-hours
    for account in (provider, startup):
        assert position(account, symbol) == 0
        assert cost(account, symbol) == 0
        assert margin_held(account, symbol) == 0
    assert balance(gpuh_code(startup, physical)) == 2 * hours
    assert balance(gpuh_code(provider, physical)) == 0
    assert cash(startup) == before[startup] + gain + margin - payment
    assert cash(provider) == before[provider] - gain + margin + payment
    assert usd_of_accounts(provider, startup) == total
    assert Instrument.objects.get(pk=physical.pk).status == Instrument.Status.EXPIRED
    assert ledger_problems() == []


def test_a_short_without_enough_gpu_hours_delivers_what_it_holds_and_cash_settles_the_rest(
    physical, staff
):
    hours = physical.gpu_hours_per_contract
    symbol = physical.symbol
    # given a provider short 2 contracts holding GPU-hours for 1 of them and 240 hours more
    # (1 GPU all month, another for 10 days): less than 2 contracts' worth
    provider = _account("northwind", "provider")
    startup = _account("lumen", "startup")
    register_capacity(provider, physical, gpus=1)
    register_capacity(provider, physical, gpus=1, days=10)
    held_hours = hours + 240
    assert balance(gpuh_code(provider, physical)) == held_hours < 2 * hours
    place(provider, physical, "sell", 2, "2.50")
    place(startup, physical, "buy", 2, "2.50")
    margin = scan("2.50", 2, hours)
    before = {account: cash(account) for account in (provider, startup)}

    # when the last trading day settles at 2.80
    day = physical.last_trading_day
    override(physical, day, "2.80", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then 1 contract is delivered (H GPU-hours against H x 2.80), the other is cash-settled:
    # no GPU-hours and no payment, its variation margin already paid at 2.80, and the provider
    # pays the startup the delivery failure penalty on it: 10% of 2.80 x H
    gain = usd(Decimal("0.30") * 2 * hours)
    payment = usd(Decimal("2.80") * hours)
    penalty = usd(Decimal("0.10") * Decimal("2.80") * hours)
    final = entry_postings(f"future-expiry:{physical.pk}")
    assert final[gpuh_code(startup, physical)] == hours
    assert final[gpuh_code(provider, physical)] == -hours
    assert final[f"trading:{startup.pk}:cash:USD"] == payment - margin
    assert final[f"trading:{provider.pk}:cash:USD"] == -payment - margin
    assert final[f"trading:{startup.pk}:position:{symbol}"] == -2
    assert final[f"trading:{provider.pk}:position:{symbol}"] == 2
    expiry = Entry.objects.get(idempotency_key=f"future-expiry:{physical.pk}")
    assert expiry.metadata["delivered"] == {str(startup.pk): 1, str(provider.pk): -1}
    # so the provider keeps the 240 hours it could not deliver a contract with
    assert balance(gpuh_code(startup, physical)) == hours
    assert balance(gpuh_code(provider, physical)) == held_hours - hours == 240
    for account in (provider, startup):
        assert position(account, symbol) == 0
        assert cost(account, symbol) == 0
        assert margin_held(account, symbol) == 0
    assert entry_postings(f"delivery-penalty:{physical.pk}:{provider.pk}") == {
        f"trading:{provider.pk}:cash:USD": penalty,
        f"trading:{startup.pk}:cash:USD": -penalty,
    }
    penalty_entry = Entry.objects.get(
        idempotency_key=f"delivery-penalty:{physical.pk}:{provider.pk}"
    )
    assert penalty_entry.description == (
        f"Delivery failure penalty on {symbol}: 1 contract(s) not delivered, "
        f"0.1 of 2.8 x {hours} GPU-hours each"
    )
    assert penalty_entry.metadata["paid_to"] == {str(startup.pk): penalty}
    assert cash(startup) == before[startup] + gain + margin - payment + penalty
    assert cash(provider) == before[provider] - gain + margin + payment - penalty
    assert ledger_problems() == []


@pytest.fixture
def physical_months(sku, region) -> list[Instrument]:
    """Two physically settled monthly futures, the first delivered before the second."""
    spec = StripSpec(settlement=Instrument.Settlement.PHYSICAL)
    return futures_list_strip(
        sku=sku, region=region, first_month=listing_month(), months=2, spec=spec
    )


def funded_with(slug: str, kind: str, amount: int):
    """An account funded with ``amount`` micro-USD."""
    account = _account(slug, kind, funded=False)
    deposit_test_funds(account=account, amount=Decimal(amount) / 10**6, actor=None)
    return account


def test_a_long_without_the_cash_pays_the_penalty_to_the_short_it_failed(physical, staff):
    hours = physical.gpu_hours_per_contract
    symbol = physical.symbol
    # given a provider holding the GPU-hours of 2 contracts, short 2 at 2.50 to a startup
    # whose cash, after its fee, pays for 1 contract at the final 2.50 and half of another
    provider = _account("northwind", "provider")
    register_capacity(provider, physical, gpus=2)
    margin = scan("2.50", 2, hours)
    value = usd(Decimal("2.50") * hours)
    taker_fee = usd(Decimal("0.50") * 2)
    startup = funded_with("lumen", "startup", taker_fee + value + value // 2)
    place(provider, physical, "sell", 2, "2.50")
    place(startup, physical, "buy", 2, "2.50")
    assert margin_held(startup, symbol) == margin
    before = {account: cash(account) for account in (provider, startup)}
    total = usd_of_accounts(provider, startup)

    # when the last trading day settles at 2.50
    day = physical.last_trading_day
    override(physical, day, "2.50", staff)
    cycle = daily_settlement_run(trading_date=day, actor=staff)

    # then 1 contract is delivered, the other is cash-settled: the provider keeps its hours
    expiry = Entry.objects.get(idempotency_key=f"future-expiry:{physical.pk}")
    assert expiry.metadata["delivered"] == {str(startup.pk): 1, str(provider.pk): -1}
    assert balance(gpuh_code(startup, physical)) == hours
    assert balance(gpuh_code(provider, physical)) == hours
    # and the startup, which could not pay for it, pays the provider 10% of its value
    penalty = usd(Decimal("0.10") * Decimal("2.50") * hours)
    assert entry_postings(f"delivery-penalty:{physical.pk}:{startup.pk}") == {
        f"trading:{startup.pk}:cash:USD": penalty,
        f"trading:{provider.pk}:cash:USD": -penalty,
    }
    description = Entry.objects.get(
        idempotency_key=f"delivery-penalty:{physical.pk}:{startup.pk}"
    ).description
    assert description == (
        f"Delivery failure penalty on {symbol}: 1 contract(s) not paid for, "
        f"0.1 of 2.5 x {hours} GPU-hours each"
    )
    assert not Entry.objects.filter(
        idempotency_key=f"delivery-penalty:{physical.pk}:{provider.pk}"
    ).exists()
    assert cycle.summary["delivery_penalties"] == [
        {"symbol": symbol, "account": startup.pk, "side": "long", "contracts": 1, "amount": penalty}
    ]
    # and the startup is told, with the amount it paid (the provider is told nothing)
    [told] = Notice.objects.filter(kind=Notice.Kind.DELIVERY_FAILED)
    assert (told.account, told.key) == (startup, f"delivery-penalty:{physical.pk}:{startup.pk}")
    assert told.subject == f"Delivery failure on {symbol}: ${micros_to_usd(penalty):,.2f} penalty"
    assert "1 contract(s) not paid for" in told.message
    # and settle_day, asked for the day again, says so
    said = StringIO()
    call_command("settle_day", date=day.isoformat(), stdout=said)
    assert (
        f"delivery failure penalty on {symbol}: account {startup.pk} paid "
        f"{micros_to_usd(penalty)} USD, 1 contract(s) not paid for"
    ) in said.getvalue()
    # (its cash: the margin back, one contract paid, the penalty from what was left)
    assert cash(startup) == before[startup] + margin - value - penalty
    assert cash(provider) == before[provider] + margin + value + penalty
    assert deficit(startup) == 0
    assert usd_of_accounts(provider, startup) == total
    assert ledger_problems() == []


def test_a_short_that_cannot_pay_the_penalty_owes_it_and_is_called(physical, staff):
    hours = physical.gpu_hours_per_contract
    symbol = physical.symbol
    # given a provider without GPU-hours of the month, short 2 at 2.50, whose cash is only its
    # margin and fee (an order holds the taker's fee; the maker pays 0.20 a contract of it)
    margin = scan("2.50", 2, hours)
    provider = funded_with("northwind", "provider", margin + usd(Decimal("0.50") * 2))
    startup = _account("lumen", "startup")
    place(provider, physical, "sell", 2, "2.50")
    place(startup, physical, "buy", 2, "2.50")
    left = usd(Decimal("0.30") * 2)
    assert cash(provider) == left
    before = cash(startup)
    total = usd_of_accounts(provider, startup)

    # when the last trading day settles at 2.80
    day = physical.last_trading_day
    override(physical, day, "2.80", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then nothing is delivered; the provider's variation loss comes from its cash and margin,
    # what is left pays part of the penalty on both contracts and the rest is a deficit
    loss = usd(Decimal("0.30") * 2 * hours)
    penalty = usd(Decimal("0.10") * Decimal("2.80") * 2 * hours)
    paid = left + margin - loss
    assert 0 < paid < penalty
    expiry = Entry.objects.get(idempotency_key=f"future-expiry:{physical.pk}")
    assert expiry.metadata["delivered"] == {}
    assert entry_postings(f"delivery-penalty:{physical.pk}:{provider.pk}") == {
        f"trading:{provider.pk}:cash:USD": paid,
        f"trading:{provider.pk}:deficit:USD": penalty - paid,
        f"trading:{startup.pk}:cash:USD": -penalty,
    }
    assert cash(provider) == 0
    assert deficit(provider) == penalty - paid
    # the startup is paid its gain and the whole penalty
    assert cash(startup) == before + loss + margin + penalty
    call = MarginCall.objects.get(account=provider, status=MarginCall.Status.OPEN)
    assert call.deficit == deficit(provider)
    assert position(provider, symbol) == position(startup, symbol) == 0
    assert usd_of_accounts(provider, startup) == total
    assert ledger_problems() == []

    # and the day run again changes nothing
    entries = Entry.objects.count()
    balances = {account.code: account.balance for account in LedgerAccount.objects.all()}
    daily_settlement_run(trading_date=day, actor=staff)
    assert Entry.objects.count() == entries
    assert {account.code: account.balance for account in LedgerAccount.objects.all()} == balances
    call_command("ledger_check")


def test_a_long_and_a_short_that_both_fail_pay_each_other_nothing(physical, staff):
    hours = physical.gpu_hours_per_contract
    # given a provider without GPU-hours, short 1, and a startup long 1 that cannot pay for it
    provider = _account("northwind", "provider")
    startup = funded_with("lumen", "startup", usd(Decimal("0.50")) + scan("2.50", 1, hours))
    place(provider, physical, "sell", 1, "2.50")
    place(startup, physical, "buy", 1, "2.50")
    before = {account: cash(account) for account in (provider, startup)}

    # when the last trading day settles at 2.50
    day = physical.last_trading_day
    override(physical, day, "2.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then the contract is cash-settled; neither lost a trade the other could have made
    assert not Entry.objects.filter(idempotency_key__startswith="delivery-penalty:").exists()
    margin = scan("2.50", 1, hours)
    assert cash(provider) == before[provider] + margin
    assert cash(startup) == before[startup] + margin
    assert ledger_problems() == []


def test_the_penalty_is_paid_to_the_long_paired_with_each_failing_short(physical, staff):
    hours = physical.gpu_hours_per_contract
    # given two providers short 1 each, the first with the GPU-hours, the second without, and
    # two startups long 1 each, both able to pay
    able = _account("northwind", "provider")
    failing = _account("coreweft", "provider")
    register_capacity(able, physical, gpus=1)
    first = _account("lumen", "startup")
    second = _account("quanta", "startup")
    place(able, physical, "sell", 1, "2.50")
    place(first, physical, "buy", 1, "2.50")
    place(failing, physical, "sell", 1, "2.50")
    place(second, physical, "buy", 1, "2.50")

    # when the last trading day settles at 2.50
    day = physical.last_trading_day
    override(physical, day, "2.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then the first long in account order takes the delivery; the other is cash-settled
    # and paid by the short that failed
    longs = sorted([first, second], key=lambda account: account.pk)
    assert balance(gpuh_code(longs[0], physical)) == hours
    assert balance(gpuh_code(longs[1], physical)) == 0
    penalty = usd(Decimal("0.10") * Decimal("2.50") * hours)
    assert entry_postings(f"delivery-penalty:{physical.pk}:{failing.pk}") == {
        f"trading:{failing.pk}:cash:USD": penalty,
        f"trading:{longs[1].pk}:cash:USD": -penalty,
    }
    assert Entry.objects.filter(idempotency_key__startswith="delivery-penalty:").count() == 1
    assert ledger_problems() == []


def test_the_fallback_pairs_failures_first_in_account_order():
    # given longs 1 (3 contracts, pays for 1) and 2 (2, pays for both), shorts 3 (4, delivers
    # all) and 4 (1, delivers none): 3 are delivered, to 1 then 2, from 3
    held = {1: 3, 2: 2, 3: -4, 4: -1}
    able = {1: 1, 2: 2, 3: -4, 4: 0}
    delivered = {1: 1, 2: 2, 3: -3}

    pairs = _fallback_pairs(held, able, delivered)

    # then long 1's 2 failed contracts meet short 3's one left undelivered (which it could
    # have delivered: long 1 pays it) and short 4's failed one (both failed: nothing moves)
    assert pairs == [
        _FallbackPair(long=1, short=3, contracts=1, long_failed=True, short_failed=False),
        _FallbackPair(long=1, short=4, contracts=1, long_failed=True, short_failed=True),
    ]
    assert _fallback_pairs({1: 2, 2: -2}, {1: 2, 2: -2}, {1: 2, 2: -2}) == []


def test_no_penalty_when_it_is_set_to_zero(physical, staff, settings):
    settings.EXCHANGE_DELIVERY_FAILURE_PENALTY = Decimal(0)
    provider = _account("northwind", "provider")
    startup = _account("lumen", "startup")
    place(provider, physical, "sell", 1, "2.50")
    place(startup, physical, "buy", 1, "2.50")
    day = physical.last_trading_day
    override(physical, day, "2.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    assert (
        Entry.objects.get(idempotency_key=f"future-expiry:{physical.pk}").metadata["delivered"]
        == {}
    )
    assert not Entry.objects.filter(idempotency_key__startswith="delivery-penalty:").exists()


def long_with_a_resting_bid(physical_months):
    """A provider with the GPU-hours short 2 of the first month to a startup whose cash, at
    the final 2.50, pays for both to the cent, once its resting bid of 4 on the second month
    (holding margin and fee) is cancelled. Returns the startup, its bid and what it holds."""
    first, second = physical_months
    hours = first.gpu_hours_per_contract
    provider = _account("northwind", "provider")
    register_capacity(provider, first, gpus=2)
    value = usd(Decimal("2.50") * 2 * hours)
    startup = funded_with("lumen", "startup", usd(Decimal("0.50") * 2) + value)
    place(provider, first, "sell", 2, "2.50")
    place(startup, first, "buy", 2, "2.50")
    cash_row = LedgerAccount.objects.get(code=f"trading:{startup.pk}:cash:USD")
    bid = place(startup, second, "buy", 4, "2.00")
    assert bid.status == Order.Status.OPEN
    held = cash_row.available - LedgerAccount.objects.get(pk=cash_row.pk).available
    assert held > 0
    return startup, bid, held


def test_a_long_whose_bids_hold_the_delivery_payment_has_them_cancelled(physical_months, staff):
    first = physical_months[0]
    hours = first.gpu_hours_per_contract
    startup, bid, _ = long_with_a_resting_bid(physical_months)
    # (the bid holds cash the delivery needs: without its cancel, the startup pays for 1)
    cash_row = LedgerAccount.objects.get(code=f"trading:{startup.pk}:cash:USD")
    assert cash_row.available + scan("2.50", 2, hours) < usd(Decimal("2.50") * 2 * hours)

    # when the first month's last trading day settles at 2.50
    day = first.last_trading_day
    override(first, day, "2.50", staff)
    override(physical_months[1], day, "2.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then the bid was cancelled before the delivery, which took both contracts
    bid.refresh_from_db()
    assert (bid.status, bid.done_reason) == (Order.Status.CANCELLED, "delivery_payment")
    assert balance(gpuh_code(startup, first)) == 2 * hours
    assert not Entry.objects.filter(idempotency_key__startswith="delivery-penalty:").exists()
    assert cash(startup) == 0
    assert LedgerAccount.objects.get(code=f"trading:{startup.pk}:cash:USD").debits_pending == 0
    assert ledger_problems() == []


def test_a_long_whose_cash_pays_the_delivery_keeps_its_bids(physical_months, staff):
    first = physical_months[0]
    hours = first.gpu_hours_per_contract
    startup, bid, held = long_with_a_resting_bid(physical_months)
    # given the startup's cash tops up by what its bid holds: it pays the delivery beside it
    deposit_test_funds(account=startup, amount=Decimal(held) / 10**6, actor=None)

    day = first.last_trading_day
    override(first, day, "2.50", staff)
    override(physical_months[1], day, "2.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    bid.refresh_from_db()
    assert bid.status == Order.Status.OPEN
    assert balance(gpuh_code(startup, first)) == 2 * hours
    assert ledger_problems() == []


# 2. Cash-settled options ------------------------------------------------------------------


@pytest.fixture
def cash_options(future) -> tuple[Instrument, Instrument]:
    """A call and a put struck at 2.50 on ``future``, settled in cash."""
    chain = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
    )
    Instrument.objects.filter(pk__in=[option.pk for option in chain]).update(
        settlement=Instrument.Settlement.CASH
    )
    by_type = {option.option_type: Instrument.objects.get(pk=option.pk) for option in chain}
    return by_type["call"], by_type["put"]


def test_cash_settled_options_pay_the_in_the_money_intrinsic_and_lapse_out_of_the_money(
    future, cash_options, staff
):
    call, put = cash_options
    hours = put.gpu_hours_per_contract
    writer = _account("northwind", "provider")
    holder = _account("lumen", "startup")
    # given the writer wrote 3 puts at 0.150 and 2 calls at 0.080, both struck at 2.50
    put_ask = place(writer, put, "sell", 3, "0.150")
    call_ask = place(writer, call, "sell", 2, "0.080")
    place(holder, put, "buy", 3, "0.150")
    place(holder, call, "buy", 2, "0.080")
    put_premium = usd(Decimal("0.150") * 3 * hours)
    call_premium = usd(Decimal("0.080") * 2 * hours)
    # (a writer's margin is its scan margin and the premium it received)
    put_margin = 3 * put_ask.margin_per_contract + put_premium
    call_margin = 2 * call_ask.margin_per_contract + call_premium
    assert margin_held(writer, put.symbol) == put_margin > put_premium
    assert margin_held(writer, call.symbol) == call_margin > call_premium
    before = {account: cash(account) for account in (writer, holder)}
    total = usd_of_accounts(writer, holder)

    # when the options expire with the future at 2.20
    day = put.last_trading_day
    override(future, day, "2.20", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then the put is exercised in cash: the writer pays (2.50 - 2.20) x H x 3 to the holder,
    # positions and cost memos close and the writer's margin comes back
    intrinsic = usd((Decimal("2.50") - Decimal("2.20")) * hours * 3)
    assert entry_postings(f"option-expiry:{put.pk}") == {
        f"trading:{holder.pk}:position:{put.symbol}": -3,
        f"trading:{writer.pk}:position:{put.symbol}": 3,
        f"trading:{holder.pk}:cost:{put.symbol}:USD": -put_premium,
        f"trading:{writer.pk}:cost:{put.symbol}:USD": put_premium,
        f"trading:{writer.pk}:margin:{put.symbol}:USD": put_margin,
        f"trading:{writer.pk}:cash:USD": intrinsic - put_margin,
        f"trading:{holder.pk}:cash:USD": -intrinsic,
    }
    metadata = Entry.objects.get(idempotency_key=f"option-expiry:{put.pk}").metadata
    assert (metadata["exercised"], metadata["settlement"]) == (True, "cash")
    # and nobody gets a position in the future
    assert position(holder, future.symbol) == position(writer, future.symbol) == 0
    # while the call (out of the money) lapses: no payment, positions closed, margin returned
    assert entry_postings(f"option-expiry:{call.pk}") == {
        f"trading:{holder.pk}:position:{call.symbol}": -2,
        f"trading:{writer.pk}:position:{call.symbol}": 2,
        f"trading:{holder.pk}:cost:{call.symbol}:USD": -call_premium,
        f"trading:{writer.pk}:cost:{call.symbol}:USD": call_premium,
        f"trading:{writer.pk}:margin:{call.symbol}:USD": call_margin,
        f"trading:{writer.pk}:cash:USD": -call_margin,
    }
    assert Entry.objects.get(idempotency_key=f"option-expiry:{call.pk}").metadata["exercised"] is (
        False
    )
    for option in (call, put):
        for account in (writer, holder):
            assert position(account, option.symbol) == 0
            assert cost(account, option.symbol) == 0
            assert margin_held(account, option.symbol) == 0
        assert Instrument.objects.get(pk=option.pk).status == Instrument.Status.EXPIRED
    assert cash(holder) == before[holder] + intrinsic
    assert cash(writer) == before[writer] + put_margin + call_margin - intrinsic
    assert usd_of_accounts(writer, holder) == total
    assert ledger_problems() == []


def black76_reference(forward, strike, years, sigma, call) -> float:
    """Black-76 in USD per GPU-hour, written out here (``statistics.NormalDist``) so the
    expected figures do not come from ``pricing.black76``."""
    discount = math.exp(-float(settings.EXCHANGE_RISK_FREE_RATE) * years)
    if sigma <= 0:
        return discount * max(forward - strike if call else strike - forward, 0.0)
    spread = sigma * math.sqrt(years)
    d1 = (math.log(forward / strike) + spread * spread / 2) / spread
    d2 = d1 - spread
    normal = NormalDist().cdf
    if call:
        return discount * (forward * normal(d1) - strike * normal(d2))
    return discount * (strike * normal(-d2) - forward * normal(-d1))


def scan_risk_reference(legs, forward: float, sigma: float) -> float:
    """The largest loss in USD of ``legs`` (contracts, hours, strike or None, call, years) over
    SPAN's 16 scenarios: the price moved 0, 1/3, 2/3 and 3/3 of the price scan each way with
    the volatility scanned up and down, and 35% of two extreme moves of twice the scan."""
    price_scan = float(settings.EXCHANGE_PRICE_SCAN)
    volatility_scan = float(settings.EXCHANGE_VOLATILITY_SCAN)

    def value(price: float, volatility: float) -> float:
        total = 0.0
        for contracts, hours, strike, call, years in legs:
            each = (
                price
                if strike is None
                else black76_reference(price, strike, years, volatility, call)
            )
            total += contracts * hours * each
        return total

    base = value(forward, sigma)
    losses = [0.0]
    for fraction in (0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1, -1):
        for change in (volatility_scan, -volatility_scan):
            moved = value(forward * (1 + fraction * price_scan), max(sigma + change, 0.0))
            losses.append(base - moved)
    for fraction in (2, -2):
        losses.append(0.35 * (base - value(forward * (1 + fraction * price_scan), sigma)))
    return max(losses)


def test_a_put_writer_keeps_its_premium_as_margin_for_the_evenings_buy_back_value(
    future, cash_options, staff
):
    # Scenario: a short put, accepted on its scan margin, then margined the same evening at its
    # scan risk plus what buying it back costs (docs/ARCHITECTURE.md, "Margin at acceptance is
    # per contract"). Until 2026-12-07 the premium went to the writer's cash, free to spend: a
    # writer that spent it was called that evening on a position unchanged since acceptance.
    call, put = cash_options
    hours = put.gpu_hours_per_contract
    writer = _account("northwind", "provider", funded=False)
    holder = _account("lumen", "startup")
    # given a writer funded with the margin and fees of 2 puts struck at 2.50, and $5 more
    # (deposits are whole cents)
    scan_margin = margin.order_margin_per_contract(put, "sell", Decimal("0.226"))
    cent = usd("0.01")
    funds = -(-(2 * scan_margin + 2 * usd("0.10")) // cent) * cent + usd("5")
    spare = funds - 2 * scan_margin - 2 * usd("0.10")
    deposit_test_funds(account=writer, amount=micros_to_usd(funds), actor=None)
    # when it writes them at 0.226 (the maker: fee 0.10 each)
    place(writer, put, "sell", 2, "0.226")
    place(holder, put, "buy", 2, "0.226")
    premium = usd(Decimal("0.226") * 2 * hours)
    # then the premium is held as margin with the scan margin, not paid into its cash
    assert margin_held(writer, put.symbol) == 2 * scan_margin + premium
    assert cash(writer) == spare < usd("5.01")
    assert usd_of_accounts(writer) == funds - 2 * usd("0.10") + premium
    # and so it cannot be spent on another order's collateral
    with pytest.raises(OrderRejected) as refused:
        place(writer, call, "buy", 1, "0.200")
    assert refused.value.code == OrderRejectCode.INSUFFICIENT_FUNDS

    # when the day settles with the future at 2.50 (the put at the model's price)
    day = business_day_after(timezone.now().date())
    override(future, day, "2.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then the evening requires the scan risk plus the buy-back value at settlement, and the
    # writer holds it: no margin call
    settled = SettlementPrice.objects.get(instrument=put, trading_date=day)
    years = (put.last_trading_day - day).days / 365
    leg = (-2, hours, float(put.strike), False, years)
    scan_risk = scan_risk_reference([leg], 2.50, float(settled.implied_volatility))
    buy_back = usd(settled.price * 2 * hours)
    required = Entry.objects.get(idempotency_key=f"margin:{day}:{writer.pk}").metadata["required"]
    assert abs(required - (math.ceil(scan_risk * 10**6) + buy_back)) <= 1
    assert margin_held(writer, put.symbol) == required
    assert not MarginCall.objects.filter(account=writer).exists()
    assert ledger_problems() == []


def test_a_covered_short_strangle_is_margined_at_night_as_the_scenarios_say(future, staff):
    # Scenario: long 1 future, short 2 puts struck 2.25 and 2.75 calls. One underlying, so
    # scanned together at the mean of the two options' implied volatilities; the short option
    # minimum is 2% of the notional per written contract; the buy-back values are added.
    chain = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=1,
    )
    options = {(option.option_type, option.strike): option for option in chain}
    put, call = options[("put", Decimal("2.25"))], options[("call", Decimal("2.75"))]
    hours = future.gpu_hours_per_contract
    writer = _account("northwind", "provider")
    other = _account("lumen", "startup")
    place(other, future, "sell", 1, "2.50")
    place(writer, future, "buy", 1, "2.50")
    for option, premium in ((put, "0.100"), (call, "0.080")):
        place(writer, option, "sell", 2, premium)
        place(other, option, "buy", 2, premium)

    day = business_day_after(timezone.now().date())
    override(future, day, "2.50", staff)
    override(put, day, "0.100", staff)
    override(call, day, "0.080", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    settled = {row.instrument_id: row for row in SettlementPrice.objects.filter(trading_date=day)}
    sigma = float(settled[put.pk].implied_volatility + settled[call.pk].implied_volatility) / 2
    years = (put.last_trading_day - day).days / 365
    legs = [
        (1, hours, None, True, 0.0),
        (-2, hours, 2.25, False, years),
        (-2, hours, 2.75, True, years),
    ]
    scan_risk = math.ceil(scan_risk_reference(legs, 2.50, sigma) * 10**6)
    minimum = usd(settings.EXCHANGE_SHORT_OPTION_MINIMUM * Decimal("2.50") * hours * 4)
    buy_back = usd((Decimal("0.100") + Decimal("0.080")) * 2 * hours)
    assert scan_risk > minimum
    required = Entry.objects.get(idempotency_key=f"margin:{day}:{writer.pk}").metadata["required"]
    assert abs(required - (scan_risk + buy_back)) <= 1
    held = sum(margin_held(writer, i.symbol) for i in (future, put, call))
    assert held == required
    # and the other side (short the future, long the options) needs nothing: the options'
    # value covers the future's risk under every scenario
    assert Entry.objects.get(idempotency_key=f"margin:{day}:{other.pk}").metadata["required"] == 0
    assert scan_risk_reference([(-leg[0], *leg[1:]) for leg in legs], 2.50, sigma) < (
        buy_back / 10**6
    )


def test_variation_margin_over_two_days_with_a_partial_close_and_its_fees(future, staff):
    # Scenario: long 10 at 2.50 (taker, 0.50 a contract), settled at 2.60; 4 sold at 2.70 the
    # next day (taker), the 6 left settled at 2.65.
    hours = future.gpu_hours_per_contract
    symbol = future.symbol
    long = _account("lumen", "startup", funded=False)
    deposit_test_funds(account=long, amount=Decimal("100000"), actor=None)
    short = _account("northwind", "provider")
    bidder = _account("helix", "trading_firm")
    place(short, future, "sell", 10, "2.50")
    place(long, future, "buy", 10, "2.50")
    day1 = business_day_after(timezone.now().date())
    day2 = business_day_after(day1)
    override(future, day1, "2.60", staff)
    daily_settlement_run(trading_date=day1, actor=staff)
    gain1 = usd(Decimal("0.10") * 10 * hours)
    assert entry_postings(f"variation:{day1}:{long.pk}")[f"trading:{long.pk}:cash:USD"] == -gain1

    place(bidder, future, "buy", 4, "2.70")
    place(long, future, "sell", 4, "2.70")
    override(future, day2, "2.65", staff)
    daily_settlement_run(trading_date=day2, actor=staff)

    # then day 2 pays the 6 carried from 2.60 to 2.65 and the 4 closed from 2.60 to 2.70
    gain2 = usd((Decimal("0.05") * 6 + Decimal("0.10") * 4) * hours)
    assert entry_postings(f"variation:{day2}:{long.pk}")[f"trading:{long.pk}:cash:USD"] == -gain2
    assert cost(long, symbol) == usd(Decimal("2.65") * 6 * hours)
    required = scan("2.65", 6, hours)
    assert margin_held(long, symbol) == required
    trade_fees = 14 * usd("0.50")
    assert cash(long) == usd("100000") - trade_fees + gain1 + gain2 - required
    assert ledger_problems() == []


def test_a_margin_call_is_cured_by_closing_most_of_the_position(future, staff):
    # Scenario: a call opened by a loss, then cured by reducing (no deposit).
    hours = future.gpu_hours_per_contract
    symbol = future.symbol
    long = _account("lumen", "startup", funded=False)
    opening_margin = scan("2.50", 10, hours)
    deposit_test_funds(account=long, amount=micros_to_usd(opening_margin + usd("105")), actor=None)
    short = _account("northwind", "provider")
    place(short, future, "sell", 10, "2.50")
    place(long, future, "buy", 10, "2.50")  # Taker: 5.00 of fees, $100 left in cash.
    assert cash(long) == usd("100")
    day = business_day_after(timezone.now().date())
    override(future, day, "2.20", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then the loss of 0.30 x 10 x H takes the $100, then margin
    loss = usd(Decimal("0.30") * 10 * hours)
    held = opening_margin + usd("100") - loss
    required = scan("2.20", 10, hours)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    assert (call.required, call.held, call.deficit) == (required, held, 0)
    assert call.amount_called == required - held
    assert held < required * settings.EXCHANGE_MAINTENANCE_RATIO

    # when the long sells 8 at the settlement price (reducing: no margin, no fee)
    with pytest.raises(OrderRejected) as refused:
        place(long, future, "sell", 11, "2.20")
    assert refused.value.code == OrderRejectCode.REDUCE_ONLY
    place(short, future, "buy", 8, "2.20")
    reducing = place(long, future, "sell", 8, "2.20")
    assert (reducing.status, reducing.margin_per_contract) == (Order.Status.FILLED, 0)
    released = held * 8 // 10
    assert margin_held(long, symbol) == held - released
    assert cash(long) == released

    # and the call is reviewed: 2 contracts at 2.20 need less than the margin and cash left
    cured = margin_call_review(call)
    assert cured.status == MarginCall.Status.CURED
    assert margin_held(long, symbol) == scan("2.20", 2, hours)
    assert cash(long) == held - scan("2.20", 2, hours)
    assert ledger_problems() == []


# 3. Deficit -------------------------------------------------------------------------------


def test_a_loss_beyond_cash_and_margin_becomes_a_deficit_repaid_first_when_funds_arrive(
    future, staff
):
    hours = future.gpu_hours_per_contract
    symbol = future.symbol
    # given a long with $300 that buys 1 contract at 2.50 (taker fee 0.50)
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    deposit_test_funds(account=long, amount=Decimal("300"), actor=None)
    place(short, future, "sell", 1, "2.50")
    place(long, future, "buy", 1, "2.50")
    margin = scan("2.50", 1, hours)
    long_cash = usd("300") - margin - usd("0.50")
    assert cash(long) == long_cash and margin_held(long, symbol) == margin
    short_cash = cash(short)
    total = usd_of_accounts(long, short)

    # when the future falls to 1.50: a loss of 1.00 x H, more than its cash and margin
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "1.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)

    # then its cash and margin pay what they can and the rest is a deficit it owes
    loss = usd(Decimal("1.00") * hours)
    owed = loss - long_cash - margin
    assert owed > 0
    assert entry_postings(f"variation:{day}:{long.pk}") == {
        f"trading:{long.pk}:cost:{symbol}:USD": -loss,
        f"trading:{long.pk}:cash:USD": long_cash,
        f"trading:{long.pk}:margin:{symbol}:USD": margin,
        f"trading:{long.pk}:deficit:USD": owed,
    }
    # and the winner is paid in full
    assert entry_postings(f"variation:{day}:{short.pk}") == {
        f"trading:{short.pk}:cost:{symbol}:USD": loss,
        f"trading:{short.pk}:cash:USD": -loss,
    }
    assert (cash(long), margin_held(long, symbol), deficit(long)) == (0, 0, owed)
    # and the long gets a margin call for the requirement at 1.50 and the deficit
    required = scan("1.50", 1, hours)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    maintenance = math.ceil(required * settings.EXCHANGE_MAINTENANCE_RATIO)
    assert (call.required, call.maintenance, call.held, call.deficit) == (
        required,
        maintenance,
        0,
        owed,
    )
    # while the short's margin comes down to the requirement at 1.50
    assert margin_held(short, symbol) == required
    assert cash(short) == short_cash + loss + (margin - required)
    # and the cycle only moved money between the two accounts (the deficit counts against
    # the long)
    assert usd_of_accounts(long, short) == total

    # when the long deposits $500 (more than the deficit, less than deficit and requirement)
    deposit_test_funds(account=long, amount=Decimal("500"), actor=None)
    assert 0 < usd("500") - owed < required
    call = margin_call_review(call)

    # then the deficit is repaid first and only the rest goes to margin: the call stays open
    assert entry_postings(f"margin-call:{call.pk}:1") == {
        f"trading:{long.pk}:cash:USD": usd("500"),
        f"trading:{long.pk}:deficit:USD": -owed,
        f"trading:{long.pk}:margin:{symbol}:USD": -(usd("500") - owed),
    }
    assert deficit(long) == 0 and cash(long) == 0
    assert margin_held(long, symbol) == usd("500") - owed
    assert call.status == MarginCall.Status.OPEN
    assert (call.held, call.deficit, call.reviews) == (usd("500") - owed, 0, 1)

    # when it deposits $1,000 more and the call is reviewed again
    deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)
    call = margin_call_review(call)

    # then its margin reaches the requirement and the call is cured
    assert call.status == MarginCall.Status.CURED
    assert call.resolved_at is not None
    assert margin_held(long, symbol) == required
    assert (call.required, call.held, call.deficit) == (required, required, 0)
    assert cash(long) == usd("1000") - (required - (usd("500") - owed))
    assert deficit(long) == 0
    assert ledger_problems() == []


def test_a_flat_account_owing_a_deficit_is_settled_and_cured_by_the_next_day(futures, staff):
    future, _ = futures
    hours = future.gpu_hours_per_contract
    # given a long with $300 that buys 1 contract at 2.50
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    deposit_test_funds(account=long, amount=Decimal("300"), actor=None)
    place(short, future, "sell", 1, "2.50")
    place(long, future, "buy", 1, "2.50")
    # and the future's final settlement is 1.50: it is flat and owes what cash and margin
    # could not pay, under a margin call
    last = future.last_trading_day
    override(future, last, "1.50", staff)
    daily_settlement_run(trading_date=last, actor=staff)
    owed = usd(Decimal("1.00") * hours) - usd("300") + usd("0.50")
    assert (position(long, future.symbol), cash(long), deficit(long)) == (0, 0, owed)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    assert call.deficit == owed

    # when it deposits $1,000 and the next day settles
    deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)
    next_day = business_day_after(last)
    daily_settlement_run(trading_date=next_day, actor=staff)

    # then the day repays its deficit from that cash and cures its call, as it does for an
    # account with positions (until 2026-12-07 it settled only accounts with positions,
    # margin or cost memos: the flat account kept owing beside its cash, its call open
    # with the figures of the day that made it, until a review)
    assert (deficit(long), cash(long)) == (0, usd("1000") - owed)
    call.refresh_from_db()
    assert (call.status, call.deficit, call.held, call.required) == (
        MarginCall.Status.CURED,
        0,
        0,
        0,
    )
    assert ledger_problems() == []


# 4. Liquidation ---------------------------------------------------------------------------


def test_a_call_open_over_several_days_keeps_its_day_and_what_it_asked_for(future, staff):
    hours = future.gpu_hours_per_contract
    # given a long with $300 that buys 1 contract at 2.50 and is called on a fall to 2.20
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    deposit_test_funds(account=long, amount=Decimal("300"), actor=None)
    place(short, future, "sell", 1, "2.50")
    place(long, future, "buy", 1, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "2.20", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    asked = call.amount
    assert asked > 0 and call.amount_called == asked and call.figured_at is None

    # when the next day settles lower, still open, and a deposit is then reviewed into margin
    next_day = business_day_after(day)
    override(future, next_day, "2.10", staff)
    daily_settlement_run(trading_date=next_day, actor=staff)
    call.refresh_from_db()
    later = call.amount
    deposit_test_funds(account=long, amount=Decimal("1"), actor=None)
    reviewed = margin_call_review(call)

    # then the figures follow the account while the call keeps the day that made it and the
    # amount it asked for
    assert later != asked
    assert reviewed.status == MarginCall.Status.OPEN
    assert reviewed.amount == later - usd("1")
    assert reviewed.required == scan("2.10", 1, hours)
    assert (reviewed.trading_date, reviewed.amount_called) == (day, asked)
    assert reviewed.figured_at is not None


def test_a_call_still_short_of_its_requirement_but_above_maintenance_follows_the_account(
    future, staff
):
    """A call is cured only by the whole requirement, so one whose account has come back above
    maintenance stays open; until 2026-12-07 the settlement then left its figures as the day
    that made it set them, and the call asked for more than the account had to bring."""
    hours = future.gpu_hours_per_contract
    # given a long of 2 at 2.50 on $800, called on a fall to 2.10 (holding less than
    # maintenance, owing nothing)
    long = _called_long_of_two(future, staff, bids=0)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    held = margin_held(long, future.symbol)
    assert (call.required, call.held, call.deficit) == (scan("2.10", 2, hours), held, 0)

    # when the next day settles at 2.24: the variation margin it receives goes to margin
    next_day = business_day_after(call.trading_date)
    override(future, next_day, "2.24", staff)
    daily_settlement_run(trading_date=next_day, actor=staff)

    # then it holds more than maintenance but less than its requirement: the call stays open,
    # and its figures are the account's at this settlement
    held = held + usd(Decimal("0.14") * 2 * hours)
    required = scan("2.24", 2, hours)
    assert math.ceil(required * Decimal(settings.EXCHANGE_MAINTENANCE_RATIO)) <= held < required
    assert margin_held(long, future.symbol) == held
    call.refresh_from_db()
    assert call.status == MarginCall.Status.OPEN
    assert (call.required, call.held, call.deficit) == (required, held, 0)
    assert call.amount == required - held
    assert call.figured_at is not None


def test_liquidation_cancels_resting_orders_and_sells_the_position_at_the_market_without_fees(
    futures, staff
):
    future, later = futures
    hours = future.gpu_hours_per_contract
    symbol = future.symbol
    # given a long with $600 that buys 2 contracts at 2.50 and bids for 1 of the next month
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    bidder = _account("helix", "trading_firm")
    deposit_test_funds(account=long, amount=Decimal("600"), actor=None)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    far_bid = place(long, later, "buy", 1, "0.10")
    assert far_bid.status == Order.Status.OPEN
    # and the future falls to 1.50: it owes a deficit and gets a margin call
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "1.50", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    assert call.deficit > 0
    owed = deficit(long)
    # and under the call it offers 1 contract at 3.00 (reducing: allowed, no margin)
    reducing_ask = place(long, future, "sell", 1, "3.00")
    assert reducing_ask.status == Order.Status.OPEN
    # and another account bids 1 at 1.45 and 1 at 1.40
    place(bidder, future, "buy", 1, "1.45")
    place(bidder, future, "buy", 1, "1.40")

    # when staff liquidate without a reason, they are refused and nothing happens
    with pytest.raises(RiskError) as refused:
        account_liquidate(account=long, actor=staff, reason="  ")
    assert refused.value.code == RiskErrorCode.REASON_REQUIRED
    assert Order.objects.get(pk=reducing_ask.pk).status == Order.Status.OPEN
    assert position(long, symbol) == 2

    # when staff liquidate with a reason
    long_cash, fees_before = cash(long), fees()
    result = account_liquidate(account=long, actor=staff, reason="Deficit unpaid after the call")

    # then its resting orders are cancelled
    for order in (far_bid, reducing_ask):
        assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED
    # and its 2 contracts are sold at the market against the bids, reducing only: it is flat
    [row] = result["orders"]
    assert (row["symbol"], row["filled"]) == (symbol, 2)
    sale = Order.objects.get(pk=row["order"])
    assert (sale.type, sale.side, sale.margin_per_contract) == ("market", "sell", 0)
    assert position(long, symbol) == 0
    trades = list(sale.taker_trades.order_by("sequence"))
    assert [(trade.price, trade.quantity) for trade in trades] == [
        (Decimal("1.45"), 1),
        (Decimal("1.40"), 1),
    ]
    # and it pays no fee: the fills' fee income is the bidder's maker fee only, and the
    # liquidated account's cash is not in the trades' entries
    assert fees() - fees_before == 2 * usd("0.20")
    for trade in trades:
        postings = entry_postings(f"trade:{future.pk}:{trade.sequence}")
        assert f"trading:{long.pk}:cash:USD" not in postings
        assert postings["exchange:fees:USD"] == -usd("0.20")
        assert postings[f"trading:{long.pk}:position:{symbol}"] == -1
    # and the cost memo keeps the loss of selling below the settlement price, for the next day
    assert cost(long, symbol) == usd(
        (Decimal("1.50") * 2 - Decimal("1.45") - Decimal("1.40")) * hours
    )
    # and the cash the cancelled bid held went to repay the deficit
    assert cash(long) == 0
    assert deficit(long) == owed - long_cash
    # and the call stays open while the account owes its deficit: it may not trade until paid
    call.refresh_from_db()
    assert (call.status, call.deficit) == (MarginCall.Status.OPEN, owed - long_cash)
    assert call.resolved_by is None
    audit = AuditEntry.objects.get(action="account.liquidate")
    assert (audit.target_id, audit.reason) == (str(long.pk), "Deficit unpaid after the call")
    assert audit.before == {"positions": {symbol: 2}}
    assert audit.after == {
        "cancelled": [far_bid.pk, reducing_ask.pk],
        "closing": [{"symbol": symbol, "side": "sell", "quantity": 2}],
    }
    assert ledger_problems() == []


def _called_long_of_two(future, staff, bids: int):
    """A long of 2 contracts at 2.50 on $800, under a call after a fall to 2.10, with
    ``bids`` contracts bid at 2.05 by another account."""
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    bidder = _account("helix", "trading_firm")
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "2.10", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    assert MarginCall.objects.filter(account=long, status=MarginCall.Status.OPEN).exists()
    if bids:
        place(bidder, future, "buy", bids, "2.05")
    return long


def test_a_liquidated_account_without_a_deficit_ends_its_call_as_liquidated(future, staff):
    hours = future.gpu_hours_per_contract
    symbol = future.symbol
    # given a long with $800 of 2 contracts at 2.50, marked down to 2.10: its cash pays the
    # loss, its margin the rest, and it holds less than maintenance but owes nothing; 2 are bid
    long = _called_long_of_two(future, staff, bids=2)
    held = scan("2.50", 2, hours) - (
        usd(Decimal("0.40") * 2 * hours) - (usd("800") - scan("2.50", 2, hours) - usd("1.00"))
    )
    assert (cash(long), margin_held(long, symbol), deficit(long)) == (0, held, 0)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    assert call.deficit == 0 and call.held == held < call.maintenance

    # when staff liquidate it
    account_liquidate(account=long, actor=staff, reason="Margin call not met")

    # then it is flat, its margin back in its cash, and the call ends as liquidated by staff
    # (not as cured: no funds came in, staff closed the position)
    assert position(long, symbol) == 0
    assert (cash(long), margin_held(long, symbol)) == (held, 0)
    call.refresh_from_db()
    assert call.status == MarginCall.Status.LIQUIDATED
    assert call.resolved_by == staff and call.resolved_at is not None
    assert ledger_problems() == []


def _liquidation_trail(long, offer, sale_pk: int) -> tuple:
    """The liquidation's audit row, and its writes: the cancel of ``offer``, the margin's
    release and the closing order."""
    return (
        AuditEntry.objects.get(action="account.liquidate"),
        OrderCommand.objects.get(order=offer, kind=OrderCommand.Kind.CANCEL),
        Entry.objects.get(idempotency_key__startswith=f"liquidation:{long.pk}:"),
        Order.objects.get(pk=sale_pk),
    )


def test_a_liquidation_is_audited_before_the_orders_it_explains(future, staff):
    """Until 2026-12-07 the audit row was written last, after the closing orders: the
    timeline read the orders before the row that explains them."""
    # given a called long of 2 offering its 2 (reducing), 2 contracts bid by another account
    long = _called_long_of_two(future, staff, bids=2)
    offer = place(long, future, "sell", 2, "3.00")

    # when staff liquidate it
    result = account_liquidate(account=long, actor=staff, reason="Call not met")

    # then the audit row comes first: before the offer's cancel and the margin's release (in
    # its transaction), and before the closing order
    [row] = result["orders"]
    audit, cancel, release, sale = _liquidation_trail(long, offer, row["order"])
    assert audit.created_at < cancel.created_at
    assert audit.created_at < release.created_at
    assert audit.created_at < sale.created_at
    assert (sale.status, sale.filled_quantity) == (Order.Status.FILLED, 2)
    # and it says what the liquidation was to do
    assert (audit.actor, audit.reason) == (staff, "Call not met")
    assert audit.before == {"positions": {future.symbol: 2}}
    assert audit.after == {
        "cancelled": [offer.pk],
        "closing": [{"symbol": future.symbol, "side": "sell", "quantity": 2}],
    }
    assert ledger_problems() == []


def test_a_liquidation_that_fails_after_placing_an_order_leaves_it_explained(
    future, staff, monkeypatch
):
    """Until 2026-12-07 a failure after the closing order (here, of the process as the order
    service returns) left the order, the cancels and the margin's release without the audit
    row that explains them."""
    from exchange.services import orders

    # given a called long of 2 offering its 2, 2 contracts bid; the liquidation fails once its
    # closing order is placed
    long = _called_long_of_two(future, staff, bids=2)
    offer = place(long, future, "sell", 2, "3.00")
    real_place = orders.order_place

    def place_then_fail(**kwargs):
        placed = real_place(**kwargs)
        raise RuntimeError(f"lost after placing order #{placed.pk}")

    monkeypatch.setattr(orders, "order_place", place_then_fail)

    # when staff liquidate it
    with pytest.raises(RuntimeError):
        account_liquidate(account=long, actor=staff, reason="Call not met")

    # then the closing order traded, and the audit row that explains it was written before it
    sale = Order.objects.get(account=long, type=Order.Type.MARKET)
    assert sale.filled_quantity == 2
    audit, cancel, release, _ = _liquidation_trail(long, offer, sale.pk)
    assert audit.created_at < cancel.created_at < sale.created_at
    assert audit.created_at < release.created_at
    assert audit.after["closing"] == [{"symbol": future.symbol, "side": "sell", "quantity": 2}]
    assert ledger_problems() == []


def test_a_liquidation_that_fails_before_its_commit_leaves_neither_audit_nor_orders(
    future, staff, monkeypatch
):
    from exchange.services import risk_cycle

    # given a called long of 2 offering its 2, 2 contracts bid; the margin's release fails,
    # after the audit row and the cancels are written in its transaction
    long = _called_long_of_two(future, staff, bids=2)
    offer = place(long, future, "sell", 2, "3.00")
    before = _liquidation_world(long)
    commands = OrderCommand.objects.count()

    def fail(self):
        raise RuntimeError("the ledger failed")

    monkeypatch.setattr(risk_cycle._Ledger, "flush", fail)

    # when staff liquidate it
    with pytest.raises(RuntimeError):
        account_liquidate(account=long, actor=staff, reason="Call not met")

    # then nothing was written: no audit row, no cancel, no margin released, no closing order
    assert _liquidation_world(long) == before
    assert OrderCommand.objects.count() == commands
    assert not AuditEntry.objects.filter(action="account.liquidate").exists()
    offer.refresh_from_db()
    assert (offer.status, offer.done_reason) == (Order.Status.OPEN, "")
    assert position(long, future.symbol) == 2
    assert ledger_problems() == []


def _liquidation_world(account) -> tuple:
    return (
        list(Order.objects.order_by("pk").values_list("pk", "status", "filled_quantity")),
        list(MarginCall.objects.order_by("pk").values_list("pk", "status", "resolved_by")),
        Entry.objects.count(),
        AuditEntry.objects.filter(action="account.liquidate").count(),
    )


@pytest.mark.parametrize("named", [True, False], ids=["the call named", "the account only"])
def test_liquidating_an_account_whose_call_was_cured_is_refused_and_writes_nothing(
    future, staff, named
):
    # given a called long of 2, 2 contracts bid, and its call cured since staff chose it
    long = _called_long_of_two(future, staff, bids=2)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)
    assert margin_call_review(call).status == MarginCall.Status.CURED
    resting = place(long, future, "sell", 1, "3.00")
    before = _liquidation_world(long)

    # when staff liquidate it (the admin names the call it shows, with its stale status)
    with pytest.raises(RiskError) as refused:
        account_liquidate(
            account=long, call=call if named else None, actor=staff, reason="Call not met"
        )

    # then it is refused by name, and nothing was written: its order rests, it keeps its 2
    assert refused.value.code == RiskErrorCode.NO_OPEN_MARGIN_CALL
    assert _liquidation_world(long) == before
    assert Order.objects.get(pk=resting.pk).status == Order.Status.OPEN
    assert position(long, future.symbol) == 2
    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.CURED


def test_a_call_cured_after_the_first_check_leaves_the_accounts_orders_working(
    futures, staff, monkeypatch
):
    """The liquidation checks the call, then acts: until 2026-12-07 it cancelled the account's
    orders (committed on their own) before checking again under the locks, so a cure landing
    in between stopped the liquidation with the cured account's orders already cancelled."""
    from exchange.services import risk_cycle

    future, later = futures
    # given a long of 2 at 2.50 on $800 with a bid on the next month, called on a fall to
    # 2.10, that then offers 1 contract (reducing), with 2 contracts bid by another account
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    far_bid = place(long, later, "buy", 1, "0.10")
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "2.10", staff)
    override(later, day, "2.00", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    reducing_ask = place(long, future, "sell", 1, "3.00")
    place(_account("helix", "trading_firm"), future, "buy", 2, "2.05")
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    # and a deposit and review that cure the call just after staff's liquidation has checked
    # it, before it has done anything
    real_check = risk_cycle._call_to_liquidate

    def check_then_cure(account, call_named, *, lock):
        real_check(account, call_named, lock=lock)
        if not lock:
            deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)
            assert margin_call_review(call).status == MarginCall.Status.CURED

    monkeypatch.setattr(risk_cycle, "_call_to_liquidate", check_then_cure)
    held = margin_held(long, future.symbol)

    # when staff's liquidation goes on
    with pytest.raises(RiskError) as refused:
        account_liquidate(account=long, call=call, actor=staff, reason="Call not met")

    # then it is refused by name and the cured account's orders still work: nothing of the
    # liquidation was done (the cure's own cancel of the reducing offer aside)
    assert refused.value.code == RiskErrorCode.NO_OPEN_MARGIN_CALL
    far_bid.refresh_from_db()
    assert (far_bid.status, far_bid.done_reason) == (Order.Status.OPEN, "")
    reducing_ask.refresh_from_db()
    assert reducing_ask.done_reason != "liquidation"
    # and no margin was released, no position sold, no audit row written
    assert position(long, future.symbol) == 2
    assert margin_held(long, future.symbol) >= held
    assert not Order.objects.filter(account=long, type=Order.Type.MARKET).exists()
    assert not Entry.objects.filter(idempotency_key__startswith=f"liquidation:{long.pk}:").exists()
    assert not AuditEntry.objects.filter(action="account.liquidate").exists()
    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.CURED
    assert ledger_problems() == []


def test_a_liquidation_closes_a_position_its_own_queued_cancels_free(future, staff, settings):
    """With matchers of their own (production), the liquidation's cancels are still queued
    when its closing orders are accepted: until 2026-12-07 the acceptance counted the
    account's orders being cancelled as closing the position too, and refused every closing
    order of an account with an offer resting (``RISK_REDUCE_ONLY``)."""
    from exchange.matcher.runtime import Matcher

    # given a called long of 2 offering its 2 contracts (reducing), 2 contracts bid at 2.05
    long = _called_long_of_two(future, staff, bids=2)
    offer = place(long, future, "sell", 2, "3.00")
    assert offer.status == Order.Status.OPEN
    # and matchers of their own from now on
    settings.EXCHANGE_MATCHER_MODE = "external"

    # when staff liquidate it, and the matcher then runs what was queued
    result = account_liquidate(account=long, actor=staff, reason="Call not met")
    Matcher().process_pending()

    # then its closing order was accepted behind the offer's cancel, and sold the 2
    [row] = result["orders"]
    assert "error" not in row
    offer.refresh_from_db()
    assert (offer.status, offer.done_reason) == (Order.Status.CANCELLED, "liquidation")
    sale = Order.objects.get(pk=row["order"])
    assert (sale.status, sale.filled_quantity) == (Order.Status.FILLED, 2)
    assert position(long, future.symbol) == 0
    assert ledger_problems() == []


def test_two_liquidations_at_once_close_the_position_once(future, staff, monkeypatch):
    from exchange.services import orders

    # given a called long of 2 with 4 contracts bid: enough to sell it twice over
    long = _called_long_of_two(future, staff, bids=4)
    # and a second staff member's liquidation of it that runs after the first has read its
    # position and before the first's closing order is accepted (a double-clicked confirm)
    real_place, nested = orders.order_place, {}

    def place_after_another(**kwargs):
        if not nested:
            nested["running"] = True
            nested["result"] = account_liquidate(account=long, actor=staff, reason="Second click")
        return real_place(**kwargs)

    monkeypatch.setattr(orders, "order_place", place_after_another)

    # when the first liquidation goes on
    first = account_liquidate(account=long, actor=staff, reason="Margin call not met")

    # then the second closed the position and the first's order, which would have sold it
    # short again with no margin, is refused as not reducing: the account is flat
    assert [row["filled"] for row in nested["result"]["orders"]] == [2]
    assert [row.get("error") for row in first["orders"]] == ["RISK_REDUCE_ONLY"]
    assert position(long, future.symbol) == 0
    assert ledger_problems() == []


def test_two_reducing_orders_accepted_at_once_close_no_more_than_the_position(
    future, staff, monkeypatch
):
    from exchange.errors import OrderRejected
    from exchange.services import orders

    # given a called long of 2 that offers its 2 contracts to close them (reducing)
    long = _called_long_of_two(future, staff, bids=0)
    # and a second reducing offer of 2 checked while the first is being accepted: each sees
    # the position and none of the other's contracts being closed
    real_check, other = orders._check_reduce_only, {}

    def check_then_another(account, instrument, request):
        reducing = real_check(account, instrument, request)
        if not other:
            other["running"] = True
            other["order"] = place(long, future, "sell", 2, "2.60")
        return reducing

    monkeypatch.setattr(orders, "_check_reduce_only", check_then_another)

    # when the first offer is placed
    with pytest.raises(OrderRejected) as refused:
        place(long, future, "sell", 2, "2.70")

    # then the one accepted first rests and the other is refused: together they would have
    # sold 4 of a position of 2, the last 2 short with no margin held
    assert refused.value.code == "RISK_REDUCE_ONLY"
    assert other["order"].status == Order.Status.OPEN
    assert Order.objects.filter(account=long, side="sell", status="open").count() == 1


def test_a_reducing_order_accepted_as_its_call_is_cured_is_refused_not_left_without_fee(
    future, staff, monkeypatch, django_capture_on_commit_callbacks
):
    """An order is reducing (no margin, no fee) when its account is under a call as it is
    accepted. Until 2026-12-07 that was read before the acceptance's transaction: a cure that
    committed in between, its cancel of the reducing orders run before this one existed, left
    it live on those terms after the call."""
    from exchange.errors import OrderRejectCode, OrderRejected
    from exchange.services import orders

    # given a called long of 2, and cash that cures its call at the next review
    long = _called_long_of_two(future, staff, bids=0)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    deposit_test_funds(account=long, amount=Decimal("5000"), actor=None)
    # and that review, with its cancel of the reducing orders, run just after an offer of the
    # long's has been found reducing, before its transaction
    real_check = orders._check_reduce_only

    def check_then_cure(account, instrument, request):
        reducing = real_check(account, instrument, request)
        with django_capture_on_commit_callbacks(execute=True):
            assert margin_call_review(call).status == MarginCall.Status.CURED
        return reducing

    monkeypatch.setattr(orders, "_check_reduce_only", check_then_cure)
    count = Order.objects.count()

    # when the offer goes on to be accepted
    with pytest.raises(OrderRejected) as refused:
        place(long, future, "sell", 2, "2.60")

    # then it is refused by name, and nothing of it was written: placed again, it is an
    # ordinary order
    assert refused.value.code == OrderRejectCode.MARGIN_CALL_ENDED
    assert Order.objects.count() == count
    monkeypatch.setattr(orders, "_check_reduce_only", real_check)
    again = place(long, future, "sell", 2, "2.60")
    assert not again.reduce_only and again.maker_fee_rate > 0
    assert ledger_problems() == []


@pytest.mark.parametrize("cured_by", ["review", "next_settlement"])
def test_a_cure_cancels_the_orders_placed_to_reduce_under_the_call(
    futures, staff, django_capture_on_commit_callbacks, cured_by
):
    """Orders placed under a call reduce and so hold no margin. Left live after the cure, an
    offer to close a long opened a short without margin once the long was closed otherwise
    (here by an ordinary offer placed after the cure, filled first)."""
    future, later = futures
    symbol = future.symbol
    # given a long of 2 at 2.50 on $800 that bids for 1 of the next month, then is called on a
    # fall to 2.10
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider")
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    far_bid = place(long, later, "buy", 1, "0.10")
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "2.10", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    # and under the call it offers its 2 contracts at 2.60: reducing, so no margin and no fee
    reducing = place(long, future, "sell", 2, "2.60")
    assert reducing.status == Order.Status.OPEN
    assert (reducing.maker_fee_rate, reducing.taker_fee_rate) == (0, 0)

    # when cash arrives and a review, or the next day's settlement, cures the call
    deposit_test_funds(account=long, amount=Decimal("5000"), actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        if cured_by == "review":
            margin_call_review(call)
        else:
            next_day = business_day_after(day)
            override(future, next_day, "2.10", staff)
            override(later, next_day, "2.00", staff)
            daily_settlement_run(trading_date=next_day, actor=staff)

    # then the reducing offer is cancelled, saying why; the bid placed before the call stays
    call.refresh_from_db()
    assert call.status == MarginCall.Status.CURED
    reducing.refresh_from_db()
    assert (reducing.status, reducing.done_reason) == (Order.Status.CANCELLED, "margin_call_cured")
    far_bid.refresh_from_db()
    assert far_bid.status == Order.Status.OPEN
    # and an ordinary offer now closes the long, leaving nothing to sell it short without margin
    buyer = _account("helix", "trading_firm")
    place(long, future, "sell", 2, "2.55")
    place(buyer, future, "buy", 4, "2.60")
    assert position(long, symbol) == 0
    assert ledger_problems() == []


# 5. The matcher reloads what the cycle changed ------------------------------------------


def test_a_closing_trade_after_the_cycle_releases_margin_from_what_the_cycle_set(future, staff):
    hours = future.gpu_hours_per_contract
    symbol = future.symbol
    long = _account("lumen", "startup")
    short = _account("northwind", "provider")
    bidder = _account("helix", "trading_firm")
    # given a long of 2 at 2.50, settled by the inline matcher (which keeps the margin it set
    # in memory for the next orders of this future)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    assert margin_held(long, symbol) == scan("2.50", 2, hours)
    # and a day settled at 3.00: the cycle tops the margin up to the requirement at 3.00
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "3.00", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    held = scan("3.00", 2, hours)
    assert margin_held(long, symbol) == held
    long_cash = cash(long)

    # when the long sells 1 of its 2 contracts at 2.95 (the taker)
    place(bidder, future, "buy", 1, "2.95")
    sale = place(long, future, "sell", 1, "2.95")
    assert sale.status == Order.Status.FILLED

    # then half the margin the cycle set is released, not half the margin held before it
    released = held * 1 // 2
    assert margin_held(long, symbol) == held - released
    assert held - released != held - scan("2.50", 2, hours) // 2
    assert cash(long) == long_cash + released - usd("0.50")
    assert position(long, symbol) == 1
    assert cost(long, symbol) == usd((Decimal("3.00") * 2 - Decimal("2.95")) * hours)
    assert ledger_problems() == []


# 6. Idempotence and missing prices ------------------------------------------------------


def test_settling_a_day_twice_posts_nothing_new(future, staff):
    long = _account("lumen", "startup")
    short = _account("northwind", "provider")
    place(short, future, "sell", 3, "2.50")
    place(long, future, "buy", 3, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    override(future, day, "2.60", staff)
    first = daily_settlement_run(trading_date=day, actor=staff)
    assert first.status == RiskCycle.Status.SETTLED
    assert Entry.objects.filter(idempotency_key__startswith=f"variation:{day}:").count() == 2
    counts = (
        Entry.objects.count(),
        SettlementPrice.objects.count(),
        MarginCall.objects.count(),
        AuditEntry.objects.filter(action="risk.daily_settlement").count(),
    )
    balances = {account.code: account.balance for account in LedgerAccount.objects.all()}

    again = daily_settlement_run(trading_date=day, actor=staff)

    assert again.pk == first.pk and again.status == RiskCycle.Status.SETTLED
    assert again.summary == first.summary
    assert (
        Entry.objects.count(),
        SettlementPrice.objects.count(),
        MarginCall.objects.count(),
        AuditEntry.objects.filter(action="risk.daily_settlement").count(),
    ) == counts
    assert {account.code: account.balance for account in LedgerAccount.objects.all()} == balances
    assert ledger_problems() == []


def test_a_held_instrument_without_a_price_stops_the_day_and_writes_nothing(futures, staff):
    future = futures[0]
    long = _account("lumen", "startup")
    short = _account("northwind", "provider")
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    # given the future's last trading day was never settled: the next business day has no
    # price for it at all (it no longer trades, so prices are not set for it)
    day = business_day_after(future.last_trading_day)
    entries = Entry.objects.count()

    with pytest.raises(RiskError) as refused:
        daily_settlement_run(trading_date=day, actor=staff)

    assert refused.value.code == RiskErrorCode.PRICE_MISSING
    assert refused.value.field == "instrument"
    assert future.symbol in refused.value.message
    assert Entry.objects.count() == entries
    assert not RiskCycle.objects.filter(trading_date=day, status=RiskCycle.Status.SETTLED).exists()
    assert not SettlementPrice.objects.filter(trading_date=day).exists()
    assert Instrument.objects.get(pk=future.pk).status != Instrument.Status.EXPIRED
    assert (position(long, future.symbol), position(short, future.symbol)) == (2, -2)
    assert ledger_problems() == []

    # when staff set its price for that day, the day settles and the future expires late
    override(future, day, "2.40", staff)
    daily_settlement_run(trading_date=day, actor=staff)
    assert Instrument.objects.get(pk=future.pk).status == Instrument.Status.EXPIRED
    assert position(long, future.symbol) == position(short, future.symbol) == 0
    loss = usd(Decimal("0.10") * 2 * future.gpu_hours_per_contract)
    assert entry_postings(f"variation:{day}:{long.pk}")[f"trading:{long.pk}:cash:USD"] == loss
    assert ledger_problems() == []


def test_a_future_listed_after_the_days_close_is_left_to_the_next_day(futures, staff):
    """What is held of a future listed after a day's close traded after it: that day settles
    without it (it has no price for it) and the next day settles it. Until 2026-12-07 its
    holdings stopped the day with RISK_SETTLEMENT_PRICE_MISSING, as on the day a new
    exchange, or the demo, lists its market after the close."""
    future = futures[0]
    hours = future.gpu_hours_per_contract
    long = _account("lumen", "startup")
    short = _account("northwind", "provider")
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    # given both futures were listed after the day's close (the test's clock has passed it)
    Instrument.objects.update(created_at=calendar.close_at(day) + timedelta(hours=1))
    margin = margin_held(long, future.symbol)

    # when the day runs
    cycle = daily_settlement_run(trading_date=day, actor=staff)

    # then it settles without them: no price, no variation margin, margin left as held
    assert cycle.status == RiskCycle.Status.SETTLED
    assert not SettlementPrice.objects.filter(trading_date=day).exists()
    assert not Entry.objects.filter(idempotency_key__startswith=f"variation:{day}:").exists()
    assert margin_held(long, future.symbol) == margin
    assert position(long, future.symbol) == 2

    # and the next business day settles them from the price they traded at
    next_day = business_day_after(day)
    override(future, next_day, "2.60", staff)
    daily_settlement_run(trading_date=next_day, actor=staff)
    gain = usd(Decimal("0.10") * 2 * hours)
    postings = entry_postings(f"variation:{next_day}:{long.pk}")
    assert postings[f"trading:{long.pk}:cash:USD"] == -gain
    assert ledger_problems() == []


def test_instruments_nobody_holds_or_priced_expire_without_a_settlement_price(futures):
    future = futures[0]
    [call, put] = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
    )
    # given nothing ever traded: only a bid rests in the future (no mid, no price of any kind)
    bid = place(_account("lumen", "startup"), future, "buy", 1, "2.00")
    entries = Entry.objects.count()

    # when the options' last trading day, then the future's, are settled
    first = daily_settlement_run(trading_date=call.last_trading_day)
    second = daily_settlement_run(trading_date=future.last_trading_day)

    # then they expire without a price and without entries, and the bid is cancelled
    assert first.status == second.status == RiskCycle.Status.SETTLED
    for instrument in (call, put, future):
        assert Instrument.objects.get(pk=instrument.pk).status == Instrument.Status.EXPIRED
    assert Order.objects.get(pk=bid.pk).status == Order.Status.CANCELLED
    assert Entry.objects.count() == entries
    assert ledger_problems() == []


def test_orders_left_resting_on_an_expired_future_are_cancelled_when_the_day_runs_again(
    futures,
):
    from exchange.selectors.funding import cash_balance
    from ledger.models import Hold

    # given a settled day, and a future expired with a bid still resting on it, its margin
    # held: what a run that expired it leaves when it stops between its commit and its cancels
    future = futures[0]
    buyer = _account("lumen", "startup")
    available = cash_balance(buyer).available
    bid = place(buyer, future, "buy", 2, "2.00")
    day = future.last_trading_day - timedelta(days=1)
    settled = daily_settlement_run(trading_date=day)
    Instrument.objects.filter(pk=future.pk).update(status=Instrument.Status.EXPIRED)
    assert cash_balance(buyer).available < available
    entries = Entry.objects.count()

    # when the day is run again (settle_day, the schedule), finding it settled
    cycle = daily_settlement_run(trading_date=day)

    # then the day is left as it was, and the bid is cancelled and its margin released
    assert (cycle.pk, cycle.summary) == (settled.pk, settled.summary)
    assert Entry.objects.count() == entries
    bid.refresh_from_db()
    assert (bid.status, bid.done_reason) == (Order.Status.CANCELLED, "instrument_expired")
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()
    assert cash_balance(buyer).available == available
    assert ledger_problems() == []


def test_a_resale_listing_expires_the_day_before_its_term_and_its_orders_release_their_holds(
    listing, seller, buyer
):
    from exchange.selectors.funding import cash_balance
    from ledger.models import Hold

    cash_before = cash_balance(buyer).available
    ask = place(seller, listing, "sell", 8, "2.40")  # Holds the seller's GPU-hours.
    bid = place(buyer, listing, "buy", 8, "2.30")  # Holds the buyer's cash.
    assert cash_balance(buyer).available < cash_before
    last_day = listing.last_trading_day

    # when the day before its last trading day is settled, then that day
    before = daily_settlement_run(trading_date=last_day - timedelta(days=1))
    after = daily_settlement_run(trading_date=last_day)

    # then it still traded the day before; on its last day it expired, its orders cancelled
    assert before.summary["resale_expired"] == []
    assert after.summary["resale_expired"] == [listing.symbol]
    assert Instrument.objects.get(pk=listing.pk).status == Instrument.Status.EXPIRED
    for order in (ask, bid):
        order.refresh_from_db()
        assert (order.status, order.done_reason) == (Order.Status.CANCELLED, "instrument_expired")
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()
    assert cash_balance(buyer).available == cash_before
    assert ledger_problems() == []
