# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

from collections.abc import Callable
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api.fields import QuerySerializer, TextField
from exchange.selectors.orders import ID_MAX


class NewestFirst(CursorPagination):
    """Cursor pagination, newest first: stable while rows are added."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor: Cursor | None = super().decode_cursor(request)
        # DRF takes a cursor's position as any text and compares the ids with it in the query:
        # a cursor whose position is no id ("1.5", "abc", one holding NUL) failed there, a 500.
        # The exchange's cursors hold ids: any other is not one of them, 404 as a forged one.
        position = None if cursor is None else cursor.position
        if position is not None and not (
            position.isascii() and position.isdigit() and int(position) <= ID_MAX
        ):
            raise NotFound(self.invalid_cursor_message)
        return cursor


def newest_first_page(
    view: APIView, request: Request, rows: Any, serialize: Callable[[list[Any]], Any]
) -> Response:
    """The ``NewestFirst`` page of ``rows`` the request asks for, its rows serialized by
    ``serialize``."""
    paginator = NewestFirst()
    page = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response(serialize(page or []))


def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of one ``NewestFirst`` page of ``item`` rows, as the component ``name``.

    Written into the views' ``extend_schema`` rather than set as their ``pagination_class``,
    since a list view's POST answers a plain object, which would then be paged in the schema
    too."""
    fields = {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": item(many=True),
    }
    return type(name, (serializers.Serializer,), fields)


class PageQuery(QuerySerializer):
    """The query parameters of a ``NewestFirst`` list, validated strictly: DRF's paginator reads
    a malformed ``limit`` as the default, and a parameter given empty (``?limit=``) as absent;
    here both are refused (400), so the schema's types hold. Subclass it to add filters."""

    cursor = TextField(required=False, help_text="From a page's next or previous link.")
    limit = serializers.IntegerField(
        min_value=1,
        max_value=NewestFirst.max_page_size,
        required=False,
        help_text=f"Rows per page (default {NewestFirst.page_size}).",
    )
