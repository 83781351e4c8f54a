"""The push feed's WebSocket consumers: one instrument's market data, one organization's orders.

The feed sends; of a client's frames it answers only ``{"type": "ping"}`` (with an optional
``"id"``), with ``{"type": "pong", "id", "server_time"}``, so a client that cannot send
WebSocket pings (a browser) can tell a quiet feed from a dead one. Other JSON is ignored; a
frame that is not JSON gets an "error" message (``INVALID_JSON``) and the feed goes on.

A refused connection is accepted, told why in an "error" message ({"type": "error", "code",
"message"}), then closed with a code of its own: a server closing during the handshake makes
the client see an HTTP 403 and nothing else, so the codes below could never reach it.

- 4401: no key, or a bad, revoked or wrongly signed one; also a subscribed connection whose
  key is revoked (at once through the channel layer, else within
  ``EXCHANGE_FEED_KEY_CHECK_SECONDS``);
- 4403: a key without the "read" scope, or used from an address its allowlist refuses;
- 4404: no instrument has that symbol, or no channel has that path.

The matcher publishes one event per group and batch (``exchange.feed.publish``); the handler
``feed_batch`` forwards its messages one frame each, in order. Events are numbered per sending
process and group: when a number is skipped (the channel layer dropped what a connection that
fell behind could not take, or the sender could not send), the client first gets a "gap"
message, {"type": "gap", "missed_batches", "message"}, saying how many batches it lost and
what to do; the instrument channel then also sends a fresh book when the event carries none.
"""

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from exchange.api.errors import FORBIDDEN_CODES
from exchange.errors import ApiAuthError, ApiAuthErrorCode
from exchange.feed.messages import (
    api_key_group,
    instrument_group,
    organization_group,
    time_text,
)
from exchange.feed.selectors import book_snapshot
from exchange.models import ApiKey, Instrument
from exchange.selectors.api_keys import api_key_revoked
from exchange.selectors.market import instrument_by_symbol
from exchange.services.api_keys import SignedRequest, api_key_authenticate

# Senders whose last number a connection remembers: matchers, and their restarts.
SOURCES_REMEMBERED_MAX = 64

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
BEARER = "Bearer "
QUERY_KEY = "key"


class FeedConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels is untyped.
    """What both channels share: joining one group, forwarding its batches, refusing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The last event number received from each sender, the most recent sender last.
        self.received: dict[str, int] = {}
        # Closed by the feed: nothing more is sent.
        self.ended = False

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        # The base class leaves every group in ``groups`` when the socket closes.
        self.groups.append(group)

    async def refuse(self, close_code: int, code: str, message: str) -> None:
        await self.accept()
        await self.end(close_code, code, message)

    async def end(self, close_code: int, code: str, message: str) -> None:
        """Tell an accepted connection why it ends, and close it."""
        if self.ended:
            return
        self.ended = True
        await self.send_json({"type": "error", "code": code, "message": message})
        await self.close(code=close_code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = json.loads(text_data if text_data is not None else bytes_data or b"")
        except ValueError:
            await self.send_json(
                {"type": "error", "code": "INVALID_JSON", "message": "Frames must be JSON."}
            )
            return
        if not isinstance(content, dict):
            return
        if content.get("type") == "ping":
            await self.send_json(
                {"type": "pong", "id": content.get("id"), "server_time": time_text(timezone.now())}
            )
        else:
            await self.receive_message(content)

    async def receive_message(self, content: dict[str, Any]) -> None:
        """A client's JSON object other than a ping: ignored unless a channel says otherwise."""

    async def feed_batch(self, event: dict[str, Any]) -> None:
        if self.ended:
            return
        missed = self._missed(event.get("source"), event.get("sequence"))
        if missed:
            await self.send_json(
                {
                    "type": "gap",
                    "missed_batches": missed,
                    "message": f"{missed} batch{'es' if missed > 1 else ''} of this channel "
                    f"{'were' if missed > 1 else 'was'} lost: the connection fell behind, or "
                    f"the feed could not send. {self.gap_advice()}",
                }
            )
        for message in event["messages"]:
            await self.send_json(message)
        if missed:
            await self.after_gap(event["messages"])

    def gap_advice(self) -> str:
        """What a client should do about lost batches, said in its "gap" message."""
        raise NotImplementedError

    async def after_gap(self, messages: list[dict[str, Any]]) -> None:
        """What a channel sends after the messages of an event that followed lost ones."""

    def _missed(self, source: Any, sequence: Any) -> int:
        """How many of ``source``'s events to this connection were lost before this one."""
        if not isinstance(source, str) or not isinstance(sequence, int):
            return 0
        last = self.received.pop(source, None)
        self.received[source] = sequence
        if len(self.received) > SOURCES_REMEMBERED_MAX:
            del self.received[next(iter(self.received))]
        return 0 if last is None else max(sequence - last - 1, 0)


