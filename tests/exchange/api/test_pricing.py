"""Pricing calculators: Black-76 option quotes and Greeks, implied volatilities, and hedge
recommendations on the forward curve."""

import math
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from exchange import calendar
from exchange.models import Instrument, Region, SettlementPrice
from exchange.selectors import risk
from exchange.selectors.marks import mark_price
from exchange.selectors.volatility import historical_volatility
from exchange.services import margin
from exchange.services.api_keys import api_key_create
from exchange.services.instruments import instrument_set_status
from exchange.services.listing import futures_list_strip, options_list_chain
from exchange.services.settlement_prices import on_tick
from pricing import black76, hedge
from tests.exchange.selectors.test_volatility import PRICES as HISTORY
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db

QUOTE = "/api/v1/pricing/option-quote/"
IMPLIED = "/api/v1/pricing/implied-volatility/"
HEDGE = "/api/v1/pricing/hedge/"
RATE = float(settings.EXCHANGE_RISK_FREE_RATE)
DEFAULT_VOLATILITY = float(settings.EXCHANGE_DEFAULT_VOLATILITY)


def post(path: str, body: dict, client: APIClient | None = None):
    return (client or APIClient()).post(path, body, format="json")


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


def close(text: str | None, expected: float, tolerance: float) -> bool:
    return text is not None and abs(float(text) - expected) <= tolerance


def today():
    return timezone.now().date()


# Option quotes from given terms.


def test_quote_from_terms_is_black76_with_its_greeks():
    # given Hull's Black-76 example: F = K = 20, 4 months, r = 9%, sigma = 25%
    terms = {
        "forward": "20",
        "strike": "20",
        "years": "0.33333333",
        "rate": "0.09",
        "volatility": "0.25",
        "option_type": "put",
    }

    # when it is quoted
    response = post(QUOTE, terms)

    # then the price is Hull's 1.1166 and every figure is Black-76's, as decimal strings
    assert response.status_code == 200, response.json()
    body = response.json()
    arguments = (20.0, 20.0, 0.33333333, 0.09, 0.25, False)
    assert body["price"] == f"{black76.price(*arguments):.6f}"
    assert round(float(body["price"]), 4) == 1.1166
    greeks = black76.greeks(*arguments)
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        assert close(body[name], getattr(greeks, name), 1e-8), name
    assert body["delta"] < "0" and body["delta"].startswith("-0.")
    assert (body["forward"], body["strike"], body["years"], body["rate"], body["volatility"]) == (
        "20.000000",
        "20.000000",
        "0.33333333",
        "0.090000",
        "0.250000",
    )
    assert (body["instrument"], body["expiry"], body["option_type"]) == (None, None, "put")


def test_quote_with_an_expiry_date_counts_actual_days_and_the_exchange_rate():
    # given an expiry 73 days away and no rate
    expiry = today() + timedelta(days=73)
    terms = {
        "forward": "2.40",
        "strike": "2.50",
        "expiry": expiry.isoformat(),
        "volatility": "0.6",
        "option_type": "call",
    }

    # when
    body = post(QUOTE, terms).json()

    # then the time is 73/365 = 0.2 years at the exchange's risk-free rate
    assert body["years"] == "0.20000000"
    assert body["expiry"] == expiry.isoformat()
    assert Decimal(body["rate"]) == settings.EXCHANGE_RISK_FREE_RATE
    assert body["price"] == f"{black76.price(2.4, 2.5, 0.2, RATE, 0.6, True):.6f}"


def test_call_less_put_is_the_discounted_forward_less_strike():
    # given a call and a put on the same terms
    terms = {"forward": "3.10", "strike": "2.75", "years": "0.5", "volatility": "0.8"}

    # when both are quoted
    call = post(QUOTE, {**terms, "option_type": "call"}).json()
    put = post(QUOTE, {**terms, "option_type": "put"}).json()

    # then put-call parity holds, and the deltas differ by the discount factor
    discount = math.exp(-RATE * 0.5)
    parity = Decimal(call["price"]) - Decimal(put["price"])
    assert abs(float(parity) - discount * (3.10 - 2.75)) <= 2e-6
    assert abs(float(Decimal(call["delta"]) - Decimal(put["delta"])) - discount) <= 2e-8


def test_at_the_strike_with_no_time_left_gamma_and_theta_are_null():
    terms = {
        "forward": "2.5",
        "strike": "2.5",
        "years": "0",
        "volatility": "0.6",
        "option_type": "call",
    }

    response = post(QUOTE, terms)

    assert response.status_code == 200
    body = response.json()
    assert body["price"] == "0.000000"
    assert (body["gamma"], body["theta"]) == (None, None)
    assert body["delta"] == "0.50000000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"forward": "0"}, "forward"),
        ({"forward": "-2.5"}, "forward"),
        ({"forward": "abc"}, "forward"),
        ({"forward": "NaN"}, "forward"),
        ({"strike": "1000001"}, "strike"),
        ({"strike": None}, "strike"),
        ({"volatility": "10.5"}, "volatility"),
        ({"volatility": "-0.1"}, "volatility"),
        ({"volatility": None}, "volatility"),
        ({"option_type": "straddle"}, "option_type"),
        ({"option_type": None}, "option_type"),
        ({"rate": "1.5"}, "rate"),
        ({"years": "51"}, "years"),
        ({"years": "-1"}, "years"),
        ({"years": "0.123456789"}, "years"),
        ({"years": None}, "years"),
        ({"expiry": "2050-01-01"}, "years"),  # Both given.
        ({"years": None, "expiry": "2020-01-01"}, "expiry"),
        ({"years": None, "expiry": "next week"}, "expiry"),
        ({"years": None, "expiry": "9999-12-31"}, "expiry"),  # Beyond 50 years.
        ({"instrument": "H100SXM-USEAST-209901-C2.50"}, "forward"),
    ],
)
def test_bad_terms_are_400_with_the_field(change, field):
    terms = {
        "forward": "2.5",
        "strike": "2.5",
        "years": "0.5",
        "volatility": "0.6",
        "option_type": "call",
    }
    terms.update(change)
    terms = {name: value for name, value in terms.items() if value is not None}

    response = post(QUOTE, terms)

    assert error_of(response) == (400, "INVALID_INPUT", field)


QUOTE_TERMS = {
    "forward": "2.4",
    "strike": "2.5",
    "years": "0.5",
    "rate": "0.04",
    "volatility": "0.6",
    "option_type": "call",
}
IMPLIED_TERMS = {
    "price": "0.1",
    "forward": "2.4",
    "strike": "2.5",
    "years": "0.5",
    "rate": "0.04",
    "option_type": "call",
}


