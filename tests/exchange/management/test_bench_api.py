"""bench_api runs the production setup end to end (PostgreSQL only): gunicorn, a matcher,
client processes; it must place orders, match them, check the books and print its figures."""

import ast
import io
import re

import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import connection

from tests.exchange.support import free_port


def _run(*options: str) -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "bench_api",
        "--clients",
        "2",
        "--seconds",
        "2",
        "--workers",
        "2",
        "--instruments",
        "1",
        *options,
        stdout=out,
        stderr=err,
    )
    return out.getvalue().strip().splitlines(), err.getvalue()


def _assert_placed(lines: list[str]) -> None:
    assert re.fullmatch(r"orders_per_second=\d+ p99_ms=[\d.]+", lines[-1])
    assert int(re.search(r"orders_per_second=(\d+)", lines[-1]).group(1)) > 0
    statuses = re.search(r"statuses=(\{.*?\})", lines[0]).group(1)
    assert "201" in statuses and "500" not in statuses


@pytest.mark.django_db(transaction=True)
def test_bench_api_places_and_matches_orders_through_http(postgres_only):
    lines, err = _run("--redis", "")

    _assert_placed(lines)
    assert "feed=in-process" in lines[0]
    assert "No Redis" in err


@pytest.mark.django_db(transaction=True)
def test_bench_api_with_redis_publishes_the_feed_there(postgres_only, redis_url):
    """With Redis the servers' cache and the matcher's feed go through it, as in production:
    Redis counted the rate limit's script (EVALSHA, each request) and the feed's group sends
    (ZRANGE of a group's members, each matcher batch). The clients send batches of four orders
    here (the other run sends one per request): statuses count orders, requests count
    batches."""
    lines, err = _run("--redis", redis_url, "--batch", "4")

    _assert_placed(lines)
    assert "feed=redis" in lines[0] and "batch=4" in lines[0]
    statuses = ast.literal_eval(re.search(r"statuses=(\{.*?\})", lines[0]).group(1))
    assert sum(statuses.values()) == 4 * int(re.search(r"requests=(\d+)", lines[0]).group(1))
    assert "No Redis" not in err
    client = redis.Redis.from_url(redis_url)
    try:
        commands = client.info("commandstats")
    finally:
        client.close()
    requests = int(re.search(r"requests=(\d+)", lines[0]).group(1))
    assert commands["cmdstat_evalsha"]["calls"] >= requests, commands
    assert commands["cmdstat_zrange"]["calls"] > 0, commands


def test_bench_api_refuses_a_batch_the_api_would_refuse(db):
    with pytest.raises(CommandError, match="--batch"):
        call_command("bench_api", "--seconds", "1", "--batch", "21")


@pytest.mark.django_db(transaction=True)
def test_bench_api_refuses_a_redis_that_does_not_answer(postgres_only):
    with pytest.raises(CommandError, match="does not answer"):
        call_command("bench_api", "--seconds", "1", "--redis", f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.django_db
def test_bench_api_needs_postgresql(sqlite_only):
    assert connection.vendor == "sqlite"
    with pytest.raises(CommandError, match="DATABASE_URL"):
        call_command("bench_api", "--seconds", "1")
