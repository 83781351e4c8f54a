"""The base of every API view: ``ApiView`` refuses a query parameter its endpoint does not take,
and a body sent with a ``DELETE``. Its own base, ``CountedBeforeNegotiation`` (also that of the
schema's views and of the 404 for an unknown path), authenticates, checks and counts the caller
before it chooses the answer's format, so every answer to a key says where it stands.

DRF ignores a query parameter no view reads, so a misspelt filter (``GET /api/v1/orders/?symbl=``)
would answer every order, as if none had been asked for: a trader would act on the wrong rows
without being told. A parameter the operation does not declare in the OpenAPI document is
refused instead, with ``400 INVALID_INPUT`` and the parameter as the ``field``, as an unknown
key of a body is (``fields.BodySerializer``).

What an operation takes is read from what its ``extend_schema(parameters=...)`` declares, the
very list drf-spectacular writes into ``/api/schema/`` (query serializers, each field a
parameter, and ``OpenApiParameter`` in the query), so the schema and what is accepted cannot
differ; ``tests/exchange/api/test_query.py`` compares the two for every operation. DRF's format
override (``?format=json``) is taken everywhere, and ``query_schema`` declares it.

A ``DELETE`` acts on what its path names, whole, and takes no body; DRF would read one and no view
would look at it. A client sending ``{"member": ...}`` to withdraw a pool's demand, or
``{"quantity": 2}`` to cancel part of an order, would have the whole thing deleted. A non-empty
body is refused with ``400 INVALID_INPUT``, its first key as the ``field``, as an unknown key of
a body is (``fields.BodySerializer``); an empty object, or no body at all, is taken.
"""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from collections.abc import Mapping
from typing import Any

from django.http import Http404
from drf_spectacular.plumbing import is_basic_serializer
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

# What each view class's method takes, read once per process: a view's declarations do not
# change while it runs. Bounded by the API's views and their methods.
_known: dict[tuple[type[APIView], str], frozenset[str]] = {}


# A view whose caller is known, and counted, before the answer's format is chosen. A comment,
# not a docstring: drf-spectacular would give it as the description of every operation whose
# view has none of its own.
class CountedBeforeNegotiation(APIView):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # DRF's ``initial`` with one step moved: it chooses the answer's renderer first, so an
        # ``Accept`` the view cannot answer (406) or a ``?format=`` it does not render (400)
        # was refused before the caller was authenticated or counted: a key's request answered
        # without its RateLimit-* standing, and never counted, so a client looping on a bad
        # header was never slowed by its rate. The renderer is chosen last, after the rate
        # limit, as a malformed query is refused; an error before it (401, 403, 429) is
        # rendered by the first renderer, as DRF's ``finalize_response`` does for any answer
        # without one.
        self.format_kwarg = self.get_format_suffix(**kwargs)
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        self.check_permissions(request)
        self.check_throttles(request)
        negotiated = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = negotiated

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # DRF answers a format it does not render (?format=xml) with 404, as if the path were
        # unknown; it is a malformed value of a parameter the API takes, so 400 as any other.
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            format_name = api_settings.URL_FORMAT_OVERRIDE
            if not format_name or format_name not in request.query_params:
                raise
            formats = " or ".join(sorted({renderer.format for renderer in self.get_renderers()}))
            raise serializers.ValidationError(
                {format_name: [f"Give {formats}, or leave it out."]}
            ) from None


# An API view: a query parameter its operation does not declare is refused (400), and so is a
# DELETE's body.
class ApiView(CountedBeforeNegotiation):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # After authentication, permissions, the rate limit and the answer's format, as a bad
        # filter value is refused by the view itself: the order of the answers a client sees
        # stays the same.
        super().initial(request, *args, **kwargs)
        method = request.method.lower()
        if method not in self.http_method_names or not hasattr(self, method):
            return  # Answered 405 by DRF's dispatch.
        known = query_parameters_of(self, request.method)
        takes = ", ".join(sorted(known - {api_settings.URL_FORMAT_OVERRIDE})) or "none"
        refuse_query_beyond(request, known, takes=f"{takes} (see /api/schema/)")
        if method == "delete":
            _refuse_body(request)


def refuse_query_beyond(request: Request, known: frozenset[str], *, takes: str) -> None:
    """400 ``INVALID_INPUT`` for a query parameter not in ``known`` (its message ending with
    what the endpoint ``takes``), or the format override given more than once."""
    format_name = api_settings.URL_FORMAT_OVERRIDE
    if format_name and len(request.query_params.getlist(format_name)) > 1:
        raise serializers.ValidationError({format_name: ["Give it once."]})
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise serializers.ValidationError(
            {
                unknown[0]: [
                    f"Not a query parameter of this endpoint: {unknown[0]!r}. It takes {takes}."
                ]
            }
        )


def _refuse_body(request: Request) -> None:
    """A DELETE's body is refused unless it is empty (none, ``{}``); read after the query's
    check, so a malformed body (``INVALID_JSON``) is answered as any other body's."""
    data = request.data
    if data is None or (isinstance(data, Mapping | list) and not data):
        return
    takes = "A DELETE takes no body: it acts on what its path names, whole."
    if isinstance(data, Mapping):
        name = sorted(str(key) for key in data)[0]
        raise serializers.ValidationError({name: [f"Not a field of this request: {name}. {takes}"]})
    raise serializers.ValidationError([f"Unexpected body. {takes}"])


def query_parameters_of(view: APIView, method: str) -> frozenset[str]:
    """The names of the query parameters ``view``'s ``method`` declares in the schema, and the
    format override."""
    key = (type(view), method.upper())
    known = _known.get(key)
    if known is None:
        known = _known[key] = _declared(view, method.upper())
    return known


def _declared(view: APIView, method: str) -> frozenset[str]:
    names: set[str] = set()
    if api_settings.URL_FORMAT_OVERRIDE:
        names.add(api_settings.URL_FORMAT_OVERRIDE)
    handler = getattr(view, method.lower())
    # Where ``extend_schema`` keeps a method's schema class, as drf-spectacular's generator
    # reads it (``SchemaGenerator.create_view``); a method without one declares nothing.
    schema_class = getattr(handler, "kwargs", {}).get("schema")
    if schema_class is None:
        return frozenset(names)
    schema = schema_class()
    schema.view = view
    schema.method = method
    for parameter in schema.get_override_parameters():
        if isinstance(parameter, OpenApiParameter):
            if (
                parameter.location == OpenApiParameter.QUERY
                and not parameter.exclude
                and not parameter.response
            ):
                names.add(parameter.name)
        elif is_basic_serializer(parameter):
            serializer = parameter() if isinstance(parameter, type) else parameter
            fields = serializer.fields
            names.update(name for name, field in fields.items() if not field.read_only)
    return frozenset(names)


def query_schema(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every API operation may answer 400 (a query
    parameter it does not take, if nothing else), and takes DRF's format override, whose one
    value is ``json``."""
    format_name = api_settings.URL_FORMAT_OVERRIDE
    parameters = result.setdefault("components", {}).setdefault("parameters", {})
    if format_name:
        parameters["Format"] = {
            "in": "query",
            "name": format_name,
            "schema": {"type": "string", "enum": [JSONRenderer.format]},
            "description": "The answer's format: JSON, the only one (the default).",
        }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            operation.setdefault("responses", {}).setdefault(
                "400",
                {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                    "description": "",
                },
            )
            if format_name:
                operation.setdefault("parameters", []).append(
                    {"$ref": "#/components/parameters/Format"}
                )
    return result
