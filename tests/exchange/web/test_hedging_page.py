"""The hedging calculator page: the recommendation of the hedging service for the need typed
in, its cost distribution, and links staging each futures leg and each option leg in the
ticket."""

import json
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from exchange.models import Region, Sku
from exchange.services.hedging import SellHedge, hedge_recommendation
from exchange.services.listing import options_list_chain
from pricing.hedge import PATHS_DEFAULT, Side
from tests.exchange.api.test_pricing import strip  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def _need(strip, **changes):  # noqa: F811
    return {
        "sku": "H100SXM",
        "region": "USEAST",
        "gpus": "8",
        "first_month": f"{strip[0].delivery_start:%Y-%m}",
        "months": str(len(strip)),
        **changes,
    }


def test_the_empty_form_has_defaults_and_computes_nothing(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"))

    assert response.status_code == 200
    assert response.context["hedge"] is None
    assert response.context["form"].initial["months"] == 3


def test_a_need_gets_the_services_recommendation(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip))

    assert response.status_code == 200
    shown = response.context["hedge"]
    expected = hedge_recommendation(
        sku=Sku.objects.get(code="H100SXM"),
        region=Region.objects.get(code="USEAST"),
        gpus=8,
        first_month=strip[0].delivery_start,
        months=3,
    )
    assert shown == expected
    page = response.content.decode()
    for outcome in (expected.unhedged, expected.cap_outcome, expected.collar_outcome):
        assert f"{outcome.worst_case_cost:,.2f}" in page
    # One click stages each futures leg in the instrument's ticket.
    for leg in expected.futures:
        link = reverse("web:instrument", args=[leg.symbol])
        # Staged at the price as the ticket and book write it (2.400, not 2.400000).
        assert f"{link}?side=buy&amp;quantity=8&amp;price={leg.forward:.3f}" in page
    assert "00000" not in "".join(re.findall(r"price=[0-9.]+", page))


def test_each_forward_says_where_its_price_comes_from_in_words(client, strip):  # noqa: F811
    """The strip's months are priced by a settlement, a mid and a last trade: the page wrote
    the API's codes (settlement, mid, last_trade) beside the prices."""
    page = client.get(reverse("web:hedging"), _need(strip)).content.decode()

    # (each followed by the volatility its month is simulated at)
    assert '2.400 <span class="muted">(settlement price; simulated at' in page
    assert '2.250 <span class="muted">(mid of bid and ask; simulated at' in page
    assert '2.100 <span class="muted">(last trade; simulated at' in page
    assert "last_trade" not in page


def test_the_distribution_counts_every_simulated_path(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip))

    chart = response.context["chart"]
    assert chart["series"][0]["label"] == "Unhedged"
    for series in chart["series"]:
        assert sum(series["counts"]) == PATHS_DEFAULT
        assert len(series["counts"]) == len(chart["labels"])
    page = response.content.decode()
    start = page.index('id="hedge-chart-data"')
    data = json.loads(page[page.index(">", start) + 1 : page.index("</script>", start)])
    assert data == chart
    # A fixed-price strip costs the same on every path: all its paths fall in one bin.
    assert max(chart["series"][1]["counts"]) == PATHS_DEFAULT


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sku": "NOPE"}, "sku"),
        ({"region": "MARS"}, "region"),
        ({"gpus": "0"}, "gpus"),
        ({"gpus": "many"}, "gpus"),
        ({"first_month": "2020-01"}, "first_month"),
        ({"first_month": "next year"}, "first_month"),
        ({"months": "0"}, "months"),
        ({"months": "99"}, "months"),
        # A need running past the year 9999 (the API's 400): it was a server error.
        ({"first_month": "9999-12", "months": "2"}, "months"),
    ],
)
def test_bad_needs_are_refused_next_to_their_field(client, strip, changes, field):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip, **changes))

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert response.context["hedge"] is None


def test_a_month_without_a_future_is_named(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip, months="12"))

    assert response.status_code == 400
    (error,) = response.context["form"].errors["months"]
    assert error.startswith("No listed H100SXM future")
    assert error.endswith("(PRICING_MONTH_NOT_LISTED)")


