"""The forward curve page: the market's points by delivery month with their sources, the SKU's
depreciation model beside them (fitted the settlement's way), and its refusals."""

import json
from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from exchange import calendar
from exchange.models import Instrument, Region, SettlementPrice, Sku
from exchange.selectors.curves import MODEL_MONTHS_BEYOND, MODEL_PRICE_QUANTUM
from exchange.selectors.hedge_orders import hedge_option_orders
from exchange.selectors.market_data import forward_curve
from exchange.selectors.marks import marks_for
from exchange.selectors.risk import option_chain
from exchange.services.hedging import hedge_recommendation
from exchange.services.instruments import instrument_set_status
from exchange.services.listing import futures_list_strip, options_list_chain
from exchange.services.option_pricing import to_decimal
from exchange.services.settlement_prices import depreciation_model, on_tick
from exchange.templatetags.money import price_exact
from tests.exchange.api.test_pricing import strip  # noqa: F401 (a fixture)
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db

CURVES = "web:curves"
# A falling strip: five months settled today, the sixth with no price of its own.
SETTLED = [Decimal(price) for price in ("2.40", "2.35", "2.30", "2.26", "2.22")]


def _today() -> date:
    return timezone.now().date()


def _settle(futures, prices) -> None:
    for future, price in zip(futures, prices, strict=False):
        SettlementPrice.objects.create(
            instrument=future, trading_date=_today(), price=price, source="vwap"
        )


def _json_script(page: str, element_id: str):
    start = page.index(f'id="{element_id}"')
    return json.loads(page[page.index(">", start) + 1 : page.index("</script>", start)])


@pytest.fixture
def six_months(sku, region):
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=6)
    _settle(futures, SETTLED)
    return futures


def test_the_curve_shows_the_markets_points_and_the_model_beside_them(client, sku, six_months):
    # when anyone (no sign-in needed) opens the curve of the one listed strip
    response = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "USEAST"})

    # then the market points are the forward curve's, each with its source
    assert response.status_code == 200
    curve = response.context["curve"]
    expected_points = forward_curve(sku, six_months[0].region, at=timezone.now())
    assert curve.points == expected_points
    assert [point.source for point in curve.points] == ["settlement"] * 5 + ["model"]
    assert [point.price for point in curve.points[:5]] == SETTLED
    # and the model is the SKU's, fitted to the five market-priced months as the settlement does
    months = [future.delivery_start for future in six_months[:5]]
    model = depreciation_model(sku, months, [float(price) for price in SETTLED])
    assert model is not None
    assert curve.fit.model == model
    assert (curve.fit.region, curve.fit.months) == ("USEAST", 5)
    # drawn for the six listed months and MODEL_MONTHS_BEYOND more
    drawn = [
        calendar.add_months(six_months[0].delivery_start, offset)
        for offset in range(6 + MODEL_MONTHS_BEYOND)
    ]
    assert [point.month for point in curve.model_points] == drawn
    assert [point.price for point in curve.model_points] == [
        to_decimal(model.monthly_price(month), MODEL_PRICE_QUANTUM) for month in drawn
    ]
    # and the chart's data is the same, on one axis of months
    chart = _json_script(response.content.decode(), "curve-chart-data")
    assert chart == response.context["chart"]
    assert chart["labels"] == [f"{month:%Y-%m}" for month in drawn]
    assert chart["market"] == [str(point.price) for point in expected_points] + [None] * 6
    assert chart["sources"] == ["settlement"] * 5 + ["model"] + [None] * 6
    assert chart["model"] == [str(point.price) for point in curve.model_points]


def test_each_listed_month_links_to_its_instrument_and_prices_carry_units(client, six_months):
    page = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "USEAST"}).content.decode()

    for future in six_months:
        assert f'href="{reverse("web:instrument", args=[future.symbol])}"' in page
    assert "Market ($/GPU-hr)" in page and "Model ($/GPU-hr)" in page
    assert "Settlement" in page and "Model (curve through the priced months)" in page
    assert "not listed" in page  # The months the model is drawn beyond the listed ones.


def test_a_mid_and_a_last_trade_are_named_as_sources(client, sku, region, buyer, seller):
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=2)
    place(buyer, futures[0], "buy", 1, "2.20")
    place(seller, futures[0], "sell", 1, "2.30")
    place(seller, futures[1], "sell", 1, "2.10")
    place(buyer, futures[1], "buy", 1, "2.10")

    response = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "USEAST"})

    points = response.context["curve"].points
    assert [(point.price, point.source) for point in points] == [
        (Decimal("2.25"), "mid"),
        (Decimal("2.10"), "last_trade"),
    ]
    page = response.content.decode()
    assert "Mid of bid and ask" in page and "Last trade" in page


