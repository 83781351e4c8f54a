"""Rate limits per API key (per user for sessions, per address for anonymous callers).

A key may make ``EXCHANGE_API_RATE`` requests (say ``100/s``) in a window that opens at its
first request and lasts the rate's period (a batch of orders counts one request per order); a
request beyond that is refused with ``Retry-After`` saying when the window closes. A refused
request counts nothing: a batch of 20 with 10 requests left is refused whole and the 10 stay
left. So does a request refused with 403 before the count (DRF checks the scope before the
rate, and the key's allowed addresses before either): its answer still tells the standing,
read without counting. A request refused after the count, by the view or for the answer's
format (an ``Accept`` it cannot answer, a ``?format=`` it does not render: API views choose
the format after the rate, ``views.CountedBeforeNegotiation``), counts.
With Redis (``REDIS_URL``, production) every web process counts in the same place, atomically
and in one round trip: a Lua script reads the window's count and what it has left, and adds
the request only if it fits (opening the window if none is open).
Without Redis (the embedded mode's single process) this process counts in its own memory,
under the same rule.
Every answer says where the caller stands: ``RateLimit-Limit`` (requests per window),
``RateLimit-Remaining`` (left in the current window) and ``RateLimit-Reset`` (seconds until it
closes), the header fields of the IETF's RateLimit draft.

DRF's ``SimpleRateThrottle`` instead reads the key's whole list of request times, trims it and
writes it back: two round trips, a list as long as the rate to pickle on every request, and
two processes counting the same request list at once each write back their own, so a
concurrent burst was undercounted.
"""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

import math
import threading
import time
from typing import Any, NamedTuple

import redis
from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.throttling import SimpleRateThrottle

from exchange.models import ApiKey

KEY_PREFIX = "exchange:rate:"
# The in-memory counter forgets closed windows once it holds this many.
LOCAL_WINDOWS_MAX = 10_000

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()
_local: dict[str, tuple[float, int]] = {}  # key: (monotonic end of its window, requests in it)
_local_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    """One client per process and URL: its connection pool serves every thread."""
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url)
        return client


# Counts ``weight`` requests (ARGV[1]) in the window KEYS[1] if they fit within the limit
# (ARGV[2]), opening a window of ARGV[3] ms if none is open; a refusal writes nothing, not
# even a window. Returns the requests the window held before, and its milliseconds left (-2:
# none open). One script: Redis runs it whole, so no other process counts between its read
# and its write.
WINDOW_HIT_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
local weight, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if left <= 0 then
    count = 0
end
if weight > 0 and count + weight <= limit then
    if left <= 0 then
        redis.call('SET', KEYS[1], weight, 'PX', ARGV[3])
    else
        redis.call('INCRBY', KEYS[1], weight)
    end