def test_costs_carry_units(client, strip):  # noqa: F811
    page = client.get(reverse("web:hedging"), _need(strip)).content.decode()

    assert "Expected cost (USD)" in page and "GPU-hours" in page and "$/GPU-hr" in page


# The option legs. With the strip's first month settled at 2.40, the cap's first call is struck
# 10% over (2.64) and the collar's first put 10% under (2.16); the other months list no options.
CAP = Decimal("2.64")
FLOOR = Decimal("2.16")


def _list_chain(future, reference: str, step: str, each_side: int) -> dict:
    options = options_list_chain(
        future=future,
        reference_price=Decimal(reference),
        strike_step=Decimal(step),
        strikes_each_side=each_side,
    )
    return {(option.option_type, option.strike): option for option in options}


def _first_month_legs(response):
    """The first month's cap call and collar put as staged on the page."""
    assert response.status_code == 200
    staged = response.context["option_orders"]
    call = next(order for order in staged if order.side == "buy")
    put = next(order for order in staged if order.side == "sell")
    assert (call.leg.target_strike, put.leg.target_strike) == (CAP, FLOOR)
    return call, put


def _stage_link(order, option) -> str:
    link = reverse("web:instrument", args=[option.symbol])
    return f"{link}?side={order.side}&amp;quantity={order.leg.contracts}"


@pytest.mark.parametrize(
    ("step", "each_side", "call_strike", "put_strike"),
    [
        # Strikes 1.80 to 3.00: the nearest to the cap is 2.60, in the money, and the nearest to
        # the floor is 2.20, above it; the legs go to the next strikes beyond, 2.70 and 2.10.
        ("0.10", 6, "2.70", "2.10"),
        # Strikes 2.16 to 2.64: a strike at the level itself is taken.
        ("0.04", 6, "2.64", "2.16"),
    ],
)
def test_option_legs_are_staged_on_the_first_listed_strike_beyond_their_level(
    client,
    strip,  # noqa: F811
    step,
    each_side,
    call_strike,
    put_strike,
):
    chain = _list_chain(strip[0], "2.40", step, each_side)

    response = client.get(reverse("web:hedging"), _need(strip))

    call, put = _first_month_legs(response)
    assert call.option == chain[("call", Decimal(call_strike))]
    assert put.option == chain[("put", Decimal(put_strike))]
    assert call.option.strike >= CAP and put.option.strike <= FLOOR
    assert call.unstaged == put.unstaged == ""
    page = response.content.decode()
    assert _stage_link(call, call.option) in page
    assert _stage_link(put, put.option) in page
    # and no option on the wrong side of its level is staged
    for (option_type, strike), option in chain.items():
        wrong = strike < CAP if option_type == "call" else strike > FLOOR
        if wrong:
            assert f"{reverse('web:instrument', args=[option.symbol])}?side=" not in page


def test_a_cap_with_no_listed_call_at_or_above_it_is_not_staged(client, strip):  # noqa: F811
    # given strikes 1.70 to 2.30 only: every call is under the cap of 2.64
    chain = _list_chain(strip[0], "2.00", "0.10", 3)

    response = client.get(reverse("web:hedging"), _need(strip))

    call, put = _first_month_legs(response)
    assert (call.option, call.price, call.price_source) == (None, None, None)
    assert call.unstaged == "no listed call struck at or above 2.640"
    # the listed 2.10 put is not sold on its own: the collar's put only pays for its call
    assert put.option is None
    assert put.unstaged == "no call to pair it with (no listed call struck at or above 2.640)"
    page = response.content.decode()
    assert "(no listed call struck at or above 2.640)" in page
    for option in chain.values():
        assert f"{reverse('web:instrument', args=[option.symbol])}?side=" not in page
    # the strip's three months are staged, no option; the call row links to the chain
    assert page.count("Stage in ticket") == 3
    assert f'href="{reverse("web:instrument", args=[strip[0].symbol])}">Option chain' in page


