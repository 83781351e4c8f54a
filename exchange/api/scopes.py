"""Base views by the scopes they need (``required_scope``, checked by ``permissions.HasScope``).

Not in ``permissions``: DRF imports that module while ``rest_framework.views`` is still loading.
"""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from rest_framework.permissions import SAFE_METHODS

from exchange.api.views import ApiView
from exchange.models import ApiKey


class ReadOrTrade(ApiView):
    """A view whose reads (GET, HEAD, OPTIONS) need scope read, and whose changes scope trade."""

    @property
    def required_scope(self) -> str:
        return ApiKey.Scope.READ if self.request.method in SAFE_METHODS else ApiKey.Scope.TRADE
