"""The push feed (WebSocket) routes; formats in ``exchange.feed.messages``."""

from django.urls import path

from exchange.feed.consumers import InstrumentFeed, OrdersFeed

websocket_urlpatterns = [
    path("ws/v1/instruments/<str:symbol>/", InstrumentFeed.as_asgi()),
    path("ws/v1/orders/", OrdersFeed.as_asgi()),
]
