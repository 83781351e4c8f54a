"""Daily settlement prices (``exchange.services.settlement_prices``): the order of preference
(closing-window VWAP, mid, model, previous settlement, last trade), options' implied
volatility, idempotence and staff overrides.

Every expected price is worked out here by hand with Decimal, or by calling ``pricing``
directly (the forward curve, Black-76), never through the code under test.
"""

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from exchange.backoffice.roles import Role
from exchange.errors import RiskError, RiskErrorCode
from exchange.matcher.runtime import Matcher
from exchange.models import AuditEntry, Instrument, RiskCycle, SettlementPrice, Trade
from exchange.selectors.volatility import historical_volatility
from exchange.services import settlement_prices
from exchange.services.listing import futures_list_strip, options_list_chain
from exchange.services.risk_cycle import daily_settlement_run
from exchange.services.settlement_prices import (
    settlement_price_override,
    settlement_prices_set,
)
from pricing import black76, depreciation
from pricing.curve import ForwardCurve
from tests.exchange.support import listing_month, place, staff_user

pytestmark = pytest.mark.django_db

FUTURE_TICK = Decimal("0.005")
OPTION_TICK = Decimal("0.001")
Source = SettlementPrice.Source


def nearest_tick(value: Decimal | float, tick: Decimal) -> Decimal:
    """``value`` (a Decimal, or a float from ``pricing``) to the nearest multiple of ``tick``,
    half to even."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    return (exact / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


def trade(buyer, seller, instrument, quantity: int, price: str) -> None:
    """One trade: the seller's offer rests, the buyer takes all of it."""
    place(seller, instrument, "sell", quantity, price)
    taken = place(buyer, instrument, "buy", quantity, price)
    assert taken.filled_quantity == quantity


@pytest.fixture(autouse=True)
def _clock_after_the_close(clock_after_the_close):
    """Every test here prices today after its close (``clock_after_the_close``)."""


def close_in_two_hours(monkeypatch) -> datetime:
    """A close two hours away, with the cycle's clock past it: trades placed now fall before its
    closing window, even when the close falls after midnight (UTC)."""
    close = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(
        settlement_prices, "now", lambda: max(close, timezone.now()) + timedelta(seconds=5)
    )
    return close


def soon():
    """A close just after the trades the test placed: they fall inside the closing window."""
    return timezone.now() + timedelta(seconds=1)


def today():
    return timezone.now().date()


def row(instrument: Instrument, trading_date=None) -> SettlementPrice | None:
    return SettlementPrice.objects.filter(
        instrument=instrument, trading_date=trading_date or today()
    ).first()


def years_to_expiry(option: Instrument, trading_date) -> float:
    return (option.last_trading_day - trading_date).days / 365


@pytest.fixture
def chain(future) -> dict[str, Instrument]:
    """A call and a put at 2.50 on the first future."""
    options = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
    )
    return {option.option_type: option for option in options}


@pytest.fixture
def staff(db):
    return staff_user("riskdesk", Role.RISK)


# Market prices -----------------------------------------------------------------------------


def test_the_closing_window_vwap_rounded_to_the_tick_is_the_price(future, buyer, seller):
    # given 2 traded at 2.50 and 1 at 2.63 just now
    trade(buyer, seller, future, 2, "2.50")
    trade(buyer, seller, future, 1, "2.63")
    assert today() <= future.last_trading_day

    # when the prices are set with the window closing a second later
    settlement_prices_set(trading_date=today(), close=soon())

    # then the price is the VWAP, (2 x 2.50 + 2.63) / 3 = 2.54333..., on the nearest 0.005 tick
    vwap = (2 * Decimal("2.50") + Decimal("2.63")) / 3
    assert nearest_tick(vwap, FUTURE_TICK) == Decimal("2.545")
    settled = row(future)
    assert (settled.price, settled.source, settled.volume) == (Decimal("2.545"), Source.VWAP, 3)
    assert settled.implied_volatility is None


