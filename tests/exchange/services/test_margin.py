"""Initial margin (``exchange.services.margin``): per contract at order acceptance, and an
account's requirement at the end of the day.

Expected amounts are micro-USD, worked out here by hand with Decimal (a futures position's
scenario margin is its full price scan, ``price scan x price x contracts x H``) or by calling
``pricing.margin`` directly for options, and rounded up as the rules say.
"""

from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from exchange.models import Instrument, Region, SettlementPrice, Sku
from exchange.services.listing import futures_list_strip
from exchange.services.margin import account_requirement, order_margin_per_contract
from ledger.models import Account as LedgerAccount
from pricing.margin import Position, ScanParameters, scenario_margin
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db

MICROS = 10**6
PRICE_SCAN = settings.EXCHANGE_PRICE_SCAN


def ceil_micros(usd: Decimal | float) -> int:
    """USD (exact Decimal, or a float from ``pricing``) as micro-USD, rounded up."""
    exact = usd if isinstance(usd, Decimal) else Decimal(usd)
    return int((exact * MICROS).to_integral_value(rounding=ROUND_CEILING))


def futures_scan(price: str, contracts: int, hours: int) -> Decimal:
    """The scan risk of a futures position in USD: a full price scan against it."""
    return PRICE_SCAN * Decimal(price) * abs(contracts) * hours


def today():
    return timezone.now().date()


def years_to_expiry(option: Instrument) -> float:
    return (option.last_trading_day - today()).days / 365


def written_option_margin(option: Instrument, contracts: int, forward: float, sigma: float):
    """``pricing.margin`` on ``contracts`` short options (float USD), with the exchange's
    settings as scan parameters."""
    hours = option.gpu_hours_per_contract
    parameters = ScanParameters(
        price_scan=float(settings.EXCHANGE_PRICE_SCAN),
        volatility_scan=float(settings.EXCHANGE_VOLATILITY_SCAN),
        short_option_minimum=float(settings.EXCHANGE_SHORT_OPTION_MINIMUM) * forward * hours,
        rate=float(settings.EXCHANGE_RISK_FREE_RATE),
    )
    position = Position(
        -contracts,
        hours,
        strike=float(option.strike),
        call=option.option_type == "call",
        expiry_years=years_to_expiry(option),
    )
    return scenario_margin([position], forward, sigma, parameters)


DEFAULT_SIGMA = float(settings.EXCHANGE_DEFAULT_VOLATILITY)


# Per contract at acceptance ---------------------------------------------------------------


@pytest.mark.parametrize("side", ["buy", "sell"])
@pytest.mark.parametrize("price", ["2.50", "1.235", "0.005"])
def test_a_futures_order_margins_a_full_price_scan_per_contract(future, side, price):
    hours = future.gpu_hours_per_contract

    margin = order_margin_per_contract(future, side, Decimal(price))

    assert margin == ceil_micros(futures_scan(price, 1, hours))
    if price == "2.50":
        assert margin == ceil_micros(Decimal("0.375") * hours)


def test_a_written_call_without_a_settled_underlying_is_margined_at_the_strike(call):
    # given no settlement price or trade on the future: the forward is the strike, 2.50
    expected = written_option_margin(call, 1, 2.50, DEFAULT_SIGMA)

    margin = order_margin_per_contract(call, "sell", Decimal("0.150"))

    assert margin == ceil_micros(expected.margin)
    assert expected.margin == expected.scan_risk > expected.short_option_minimum > 0


def test_a_futures_margin_remembered_for_its_price_follows_a_changed_risk_setting(future, settings):
    before = order_margin_per_contract(future, "buy", Decimal("2.45"))
    assert order_margin_per_contract(future, "buy", Decimal("2.450")) == before

    settings.EXCHANGE_PRICE_SCAN = Decimal(settings.EXCHANGE_PRICE_SCAN) * 2

    assert order_margin_per_contract(future, "buy", Decimal("2.45")) > before


def test_a_written_call_is_margined_at_the_underlying_latest_settlement(future, call):
    # given the future settled at 2.40 two days ago and at 2.60 yesterday
    for days_ago, price in ((2, "2.40"), (1, "2.60")):
        SettlementPrice.objects.create(
            instrument=future,
            trading_date=today() - timedelta(days=days_ago),
            price=Decimal(price),
            source=SettlementPrice.Source.VWAP,
        )

    margin = order_margin_per_contract(call, "sell", Decimal("0.150"))

    # then the forward is the latest, 2.60 (in the money: more margin than at the strike)
    expected = written_option_margin(call, 1, 2.60, DEFAULT_SIGMA)
    assert margin == ceil_micros(expected.margin)
    assert margin > ceil_micros(written_option_margin(call, 1, 2.50, DEFAULT_SIGMA).margin)


