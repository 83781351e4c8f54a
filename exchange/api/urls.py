"""``/api/v1/``: one module per area, each with its views, serializers and routes."""

from django.urls import include, path

app_name = "api"

urlpatterns = [
    path("", include("exchange.api.keys")),
    path("", include("exchange.api.market")),
    path("", include("exchange.api.trading")),
    path("", include("exchange.api.account")),
    path("", include("exchange.api.capacity")),
    path("", include("exchange.api.funding")),
    path("", include("exchange.api.pricing")),
    path("", include("exchange.api.pools")),
]