end
return {count, left}
"""


class WindowHit(NamedTuple):
    requests: int  # Requests counted in the window, this one included if it was allowed.
    seconds_left: float  # Until the window closes (its whole period if none is open).
    allowed: bool


def window_hit(key: str, seconds: int, *, limit: int, weight: int = 1) -> WindowHit:
    """Count ``weight`` requests of ``key`` in its current window of ``seconds`` (opening one
    if none is open) if the window's count stays within ``limit``; requests that do not fit
    are refused and count nothing. ``weight`` 0 only reads where the key stands."""
    if settings.REDIS_URL:
        script = _client(settings.REDIS_URL).register_script(WINDOW_HIT_SCRIPT)
        count, left_ms = script(keys=[KEY_PREFIX + key], args=[weight, limit, seconds * 1000])
        count, left = int(count), (left_ms / 1000 if left_ms > 0 else float(seconds))
    else:
        now = time.monotonic()
        with _local_lock:
            end, count = _local.get(key, (0.0, 0))
            # A window not open yet has its whole period left: exactly, where (now + seconds)
            # - now may come out a hair above it, and the headers' ceiling a second more.
            left = float(seconds)
            if end <= now:  # None open: the window this request opens if it is counted.
                end, count = now + seconds, 0
            else:
                left = end - now
            if weight > 0 and count + weight <= limit:
                if key not in _local and len(_local) >= LOCAL_WINDOWS_MAX:
                    for stale in [k for k, (e, _) in _local.items() if e <= now]:
                        del _local[stale]
                _local[key] = (end, count + weight)
    allowed = count + weight <= limit
    return WindowHit(count + weight if allowed else count, left, allowed)


def forget_local() -> None:
    """Close every window this process counts itself (tests)."""
    with _local_lock:
        _local.clear()


class PerKeyRateThrottle(SimpleRateThrottle):
    scope = "key"
    # DRF's attributes, typed: its key format, and the rate's requests per window (set by its
    # ``__init__``; None without a rate, which ``allow_request`` checks before reading it).
    cache_format: str
    num_requests: int
    left: float  # Seconds the key's current window has left (``wait``).

    def get_cache_key(self, request: Any, view: Any) -> str:
        if isinstance(request.auth, ApiKey):
            return self._window_of(f"key:{request.auth.prefix}")
        if request.user and request.user.is_authenticated:
            return self._window_of(f"user:{request.user.pk}")
        return self._window_of(f"ip:{self.get_ident(request)}")

    def _window_of(self, ident: str) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        # A view doing the work of several requests in one (a batch of orders) says how many.
        weigh = getattr(view, "rate_weight", None)
        try:
            # A batch heavier than a whole window would never fit, and be refused for ever with
            # a Retry-After that promised otherwise: it counts as the whole window, and goes
            # through when the window is untouched.
            weight = min(weigh(request), self.num_requests) if weigh is not None else 1
        except (exceptions.ParseError, exceptions.UnsupportedMediaType, RequestDataTooBig):
            # A body that cannot be weighed (malformed JSON, not JSON, over the size limit) is
            # refused as the view would refuse it, counted as one request and telling the
            # standing, as at any endpoint; it was refused here uncounted and without it.
            hit = window_hit(self.key, self.duration, limit=self.num_requests)
            self._tell(view, hit)
            if not hit.allowed:
                return False
            raise
        hit = window_hit(self.key, self.duration, limit=self.num_requests, weight=weight)
        self._tell(view, hit)
        return hit.allowed

    def tell_standing(self, request: Any, view: Any, key_prefix: str = "") -> None:
        """Put the caller's standing on the answer of a request refused before the throttles
        ran (a 403), without counting it; ``key_prefix`` names the key of a request refused
        after it proved it holds it (``ApiAuthError.key_prefix``)."""
        if self.rate is None:
            return
        if key_prefix:
            # Not ``request.user``: DRF would authenticate the refused request again.
            self.key = self._window_of(f"key:{key_prefix}")
        elif not request.user.is_authenticated and hasattr(request._request, "session"):
            # A session refused during authentication (its CSRF check) leaves DRF's user
            # anonymous, and Django's request's too: the session still names its member.
            user = get_user(request._request)
            self.key = self._window_of(
                f"user:{user.pk}" if user.is_authenticated else f"ip:{self.get_ident(request)}"
            )
        else:
            self.key = self.get_cache_key(request, view)
        self._tell(view, window_hit(self.key, self.duration, limit=self.num_requests, weight=0))

    def _tell(self, view: Any, hit: WindowHit) -> None:
        self.left = hit.seconds_left
        # On every answer of the view, errors included (DRF's ``finalize_response`` sets the
        # view's headers), so a client can pace itself before it is refused.
        view.headers.update(
            {
                "RateLimit-Limit": str(self.num_requests),
                "RateLimit-Remaining": str(max(0, self.num_requests - hit.requests)),
                "RateLimit-Reset": str(math.ceil(self.left)),
            }
        )

    def wait(self) -> float:
        """Seconds until the window closes (``Retry-After``)."""
        return float(self.left)


def standing_told(request: Any, view: Any, key_prefix: str = "") -> None:
    """The caller's standing on the answer of a request refused before the throttles ran (a
    403 for its scope, role or address), read without counting: DRF checks permissions (and
    authentication, which refuses a key's address) before the rate, and every answer but a
    401 says where the caller stands."""
    if "RateLimit-Limit" in view.headers:
        return  # Counted already: refused by the view itself (a pool's sponsor-only act).
    for throttle in view.get_throttles():
        if isinstance(throttle, PerKeyRateThrottle):
            throttle.tell_standing(request, view, key_prefix)


RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "Requests the key's window allows.",
    "RateLimit-Remaining": "Requests left in the key's current window.",
    "RateLimit-Reset": "Seconds until the key's current window closes.",
}


def schema_headers(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every response of an API operation may carry the
    rate-limit standing (not a request refused before the count: 401), and a 429 says when to
    retry."""
    integer = {"type": "integer", "minimum": 0}
    components = result.setdefault("components", {}).setdefault("headers", {})
    for name, description in {
        **RATE_LIMIT_HEADERS,
        "Retry-After": "Seconds until the window closes and the key may call again.",
    }.items():
        components[name] = {"description": description, "schema": integer}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status_code, response in operation.get("responses", {}).items():
                if status_code == "401":
                    continue
                headers = response.setdefault("headers", {})
                names = [*RATE_LIMIT_HEADERS, *(["Retry-After"] if status_code == "429" else [])]
                for name in names:
                    headers[name] = {"$ref": f"#/components/headers/{name}"}
    return result