def test_the_closing_window_takes_trades_from_its_start_to_just_before_the_close(
    sku, region, buyer, seller, external_matcher, monkeypatch
):
    """The window is [close - EXCHANGE_SETTLEMENT_WINDOW_MINUTES, close): a settlement price
    stands for the close, and a trade at or after it is the next mark (docs/API.md, "Marks
    and forwards"), to the microsecond."""
    # given five futures, each with one trade the matcher executed at a moment around a close
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=5)
    close = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    window_start = close - timedelta(minutes=settings.EXCHANGE_SETTLEMENT_WINDOW_MINUTES)
    microsecond = timedelta(microseconds=1)
    executed = {
        "a microsecond before the close": (close - microsecond, True),
        "at the close": (close, False),
        "a microsecond after the close": (close + microsecond, False),
        "at the window's start": (window_start, True),
        "a microsecond before the window": (window_start - microsecond, False),
    }
    matcher = Matcher()
    for future, (moment, _) in zip(futures, executed.values(), strict=True):
        place(seller, future, "sell", 1, "2.50")
        place(buyer, future, "buy", 1, "2.50")
        matcher.process_pending(now=moment)

    # when the day's prices are set after that close
    monkeypatch.setattr(settlement_prices, "now", lambda: close + timedelta(hours=1))
    settlement_prices_set(trading_date=close.date(), close=close)

    # then only the trades from the window's start to a microsecond before the close make a VWAP
    for future, (label, (moment, in_window)) in zip(futures, executed.items(), strict=True):
        assert Trade.objects.get(instrument=future).executed_at == moment, label
        settled = row(future, close.date())
        assert (settled.source == Source.VWAP, settled.volume) == (
            in_window,
            1 if in_window else 0,
        ), label


def test_trades_before_the_closing_window_do_not_make_the_vwap(futures, buyer, seller, monkeypatch):
    # given trades at 2.50 then 2.55 now, and a close two hours later (the window is 30 minutes)
    future, untraded = futures
    assert settings.EXCHANGE_SETTLEMENT_WINDOW_MINUTES == 30
    trade(buyer, seller, future, 1, "2.50")
    trade(buyer, seller, future, 1, "2.55")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=close_in_two_hours(monkeypatch))

    # then no VWAP (it would be 2.525): the future keeps its last trade, 2.55, with no window
    # volume; the other month, with nothing at all, gets no price
    settled = row(future)
    assert (settled.price, settled.source, settled.volume) == (
        Decimal("2.55"),
        Source.LAST_TRADE,
        0,
    )
    assert row(untraded) is None


def test_without_trades_the_mid_of_the_best_bid_and_ask_is_the_price(future, buyer, seller):
    # given bids at 2.40 and 2.35, asks at 2.505 and 2.55 resting, no trade
    place(buyer, future, "buy", 1, "2.40")
    place(buyer, future, "buy", 3, "2.35")
    place(seller, future, "sell", 2, "2.505")
    place(seller, future, "sell", 1, "2.55")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the price is the mid of the best two, 2.4525 = 490.5 ticks, half to even: 490 ticks
    settled = row(future)
    assert (settled.price, settled.source, settled.volume) == (Decimal("2.450"), Source.MID, 0)


def test_one_side_of_the_book_makes_no_mid(future, buyer):
    # given a previous settlement at 2.30 and only a bid resting today
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=today() - timedelta(days=1),
        price=Decimal("2.30"),
        source=Source.VWAP,
    )
    place(buyer, future, "buy", 1, "2.40")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the bid alone does not price it: the previous settlement does
    settled = row(future)
    assert (settled.price, settled.source) == (Decimal("2.30"), Source.PREVIOUS)


# Model, previous, last trade --------------------------------------------------------------


def test_a_future_without_a_market_is_priced_flat_from_its_only_priced_sibling(
    futures, buyer, seller
):
    # given the first month traded at 2.50 in the window and the second month with nothing
    first, second = futures
    trade(buyer, seller, first, 1, "2.50")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the second month is on the forward curve through the first, flat beyond it
    curve = ForwardCurve.build([first.delivery_start], [2.50])
    expected = nearest_tick(curve.price(second.delivery_start), FUTURE_TICK)
    assert expected == Decimal("2.50")
    settled = row(second)
    assert (settled.price, settled.source, settled.volume) == (expected, Source.MODEL, 0)
    assert row(first).source == Source.VWAP


