"""Serializer fields shared by the API's modules."""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from exchange.api.errors import not_found

# Any text but NUL, which PostgreSQL can neither store nor compare.
TEXT = r"^[^\x00]*$"


class TextField(serializers.RegexField):
    """Text as sent (surrounding whitespace kept unless ``trim_whitespace``), refusing NUL as a
    bad value (400) before it reaches a query. A JSON string and nothing else: DRF's
    ``CharField`` would take the number ``100.0`` as the text ``"100.0"``."""

    default_error_messages = {"string": "Give a JSON string."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(TEXT, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("string")
        value: str = super().to_internal_value(data)
        return value


class BooleanInputField(serializers.BooleanField):
    """A flag in a JSON body: ``true`` or ``false`` and nothing else, as the schema says. DRF's
    ``BooleanField`` also takes ``0``, ``1``, ``"true"``, ``"yes"`` and ``"off"``. Query
    parameters, always text, keep ``BooleanField``."""

    default_error_messages = {"boolean": "Give a JSON boolean: true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("boolean")
        flag: bool = data
        return flag


class DecimalStringField(serializers.DecimalField):
    """A decimal in a request body as a string matching the subclass's ``pattern`` and nothing
    else: no JSON number (read as a float), exponent (``1e3``), sign or spaces, which DRF's
    ``DecimalField`` would take. Its digits and bounds are then DRF's to check."""

    pattern: str
    default_error_messages = {"format": 'Give a decimal string such as "2.450".'}

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        # DRF's DecimalField reads "" (or spaces) as null where null is allowed: a price given
        # empty is malformed, not left out.
        if isinstance(data, str) and data.strip() == "":
            self.fail("format")
        result: tuple[bool, Any] = super().validate_empty_values(data)
        return result

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str) or re.fullmatch(self.pattern, data) is None:
            self.fail("format")
        value: Decimal = super().to_internal_value(data)
        return value


class IntegerInputField(serializers.IntegerField):
    """A whole number in a JSON body: a JSON integer and nothing else, as the schema says.

    DRF's ``IntegerField`` also takes ``1e2``, ``100.0``, ``"100"`` and ``"100.0"`` (it reads
    them as text); a body's number of contracts or GPUs that is a float or a string is a
    client's mistake, refused (400) rather than guessed at. ``true`` is not a number either.
    Query parameters, always text, keep ``IntegerField``."""

    default_error_messages = {"integer": 'Give a JSON integer such as 4 (not 4.0, 1e2 or "4").'}

    def to_internal_value(self, data: Any) -> int:
        if type(data) is not int:  # bool is a subclass of int: refused too.
            self.fail("integer")
        value: int = super().to_internal_value(data)
        return value


class QuerySerializer(serializers.Serializer):
    """Query parameters: one given empty (``?status=``) is refused like any other bad value,
    rather than read as absent (DRF's way with form data), so the schema's types hold; one given
    twice (``?status=live&status=done``) is refused too, rather than the last one silently
    winning: every filter takes one value."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        getlist = getattr(self.initial_data, "getlist", None)
        for name in self.fields:
            if getlist is not None and len(getlist(name)) > 1:
                raise serializers.ValidationError({name: "Give it once."})
            if self.initial_data.get(name) == "":
                raise serializers.ValidationError({name: "Give a value or leave it out."})
        return attrs


# DRF drops a body key it does not know, and the request is then done without it: a cancel-all
# whose instrument was misspelt ("symbol") would cancel the orders of every instrument, an order
# sent with a flag the endpoint does not take ("reduce_only") be placed as an ordinary one. A
# ``BodySerializer`` refuses such a key as malformed (400, the key as the field) before anything
# is done. Its docstring is the schema's description of each body that does not have its own.
class BodySerializer(serializers.Serializer):
    """A JSON body: a key that is none of its properties is refused (400 INVALID_INPUT)."""

    default_error_messages = {"unknown_field": "Not a field of this request: {name}."}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data.keys() - self.fields.keys())
            if unknown:
                message = self.error_messages["unknown_field"].format(name=unknown[0])
                raise serializers.ValidationError({unknown[0]: [message]})
        return super().to_internal_value(data)


# drf-spectacular's ``__init_subclass__`` (its extension registry) is unannotated.
class BodySchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """A ``BodySerializer``'s schema says what it refuses: no key beyond its properties."""

    target_class = BodySerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


class CodeRelatedField(serializers.SlugRelatedField):
    """A row named by its code or slug, in a body or a query. A code that names no row is
    answered 404 NOT_FOUND with the field, as an unknown instrument or order named in a body
    or a filter is (docs/API.md, Errors). A value that is no code is malformed, 400: empty,
    not a JSON string, or holding NUL (PostgreSQL cannot even compare text with NUL in it),
    refused before any query."""

    default_error_messages = {"nul": "Codes and symbols hold no NUL character."}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("nul")
        if isinstance(data, str) and data:
            queryset = self.get_queryset()
            row = queryset.filter(**{self.slug_field: data}).first()
            if row is None:
                raise not_found(f"No {queryset.model._meta.verbose_name} {data}.", self.field_name)
            return row
        return super().to_internal_value(data)
