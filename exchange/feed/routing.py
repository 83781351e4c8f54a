"""The push feed (WebSocket) routes."""

websocket_urlpatterns: list = []
