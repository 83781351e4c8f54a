from django.urls import path

from exchange.backoffice import views

app_name = "backoffice"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("instruments/", views.instruments, name="instruments"),
    path(
        "instruments/<int:instrument_id>/<str:change>/",
        views.instrument_status,
        name="instrument_status",
    ),
    path("exposure/", views.exposure, name="exposure"),
    path("trial-balance/", views.trial_balance_page, name="trial_balance"),
    path("trial-balance.csv", views.trial_balance_csv, name="trial_balance_csv"),
    path("audit/", views.audit_log, name="audit_log"),
]