@pytest.mark.parametrize(
    ("path", "terms", "field", "value"),
    [
        *(
            (QUOTE, QUOTE_TERMS, name, float(QUOTE_TERMS[name]))
            for name in QUOTE_TERMS
            if name != "option_type"
        ),
        *(
            (IMPLIED, IMPLIED_TERMS, name, float(IMPLIED_TERMS[name]))
            for name in IMPLIED_TERMS
            if name != "option_type"
        ),
        (QUOTE, QUOTE_TERMS, "forward", 2),
        (QUOTE, QUOTE_TERMS, "forward", "2.4e0"),
        (QUOTE, QUOTE_TERMS, "strike", " 2.5"),
        (QUOTE, QUOTE_TERMS, "volatility", "+0.6"),
        (QUOTE, QUOTE_TERMS, "rate", "4e-2"),
        (IMPLIED, IMPLIED_TERMS, "price", True),
    ],
)
def test_decimals_given_as_json_numbers_or_not_in_digits_are_400_with_the_field(
    path, terms, field, value
):
    # given terms that are answered as they are
    assert post(path, terms).status_code == 200

    # when one decimal is a JSON number (a float to JSON parsers) or not written in digits
    response = post(path, {**terms, field: value})

    # then it is refused as the orders' prices are, naming the field
    assert error_of(response) == (400, "INVALID_INPUT", field)
    assert "decimal string" in response.json()["error"]["message"]


def test_a_negative_rate_is_a_signed_decimal_string():
    response = post(QUOTE, {**QUOTE_TERMS, "rate": "-0.01"})

    assert response.status_code == 200
    assert response.json()["rate"] == "-0.010000"


def test_a_body_that_is_not_an_object_is_400():
    response = APIClient().post(QUOTE, "[1, 2]", content_type="application/json")

    assert response.status_code == 400


# Option quotes of listed options.


def test_quote_of_a_listed_option_uses_its_terms_and_the_reference_price(call, future):
    # given the underlying settled yesterday at 2.60, and no implied volatility yet
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=today() - timedelta(days=1),
        price=Decimal("2.60"),
        source="vwap",
    )

    # when the call is quoted by its symbol
    response = post(QUOTE, {"instrument": call.symbol})

    # then it is Black-76 at 2.60, strike 2.50, the option's time to expiry and the default
    # volatility
    assert response.status_code == 200, response.json()
    body = response.json()
    years = (call.last_trading_day - today()).days / 365
    assert (body["instrument"], body["option_type"], body["expiry"]) == (
        call.symbol,
        "call",
        call.last_trading_day.isoformat(),
    )
    assert (body["forward"], body["strike"]) == ("2.600000", "2.500000")
    assert Decimal(body["volatility"]) == settings.EXCHANGE_DEFAULT_VOLATILITY
    assert close(body["years"], years, 1e-8)
    expected = black76.price(2.6, 2.5, years, RATE, DEFAULT_VOLATILITY, True)
    assert close(body["price"], expected, 1e-6)


def test_quote_of_a_listed_option_takes_its_implied_volatility_or_the_one_given(
    call, future, buyer, seller
):
    # given a last trade of the future at 2.45 and the call's settled implied volatility of 45%
    SettlementPrice.objects.create(
        instrument=call,
        trading_date=today() - timedelta(days=1),
        price=Decimal("0.100"),
        source="vwap",
        implied_volatility=Decimal("0.45"),
    )
    assert mark_price(future) is None
    place(seller, future, "sell", 1, "2.45")
    place(buyer, future, "buy", 1, "2.45")
    years = (call.last_trading_day - today()).days / 365

    # when it is quoted without and with a volatility
    settled = post(QUOTE, {"instrument": call.symbol}).json()
    given = post(QUOTE, {"instrument": call.symbol, "volatility": "0.9", "rate": "0"}).json()

    # then
    assert (settled["forward"], settled["volatility"]) == ("2.450000", "0.450000")
    assert close(settled["price"], black76.price(2.45, 2.5, years, RATE, 0.45, True), 1e-6)
    assert (given["volatility"], given["rate"]) == ("0.900000", "0.000000")
    assert close(given["price"], black76.price(2.45, 2.5, years, 0.0, 0.9, True), 1e-6)


def _trade_and_quotes(future, buyer, seller, maker) -> None:
    """A trade of the future at 2.43, then 2.40 bid and 2.44 offered (mid 2.42)."""
    place(seller, future, "sell", 1, "2.43")
    place(buyer, future, "buy", 1, "2.43")
    _quotes(future, buyer, maker)


def _quotes(future, buyer, maker) -> None:
    place(buyer, future, "buy", 1, "2.40")
    place(maker, future, "sell", 1, "2.44")


def _settled_yesterday(future, buyer, seller, maker) -> None:
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=today() - timedelta(days=1),
        price=Decimal("2.45"),
        source="vwap",
    )


@pytest.mark.parametrize(
    ("state", "forward", "source"),
    [
        (_trade_and_quotes, "2.430000", "trade"),
        (lambda future, buyer, seller, maker: _quotes(future, buyer, maker), "2.420000", "mid"),
        (_settled_yesterday, "2.450000", "settlement"),
    ],
    ids=["last trade and a book", "only a mid", "only a settlement price"],
)
def test_the_chain_and_the_quote_value_a_listed_option_alike(
    state, forward, source, call, future, buyer, seller, maker
):
    # given the future in the state
    state(future, buyer, seller, maker)

    # when the call is read on its chain and quoted by its symbol
    chain = APIClient().get(f"/api/v1/instruments/{future.symbol}/chain/").json()
    quote = post(QUOTE, {"instrument": call.symbol}).json()

    # then both value it at the same forward, from the same source, to the same fair value
    # (the chain's on the option's tick)
    (side,) = [row["call"] for row in chain["rows"] if row["call"]["symbol"] == call.symbol]
    assert (chain["forward"], chain["forward_source"]) == (forward, source)
    assert (quote["forward"], quote["forward_source"]) == (forward, source)
    ticks = (Decimal(quote["price"]) / call.tick_size).to_integral_value(ROUND_HALF_EVEN)
    assert Decimal(side["fair_value"]) == ticks * call.tick_size
    years = (call.last_trading_day - today()).days / 365
    expected = black76.price(float(forward), 2.5, years, RATE, DEFAULT_VOLATILITY, True)
    assert close(quote["price"], expected, 1e-6)


def test_quote_of_terms_has_no_forward_source():
    body = post(
        QUOTE,
        {
            "forward": "2.5",
            "strike": "2.5",
            "years": "0.25",
            "option_type": "call",
            "volatility": "0.5",
        },
    ).json()

    assert body["forward_source"] is None


def test_a_listed_option_without_a_reference_price_is_422(call):
    response = post(QUOTE, {"instrument": call.symbol})

    assert error_of(response) == (422, "PRICING_NO_REFERENCE_PRICE", "instrument")


def test_a_future_is_not_an_option(future):
    response = post(QUOTE, {"instrument": future.symbol})

    assert error_of(response) == (422, "PRICING_NOT_AN_OPTION", "instrument")


def test_an_expired_option_is_422(call, future):
    SettlementPrice.objects.create(
        instrument=future, trading_date=today(), price=Decimal("2.5"), source="vwap"
    )
    Instrument.objects.filter(pk=call.pk).update(last_trading_day=today() - timedelta(days=1))

    response = post(QUOTE, {"instrument": call.symbol})

    assert error_of(response) == (422, "PRICING_OPTION_EXPIRED", "instrument")


