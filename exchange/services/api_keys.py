"""API keys: creation, revocation, and the checks of every authenticated API request.

A key reads ``gx_<prefix>_<secret>``: the prefix (12 characters) finds the key, the secret
(43 characters, 256 random bits) proves it. The secret is shown once and never stored:

- for **bearer** authentication (``Authorization: Bearer <key>``) the server keeps the secret's
  SHA-256 digest and compares digests in constant time;
- for **HMAC signing** the client derives a signing key, ``SHA-256("gx-signing:" + secret)``,
  and signs ``<timestamp>\\n<METHOD>\\n<path with query>\\n<body>`` with HMAC-SHA256, sending
  ``X-GX-Timestamp`` (Unix seconds, with up to six decimals) and ``X-GX-Signature`` (hex)
  beside the bearer header. The server keeps that signing key encrypted with a key derived
  from ``SECRET_KEY`` (Fernet), so the database alone can neither authenticate nor sign. A
  signature is accepted within ``EXCHANGE_API_SIGNATURE_WINDOW_SECONDS`` of its timestamp,
  once: a replay within the window is refused (the cache remembers signatures for the
  window; production points it at Redis so every web process shares it). A key may require
  signing; with any key, one of the two headers without the other is refused.

Each process remembers the keys it has authenticated for ``EXCHANGE_API_KEY_CACHE_SECONDS``
(1 s by default), so a busy client's requests do not read the key row each time: the secret is
still checked against the digest on every request. Revoking a key forgets it in the revoking
process at once; other processes refuse it within that many seconds.
"""

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from typing import cast

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from exchange.errors import ApiAuthError, ApiAuthErrorCode
from exchange.feed import publish as feed_publish
from exchange.models import ApiKey, Organization
from exchange.recent import Recent
from exchange.services.audit import audit_record
from statements import Select

KEY_PREFIX = "gx"
PREFIX_LENGTH = 12
SECRET_BYTES = 32
NAME_LENGTH_MAX = 100
IP_NETWORKS_MAX = 32
LAST_USED_RESOLUTION_SECONDS = 60  # last_used_at is written at most this often per key.
# A prepared raw statement: the ORM compiled the key's query afresh at every read.
KEY_BY_PREFIX = Select(
    [ApiKey, Organization],
    "{t0} INNER JOIN {t1} ON {t1}.id = {t0}.organization_id",
    "WHERE {t0}.prefix = %s",
)
# Keys read from the database, by prefix (``exchange.recent``).
KEYS_RECENT: Recent[str, ApiKey] = Recent("EXCHANGE_API_KEY_CACHE_SECONDS")