def test_a_future_between_priced_months_is_on_the_monotone_curve(sku, region, buyer, seller):
    # given four months: the first, second and fourth priced by the market, the third not
    months = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=4)
    trade(buyer, seller, months[0], 1, "2.50")
    trade(buyer, seller, months[1], 1, "2.40")
    place(buyer, months[3], "buy", 1, "2.05")
    place(seller, months[3], "sell", 1, "2.15")  # A mid of 2.10.

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the third month is the PCHIP curve through the three market prices, on the tick
    curve = ForwardCurve.build(
        [months[0].delivery_start, months[1].delivery_start, months[3].delivery_start],
        [2.50, 2.40, 2.10],
    )
    expected = nearest_tick(curve.price(months[2].delivery_start), FUTURE_TICK)
    assert Decimal("2.10") < expected < Decimal("2.40")
    settled = row(months[2])
    assert (settled.price, settled.source) == (expected, Source.MODEL)
    assert (row(months[3]).price, row(months[3]).source) == (Decimal("2.10"), Source.MID)


def test_beyond_the_market_the_curve_follows_the_skus_fitted_depreciation(
    sku, region, buyer, seller
):
    # given a strip of five months whose first four are quoted on a falling curve
    months = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=5)
    mids = ["2.420", "2.390", "2.360", "2.330"]
    for future, mid in zip(months, mids, strict=False):
        place(buyer, future, "buy", 1, str(Decimal(mid) - FUTURE_TICK))
        place(seller, future, "sell", 1, str(Decimal(mid) + FUTURE_TICK))

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the fifth month follows the depreciation model fitted to the four mids (each at the
    # middle of its month), scaled to meet the last one, and keeps falling
    model = depreciation.fit(
        [future.delivery_start + timedelta(days=14) for future in months[:4]],
        [float(mid) for mid in mids],
        sku.release_date,
        [],
    )
    curve = ForwardCurve.build(
        [future.delivery_start for future in months[:4]], [float(mid) for mid in mids], model
    )
    expected = nearest_tick(curve.price(months[4].delivery_start), FUTURE_TICK)
    settled = row(months[4])
    assert (settled.price, settled.source) == (expected, Source.MODEL)
    assert settled.price < Decimal("2.330")


def test_a_sibling_in_another_region_does_not_price_a_future(sku, futures, buyer, seller):
    # given the same SKU's future in another region traded, and nothing in this region
    from exchange.models import Region

    west = Region.objects.create(
        code="USWEST", name="US West", compliance=[], power_price_usd_per_kwh=Decimal("0.07")
    )
    (elsewhere, *_) = futures_list_strip(
        sku=sku, region=west, first_month=listing_month(), months=1
    )
    trade(buyer, seller, elsewhere, 1, "2.50")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then only the traded future has a price
    assert row(elsewhere).source == Source.VWAP
    assert [row(future) for future in futures] == [None, None]


def test_with_nothing_else_a_future_keeps_its_previous_settlement(
    futures, buyer, seller, monkeypatch
):
    # given both months settled two days ago and one of them traded before the window since
    first, second = futures
    for future, price in ((first, "2.30"), (second, "2.20")):
        SettlementPrice.objects.create(
            instrument=future,
            trading_date=today() - timedelta(days=2),
            price=Decimal(price),
            source=Source.VWAP,
        )
    trade(buyer, seller, first, 1, "2.60")

    # when the prices are set with the window two hours away
    settlement_prices_set(trading_date=today(), close=close_in_two_hours(monkeypatch))

    # then each keeps its previous settlement (preferred to the last trade)
    assert (row(first).price, row(first).source) == (Decimal("2.30"), Source.PREVIOUS)
    assert (row(second).price, row(second).source) == (Decimal("2.20"), Source.PREVIOUS)


def test_an_instrument_with_no_information_gets_no_price(futures, chain):
    # given futures and options with no trades, quotes or history

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then nothing is priced, and the day's cycle is only priced
    assert SettlementPrice.objects.count() == 0
    assert RiskCycle.objects.get(trading_date=today()).status == RiskCycle.Status.PRICED


# Options ----------------------------------------------------------------------------------


def test_an_option_with_a_vwap_keeps_the_volatility_its_price_implies(future, chain, buyer, seller):
    # given the future and the call traded in the window, the put not
    call, put = chain["call"], chain["put"]
    trade(buyer, seller, future, 1, "2.50")
    trade(buyer, seller, call, 2, "0.150")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the call's price is its VWAP and its volatility is Black-76's implied volatility at
    # the future's settlement price
    T = years_to_expiry(call, today())
    r = float(settings.EXCHANGE_RISK_FREE_RATE)
    sigma = black76.implied_volatility(0.150, 2.50, 2.50, T, r, True)
    settled = row(call)
    assert (settled.price, settled.source, settled.volume) == (Decimal("0.150"), Source.VWAP, 2)
    assert float(settled.implied_volatility) == pytest.approx(sigma, abs=1e-4)
    assert abs(sigma - float(settings.EXCHANGE_DEFAULT_VOLATILITY)) > 0.01

    # and the put, with no market, is valued at its sibling's implied volatility
    modelled = row(put)
    expected = nearest_tick(black76.price(2.50, 2.50, T, r, sigma, False), OPTION_TICK)
    assert (modelled.price, modelled.source) == (expected, Source.MODEL)
    assert float(modelled.implied_volatility) == pytest.approx(sigma, abs=1e-4)


def test_options_without_a_market_are_valued_by_black_76_at_the_default_volatility(
    future, chain, buyer, seller
):
    # given the future traded at 2.60 in the window and no market in its options
    trade(buyer, seller, future, 1, "2.60")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then each option is Black-76 at the default volatility, on the 0.001 tick
    sigma = float(settings.EXCHANGE_DEFAULT_VOLATILITY)
    r = float(settings.EXCHANGE_RISK_FREE_RATE)
    for option in (chain["call"], chain["put"]):
        T = years_to_expiry(option, today())
        is_call = option.option_type == "call"
        expected = nearest_tick(black76.price(2.60, 2.50, T, r, sigma, is_call), OPTION_TICK)
        settled = row(option)
        assert (settled.price, settled.source) == (expected, Source.MODEL), option.symbol
        assert settled.implied_volatility == settings.EXCHANGE_DEFAULT_VOLATILITY
    # a call in the money is worth more than the put out of it
    assert row(chain["call"]).price > row(chain["put"]).price > 0


def test_options_without_a_market_are_valued_at_their_futures_historical_volatility(
    future, chain, buyer, seller
):
    """With twelve days of the future's settlement prices behind it, an option nobody trades
    is valued at how much the future has moved, not at the flat default."""
    # given the future settled on twelve earlier business days, moving about 3% a day
    days, day = [], today() - timedelta(days=1)
    while len(days) < 12:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    for index, settled_on in enumerate(reversed(days)):
        SettlementPrice.objects.create(
            instrument=future,
            trading_date=settled_on,
            price=Decimal("2.50") * (Decimal("1.03") if index % 2 else Decimal("0.97")),
            source=Source.VWAP,
        )
    sigma = historical_volatility(future.pk)
    assert sigma is not None and abs(sigma - float(settings.EXCHANGE_DEFAULT_VOLATILITY)) > 0.1
    trade(buyer, seller, future, 1, "2.60")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then each option is Black-76 at that volatility, which its row keeps
    r = float(settings.EXCHANGE_RISK_FREE_RATE)
    for option in (chain["call"], chain["put"]):
        T = years_to_expiry(option, today())
        is_call = option.option_type == "call"
        expected = nearest_tick(black76.price(2.60, 2.50, T, r, sigma, is_call), OPTION_TICK)
        settled = row(option)
        assert (settled.price, settled.source) == (expected, Source.MODEL), option.symbol
        assert settled.implied_volatility == Decimal(repr(sigma)).quantize(Decimal("0.000001"))


def test_on_its_last_trading_day_an_option_s_model_price_is_its_intrinsic_value_on_its_tick(
    future, buyer, seller
):
    """A future on 0.005 leaves an option on 0.01 in the money by an amount off its tick: a
    settlement price off the tick, which no order could trade at and an override would be
    refused."""
    # given a call and a put at 2.50 on a 0.01 tick, trading their last day, no market in them
    call, put = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
        tick_size=Decimal("0.01"),
    )
    Instrument.objects.filter(pk__in=[call.pk, put.pk]).update(last_trading_day=today())
    # and the future traded at 2.605 in the window
    trade(buyer, seller, future, 1, "2.605")

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the call is its intrinsic 0.105 to the nearest 0.01, half to even: 0.10; the put 0
    assert (row(future).price, row(call).price, row(call).source) == (
        Decimal("2.605"),
        Decimal("0.10"),
        Source.MODEL,
    )
    assert row(put).price == 0
    assert row(call).price % Decimal("0.01") == 0


