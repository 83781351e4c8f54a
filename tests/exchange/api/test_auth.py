"""API keys: bearer authentication, scopes, revocation, IP allow-lists, HMAC signing with its
replay window, rate limits, and sessions for signed-in members."""

import io
import threading
import time

import pytest
import redis
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from exchange.api import throttling
from exchange.api.throttling import PerKeyRateThrottle
from exchange.models import ApiKey, AuditEntry, Membership, Order
from exchange.services.api_keys import api_key_create, signature_for
from exchange.services.participants import member_add
from tests.exchange.support import statements

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"


def token_for(account, scopes=("read", "trade"), **options) -> str:
    return api_key_create(
        organization=account.organization, name="bot", scopes=list(scopes), **options
    ).token


def client_with(token: str | None = None, **extra) -> APIClient:
    client = APIClient(**extra)
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_key_authenticates_its_organization_and_its_secret_is_not_stored(buyer):
    token = token_for(buyer, scopes=("read",))

    response = client_with(token).get(ME)

    assert response.status_code == 200
    body = response.json()
    assert (body["organization"], body["account"], body["scopes"]) == (
        buyer.organization.slug,
        buyer.pk,
        ["read"],
    )
    key = ApiKey.objects.get()
    secret = token.split("_", 2)[2]
    assert key.prefix == token.split("_", 2)[1] == body["key"]
    stored = " ".join(str(value) for value in ApiKey.objects.values().get().values())
    assert secret not in stored
    assert AuditEntry.objects.filter(action="api_key.create").count() == 1


