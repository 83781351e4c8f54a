"""The instrument page's trading: the ticket and its collateral preview, the live partials,
and the member's open orders with cancel and amend. Orders match inline (the test setting)."""

from decimal import Decimal

import pytest
from django.urls import reverse

from exchange.models import Membership, Order, OrderRejection, Trade
from exchange.services.orders import order_place
from exchange.services.participants import member_add

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"


@pytest.fixture
def alice(buyer):
    """A trader of the buyer's organization (Lumen)."""
    return member_add(
        organization=buyer.organization, username="alice", email="a@l.example", password=PASSWORD
    ).user


@pytest.fixture
def victor(buyer):
    """A viewer of the same organization."""
    return member_add(
        organization=buyer.organization,
        username="victor",
        email="v@l.example",
        password=PASSWORD,
        role=Membership.Role.VIEWER,
    ).user


@pytest.fixture
def nora(seller):
    """A trader of the seller's organization (Northwind)."""
    return member_add(
        organization=seller.organization, username="nora", email="n@n.example", password=PASSWORD
    ).user


def _ticket(**changes):
    return {"quantity": "3", "price": "2.450", "type": "limit", "time_in_force": "gtc", **changes}


def _place(client, future, side="buy", **changes):
    return client.post(
        reverse("web:order_place", args=[future.symbol]), {**_ticket(**changes), "side": side}
    )


def test_anonymous_sees_the_page_and_a_sign_in_link(client, future):
    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()

    assert "Sign in to trade" in page
    assert 'id="ticket"' not in page


def test_a_viewer_sees_no_ticket(client, future, victor):
    client.force_login(victor)

    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()

    assert "Your role is viewer" in page
    assert 'id="ticket"' not in page


def test_a_trader_sees_the_ticket_with_staged_values(client, future, alice):
    client.force_login(alice)

    response = client.get(
        reverse("web:instrument", args=[future.symbol]),
        {"side": "sell", "quantity": "4", "price": "2.5"},
    )

    page = response.content.decode()
    assert 'id="ticket"' in page
    assert response.context["form"].initial == {"quantity": "4", "price": "2.5"}
    assert 'class="sell staged"' in page
    for label in (">Quantity</label>", ">Price</label>", ">Buy</button>", ">Sell</button>"):
        assert label in page


def test_a_limit_buy_rests_in_the_book_and_in_my_orders(client, future, alice, buyer):
    client.force_login(alice)

    response = _place(client, future)

    assert response.status_code == 302
    order = Order.objects.get(account=buyer)
    assert (order.side, order.quantity, order.price, order.status) == (
        "buy",
        3,
        Decimal("2.45"),
        Order.Status.OPEN,
    )
    book = client.get(reverse("web:instrument_book", args=[future.symbol])).content.decode()
    assert "2.450" in book
    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))
    assert list(mine.context["orders"]) == [order]
    followed = client.get(response["Location"]).content.decode()
    assert "3 resting in the book" in followed


def test_a_sell_from_another_organization_fills_it_and_both_see_the_trade(
    client, future, alice, nora, buyer, seller
):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    client.force_login(nora)

    response = _place(client, future, side="sell", quantity="2")

    trade = Trade.objects.get(instrument=future)
    assert (trade.quantity, trade.price) == (2, Decimal("2.45"))
    note = client.get(response["Location"]).content.decode()
    assert "filled 2 (2 at 2.45 $/GPU-hr" in note
    tape = client.get(reverse("web:instrument_tape", args=[future.symbol])).content.decode()
    assert "2.450" in tape
    # Nora's organization has no open orders here; Alice's bid has 1 open.
    assert (
        client.get(reverse("web:instrument_my_orders", args=[future.symbol])).context["orders"]
        == []
    )
    client.force_login(alice)
    (bid,) = client.get(reverse("web:instrument_my_orders", args=[future.symbol])).context["orders"]
    assert bid.open_quantity == 1


