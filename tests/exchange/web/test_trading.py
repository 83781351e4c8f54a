"""The instrument page's trading: the ticket and its collateral preview, the live partials,
and the member's open orders with cancel and amend. Orders match inline (the test setting)."""

from decimal import Decimal
from urllib.parse import unquote

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from exchange.backoffice.roles import Role
from exchange.matcher.runtime import Matcher
from exchange.models import CancelReason, Membership, Order, OrderRejection, Trade
from exchange.services.orders import order_cancel, order_place, orders_cancel
from exchange.services.participants import member_add
from exchange.services.staff import staff_roles_grant
from tests.exchange.support import matching_in_thread, place

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


def _refused(client, response):
    """The page a refused ticket redirects to (POST/redirect/GET), with the ticket as sent."""
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    return page


def test_anonymous_sees_the_page_and_a_sign_in_link(client, future):
    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()

    assert "Sign in to trade" in page
    assert 'id="ticket"' not in page


def test_signing_in_from_a_staged_ticket_comes_back_to_it_staged(client, future, alice):
    """A visitor staging an order from the hedging calculator is asked to sign in: the link
    came back to the instrument without the staged side, quantity and price."""
    staged = reverse("web:instrument", args=[future.symbol]) + "?side=sell&quantity=16&price=2.43"
    page = client.get(staged).content.decode()
    sign_in = page.split('<a href="')[1:]
    (link,) = [href.split('"')[0] for href in sign_in if "Sign in to trade" in href]

    next_url = link.split("?next=")[1]
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD, "next": unquote(next_url)}
    )

    assert response["Location"] == staged
    ticket = client.get(response["Location"]).context["form"]
    assert (ticket["quantity"].value(), ticket["price"].value()) == ("16", "2.43")


def test_staff_of_no_organization_are_pointed_to_the_back_office_not_to_sign_in(client, future):
    # given risk staff who belong to no organization (the demo's ravi)
    ravi = get_user_model().objects.create_user(username="ravi", password=PASSWORD)
    staff_roles_grant(user=ravi, roles=[Role.RISK], actor=None)
    client.force_login(ravi)

    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()
    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol])).content.decode()

    assert "Sign in" not in page.split("</header>", 1)[1]
    assert "Staff accounts do not trade" in page
    assert f'href="{reverse("backoffice:dashboard")}">back office</a>' in page
    assert 'id="ticket"' not in page
    assert "Sign in" not in mine and "Staff accounts have no orders" in mine


def test_a_signed_in_user_of_no_organization_is_told_so_not_to_sign_in(client, future):
    lone = get_user_model().objects.create_user(username="lone", password=PASSWORD)
    client.force_login(lone)

    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()
    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol])).content.decode()

    assert "Sign in" not in page.split("</header>", 1)[1]
    assert "not a member of any organization" in page
    assert "back office" not in page.split("</header>", 1)[1]
    assert "Sign in" not in mine and "not a member of any organization" in mine


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
    # Nora's sell filled whole: it is listed under "Ended lately", with why, for her alone.
    client.force_login(nora)
    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))
    ((ended, why),) = [(item["order"], item["why"]) for item in mine.context["ended"]]
    assert (ended.side, ended.status, why) == ("sell", Order.Status.FILLED, "All of it traded")
    assert f'id="ended-order-{ended.pk}"' in mine.content.decode()


def test_my_orders_that_ended_show_why_newest_first_and_five_at_most(
    client, future, futures, alice, buyer
):
    placed = [
        order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=1)
        for _ in range(6)
    ]
    other = order_place(
        account=buyer, instrument=futures[1], side="buy", price=Decimal("2.40"), quantity=1
    )
    for order in placed:
        order_cancel(order=order)
    orders_cancel(orders=[other], reason=CancelReason.CANCEL_ALL)
    client.force_login(alice)

    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))

    assert [item["order"].pk for item in mine.context["ended"]] == [
        order.pk for order in reversed(placed[1:])
    ]
    assert {item["why"] for item in mine.context["ended"]} == {"Asked for by the account"}
    assert mine.context["orders"] == []
    page = mine.content.decode()
    assert "Ended lately" in page and f"ended-order-{placed[0].pk}" not in page