@pytest.mark.parametrize(
    "header",
    [None, "Bearer nonsense", "Bearer gx_short_x", "Token abc"],
)
def test_requests_without_a_valid_key_are_401(buyer, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(ME)

    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"AUTH_REQUIRED", "AUTH_KEY_INVALID"}
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_read_in_any_case(buyer, scheme):
    """An authentication scheme's name is case-insensitive; "bearer" was answered
    AUTH_REQUIRED, as if no key had been sent."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token_for(buyer)}")

    response = client.get(ME)

    assert response.status_code == 200, response.content
    assert response.json()["organization"] == buyer.organization.slug


def test_a_wrong_secret_is_refused(buyer):
    token = token_for(buyer)
    prefix = token.split("_", 2)[1]

    response = client_with(f"gx_{prefix}_{'x' * 43}").get(ME)

    assert error_of(response) == (401, "AUTH_KEY_INVALID")


def test_a_revoked_key_is_refused_at_once(buyer):
    doomed, admin = token_for(buyer), token_for(buyer)
    assert client_with(doomed).get(ME).status_code == 200

    revoked = client_with(admin).delete(f"/api/v1/keys/{doomed.split('_')[1]}/")

    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert error_of(client_with(doomed).get(ME)) == (401, "AUTH_KEY_REVOKED")
    # and the audit row names the key that revoked it, not only the user who made both
    audit = AuditEntry.objects.get(action="api_key.revoke")
    assert audit.after["prefix"] == doomed.split("_")[1]
    assert audit.actor_label == f"API key {admin.split('_')[1]}"
    assert audit.after["api_key"] == admin.split("_")[1]


def test_a_busy_key_is_read_once_and_its_secret_checked_every_time(buyer):
    token = token_for(buyer)
    assert client_with(token).get(ME).status_code == 200

    with statements() as run:
        again = client_with(token).get(ME)
    forged = client_with(token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")).get(ME)

    assert again.status_code == 200
    assert not [sql for sql in run if "exchange_apikey" in sql]
    assert error_of(forged) == (401, "AUTH_KEY_INVALID")


def test_a_key_revoked_by_another_process_is_refused_once_remembered_keys_expire(buyer, settings):
    settings.EXCHANGE_API_KEY_CACHE_SECONDS = 0.2
    token = token_for(buyer)
    assert client_with(token).get(ME).status_code == 200

    # another web process revokes it: this one still trusts what it read a moment ago
    ApiKey.objects.filter(prefix=token.split("_")[1]).update(revoked_at=timezone.now())
    time.sleep(0.25)

    assert error_of(client_with(token).get(ME)) == (401, "AUTH_KEY_REVOKED")


def test_keys_are_listed_without_secrets_and_only_the_organizations_own(buyer, seller):
    mine, theirs = token_for(buyer), token_for(seller)

    listed = client_with(mine).get("/api/v1/keys/").json()
    other = client_with(mine).delete(f"/api/v1/keys/{theirs.split('_')[1]}/")

    assert [key["prefix"] for key in listed] == [mine.split("_", 2)[1]]
    assert "secret_digest" not in listed[0] and "signing_key_encrypted" not in listed[0]
    assert error_of(other) == (404, "NOT_FOUND")
    assert client_with(theirs).get(ME).status_code == 200


def test_a_key_without_the_scope_is_403(buyer):
    reader = token_for(buyer, scopes=("read",))

    response = client_with(reader).delete(f"/api/v1/keys/{reader.split('_')[1]}/")

    assert error_of(response) == (403, "AUTH_SCOPE_MISSING")
    # named as the keys' scopes are (the message used to read "the ApiKey.Scope.TRADE scope")
    assert response.json()["error"]["message"] == "This key lacks the trade scope."
    assert ApiKey.objects.get().revoked_at is None


def test_an_ip_allow_list_limits_where_a_key_is_used(buyer):
    token = token_for(buyer, ip_allowlist=["10.0.0.0/8"])

    refused = client_with(token, REMOTE_ADDR="192.0.2.7").get(ME)
    allowed = client_with(token, REMOTE_ADDR="10.1.2.3").get(ME)

    assert error_of(refused) == (403, "AUTH_IP_NOT_ALLOWED")
    assert allowed.status_code == 200


def standing(response) -> tuple[str, str, str]:
    return (
        response["RateLimit-Limit"],
        response["RateLimit-Remaining"],
        response["RateLimit-Reset"],
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/orders/"),
        ("post", "/api/v1/orders/cancel-all-after/"),
        ("post", "/api/v1/orders/batch/"),
    ],
)
def test_a_key_refused_for_its_scope_is_told_its_standing_uncounted(
    buyer, monkeypatch, method, path
):
    """DRF checks the scope before the rate: the 403 used to carry no RateLimit-* headers.
    It tells the key's standing, and counts nothing."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")
    clock = [1000.0]
    monkeypatch.setattr(throttling.time, "monotonic", lambda: clock[0])
    client = client_with(token_for(buyer, scopes=("read",)))

    first = client.get(ME)
    clock[0] += 10
    refused = getattr(client, method)(path, {"orders": [{}] * 3}, format="json")
    after = client.get(ME)

    assert error_of(refused) == (403, "AUTH_SCOPE_MISSING")
    assert (standing(first), standing(refused)) == (("5", "4", "60"), ("5", "4", "50"))
    assert standing(after) == ("5", "3", "50")


def test_an_address_refused_is_told_the_keys_standing_uncounted(buyer, monkeypatch):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")
    token = token_for(buyer, ip_allowlist=["10.0.0.0/8"])
    allowed, elsewhere = (
        client_with(token, REMOTE_ADDR="10.1.2.3"),
        client_with(token, REMOTE_ADDR="192.0.2.7"),
    )

    before = elsewhere.get(ME)  # Before the key's window opens.
    first = allowed.get(ME)
    refused = elsewhere.get(ME)
    after = allowed.get(ME)

    assert error_of(before) == error_of(refused) == (403, "AUTH_IP_NOT_ALLOWED")
    assert standing(before) == ("5", "5", "60")
    assert standing(first)[:2] == ("5", "4")
    assert standing(refused)[:2] == ("5", "4")
    assert standing(after)[:2] == ("5", "3")


def test_a_session_refused_for_its_role_or_csrf_is_told_its_standing(buyer, monkeypatch):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")
    viewer = member_add(
        organization=buyer.organization,
        username="vic",
        email="v@x.example",
        password="pw-12345!",
        role=Membership.Role.VIEWER,
    )
    session, checked = APIClient(), APIClient(enforce_csrf_checks=True)
    session.force_login(viewer.user)
    checked.force_login(viewer.user)

    first = session.get(ME)
    no_role = session.post("/api/v1/orders/cancel-all/", {}, format="json")
    no_csrf = checked.post("/api/v1/orders/", {}, format="json")

    assert error_of(no_role) == (403, "AUTH_ROLE_MISSING")
    assert error_of(no_csrf) == (403, "FORBIDDEN")
    assert standing(first)[:2] == standing(no_role)[:2] == standing(no_csrf)[:2] == ("5", "4")


