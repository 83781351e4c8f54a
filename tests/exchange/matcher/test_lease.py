"""Shard leases: two matchers never own one shard."""

from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from exchange.matcher.lease import (
    ADVISORY_LOCK_SHARD_COUNT_CLASS,
    FileShardLease,
    PostgresShardLease,
    ShardCountMismatch,
    ShardTaken,
    shard_lease,
)
from exchange.services.orders import order_place


@pytest.fixture
def leases():
    """Leases the test acquires, released at the end whatever happens."""
    held = []
    yield held
    for lease in held:
        lease.release()


def acquired(leases, lease):
    leases.append(lease)
    lease.acquire()
    return lease


def test_file_lease_is_exclusive_per_shard(var_dir, leases):
    # given
    first = acquired(leases, FileShardLease(0, 1))

    # when a second matcher asks for the same shard
    second = FileShardLease(0, 1)
    leases.append(second)
    with pytest.raises(ShardTaken):
        second.acquire()

    # then another shard is free, and the shard is free again once released
    acquired(leases, FileShardLease(1, 2))
    first.release()
    second.acquire()
    assert (var_dir / "matcher-shard-0.lock").exists()


@pytest.mark.django_db
def test_shard_lease_fits_the_database(var_dir):
    lease = shard_lease(0, 1)

    expected = PostgresShardLease if connection.vendor == "postgresql" else FileShardLease
    assert type(lease) is expected
    assert (lease.shard, lease.shards) == (0, 1)


@pytest.mark.django_db(transaction=True)
def test_postgres_lease_is_exclusive_per_shard(postgres_only, leases):
    first = acquired(leases, PostgresShardLease(0, 1))

    second = PostgresShardLease(0, 1)
    leases.append(second)
    with pytest.raises(ShardTaken):
        second.acquire()

    first.release()
    second.acquire()  # Released: the shard can be taken again.


@pytest.mark.django_db(transaction=True)
def test_postgres_lease_refuses_a_different_shard_count(postgres_only, leases):
    acquired(leases, PostgresShardLease(0, 1))

    mismatched = PostgresShardLease(1, 2)
    leases.append(mismatched)
    with pytest.raises(ShardCountMismatch):
        mismatched.acquire()


@pytest.mark.django_db(transaction=True)
def test_postgres_lease_ignores_the_matchers_of_another_database(postgres_only, leases):
    # given a matcher of another exchange on the same server (another database) holding its
    # shard count's lock for one shard
    database = settings.DATABASES["default"]
    other = psycopg.connect(
        dbname="postgres" if database["NAME"] != "postgres" else "template1",
        user=database.get("USER") or None,
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        autocommit=True,
    )
    try:
        other.execute(
            "SELECT pg_advisory_lock_shared(%s, %s)", [ADVISORY_LOCK_SHARD_COUNT_CLASS, 1]
        )

        # then this exchange's matchers may run with another shard count
        acquired(leases, PostgresShardLease(1, 2))
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_postgres_leases_of_one_shard_count_coexist(postgres_only, leases):
    acquired(leases, PostgresShardLease(0, 2))
    acquired(leases, PostgresShardLease(1, 2))

    with pytest.raises(ShardCountMismatch):
        acquired(leases, PostgresShardLease(0, 1))
    with pytest.raises(ShardTaken):
        acquired(leases, PostgresShardLease(1, 2))


@pytest.mark.django_db(transaction=True)
def test_postgres_lease_is_woken_by_committed_commands(
    postgres_only, leases, external_matcher, future, buyer
):
    lease = acquired(leases, PostgresShardLease(0, 1))
    assert lease.wait(0.01) == set()

    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=1)

    assert lease.wait(2) == {future.pk}