def test_a_trade_after_the_last_settlement_is_the_months_price(sku, region, buyer, seller):
    """The curve takes the rule that marks positions and values the option chain
    (``selectors.marks``): the newer of the latest settlement and the last trade, then the mid.
    It used to keep the latest settlement over a later trade (and the mid over a trade), so the
    hedge valued options at a forward the chain had left behind."""
    from datetime import timedelta

    first, second = futures_list_strip(
        sku=sku, region=region, first_month=listing_month(), months=2
    )
    yesterday = _today() - timedelta(days=1)
    for future, price in ((first, "2.10"), (second, "2.35")):
        SettlementPrice.objects.create(
            instrument=future, trading_date=yesterday, price=Decimal(price), source="vwap"
        )
    # the first traded at 2.44 since; the second only has a book around 2.25
    place(seller, first, "sell", 1, "2.44")
    place(buyer, first, "buy", 1, "2.44")
    place(buyer, second, "buy", 1, "2.20")
    place(seller, second, "sell", 1, "2.30")

    points = forward_curve(sku, region, at=timezone.now())

    assert [(point.price, point.source) for point in points] == [
        (Decimal("2.44"), "last_trade"),
        (Decimal("2.35"), "settlement"),
    ]
    marks = marks_for([first, second])
    assert [marks[first.pk].price, marks[second.pk].price] == [p.price for p in points]


def test_the_page_states_the_rule_its_prices_follow(client, sku, region, buyer, seller):
    """The page's explanation said "today's settlement price, else the mid, else the last
    trade, else the latest settlement", the rule before the curve took the marks'. Here the
    month settled yesterday with a book around it shows the settlement, not the mid it named."""
    from datetime import timedelta

    (future,) = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=1)
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=_today() - timedelta(days=1),
        price=Decimal("2.35"),
        source="vwap",
    )
    place(buyer, future, "buy", 1, "2.20")
    place(seller, future, "sell", 1, "2.30")

    response = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "USEAST"})

    (point,) = response.context["curve"].points
    assert (point.price, point.source) == (Decimal("2.35"), "settlement")
    page = response.content.decode()
    start = page.index('id="curve-rule"')
    rule = page[start : page.index("</p>", start)]
    assert "today's settlement price, else the mid" not in rule
    assert "the most recent of its latest settlement price and its last trade" in rule
    assert "else the mid of its best bid and ask" in rule


def test_with_too_few_priced_months_there_is_no_model(client, sku, region):
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=3)
    _settle(futures, SETTLED[:3])

    response = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "USEAST"})

    assert response.status_code == 200
    assert response.context["curve"].fit is None
    assert response.context["curve"].model_points == []
    assert response.context["chart"]["model"] == [None, None, None]
    assert "No model today" in response.content.decode()


def test_the_model_is_the_skus_fitted_to_its_richest_strip(client, sku, region, six_months):
    # given a second region whose own strip has only two priced months
    west = Region.objects.create(
        code="USWEST", name="US West", compliance=[], power_price_usd_per_kwh=Decimal("0.1")
    )
    futures = futures_list_strip(sku=sku, region=west, first_month=listing_month(), months=2)
    _settle(futures, [Decimal("2.60"), Decimal("2.50")])

    # when its curve is shown
    response = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "USWEST"})

    # then its points are its own, and the model is the SKU's, fitted to USEAST's five months
    curve = response.context["curve"]
    assert [point.price for point in curve.points] == [Decimal("2.60"), Decimal("2.50")]
    months = [future.delivery_start for future in six_months[:5]]
    assert curve.fit.model == depreciation_model(sku, months, [float(p) for p in SETTLED])
    assert (curve.fit.region, curve.fit.months) == ("USEAST", 5)
    assert "Fitted to" in response.content.decode()


def test_without_a_choice_the_first_sku_and_region_with_futures_are_shown(client, sku, region):
    # given an SKU and a region that sort first but have no futures
    Sku.objects.create(
        code="A100SXM",
        name="NVIDIA A100 SXM",
        vendor="NVIDIA",
        generation="Ampere",
        memory_gb=80,
        interconnect="nvlink",
        release_date=date(2020, 5, 14),
        power_watts=400,
    )
    Region.objects.create(
        code="APSOUTH",
        name="Asia Pacific South",
        compliance=[],
        power_price_usd_per_kwh=Decimal("0.1"),
    )
    futures = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=1)
    _settle(futures, SETTLED[:1])

    response = client.get(reverse(CURVES))

    assert response.status_code == 200
    curve = response.context["curve"]
    assert (curve.sku.code, curve.region.code) == ("H100SXM", "USEAST")
    assert response.context["form"]["sku"].value() == "H100SXM"