def signed(
    client: APIClient, token: str, method: str, path: str, *, at: int | None = None, body=b""
):
    timestamp = str(at if at is not None else int(time.time()))
    signature = signature_for(token.split("_", 2)[2], timestamp, method, path, body)
    return getattr(client, method.lower())(
        path, HTTP_X_GX_TIMESTAMP=timestamp, HTTP_X_GX_SIGNATURE=signature
    )


def test_signed_requests_are_accepted_once_within_the_window(buyer, settings):
    token = token_for(buyer, require_signature=True)
    client = client_with(token)
    now = int(time.time())

    unsigned = client.get(ME)
    first = signed(client, token, "GET", ME, at=now)
    replayed = signed(client, token, "GET", ME, at=now)
    stale = signed(
        client, token, "GET", ME, at=now - settings.EXCHANGE_API_SIGNATURE_WINDOW_SECONDS - 5
    )
    timestamp = str(now + 1)
    tampered = client.get(
        ME + "?x=1",
        HTTP_X_GX_TIMESTAMP=timestamp,
        HTTP_X_GX_SIGNATURE=signature_for(token.split("_", 2)[2], timestamp, "GET", ME, b""),
    )

    assert error_of(unsigned) == (401, "AUTH_SIGNATURE_REQUIRED")
    assert first.status_code == 200
    assert error_of(replayed) == (401, "AUTH_SIGNATURE_REPLAYED")
    assert error_of(stale) == (401, "AUTH_SIGNATURE_EXPIRED")
    assert error_of(tampered) == (401, "AUTH_SIGNATURE_INVALID")


def test_a_signed_timestamp_may_carry_a_fraction_and_nothing_else(buyer):
    token = token_for(buyer, require_signature=True)
    client = client_with(token)
    now = int(time.time())

    def sent_at(timestamp: str):
        signature = signature_for(token.split("_", 2)[2], timestamp, "GET", ME, b"")
        return client.get(ME, HTTP_X_GX_TIMESTAMP=timestamp, HTTP_X_GX_SIGNATURE=signature)

    # the same request twice within a second, with the timestamp's fraction: both accepted
    assert sent_at(f"{now}.250000").status_code == 200
    assert sent_at(f"{now}.75").status_code == 200
    # anything but Unix seconds with up to six decimals is not a timestamp, and is told so
    # (it used to be told the timestamp was outside the window, though it was the time now)
    for malformed in (
        "abc",
        f"{time.time():.9f}",
        f"{now}.1234567",
        f"{now}e0",
        f" {now}",
        "nan",
        "inf",
        f"-{now}",
    ):
        refused = sent_at(malformed)
        assert error_of(refused) == (401, "AUTH_SIGNATURE_INVALID"), malformed
        assert refused.json()["error"]["message"] == (
            f"X-GX-Timestamp {malformed!r} is not a timestamp: "
            "Unix seconds with up to six decimals, as 1765031012.483920."
        )


@pytest.mark.parametrize("require_signature", [False, True])
def test_a_signature_without_its_timestamp_is_told_the_timestamp_is_missing(
    buyer, require_signature
):
    """It used to be told the key requires signed requests, even by a key that does not."""
    client = client_with(token_for(buyer, require_signature=require_signature))

    response = client.get(ME, HTTP_X_GX_SIGNATURE="00")

    assert error_of(response) == (401, "AUTH_SIGNATURE_INVALID")
    assert response.json()["error"]["message"] == (
        "X-GX-Timestamp is missing: a signed request sends it with X-GX-Signature."
    )


