from rest_framework.pagination import CursorPagination


class NewestFirst(CursorPagination):
    """Cursor pagination, newest first: stable while rows are added."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
