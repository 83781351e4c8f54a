"""Rate limits per API key (per user for sessions, per address for anonymous callers)."""

from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from exchange.models import ApiKey


class PerKeyRateThrottle(SimpleRateThrottle):
    scope = "key"

    def get_cache_key(self, request: Any, view: Any) -> str:
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
