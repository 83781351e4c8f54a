from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "GPU Exchange back office"
admin.site.site_title = "GPU Exchange"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("exchange.web.urls")),
]