def test_an_old_order_cancelled_now_is_the_first_that_ended_lately(client, future, alice, buyer):
    # given an old resting order, then five newer ones that ended before it
    old = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.30"), quantity=1
    )
    newer = [
        order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=1)
        for _ in range(5)
    ]
    for order in newer:
        order_cancel(order=order)

    # when the old order is cancelled now
    order_cancel(order=old)
    client.force_login(alice)
    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))

    # then it heads the list of the five that ended lately, by when they ended
    assert [item["order"].pk for item in mine.context["ended"]] == [
        old.pk,
        *(order.pk for order in reversed(newer[1:])),
    ]
    assert f"ended-order-{old.pk}" in mine.content.decode()


def test_market_and_ioc_orders(client, future, alice, nora, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    client.force_login(nora)

    _place(client, future, side="sell", quantity="1", type="market", price="", time_in_force="ioc")
    _place(client, future, side="sell", quantity="5", price="2.45", time_in_force="ioc")

    market, ioc = Order.objects.filter(side="sell").order_by("id")
    assert (market.type, market.filled_quantity) == ("market", 1)
    assert (ioc.filled_quantity, ioc.cancelled_quantity, ioc.status) == (2, 3, "cancelled")


def test_the_ticket_left_at_its_default_time_in_force_is_ioc_for_market_and_gtc_for_limit(
    client, future, alice, nora, buyer
):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    client.force_login(nora)
    page = client.get(reverse("web:instrument", args=[future.symbol]))
    assert page.context["form"]["time_in_force"].value() == ""

    _place(client, future, side="sell", quantity="1", type="market", price="", time_in_force="")
    _place(client, future, side="sell", quantity="5", price="2.60", time_in_force="")

    market, limit = Order.objects.filter(side="sell").order_by("id")
    assert (market.time_in_force, market.status, market.filled_quantity) == ("ioc", "filled", 1)
    assert (limit.time_in_force, limit.status) == ("gtc", "open")


def test_a_crossing_post_only_order_is_refused_with_its_code(client, future, alice, nora, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    client.force_login(nora)

    response = _place(client, future, side="sell", price="2.40", post_only="on")

    assert Trade.objects.count() == 0
    assert response.status_code == 302  # Accepted, then refused by the matcher.
    (note,) = client.get(response["Location"]).context["messages"]
    assert note.level_tag == "error"
    assert "POST_ONLY" in note.message.upper()
    assert Order.objects.get(side="sell").status == "rejected"


@pytest.mark.parametrize("time_in_force", ["ioc", "fok"])
def test_a_post_only_ioc_or_fok_ticket_is_refused_and_writes_no_order(
    client, future, alice, time_in_force
):
    client.force_login(alice)
    rejections = OrderRejection.objects.count()

    response = _refused(client, _place(client, future, time_in_force=time_in_force, post_only="on"))

    assert "post-only" in " ".join(response.context["form"].errors["time_in_force"])
    assert Order.objects.count() == 0
    assert OrderRejection.objects.count() == rejections + 1


def test_an_off_tick_price_is_refused_next_to_the_field_and_writes_no_order(client, future, alice):
    client.force_login(alice)
    rejections = OrderRejection.objects.count()

    response = _refused(client, _place(client, future, price="2.4512"))

    assert "tick" in " ".join(response.context["form"].errors["price"])
    assert Order.objects.count() == 0
    assert OrderRejection.objects.count() == rejections + 1  # The engine's rejection record.


def test_a_limit_order_needs_a_price_and_a_side(client, future, alice):
    client.force_login(alice)

    no_price = _refused(client, _place(client, future, price=""))
    no_side = _refused(
        client, client.post(reverse("web:order_place", args=[future.symbol]), _ticket())
    )

    assert no_price.context["form"].errors["price"] == ["A limit order needs a price."]
    assert "Press Buy or Sell." in no_side.context["form"].non_field_errors()
    assert Order.objects.count() == 0


def test_a_refused_ticket_redirects_and_shows_what_was_entered_and_why_once(
    client, future, fourth, settings
):
    # given a trader without the funds for the order (of a size no position limit allows:
    # none here, so the funds refuse it)
    settings.EXCHANGE_POSITION_LIMIT = 0
    poor = member_add(
        organization=fourth.organization, username="pat", email="p@q.example", password=PASSWORD
    ).user
    client.force_login(poor)

    # when the ticket is refused by risk
    response = _place(client, future, side="sell", quantity="100000", post_only="on")

    # then the post answers with a redirect, so reloading the page does not post it again
    assert response.status_code == 302
    assert response["Location"] == reverse("web:instrument", args=[future.symbol])
    page = client.get(response["Location"])
    form = page.context["form"]
    assert form.data == {
        "quantity": "100000",
        "price": "2.450",
        "type": "limit",
        "time_in_force": "gtc",
        "post_only": "on",
    }
    assert "RISK_INSUFFICIENT_FUNDS" in " ".join(form.errors["quantity"])
    html = page.content.decode()
    assert 'value="100000"' in html and 'class="sell staged"' in html
    assert not Order.objects.filter(account=fourth).exists()
    # and the refusal is shown once: the page after it is a fresh ticket
    again = client.get(response["Location"])
    assert not again.context["form"].is_bound
    assert "RISK_INSUFFICIENT_FUNDS" not in again.content.decode()


def test_an_invalid_ticket_redirects_too_and_another_instruments_page_ignores_it(
    client, future, futures, alice
):
    client.force_login(alice)

    response = _place(client, future, quantity="0")
    elsewhere = client.get(reverse("web:instrument", args=[futures[1].symbol]))

    assert response.status_code == 302
    assert not elsewhere.context["form"].is_bound
    assert not client.get(response["Location"]).context["form"].is_bound  # Used up.
    assert Order.objects.count() == 0


def test_insufficient_funds_is_named(client, future, fourth, settings):
    settings.EXCHANGE_POSITION_LIMIT = 0  # An order this size is beyond the default limit.
    poor = member_add(
        organization=fourth.organization, username="pat", email="p@q.example", password=PASSWORD
    ).user
    Order.objects.all().delete()
    client.force_login(poor)

    response = _refused(client, _place(client, future, quantity="100000"))

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


def test_the_amend_warns_what_loses_the_orders_place(client, future, alice, buyer):
    client.force_login(alice)
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3)

    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol])).content.decode()

    assert (
        "A new price or a larger quantity sends it to the back of the queue; a smaller quantity "
        "keeps its place."
    ) in mine


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