def test_a_future_whose_trading_ended_at_todays_close_is_left_out(
    client, sku, six_months, settings
):
    """Its status stays active until the daily cycle expires it, but an order on it is refused
    from the close on (ORDER_INSTRUMENT_EXPIRED)."""
    # given APSOUTH, which sorts first, whose only future's last trading day is today, the
    # front future of USEAST's strip stopping today too, and today's close past
    apsouth = Region.objects.create(
        code="APSOUTH",
        name="Asia Pacific South",
        compliance=[],
        power_price_usd_per_kwh=Decimal("0.1"),
    )
    ended = futures_list_strip(sku=sku, region=apsouth, first_month=listing_month(), months=1)
    _settle(ended, SETTLED[:1])
    Instrument.objects.filter(pk__in=[ended[0].pk, six_months[0].pk]).update(
        last_trading_day=_today()
    )
    settings.EXCHANGE_SETTLEMENT_CLOSE = "00:00"

    # when the page is shown without a choice
    response = client.get(reverse(CURVES))

    # then it shows USEAST (APSOUTH has no future that trades), without its front month
    assert response.status_code == 200
    curve = response.context["curve"]
    assert (curve.sku.code, curve.region.code) == ("H100SXM", "USEAST")
    assert [point.symbol for point in curve.points] == [future.symbol for future in six_months[1:]]
    assert six_months[0].symbol not in response.content.decode()


def test_a_pair_without_futures_says_so(client, sku, six_months):
    Region.objects.create(
        code="APSOUTH",
        name="Asia Pacific South",
        compliance=[],
        power_price_usd_per_kwh=Decimal("0.1"),
    )

    response = client.get(reverse(CURVES), {"sku": "H100SXM", "region": "APSOUTH"})

    assert response.status_code == 200
    assert response.context["curve"].points == []
    assert response.context["chart"] is None
    assert "No H100SXM future in APSOUTH still trades" in response.content.decode()


def test_with_no_future_listed_anywhere_the_page_says_so(client, sku, region):
    response = client.get(reverse(CURVES))

    assert response.status_code == 200
    assert response.context["curve"] is None
    assert "No future is listed yet" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"sku": "NOPE", "region": "USEAST"}, "sku"),
        ({"sku": "H100SXM", "region": "MARS"}, "region"),
    ],
)
def test_an_unknown_sku_or_region_is_refused_next_to_its_field(client, six_months, query, field):
    response = client.get(reverse(CURVES), query)

    assert response.status_code == 400
    assert response.context["curve"] is None
    assert list(response.context["form"].errors) == [field]
    page = response.content.decode()
    assert f'id="id_{field}_error"' in page
    assert "curve-chart-data" not in page


def test_a_sku_without_a_region_shows_its_first_region_with_futures(client, sku, region):
    # given futures of the SKU only in USWEST (USEAST, which sorts first, has none)
    west = Region.objects.create(
        code="USWEST", name="US West", compliance=[], power_price_usd_per_kwh=Decimal("0.1")
    )
    futures = futures_list_strip(sku=sku, region=west, first_month=listing_month(), months=1)
    _settle(futures, SETTLED[:1])

    response = client.get(reverse(CURVES), {"sku": "H100SXM"})

    assert response.status_code == 200
    assert response.context["curve"].region == west
    assert response.context["form"]["region"].value() == "USWEST"


# The hedging calculator stages the cap's and the collar's options as well as the strip.


@pytest.fixture
def strip_with_chain(strip, seller):  # noqa: F811
    """The strip's first month gets a chain at 2.10 to 2.70 (0.05 apart) with a call offered."""
    chain = options_list_chain(
        future=strip[0],
        reference_price=Decimal("2.40"),
        strike_step=Decimal("0.05"),
        strikes_each_side=6,
    )
    call = next(o for o in chain if o.option_type == "call" and o.strike == Decimal("2.65"))
    place(seller, call, "sell", 3, "0.050")
    return strip, {(option.option_type, option.strike): option for option in chain}


def _need(strip) -> dict[str, str]:  # noqa: F811
    return {
        "sku": "H100SXM",
        "region": "USEAST",
        "gpus": "8",
        "first_month": f"{strip[0].delivery_start:%Y-%m}",
        "months": str(len(strip)),
    }


