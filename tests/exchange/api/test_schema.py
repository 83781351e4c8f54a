"""Schemathesis against ``/api/schema/``: every operation, with examples generated from the
schema (bounded), authenticated with a key of every scope on a market with books and funds.
No response may be a server error or differ from what the schema documents."""

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from exchange.api.throttling import PerKeyRateThrottle
from exchange.services.api_keys import api_key_create
from exchange.wsgi import application
from tests.exchange.support import place

EXAMPLES_PER_OPERATION = 25

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


# Loaded when the module is collected: the schema view reads no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def _keep_connection():
    """As Django's test client does: the WSGI handler would close the test's connection (and
    its transaction) at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, _keep_connection, futures, call, buyer, seller, monkeypatch):
    """A key of every scope for an account with cash, orders resting and a trade done."""
    # Rate limits are tested on their own (test_auth): here one key makes every request.
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "1000000/s")
    place(seller, futures[0], "sell", 5, "2.50")
    place(buyer, futures[0], "buy", 2, "2.50")
    place(buyer, futures[0], "buy", 3, "2.40")
    cache.clear()  # Rate limits: the run makes many requests with one key.
    return api_key_create(
        organization=buyer.organization, name="fuzz", scopes=["read", "trade", "transfer"]
    ).token


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms_to_the_schema(case, token):
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
