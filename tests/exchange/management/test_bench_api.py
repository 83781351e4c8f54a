"""bench_api runs the production setup end to end (PostgreSQL only): gunicorn, a matcher,
client processes; it must place orders, match them, check the books and print its figures."""

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection


@pytest.mark.django_db(transaction=True)
def test_bench_api_places_and_matches_orders_through_http(postgres_only):
    out = io.StringIO()

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
        stdout=out,
    )

    lines = out.getvalue().strip().splitlines()
    assert re.fullmatch(r"orders_per_second=\d+ p99_ms=[\d.]+", lines[-1])
    assert int(re.search(r"orders_per_second=(\d+)", lines[-1]).group(1)) > 0
    statuses = re.search(r"statuses=(\{.*?\})", lines[0]).group(1)
    assert "201" in statuses and "500" not in statuses


@pytest.mark.django_db
def test_bench_api_needs_postgresql(sqlite_only):
    assert connection.vendor == "sqlite"
    with pytest.raises(CommandError, match="DATABASE_URL"):
        call_command("bench_api", "--seconds", "1")
