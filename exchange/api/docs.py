"""The API's two renderings of its OpenAPI document, Swagger UI and ReDoc, served offline.

Their scripts come from drf-spectacular-sidecar, collected with the exchange's static files.
ReDoc's bundle still names one address elsewhere: the Redocly logo under its menu, fetched from
``cdn.redoc.ly``. Each page is therefore sent with a Content-Security-Policy that lets it load
only from this server (and the ``data:``/``blob:`` URLs the viewers build in the page), so the
browser never asks another host for anything; the blocked logo is simply left out.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

# The viewers run inline bootstrap scripts and styles of their own, and ReDoc searches in a
# worker started from a blob; nothing is allowed from another origin.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)


class _SameOriginOnly:
    def finalize_response(
        self, request: HttpRequest, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerView(_SameOriginOnly, SpectacularSwaggerView):
    """Swagger UI at /api/docs/."""


class RedocView(_SameOriginOnly, SpectacularRedocView):
    """ReDoc at /api/redoc/."""
