"""The hedge recommendation for a seller (``"side": "sell"``): a provider's planned capacity,
hedged by selling the strip, a floor of bought puts, and a collar (those puts, calls sold),
with revenues; the buyer's rules for listed options, halts, months at 0 and lots, in the
seller's words. Fixtures and helpers are the buyer's tests'."""

from decimal import Decimal

import pytest

from exchange.models import Instrument, SettlementPrice
from exchange.services import margin
from exchange.services.instruments import instrument_set_status
from exchange.services.listing import options_list_chain
from pricing import hedge
from tests.exchange.api.test_pricing import (
    HEDGE,
    _need,
    chains,  # noqa: F401 (a fixture)
    close,
    error_of,
    post,
    strip,  # noqa: F401 (a fixture)
    today,
)

pytestmark = pytest.mark.django_db

FORWARDS = [Decimal("2.40"), Decimal("2.25"), Decimal("2.10")]


def _sale(strip, gpus) -> dict:  # noqa: F811
    return {**_need(strip, gpus), "side": "sell"}


def test_a_sale_sells_the_strip_and_floors_and_collars_it(strip, chains):  # noqa: F811
    # given 8 GPUs of capacity to sell over the strip, and the same need to buy
    response = post(HEDGE, _sale(strip, 8))
    bought = post(HEDGE, _need(strip, 8)).json()

    # then the answer says it is a seller's, in a seller's terms: no cap, no costs
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["side"] == "sell"
    assert set(body) == {
        "side",
        *("sku", "region", "gpus", "volatility", "rate"),
        *("unhedged", "futures", "floor", "collar"),
    }
    assert set(body["floor"]) == {"puts", "premium", "expected_revenue", "worst_case_revenue"}
    assert set(body["collar"]) == {
        *("puts", "calls", "premium"),
        *("expected_revenue", "worst_case_revenue"),
    }
    assert "side" not in bought  # The buyer's answer is as it was.
    # and the strip sells 8 contracts a month, fixing the revenue at the forwards
    legs = body["futures"]["legs"]
    assert [(leg["symbol"], leg["contracts"]) for leg in legs] == [
        (future.symbol, 8) for future in strip
    ]
    hours = [future.gpu_hours_per_contract for future in strip]
    fixed = sum(8 * hour * forward for hour, forward in zip(hours, FORWARDS, strict=True))
    assert Decimal(body["futures"]["expected_revenue"]) == fixed
    assert Decimal(body["futures"]["worst_case_revenue"]) == fixed
    # and the floor buys the highest listed put at or below 10% under each forward (2.16 ->
    # P2.00, 2.025 -> P2.00), the collar sells the lowest call at or above 10% over (2.64 ->
    # C2.75, 2.475 -> C2.50): the very legs the buyer's collar sells and cap buys
    assert body["floor"]["puts"] == body["collar"]["puts"] == bought["collar"]["puts"]
    assert body["collar"]["calls"] == bought["cap"]["calls"]
    for key, option_type, strikes in (("puts", "put", "2.00"), ("calls", "call", None)):
        for leg, future in zip(body["collar"][key][:2], strip, strict=False):
            strike = Decimal(strikes or ("2.75" if future == strip[0] else "2.50"))
            assert leg["symbol"] == chains[(future.symbol, option_type, strike)].symbol
            assert leg["contracts"] == 8
    # and the floor pays the puts' premiums, the collar nets the calls' from them
    puts = sum(Decimal(leg["premium"]) for leg in body["floor"]["puts"][:2])
    calls = sum(Decimal(leg["premium"]) for leg in body["collar"]["calls"][:2])
    assert Decimal(body["floor"]["premium"]) == puts
    assert Decimal(body["collar"]["premium"]) == puts - calls
    # and the worst case is the low tail: the floor and the collar raise it over unhedged
    unhedged = body["unhedged"]
    assert Decimal(unhedged["worst_case_revenue"]) < fixed
    assert Decimal(unhedged["worst_case_revenue"]) < Decimal(unhedged["expected_revenue"])
    for name in ("floor", "collar"):
        worst = Decimal(body[name]["worst_case_revenue"])
        assert worst > Decimal(unhedged["worst_case_revenue"]), name


