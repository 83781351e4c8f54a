"""Who am I, and the organization's API keys (listing and revoking; keys are created in the
web UI or with ``manage.py create_api_key``, where the secret can be shown once)."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from typing import Any

from django.http import Http404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer
from exchange.api.views import ApiView
from exchange.models import ApiKey
from exchange.selectors.api_keys import api_key_of, api_keys_of
from exchange.services.api_keys import api_key_revoke

# Not authenticated, not allowed, over the key's rate (with Retry-After).
ERRORS: dict[int, Any] = {401: ErrorSerializer, 403: ErrorSerializer, 429: ErrorSerializer}


class MeSerializer(serializers.Serializer):
    organization = serializers.CharField(source="organization.slug")
    organization_kind = serializers.CharField(source="organization.kind")
    account = serializers.IntegerField(source="account.pk")
    scopes = serializers.ListField(child=serializers.CharField())
    key = serializers.CharField(source="key.prefix", allow_null=True, default=None)


class Me(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        responses={200: MeSerializer, **ERRORS},
        summary="The caller: organization, trading account, scopes, key",
    )
    def get(self, request: Request) -> Response:
        caller = request.caller
        data = {
            "organization": caller.organization,
            "account": caller.account,
            "scopes": sorted(caller.scopes),
            "key": caller.key,
        }
        return Response(MeSerializer(data).data)


class KeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = [
            "prefix",
            "name",
            "scopes",
            "ip_allowlist",
            "require_signature",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]


class KeyList(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        responses={200: KeySerializer(many=True), **ERRORS},
        summary="The organization's API keys (never their secrets)",
    )
    def get(self, request: Request) -> Response:
        keys = api_keys_of(request.caller.organization)
        return Response(KeySerializer(keys, many=True).data)


class KeyDetail(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        responses={
            200: KeySerializer,
            **ERRORS,
            404: ErrorSerializer,
        },
        summary="Revoke one of the organization's keys (at once; revoking twice is harmless)",
    )
    def delete(self, request: Request, prefix: str) -> Response:
        key = api_key_of(request.caller.organization, prefix)
        if key is None:
            raise Http404(prefix)
        revoked = api_key_revoke(key=key, actor=request.caller.user, api_key=request.caller.key)
        return Response(KeySerializer(revoked).data)


urlpatterns = [
    path("me/", Me.as_view(), name="me"),
    path("keys/", KeyList.as_view(), name="keys"),
    path("keys/<text:prefix>/", KeyDetail.as_view(), name="key"),
]
