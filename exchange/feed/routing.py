"""The push feed (WebSocket) routes; formats in ``exchange.feed.messages``.

A path no route matches (a symbol with NUL included) is accepted and closed with 4404, as an
unknown symbol is, rather than refused with an error in the server's log."""

from django.urls import path, re_path

from exchange.api import converters  # noqa: F401 (registers the "text" path converter)
from exchange.feed.consumers import InstrumentFeed, OrdersFeed, UnknownFeed

websocket_urlpatterns = [
    path("ws/v1/instruments/<text:symbol>/", InstrumentFeed.as_asgi()),
    path("ws/v1/orders/", OrdersFeed.as_asgi()),
    re_path(r"", UnknownFeed.as_asgi()),
]