@pytest.mark.parametrize("symbol", ["H100SXM-USEAST-209901-C2.50", "not a symbol!", "x" * 64])
def test_an_unknown_instrument_is_404(db, symbol):
    response = post(QUOTE, {"instrument": symbol})

    assert error_of(response)[:2] == (404, "NOT_FOUND")


def test_pricing_is_public_and_a_key_changes_nothing(buyer):
    token = api_key_create(organization=buyer.organization, name="bot", scopes=["read"]).token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    terms = {
        "forward": "2.5",
        "strike": "2.4",
        "years": "0.25",
        "volatility": "0.5",
        "option_type": "put",
    }

    assert post(QUOTE, terms, client).json() == post(QUOTE, terms).json()


# Implied volatility.


@pytest.mark.parametrize(
    ("strike", "option_type", "sigma"),
    [("2.50", "call", 0.45), ("2.00", "put", 0.8), ("3.10", "call", 0.3), ("2.5", "put", 1.5)],
)
def test_implied_volatility_recovers_the_volatility_of_a_price(strike, option_type, sigma):
    # given a Black-76 price at a known volatility, to 6 decimals
    value = black76.price(2.5, float(strike), 0.5, RATE, sigma, option_type == "call")
    terms = {
        "price": f"{value:.6f}",
        "forward": "2.5",
        "strike": strike,
        "years": "0.5",
        "option_type": option_type,
    }

    # when its implied volatility is asked for
    response = post(IMPLIED, terms)

    # then it is the volatility, within what 6 decimals of price determine
    assert response.status_code == 200, response.json()
    implied = response.json()["implied_volatility"]
    vega = black76.greeks(2.5, float(strike), 0.5, RATE, sigma, option_type == "call").vega
    assert close(implied, sigma, 1e-6 / vega + 1e-6)
    assert len(implied.split(".")[1]) == 6


def test_implied_volatility_takes_an_expiry_and_a_rate():
    expiry = today() + timedelta(days=146)  # 0.4 years.
    value = black76.price(2.2, 2.4, 0.4, 0.05, 0.55, True)
    terms = {
        "price": f"{value:.6f}",
        "forward": "2.2",
        "strike": "2.4",
        "expiry": expiry.isoformat(),
        "rate": "0.05",
        "option_type": "call",
    }

    implied = post(IMPLIED, terms).json()["implied_volatility"]

    assert close(implied, 0.55, 1e-4)


@pytest.mark.parametrize(
    ("price", "option_type", "code"),
    [
        ("0.40", "call", "PRICING_PRICE_BELOW_INTRINSIC"),  # Intrinsic: DF x 0.50.
        ("0.10", "put", "PRICING_PRICE_BELOW_INTRINSIC"),
        ("3.00", "call", "PRICING_PRICE_ABOVE_UPPER_BOUND"),  # DF x 3.00 is below it.
        ("3.50", "put", "PRICING_PRICE_ABOVE_UPPER_BOUND"),  # DF x 3.50 is below it.
    ],
)
def test_prices_outside_the_no_arbitrage_bounds_are_422(price, option_type, code):
    # given an in-the-money call (F 3.00, K 2.50) or out-of-the-money put, half a year out
    strike = "2.50" if option_type == "call" else "3.50"
    terms = {
        "price": price,
        "forward": "3.00",
        "strike": strike,
        "years": "0.5",
        "option_type": option_type,
    }

    response = post(IMPLIED, terms)

    assert error_of(response) == (422, code, "price")


def test_no_volatility_is_implied_without_time_left():
    terms = {
        "price": "0.1",
        "forward": "2.5",
        "strike": "2.5",
        "expiry": today().isoformat(),
        "option_type": "call",
    }

    response = post(IMPLIED, terms)

    assert error_of(response)[:2] == (422, "PRICING_INVALID_INPUT")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": None}, "price"),
        ({"price": "-0.1"}, "price"),
        ({"forward": None}, "forward"),
        ({"option_type": None}, "option_type"),
        ({"years": None}, "years"),
    ],
)
def test_bad_implied_volatility_input_is_400(change, field):
    terms = {
        "price": "0.1",
        "forward": "2.5",
        "strike": "2.5",
        "years": "0.5",
        "option_type": "call",
    }
    terms.update(change)
    terms = {name: value for name, value in terms.items() if value is not None}

    assert error_of(post(IMPLIED, terms)) == (400, "INVALID_INPUT", field)


# Hedge recommendations.


@pytest.fixture
def strip(sku, region, buyer, seller) -> list[Instrument]:
    """Three monthly futures priced three ways: settled today at 2.40, quoted 2.20 / 2.30
    (mid 2.25), last traded at 2.10."""
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=3)
    SettlementPrice.objects.create(
        instrument=futures[0], trading_date=today(), price=Decimal("2.40"), source="vwap"
    )
    place(buyer, futures[1], "buy", 1, "2.20")
    place(seller, futures[1], "sell", 1, "2.30")
    place(seller, futures[2], "sell", 1, "2.10")
    place(buyer, futures[2], "buy", 1, "2.10")
    return futures


@pytest.fixture
def chains(strip) -> dict[tuple[str, str, Decimal], Instrument]:
    """Options on the strip's first two months, 0.25 apart (1.75 to 3.25 around 2.40, 1.50 to
    3.00 around 2.25); the third month lists none. Keyed by (future, type, strike)."""
    listed = {}
    for future, reference in ((strip[0], "2.40"), (strip[1], "2.25")):
        for option in options_list_chain(
            future=future,
            reference_price=Decimal(reference),
            strike_step=Decimal("0.25"),
            strikes_each_side=3,
        ):
            listed[(future.symbol, option.option_type, option.strike)] = option
    return listed


def _need(strip, gpus) -> dict:
    return {
        "sku": "H100SXM",
        "region": "USEAST",
        "gpus": gpus,
        "first_month": f"{strip[0].delivery_start:%Y-%m}",
        "months": len(strip),
    }