class UnknownFeed(FeedConsumer):
    """Any path no channel has: refused with 4404."""

    async def connect(self) -> None:
        await self.refuse(CLOSE_NOT_FOUND, "NOT_FOUND", f"No feed at {self.scope['path']!r}.")


class InstrumentFeed(FeedConsumer):
    """``ws/v1/instruments/<symbol>/`` (public): a "book" snapshot on connect, then "trade"
    messages and "book" updates after every matcher batch that changed the book."""

    async def connect(self) -> None:
        symbol = self.scope["url_route"]["kwargs"]["symbol"]
        instrument: Instrument | None = await database_sync_to_async(instrument_by_symbol)(symbol)
        if instrument is None:
            await self.refuse(CLOSE_NOT_FOUND, "NOT_FOUND", f"No instrument {symbol!r}.")
            return
        # Joined before the snapshot is read: a batch committing meanwhile is in the snapshot
        # or arrives after it (events wait until connect returns), never lost in between.
        await self.join(instrument_group(instrument.pk))
        self.instrument = instrument
        await self.accept()
        await self.send_json(await database_sync_to_async(book_snapshot)(instrument))

    def gap_advice(self) -> str:
        return (
            "Their trades are missing here: GET "
            f"/api/v1/instruments/{self.instrument.symbol}/trades/ lists them."
        )

    async def after_gap(self, messages: list[dict[str, Any]]) -> None:
        # The book of the lost batches is replaced by the event's own, or by a fresh snapshot.
        if not any(message["type"] == "book" for message in messages):
            await self.send_json(await database_sync_to_async(book_snapshot)(self.instrument))