def test_an_option_s_black_76_model_price_is_on_its_tick(future, buyer, seller):
    # given a call at 2.50 on a 0.01 tick with no market, and its future traded at 2.60
    call, _put = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
        tick_size=Decimal("0.01"),
    )
    trade(buyer, seller, future, 1, "2.60")

    settlement_prices_set(trading_date=today(), close=soon())

    # then it is Black-76 at the default volatility to the nearest 0.01, half to even
    sigma = float(settings.EXCHANGE_DEFAULT_VOLATILITY)
    r = float(settings.EXCHANGE_RISK_FREE_RATE)
    value = black76.price(2.60, 2.50, years_to_expiry(call, today()), r, sigma, True)
    assert row(call).price == nearest_tick(value, Decimal("0.01"))


def test_options_on_an_unpriced_future_get_no_price(future, chain, buyer, seller):
    # given a call traded in the window but nothing on its future
    trade(buyer, seller, chain["call"], 1, "0.150")

    settlement_prices_set(trading_date=today(), close=soon())

    # then without a forward no option of the chain can be priced, not even the traded one
    assert SettlementPrice.objects.count() == 0


# Idempotence ------------------------------------------------------------------------------


def test_setting_the_prices_twice_keeps_the_first_prices(future, chain, buyer, seller):
    # given the day's prices set once: both futures (one by VWAP, one by model) and both options
    trade(buyer, seller, future, 1, "2.50")
    settlement_prices_set(trading_date=today(), close=soon())
    first = {
        settled.instrument_id: (settled.price, settled.source)
        for settled in SettlementPrice.objects.all()
    }
    assert len(first) == 4

    # when the future trades again higher and the prices are set again
    trade(buyer, seller, future, 1, "2.90")
    settlement_prices_set(trading_date=today(), close=soon())

    # then no row was added and no price changed
    again = {
        settled.instrument_id: (settled.price, settled.source)
        for settled in SettlementPrice.objects.all()
    }
    assert again == first
    assert RiskCycle.objects.count() == 1


