"""Middleware of the API's: what must happen before Django's own middleware runs."""

import logging
from collections.abc import Callable

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from exchange.api.errors import API_PREFIX, bad_request

# Where Django's own handling logs a refused Host (``django.core.handlers.exception``).
security_logger = logging.getLogger("django.security.DisallowedHost")


class ApiHostMiddleware:
    """A request under ``/api/`` whose ``Host`` the server does not serve is answered with the
    envelope's ``400 BAD_REQUEST``, whatever ``DEBUG`` says.

    Django refuses such a request where ``request.get_host()`` is first called (in
    ``CommonMiddleware``), and answers it with ``handler400`` only with ``DEBUG`` off: with it
    on, with its HTML debug page, settings and all. So this middleware comes first and asks
    for the host itself. Pages keep Django's answer.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            try:
                request.get_host()
            except DisallowedHost as exception:
                security_logger.error(
                    str(exception), extra={"status_code": 400, "request": request}
                )
                return bad_request(request, exception)
        return self.get_response(request)
