from django.urls import path

from exchange.web import (
    analysis,
    capacity,
    funding,
    hedging,
    keys,
    markets,
    portfolio,
    team,
    trading,
)

app_name = "web"

urlpatterns = [
    path("", markets.markets, name="markets"),
    path("instruments/<str:symbol>/", trading.instrument_detail, name="instrument"),
    path("instruments/<str:symbol>/book/", trading.book_partial, name="instrument_book"),
    path("instruments/<str:symbol>/trades/", trading.tape_partial, name="instrument_tape"),
    path(
        "instruments/<str:symbol>/my-orders/",
        trading.my_orders_partial,
        name="instrument_my_orders",
    ),
    path("instruments/<str:symbol>/ticket/", trading.ticket_preview, name="ticket_preview"),
    path("instruments/<str:symbol>/orders/", trading.order_place_view, name="order_place"),
    path("orders/<int:order_id>/cancel/", trading.order_cancel_view, name="order_cancel"),
    path("orders/<int:order_id>/amend/", trading.order_amend_view, name="order_amend"),
    path("hedging/", hedging.hedging, name="hedging"),
    path("curves/", analysis.curves, name="curves"),
    path("capacity/", capacity.capacity, name="capacity"),
    path("capacity/register/", capacity.capacity_register_view, name="capacity_register"),
    path("capacity/<int:block_id>/list/", capacity.capacity_list_view, name="capacity_list"),
    path("capacity/listings/", capacity.listings, name="resale_listings"),
    path("portfolio/", portfolio.portfolio, name="portfolio"),
    path("portfolio/statement/", portfolio.statement, name="statement"),
    path("portfolio/statement.csv", portfolio.statement_csv, name="statement_csv"),
    path("funding/", funding.funding, name="funding"),
    path("team/", team.team, name="team"),
    path("team/members/", team.member_add_view, name="team_add"),
    path("team/members/<int:member_id>/role/", team.member_role_view, name="team_role"),
    path("api-keys/", keys.api_keys, name="api_keys"),
    path("api-keys/<str:prefix>/revoke/", keys.api_key_revoke_view, name="api_key_revoke"),
    path("stripe/webhook/", funding.stripe_webhook, name="stripe_webhook"),
]
