"""One error envelope for the whole API: ``{"error": {"code", "message", "field"}}``.

Codes are stable: the rejection codes of the engine, risk, ledger and services (``ORDER_*``,
``RISK_*``, ``MATCHING_*``, ``LEDGER_*``, ``FUNDING_*``, ``CATALOG_*``, ``PRICING_*``,
``POOL_*``), ``AUTH_*``, and the API's own (``INVALID_INPUT``, ``NOT_FOUND``, ...). Statuses:
400 bad input, 401 not authenticated, 403 not allowed (also a pool's member asking for what only
its sponsor does, and the reverse), 404 not found (also for another organization's objects),
405, 406 (an ``Accept`` admitting no format the view answers), 409 conflicts, 415, 422 a
well-formed request the exchange refuses (risk, order rules), 429 rate limited (with
``Retry-After``).
"""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from exchange.api.throttling import standing_told
from exchange.api.views import CountedBeforeNegotiation
from exchange.errors import (
    ApiAuthError,
    ApiAuthErrorCode,
    CatalogError,
    ExchangeError,
    FundingError,
    FundingErrorCode,
    OrderRejectCode,
    OrderRejected,
    PoolError,
    PoolErrorCode,
    PricingError,
    RiskError,
)
from exchange.services.ledger_accounts import ledger_refusal_text
from ledger.errors import LedgerError

FORBIDDEN_CODES = {
    ApiAuthErrorCode.IP_NOT_ALLOWED,
    ApiAuthErrorCode.SCOPE_MISSING,
    ApiAuthErrorCode.ROLE_MISSING,
    ApiAuthErrorCode.NO_ORGANIZATION,
}
CONFLICT_CODES = {
    FundingErrorCode.INVALID_STATUS_CHANGE,
    OrderRejectCode.CLIENT_ORDER_ID_CONFLICT,
    OrderRejectCode.NOT_LIVE,
    PoolErrorCode.NAME_TAKEN,
    PoolErrorCode.ALREADY_MEMBER,
    PoolErrorCode.DEMAND_LOCKED,
    PoolErrorCode.CUTOFF_PASSED,
    PoolErrorCode.ROUND_WORKING,
}
# A pool's member asking for what only its sponsor does, or the sponsor for a member's act.
POOL_ROLE_CODES = {PoolErrorCode.SPONSOR_ONLY, PoolErrorCode.NOT_A_MEMBER}
NOT_FOUND_CODES = {OrderRejectCode.UNKNOWN_INSTRUMENT}
API_PREFIX = "/api/"


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable code, e.g. RISK_INSUFFICIENT_FUNDS.")
    message = serializers.CharField(help_text="For people.")
    field = serializers.CharField(allow_null=True, help_text="The input at fault, if any.")


class ErrorSerializer(serializers.Serializer):
    """The envelope of every error response."""

    error = ErrorBodySerializer()


class ApiError(exceptions.APIException):
    """An error the API raises itself, with its code and status."""

    def __init__(self, status_code: int, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.field = field


def not_found(message: str, field: str) -> ApiError:
    """404 for an object named in the body or the query rather than the path: one that does
    not exist, or another organization's, answered alike."""
    return ApiError(status.HTTP_404_NOT_FOUND, "NOT_FOUND", message, field)


def envelope(code: str, message: str, field: str = "") -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message, "field": field or None}}


def _status_of(error: ExchangeError) -> int:
    # int(): DRF's ``status`` module is untyped, its constants Any to mypy.
    if isinstance(error, ApiAuthError):
        if str(error.code).startswith("API_KEY_"):
            return int(status.HTTP_400_BAD_REQUEST)
        if error.code in FORBIDDEN_CODES:
            return int(status.HTTP_403_FORBIDDEN)
        return int(status.HTTP_401_UNAUTHORIZED)
    if error.code in CONFLICT_CODES:
        return int(status.HTTP_409_CONFLICT)
    if error.code in POOL_ROLE_CODES:
        return int(status.HTTP_403_FORBIDDEN)
    if error.code in NOT_FOUND_CODES:
        return int(status.HTTP_404_NOT_FOUND)
    if isinstance(
        error, OrderRejected | RiskError | FundingError | CatalogError | PricingError | PoolError
    ):
        return int(status.HTTP_422_UNPROCESSABLE_ENTITY)
    return int(status.HTTP_400_BAD_REQUEST)


