"""The hedge's quantities: whole lots, as orders the instrument accepts; the volatility each
month's prices are simulated at. Fixtures and helpers are the API tests'."""

from decimal import Decimal

import pytest
from django.conf import settings

from exchange.selectors.volatility import historical_volatility
from exchange.services.hedging import Orders, hedge_recommendation, order_split, whole_lots
from pricing import hedge
from pricing.hedge import Side
from tests.exchange.api.test_pricing import (
    _settle_history,
    _settle_option,
    chains,  # noqa: F401 (a fixture)
    strip,  # noqa: F401 (a fixture)
)


@pytest.mark.parametrize(
    ("gpus", "lot_size", "contracts"), [(8, 1, 8), (8, 5, 10), (10, 5, 10), (1, 25, 25)]
)
def test_the_gpus_are_rounded_up_to_whole_lots(gpus, lot_size, contracts):
    assert whole_lots(gpus, lot_size) == contracts


@pytest.mark.parametrize(
    ("contracts", "lot_size", "quantity_max", "orders"),
    [
        (8, 1, 100_000, (Orders(8, 1),)),
        (10, 5, 7, (Orders(5, 2),)),
        (9, 3, 6, (Orders(6, 1), Orders(3, 1))),
        # However many orders, two sizes say them: the need's bound is GPUS_MAX contracts.
        (100_000, 1, 7, (Orders(7, 14_285), Orders(5, 1))),
    ],
)
def test_contracts_are_the_fewest_orders_of_at_most_the_maximum_in_whole_lots(
    contracts, lot_size, quantity_max, orders
):
    assert order_split(contracts, lot_size, quantity_max) == orders


# The volatility each month is simulated at.


@pytest.fixture
def simulated(monkeypatch) -> list[tuple[float, ...]]:
    """The volatilities ``pricing.hedge.recommend`` simulates each month at, one tuple per call
    (the service's, recorded on the way through)."""
    calls: list[tuple[float, ...]] = []
    recommend = hedge.recommend

    def recording(need, sigma, **options):
        calls.append(tuple(hedge.month_sigmas(need, sigma).tolist()))
        return recommend(need, sigma, **options)

    monkeypatch.setattr(hedge, "recommend", recording)
    return calls


def _hedge(strip, side=Side.BUY, volatility=None):  # noqa: F811
    sku, region = strip[0].sku, strip[0].region
    return hedge_recommendation(
        sku=sku,
        region=region,
        gpus=4,
        first_month=strip[0].delivery_start,
        months=len(strip),
        volatility=volatility,
        side=side,
    )


def _month_volatilities(result) -> list[tuple[Decimal | None, str | None]]:
    return [(leg.volatility, leg.volatility_source) for leg in result.futures]


@pytest.mark.django_db
def test_without_a_volatility_each_month_is_simulated_at_the_markets(strip, chains, simulated):  # noqa: F811
    # given the first month's call C2.75 settled at a market price implying 45%; the second
    # month's options never settled, its future without history; the third month lists no
    # option, its future has a price history
    _settle_option(chains[(strip[0].symbol, "call", Decimal("2.75"))], "0.45")
    _settle_history(strip[2])
    historical = historical_volatility(strip[2].pk)
    assert historical is not None

    # when a buyer's need is hedged with no volatility requested
    result = _hedge(strip)

    # then the first month is simulated at its call's implied 45%, the second at what its
    # call is valued at (its future has no history: the default), the third at its future's
    # historical volatility; each futures leg says which
    default = float(settings.EXCHANGE_DEFAULT_VOLATILITY)
    assert simulated == [(0.45, default, historical)]
    assert _month_volatilities(result) == [
        (Decimal("0.450000"), "implied"),
        (Decimal("0.600000"), "default"),
        (Decimal(repr(historical)).quantize(Decimal("0.000001")), "historical"),
    ]
    assert result.calls[1].volatility_source == "default"
    # and the top-level volatility is the default's
    assert result.volatility == settings.EXCHANGE_DEFAULT_VOLATILITY


@pytest.mark.django_db
def test_a_month_without_options_or_history_is_simulated_at_the_default(strip, simulated):  # noqa: F811
    result = _hedge(strip)

    default = float(settings.EXCHANGE_DEFAULT_VOLATILITY)
    assert simulated == [(default, default, default)]
    assert {source for _, source in _month_volatilities(result)} == {"default"}


@pytest.mark.django_db
def test_a_seller_simulates_each_month_at_its_put(strip, chains, simulated):  # noqa: F811
    # given the first month's put P2.00 (a seller's floor) implying 70%, its call 45%
    _settle_option(chains[(strip[0].symbol, "put", Decimal("2.00"))], "0.70")
    _settle_option(chains[(strip[0].symbol, "call", Decimal("2.75"))], "0.45")

    result = _hedge(strip, side=Side.SELL)

    # then the first month is simulated at its put's: the option a seller buys
    assert simulated[0][0] == 0.70
    assert _month_volatilities(result)[0] == (Decimal("0.700000"), "implied")


@pytest.mark.django_db
def test_a_requested_volatility_is_every_months(strip, chains, simulated):  # noqa: F811
    # given months with volatilities of their own: implied, and historical
    _settle_option(chains[(strip[0].symbol, "call", Decimal("2.75"))], "0.45")
    _settle_history(strip[2])

    result = _hedge(strip, volatility=Decimal("0.5"))

    assert simulated == [(0.5, 0.5, 0.5)]
    assert _month_volatilities(result) == [(Decimal("0.500000"), "requested")] * 3
    assert result.volatility == Decimal("0.5")