@pytest.mark.parametrize("require_signature", [False, True])
def test_a_timestamp_without_its_signature_is_refused_not_taken_as_unsigned(
    buyer, require_signature
):
    """A client that meant to sign but dropped X-GX-Signature, or misnamed it, used to be
    answered as an unsigned request by a key that does not require signing: 200, and the
    client never learnt it signed nothing. Now it is refused, and nothing is done."""
    token = token_for(buyer, require_signature=require_signature)
    client = client_with(token)
    prefix = token.split("_", 2)[1]
    timestamp = str(int(time.time()))
    signature = signature_for(
        token.split("_", 2)[2], timestamp, "DELETE", f"/api/v1/keys/{prefix}/", b""
    )

    dropped = client.get(ME, HTTP_X_GX_TIMESTAMP=timestamp)
    misnamed = client.delete(
        f"/api/v1/keys/{prefix}/", HTTP_X_GX_TIMESTAMP=timestamp, HTTP_X_GX_SIGNATUR=signature
    )

    for refused in (dropped, misnamed):
        assert error_of(refused) == (401, "AUTH_SIGNATURE_INVALID")
        assert refused.json()["error"]["message"] == (
            "X-GX-Signature is missing: a signed request sends it with X-GX-Timestamp."
        )
        assert refused["WWW-Authenticate"].startswith("Bearer")
    assert ApiKey.objects.get().revoked_at is None
    # and with neither header the key answers as before: unsigned taken, or required
    unsigned = client.get(ME)
    if require_signature:
        assert error_of(unsigned) == (401, "AUTH_SIGNATURE_REQUIRED")
    else:
        assert unsigned.status_code == 200


@pytest.mark.parametrize("require_signature", [False, True])
def test_a_signature_that_is_no_hex_hmac_is_told_so_not_a_500(buyer, require_signature):
    """A header arrives decoded as Latin-1: a signature holding a character beyond ASCII made
    the comparison with the expected one raise, a 500."""
    token = token_for(buyer, require_signature=require_signature)
    client = client_with(token, raise_request_exception=False)
    timestamp = f"{time.time():.6f}"
    good = signature_for(token.split("_", 2)[2], timestamp, "GET", ME, b"")

    for malformed in ("\u00e9" * 64, good[:-1] + "\u00e9", good[:-1], good + "0", "g" * 64):
        refused = client.get(ME, HTTP_X_GX_TIMESTAMP=timestamp, HTTP_X_GX_SIGNATURE=malformed)

        assert error_of(refused) == (401, "AUTH_SIGNATURE_INVALID"), malformed
        assert refused.json()["error"]["message"] == (
            "X-GX-Signature is not a signature: the hex HMAC-SHA256 of the request, 64 "
            "characters 0-9 and a-f."
        )
    # the right one, in capitals, is still taken (and only once)
    assert (
        client.get(ME, HTTP_X_GX_TIMESTAMP=timestamp, HTTP_X_GX_SIGNATURE=good.upper()).status_code
        == 200
    )
    replayed = client.get(ME, HTTP_X_GX_TIMESTAMP=timestamp, HTTP_X_GX_SIGNATURE=good)
    assert error_of(replayed) == (401, "AUTH_SIGNATURE_REPLAYED")