def test_hedge_buys_the_strip_at_the_curve_and_caps_and_collars_it(strip):
    # given 8 GPUs for the three months of the strip
    response = post(HEDGE, _need(strip, 8))

    # then the strip buys 8 contracts of each month at its curve price
    assert response.status_code == 200, response.json()
    body = response.json()
    forwards = [Decimal("2.40"), Decimal("2.25"), Decimal("2.10")]
    assert [
        (leg["symbol"], Decimal(leg["forward"]), leg["source"], leg["contracts"])
        for leg in body["futures"]["legs"]
    ] == [
        (strip[0].symbol, forwards[0], "settlement", 8),
        (strip[1].symbol, forwards[1], "mid", 8),
        (strip[2].symbol, forwards[2], "last_trade", 8),
    ]
    hours = [future.gpu_hours_per_contract for future in strip]
    assert [leg["gpu_hours_per_contract"] for leg in body["futures"]["legs"]] == hours
    # and the strip fixes the cost: expected and worst case are the forwards' cost
    fixed = sum(8 * hour * forward for hour, forward in zip(hours, forwards, strict=True))
    assert Decimal(body["futures"]["expected_cost"]) == fixed
    assert Decimal(body["futures"]["worst_case_cost"]) == fixed
    # and with no option listed, every option leg is unavailable, aimed 10% over and under
    for key, aim in (("calls", Decimal("1.1")), ("puts", Decimal("0.9"))):
        legs = body["collar"][key]
        assert [(leg["underlying"], Decimal(leg["target_strike"])) for leg in legs] == [
            (future.symbol, forward * aim) for future, forward in zip(strip, forwards, strict=True)
        ]
        assert {
            (leg["available"], leg["symbol"], leg["strike"], leg["premium"]) for leg in legs
        } == {(False, None, None, None)}
    assert body["collar"]["calls"] == body["cap"]["calls"]
    # so the cap and the collar leave the need to its prices, with no premium
    for name in ("cap", "collar"):
        assert body[name]["premium"] == "0.00"
        assert body[name]["worst_case_cost"] == body["unhedged"]["worst_case_cost"]
    assert fixed < Decimal(body["unhedged"]["worst_case_cost"])
    assert (body["volatility"], body["rate"]) == ("0.600000", "0.040000")


def test_option_legs_are_listed_options_valued_at_their_strike_and_expiry(strip, chains):
    # given 8 GPUs for the strip, whose first two months list strikes 0.25 apart
    body = post(HEDGE, _need(strip, 8)).json()

    # then each call is the lowest listed strike at or above 10% over the forward, and each
    # put the highest at or below 10% under it: 2.64 -> C2.75 and 2.16 -> P2.00, then
    # 2.475 -> C2.50 and 2.025 -> P2.00
    expected = {
        "calls": [(strip[0], "2.75"), (strip[1], "2.50")],
        "puts": [(strip[0], "2.00"), (strip[1], "2.00")],
    }
    forwards = [Decimal("2.40"), Decimal("2.25"), Decimal("2.10")]
    for key, option_type in (("calls", "call"), ("puts", "put")):
        legs = body["collar"][key]
        for leg, (future, strike), forward in zip(legs, expected[key], forwards, strict=False):
            option = chains[(future.symbol, option_type, Decimal(strike))]
            assert (leg["available"], leg["reason"]) == (True, "")
            assert (leg["symbol"], Decimal(leg["strike"])) == (option.symbol, option.strike)
            assert leg["expiry"] == f"{option.last_trading_day:%Y-%m-%d}"
            assert option.last_trading_day < future.delivery_start
            assert leg["contracts"] == 8
            # valued with Black-76 at the listed strike and the option's own expiry
            years = (option.last_trading_day - today()).days / 365
            value = black76.price(
                float(forward),
                float(option.strike),
                years,
                RATE,
                DEFAULT_VOLATILITY,
                option_type == "call",
            )
            assert close(leg["price"], value, 0.0000005), leg
            hours = future.gpu_hours_per_contract
            assert close(leg["premium"], value * hours * 8, 0.005), leg
        # the third month lists no option: its leg is unavailable and says why
        third = legs[2]
        assert (third["available"], third["symbol"], third["strike"], third["contracts"]) == (
            False,
            None,
            None,
            0,
        )
        assert third["reason"] == f"no {option_type}s listed on {strip[2].symbol}"
    # and the futures leg of that month is still recommended
    assert body["futures"]["legs"][2]["symbol"] == strip[2].symbol
    assert body["futures"]["legs"][2]["contracts"] == 8
    # the strategies' premiums are their legs'
    calls = sum(Decimal(leg["premium"]) for leg in body["cap"]["calls"][:2])
    puts = sum(Decimal(leg["premium"]) for leg in body["collar"]["puts"][:2])
    assert Decimal(body["cap"]["premium"]) == calls
    assert Decimal(body["collar"]["premium"]) == calls - puts
    # and the hedges cut the worst case, the collar's premium is less than the cap's
    unhedged = Decimal(body["unhedged"]["worst_case_cost"])
    assert Decimal(body["cap"]["worst_case_cost"]) < unhedged
    assert Decimal(body["collar"]["worst_case_cost"]) < unhedged
    assert Decimal("0") < Decimal(body["collar"]["premium"]) < Decimal(body["cap"]["premium"])


def test_no_leg_is_on_an_unlisted_or_wrong_side_strike(strip, chains):
    body = post(HEDGE, _need(strip, 8)).json()

    listed = {(option.symbol, option.strike) for option in chains.values()}
    for key in ("calls", "puts"):
        for leg in body["collar"][key]:
            if leg["available"]:
                assert (leg["symbol"], Decimal(leg["strike"])) in listed
                if key == "calls":
                    assert Decimal(leg["strike"]) >= Decimal(leg["target_strike"])
                else:
                    assert Decimal(leg["strike"]) <= Decimal(leg["target_strike"])


def test_a_month_whose_chain_ends_before_the_target_has_the_leg_unavailable(strip):
    # given the first month's strikes 1.70 to 2.30: every call is under the cap's 2.64
    options_list_chain(
        future=strip[0],
        reference_price=Decimal("2.00"),
        strike_step=Decimal("0.10"),
        strikes_each_side=3,
    )

    body = post(HEDGE, {**_need(strip, 2), "months": 1}).json()

    (call,) = body["cap"]["calls"]
    assert (call["available"], call["symbol"]) == (False, None)
    assert call["reason"] == "no listed call struck at or above 2.640"
    # ...and the collar sells no put there on its own (the 2.10 put is listed): without its
    # call it would be a bet on prices, not a hedge
    (put,) = body["collar"]["puts"]
    assert (put["available"], put["symbol"], put["contracts"]) == (False, None, 0)
    assert put["reason"] == "no call to pair it with (no listed call struck at or above 2.640)"
    assert Decimal(body["collar"]["premium"]) == 0


def test_an_expired_option_is_not_recommended(strip, chains):
    Instrument.objects.filter(underlying=strip[0]).update(status=Instrument.Status.EXPIRED)

    body = post(HEDGE, _need(strip, 1)).json()

    assert body["cap"]["calls"][0]["reason"] == f"no calls listed on {strip[0].symbol}"
    assert body["cap"]["calls"][1]["available"] is True


