from django.urls import path

from exchange.web import views

app_name = "web"

urlpatterns = [
    path("", views.markets, name="markets"),
    path("instruments/<str:symbol>/", views.instrument_detail, name="instrument"),
]
