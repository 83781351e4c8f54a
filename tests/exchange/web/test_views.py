from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from exchange import calendar
from exchange.models import Instrument, Region, SettlementPrice, Sku
from exchange.services.capacity import capacity_register
from exchange.services.listing import futures_list_strip, options_list_chain, resale_list
from exchange.services.orders import order_place
from pricing import black76
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_market(db):
    """A second SKU in a second region, one month listed."""
    sku = Sku.objects.create(
        code="B200",
        name="NVIDIA B200",
        vendor="NVIDIA",
        generation="Blackwell",
        memory_gb=192,
        interconnect="nvlink",
        release_date=date(2025, 3, 1),
        power_watts=1000,
    )
    region = Region.objects.create(
        code="EUWEST", name="EU West", power_price_usd_per_kwh=Decimal("0.185")
    )
    return futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=1)[0]


@pytest.fixture
def quoted(future, buyer, seller):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=7)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.55"), quantity=9)
    return future


def test_markets_page_lists_futures_with_quotes(client, quoted, futures, other_market):
    response = client.get(reverse("web:markets"))

    assert response.status_code == 200
    page = response.content.decode()
    for instrument in [*futures, other_market]:
        assert instrument.symbol in page
    assert "2.450" in page
    assert "2.550" in page
    assert response.context["instrument_count"] == 3
    grid = response.context["grid"]
    assert grid.months == sorted({f.delivery_start for f in [*futures, other_market]})
    assert [(row.sku.code, row.region.code) for row in grid.rows] == [
        ("B200", "EUWEST"),
        ("H100SXM", "USEAST"),
    ]
    b200, h100 = grid.rows
    assert [cell.instrument for cell in h100.cells] == futures
    # B200 lists only the first month: the second month's cell is empty.
    assert b200.cells[0].instrument == other_market
    assert b200.cells[1] is None
    cell = h100.cells[0]
    assert cell.quote.best_bid.quantity == 7
    assert cell.quote.best_ask.quantity == 9


def test_markets_grid_shows_change_against_the_previous_settlement(client, quoted, buyer, seller):
    today = timezone.now().date()
    SettlementPrice.objects.create(
        instrument=quoted,
        trading_date=today - timedelta(days=3),
        price=Decimal("2.40"),
        source=SettlementPrice.Source.MID,
    )
    SettlementPrice.objects.create(
        instrument=quoted,
        trading_date=today - timedelta(days=1),
        price=Decimal("2.50"),
        source=SettlementPrice.Source.MID,
    )
    SettlementPrice.objects.create(  # Today's own settlement is not "previous".
        instrument=quoted,
        trading_date=today,
        price=Decimal("9.00"),
        source=SettlementPrice.Source.MID,
    )
    order_place(account=buyer, instrument=quoted, side="buy", price=Decimal("2.55"), quantity=1)

    response = client.get(reverse("web:markets"))

    cell = response.context["grid"].rows[0].cells[0]
    assert cell.previous_settlement == Decimal("2.50")
    assert cell.quote.last_price == Decimal("2.55")
    assert cell.change == Decimal("0.05")
    assert cell.change_percent == Decimal("2.0")
    page = response.content.decode()
    assert "+0.050 (+2.0%)" in page
    assert f'href="/instruments/{quoted.symbol}/"' in page


def test_markets_grid_without_trades_has_no_change(client, quoted):
    cell = client.get(reverse("web:markets")).context["grid"].rows[0].cells[0]

    assert cell.quote.last_price is None
    assert cell.change is None


def test_markets_page_filters_by_sku_and_region(client, futures, other_market):
    by_sku = client.get(reverse("web:markets"), {"sku": "B200"})
    by_region = client.get(reverse("web:markets"), {"region": "USEAST"})

    assert by_sku.status_code == by_region.status_code == 200
    assert other_market.symbol in by_sku.content.decode()
    assert futures[0].symbol not in by_sku.content.decode()
    assert by_region.context["instrument_count"] == 2
    assert other_market.symbol not in by_region.content.decode()


def test_markets_page_filters_by_kind(client, future):
    options = options_list_chain(
        future=future,
        reference_price=Decimal("2.5"),
        strike_step=Decimal("0.5"),
        strikes_each_side=1,
    )

    response = client.get(reverse("web:markets"), {"kind": "option"})

    page = response.content.decode()
    assert response.context["kind"] == "option"
    assert response.context["instrument_count"] == len(options) == 6
    assert all(option.symbol in page for option in options)
    assert f'href="/instruments/{future.symbol}/"' not in page


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({}, "Futures"),
        ({"kind": "future"}, "Futures"),
        ({"kind": "option"}, "Options"),
        ({"kind": "resale"}, "Reserved resale"),
        ({"kind": "swap"}, "Futures"),
    ],
)
def test_each_kinds_page_names_it_in_its_title_and_heading(client, future, query, name):
    """The futures, options and resale pages were all titled and headed "Markets"."""
    page = client.get(reverse("web:markets"), query).content.decode()

    assert f"<title>{name} · Markets · GPU Exchange</title>" in page
    assert f"<h1>Markets · {name}</h1>" in page