class OrdersFeed(FeedConsumer):
    """``ws/v1/orders/`` (an API key with the "read" scope): "order" and "fill" messages for
    every order of the key's organization, as the matcher changes them.

    The key comes with the handshake (``Authorization: Bearer``, or ``?key=``), or, so that it
    appears in no URL (servers log a WebSocket's URL, query string included), in the first
    message: ``{"type": "auth", "key": ..., "timestamp": ..., "signature": ...}`` (the last two
    when the key signs) within ``EXCHANGE_FEED_AUTH_SECONDS`` of connecting. A signature covers
    ``GET``, the path with its query, and an empty body, either way."""

    authenticated = False
    organization = ""  # The key's organization's slug, once subscribed.
    deadline: asyncio.Task[None] | None = None
    # Reads the key every EXCHANGE_FEED_KEY_CHECK_SECONDS while subscribed.
    key_watch: asyncio.Task[None] | None = None

    def gap_advice(self) -> str:
        return (
            "Read what changed since the last message before the gap: GET "
            "/api/v1/orders/?updated_since=T and GET /api/v1/fills/?since=T."
        )

    async def connect(self) -> None:
        token, timestamp, signature = self._handshake_credentials()
        if not token:
            # Wait for an "auth" message.
            await self.accept()
            self.deadline = asyncio.create_task(self._expire(settings.EXCHANGE_FEED_AUTH_SECONDS))
            return
        refusal = await self._subscribe(token, timestamp, signature)
        if refusal is not None:
            await self.refuse(*refusal)
            return
        await self.accept()
        await self._welcome()

    async def receive_message(self, content: dict[str, Any]) -> None:
        if content.get("type") != "auth":
            return
        if self.authenticated:
            await self.send_json(
                {"type": "error", "code": "ALREADY_AUTHENTICATED", "message": "Already subscribed."}
            )
            return
        if self.deadline is not None:
            self.deadline.cancel()
        refusal = await self._subscribe(
            _text(content.get("key")),
            _text(content.get("timestamp")),
            _text(content.get("signature")),
        )
        if refusal is not None:
            await self.end(*refusal)
            return
        await self._welcome()

    async def disconnect(self, code: int) -> None:
        for task in (self.deadline, self.key_watch):
            if task is not None:
                task.cancel()

    async def feed_key_revoked(self, event: dict[str, Any]) -> None:
        """The key subscribed with was revoked (``exchange.feed.publish.key_revoked``)."""
        await self._end_revoked()

    async def _watch_key(self, key_id: int) -> None:
        """Close the connection once its key is revoked, should the revocation's own message
        never arrive (the channel layer unreachable at that moment)."""
        while not self.ended:
            await asyncio.sleep(settings.EXCHANGE_FEED_KEY_CHECK_SECONDS)
            if await database_sync_to_async(api_key_revoked)(key_id):
                await self._end_revoked()

    async def _end_revoked(self) -> None:
        # As a revoked key is refused when it connects.
        await self.end(
            CLOSE_UNAUTHENTICATED,
            str(ApiAuthErrorCode.KEY_REVOKED),
            "The API key has been revoked.",
        )

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not self.authenticated:
            await self.end(
                CLOSE_UNAUTHENTICATED,
                str(ApiAuthErrorCode.REQUIRED),
                f"Authenticate within {seconds:g} s: 'Authorization: {BEARER}<key>', ?key=<key>, "
                'or a first message {"type": "auth", "key": "<key>"}.',
            )

    async def _subscribe(
        self, token: str | None, timestamp: str | None, signature: str | None
    ) -> tuple[int, str, str] | None:
        """Join the key's organization's group; or (close code, error code, message)."""
        try:
            key = await database_sync_to_async(self._authenticate)(token, timestamp, signature)
        except ApiAuthError as error:
            close_code = CLOSE_FORBIDDEN if error.code in FORBIDDEN_CODES else CLOSE_UNAUTHENTICATED
            return close_code, str(error.code), error.message
        if ApiKey.Scope.READ not in key.scopes:
            return (
                CLOSE_FORBIDDEN,
                str(ApiAuthErrorCode.SCOPE_MISSING),
                "The orders channel needs the 'read' scope.",
            )
        await self.join(organization_group(key.organization_id))
        await self.join(api_key_group(key.pk))
        self.authenticated, self.organization = True, key.organization.slug
        self.key_watch = asyncio.create_task(self._watch_key(key.pk))
        return None

    async def _welcome(self) -> None:
        await self.send_json({"type": "subscribed", "organization": self.organization})

    def _handshake_credentials(self) -> tuple[str | None, str | None, str | None]:
        """(key, timestamp, signature) sent with the handshake: the key from ``Authorization:
        Bearer`` or, for clients that cannot set headers, ``?key=``."""
        headers = {name.decode("latin-1").lower(): value for name, value in self.scope["headers"]}
        authorization = headers.get("authorization", b"").decode("latin-1")
        if authorization[: len(BEARER)].lower() == BEARER.lower():  # Any case (RFC 9110).
            token = authorization[len(BEARER) :].strip()
        else:
            token = parse_qs(self._query()).get(QUERY_KEY, [""])[0]
        timestamp = headers.get("x-gx-timestamp")
        signature = headers.get("x-gx-signature")
        return (
            token or None,
            timestamp.decode("latin-1") if timestamp is not None else None,
            signature.decode("latin-1") if signature is not None else None,
        )

    def _query(self) -> str:
        query_string: bytes = self.scope.get("query_string", b"")
        return query_string.decode("latin-1")

    def _authenticate(
        self, token: str | None, timestamp: str | None, signature: str | None
    ) -> ApiKey:
        """The key checked like an API request's."""
        if not token:
            raise ApiAuthError(ApiAuthErrorCode.REQUIRED, "The auth message names no key.")
        query = self._query()
        client = self.scope.get("client") or ("", 0)
        return api_key_authenticate(
            token,
            client_ip=client[0] or "",
            request=SignedRequest(
                method="GET",
                path=self.scope["path"] + (f"?{query}" if query else ""),
                body=b"",
                timestamp=timestamp,
                signature=signature,
            ),
        )


def _text(value: Any) -> str | None:
    """A string field of a client's message; anything else counts as absent."""
    return value if isinstance(value, str) and "\x00" not in value else None
