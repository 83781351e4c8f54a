"""Path converters of the API's routes (registered on import: each module with routes that use
them imports this one first)."""

from django.urls import register_converter


class TextConverter:
    """A path segment as ``str`` matches it, without NUL: PostgreSQL can neither store nor
    compare text holding NUL, so such a path names nothing (404) instead of failing (500)."""

    regex = "[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TextConverter, "text")
