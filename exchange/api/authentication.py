"""DRF authentication by API key (bearer, optionally HMAC-signed)."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from exchange.api.context import ApiKeyPrincipal
from exchange.services.api_keys import SignedRequest, api_key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[ApiKeyPrincipal, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        # The scheme's name is case-insensitive (RFC 9110, 11.1): "bearer" was taken for no
        # key at all, and answered AUTH_REQUIRED though the key was there.
        if header[: len(self.keyword) + 1].lower() != f"{self.keyword.lower()} ":
            return None  # Not ours: session authentication (or anonymous) goes on.
        token = header[len(self.keyword) + 1 :].strip()
        timestamp = request.META.get("HTTP_X_GX_TIMESTAMP")
        signature = request.META.get("HTTP_X_GX_SIGNATURE")
        signed = SignedRequest(
            method=request.method,
            path=request.get_full_path(),
            # Read only where the signature check reads it: with both headers (one alone is
            # refused before). An unsigned request's body is the view's to read, so one over
            # Django's limit is refused there, after the key is checked and counted, with its
            # standing, where reading it here refused it before (413 without RateLimit-*).
            body=request.body if timestamp is not None and signature is not None else b"",
            timestamp=timestamp,
            signature=signature,
        )
        key = api_key_authenticate(
            token, client_ip=request.META.get("REMOTE_ADDR", ""), request=signed
        )
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Any) -> str:
        return f'{self.keyword} realm="api"'


# drf-spectacular's ``__init_subclass__`` (its extension registry) is unannotated.
class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The key in the OpenAPI document: HTTP bearer."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer gx_<prefix>_<secret>`. "
            "Optionally HMAC-signed (X-GX-Timestamp, X-GX-Signature); see docs/API.md.",
        }
