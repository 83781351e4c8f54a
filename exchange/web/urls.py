from django.urls import path

from exchange.web import funding, views

app_name = "web"

urlpatterns = [
    path("", views.markets, name="markets"),
    path("instruments/<str:symbol>/", views.instrument_detail, name="instrument"),
    path("portfolio/", views.portfolio, name="portfolio"),
    path("stripe/webhook/", funding.stripe_webhook, name="stripe_webhook"),
]