def test_sale_revenues_are_pricing_hedge_for_a_seller_and_repeat(strip, chains):  # noqa: F811
    # given the capacity's months and the listed legs' strikes and years to expiry
    on = today()
    hours = tuple(future.gpu_hours_per_contract for future in strip)
    years = tuple(
        ((future.delivery_start - on).days + hour / 48) / 365
        for future, hour in zip(strip, hours, strict=True)
    )
    capacity = hedge.PlannedNeed(
        gpus=3, hours=hours, forwards=tuple(map(float, FORWARDS)), years_to_delivery=years
    )
    calls = [chains[(strip[0].symbol, "call", Decimal("2.75"))]]
    calls.append(chains[(strip[1].symbol, "call", Decimal("2.50"))])
    puts = [chains[(future.symbol, "put", Decimal("2.00"))] for future in strip[:2]]
    options = hedge.ListedOptions(
        (*(float(option.strike) for option in calls), None),
        (*(margin.years_to_expiry(option, on) for option in calls), None),
        (*(float(option.strike) for option in puts), None),
        (*(margin.years_to_expiry(option, on) for option in puts), None),
    )
    expected = hedge.recommend(capacity, 0.5, rate=0.02, options=options, side=hedge.Side.SELL)

    # when the API is asked twice for the sale at 50% volatility and 2%
    sale = {**_sale(strip, 3), "volatility": "0.5", "rate": "0.02"}
    body, again = post(HEDGE, sale).json(), post(HEDGE, sale).json()

    # then its revenues are the library's seller's, in cents, and they repeat
    assert again == body
    for name in ("unhedged", "futures", "floor", "collar"):
        key = "none" if name == "unhedged" else name
        revenue = expected.revenues[key]
        assert close(body[name]["expected_revenue"], revenue.expected, 0.005), name
        assert close(body[name]["worst_case_revenue"], revenue.worst_case, 0.005), name
    assert close(body["floor"]["premium"], expected.revenues["floor"].premium, 0.02)
    assert close(body["collar"]["premium"], expected.revenues["collar"].premium, 0.04)


@pytest.mark.parametrize("side", ["short", "SELL", "", None, 1, ["sell"]])
def test_a_side_other_than_buy_or_sell_is_refused_naming_it(strip, side):  # noqa: F811
    response = post(HEDGE, {**_need(strip, 8), "side": side})

    assert error_of(response) == (400, "INVALID_INPUT", "side")


def test_buy_asked_by_name_is_the_buyers_answer(strip, chains):  # noqa: F811
    named = post(HEDGE, {**_need(strip, 8), "side": "buy"})

    assert named.status_code == 200
    assert named.content == post(HEDGE, _need(strip, 8)).content


def test_a_month_without_its_put_sells_no_call_in_the_collar(strip):  # noqa: F811
    # given the first month's strikes 2.25, 2.50 and 2.75: no put at or below 2.16
    options_list_chain(
        future=strip[0],
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=1,
    )

    body = post(HEDGE, {**_sale(strip, 2), "months": 1}).json()

    # then the floor has no put there, and the collar sells no call alone (C2.75 is listed):
    # without its put it would be a bet on prices, not a hedge
    (put,) = body["floor"]["puts"]
    assert (put["available"], put["symbol"]) == (False, None)
    assert put["reason"] == "no listed put struck at or below 2.160"
    (call,) = body["collar"]["calls"]
    assert (call["available"], call["symbol"], call["contracts"]) == (False, None, 0)
    assert call["reason"] == "no put to pair it with (no listed put struck at or below 2.160)"
    assert body["floor"]["premium"] == body["collar"]["premium"] == "0.00"
    for name in ("floor", "collar"):
        assert body[name]["worst_case_revenue"] == body["unhedged"]["worst_case_revenue"]