def test_hedge_costs_are_pricing_hedge_on_the_curve_and_repeat(strip, chains):
    # given the need's months, hours and years to the middle of each month, and the listed
    # options' strikes and years to expiry, worked out here
    on = today()
    hours = tuple(future.gpu_hours_per_contract for future in strip)
    years = tuple(
        ((future.delivery_start - on).days + hour / 48) / 365
        for future, hour in zip(strip, hours, strict=True)
    )
    need = hedge.PlannedNeed(
        gpus=3, hours=hours, forwards=(2.40, 2.25, 2.10), years_to_delivery=years
    )

    def listed(option_type, strikes):
        options = [
            chains[(future.symbol, option_type, Decimal(strike))]
            for future, strike in zip(strip, strikes, strict=False)
        ]
        return (
            (*(float(option.strike) for option in options), None),
            (*(margin.years_to_expiry(option, on) for option in options), None),
        )

    options = hedge.ListedOptions(
        *listed("call", ("2.75", "2.50")), *listed("put", ("2.00", "2.00"))
    )
    expected = hedge.recommend(need, 0.5, rate=0.02, options=options)

    # when the API is asked twice, at 50% volatility and 2%
    body = post(HEDGE, {**_need(strip, 3), "volatility": "0.5", "rate": "0.02"}).json()
    again = post(HEDGE, {**_need(strip, 3), "volatility": "0.5", "rate": "0.02"}).json()

    # then its costs are the library's on the listed options, in cents, and they repeat
    assert again == body
    for name, key in (("unhedged", "none"), ("cap", "cap"), ("collar", "collar")):
        cost = expected.costs[key]
        assert close(body[name]["expected_cost"], cost.expected, 0.005), name
        assert close(body[name]["worst_case_cost"], cost.worst_case, 0.005), name
    # (the premiums are the sum of the legs' in cents: a cent per leg at most from the total)
    assert close(body["cap"]["premium"], expected.costs["cap"].premium, 0.02)
    assert close(body["collar"]["premium"], expected.costs["collar"].premium, 0.04)
    assert len(body["unhedged"]["expected_cost"].split(".")[1]) == 2


def _settle_option(option, sigma: str, source: str = "vwap") -> None:
    SettlementPrice.objects.create(
        instrument=option,
        trading_date=today() - timedelta(days=1),
        price=Decimal("0.05"),
        source=source,
        implied_volatility=Decimal(sigma),
    )


def _settle_history(future) -> None:
    """Eleven settlement prices of ``future`` on the eleven days before yesterday: enough for
    its historical volatility."""
    for days_before, price in enumerate(reversed(HISTORY), start=2):
        SettlementPrice.objects.create(
            instrument=future,
            trading_date=today() - timedelta(days=days_before),
            price=Decimal(price),
            source="vwap",
        )


def _leg_value(leg, forward: str, sigma: float) -> float:
    return black76.price(
        float(forward),
        float(leg["strike"]),
        float(leg["years_to_expiry"]),
        RATE,
        sigma,
        leg["option_type"] == "call",
    )


def test_option_legs_are_valued_at_their_own_volatility_as_the_chain_values_them(strip, chains):
    """Every leg was valued at the request's volatility or the 60% default, so a leg's premium
    disagreed with the option chain and the quotes it would trade at."""
    # given the first month's C2.75 settled at a market price implying 45%, the second month's
    # C2.50 modelled by the settlement at 90% (its chain's), and their puts never settled;
    # the first month's future has a price history, the second's none
    first_call = chains[(strip[0].symbol, "call", Decimal("2.75"))]
    second_call = chains[(strip[1].symbol, "call", Decimal("2.50"))]
    _settle_option(first_call, "0.45")
    _settle_option(second_call, "0.90", source="model")
    _settle_history(strip[0])
    historical = historical_volatility(strip[0].pk)
    assert historical is not None and abs(historical - 0.6) > 0.01

    # when the need is hedged without a volatility
    body = post(HEDGE, _need(strip, 8)).json()

    # then each leg is valued at its own volatility and says where it comes from
    calls, puts = body["cap"]["calls"], body["collar"]["puts"]
    forwards = ("2.40", "2.25")
    expected = [
        (calls[0], forwards[0], 0.45, "implied"),
        (calls[1], forwards[1], 0.90, "chain"),
        (puts[0], forwards[0], historical, "historical"),
        (puts[1], forwards[1], DEFAULT_VOLATILITY, "default"),
    ]
    for leg, forward, sigma, source in expected:
        assert Decimal(leg["volatility"]) == Decimal(repr(sigma)).quantize(Decimal("0.000001"))
        assert leg["volatility_source"] == source
        assert close(leg["price"], _leg_value(leg, forward, sigma), 0.0000005), leg
    # the two calls, of different implied volatilities, at different volatilities
    assert calls[0]["volatility"] != calls[1]["volatility"]
    # and each is the option chain's fair value of the option, at the chain's volatility
    for leg in [*calls[:2], *puts[:2]]:
        option = Instrument.objects.get(symbol=leg["symbol"])
        chain = risk.option_chain(option.underlying, at=timezone.now())
        (side,) = [
            getattr(row, leg["option_type"]) for row in chain.rows if row.strike == option.strike
        ]
        assert side.fair_value == on_tick(Decimal(leg["price"]), option.tick_size), leg
        assert Decimal(leg["volatility"]) == Decimal(repr(margin.volatility_of(option))).quantize(
            Decimal("0.000001")
        )
    # the month without options has none, nor a volatility
    assert (calls[2]["volatility"], calls[2]["volatility_source"]) == (None, None)
    # and the top-level volatility is still the default (each month's is on its futures leg)
    assert body["volatility"] == "0.600000"
    SettlementPrice.objects.filter(instrument__kind="option").delete()
    at_default = post(HEDGE, _need(strip, 8)).json()
    assert at_default["cap"]["calls"][0]["volatility_source"] == "historical"
    assert at_default["cap"]["premium"] != body["cap"]["premium"]


def test_a_volatility_requested_values_every_leg(strip, chains):
    # given legs with volatilities of their own: implied, and historical
    _settle_option(chains[(strip[0].symbol, "call", Decimal("2.75"))], "0.45")
    _settle_history(strip[0])

    # when the need is hedged at 50%
    body = post(HEDGE, {**_need(strip, 8), "volatility": "0.5"}).json()

    # then every available leg, and the simulation of every month, is at 50%, as requested
    assert body["volatility"] == "0.500000"
    assert [(leg["volatility"], leg["volatility_source"]) for leg in body["futures"]["legs"]] == [
        ("0.500000", "requested")
    ] * 3
    forwards = ("2.40", "2.25")
    for key in ("calls", "puts"):
        legs = body["collar"][key]
        for leg, forward in zip(legs[:2], forwards, strict=True):
            assert (leg["volatility"], leg["volatility_source"]) == ("0.500000", "requested")
            assert close(leg["price"], _leg_value(leg, forward, 0.5), 0.0000005), leg
        assert (legs[2]["volatility"], legs[2]["volatility_source"]) == (None, None)


