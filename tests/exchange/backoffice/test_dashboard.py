"""The operations dashboard: today's figures from the market, the ledger and the queues, and
the back-office functions each linked for the roles that may use them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.views import FUNCTIONS
from exchange.models import Instrument, MarginCall
from exchange.selectors.backoffice import market_today
from exchange.services.funding import withdrawal_request
from exchange.services.instruments import instrument_halt
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(futures, buyer, seller, maker):
    """Two trades today in the front month (3 at 2.50, 2 at 2.55), the second month halted, a
    withdrawal to review and an open margin call."""
    front = futures[0]
    place(seller, front, "sell", 3, "2.50")
    place(buyer, front, "buy", 3, "2.50")
    place(maker, front, "sell", 2, "2.55")
    place(buyer, front, "buy", 2, "2.55")
    place(buyer, front, "buy", 1, "2.40")  # Rests.
    instrument_halt(instrument=futures[1], actor=None, reason="test")
    withdrawal_request(account=seller, amount=Decimal("1000"), actor=None)
    MarginCall.objects.create(
        account=maker, trading_date=timezone.now().date(), required=10, maintenance=8, held=5
    )
    return front


def test_the_figures_of_the_day(client, operations, market):
    client.force_login(operations)

    response = client.get(reverse("backoffice:dashboard"))

    assert response.status_code == 200
    today = response.context["today"]
    hours = market.gpu_hours_per_contract
    assert (today.trades_today, today.contracts_today) == (2, 5)
    assert today.gpu_hours_today == 5 * hours
    assert today.traded_value_today == (Decimal("2.50") * 3 + Decimal("2.55") * 2) * hours
    assert (today.instruments_halted, today.instruments_trading) == (1, 1)
    assert today.live_orders == 1
    assert (today.pending_withdrawals, today.open_margin_calls) == (1, 1)
    page = response.content.decode()
    assert "Volume today (GPU-hours)" in page and "Traded value today (USD)" in page


def test_an_instrument_whose_trading_ended_is_not_counted_as_trading(client, operations, futures):
    # given two active futures, the first past the close of its last trading day (yesterday),
    # which the daily run has not expired yet
    yesterday = timezone.now().date() - timedelta(days=1)
    Instrument.objects.filter(pk=futures[0].pk).update(last_trading_day=yesterday)
    client.force_login(operations)

    # when operations open the dashboard
    response = client.get(reverse("backoffice:dashboard"))

    # then only the second counts as trading
    assert response.context["today"].instruments_trading == 1


def test_an_instrument_stops_counting_at_the_close_of_its_last_trading_day(futures):
    ends_at = calendar.trading_ends_at(futures[0].last_trading_day)

    before, after = (market_today(ends_at - timedelta(seconds=1)), market_today(ends_at))

    assert (before.instruments_trading, after.instruments_trading) == (2, 1)


def test_open_interest_on_the_dashboard(client, finance, market):
    client.force_login(finance)

    response = client.get(reverse("backoffice:dashboard"))

    (interest,) = response.context["open_interest"]
    assert (interest.instrument, interest.contracts, interest.holders) == (market, 5, 3)
    assert f'href="{reverse("web:instrument", args=[market.symbol])}"' in response.content.decode()


@pytest.mark.parametrize(
    ("who", "linked", "not_linked"),
    [
        (
            "operations",
            [
                "backoffice:instruments",
                "admin:exchange_instrument_roll",
                "admin:exchange_instrument_list_strip",
                "admin:exchange_apikey_changelist",
                "admin:exchange_poolround_changelist",
            ],
            [
                "backoffice:trial_balance",
                "admin:exchange_riskcycle_run",
                "admin:exchange_organization_changelist",
            ],
        ),
        (
            "risk",
            [
                "admin:exchange_riskcycle_run",
                "backoffice:exposure",
                "admin:exchange_organization_changelist",
            ],
            [
                "backoffice:instruments",
                "admin:exchange_apikey_changelist",
                "admin:exchange_instrument_list_strip",
                "admin:exchange_withdrawal_changelist",
            ],
        ),
        (
            "finance",
            ["backoffice:trial_balance", "admin:exchange_withdrawal_changelist"],
            ["admin:exchange_margincall_changelist", "backoffice:exposure"],
        ),
        (
            "superuser",
            ["backoffice:instruments", "admin:exchange_riskcycle_run", "backoffice:trial_balance"],
            [],
        ),
    ],
)
def test_functions_are_linked_for_their_roles(client, users, who, linked, not_linked):
    client.force_login(users[who])

    response = client.get(reverse("backoffice:dashboard"))

    allowed = {function.url_name for function, ok in response.context["functions"] if ok}
    page = response.content.decode()
    for name in linked:
        assert name in allowed
        assert f'href="{reverse(name)}' in page
    for name in not_linked:
        assert name not in allowed
        assert f'href="{reverse(name)}' not in page
    assert reverse("backoffice:audit_log") in page


def test_withdrawals_to_review_are_one_click_away_for_finance(client, finance, market):
    client.force_login(finance)
    dashboard = client.get(reverse("backoffice:dashboard")).content.decode()
    link = reverse("admin:exchange_withdrawal_changelist") + "?status__exact=requested"

    response = client.get(link)

    assert f'href="{link}"' in dashboard
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert "approve" in dict(response.context["action_form"].fields["action"].choices)


def test_the_options_of_a_halted_future_are_not_counted_as_trading(futures, call):
    # given the call and put on the front month (their own status active), then the front month
    # halted: its options trade only while it is not halted (Instrument.halted_by)
    listed = market_today(timezone.now())
    instrument_halt(instrument=futures[0], actor=None, reason="incident")

    # when the dashboard's figures are read
    today = market_today(timezone.now())

    # then the future and its two options stop counting as trading, the second month still does,
    # and all three count as halted, as the trading status page's Halted filter lists them
    assert (listed.instruments_trading, listed.instruments_halted) == (4, 0)
    assert (today.instruments_trading, today.instruments_halted) == (1, 3)
    assert Instrument.objects.get(pk=call.pk).status == Instrument.Status.ACTIVE


def test_every_function_s_link_opens_its_page_with_its_filter(client, superuser):
    client.force_login(superuser)

    for function in FUNCTIONS:
        response = client.get(function.url())

        # A filter the admin does not know redirects to the list with ?e=1.
        assert response.status_code == 200, function.label
