"""The push feed (``/ws/v1/``) from Python: one WebSocket channel read as an iterator of its
messages, each a ``dict`` as docs/API.md describes it ("book", "trade", "order", "fill",
"replace_rejected", "notice", "gap", "pong").

It needs the ``websockets`` package, imported when a feed is opened, so that a client of the
REST API alone needs only ``requests``. Open one with ``ExchangeClient.orders_feed()`` or
``ExchangeClient.instrument_feed(symbol)``.
"""

import json
from typing import Any, Self

# The close codes the feed ends a connection with after an "error" message.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class FeedError(Exception):
    """The feed refused or ended the connection: its error code and message, and the
    WebSocket close code (4401 no or bad key, 4403 scope or address, 4404 no such channel;
    others when the connection was lost)."""

    def __init__(self, code: str, message: str, close_code: int | None) -> None:
        super().__init__(f"{code}: {message}" + (f" (close {close_code})" if close_code else ""))
        self.code = code
        self.message = message
        self.close_code = close_code


class Feed:
    """One open channel. Iterating yields its messages until the server closes it normally;
    a refusal (an "error" message, then a close) raises ``FeedError``, as does a lost
    connection. Use it in a ``with`` block, or ``close()`` it."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection  # A websockets.sync.client.ClientConnection.
        # A frame read after an "error" message while waiting for the close that did not come:
        # the next message, which ``receive`` gives before reading the connection again.
        self._pending: list[str | bytes] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosedOK

        try:
            return self.receive()
        except FeedError as error:
            if error.code == "CLOSED" and isinstance(error.__cause__, ConnectionClosedOK):
                raise StopIteration from error
            raise

    def receive(self, timeout_seconds: float | None = None) -> dict[str, Any]:
        """The next message (waiting at most ``timeout_seconds``: ``TimeoutError`` after)."""
        from websockets.exceptions import ConnectionClosed

        try:
            frame = (
                self._pending.pop(0)
                if self._pending
                else self.connection.recv(timeout=timeout_seconds)
            )
            message: dict[str, Any] = json.loads(frame)
        except ConnectionClosed as closed:
            received = closed.rcvd
            raise FeedError(
                "CLOSED",
                received.reason if received is not None and received.reason else "closed",
                received.code if received is not None else None,
            ) from closed
        if message.get("type") == "error":
            raise self._refusal(message)
        return message

    def ping(self, ping_id: int | str | None = None) -> None:
        """Ask for a "pong" message (with ``ping_id`` and the server's time)."""
        self.connection.send(json.dumps({"type": "ping", "id": ping_id}))

    def close(self) -> None:
        self.connection.close()

    def _refusal(self, message: dict[str, Any]) -> FeedError:
        """The feed's "error" message with the close code that follows it; a frame that comes
        instead (an error the feed goes on after) is kept for the next ``receive``."""
        from websockets.exceptions import ConnectionClosed

        close_code = None
        try:
            self._pending.append(self.connection.recv(timeout=5))
        except ConnectionClosed as closed:
            close_code = closed.rcvd.code if closed.rcvd is not None else None
        except TimeoutError:
            pass  # An error the feed goes on after (none is sent to this client's frames).
        return FeedError(str(message.get("code")), str(message.get("message")), close_code)
