"""The demo market's loaders (exchange/demo.py), beyond what seed_demo's tests cover."""

from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.demo import load_catalog, load_funding, load_participants, quote_options
from exchange.models import Instrument, Order
from exchange.services.orders import order_place

pytestmark = pytest.mark.django_db


def test_lumen_buys_the_call_at_helix_offer_before_a_matcher_has_taken_the_offer(settings):
    """With matcher processes (the external mode), Helix's option offers wait as NEW orders
    until a matcher takes them, so the book does not show them yet: Lumen's buy of the call
    nearest the money is priced at the offer Helix sent, as on the book once it rests."""
    # given the demo catalog and participants, funded, and a future with options quoted on the
    # book by a matcher that has since taken nothing more
    today = timezone.now().date()
    strips = load_catalog(today)
    accounts = load_participants()
    load_funding(accounts)
    future = next(
        future
        for *_, futures in strips
        for future in futures
        if future.options.filter(status=Instrument.Status.ACTIVE).exists()
    )
    order_place(
        account=accounts["helix"],
        instrument=future,
        side="buy",
        price=Decimal("2.400"),
        quantity=8,
    )
    order_place(
        account=accounts["northwind"],
        instrument=future,
        side="sell",
        price=Decimal("2.500"),
        quantity=8,
    )
    settings.EXCHANGE_MATCHER_MODE = "external"

    # when Helix quotes the options
    placed = quote_options(accounts, today=today)

    # then Lumen bid for one call, at Helix's offer for it
    bought = Order.objects.get(account=accounts["lumen"])
    offer = Order.objects.get(account=accounts["helix"], instrument=bought.instrument, side="sell")
    assert bought.instrument.option_type == Instrument.OptionType.CALL
    assert bought.instrument.underlying_id == future.pk
    assert bought.status == Order.Status.NEW and bought.side == "buy"
    assert bought.price == offer.price
    assert placed == Order.objects.filter(instrument__underlying=future).count()