def test_a_second_run_does_not_model_from_a_price_that_is_not_a_market_price(futures):
    # given the first month settled yesterday and nothing else: today it keeps that price
    # (previous), and the second month, with no market-priced sibling, gets none
    first, second = futures
    SettlementPrice.objects.create(
        instrument=first,
        trading_date=today() - timedelta(days=1),
        price=Decimal("2.30"),
        source=Source.VWAP,
    )
    settlement_prices_set(trading_date=today(), close=soon())
    assert (row(first).source, row(second)) == (Source.PREVIOUS, None)

    # when the prices are set again (as the daily run does after the preview)
    settlement_prices_set(trading_date=today(), close=soon())

    # then the first month's carried price is not a market price for the curve: the second
    # month still has none, as after the first run
    assert row(second) is None
    assert SettlementPrice.objects.filter(trading_date=today()).count() == 1


def test_an_overridden_sibling_prices_the_curve_on_the_next_run(futures, staff):
    # given staff set the first month at 2.40 before the day's prices were set
    first, second = futures
    settlement_price_override(
        instrument=first,
        trading_date=today(),
        price=Decimal("2.40"),
        reason="No market today",
        actor=staff,
    )

    # when the prices are set
    settlement_prices_set(trading_date=today(), close=soon())

    # then the override is a market price: the second month is on the curve through it (flat)
    curve = ForwardCurve.build([first.delivery_start], [2.40])
    expected = nearest_tick(curve.price(second.delivery_start), FUTURE_TICK)
    assert (row(second).price, row(second).source) == (expected, Source.MODEL)
    assert (row(first).price, row(first).source) == (Decimal("2.40"), Source.OVERRIDE)


# Overrides --------------------------------------------------------------------------------