def _fernet() -> Fernet:
    digest = hashlib.sha256(f"gx-api-keys:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def signing_key_for(secret: str) -> bytes:
    """The HMAC key a client derives from its secret."""
    return hashlib.sha256(f"gx-signing:{secret}".encode()).digest()


def signature_for(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """What a client sends as ``X-GX-Signature`` (see the module docstring)."""
    return _signature(signing_key_for(secret), timestamp, method, path, body)


def _signature(key: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
    if not scopes or unknown:
        raise ApiAuthError(
            ApiAuthErrorCode.SCOPES_INVALID,
            f"Scopes are some of {', '.join(ApiKey.Scope.values)}"
            + (f"; unknown: {', '.join(unknown)}." if unknown else "."),
            field="scopes",
        )
    return sorted(set(scopes))


def _check_networks(networks: list[str]) -> list[str]:
    if len(networks) > IP_NETWORKS_MAX:
        raise ApiAuthError(
            ApiAuthErrorCode.IP_ALLOWLIST_INVALID,
            f"At most {IP_NETWORKS_MAX} networks.",
            field="ip_allowlist",
        )
    checked = []
    for network in networks:
        try:
            checked.append(str(ipaddress.ip_network(network.strip(), strict=False)))
        except ValueError as error:
            raise ApiAuthError(
                ApiAuthErrorCode.IP_ALLOWLIST_INVALID,
                f"{network!r} is not an IP address or network.",
                field="ip_allowlist",
            ) from error
    return checked


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    token: str  # The whole key, shown once.


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    name: str,
    scopes: list[str],
    ip_allowlist: list[str] | None = None,
    require_signature: bool = False,
    actor: User | None = None,
) -> CreatedKey:
    """Create a key; the returned token is the only time its secret is seen."""
    name = name.strip()
    if not name or len(name) > NAME_LENGTH_MAX:
        raise ApiAuthError(
            ApiAuthErrorCode.NAME_INVALID, f"A name of 1 to {NAME_LENGTH_MAX} characters.", "name"
        )
    scopes = _check_scopes(scopes)
    networks = _check_networks(ip_allowlist or [])
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=prefix,
        secret_digest=_digest(secret),
        signing_key_encrypted=_fernet().encrypt(signing_key_for(secret)).decode(),
        scopes=scopes,
        ip_allowlist=networks,
        require_signature=require_signature,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(
        actor=actor,
        action="api_key.create",
        target=key,
        after={
            "organization": organization.slug,
            "name": name,
            "prefix": prefix,
            "scopes": scopes,
            "ip_allowlist": networks,
            "require_signature": require_signature,
        },
    )
    return CreatedKey(key, f"{KEY_PREFIX}_{prefix}_{secret}")


@transaction.atomic
def api_key_revoke(
    *, key: ApiKey, actor: User | None = None, api_key: ApiKey | None = None, reason: str = ""
) -> ApiKey:
    """Revoke a key at once; revoking a revoked key changes nothing. ``api_key``: the key of
    the request revoking it through the API (the audit row names it; it may be ``key``).
    ``reason``: why, for the audit row (staff revoking a customer's key say why)."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        return key
    key.revoked_at = timezone.now()
    key.revoked_by = actor if actor is not None and actor.is_authenticated else None
    key.save(update_fields=["revoked_at", "revoked_by"])
    # Forgotten now, and again at commit: a request of another thread may read the key,
    # still unrevoked, between the two.
    api_key_forget(key.prefix)
    transaction.on_commit(lambda: api_key_forget(key.prefix))
    # The key's open connections to the push feed's private channel are closed too.
    transaction.on_commit(lambda: feed_publish.key_revoked(key.pk))
    audit_record(
        actor=actor,
        action="api_key.revoke",
        target=key,
        before={"revoked": False},
        after={"revoked": True, "prefix": key.prefix},
        api_key=api_key,
        reason=reason,
    )
    return key


@dataclass(frozen=True)
class SignedRequest:
    """What signing covers: the request as it arrived."""

    method: str
    path: str  # With the query string.
    body: bytes  # Read by the API only for a request with both headers: none other is checked.
    timestamp: str | None
    signature: str | None


def api_key_authenticate(token: str, *, client_ip: str, request: SignedRequest) -> ApiKey:
    """The active key ``token`` names, after every check of the module docstring;
    ``ApiAuthError`` otherwise."""
    parts = token.split("_", 2)  # The secret (URL-safe base64) may contain "_".
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != PREFIX_LENGTH:
        raise ApiAuthError(ApiAuthErrorCode.KEY_INVALID, "The API key is malformed.")
    prefix, secret = parts[1], parts[2]
    key = _key_by_prefix(prefix)
    if key is None or not hmac.compare_digest(key.secret_digest, _digest(secret)):
        raise ApiAuthError(ApiAuthErrorCode.KEY_INVALID, "The API key is not valid.")
    if key.revoked_at is not None:
        raise ApiAuthError(ApiAuthErrorCode.KEY_REVOKED, "The API key has been revoked.")
    if key.ip_allowlist and not _allowed(client_ip, key.ip_allowlist):
        raise ApiAuthError(
            ApiAuthErrorCode.IP_NOT_ALLOWED,
            f"The API key may not be used from {client_ip}.",
            key_prefix=key.prefix,
        )
    # Either signing header means the client meant to sign: one without the other is refused
    # whatever the key requires, as the signature would have been had it come.
    if request.signature is not None or request.timestamp is not None or key.require_signature:
        _check_signature(key, request)
    _touch(key)
    return key


def _key_by_prefix(prefix: str) -> ApiKey | None:
    """The key with ``prefix`` as read at most ``EXCHANGE_API_KEY_CACHE_SECONDS`` ago."""

    def read() -> ApiKey | None:
        found = KEY_BY_PREFIX.rows([prefix])
        if not found:
            return None
        key = cast(ApiKey, found[0][0])
        key.organization = cast(Organization, found[0][1])
        return key

    return KEYS_RECENT.get(prefix, read)


def api_key_forget(prefix: str) -> None:
    """Read the key afresh at its next use in this process."""
    KEYS_RECENT.forget(prefix)


def _allowed(client_ip: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in networks)


# Unix seconds, with up to six decimals: a client sending the same request twice within a
# second (a poll, a retry with its client order id) signs two different timestamps.
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")
# A malformed timestamp's characters its refusal shows.
TIMESTAMP_SHOWN_MAX = 32
# The hex of an HMAC-SHA256, in either case (compared in lower case).
SIGNATURE_PATTERN = re.compile(r"[0-9a-fA-F]{64}")


def _check_signature(key: ApiKey, request: SignedRequest) -> None:
    # Only a key that requires signing gets here with neither header. One header without the
    # other (a signing client that dropped or misnamed one), or a timestamp in another format,
    # is the client's signing fault, not its clock's: it is said so, rather than that the key
    # requires signing or that the clock is off. A key that does not require signing used to
    # take a timestamp without its signature as an unsigned request, and the client never
    # learnt that it signed nothing.
    if request.signature is None and request.timestamp is not None:
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_INVALID,
            "X-GX-Signature is missing: a signed request sends it with X-GX-Timestamp.",
        )
    if request.signature is None:
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_REQUIRED,
            "This key requires signed requests (X-GX-Timestamp and X-GX-Signature).",
        )
    if request.timestamp is None:
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_INVALID,
            "X-GX-Timestamp is missing: a signed request sends it with X-GX-Signature.",
        )
    if not TIMESTAMP_PATTERN.fullmatch(request.timestamp):
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_INVALID,
            f"X-GX-Timestamp {request.timestamp[:TIMESTAMP_SHOWN_MAX]!r} is not a timestamp: "
            "Unix seconds with up to six decimals, as 1765031012.483920.",
        )
    if not SIGNATURE_PATTERN.fullmatch(request.signature):
        # Not one any key could have made; and one holding a character beyond ASCII (a header
        # arrives decoded as Latin-1) would make ``hmac.compare_digest`` raise: a 500.
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_INVALID,
            "X-GX-Signature is not a signature: the hex HMAC-SHA256 of the request, 64 "
            "characters 0-9 and a-f.",
        )
    window = settings.EXCHANGE_API_SIGNATURE_WINDOW_SECONDS
    if abs(time.time() - float(request.timestamp)) > window:
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_EXPIRED,
            f"X-GX-Timestamp must be within {window} seconds of the server's clock.",
        )
    try:
        signing_key = _fernet().decrypt(key.signing_key_encrypted.encode())
    except InvalidToken as error:  # SECRET_KEY changed: the key cannot sign any more.
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_INVALID, "This key cannot verify signatures."
        ) from error
    expected = _signature(
        signing_key, request.timestamp, request.method, request.path, request.body
    )
    if not hmac.compare_digest(expected, request.signature.lower()):
        raise ApiAuthError(ApiAuthErrorCode.SIGNATURE_INVALID, "The request signature is wrong.")
    # Remembered for twice the window: a timestamp up to a window ahead stays refused.
    if not cache.add(f"gx-signature:{key.prefix}:{expected}", 1, timeout=2 * window):
        raise ApiAuthError(
            ApiAuthErrorCode.SIGNATURE_REPLAYED, "This signed request was already received."
        )


def _touch(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at is None or (
        (now - key.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS
    ):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
