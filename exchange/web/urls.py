from django.urls import path

from exchange.web import funding, keys, markets, portfolio, team, views

app_name = "web"

urlpatterns = [
    path("", markets.markets, name="markets"),
    path("instruments/<str:symbol>/", views.instrument_detail, name="instrument"),
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