@pytest.mark.parametrize("kind", ["future", "option"])
@pytest.mark.parametrize("query", [{"sku": "NOPE"}, {"sku": "H100\x00"}, {"region": "\x00"}])
def test_markets_page_ignores_an_unknown_sku_or_region(client, futures, other_market, kind, query):
    # (On PostgreSQL text with NUL could not even be compared: it was a server error.)
    response = client.get(reverse("web:markets"), {"kind": kind, **query})

    assert response.status_code == 200
    assert (response.context["selected_sku"], response.context["selected_region"]) == ("", "")
    if kind == "future":
        assert response.context["instrument_count"] == 3


def test_markets_page_falls_back_to_futures_for_an_unknown_kind(client, future):
    response = client.get(reverse("web:markets"), {"kind": "swap"})

    assert response.status_code == 200
    assert response.context["kind"] == "future"
    assert future.symbol in response.content.decode()


def test_instrument_page_shows_depth_and_trades(client, quoted, buyer):
    order_place(account=buyer, instrument=quoted, side="buy", price=Decimal("2.55"), quantity=2)

    response = client.get(reverse("web:instrument", args=[quoted.symbol]))

    assert response.status_code == 200
    assert response.context["instrument"] == quoted
    bids = [(level.price, level.quantity) for level in response.context["bids"]]
    asks = [(level.price, level.quantity) for level in response.context["asks"]]
    assert bids == [(Decimal("2.45"), 7)]
    assert asks == [(Decimal("2.55"), 7)]
    assert [trade.quantity for trade in response.context["trades"]] == [2]
    page = response.content.decode()
    assert quoted.symbol in page
    assert "No trades yet." not in page
    assert f"{quoted.gpu_hours_per_contract} GPU-hours" in page


def test_future_page_links_its_options_and_option_page_its_future(client, future):
    call, put = options_list_chain(
        future=future,
        reference_price=Decimal("2.5"),
        strike_step=Decimal("0.5"),
        strikes_each_side=0,
    )

    future_page = client.get(reverse("web:instrument", args=[future.symbol]))
    option_page = client.get(reverse("web:instrument", args=[call.symbol]))

    (row,) = future_page.context["chain"].rows
    assert (row.strike, row.call.option, row.put.option) == (Decimal("2.5"), call, put)
    assert row.call.fair_value is None  # The future has no price yet.
    assert f'href="/instruments/{call.symbol}/"' in future_page.content.decode()
    assert option_page.status_code == 200
    assert f'href="/instruments/{future.symbol}/"' in option_page.content.decode()
    assert "No trades yet." in option_page.content.decode()


def test_instrument_page_writes_its_dates_as_every_other_page_does(client, future):
    """Delivery and last trading day read "March 1, 2027" and "Feb. 26, 2027" (Django's
    default format) where the capacity, portfolio, pool and hedging pages, the API and the
    symbols write ISO dates; they are ISO dates too."""
    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()

    start, end = future.delivery_start, future.delivery_end
    assert f"<dd>{start:%Y-%m-%d} to {end:%Y-%m-%d} (exclusive)</dd>" in page
    assert f"<dt>Last trading day</dt><dd>{future.last_trading_day:%Y-%m-%d}</dd>" in page


def test_unknown_instrument_is_not_found(client, future):
    response = client.get(reverse("web:instrument", args=["H100SXM-USEAST-209901"]))

    assert response.status_code == 404


def test_resale_listing_pages(client, sku, region, buyer, seller):
    starts = datetime.combine(listing_month(), time.min, tzinfo=UTC)
    reservation = capacity_register(
        provider=seller.organization,
        holder=buyer.organization,
        cluster="nw-ashburn-a",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=starts + timedelta(days=90),
        gpus=256,
        interconnect="infiniband",
        contiguous_block_gpus=64,
    )
    instrument = resale_list(reservation=reservation)
    order_place(
        account=buyer, instrument=instrument, side="sell", price=Decimal("2.30"), quantity=128
    )

    listing = client.get(reverse("web:markets"), {"kind": "resale"})
    detail = client.get(reverse("web:instrument", args=[instrument.symbol]))

    assert listing.status_code == detail.status_code == 200
    assert instrument.symbol in listing.content.decode()
    assert "2.300" in listing.content.decode()
    page = detail.content.decode()
    assert "256 GPUs, nw-ashburn-a, blocks of 64" in page
    assert [(level.price, level.quantity) for level in detail.context["asks"]] == [
        (Decimal("2.30"), 128)
    ]