def test_each_month_is_simulated_at_the_volatility_the_market_uses_for_it(strip, chains):
    """Every month's prices were simulated at the request's volatility or the 60% default,
    whatever its legs were valued at: a month whose chain traded at 45% was simulated at 60%,
    so the costs and the comparison of strategies disagreed with the premiums shown."""
    # given the first month's call C2.75 settled at a market price implying 45%, the second
    # month's C2.50 modelled by the settlement at 90% (its chain's), their puts never settled
    # and their futures without history; the third month lists no option, its future has a
    # price history
    _settle_option(chains[(strip[0].symbol, "call", Decimal("2.75"))], "0.45")
    _settle_option(chains[(strip[1].symbol, "call", Decimal("2.50"))], "0.90", source="model")
    _settle_history(strip[2])
    historical = historical_volatility(strip[2].pk)
    assert historical is not None and abs(historical - DEFAULT_VOLATILITY) > 0.01

    # when 3 GPUs are hedged without a volatility
    body = post(HEDGE, _need(strip, 3)).json()

    # then each month is simulated at its call's volatility (the option a buyer buys), the third
    # at its future's historical one, and its futures leg says which
    legs, calls = body["futures"]["legs"], body["cap"]["calls"]
    historical_text = str(Decimal(repr(historical)).quantize(Decimal("0.000001")))
    assert [(leg["volatility"], leg["volatility_source"]) for leg in legs] == [
        ("0.450000", "implied"),
        ("0.900000", "chain"),
        (historical_text, "historical"),
    ]
    assert [leg["volatility"] for leg in legs[:2]] == [call["volatility"] for call in calls[:2]]
    # and the costs are the library's simulated at those volatilities, each option valued at
    # its own (the puts at the default: no settlement, their futures no history)
    on = today()
    hours = tuple(future.gpu_hours_per_contract for future in strip)
    need = hedge.PlannedNeed(
        gpus=3,
        hours=hours,
        forwards=(2.40, 2.25, 2.10),
        years_to_delivery=tuple(
            ((future.delivery_start - on).days + hour / 48) / 365
            for future, hour in zip(strip, hours, strict=True)
        ),
    )
    options = {
        option_type: [
            chains[(future.symbol, option_type, Decimal(strike))]
            for future, strike in zip(strip, strikes, strict=False)
        ]
        for option_type, strikes in (("call", ("2.75", "2.50")), ("put", ("2.00", "2.00")))
    }
    listed = hedge.ListedOptions(
        *(
            field
            for option_type in ("call", "put")
            for field in (
                (*(float(option.strike) for option in options[option_type]), None),
                (*(margin.years_to_expiry(option, on) for option in options[option_type]), None),
            )
        ),
        call_volatilities=(0.45, 0.90, None),
        put_volatilities=(DEFAULT_VOLATILITY, DEFAULT_VOLATILITY, None),
    )
    expected = hedge.recommend(need, (0.45, 0.90, historical), rate=RATE, options=listed)
    for name, key in (("unhedged", "none"), ("cap", "cap"), ("collar", "collar")):
        cost = expected.costs[key]
        assert close(body[name]["expected_cost"], cost.expected, 0.005), name
        assert close(body[name]["worst_case_cost"], cost.worst_case, 0.005), name
    # which is not what the one default volatility gives
    flat = hedge.recommend(need, DEFAULT_VOLATILITY, rate=RATE, options=listed)
    assert not close(body["unhedged"]["worst_case_cost"], flat.costs["none"].worst_case, 1.0)


def test_a_month_above_the_simulations_bound_is_simulated_at_it(strip, chains):
    # given the first month's call settled at a price implying 750% (a thin, wild chain)
    _settle_option(chains[(strip[0].symbol, "call", Decimal("2.75"))], "7.5")

    body = post(HEDGE, {**_need(strip, 3), "months": 1}).json()

    # then its leg is valued at 750%, and the month simulated at the bound, 500%: above it the
    # simulation says nothing (and overflows far above)
    assert body["cap"]["calls"][0]["volatility"] == "7.500000"
    (leg,) = body["futures"]["legs"]
    assert (leg["volatility"], leg["volatility_source"]) == ("5.000000", "implied")


def test_a_strip_partly_priced_takes_the_model_for_the_rest(sku, region):
    # given three futures, the first settled today, the others without price
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=3)
    SettlementPrice.objects.create(
        instrument=futures[0], trading_date=today(), price=Decimal("2.40"), source="vwap"
    )

    body = post(HEDGE, _need(futures, 1)).json()

    # then the others are priced flat from it (too few months for a depreciation fit)
    assert [(leg["forward"], leg["source"]) for leg in body["futures"]["legs"]] == [
        ("2.400000", "settlement"),
        ("2.400000", "model"),
        ("2.400000", "model"),
    ]


def test_hedge_without_futures_or_prices_is_422(sku, region):
    # given no future of the SKU in the region
    need = {"sku": sku.code, "region": region.code, "gpus": 1, "first_month": "2030-01"}
    response = post(HEDGE, {**need, "months": 1})
    assert error_of(response)[:2] == (422, "PRICING_NO_FUTURES")
    assert response.json()["error"]["message"] == "No H100SXM futures in USEAST are listed."

    # and then futures without any price
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=2)
    need["first_month"] = f"{futures[0].delivery_start:%Y-%m}"
    response = post(HEDGE, {**need, "months": 1})
    assert error_of(response)[:2] == (422, "PRICING_NO_PRICES")
    # The message says what is missing (it said "No H100SXM futures in USEAST have no price
    # yet", which reads as the opposite).
    assert response.json()["error"]["message"] == (
        "No H100SXM future in USEAST has a price yet (a settlement price, a trade, or a bid "
        "and an ask)."
    )


def test_a_code_holding_nul_names_nothing(strip):
    """Not a server error on PostgreSQL, which cannot compare text holding NUL."""
    need = _need(strip, 1)

    for field in ("sku", "region"):
        response = post(HEDGE, {**need, field: need[field] + "\x00"})
        assert error_of(response) == (400, "INVALID_INPUT", field)


def test_months_without_a_listed_future_are_422(strip):
    # given the three-month strip
    need = _need(strip, 1)

    # when the need runs a month past it, or starts a month before it
    past = post(HEDGE, {**need, "months": 4})
    before_month = calendar.add_months(strip[0].delivery_start, -1)
    before = post(HEDGE, {**need, "first_month": f"{before_month:%Y-%m}"})

    # then
    assert error_of(past) == (422, "PRICING_MONTH_NOT_LISTED", "months")
    assert error_of(before) == (422, "PRICING_MONTH_NOT_LISTED", "first_month")


def test_a_future_past_its_last_trading_day_is_not_hedged_with(strip):
    Instrument.objects.filter(pk=strip[0].pk).update(last_trading_day=today() - timedelta(days=1))

    response = post(HEDGE, _need(strip, 1))

    assert error_of(response) == (422, "PRICING_MONTH_NOT_LISTED", "first_month")


