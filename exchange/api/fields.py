"""Serializer fields shared by the API's modules."""

from typing import Any

from rest_framework import serializers


class CodeRelatedField(serializers.SlugRelatedField):
    """A row named by its code or slug. A value holding NUL names nothing (PostgreSQL cannot
    even compare text with NUL in it): refused as unknown, before any query."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", ""))
        return super().to_internal_value(data)