@pytest.mark.parametrize(
    ("amend", "field", "refusal"),
    [
        ({"price": "2.4001", "quantity": "2"}, "price", "(ORDER_PRICE_OFF_TICK)"),
        ({"price": "2.45", "quantity": "-1"}, "quantity", "greater than or equal to 0"),
    ],
)
def test_a_refused_amend_is_shown_next_to_its_field_in_the_open_form_once(
    client, future, alice, buyer, amend, field, refusal
):
    """The refusal was said above the page only, and the order's Amend form closed on the
    order's own price and quantity: what was typed, and which field was wrong, were gone."""
    client.force_login(alice)
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3
    )

    page = client.post(
        reverse("web:order_amend", args=[order.pk]), amend, follow=True
    ).content.decode()

    error_id = f"amend-{field}-{order.pk}-error"
    assert '<details class="amend" open>' in page
    assert f'aria-describedby="{error_id}"' in page
    error = page.split(f'<ul class="errorlist" id="{error_id}"><li>')[1].split("</li>")[0]
    assert refusal in error
    for name, typed in amend.items():
        assert f'id="amend-{name}-{order.pk}" name="{name}"' in page
        assert f'value="{typed}"' in page
    # Once: the page read again shows the order's own figures, the form closed.
    again = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()
    assert '<details class="amend" open>' not in again and error_id not in again


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


def test_preview_writes_what_is_held_exactly_as_the_api_dry_run_and_the_portfolio(
    client, call, alice, buyer
):
    # given a resting written call, whose margin (the option scan, in micro-dollars) is held
    # from the buyer's cash, so its cash available is not whole cents
    order_place(account=buyer, instrument=call, side="sell", price=Decimal("0.200"), quantity=1)
    client.force_login(alice)

    # when alice previews writing another
    response = _preview(client, call, quantity="1", price="0.200")

    # then the page writes the collateral, its parts and the cash available as the ledger holds
    # them (whole cents when exact, else every micro-dollar), as the API's dry run answers
    # and the portfolio writes them: rounded to cents they read 1.23 where 1.234567 is held
    page = response.content.decode()
    sell = next(row for row in response.context["sides"] if row["side"] == "sell")
    (held,) = sell["cash"]
    margin = dict(sell["parts"])["Margin"]
    available = response.context["cash"].available
    assert held != held.quantize(Decimal("0.01")) and margin != margin.quantize(Decimal("0.01"))
    assert available != available.quantize(Decimal("0.01"))
    assert f"<strong>{held:,.6f} USD</strong>" in page
    assert f"Margin {margin:,.6f} USD" in page
    assert f'<span class="cash-available">{available:,.6f} USD</span>' in page
    portfolio = client.get(reverse("web:portfolio")).content.decode()
    assert f'Cash available (USD)</span><span class="value">{available:,.6f}<' in portfolio


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