def _first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """(field, message) of the first validation error in DRF's nested detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            # A list's items are keyed by their index, 0 included: "orders.0.price".
            field = str(key) if key != "non_field_errors" else ""
            return _first_error(value, f"{path}.{field}".strip(".") if field else path)
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return path, str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    answer = error_answer(exc)
    if answer is None:
        return None  # A bug: Django's 500 handling (and logging) takes it.
    status_code, body, headers = answer
    if isinstance(exc, TooManyFieldsSent):
        # Logged where Django's own handling would have: its security log.
        logging.getLogger("django.security.TooManyFieldsSent").error(
            str(exc), extra={"status_code": status_code, "request": context["request"]._request}
        )
    if status_code == status.HTTP_403_FORBIDDEN:
        standing_told(context["request"], context["view"], getattr(exc, "key_prefix", ""))
    return Response(body, status=status_code, headers=headers)


def error_answer(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """The status, envelope and headers the API answers ``exc`` with; None for an exception
    that is not an answer (a bug). Also for the items of a batch, each answered on its own."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        code, message, field, status_code = exc.code, str(exc.detail), exc.field, exc.status_code
    elif isinstance(exc, ExchangeError):
        code, message, field = str(exc.code), exc.message, exc.field
        status_code = _status_of(exc)
    elif isinstance(exc, LedgerError):
        # A refusal no service turned into its own: under its stable code, in words for the
        # customer. The ledger's message names its account codes and micro-dollar amounts, and
        # its field (``postings``, ``holds``) is none of the request's.
        code, message, field = str(exc.code), ledger_refusal_text(exc), ""
        status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    elif isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail)
        code, status_code = "INVALID_INPUT", status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.Throttled):
        wait = math.ceil(exc.wait or 1)
        headers["Retry-After"] = str(wait)
        code, message, field = "RATE_LIMITED", f"Too many requests: retry in {wait} s.", ""
        status_code = status.HTTP_429_TOO_MANY_REQUESTS
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        code, message, field = "AUTH_REQUIRED", "Authenticate with an API key.", ""
        status_code = status.HTTP_401_UNAUTHORIZED
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    elif isinstance(exc, exceptions.PermissionDenied | DjangoPermissionDenied):
        code, message, field = "FORBIDDEN", str(exc) or "Not allowed.", ""
        status_code = status.HTTP_403_FORBIDDEN
    elif isinstance(exc, exceptions.NotFound | Http404):
        code, message, field = "NOT_FOUND", "Not found.", ""
        status_code = status.HTTP_404_NOT_FOUND
    elif isinstance(exc, exceptions.MethodNotAllowed):
        code, message, field = "METHOD_NOT_ALLOWED", str(exc.detail), ""
        status_code = status.HTTP_405_METHOD_NOT_ALLOWED
    elif isinstance(exc, RequestDataTooBig):  # Over Django's limit, read to check or parse.
        code, message, field = "PAYLOAD_TOO_LARGE", "The request body is too large.", ""
        status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    elif isinstance(exc, TooManyFieldsSent):
        # Raised where a view first reads its query, after the key is counted: answered here
        # with the key's standing, where Django's ``handler400`` answered without it.
        code, field = "INVALID_INPUT", ""
        message = f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query parameters."
        status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.ParseError):
        code, message, field = "INVALID_JSON", str(exc.detail), ""
        status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        code, message, field = "UNSUPPORTED_MEDIA_TYPE", str(exc.detail), ""
        status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    elif isinstance(exc, exceptions.NotAcceptable):
        code, message, field = "NOT_ACCEPTABLE", str(exc.detail), ""
        status_code = status.HTTP_406_NOT_ACCEPTABLE
    elif isinstance(exc, exceptions.APIException):
        code, message, field = "ERROR", str(exc.detail), ""
        status_code = exc.status_code
    else:
        return None
    if status_code == status.HTTP_401_UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    return status_code, envelope(code, message, field), headers


# Django's own error views, for requests that reach no API view: a request Django refuses
# before routing (a bad Host header, a body too large), an unhandled error, a 404 raised
# outside the API's views. Under ``/api/`` they answer in the envelope, as API clients parse
# every answer; web pages keep Django's.


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _not_found_message(path: str) -> str:
    """Says where the API's paths are; for a path without the trailing slash of an endpoint's,
    the path meant (rather than redirecting, which would lose a POST's body)."""
    hint = "; see /api/schema/."
    if not path.endswith("/") and _resolves(f"{path}/"):
        hint = f"; did you mean {path}/ (with the trailing slash)?"
    return f"No API endpoint at {path}{hint}"


class ApiNotFound(CountedBeforeNegotiation):
    """The answer for a path under ``/api/`` that no endpoint has, in every mode (a route of
    its own, after the API's: with ``DEBUG`` Django would otherwise answer its HTML page).

    A DRF view, so the caller is authenticated and counted first, as by any endpoint: a key's
    404 says where it stands (it answered without ``RateLimit-*`` and counted nothing, so a
    client calling a wrong path in a loop was never slowed). Anyone may be told a path is
    unknown: no scope is asked for."""

    permission_classes: list[type] = []

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        # JSON whatever the Accept or ?format= say: there is no endpoint to answer otherwise,
        # and a 406 would hide that the path is wrong.
        return super().perform_content_negotiation(request, force=True)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        raise ApiError(
            status.HTTP_404_NOT_FOUND, "NOT_FOUND", _not_found_message(request.path_info)
        )


# DRF exempts its views from Django's CSRF check; a session's POST to a wrong path is still
# checked by DRF's session authentication, as at any endpoint.
api_not_found = ApiNotFound.as_view()


def _resolves(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return getattr(match.func, "view_class", None) is not ApiNotFound


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):  # An Http404 raised under /api/ by no API view: none is known.
        return JsonResponse(
            envelope("NOT_FOUND", _not_found_message(request.path_info)),
            status=status.HTTP_404_NOT_FOUND,
        )
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            envelope("BAD_REQUEST", "The request was refused before reaching the API."),
            status=status.HTTP_400_BAD_REQUEST,
        )
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            envelope("SERVER_ERROR", "The exchange failed to answer; the error is logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