@pytest.mark.parametrize(
    "symbol", ["not-a-symbol!", "H100SXM-USEAST-000001", "H100SXM-USEAST-R5-20270431"]
)
def test_malformed_symbol_is_not_found_without_a_lookup(client, django_assert_num_queries, symbol):
    # A symbol that cannot exist in the scheme is refused before any database query: until
    # 2026-12-07 year 0000, which the pattern lets through, was a server error.
    with django_assert_num_queries(0):
        response = client.get(f"/instruments/{symbol}/")

    assert response.status_code == 404


def test_strikes_are_shown_to_every_decimal_they_have(client, future):
    # given a chain stepped in thousandths, as a roll lists one on a cheap future (5% of 1.38 is
    # 0.069): 1.311, 1.38 and 1.449
    options = options_list_chain(
        future=future,
        reference_price=Decimal("1.38"),
        strike_step=Decimal("0.069"),
        strikes_each_side=1,
    )
    low_call = next(o for o in options if o.option_type == "call" and o.strike == Decimal("1.311"))

    # when the future's page and the option's page are shown
    chain_page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()
    option_page = client.get(reverse("web:instrument", args=[low_call.symbol])).content.decode()

    # then each strike is written as its symbol writes it, not rounded to cents (1.31, 1.45:
    # strikes no option of the chain has)
    for shown in ("1.311", "1.38", "1.449"):
        assert f'<td class="strike">{shown}</td>' in chain_page
    assert "Call at 1.311 $/GPU-hr on" in option_page
    assert low_call.symbol.endswith("-C1.311")


def test_option_chain_shows_black76_fair_values_and_implied_vols(client, future, buyer, seller):
    # given a settled future at 2.50 and a call struck at 2.50 quoted 0.090 / 0.110
    today = timezone.now().date()
    SettlementPrice.objects.create(
        instrument=future, trading_date=today, price=Decimal("2.50"), source="vwap"
    )
    call, _put = options_list_chain(
        future=future,
        reference_price=Decimal("2.5"),
        strike_step=Decimal("0.5"),
        strikes_each_side=0,
    )
    place(buyer, call, "buy", 1, "0.090")
    place(seller, call, "sell", 1, "0.110")

    # when the future's page is shown
    page = client.get(reverse("web:instrument", args=[future.symbol]))

    # then the call's fair value is Black-76 at the default volatility, on the option tick
    (row,) = page.context["chain"].rows
    years = (call.last_trading_day - today).days / 365
    rate, sigma = (
        float(settings.EXCHANGE_RISK_FREE_RATE),
        float(settings.EXCHANGE_DEFAULT_VOLATILITY),
    )
    expected = black76.price(2.5, 2.5, years, rate, sigma, True)
    assert abs(float(row.call.fair_value) - expected) <= 0.0005
    # and its implied volatility is the one the mid (0.100) implies
    implied = black76.implied_volatility(0.100, 2.5, 2.5, years, rate, True)
    assert abs(float(row.call.implied_volatility) - implied) < 1e-4
    assert 0.4 < row.call.delta < 0.6
    assert f"{row.call.fair_value:.3f}" in page.content.decode()


def test_the_future_s_page_leaves_out_options_whose_trading_ended(client, future, monkeypatch):
    """From their close an order on them is refused, though the daily cycle has not expired
    them yet: the page must not show them with fair values and deltas as if they traded."""
    # given a settled future whose options stop trading at today's close
    today = timezone.now().date()
    SettlementPrice.objects.create(
        instrument=future, trading_date=today, price=Decimal("2.50"), source="vwap"
    )
    call, _put = options_list_chain(
        future=future,
        reference_price=Decimal("2.5"),
        strike_step=Decimal("0.5"),
        strikes_each_side=0,
    )
    Instrument.objects.filter(underlying=future).update(last_trading_day=today)
    close = calendar.close_at(today)

    # when the future's page is shown a second before the close, and at the close
    monkeypatch.setattr(timezone, "now", lambda: close - timedelta(seconds=1))
    before = client.get(reverse("web:instrument", args=[future.symbol]))
    monkeypatch.setattr(timezone, "now", lambda: close)
    after = client.get(reverse("web:instrument", args=[future.symbol]))

    # then the chain shows the options until the close, and not from then on
    assert [row.call.option for row in before.context["chain"].rows] == [call]
    assert "Options on this future" in before.content.decode()
    assert after.context["chain"].rows == []
    assert "Options on this future" not in after.content.decode()