def _preview(client, instrument, **changes):
    return client.post(reverse("web:ticket_preview", args=[instrument.symbol]), _ticket(**changes))


def test_the_partials_refresh_every_two_seconds_and_show_only_their_part(
    client, future, alice, nora, buyer, seller
):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=3)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.60"), quantity=4)
    client.force_login(nora)

    book = client.get(reverse("web:instrument_book", args=[future.symbol]))
    tape = client.get(reverse("web:instrument_tape", args=[future.symbol]))
    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))

    for response in (book, tape, mine):
        assert 'hx-trigger="every 2s' in response.content.decode()
        assert "<html" not in response.content.decode()  # A fragment, not the whole page.
    assert [(level.price, level.quantity) for level in book.context["bids"]] == [
        (Decimal("2.40"), 3)
    ]
    assert [(level.price, level.quantity) for level in book.context["asks"]] == [
        (Decimal("2.60"), 4)
    ]
    assert "No trades yet." in tape.content.decode()
    # Nora sees Northwind's offer, never Lumen's bid.
    assert [order.account for order in mine.context["orders"]] == [seller]
    assert "2.400" not in mine.content.decode()


def test_a_viewer_sees_the_organizations_orders_without_actions(client, future, victor, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=3)
    client.force_login(victor)

    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))

    assert len(mine.context["orders"]) == 1
    assert ">Cancel</button>" not in mine.content.decode()


def test_anonymous_my_orders_partial_lists_nothing(client, future, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=3)

    mine = client.get(reverse("web:instrument_my_orders", args=[future.symbol]))

    assert mine.status_code == 200
    assert mine.context["orders"] == []
    assert "Sign in" in mine.content.decode()


def test_the_page_charts_trades_and_daily_settlements(client, future, buyer, seller):
    from exchange.models import SettlementPrice

    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.45"), quantity=3)
    SettlementPrice.objects.create(
        instrument=future, trading_date=future.delivery_start, price=Decimal("2.5"), source="mid"
    )

    response = client.get(reverse("web:instrument", args=[future.symbol]))

    chart = response.context["chart"]
    assert [row["price"] for row in chart["trades"]] == ["2.450000"]
    assert chart["settlements"] == [{"t": future.delivery_start.isoformat(), "price": "2.500000"}]
    page = response.content.decode()
    assert 'id="chart-data"' in page and 'id="price-chart"' in page


def test_a_market_without_prices_says_so_instead_of_an_empty_chart(client, future):
    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()

    assert "No trades or settlement prices yet." in page
    assert 'id="price-chart"' not in page


def test_a_good_till_date_order_keeps_its_expiry_and_needs_one(client, future, alice, buyer):
    client.force_login(alice)

    missing = _refused(client, _place(client, future, time_in_force="gtd"))
    past = _refused(
        client, _place(client, future, time_in_force="gtd", expires_at="2001-01-02T03:04")
    )
    placed = _place(client, future, time_in_force="gtd", expires_at="2099-01-02T03:04")

    assert "needs its expiry" in " ".join(missing.context["form"].errors["expires_at"])
    assert "ORDER_EXPIRY_IN_PAST" in " ".join(past.context["form"].errors["expires_at"])
    assert placed.status_code == 302
    order = Order.objects.get(account=buyer)
    assert order.time_in_force == "gtd"
    assert order.expires_at.isoformat() == "2099-01-02T03:04:00+00:00"


def test_a_fill_or_kill_order_that_cannot_fill_is_killed(client, future, nora, buyer):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=1)
    client.force_login(nora)

    response = _place(client, future, side="sell", quantity="2", time_in_force="fok")

    order = Order.objects.get(side="sell")
    assert (order.filled_quantity, order.status) == (0, "cancelled")
    assert Trade.objects.count() == 0
    (note,) = client.get(response["Location"]).context["messages"]
    assert note.level_tag == "warning"
    assert "at 2.45 $/GPU-hr (FOK); 2 cancelled unfilled." in note.message


