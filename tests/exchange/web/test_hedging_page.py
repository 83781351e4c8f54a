"""The hedging calculator page: the recommendation of the hedging service for the need typed
in, its cost distribution, and links staging each futures leg in the ticket."""

import json

import pytest
from django.urls import reverse

from exchange.models import Region, Sku
from exchange.services.hedging import hedge_recommendation
from pricing.hedge import PATHS_DEFAULT
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
        assert f"{link}?side=buy&amp;quantity=8&amp;price={leg.forward}" in page


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
    assert "No listed H100SXM future" in " ".join(response.context["form"].errors["months"])


def test_costs_carry_units(client, strip):  # noqa: F811
    page = client.get(reverse("web:hedging"), _need(strip)).content.decode()

    assert "Expected cost (USD)" in page and "GPU-hours" in page and "$/GPU-hr" in page
