"""The order ticket in a real browser.

From the keyboard: Enter in a field submits the form with its first submit button, which was
Buy, so a ticket staged to sell (the hedging page's links stage a provider's sells) placed a
buy. Enter now places nothing and asks for a side; Buy and Sell are reached with Tab and
pressed with Enter. On a phone: a refusal shown next to its field fits the screen."""

from decimal import Decimal

import pytest

from exchange.models import Order
from exchange.services.participants import member_add
from tests.exchange.web.browser.conftest import PHONE, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "gpu-hours-by-the-month"
TABS_MAX = 25


@pytest.fixture
def alice(buyer):
    return member_add(
        organization=buyer.organization, username="alice", email="a@l.example", password=PASSWORD
    ).user


def test_enter_in_a_field_places_no_order_and_the_keyboard_reaches_buy_and_sell(
    new_page, future, alice
):
    page = new_page()
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/instruments/{future.symbol}/?side=sell&quantity=2&price=2.450")

    # Enter in the quantity of a ticket staged to sell.
    page.get_by_label("Quantity").press("Enter")
    page.wait_for_load_state()

    page.get_by_text("Press Buy or Sell.").wait_for()
    assert not Order.objects.exists()
    assert page.get_by_label("Quantity").input_value() == "2"  # The ticket as it was typed.

    # Tab from the price reaches the buttons (past the expiry's date and time parts); Sell
    # pressed with Enter places the sell.
    page.get_by_label("Price", exact=True).focus()
    for _ in range(TABS_MAX):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Sell":
            break
    page.keyboard.press("Enter")
    page.wait_for_load_state()

    page.get_by_text("Order #").first.wait_for()
    (order,) = Order.objects.all()
    assert (order.side, order.quantity, order.price) == ("sell", 2, Decimal("2.450"))


def test_a_refusal_next_to_its_field_fits_a_phones_screen(new_page, future, alice):
    """The refusal's code is one word wider than the half-screen price field: the page scrolled
    sideways by about 30 pixels."""
    page = new_page(PHONE)
    sign_in(page, "alice", PASSWORD)
    page.goto(f"/instruments/{future.symbol}/")
    page.get_by_label("Quantity").fill("2")
    page.get_by_label("Price", exact=True).fill("2.4501")

    page.get_by_role("button", name="Buy", exact=True).click()
    page.wait_for_load_state()

    page.locator("#id_price_error").get_by_text("(ORDER_PRICE_OFF_TICK)").wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