def test_a_written_call_is_margined_at_a_trade_of_its_future_since_the_settlement(
    future, call, buyer, seller
):
    # given the future settled yesterday at 2.60 and traded at 2.80 today, after that close
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=today() - timedelta(days=1),
        price=Decimal("2.60"),
        source=SettlementPrice.Source.VWAP,
    )
    place(seller, future, "sell", 1, "2.80")
    place(buyer, future, "buy", 1, "2.80")

    margin = order_margin_per_contract(call, "sell", Decimal("0.150"))

    # then the forward is the future's mark, the trade (as the portfolio and the chain show
    # it), not the settlement the market has moved from
    assert margin == ceil_micros(written_option_margin(call, 1, 2.80, DEFAULT_SIGMA).margin)
    assert margin > ceil_micros(written_option_margin(call, 1, 2.60, DEFAULT_SIGMA).margin)


def test_a_written_call_is_margined_at_its_latest_implied_volatility(future, call):
    # given the call settled yesterday with an implied volatility of 45%
    SettlementPrice.objects.create(
        instrument=call,
        trading_date=today() - timedelta(days=1),
        price=Decimal("0.140"),
        source=SettlementPrice.Source.VWAP,
        implied_volatility=Decimal("0.45"),
    )

    margin = order_margin_per_contract(call, "sell", Decimal("0.150"))

    expected = written_option_margin(call, 1, 2.50, 0.45)
    assert margin == ceil_micros(expected.margin)
    assert margin != ceil_micros(written_option_margin(call, 1, 2.50, DEFAULT_SIGMA).margin)


def test_a_deep_out_of_the_money_written_call_pays_the_short_option_minimum(future, call):
    # given the future settled yesterday at 1.00: the call struck at 2.50 is far out of the money
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=today() - timedelta(days=1),
        price=Decimal("1.00"),
        source=SettlementPrice.Source.VWAP,
    )

    margin = order_margin_per_contract(call, "sell", Decimal("0.002"))

    # then its margin is the minimum, 2% of one contract's notional at 1.00
    hours = call.gpu_hours_per_contract
    expected = written_option_margin(call, 1, 1.00, DEFAULT_SIGMA)
    assert expected.scan_risk < expected.short_option_minimum
    assert margin == ceil_micros(Decimal("0.02") * Decimal("1.00") * hours)


def test_an_option_buyer_holds_no_margin(call):
    assert order_margin_per_contract(call, "buy", Decimal("0.150")) == 0


# An account's requirement at the end of the day -------------------------------------------


def test_a_futures_position_requires_its_price_scan(future):
    hours = future.gpu_hours_per_contract

    requirement = account_requirement({future: 10}, {future.pk: Decimal("2.50")}, today())

    expected = ceil_micros(futures_scan("2.50", 10, hours))
    assert expected == 10 * 375 * hours * MICROS // 1000
    assert requirement.total == expected
    assert requirement.by_symbol == {future.symbol: expected}


def test_a_calendar_spread_gets_the_adjacent_month_credit(futures):
    # given long 10 of the first month at 2.50 and short 10 of the next at 2.40
    first, second = futures
    prices = {first.pk: Decimal("2.50"), second.pk: Decimal("2.40")}
    first_scan = futures_scan("2.50", 10, first.gpu_hours_per_contract)
    second_scan = futures_scan("2.40", 10, second.gpu_hours_per_contract)

    # when the requirement is computed for the spread and for each leg alone
    spread = account_requirement({first: 10, second: -10}, prices, today())
    long_alone = account_requirement({first: 10}, prices, today())
    short_alone = account_requirement({second: -10}, prices, today())

    # then each leg alone is its scan, and the spread is their sum less 50% of the smaller
    credit_rate = settings.EXCHANGE_CREDIT_ADJACENT_MONTHS
    assert credit_rate == Decimal("0.50")
    assert (long_alone.total, short_alone.total) == (
        ceil_micros(first_scan),
        ceil_micros(second_scan),
    )
    credit = credit_rate * min(first_scan, second_scan)
    assert spread.total == ceil_micros(first_scan + second_scan - credit)
    assert spread.total < long_alone.total + short_alone.total
    assert sum(spread.by_symbol.values()) == spread.total


