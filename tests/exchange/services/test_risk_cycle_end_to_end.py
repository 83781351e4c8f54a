"""The daily risk cycle end to end: two accounts trade a future and a call on it; over three
trading days prices move, variation margin and margin are posted, the call is exercised into
the future, one account gets a margin call, cures it, and the future settles finally.

Every amount expected here is computed in this file from the rules (docs/ARCHITECTURE.md,
"The daily risk cycle") with Decimal, not by the code under test; scenario margin of a futures
position is the price scan range of its value, ``0.15 x price x contracts x H``.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Instrument, MarginCall, RiskCycle, SettlementPrice
from exchange.services.funding import deposit_test_funds
from exchange.services.risk_cycle import daily_settlement_run, margin_call_review
from exchange.services.settlement_prices import (
    settlement_price_override,
    settlement_prices_set,
)
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
from tests.exchange.support import place, staff_user

# The days settled here are after today: the exchange's calendar is moved on for them.
pytestmark = pytest.mark.usefixtures("calendar_ahead")


def keys_posted_by(run) -> set[str]:
    """The idempotency keys of the entries ``run()`` posts."""
    before = Entry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    run()
    return set(Entry.objects.filter(id__gt=before).values_list("idempotency_key", flat=True))


def test_three_days_of_variation_margin_exercise_margin_call_and_final_settlement(
    future, call, django_user_model
):
    staff = staff_user("risk", Role.RISK)
    hours = future.gpu_hours_per_contract
    # The option expires two business days before the future stops trading: day 1 is the
    # option's expiry, day 2 the business day after, day 3 the future's last trading day.
    day1 = call.last_trading_day
    day3 = future.last_trading_day
    day2 = day1 + timedelta(days=1)
    while day2.weekday() >= 5:
        day2 += timedelta(days=1)
    assert calendar.business_days_before(day3, 1) == day2

    # given a long (Lumen, $6,000 of funds) and a short (Northwind, $1,000,000)
    long = _account("lumen", "startup", funded=False)
    short = _account("northwind", "provider", funded=False)
    deposit_test_funds(account=long, amount=Decimal("6000"), actor=None)
    deposit_test_funds(account=short, amount=Decimal("1000000"), actor=None)
    deposited = usd("1006000")

    # and they trade 10 futures at 2.50 (Northwind's ask rests: it is the maker) and 4 calls
    # struck at 2.50 at a premium of 0.120 (Northwind writes them)
    place(short, future, "sell", 10, "2.50")
    place(long, future, "buy", 10, "2.50")
    place(short, call, "sell", 4, "0.120")
    place(long, call, "buy", 4, "0.120")
    trade_fees = 10 * usd("0.20") + 10 * usd("0.50") + 4 * usd("0.10") + 4 * usd("0.25")
    assert fees() == trade_fees
    assert usd_of_accounts(long, short) == deposited - trade_fees
    premium = usd(Decimal("0.120") * 4 * hours)
    long_cash = usd("6000") - scan("2.50", 10, hours) - 10 * usd("0.50") - premium - 4 * usd("0.25")
    assert cash(long) == long_cash

    # Day 1 ------------------------------------------------------------------------------
    # when the day's prices are set from the closing window (the trades just made)
    settlement_prices_set(trading_date=day1, close=timezone.now() + timedelta(seconds=1))
    prices = {row.instrument_id: row for row in SettlementPrice.objects.filter(trading_date=day1)}
    assert prices[future.pk].price == Decimal("2.50") and prices[future.pk].source == "vwap"
    # and staff move the future to 2.60 (an audited override), so the call is in the money
    settlement_price_override(
        instrument=future,
        trading_date=day1,
        price=Decimal("2.60"),
        reason="Late block trade reported",
        actor=staff,
    )
    before = usd_of_accounts(long, short)
    posted = keys_posted_by(lambda: daily_settlement_run(trading_date=day1, actor=staff))

    # then exactly these entries are posted: the exercise, and per account variation margin
    # and margin
    assert posted == {
        f"option-expiry:{call.pk}",
        f"variation:{day1}:{long.pk}",
        f"variation:{day1}:{short.pk}",
        f"margin:{day1}:{long.pk}",
        f"margin:{day1}:{short.pk}",
    }

    # then the call is exercised: 4 futures at the strike each way, the option closed
    expiry = entry_postings(f"option-expiry:{call.pk}")
    assert expiry[f"trading:{long.pk}:position:{call.symbol}"] == -4
    assert expiry[f"trading:{short.pk}:position:{call.symbol}"] == 4
    assert expiry[f"trading:{long.pk}:position:{future.symbol}"] == 4
    assert expiry[f"trading:{short.pk}:position:{future.symbol}"] == -4
    assert expiry[f"trading:{long.pk}:cost:{future.symbol}:USD"] == usd(Decimal("2.50") * 4 * hours)
    # the writer's margin on the call comes back to its cash
    assert margin_held(short, call.symbol) == 0
    assert Instrument.objects.get(pk=call.pk).status == Instrument.Status.EXPIRED
    # and variation margin marks 14 contracts from 2.50 to 2.60: one entry per account
    gain = usd(Decimal("0.10") * 14 * hours)
    assert entry_postings(f"variation:{day1}:{long.pk}") == {
        f"trading:{long.pk}:cost:{future.symbol}:USD": gain,
        f"trading:{long.pk}:cash:USD": -gain,
    }
    assert entry_postings(f"variation:{day1}:{short.pk}")[f"trading:{short.pk}:cash:USD"] == gain
    # and margin is set to the requirement of 14 contracts at 2.60, from cash
    assert margin_held(long, future.symbol) == scan("2.60", 14, hours)
    assert margin_held(short, future.symbol) == scan("2.60", 14, hours)
    long_cash += gain - (scan("2.60", 14, hours) - scan("2.50", 10, hours))
    assert cash(long) == long_cash
    assert not MarginCall.objects.exists()
    # and the cycle only moved money between the two accounts
    assert usd_of_accounts(long, short) == before

    # running the day again changes nothing
    entries = Entry.objects.count()
    daily_settlement_run(trading_date=day1, actor=staff)
    assert Entry.objects.count() == entries

    # Day 2 ------------------------------------------------------------------------------
    # when the future falls to 2.00 (no trades, no quotes: staff set the price)
    settlement_price_override(
        instrument=future,
        trading_date=day2,
        price=Decimal("2.00"),
        reason="Price of the day from brokers",
        actor=staff,
    )
    posted = keys_posted_by(lambda: daily_settlement_run(trading_date=day2, actor=staff))
    # (no margin entry for the long: it has no cash left to top its margin up with)
    assert posted == {
        f"variation:{day2}:{long.pk}",
        f"variation:{day2}:{short.pk}",
        f"margin:{day2}:{short.pk}",
    }

    # then the long loses 0.60 on 14 contracts: its cash first, then its margin
    loss = usd(Decimal("0.60") * 14 * hours)
    variation = entry_postings(f"variation:{day2}:{long.pk}")
    assert variation[f"trading:{long.pk}:cash:USD"] == long_cash
    from_margin = loss - long_cash
    assert 0 < from_margin < scan("2.60", 14, hours)
    assert variation[f"trading:{long.pk}:margin:{future.symbol}:USD"] == from_margin
    assert cash(long) == 0
    # and it gets a margin call: it holds less than maintenance of the requirement at 2.00
    required = scan("2.00", 14, hours)
    held = scan("2.60", 14, hours) - from_margin
    assert held < required * settings.EXCHANGE_MAINTENANCE_RATIO
    margin_call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    assert (margin_call.required, margin_call.held, margin_call.deficit) == (required, held, 0)
    # while the short's margin comes down to the new requirement, into its cash
    assert margin_held(short, future.symbol) == required

    # and while the call is open the long may only reduce its position
    with pytest.raises(OrderRejected) as refused:
        place(long, future, "buy", 1, "2.00")
    assert refused.value.code == OrderRejectCode.REDUCE_ONLY
    with pytest.raises(OrderRejected):
        place(long, future, "sell", 15, "2.00")
    reducing = place(long, future, "sell", 2, "2.10")  # Rests: it takes no margin.
    assert reducing.margin_per_contract == 0

    # when the long deposits enough and the call is reviewed, it is cured
    deposit_test_funds(account=long, amount=Decimal("5000"), actor=None)
    deposited += usd("5000")
    cured = margin_call_review(margin_call)
    assert cured.status == MarginCall.Status.CURED
    assert margin_held(long, future.symbol) == required
    place(long, future, "buy", 1, "1.50")  # Not reduce-only any more (rests below the ask).

    # Day 3: final settlement ----------------------------------------------------------
    settlement_price_override(
        instrument=future,
        trading_date=day3,
        price=Decimal("2.10"),
        reason="Final settlement price",
        actor=staff,
    )
    before = usd_of_accounts(long, short)
    posted = keys_posted_by(lambda: daily_settlement_run(trading_date=day3, actor=staff))
    # (the final settlement returns all margin: nothing is left for a margin entry)
    assert posted == {
        f"variation:{day3}:{long.pk}",
        f"variation:{day3}:{short.pk}",
        f"future-expiry:{future.pk}",
    }

    gain = usd(Decimal("0.10") * 14 * hours)
    assert entry_postings(f"variation:{day3}:{long.pk}")[f"trading:{long.pk}:cash:USD"] == -gain
    final = entry_postings(f"future-expiry:{future.pk}")
    assert final[f"trading:{long.pk}:position:{future.symbol}"] == -14
    assert final[f"trading:{short.pk}:position:{future.symbol}"] == 14
    assert final[f"trading:{long.pk}:cost:{future.symbol}:USD"] == -usd(
        Decimal("2.10") * 14 * hours
    )
    # then both are flat, with no margin held, and the future is expired with its orders
    for account in (long, short):
        assert balance(f"trading:{account.pk}:position:{future.symbol}") == 0
        assert balance(f"trading:{account.pk}:cost:{future.symbol}:USD") == 0
        assert margin_held(account, future.symbol) == 0
    assert Instrument.objects.get(pk=future.pk).status == Instrument.Status.EXPIRED
    assert not future.orders.filter(status__in=["open", "partially_filled"]).exists()
    assert usd_of_accounts(long, short) == before

    # The long's result: bought 10 at 2.50 and 4 at the strike 2.50 through the call (for a
    # premium), settled at 2.10: it lost 0.40 on 14 contracts, the premium and its fees.
    long_fees = 10 * usd("0.50") + 4 * usd("0.25")
    expected = usd("11000") - usd(Decimal("0.40") * 14 * hours) - premium - long_fees
    assert cash(long) == expected
    # Total USD of the accounts is what they deposited, less the fees now the exchange's.
    assert usd_of_accounts(long, short) + fees() == deposited
    assert fees() == trade_fees
    call_command("ledger_check")
    summary = RiskCycle.objects.get(trading_date=day3).summary
    assert summary["futures_expired"][0]["symbol"] == future.symbol