def test_market_and_ioc_orders(client, future, alice, nora, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    client.force_login(nora)

    _place(client, future, side="sell", quantity="1", type="market", price="", time_in_force="ioc")
    _place(client, future, side="sell", quantity="5", price="2.45", time_in_force="ioc")

    market, ioc = Order.objects.filter(side="sell").order_by("id")
    assert (market.type, market.filled_quantity) == ("market", 1)
    assert (ioc.filled_quantity, ioc.cancelled_quantity, ioc.status) == (2, 3, "cancelled")


def test_a_crossing_post_only_order_is_refused_with_its_code(client, future, alice, nora, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    client.force_login(nora)

    response = _place(client, future, side="sell", price="2.40", post_only="on")

    assert Trade.objects.count() == 0
    page = (
        client.get(response["Location"]).content.decode()
        if response.status_code == 302
        else (response.content.decode())
    )
    assert "POST_ONLY" in page.upper()


def test_an_off_tick_price_is_refused_next_to_the_field_and_writes_no_order(client, future, alice):
    client.force_login(alice)
    rejections = OrderRejection.objects.count()

    response = _place(client, future, price="2.4512")

    assert response.status_code == 400
    assert "tick" in " ".join(response.context["form"].errors["price"])
    assert Order.objects.count() == 0
    assert OrderRejection.objects.count() == rejections + 1  # The engine's rejection record.


def test_a_limit_order_needs_a_price_and_a_side(client, future, alice):
    client.force_login(alice)

    no_price = _place(client, future, price="")
    no_side = client.post(reverse("web:order_place", args=[future.symbol]), _ticket())

    assert no_price.status_code == no_side.status_code == 400
    assert no_price.context["form"].errors["price"] == ["A limit order needs a price."]
    assert "Press Buy or Sell." in no_side.context["form"].non_field_errors()
    assert Order.objects.count() == 0


def test_insufficient_funds_is_named(client, future, fourth):
    poor = member_add(
        organization=fourth.organization, username="pat", email="p@q.example", password=PASSWORD
    ).user
    Order.objects.all().delete()
    client.force_login(poor)

    response = _place(client, future, quantity="100000")

    assert response.status_code == 400
    assert "RISK_INSUFFICIENT_FUNDS" in " ".join(response.context["form"].errors["quantity"])
    assert not Order.objects.filter(account=fourth).exists()


def test_a_viewer_cannot_place_preview_cancel_or_amend(client, future, victor, buyer):
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3
    )
    client.force_login(victor)

    responses = [
        _place(client, future),
        client.post(reverse("web:ticket_preview", args=[future.symbol]), _ticket()),
        client.post(reverse("web:order_cancel", args=[order.pk])),
        client.post(reverse("web:order_amend", args=[order.pk]), {"price": "2.4", "quantity": 1}),
    ]

    assert [r.status_code for r in responses] == [403] * 4
    order.refresh_from_db()
    assert (Order.objects.count(), order.status, order.price) == (1, "open", Decimal("2.45"))


def test_anonymous_posts_go_to_sign_in(client, future):
    response = _place(client, future)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert Order.objects.count() == 0


def test_cancel_and_amend_own_orders(client, future, alice, buyer):
    client.force_login(alice)
    first = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3
    )
    second = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3
    )

    client.post(reverse("web:order_cancel", args=[first.pk]))
    client.post(reverse("web:order_amend", args=[second.pk]), {"price": "2.42", "quantity": "2"})

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "cancelled"
    assert (second.price, second.open_quantity) == (Decimal("2.42"), 2)


def test_an_amend_with_a_bad_price_changes_nothing(client, future, alice, buyer):
    client.force_login(alice)
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3
    )

    response = client.post(
        reverse("web:order_amend", args=[order.pk]),
        {"price": "2.4001", "quantity": "2"},
        follow=True,
    )

    order.refresh_from_db()
    assert (order.price, order.open_quantity) == (Decimal("2.4"), 3)
    assert "was not amended" in response.content.decode()


def test_another_organizations_order_is_not_found(client, future, nora, buyer):
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3
    )
    client.force_login(nora)

    cancel = client.post(reverse("web:order_cancel", args=[order.pk]))
    amend = client.post(reverse("web:order_amend", args=[order.pk]), {"price": "2", "quantity": 1})

    assert cancel.status_code == amend.status_code == 404
    order.refresh_from_db()
    assert order.status == "open"


def test_preview_shows_collateral_for_both_sides_and_writes_nothing(client, future, alice, buyer):
    client.force_login(alice)

    response = client.post(reverse("web:ticket_preview", args=[future.symbol]), _ticket())

    page = response.content.decode()
    sides = {row["side"]: row for row in response.context["sides"]}
    assert set(sides) == {"buy", "sell"}
    assert all("preview" in row for row in sides.values())
    held = sides["buy"]["preview"].collateral[0].amount
    assert held > 0
    assert f"{held:.2f} USD" in page
    assert Order.objects.count() == 0


def test_preview_names_the_refusal_for_an_unfunded_account(client, future):
    from exchange.models import Organization
    from exchange.services.participants import organization_create

    organization = organization_create(slug="empty", name="Empty", kind=Organization.Kind.STARTUP)
    user = member_add(
        organization=organization, username="emma", email="e@e.example", password=PASSWORD
    ).user
    client.force_login(user)

    response = client.post(reverse("web:ticket_preview", args=[future.symbol]), _ticket())

    assert "RISK_INSUFFICIENT_FUNDS" in response.content.decode()


def test_unknown_instrument_pages_are_not_found(client, future):
    for name in ("web:instrument", "web:instrument_book", "web:instrument_tape"):
        assert client.get(reverse(name, args=["H100SXM-USEAST-209912"])).status_code == 404