def test_two_longs_in_adjacent_months_get_no_credit(futures):
    # Positions that do not hedge each other (deltas of one sign) add up in full.
    first, second = futures
    prices = {first.pk: Decimal("2.50"), second.pk: Decimal("2.40")}

    both = account_requirement({first: 10, second: 10}, prices, today())

    assert both.total == ceil_micros(
        futures_scan("2.50", 10, first.gpu_hours_per_contract)
        + futures_scan("2.40", 10, second.gpu_hours_per_contract)
    )


def test_the_same_month_in_another_region_gets_the_region_credit_and_another_sku_none(
    futures, sku, region
):
    # Scenario: spreads across regions and SKUs. Long 10 of the first month in US East, short
    # 10 of the same month in US West (30% of the smaller scan off), and short 10 of the same
    # month of another SKU (no credit: nothing documents one).
    first = futures[0]
    west = Region.objects.create(
        code="USWEST", name="US West", compliance=["soc2"], power_price_usd_per_kwh=Decimal("0.08")
    )
    a100 = Sku.objects.create(
        code="A100SXM",
        name="NVIDIA A100 SXM",
        vendor="NVIDIA",
        generation="Ampere",
        memory_gb=80,
        interconnect="nvlink",
        release_date=date(2020, 5, 14),
        power_watts=400,
    )
    [western] = futures_list_strip(sku=sku, region=west, first_month=listing_month(), months=1)
    [other_sku] = futures_list_strip(sku=a100, region=region, first_month=listing_month(), months=1)
    prices = {first.pk: Decimal("2.50"), western.pk: Decimal("2.30"), other_sku.pk: Decimal("1.20")}
    hours = first.gpu_hours_per_contract
    assert western.gpu_hours_per_contract == other_sku.gpu_hours_per_contract == hours

    regions = account_requirement({first: 10, western: -10}, prices, today())
    skus = account_requirement({first: 10, other_sku: -10}, prices, today())

    east_scan = futures_scan("2.50", 10, hours)
    west_scan = futures_scan("2.30", 10, hours)
    rate = settings.EXCHANGE_CREDIT_SAME_SKU_OTHER_REGION
    assert rate == Decimal("0.30")
    assert regions.total == ceil_micros(east_scan + west_scan - rate * west_scan)
    assert skus.total == ceil_micros(east_scan + futures_scan("1.20", 10, hours))


def test_a_short_call_adds_what_buying_it_back_costs(future, call):
    # given 3 calls written, the future settled at 2.50 and the call at 0.150
    hours = call.gpu_hours_per_contract
    prices = {future.pk: Decimal("2.50"), call.pk: Decimal("0.150")}

    requirement = account_requirement({call: -3}, prices, today())

    # then the requirement is the scan risk plus 0.150 x 3 x H (the net option value is
    # negative), above the short option minimum here
    scenario = written_option_margin(call, 3, 2.50, DEFAULT_SIGMA)
    value = Decimal("0.150") * 3 * hours * MICROS
    assert scenario.scan_risk > scenario.short_option_minimum
    assert requirement.total == ceil_micros(scenario.scan_risk) + int(value)
    assert requirement.by_symbol == {call.symbol: requirement.total}


def test_a_deep_out_of_the_money_short_call_requires_the_minimum_and_its_buy_back(future, call):
    # given 3 calls struck at 2.50 written while the future settled at 1.00, the call at 0.001
    hours = call.gpu_hours_per_contract
    prices = {future.pk: Decimal("1.00"), call.pk: Decimal("0.001")}

    requirement = account_requirement({call: -3}, prices, today())

    # then the scan risk is below the minimum, 2% of the notional per written contract, so
    # (as SPAN) the minimum is required, plus the value of buying the calls back
    scenario = written_option_margin(call, 3, 1.00, DEFAULT_SIGMA)
    minimum = settings.EXCHANGE_SHORT_OPTION_MINIMUM * Decimal("1.00") * hours * 3
    assert minimum == Decimal("0.06") * hours
    assert scenario.scan_risk < float(minimum)
    buy_back = Decimal("0.001") * 3 * hours
    assert requirement.total == ceil_micros(minimum) + int(buy_back * 10**6)