def test_a_signed_body_over_the_size_limit_is_a_413_in_the_envelope(buyer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    token = token_for(buyer, require_signature=True)
    body = b'{"instrument": "' + b"x" * 2_000 + b'"}'
    timestamp = str(int(time.time()))
    signature = signature_for(token.split("_", 2)[2], timestamp, "POST", "/api/v1/orders/", body)

    response = client_with(token).post(
        "/api/v1/orders/",
        body,
        content_type="application/json",
        HTTP_X_GX_TIMESTAMP=timestamp,
        HTTP_X_GX_SIGNATURE=signature,
    )

    assert error_of(response) == (413, "PAYLOAD_TOO_LARGE")


def test_an_unsigned_body_over_the_size_limit_is_a_413_counted_with_the_keys_standing(
    buyer, settings, monkeypatch
):
    """Authentication read every bearer request's body for the signature check, signed or
    not: one over the limit was refused there, before the key was counted, without its
    RateLimit-* standing. An unsigned body is read by the view, after the count, as a
    session's or an anonymous caller's is."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")
    client = client_with(token_for(buyer))
    body = b'{"instrument": "' + b"x" * 2_000 + b'"}'

    first = client.get(ME)
    response = client.post("/api/v1/orders/", body, content_type="application/json")

    assert error_of(response) == (413, "PAYLOAD_TOO_LARGE")
    assert standing(first)[:2] == ("5", "4")
    assert standing(response)[:2] == ("5", "3")
    assert not Order.objects.exists()


def test_a_query_with_too_many_parameters_is_a_400_counted_with_the_keys_standing(
    buyer, settings, monkeypatch, caplog
):
    """Django refuses a query of more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters where the
    view first reads it, after the key is counted: its handler400 answered BAD_REQUEST
    without the key's RateLimit-* standing. It is the API's answer now, still logged."""
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")
    client = client_with(token_for(buyer), raise_request_exception=False)

    first = client.get(ME)
    refused = client.get("/api/v1/orders/?" + "&".join(f"p{n}=1" for n in range(11)))

    assert error_of(refused) == (400, "INVALID_INPUT")
    assert refused.json()["error"]["message"] == "More than 10 query parameters."
    assert standing(first)[:2] == ("5", "4")
    assert standing(refused)[:2] == ("5", "3")
    assert [r.name for r in caplog.records if r.levelname == "ERROR"] == [
        "django.security.TooManyFieldsSent"
    ]


def test_keys_are_rate_limited_with_retry_after(buyer, monkeypatch):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "3/minute")
    client, other = client_with(token_for(buyer)), client_with(token_for(buyer))

    statuses = [client.get(ME).status_code for _ in range(4)]
    limited = client.get(ME)

    assert statuses == [200, 200, 200, 429]
    assert error_of(limited) == (429, "RATE_LIMITED")
    assert 0 < int(limited["Retry-After"]) <= 60
    assert other.get(ME).status_code == 200  # Per key.


def test_a_rate_window_closes_after_its_period(buyer, monkeypatch):
    """The window opens at the key's first request and lasts the rate's period; Retry-After
    says what is left of it, and once it has passed the key may call again."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "2/minute")
    clock = [1000.0]
    monkeypatch.setattr(throttling.time, "monotonic", lambda: clock[0])
    client = client_with(token_for(buyer))

    first = client.get(ME).status_code
    clock[0] += 20
    second = client.get(ME).status_code
    clock[0] += 10
    refused = client.get(ME)
    clock[0] += 30
    reopened = client.get(ME).status_code

    assert (first, second, reopened) == (200, 200, 200)
    assert error_of(refused) == (429, "RATE_LIMITED")
    assert refused["Retry-After"] == "30"


def test_every_answer_says_the_keys_rate_limit_standing(buyer, monkeypatch):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "2/minute")
    clock = [1000.0]
    monkeypatch.setattr(throttling.time, "monotonic", lambda: clock[0])
    client = client_with(token_for(buyer))

    first = client.get(ME)
    clock[0] += 20.5
    error = client.get("/api/v1/orders/999999/")
    clock[0] += 10
    refused = client.get(ME)

    def standing(response) -> tuple[str, str, str]:
        return (
            response["RateLimit-Limit"],
            response["RateLimit-Remaining"],
            response["RateLimit-Reset"],
        )

    assert (first.status_code, standing(first)) == (200, ("2", "1", "60"))
    assert (error.status_code, standing(error)) == (404, ("2", "0", "40"))
    assert (refused.status_code, standing(refused)) == (429, ("2", "0", "30"))