def test_amend_keeps_what_is_left_blank_and_zero_cancels(client, future, alice, buyer):
    client.force_login(alice)
    first = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3
    )
    second = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.4"), quantity=3
    )
    amend = reverse("web:order_amend", args=[first.pk])

    client.post(amend, {"price": "2.43", "quantity": ""})
    nothing = client.post(amend, {"price": "", "quantity": ""}, follow=True)
    client.post(reverse("web:order_amend", args=[second.pk]), {"quantity": "0"})

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.price, first.open_quantity) == (Decimal("2.43"), 3)
    assert "Give a new price or a new quantity." in nothing.content.decode()
    assert second.status == "cancelled"


def test_an_amend_that_trades_says_what_it_filled(client, future, alice, buyer, seller):
    # given a resting bid below the best ask
    client.force_login(alice)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.43"), quantity=1)
    bid = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.32"), quantity=1
    )

    # when it is amended above the ask
    response = client.post(
        reverse("web:order_amend", args=[bid.pk]), {"price": "2.45", "quantity": "1"}, follow=True
    )

    # then it says it filled, at the ask's price, not that it was cancelled
    bid.refresh_from_db()
    assert (bid.status, bid.filled_quantity) == ("filled", 1)
    (note,) = response.context["messages"]
    assert note.level_tag == "success"
    assert note.message.startswith(f"Order #{bid.pk} amended: filled 1 (1 at 2.43 $/GPU-hr; fees ")
    assert "cancelled" not in note.message


def test_an_amend_that_trades_in_part_says_what_it_filled_and_what_is_open(
    client, future, alice, buyer, seller
):
    client.force_login(alice)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.43"), quantity=1)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.44"), quantity=1)
    bid = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.32"), quantity=3
    )

    response = client.post(
        reverse("web:order_amend", args=[bid.pk]), {"price": "2.45", "quantity": "3"}, follow=True
    )

    (note,) = response.context["messages"]
    assert note.message.startswith(
        f"Order #{bid.pk} amended: filled 2 (1 at 2.43, 1 at 2.44 $/GPU-hr; fees "
    )
    assert note.message.endswith("; 1 open at 2.45 $/GPU-hr.")


def test_an_amend_to_zero_says_cancelled(client, future, alice, buyer):
    client.force_login(alice)
    bid = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.32"), quantity=2
    )

    response = client.post(
        reverse("web:order_amend", args=[bid.pk]), {"quantity": "0"}, follow=True
    )

    (note,) = response.context["messages"]
    assert note.message == f"Order #{bid.pk} cancelled (new quantity 0)."


def test_an_amend_the_matcher_refuses_says_so_and_why(client, future, alice, buyer, seller):
    # given a post-only bid below an ask
    client.force_login(alice)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.43"), quantity=1)
    bid = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.32"),
        quantity=1,
        post_only=True,
    )

    # when it is amended to a price where it would trade
    response = client.post(
        reverse("web:order_amend", args=[bid.pk]), {"price": "2.45", "quantity": "1"}, follow=True
    )

    # then the amend is refused, and says why
    bid.refresh_from_db()
    assert (bid.price, bid.open_quantity, bid.status) == (Decimal("2.32"), 1, "open")
    (note,) = response.context["messages"]
    assert note.level_tag == "error"
    assert note.message.startswith(f"Order #{bid.pk} was not amended: ")
    assert "MATCHING_POST_ONLY_WOULD_CROSS" in note.message
    assert "post-only order would trade" in note.message