def test_on_its_last_trading_day_a_future_is_hedged_with_until_the_close(strip, monkeypatch):
    """From the close on, an order on it is refused (ORDER_INSTRUMENT_EXPIRED), though its status
    stays active until the daily cycle: the strip must not stage it."""
    # given the first month's future stops trading at today's close
    Instrument.objects.filter(pk=strip[0].pk).update(last_trading_day=today())
    close = calendar.close_at(today())
    later_months = {**_need(strip, 1), "first_month": f"{strip[1].delivery_start:%Y-%m}"}

    # when the need is hedged a second before the close, and at the close
    monkeypatch.setattr(timezone, "now", lambda: close - timedelta(seconds=1))
    before = post(HEDGE, _need(strip, 1))
    monkeypatch.setattr(timezone, "now", lambda: close)
    after = post(HEDGE, _need(strip, 1))
    rest = post(HEDGE, {**later_months, "months": 2})

    # then before it the strip buys it; from it the first month cannot be hedged, as a month
    # without a listed future, and the later months are still hedged with their futures
    legs = [leg["symbol"] for leg in before.json()["futures"]["legs"]]
    assert legs == [future.symbol for future in strip]
    assert error_of(after) == (422, "PRICING_MONTH_NOT_LISTED", "first_month")
    assert [leg["symbol"] for leg in rest.json()["futures"]["legs"]] == [
        future.symbol for future in strip[1:]
    ]


def test_a_halted_future_is_not_bought_and_the_result_says_why(strip, chains):
    """An order on a halted future is refused (ORDER_INSTRUMENT_HALTED): the strip must not
    recommend buying it, and must not leave it out in silence."""
    # given the second month's future is halted
    instrument_set_status(instrument=strip[1], status=Instrument.Status.HALTED, actor=None)

    # when 8 GPUs are hedged over the strip
    response = post(HEDGE, _need(strip, 8))

    # then its leg buys nothing and says it is halted; the other months are bought
    assert response.status_code == 200, response.json()
    body = response.json()
    legs = body["futures"]["legs"]
    assert [(leg["symbol"], leg["available"], leg["contracts"]) for leg in legs] == [
        (strip[0].symbol, True, 8),
        (strip[1].symbol, False, 0),
        (strip[2].symbol, True, 8),
    ]
    assert legs[1]["reason"] == (
        f"{strip[1].symbol} is halted: an order on it is refused until trading resumes"
    )
    assert (legs[0]["reason"], legs[2]["reason"]) == ("", "")
    # and the strip's costs leave that month to its price: no longer fixed
    hours = [future.gpu_hours_per_contract for future in strip]
    forwards = [Decimal("2.40"), Decimal("2.25"), Decimal("2.10")]
    fixed = sum(8 * hour * forward for hour, forward in zip(hours, forwards, strict=True))
    assert Decimal(body["futures"]["worst_case_cost"]) > fixed
    # and its options, halted with it (an order on one is refused), are not recommended
    # either: the month's call and put say why
    # (the cap's call there: the lowest at or above 2.475, 10% over its 2.25)
    aimed = chains[(strip[1].symbol, "call", Decimal("2.50"))]
    call, put = body["cap"]["calls"][1], body["collar"]["puts"][1]
    reason = (
        f"{aimed.symbol} is halted with its future: {strip[1].symbol} is halted, and an order "
        "on one of its options is refused until it resumes"
    )
    assert (call["available"], call["symbol"], call["contracts"]) == (False, None, 0)
    assert call["reason"] == reason
    floor = chains[(strip[1].symbol, "put", Decimal("2.00"))]  # At or below 2.025.
    assert (put["available"], put["symbol"]) == (False, None)
    assert put["reason"] == reason.replace(aimed.symbol, floor.symbol)
    # while the other month's options still cap it
    assert body["cap"]["calls"][0]["available"] is True


def test_a_halted_option_leaves_its_leg_unavailable_saying_so(strip, chains):
    # given the first month's call at 2.75 (the cap's: the lowest at or above 2.64) is halted
    halted = chains[(strip[0].symbol, "call", Decimal("2.75"))]
    instrument_set_status(instrument=halted, status=Instrument.Status.HALTED, actor=None)

    # when 8 GPUs are hedged over the strip
    body = post(HEDGE, _need(strip, 8)).json()

    # then the month's call is unavailable because it is halted, not moved to 3.00 nor said
    # to be unlisted, and the collar sells no put without it
    call, put = body["cap"]["calls"][0], body["collar"]["puts"][0]
    reason = f"{halted.symbol} is halted: an order on it is refused until trading resumes"
    assert (call["available"], call["symbol"], call["contracts"]) == (False, None, 0)
    assert call["reason"] == reason
    assert (put["available"], put["reason"]) == (False, f"no call to pair it with ({reason})")
    assert body["cap"]["calls"][1]["available"] is True


def test_a_month_priced_at_0_is_left_out_saying_why_and_the_others_are_hedged(strip, chains):
    """A settlement price overridden to 0 gave the month a forward the model cannot start
    from, and the whole hedge failed PRICING_HEDGE_INVALID."""
    # given the first month's settlement price was set to 0
    SettlementPrice.objects.filter(instrument=strip[0]).update(price=Decimal("0"))

    # when 8 GPUs are hedged over the strip
    response = post(HEDGE, _need(strip, 8))

    # then the month buys and trades nothing, each of its legs saying why
    assert response.status_code == 200, response.json()
    body = response.json()
    reason = (
        f"{strip[0].symbol} is priced at 0 (its settlement): no price to hedge the month at, "
        "left out of the costs"
    )
    legs = body["futures"]["legs"]
    assert [(leg["symbol"], leg["available"], leg["contracts"]) for leg in legs] == [
        (strip[0].symbol, False, 0),
        (strip[1].symbol, True, 8),
        (strip[2].symbol, True, 8),
    ]
    assert (legs[0]["forward"], legs[0]["reason"]) == ("0.000000", reason)
    # with no volatility: the month is not simulated
    assert (legs[0]["volatility"], legs[0]["volatility_source"]) == (None, None)
    assert legs[1]["volatility_source"] is not None
    for key in ("calls", "puts"):
        first = body["collar"][key][0]
        assert (first["available"], first["contracts"], first["reason"]) == (False, 0, reason)
    # and the other months are hedged as before: the strip fixes their cost, the second
    # month's call is its listed one
    hours = [future.gpu_hours_per_contract for future in strip[1:]]
    fixed = 8 * (hours[0] * Decimal("2.25") + hours[1] * Decimal("2.10"))
    assert Decimal(body["futures"]["expected_cost"]) == fixed
    assert (
        body["cap"]["calls"][1]["symbol"]
        == chains[(strip[1].symbol, "call", Decimal("2.50"))].symbol
    )


def test_a_need_whose_every_month_is_priced_at_0_has_no_prices(strip):
    SettlementPrice.objects.filter(instrument=strip[0]).update(price=Decimal("0"))

    response = post(HEDGE, {**_need(strip, 8), "months": 1})

    assert error_of(response) == (422, "PRICING_NO_PRICES", None)
    assert "priced at 0" in response.json()["error"]["message"]


