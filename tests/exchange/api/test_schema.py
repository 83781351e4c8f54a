"""Schemathesis against ``/api/schema/``: every operation, with examples generated from the
schema (bounded), authenticated with a key of every scope on a market with books and funds.
No response may be a server error or differ from what the schema documents.

The key's organization is a member of a portfolio pool with open demand; the pool operations
run once more with a key of the pool's sponsor, so both roles' paths are exercised."""

from decimal import Decimal

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from exchange.api.throttling import PerKeyRateThrottle
from exchange.models import Organization
from exchange.services.api_keys import api_key_create
from exchange.services.funding import deposit_test_funds
from exchange.services.participants import account_main, organization_create
from exchange.services.pools import demand_submit, pool_create, pool_fund, pool_member_add
from exchange.wsgi import application
from tests.exchange.support import place

EXAMPLES_PER_OPERATION = 25

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,  # RateLimit-*, Retry-After
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
def sponsor(db, futures, buyer):
    """A sponsor with a funded pool, of which the buyer is a member with open demand."""
    organization = organization_create(
        slug="fuzzfund", name="Fuzz Fund", kind=Organization.Kind.SPONSOR
    )
    deposit_test_funds(account=account_main(organization), amount=Decimal("100000"), actor=None)
    pool = pool_create(sponsor=organization, name="Fuzz pool", actor=None)
    pool_fund(pool=pool, amount=Decimal("50000"), actor=None)
    member = pool_member_add(pool=pool, organization=buyer.organization, actor=None)
    demand_submit(
        member=member,
        sku=futures[0].sku,
        region=futures[0].region,
        months=[futures[0].delivery_start],
        gpus=2,
        limit_price=Decimal("2.50"),
        actor=None,
    )
    return organization


@pytest.fixture
def token(db, _keep_connection, futures, call, buyer, seller, sponsor, monkeypatch):
    """A key of every scope for an account with cash, orders resting and a trade done."""
    # Rate limits are tested on their own (test_auth): here one key makes every request.
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "1000000/s")
    place(seller, futures[0], "sell", 5, "2.50")
    place(buyer, futures[0], "buy", 2, "2.50")
    place(buyer, futures[0], "buy", 3, "2.40")
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


@pytest.fixture
def sponsor_token(token, sponsor):
    """A key of every scope of the pool's sponsor (after ``token``: the same market)."""
    return api_key_create(
        organization=sponsor, name="fuzz", scopes=["read", "trade", "transfer"]
    ).token


@schema.include(path_regex="^/api/v1/pools/").parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_pool_operations_conform_to_the_schema_for_the_sponsor(case, sponsor_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {sponsor_token}"}, checks=CHECKS)