def test_each_option_leg_is_staged_on_a_listed_option_and_priced(client, strip_with_chain):
    strip, chain = strip_with_chain  # noqa: F811

    response = client.get(reverse("web:hedging"), _need(strip))

    # then the staged options are the selector's for the service's recommendation
    assert response.status_code == 200
    hedge = hedge_recommendation(
        sku=Sku.objects.get(code="H100SXM"),
        region=Region.objects.get(code="USEAST"),
        gpus=8,
        first_month=strip[0].delivery_start,
        months=3,
    )
    staged = response.context["option_orders"]
    assert staged == hedge_option_orders(hedge, at=timezone.now())
    assert [(order.side, order.leg) for order in staged] == [
        *(("buy", leg) for leg in hedge.calls),
        *(("sell", leg) for leg in hedge.puts),
    ]
    call, put = staged[0], staged[3]
    # the cap's first call: struck 10% over 2.40 (2.64), listed at 2.65, bought at the offer
    assert call.leg.target_strike == Decimal("2.640000")
    assert call.option == chain[("call", Decimal("2.65"))]
    assert (call.price, call.price_source) == (Decimal("0.050"), "ask")
    # the collar's first put: struck 10% under (2.16), listed at 2.15; with no bid, the model
    assert put.option == chain[("put", Decimal("2.15"))]
    fair = next(
        row.put
        for row in option_chain(strip[0], at=timezone.now()).rows
        if row.strike == put.option.strike
    ).fair_value
    assert put.price_source == "model"
    assert put.price == max(on_tick(fair, put.option.tick_size), put.option.tick_size)
    # months without a listed chain have nothing to stage
    assert [order.option for order in staged[1:3] + staged[4:]] == [None] * 4

    # and the page links each listed option to its ticket with side, quantity and price
    page = response.content.decode()
    for order in (call, put):
        link = reverse("web:instrument", args=[order.option.symbol])
        staged_price = price_exact(order.price)  # As the ticket writes it: 0.050, not 0.050000.
        assert f'{link}?side={order.side}&amp;quantity=8&amp;price={staged_price}"' in page
    assert page.count("Stage in ticket") == 3 + 2  # The strip's three months and two options.
    assert f'href="{reverse("web:instrument", args=[strip[1].symbol])}">Option chain' in page


def test_the_hedging_page_needs_no_sign_in_and_writes_nothing(client, strip_with_chain, row_counts):
    strip, _chain = strip_with_chain  # noqa: F811
    before = row_counts()

    response = client.get(reverse("web:hedging"), _need(strip))

    assert response.status_code == 200
    assert response.context["hedge"] is not None
    assert row_counts() == before


def test_a_halted_future_is_not_staged_and_the_page_says_why(client, strip_with_chain):
    strip, _chain = strip_with_chain  # noqa: F811
    # given the second month's future is halted: an order on it is refused
    instrument_set_status(instrument=strip[1], status=Instrument.Status.HALTED, actor=None)

    # when the need is hedged on the page
    response = client.get(reverse("web:hedging"), _need(strip))

    # then its row says it is not bought and why, with no ticket to stage; the others stage 8
    page = response.content.decode()
    assert response.status_code == 200
    assert (
        f"Not bought ({strip[1].symbol} is halted: an order on it is refused until trading "
        "resumes)" in page
    )
    assert f"{strip[1].symbol}/?side=buy" not in page
    for future in (strip[0], strip[2]):
        assert f"{future.symbol}/?side=buy&amp;quantity=8&amp;" in page
    # and the need is still the 8 GPUs' hours of every month
    hours = sum(future.gpu_hours_per_contract for future in strip)
    assert response.context["gpu_hours"] == 8 * hours


def test_a_leg_above_the_maximum_order_is_staged_as_its_first_order(client, strip_with_chain):
    strip, _chain = strip_with_chain  # noqa: F811
    # given the first month's future takes orders of at most 3 contracts
    Instrument.objects.filter(pk=strip[0].pk).update(quantity_max=3)

    # when 8 GPUs are hedged on the page
    response = client.get(reverse("web:hedging"), _need(strip))

    # then its ticket stages an order of 3, and the row says the 8 take three orders
    page = response.content.decode()
    assert response.context["hedge"].futures[0].contracts == 8
    assert f"{strip[0].symbol}/?side=buy&amp;quantity=3&amp;" in page
    assert "in 2 orders of 3 and 1 order of 2 (at most 3 contracts an order, in whole lots)" in page
    assert f"{strip[1].symbol}/?side=buy&amp;quantity=8&amp;" in page