def test_hedge_quantities_are_whole_lots_split_into_orders_the_instrument_accepts(strip, chains):
    """An order off the lot is refused (ORDER_QUANTITY_OFF_LOT), and one above the maximum
    order size too (ORDER_QUANTITY_TOO_LARGE): the recommendation must be placeable."""
    # given futures traded in lots of 5, the first taking orders of at most 7 contracts, the
    # third at most 3 (under a lot: no order on it can be placed); the first month's call
    # at 2.75 in lots of 3, orders of at most 6
    Instrument.objects.filter(pk__in=[future.pk for future in strip]).update(lot_size=5)
    Instrument.objects.filter(pk=strip[0].pk).update(quantity_max=7)
    Instrument.objects.filter(pk=strip[2].pk).update(quantity_max=3)
    call = chains[(strip[0].symbol, "call", Decimal("2.75"))]
    Instrument.objects.filter(pk=call.pk).update(lot_size=3, quantity_max=6)

    # when 8 GPUs are hedged over the strip
    body = post(HEDGE, _need(strip, 8)).json()

    # then each future buys the 8 GPUs rounded up to whole lots, 10 contracts, the first in
    # two orders of 5 (the most in whole lots under its maximum of 7), the second in one
    legs = body["futures"]["legs"]
    assert [(leg["contracts"], leg["lot_size"], leg["orders"]) for leg in legs[:2]] == [
        (10, 5, [{"quantity": 5, "count": 2}]),
        (10, 5, [{"quantity": 10, "count": 1}]),
    ]
    # and the third, on which no order can be placed, is not bought and says why
    assert (legs[2]["available"], legs[2]["contracts"], legs[2]["orders"]) == (False, 0, [])
    assert legs[2]["reason"] == (
        f"{strip[2].symbol} accepts orders of at most 3 contracts, under one lot of 5: no order "
        "on it can be placed"
    )
    # and the call is 9 contracts (3 lots), in one order of 6 and one of 3, its premium for 9
    first = body["cap"]["calls"][0]
    assert (first["symbol"], first["contracts"], first["lot_size"]) == (call.symbol, 9, 3)
    assert first["orders"] == [{"quantity": 6, "count": 1}, {"quantity": 3, "count": 1}]
    # (the model price is on 6 decimals: within a cent of it times the 9 contracts' hours)
    premium = Decimal(first["price"]) * 9 * call.gpu_hours_per_contract
    assert abs(Decimal(first["premium"]) - premium) <= Decimal("0.01")
    # and the second month's call, in lots of 1, is the 8 GPUs in one order
    second = body["cap"]["calls"][1]
    assert (second["contracts"], second["orders"]) == (8, [{"quantity": 8, "count": 1}])


def test_on_its_last_trading_day_an_option_is_recommended_until_the_close(
    strip, chains, monkeypatch
):
    # given the first month's options stop trading at today's close
    Instrument.objects.filter(underlying=strip[0]).update(last_trading_day=today())
    close = calendar.close_at(today())

    # when the need is hedged a second before the close, and at the close
    monkeypatch.setattr(timezone, "now", lambda: close - timedelta(seconds=1))
    before = post(HEDGE, _need(strip, 1)).json()
    monkeypatch.setattr(timezone, "now", lambda: close)
    after = post(HEDGE, _need(strip, 1)).json()

    # then its call is the cap's until the close; from it there is none to stage, and the
    # second month's still is
    assert (
        before["cap"]["calls"][0]["symbol"]
        == chains[(strip[0].symbol, "call", Decimal("2.75"))].symbol
    )
    assert after["cap"]["calls"][0]["available"] is False
    assert after["cap"]["calls"][0]["reason"] == f"no calls listed on {strip[0].symbol}"
    assert after["collar"]["puts"][0]["available"] is False
    assert after["cap"]["calls"][1]["available"] is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sku": ""}, "sku"),
        ({"region": "MARS\x00"}, "region"),
        ({"gpus": 0}, "gpus"),
        ({"gpus": 100_001}, "gpus"),
        ({"gpus": "many"}, "gpus"),
        ({"months": 0}, "months"),
        ({"months": 73}, "months"),
        ({"first_month": "2026-13"}, "first_month"),
        ({"first_month": "2026-1"}, "first_month"),
        ({"first_month": "0000-01"}, "first_month"),
        ({"first_month": "9999-12", "months": 2}, "months"),
        ({"volatility": "5.5"}, "volatility"),
        ({"volatility": 0.6}, "volatility"),
        ({"rate": "-2"}, "rate"),
        ({"rate": 0.04}, "rate"),
    ],
)
def test_bad_needs_are_400_with_the_field(strip, change, field):
    response = post(HEDGE, {**_need(strip, 1), **change})

    assert error_of(response) == (400, "INVALID_INPUT", field)


@pytest.mark.parametrize(
    ("change", "field"), [({"sku": "B200"}, "sku"), ({"region": "MARS"}, "region")]
)
def test_a_need_naming_no_sku_or_region_is_404_with_the_field(strip, change, field):
    response = post(HEDGE, {**_need(strip, 1), **change})

    assert error_of(response) == (404, "NOT_FOUND", field)


def test_a_region_where_the_sku_has_no_futures_is_422(strip):
    # given another region, where no H100SXM future is listed
    Region.objects.create(
        code="EUWEST", name="EU West", compliance=[], power_price_usd_per_kwh=Decimal("0.1")
    )

    response = post(HEDGE, {**_need(strip, 1), "region": "EUWEST"})

    assert error_of(response)[:2] == (422, "PRICING_NO_FUTURES")


def test_a_listed_options_quote_says_where_its_volatility_comes_from(strip, chains):
    """The quote of a listed option took the chain's volatility without saying which (its
    implied, the chain's, its future's historical, or the default), unlike the hedge's legs."""
    # given the first month's C2.75 settled by the market at 45%, its C3.00 by the model at
    # 90%, its future with a price history; and the second month with none of these
    settled = chains[(strip[0].symbol, "call", Decimal("2.75"))]
    modelled = chains[(strip[0].symbol, "call", Decimal("3.00"))]
    historical = chains[(strip[0].symbol, "put", Decimal("2.00"))]
    default = chains[(strip[1].symbol, "call", Decimal("2.50"))]
    _settle_option(settled, "0.45")
    _settle_option(modelled, "0.90", source="model")
    _settle_history(strip[0])
    history_sigma = historical_volatility(strip[0].pk)
    assert history_sigma is not None

    def quoted(option, **given) -> dict:
        response = post(QUOTE, {"instrument": option.symbol, **given})
        assert response.status_code == 200, response.json()
        return response.json()

    # then each listed option's quote names the volatility it took, as the chain values it
    for option, sigma, source in (
        (settled, 0.45, "implied"),
        (modelled, 0.90, "chain"),
        (historical, history_sigma, "historical"),
        (default, DEFAULT_VOLATILITY, "default"),
    ):
        body = quoted(option)
        assert body["volatility_source"] == source, option.symbol
        assert close(body["volatility"], sigma, 5e-7), option.symbol
    # and one given in the request is said to be requested; terms given have no source
    assert quoted(settled, volatility="0.5")["volatility_source"] == "requested"
    terms = post(QUOTE, {**QUOTE_TERMS, "volatility": "0.5"}).json()
    assert terms["volatility_source"] is None
