"""Scopes: each view names the scope it needs (``required_scope``); None is public."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from typing import Any

from rest_framework.permissions import BasePermission

from exchange.api.context import caller_of
from exchange.errors import ApiAuthError, ApiAuthErrorCode


class HasScope(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        scope = getattr(view, "required_scope", None)
        if scope is None:
            return True
        if not (request.user and request.user.is_authenticated):
            raise ApiAuthError(ApiAuthErrorCode.REQUIRED, "Authenticate with an API key.")
        caller = caller_of(request)
        if scope not in caller.scopes:
            # The scope by its value, as keys are made with it (--scopes read,trade).
            if caller.key:
                raise ApiAuthError(
                    ApiAuthErrorCode.SCOPE_MISSING, f"This key lacks the {scope!s} scope."
                )
            raise ApiAuthError(
                ApiAuthErrorCode.ROLE_MISSING,
                f"Your role lacks the {scope!s} scope: a trader of the organization has it.",
            )
        request.caller = caller
        return True