def test_an_override_needs_a_reason_and_writes_nothing_without_one(future, staff):
    with pytest.raises(RiskError) as refused:
        settlement_price_override(
            instrument=future,
            trading_date=today(),
            price=Decimal("2.50"),
            reason="   ",
            actor=staff,
        )

    assert refused.value.code == RiskErrorCode.REASON_REQUIRED == "RISK_REASON_REQUIRED"
    assert refused.value.field == "reason"
    assert SettlementPrice.objects.count() == 0
    assert not AuditEntry.objects.filter(action="settlement_price.override").exists()
    assert RiskCycle.objects.count() == 0


@pytest.mark.parametrize("price", ["2.502", "-0.005", "1000.005"])
def test_an_override_off_the_tick_or_range_is_refused(future, staff, price):
    with pytest.raises(RiskError) as refused:
        settlement_price_override(
            instrument=future,
            trading_date=today(),
            price=Decimal(price),
            reason="Thin close",
            actor=staff,
        )

    assert refused.value.code == RiskErrorCode.INVALID_PRICE == "RISK_INVALID_SETTLEMENT_PRICE"
    assert refused.value.message == "The price must be on the 0.005 tick, from 0 to 1000 $/GPU-hr."
    assert SettlementPrice.objects.count() == 0
    assert not AuditEntry.objects.filter(action="settlement_price.override").exists()


def test_an_override_replaces_the_price_and_is_audited(future, buyer, seller, staff):
    # given the day's VWAP set at 2.50 on 1 contract
    trade(buyer, seller, future, 1, "2.50")
    settlement_prices_set(trading_date=today(), close=soon())
    original = row(future)

    # when staff override it to 2.60
    overridden = settlement_price_override(
        instrument=future,
        trading_date=today(),
        price=Decimal("2.60"),
        reason="Trade at 2.50 was an error",
        actor=staff,
    )

    # then the same row holds the override, with its reason and author
    stored = row(future)
    assert stored.pk == overridden.pk == original.pk
    assert (stored.price, stored.source, stored.volume) == (Decimal("2.60"), Source.OVERRIDE, 1)
    assert (stored.reason, stored.set_by) == ("Trade at 2.50 was an error", staff)
    audit = AuditEntry.objects.get(action="settlement_price.override")
    assert (audit.actor, audit.target_type, audit.target_id) == (
        staff,
        "SettlementPrice",
        str(stored.pk),
    )
    assert Decimal(audit.before["price"]) == Decimal("2.50")
    assert audit.before["source"] == Source.VWAP
    assert audit.after == {
        "instrument": future.symbol,
        "trading_date": str(today()),
        "price": "2.60",
    }
    assert audit.reason == "Trade at 2.50 was an error"

    # and setting the prices again keeps the override
    settlement_prices_set(trading_date=today(), close=soon())
    assert (row(future).price, row(future).source) == (Decimal("2.60"), Source.OVERRIDE)


def test_an_option_override_records_the_volatility_it_implies(future, chain, buyer, seller, staff):
    # given the future settled at 2.50 today
    trade(buyer, seller, future, 1, "2.50")
    settlement_prices_set(trading_date=today(), close=soon())
    call = chain["call"]

    # when staff set the call at 0.180
    settlement_price_override(
        instrument=call,
        trading_date=today(),
        price=Decimal("0.180"),
        reason="Broker quotes",
        actor=staff,
    )

    # then its volatility is the one 0.180 implies at 2.50
    sigma = black76.implied_volatility(
        0.180,
        2.50,
        2.50,
        years_to_expiry(call, today()),
        float(settings.EXCHANGE_RISK_FREE_RATE),
        True,
    )
    assert float(row(call).implied_volatility) == pytest.approx(sigma, abs=1e-4)


def test_an_override_of_a_settled_day_is_refused_and_changes_nothing(future, buyer, seller, staff):
    # given the day priced (VWAP 2.50) and settled
    trade(buyer, seller, future, 1, "2.50")
    close = soon()
    cycle = daily_settlement_run(trading_date=today(), close=close)
    assert cycle.status == RiskCycle.Status.SETTLED
    before = (row(future).price, row(future).source, row(future).updated_at)
    audits = AuditEntry.objects.count()

    # when staff try to override it
    with pytest.raises(RiskError) as refused:
        settlement_price_override(
            instrument=future,
            trading_date=today(),
            price=Decimal("2.60"),
            reason="Too late",
            actor=staff,
        )

    # then it is refused and nothing changed
    assert refused.value.code == RiskErrorCode.DAY_SETTLED == "RISK_DAY_SETTLED"
    assert (row(future).price, row(future).source, row(future).updated_at) == before
    assert before[:2] == (Decimal("2.50"), Source.VWAP)
    assert AuditEntry.objects.count() == audits