def test_an_unacceptable_accept_or_format_is_counted_and_tells_the_keys_standing(
    buyer, monkeypatch
):
    """DRF chooses the answer's format before it authenticates and counts: a 406 (an Accept
    the API cannot answer) or a 400 for ?format=xml came without RateLimit-* headers and
    counted nothing, so a client looping on a bad header was never slowed. Both are answered
    after the rate limit now: counted, with the standing, in the JSON envelope."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "4/minute")
    clock = [1000.0]
    monkeypatch.setattr(throttling.time, "monotonic", lambda: clock[0])
    client = client_with(token_for(buyer))

    first = client.get(ME)
    clock[0] += 10
    html = client.get(ME, HTTP_ACCEPT="text/html")
    xml = client.get(ME, {"format": "xml"})
    last = client.get(ME)
    limited = client.get(ME, HTTP_ACCEPT="text/html")

    assert standing(first) == ("4", "3", "60")
    assert error_of(html) == (406, "NOT_ACCEPTABLE")
    assert html["Content-Type"] == "application/json"
    assert standing(html) == ("4", "2", "50")
    assert error_of(xml) == (400, "INVALID_INPUT")
    assert xml.json()["error"]["field"] == "format"
    assert standing(xml) == ("4", "1", "50")
    assert standing(last) == ("4", "0", "50")
    # Over the rate, the bad header is not looked at: the key is told to wait.
    assert error_of(limited) == (429, "RATE_LIMITED")
    assert (standing(limited), limited["Retry-After"]) == (("4", "0", "50"), "50")


def test_an_unacceptable_accept_without_a_key_is_told_the_key_is_missing(buyer):
    """Authentication comes before the answer's format (it used to be a 406): a caller
    without a key is told first that it needs one."""
    refused = APIClient().get(ME, HTTP_ACCEPT="text/html")

    assert error_of(refused) == (401, "AUTH_REQUIRED")
    assert refused["Content-Type"] == "application/json"
    assert "RateLimit-Limit" not in refused


def test_with_redis_every_process_counts_in_the_same_window(
    buyer, monkeypatch, settings, redis_url
):
    """With Redis the count is shared: a process that never saw the key's requests (here, the
    same one with its Redis client forgotten) refuses the next one, and the window's key in
    Redis expires with the window."""
    settings.REDIS_URL = redis_url
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "3/minute")
    token = token_for(buyer)
    client = client_with(token)

    statuses = [client.get(ME).status_code for _ in range(3)]
    throttling._clients.clear()
    limited = client.get(ME)

    assert statuses == [200, 200, 200]
    assert error_of(limited) == (429, "RATE_LIMITED")
    assert 0 < int(limited["Retry-After"]) <= 60
    server = redis.Redis.from_url(redis_url)
    try:
        (key,) = server.keys(throttling.KEY_PREFIX + "*")
        assert int(server.get(key)) == 3  # The refused request is not counted.
        assert 0 < server.ttl(key) <= 60
    finally:
        server.close()
        throttling._clients.clear()


def test_with_redis_concurrent_requests_are_each_counted(buyer, settings, redis_url):
    """Threads counting the same key at once (as several web processes do): every request is
    counted, none lost to another's write."""
    settings.REDIS_URL = redis_url
    barrier = threading.Barrier(8)
    counts: list[int] = []

    def hit() -> None:
        barrier.wait()
        for _ in range(25):
            counts.append(throttling.window_hit("throttle_key_key:same", 60, limit=1_000).requests)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    throttling._clients.clear()

    assert sorted(counts) == list(range(1, 201))


def test_members_signed_in_use_the_api_with_their_role(buyer, client):
    trader = member_add(
        organization=buyer.organization, username="tess", email="t@x.example", password="pw-12345!"
    )
    viewer = member_add(
        organization=buyer.organization,
        username="vic",
        email="v@x.example",
        password="pw-12345!",
        role=Membership.Role.VIEWER,
    )
    key = ApiKey.objects.filter(
        pk=api_key_create(organization=buyer.organization, name="x", scopes=["read"]).key.pk
    ).get()

    session = APIClient(enforce_csrf_checks=False)
    session.force_login(viewer.user)
    as_viewer = session.get(ME)
    refused = session.delete(f"/api/v1/keys/{key.prefix}/")
    session.force_login(trader.user)
    as_trader = session.get(ME)

    assert as_viewer.json()["scopes"] == ["read"]
    assert error_of(refused) == (403, "AUTH_ROLE_MISSING")
    assert refused.json()["error"]["message"] == (
        "Your role lacks the trade scope: a trader of the organization has it."
    )
    assert as_trader.json()["scopes"] == ["read", "trade", "transfer"]


def test_create_api_key_prints_a_working_key_once(buyer):
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "create_api_key",
        "--org",
        buyer.organization.slug,
        "--scopes",
        "read,trade",
        stdout=out,
        stderr=err,
    )

    token = out.getvalue().strip()
    assert client_with(token).get(ME).json()["scopes"] == ["read", "trade"]
    assert "shown once" in err.getvalue()
    with pytest.raises(CommandError, match="API_KEY_SCOPES_INVALID"):
        call_command("create_api_key", "--org", buyer.organization.slug, "--scopes", "admin")
    with pytest.raises(CommandError, match="No organization"):
        call_command("create_api_key", "--org", "nobody", "--scopes", "read")