def test_a_long_call_value_covers_its_own_scan_risk(future, call):
    # given 3 calls bought, the future settled at 2.50 and the call at 0.150
    hours = call.gpu_hours_per_contract
    prices = {future.pk: Decimal("2.50"), call.pk: Decimal("0.150")}

    requirement = account_requirement({call: 3}, prices, today())

    # then the requirement is the scan risk less the calls' value at settlement (SPAN's net
    # option value), with no short option minimum
    parameters = ScanParameters(
        price_scan=float(settings.EXCHANGE_PRICE_SCAN),
        volatility_scan=float(settings.EXCHANGE_VOLATILITY_SCAN),
        short_option_minimum=float(settings.EXCHANGE_SHORT_OPTION_MINIMUM) * 2.50 * hours,
        rate=float(settings.EXCHANGE_RISK_FREE_RATE),
    )
    position = Position(3, hours, strike=2.50, call=True, expiry_years=years_to_expiry(call))
    scan = scenario_margin([position], 2.50, DEFAULT_SIGMA, parameters)
    value = int(Decimal("0.150") * 3 * hours * MICROS)
    assert scan.short_option_minimum == 0
    assert requirement.total == ceil_micros(scan.scan_risk) - value > 0

    # and once the calls are worth more than their risk, nothing is required
    rich = account_requirement({call: 3}, {**prices, call.pk: Decimal("0.900")}, today())
    assert rich.total == 0


def test_a_covered_call_needs_less_than_its_legs_alone(future, call):
    # given 3 futures long and 3 calls written on them (the long future covers the calls)
    prices = {future.pk: Decimal("2.50"), call.pk: Decimal("0.150")}

    covered = account_requirement({future: 3, call: -3}, prices, today())
    long_alone = account_requirement({future: 3}, prices, today())
    short_alone = account_requirement({call: -3}, prices, today())

    # then both are scanned together: less than the two requirements added up
    assert 0 < covered.total < long_alone.total + short_alone.total
    assert sum(covered.by_symbol.values()) == covered.total


def test_the_shares_by_symbol_add_up_to_the_total(futures, call):
    # given a spread and written calls on the first month
    first, second = futures
    prices = {first.pk: Decimal("2.50"), second.pk: Decimal("2.40"), call.pk: Decimal("0.150")}

    requirement = account_requirement({first: 7, second: -5, call: -3}, prices, today())

    assert set(requirement.by_symbol) == {first.symbol, second.symbol, call.symbol}
    assert sum(requirement.by_symbol.values()) == requirement.total
    assert all(share > 0 for share in requirement.by_symbol.values())


def test_no_position_requires_nothing(future):
    requirement = account_requirement({future: 0}, {future.pk: Decimal("2.50")}, today())

    assert (requirement.total, requirement.by_symbol) == (0, {})


@pytest.mark.parametrize("side", [1, -1])
def test_the_requirement_grows_with_the_position(future, call, side):
    prices = {future.pk: Decimal("2.50"), call.pk: Decimal("0.150")}
    sizes = [1, 2, 5, 10, 40]

    futures_totals = [
        account_requirement({future: side * size}, prices, today()).total for size in sizes
    ]
    calls_totals = [
        account_requirement({call: side * size}, prices, today()).total for size in sizes
    ]

    assert futures_totals == sorted(set(futures_totals))
    assert calls_totals == sorted(set(calls_totals))
    hours = future.gpu_hours_per_contract
    assert futures_totals == [ceil_micros(futures_scan("2.50", size, hours)) for size in sizes]


# Order acceptance --------------------------------------------------------------------------


def cash(account) -> tuple[int, int]:
    """The account's cash in the ledger: (posted debit balance, pending debits - credits)."""
    row = LedgerAccount.objects.get(code=f"trading:{account.pk}:cash:USD")
    return row.balance, row.debits_pending - row.credits_pending


def test_an_accepted_futures_order_holds_its_margin_and_fee(future, buyer):
    # given the buyer's cash before any order
    before = cash(buyer)
    hours = future.gpu_hours_per_contract

    # when it bids for 2 at 2.50 (nothing to trade with: the order rests)
    order = place(buyer, future, "buy", 2, "2.50")

    # then 2 x (full price scan + the 0.50 USD taker fee) is held on its cash
    margin = ceil_micros(futures_scan("2.50", 1, hours))
    assert order.margin_per_contract == margin
    assert cash(buyer) == (before[0], before[1] + 2 * (margin + MICROS // 2))


def test_an_accepted_written_call_fixes_its_scenario_margin(call, seller):
    order = place(seller, call, "sell", 1, "0.150")

    expected = written_option_margin(call, 1, 2.50, DEFAULT_SIGMA)
    assert order.margin_per_contract == ceil_micros(expected.margin)