@pytest.mark.parametrize(
    ("days_ahead", "clock", "code", "why"),
    [
        (1, None, RiskErrorCode.DAY_IN_FUTURE, "is after today"),
        (400, None, RiskErrorCode.DAY_IN_FUTURE, "is after today"),
        # Today at 10:00, six hours before its close: prices from part of the closing window
        # or from the book while it trades, variation margin on them.
        (0, time(10, 0), RiskErrorCode.DAY_NOT_CLOSED, "closes at 16:00 UTC"),
        (0, time(15, 59, 59), RiskErrorCode.DAY_NOT_CLOSED, "closes at 16:00 UTC"),
    ],
)
def test_a_trading_day_before_its_close_is_refused_and_writes_nothing(
    admin_client, settings, monkeypatch, future, buyer, seller, days_ahead, clock, code, why
):
    from django.core.management import CommandError, call_command
    from django.urls import reverse

    from ledger.models import Entry

    settings.EXCHANGE_SETTLEMENT_CLOSE = "16:00"
    if clock is not None:
        moment = datetime.combine(today(), clock, tzinfo=UTC)
        monkeypatch.setattr(settlement_prices, "now", lambda: moment)
    trade(buyer, seller, future, 5, "2.50")
    day = today() + timedelta(days=days_ahead)
    url = reverse("admin:exchange_riskcycle_run")

    # when the service, the command and the admin's preview and confirm are asked for it
    for run in (settlement_prices_set, daily_settlement_run):
        with pytest.raises(RiskError) as refused:
            run(trading_date=day)
        assert (refused.value.code, refused.value.field) == (code, "trading_date")
    for extra in ([], ["--preview"]):
        with pytest.raises(CommandError, match=str(code)):
            call_command("settle_day", "--date", day.isoformat(), *extra)
    pages = [
        admin_client.post(
            url, {"trading_date": day.isoformat(), button: "1", "confirm_date": str(day)}
        )
        for button in ("preview", "confirm")
    ]

    # then each says why, and no cycle, price or entry is written
    for page in pages:
        assert page.status_code == 200
        content = page.content.decode()
        assert str(code) in content and f"{day} {why}" in content
        assert "Confirm: settle" not in content
    assert not RiskCycle.objects.exists()
    assert not SettlementPrice.objects.exists()
    assert not Entry.objects.filter(idempotency_key__startswith="variation:").exists()


# 2026-12-07 is a Monday: before its close the latest closed business day is Friday the 4th.
@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 12, 8, 15, 59, tzinfo=UTC), date(2026, 12, 7)),  # Tuesday, before.
        (datetime(2026, 12, 8, 16, 0, tzinfo=UTC), date(2026, 12, 8)),  # Tuesday, at the close.
        (datetime(2026, 12, 7, 9, 0, tzinfo=UTC), date(2026, 12, 4)),  # Monday morning.
        (datetime(2026, 12, 6, 20, 0, tzinfo=UTC), date(2026, 12, 4)),  # Sunday evening.
    ],
)
def test_the_days_run_by_default_are_the_latest_closed_business_day(
    admin_client, settings, monkeypatch, moment, expected
):
    from django.core.management import CommandError, call_command
    from django.urls import reverse

    settings.EXCHANGE_SETTLEMENT_CLOSE = "16:00"
    monkeypatch.setattr(settlement_prices, "now", lambda: moment)
    day = expected

    assert settlement_prices.last_closed_day() == day
    form = admin_client.get(reverse("admin:exchange_riskcycle_run")).context["form"]
    assert form["trading_date"].value() == day
    # Nothing is listed, so the command's default day is refused by name (before any listing).
    with pytest.raises(CommandError, match=f"^RISK_DAY_BEFORE_LISTING: {day} is before"):
        call_command("settle_day")


def test_today_can_be_priced_once_closed(future, buyer, seller):
    trade(buyer, seller, future, 5, "2.50")

    cycle = settlement_prices_set(trading_date=today(), close=soon())

    assert cycle.status == RiskCycle.Status.PRICED
    assert row(future, today()) is not None