def test_a_floor_with_no_listed_put_at_or_below_it_is_not_staged(client, strip):  # noqa: F811
    # given strikes 2.25, 2.50 and 2.75: the put nearest the floor of 2.16 is 2.25, above it
    chain = _list_chain(strip[0], "2.50", "0.25", 1)

    response = client.get(reverse("web:hedging"), _need(strip))

    call, put = _first_month_legs(response)
    assert call.option == chain[("call", Decimal("2.75"))]
    assert put.option is None
    assert put.unstaged == "no listed put struck at or below 2.160"
    page = response.content.decode()
    assert "(no listed put struck at or below 2.160)" in page
    assert (
        f"{reverse('web:instrument', args=[chain[('put', Decimal('2.25'))].symbol])}?side="
        not in page
    )


def test_a_month_without_options_says_so(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip))

    staged = response.context["option_orders"]
    assert [order.option for order in staged] == [None] * len(staged)
    assert staged[0].unstaged == f"no calls listed on {strip[0].symbol}"
    assert staged[-1].unstaged == f"no puts listed on {strip[-1].symbol}"
    assert f"(no calls listed on {strip[0].symbol})" in response.content.decode()


def test_the_page_shows_the_apis_figures_for_the_same_need(client, strip):  # noqa: F811
    # given the first month's strikes 0.25 apart (1.75 to 3.25), the others none
    chain = _list_chain(strip[0], "2.40", "0.25", 3)

    # when the same need is asked of the page and of the API
    response = client.get(reverse("web:hedging"), _need(strip))
    need = {**_need(strip), "gpus": 8, "months": 3}  # The API takes numbers as numbers.
    answer = APIClient().post("/api/v1/pricing/hedge/", need, format="json")
    assert answer.status_code == 200, answer.json()
    body = answer.json()

    # then the strategies' premiums and costs are the API's
    shown = response.context["hedge"]
    for name, outcome in (("cap", shown.cap_outcome), ("collar", shown.collar_outcome)):
        assert outcome.premium == Decimal(body[name]["premium"])
        assert outcome.worst_case_cost == Decimal(body[name]["worst_case_cost"])
    page = response.content.decode()
    costs = page[page.index('<table class="costs">') : page.index("</table>")]
    assert f"{Decimal(body['cap']['premium']):,.2f}" in costs
    assert f"{Decimal(body['collar']['premium']):,.2f}" in costs
    # and each available leg shows the API's listed option, value and premium
    rows = page.split('<tr class="option-leg">')[1:]
    legs = body["cap"]["calls"] + body["collar"]["puts"]
    assert len(rows) == len(legs)
    for row, leg in zip(rows, legs, strict=True):
        if not leg["available"]:
            assert leg["reason"] in row and "Stage in ticket" not in row
            continue
        assert leg["symbol"] in row
        assert f'<span class="leg-value">{leg["price"]}</span>' in row
        assert f'<span class="leg-volatility">{Decimal(leg["volatility"]):.3f}</span>' in row
        source = leg["volatility_source"]
        assert f'<span class="leg-volatility-source">{source}</span>' in row
        assert f'<span class="leg-premium">{Decimal(leg["premium"]):,.2f}</span>' in row
    # and each month of the strip shows the volatility its prices are simulated at, as the
    # API says: the first month's call's, the others' futures' (the default: no history)
    strip_rows = [row for row in page.split("<tr>") if row.startswith("<td>Strip, ")]
    months = body["futures"]["legs"]
    assert len(strip_rows) == len(months) == 3
    for row, month in zip(strip_rows, months, strict=True):
        assert f'<span class="month-volatility">{Decimal(month["volatility"]):.3f}</span>' in row
        source = month["volatility_source"]
        assert f'<span class="month-volatility-source">{source}</span>' in row
    assert months[0]["volatility"] == legs[0]["volatility"]
    # the first month's call and put are the listed C2.75 and P2.00, staged on those
    assert legs[0]["symbol"] == chain[("call", Decimal("2.75"))].symbol
    assert legs[3]["symbol"] == chain[("put", Decimal("2.00"))].symbol
    staged = response.context["option_orders"]
    assert [order.option.symbol if order.option else None for order in staged] == [
        leg["symbol"] for leg in legs
    ]


# The sell side: a provider's capacity, hedged by selling the strip, a floor of puts bought and
# a collar (those puts, calls sold).