@pytest.mark.parametrize(
    ("amend", "refusal"),
    [
        ({"quantity": "1"}, "only limit orders can be amended."),  # No price to keep.
        # The service's refusal, with its code.
        (
            {"price": "2.45", "quantity": "1"},
            "Only limit orders can be replaced. (ORDER_MARKET_ORDER_NOT_REPLACEABLE)",
        ),
    ],
)
def test_a_market_order_waiting_for_the_matcher_is_not_amended(
    client, future, alice, buyer, seller, external_matcher, row_counts, amend, refusal
):
    # given a market buy accepted but not matched yet (an ask rests, to price its collateral)
    external_matcher.EXCHANGE_MATCHER_MODE = "inline"
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.5"), quantity=3)
    external_matcher.EXCHANGE_MATCHER_MODE = "external"
    market = order_place(
        account=buyer, instrument=future, side="buy", quantity=3, type="market", time_in_force="ioc"
    )
    assert market.status == "new"
    client.force_login(alice)
    before = row_counts()

    response = client.post(reverse("web:order_amend", args=[market.pk]), amend, follow=True)

    (note,) = response.context["messages"]
    assert note.level_tag == "error"
    assert note.message == f"Order #{market.pk} was not amended: {refusal}"
    assert row_counts() == before
    market.refresh_from_db()
    assert (market.status, market.price, market.open_quantity) == ("new", None, 3)


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_the_ticket_reports_the_matchers_outcome(
    client, future, alice, buyer, seller, external_matcher
):
    """The ticket waits (up to EXCHANGE_API_MATCH_WAIT_SECONDS, as the API does) for the
    matcher, here a thread running the production loop's step, so the page has the fills."""
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 5
    matcher = Matcher()
    order_place(account=seller, instrument=future, side="sell", quantity=2, price=Decimal("2.45"))
    matcher.process_pending()
    client.force_login(alice)

    with matching_in_thread(matcher):
        response = _place(client, future, quantity="3")

    assert response.status_code == 302
    (note,) = client.get(response["Location"]).context["messages"]
    assert note.level_tag == "success"
    assert "filled 2 (2 at 2.45 $/GPU-hr" in note.message
    assert "1 resting in the book" in note.message
    assert "waiting for the matcher" not in note.message


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_the_ticket_reports_the_matchers_refusal(
    client, future, alice, buyer, seller, external_matcher
):
    # given a post-only bid that would trade against a resting ask, placed while the matcher
    # has not seen the ask yet (acceptance cannot tell it would cross)
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 5
    matcher = Matcher()
    order_place(account=seller, instrument=future, side="sell", quantity=1, price=Decimal("2.43"))
    client.force_login(alice)

    # when the matcher runs
    with matching_in_thread(matcher):
        response = _place(client, future, quantity="1", price="2.45", post_only="on")

    # then the page says the matcher refused it, and why
    (note,) = client.get(response["Location"]).context["messages"]
    assert note.level_tag == "error"
    assert "rejected by the matcher (MATCHING_POST_ONLY_WOULD_CROSS)" in note.message


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_an_amend_reports_the_matchers_outcome(
    client, future, alice, buyer, seller, external_matcher
):
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 5
    matcher = Matcher()
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.43"), quantity=1)
    bid = _bid_in_the_book(buyer, future, matcher, quantity=3)
    client.force_login(alice)

    amend = reverse("web:order_amend", args=[bid.pk])
    note = _message_after(client, amend, {"price": "2.45", "quantity": "3"}, matcher)

    assert note.level_tag == "success"
    assert note.message.startswith(f"Order #{bid.pk} amended: filled 1 (1 at 2.43 $/GPU-hr; ")
    assert note.message.endswith("; 2 open at 2.45 $/GPU-hr.")


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_an_amend_reports_the_matchers_refusal(
    client, future, alice, buyer, seller, external_matcher
):
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 5
    matcher = Matcher()
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.43"), quantity=1)
    bid = _bid_in_the_book(buyer, future, matcher, quantity=1, post_only=True)
    client.force_login(alice)

    amend = reverse("web:order_amend", args=[bid.pk])
    note = _message_after(client, amend, {"price": "2.45", "quantity": "1"}, matcher)

    assert note.level_tag == "error"
    assert note.message.startswith(f"Order #{bid.pk} was not amended: ")
    assert "MATCHING_POST_ONLY_WOULD_CROSS" in note.message


def test_with_an_external_matcher_that_does_not_answer_in_time_the_ticket_says_it_waits(
    client, future, alice, buyer, external_matcher
):
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 0.05
    client.force_login(alice)

    response = _place(client, future)

    (note,) = client.get(response["Location"]).context["messages"]
    assert note.level_tag == "info"
    assert note.message.endswith("; accepted, waiting for the matcher.")
    assert Order.objects.get(account=buyer).status == Order.Status.NEW


def test_with_an_external_matcher_that_does_not_answer_in_time_the_amend_says_it_waits(
    client, future, alice, buyer, external_matcher
):
    """No matcher runs: after the wait the replace is still queued, and the page says so
    rather than describing the order as it was before."""
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 0.05
    bid = _bid_in_the_book(buyer, future, Matcher())
    client.force_login(alice)

    note = _message_after(
        client, reverse("web:order_amend", args=[bid.pk]), {"price": "2.40", "quantity": "3"}
    )

    assert note.level_tag == "info"
    assert note.message == f"Order #{bid.pk}: the amend is accepted, waiting for the matcher."


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_a_cancel_reports_the_matchers_outcome(
    client, future, alice, buyer, external_matcher
):
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 5
    matcher = Matcher()
    bid = _bid_in_the_book(buyer, future, matcher)
    client.force_login(alice)

    note = _message_after(client, reverse("web:order_cancel", args=[bid.pk]), matcher=matcher)

    assert (note.level_tag, note.message) == ("success", f"Order #{bid.pk} cancelled.")
    bid.refresh_from_db()
    assert bid.status == Order.Status.CANCELLED


