"""The API's OpenAPI document (``/api/schema/``) and its two renderings, Swagger UI
(``/api/docs/``) and ReDoc (``/api/redoc/``), served offline.

The three take one query parameter, DRF's format override: ``?format=yaml`` (the default) or
``json`` for the document, ``html`` for the pages. As every endpoint of ``/api/v1/`` does, they
refuse any other parameter, and a format they do not render, with ``400 INVALID_INPUT`` naming
it: drf-spectacular answered ``?format=xml`` with a 404 written in YAML (the pages with a bare
HTML "404 Not Found"), and read ``?lang=`` and ``?version=`` as it could, so a misspelt
``?fromat=json`` got YAML, ``?lang=xx`` the English document and ``?version=2`` the one
version relabelled "1.0.0 (2)", all with a 200. Their errors are written in the JSON envelope,
whatever the answer would have been, and they count against the caller's rate before their
format is chosen (``views.CountedBeforeNegotiation``).

Their scripts come from drf-spectacular-sidecar, collected with the exchange's static files.
ReDoc's bundle still names one address elsewhere: the Redocly logo under its menu, fetched from
``cdn.redoc.ly``. Each page is therefore sent with a Content-Security-Policy that lets it load
only from this server (and the ``data:``/``blob:`` URLs the viewers build in the page), so the
browser never asks another host for anything; the blocked logo is simply left out.
"""

from typing import Any

from django.http import HttpResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from exchange.api.views import CountedBeforeNegotiation, refuse_query_beyond

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


class _DocumentView(CountedBeforeNegotiation):
    # What the refusal of a query parameter the view does not take says it takes.
    takes = "none"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        format_name = api_settings.URL_FORMAT_OVERRIDE
        refuse_query_beyond(
            request, frozenset({format_name} if format_name else ()), takes=self.takes
        )

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code >= 400:
            # The envelope in JSON, as every API error is: the document's renderers would
            # write it in YAML, the pages' look for a template named after the status.
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(_DocumentView, SpectacularAPIView):
    """The OpenAPI document at /api/schema/."""

    takes = "format (yaml, the default, or json)"


class _SameOriginOnly(_DocumentView):
    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerView(_SameOriginOnly, SpectacularSwaggerView):
    """Swagger UI at /api/docs/."""


class RedocView(_SameOriginOnly, SpectacularRedocView):
    """ReDoc at /api/redoc/."""
