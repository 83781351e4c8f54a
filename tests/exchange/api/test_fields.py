"""The API's shared serializer fields, and that every request body uses them where it must."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import spectacular_settings
from rest_framework import serializers

from exchange.api.fields import IntegerInputField

WRITE_METHODS = ("POST", "PUT", "PATCH")


@pytest.mark.parametrize("value", [0, 4, -3, 10**12])
def test_an_integer_input_takes_a_json_integer(value):
    assert IntegerInputField().run_validation(value) == value


@pytest.mark.parametrize("value", [100.0, 1e2, 2.5, "4", "4.0", " 4", True, False, [4], {}])
def test_an_integer_input_refuses_anything_else(value):
    with pytest.raises(serializers.ValidationError) as refused:
        IntegerInputField().run_validation(value)

    assert "JSON integer" in str(refused.value.detail[0])


def test_an_integer_input_keeps_its_bounds():
    with pytest.raises(serializers.ValidationError):
        IntegerInputField(min_value=1).run_validation(0)


def _request_serializers():
    """(operation, serializer class) for every operation of the API that takes a body."""
    generator = SchemaGenerator()
    generator._initialise_endpoints()
    for path, _, method, callback in generator.endpoints:
        if method not in WRITE_METHODS:
            continue
        view = generator.create_view(callback, method)
        view.request = spectacular_settings.GET_MOCK_REQUEST(method, path, view, None)
        view.schema.method, view.schema.path = method, path
        body = view.schema.get_request_serializer()
        if isinstance(body, type) and issubclass(body, serializers.BaseSerializer):
            yield f"{method} {path}", body


def _integer_fields(serializer, prefix=""):
    """(name, field) of every plain ``IntegerField`` in ``serializer``, nested ones included."""
    for name, field in serializer.fields.items():
        while isinstance(field, serializers.ListSerializer | serializers.ListField):
            field = field.child
            name = f"{name}.0"
        if isinstance(field, serializers.Serializer):
            yield from _integer_fields(field, f"{prefix}{name}.")
        elif isinstance(field, serializers.IntegerField) and not field.read_only:
            yield f"{prefix}{name}", field


def test_every_integer_of_a_request_body_is_a_strict_integer_input():
    # The API's bodies are JSON: a whole number there is a JSON integer, never 1e2 or "4".
    bodies = list(_request_serializers())
    lenient = [
        f"{operation}: {name}"
        for operation, body in bodies
        for name, field in _integer_fields(body())
        if not isinstance(field, IntegerInputField)
    ]

    assert len(bodies) > 20  # The walk found the API's bodies.
    assert lenient == []