def test_with_an_external_matcher_that_does_not_answer_in_time_the_cancel_says_it_waits(
    client, future, alice, buyer, external_matcher
):
    """No matcher runs: the page does not call the order cancelled while it is still live."""
    external_matcher.EXCHANGE_API_MATCH_WAIT_SECONDS = 0.05
    bid = _bid_in_the_book(buyer, future, Matcher())
    client.force_login(alice)

    note = _message_after(client, reverse("web:order_cancel", args=[bid.pk]))

    assert note.level_tag == "info"
    assert note.message == f"Order #{bid.pk}: the cancel is accepted, waiting for the matcher."


def _bid_in_the_book(buyer, future, matcher, *, quantity=3, post_only=False) -> Order:
    """A bid of the buyer's at 2.32, taken into the book by ``matcher`` (an external one)."""
    bid = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.32"),
        quantity=quantity,
        post_only=post_only,
    )
    matcher.process_pending()
    return bid


def _message_after(client, url, data=None, matcher=None):
    """The one message the page shows after posting ``data`` to ``url``, with ``matcher``
    running in a thread meanwhile (without one, no matcher answers)."""
    if matcher is None:
        response = client.post(url, data or {}, follow=True)
    else:
        with matching_in_thread(matcher):
            response = client.post(url, data or {}, follow=True)
    (note,) = response.context["messages"]
    return note


def test_preview_splits_what_a_future_holds_into_margin_and_fee(client, future, alice):
    client.force_login(alice)

    response = _preview(client, future)

    buy = next(row for row in response.context["sides"] if row["side"] == "buy")
    labels = [label for label, _ in buy["parts"]]
    assert labels == ["Margin", "Fee (at most)"]
    assert sum(amount for _, amount in buy["parts"]) == buy["preview"].collateral[0].amount
    page = response.content.decode()
    assert "Margin " in page and "Cash available:" in page


def test_preview_of_an_untouched_ticket_is_a_hint_and_of_a_bad_one_names_the_field(
    client, future, alice
):
    client.force_login(alice)

    untouched = _preview(client, future, quantity="", price="")
    bad = _preview(client, future, quantity="0")

    assert "Fill in the ticket" in untouched.content.decode()
    assert 'class="errorlist"' not in untouched.content.decode()
    assert "Quantity: Ensure this value is greater than or equal to 1." in bad.content.decode()


def test_preview_of_a_market_order_in_an_empty_book_names_the_refusal(client, future, alice):
    client.force_login(alice)

    response = _preview(client, future, type="market", price="", time_in_force="ioc")

    assert "NO_REFERENCE_PRICE" in response.content.decode().upper()
    assert Order.objects.count() == 0


def test_an_option_uses_the_same_ticket_with_the_premium_held_by_a_buyer(
    client, call, alice, buyer
):
    client.force_login(alice)

    page = client.get(reverse("web:instrument", args=[call.symbol])).content.decode()
    preview = _preview(client, call, price="0.100")
    placed = _place(client, call, price="0.100")

    assert 'id="ticket"' in page and "Premium, $/GPU-hr" in page
    buy = next(row for row in preview.context["sides"] if row["side"] == "buy")
    premium = dict(buy["parts"])["Premium"]
    assert premium == Decimal("0.100") * call.gpu_hours_per_contract * 3
    assert placed.status_code == 302
    order = Order.objects.get(account=buyer, instrument=call)
    assert (order.side, order.price, order.status) == ("buy", Decimal("0.1"), "open")


def test_an_options_page_says_what_its_exercise_gives(client, call, future):
    from exchange.models import Instrument

    # given the call as listed (physical: exercised into its future) and a put settled in cash
    put = future.options.get(option_type="put")
    Instrument.objects.filter(pk=put.pk).update(settlement=Instrument.Settlement.CASH)

    # when anyone reads their pages
    texts = {
        option.symbol: client.get(reverse("web:instrument", args=[option.symbol])).content.decode()
        for option in (call, put)
    }

    # then the call's settlement is its exercise into the future at the strike, not GPU-hours
    # (a future's own settlement says whether it delivers them), and the put's is in cash
    settlement = {
        symbol: text.split("<dt>Settlement</dt><dd>")[1] for symbol, text in texts.items()
    }
    assert settlement[call.symbol].startswith(
        f'Exercised into <a href="{reverse("web:instrument", args=[future.symbol])}">'
        f"{future.symbol}</a> at the strike"
    )
    assert "entitlements" not in settlement[call.symbol].split("</dd>")[0]
    assert settlement[put.symbol].startswith("Cash: the in-the-money value")


