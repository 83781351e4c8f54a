from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path

from exchange.api.docs import RedocView, SchemaView, SwaggerView
from exchange.api.errors import api_not_found
from exchange.web.accounts import sign_up

handler400 = "exchange.api.errors.bad_request"
handler404 = "exchange.api.errors.page_not_found"
handler500 = "exchange.api.errors.server_error"


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's). The file's URL
    is looked up per request: in production it names the collected, hashed file, which the
    manifest has only once ``collectstatic`` ran (commands, that one included, import this)."""
    return HttpResponsePermanentRedirect(static("exchange/favicon.svg"))


admin.site.site_header = "GPU Exchange back office"
admin.site.site_title = "GPU Exchange"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon),
    path("backoffice/", include("exchange.backoffice.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", sign_up, name="signup"),
    path("api/v1/", include("exchange.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", RedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Any other path under /api/: the JSON envelope's 404, whatever DEBUG says.
    re_path(r"^api/", api_not_found),
    path("", include("exchange.web.urls")),
]
