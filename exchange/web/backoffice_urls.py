from django.urls import path

from exchange.web import backoffice

app_name = "backoffice"

urlpatterns = [
    path("", backoffice.dashboard, name="dashboard"),
    path("trial-balance/", backoffice.trial_balance_page, name="trial_balance"),
    path("trial-balance.csv", backoffice.trial_balance_csv, name="trial_balance_csv"),
]