def test_the_form_asks_for_a_buyers_hedge_by_default(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"))

    assert response.context["form"].initial["side"] == "buy"
    assert '<option value="sell">Sell: hedge capacity</option>' in response.content.decode()


def test_a_capacity_gets_the_services_sell_recommendation(client, strip):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip, side="sell"))

    assert response.status_code == 200
    shown = response.context["hedge"]
    expected = hedge_recommendation(
        sku=Sku.objects.get(code="H100SXM"),
        region=Region.objects.get(code="USEAST"),
        gpus=8,
        first_month=strip[0].delivery_start,
        months=3,
        side=Side.SELL,
    )
    assert shown == expected
    assert isinstance(shown, SellHedge)
    # its revenues are shown in a seller's terms, with no cost nor cap
    page = response.content.decode()
    costs = page[page.index('<table class="costs">') : page.index("</table>")]
    assert "Expected revenue (USD)" in costs and "Expected cost" not in costs
    assert "Floor (buy puts)" in costs and "Collar (buy puts, sell calls)" in costs
    assert "Cap (buy calls)" not in costs
    for outcome in (expected.unhedged, expected.floor_outcome, expected.collar_outcome):
        assert f"{outcome.worst_case_revenue:,.2f}" in costs
        assert f"{outcome.expected_revenue:,.2f}" in costs
    assert "Distribution of the revenue" in page
    chart = response.context["chart"]
    assert chart["axis"] == "Revenue of the capacity (USD)"
    assert [series["label"] for series in chart["series"]][2] == "Floor (buy puts)"
    # and each futures leg is staged to sell
    for leg in expected.futures:
        link = reverse("web:instrument", args=[leg.symbol])
        assert f"{link}?side=sell&amp;quantity=8&amp;price={leg.forward:.3f}" in page
        assert f"{link}?side=buy" not in page
    strip_rows = [row for row in page.split("<tr>") if row.startswith("<td>Strip, ")]
    assert len(strip_rows) == 3
    assert all('<td class="ask">Sell</td>' in row for row in strip_rows)


def test_a_sales_options_are_staged_on_their_sides_with_the_apis_figures(
    client,
    strip,  # noqa: F811
):
    # given the first month's strikes 1.80 to 3.00: the floor's put is P2.10 (the highest at or
    # below 2.16), the collar's call C2.70 (the lowest at or above 2.64)
    chain = _list_chain(strip[0], "2.40", "0.10", 6)

    response = client.get(reverse("web:hedging"), _need(strip, side="sell"))
    sale = {**_need(strip), "gpus": 8, "months": 3, "side": "sell"}
    body = APIClient().post("/api/v1/pricing/hedge/", sale, format="json").json()

    # then the puts are staged to buy, first, and the calls to sell
    staged = response.context["option_orders"]
    put, call = staged[0], staged[3]
    assert (put.side, put.option) == ("buy", chain[("put", Decimal("2.10"))])
    assert (call.side, call.option) == ("sell", chain[("call", Decimal("2.70"))])
    assert [order.side for order in staged] == ["buy"] * 3 + ["sell"] * 3
    page = response.content.decode()
    assert _stage_link(put, put.option) in page
    assert _stage_link(call, call.option) in page
    rows = page.split('<tr class="option-leg">')[1:]
    assert rows[0].startswith("<td>Floor, ") and rows[3].startswith("<td>Collar cap, ")
    # and the page's legs and premiums are the API's seller's
    legs = body["floor"]["puts"] + body["collar"]["calls"]
    assert [order.option.symbol if order.option else None for order in staged] == [
        leg["symbol"] for leg in legs
    ]
    costs = page[page.index('<table class="costs">') : page.index("</table>")]
    for name in ("floor", "collar"):
        assert f"{Decimal(body[name]['premium']):,.2f}" in costs
        assert f"{Decimal(body[name]['worst_case_revenue']):,.2f}" in costs
    # and the months without options say why
    assert staged[4].unstaged == f"no calls listed on {strip[1].symbol}"


@pytest.mark.parametrize("side", ["short", "SELL"])
def test_an_unknown_side_is_refused_next_to_its_field(client, strip, side):  # noqa: F811
    response = client.get(reverse("web:hedging"), _need(strip, side=side))

    assert response.status_code == 400
    assert "side" in response.context["form"].errors
    assert response.context["hedge"] is None