def test_a_resale_block_uses_the_same_ticket(client, listing, alice, nora):
    client.force_login(alice)
    page = client.get(reverse("web:instrument", args=[listing.symbol])).content.decode()
    block = {"quantity": str(listing.lot_size)}  # One contract is one GPU; lots of 8.
    lumen = {row["side"]: row for row in _preview(client, listing, **block).context["sides"]}
    client.force_login(nora)
    northwind_page = _preview(client, listing, **block)
    northwind = {row["side"]: row for row in northwind_page.context["sides"]}

    assert 'id="ticket"' in page and "Price of the block, $/GPU-hr" in page
    assert "Price" in dict(lumen["buy"]["parts"])
    # Lumen holds none of the block to sell; Northwind, its holder, does.
    assert lumen["sell"]["error"].code == "RISK_BLOCK_NOT_HELD"
    held = northwind["sell"]["preview"].collateral
    assert held and all(part.asset != "USD" for part in held)
    first_month = listing.delivery_start.strftime("%B %Y")
    assert northwind["sell"]["held"][0] == (
        held[0].amount,
        f"GPU-hours of H100SXM in USEAST, {first_month}",
    )
    # The seller holds entitlements only: the bold amount says so rather than staying blank.
    assert northwind["sell"]["cash"] == []
    assert "<strong>no cash</strong>" in northwind_page.content.decode()
    assert "<strong></strong>" not in northwind_page.content.decode()


def test_a_halted_instrument_says_so_and_refuses_orders_with_the_named_code(client, future, alice):
    future.status = "halted"
    future.save(update_fields=["status"])
    client.force_login(alice)

    page = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()
    response = _refused(client, _place(client, future))

    assert "is halted" in page
    assert "INSTRUMENT_HALTED" in " ".join(response.context["form"].non_field_errors())
    assert Order.objects.count() == 0


def test_an_option_whose_future_is_halted_says_so_and_refuses_orders(client, future, call, alice):
    """An option trades only while its future is not halted: its page says it is halted with
    the future, and the future's chain marks its options halted."""
    future.status = "halted"
    future.save(update_fields=["status"])
    client.force_login(alice)

    page = client.get(reverse("web:instrument", args=[call.symbol])).content.decode()
    chain = client.get(reverse("web:instrument", args=[future.symbol])).content.decode()
    response = _refused(client, _place(client, call, price="0.10"))

    assert "Halted with its future" in page
    assert f"its future {future.symbol} is halted" in page
    assert '<span class="halted">halted</span>' in chain
    assert "its options with it" in chain
    assert "INSTRUMENT_HALTED" in " ".join(response.context["form"].non_field_errors())
    assert Order.objects.count() == 0


def test_prices_on_a_tick_finer_than_a_thousandth_are_written_whole(
    client, future, alice, buyer, seller
):
    """Staff may list a strip on a tick of 0.0001: its book, tape, orders, quotes and fills
    were written to three decimals (2.4501 and 2.4504 both as 2.450), so a trader could not
    tell the levels apart or read the price its order rests at."""
    future.tick_size = Decimal("0.0001")
    future.save(update_fields=["tick_size"])
    place(buyer, future, "buy", 2, "2.4501")
    place(seller, future, "sell", 1, "2.4501")  # Trades 1 at 2.4501; 1 still bid.
    place(seller, future, "sell", 1, "2.4504")
    client.force_login(alice)

    pages = {
        "book": reverse("web:instrument_book", args=[future.symbol]),
        "tape": reverse("web:instrument_tape", args=[future.symbol]),
        "my orders": reverse("web:instrument_my_orders", args=[future.symbol]),
        "markets": reverse("web:markets") + "?kind=future",
        "portfolio": reverse("web:portfolio"),
    }
    for name, url in pages.items():
        page = client.get(url).content.decode()
        assert "2.4501" in page, name
        assert ">2.450<" not in page, name
    book = client.get(pages["book"]).content.decode()
    assert "2.4504" in book