def test_a_halted_future_is_not_sold_and_its_options_say_why(strip, chains):  # noqa: F811
    instrument_set_status(instrument=strip[1], status=Instrument.Status.HALTED, actor=None)

    body = post(HEDGE, _sale(strip, 8)).json()

    legs = body["futures"]["legs"]
    assert [(leg["available"], leg["contracts"]) for leg in legs] == [
        (True, 8),
        (False, 0),
        (True, 8),
    ]
    assert legs[1]["reason"] == (
        f"{strip[1].symbol} is halted: an order on it is refused until trading resumes"
    )
    # the strip's revenue is no longer fixed: that month earns its price
    hours = [future.gpu_hours_per_contract for future in strip]
    fixed = sum(8 * hour * forward for hour, forward in zip(hours, FORWARDS, strict=True))
    assert Decimal(body["futures"]["worst_case_revenue"]) < fixed
    put = body["floor"]["puts"][1]
    halted = chains[(strip[1].symbol, "put", Decimal("2.00"))]
    assert (put["available"], put["contracts"]) == (False, 0)
    assert put["reason"] == (
        f"{halted.symbol} is halted with its future: {strip[1].symbol} is halted, and an order "
        "on one of its options is refused until it resumes"
    )
    assert body["floor"]["puts"][0]["available"] is True


def test_a_month_priced_at_0_is_left_out_of_the_revenues(strip, chains):  # noqa: F811
    SettlementPrice.objects.filter(instrument=strip[0]).update(price=Decimal("0"))

    body = post(HEDGE, _sale(strip, 8)).json()

    reason = (
        f"{strip[0].symbol} is priced at 0 (its settlement): no price to hedge the month at, "
        "left out of the revenues"
    )
    assert body["futures"]["legs"][0]["reason"] == reason
    assert body["floor"]["puts"][0]["reason"] == body["collar"]["calls"][0]["reason"] == reason
    hours = [future.gpu_hours_per_contract for future in strip[1:]]
    fixed = 8 * (hours[0] * FORWARDS[1] + hours[1] * FORWARDS[2])
    assert Decimal(body["futures"]["expected_revenue"]) == fixed


def test_a_capacity_whose_every_month_is_priced_at_0_has_no_prices(strip):  # noqa: F811
    SettlementPrice.objects.filter(instrument=strip[0]).update(price=Decimal("0"))

    response = post(HEDGE, {**_sale(strip, 8), "months": 1})

    assert error_of(response) == (422, "PRICING_NO_PRICES", None)
    assert "Every month of the capacity is priced at 0" in response.json()["error"]["message"]


def test_a_month_without_a_future_is_named_for_a_seller_too(strip):  # noqa: F811
    response = post(HEDGE, {**_sale(strip, 8), "months": 4})

    assert error_of(response) == (422, "PRICING_MONTH_NOT_LISTED", "months")


def test_sale_quantities_are_whole_lots_split_into_orders(strip, chains):  # noqa: F811
    # given futures in lots of 5, the first taking orders of at most 7 contracts, the third
    # at most 3 (under a lot); the first month's put at 2.00 in lots of 3, orders of at most 6
    Instrument.objects.filter(pk__in=[future.pk for future in strip]).update(lot_size=5)
    Instrument.objects.filter(pk=strip[0].pk).update(quantity_max=7)
    Instrument.objects.filter(pk=strip[2].pk).update(quantity_max=3)
    put = chains[(strip[0].symbol, "put", Decimal("2.00"))]
    Instrument.objects.filter(pk=put.pk).update(lot_size=3, quantity_max=6)

    body = post(HEDGE, _sale(strip, 8)).json()

    # then each future sells 8 GPUs rounded up to 10 contracts, as orders it accepts, and the
    # third, on which no order can be placed, is not sold and says why
    legs = body["futures"]["legs"]
    assert [(leg["contracts"], leg["orders"]) for leg in legs] == [
        (10, [{"quantity": 5, "count": 2}]),
        (10, [{"quantity": 10, "count": 1}]),
        (0, []),
    ]
    assert legs[2]["reason"].endswith("under one lot of 5: no order on it can be placed")
    # and the floor's put is 9 contracts in an order of 6 and one of 3, its premium for 9
    first = body["floor"]["puts"][0]
    assert (first["symbol"], first["contracts"]) == (put.symbol, 9)
    assert first["orders"] == [{"quantity": 6, "count": 1}, {"quantity": 3, "count": 1}]
    premium = Decimal(first["price"]) * 9 * put.gpu_hours_per_contract
    assert abs(Decimal(first["premium"]) - premium) <= Decimal("0.01")
