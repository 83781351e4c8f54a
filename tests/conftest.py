"""Fixtures for the whole suite."""

import os

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings

# Property tests are judged by their examples, not their speed: a busy CI machine must not turn
# a slow example into a failure (speed is measured by the benchmarks). No example database is
# written into the working tree.
hypothesis_settings.register_profile("project", deadline=None, database=None)
hypothesis_settings.load_profile("project")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Users are made by the hundred in tests: a cheap hasher (never used outside tests)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _nothing_kept_from_another_test():
    """Rows a test's process kept (``exchange.recent``) belong to that test's database state:
    the next test starts reading afresh; and no request of another test counts against a
    rate limit."""
    from exchange import recent
    from exchange.api import throttling

    recent.forget_all()
    throttling.forget_local()


@pytest.fixture(autouse=True)
def _outcome_listener_stopped():
    """A test that waited for an external matcher leaves this process listening on its own
    connection to the test database: stop it, or the database cannot be dropped at the end."""
    yield
    from exchange.matcher import outcomes

    outcomes._listener.stop()


LEDGER_APPEND_ONLY_TABLES = ("ledger_entry", "ledger_posting", "ledger_holdconsumption")


def pytest_collection_modifyitems(items):
    for item in items:
        # Tests under any browser/ directory drive Chromium (their conftests give the fixtures).
        if "/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
        marker = item.get_closest_marker("django_db")
        transactional = (marker is not None and marker.kwargs.get("transaction")) or (
            "transactional_db" in item.fixturenames
        )
        if transactional:
            item.fixturenames.append("_sqlite_ledger_flushable")


@pytest.fixture
def _sqlite_ledger_flushable(_django_db_helper):
    """Let a transactional test's flush empty the ledger on SQLite.

    SQLite's append-only triggers refuse DELETE on entries and postings, and have no session
    setting to lift them; the flush that ends a transactional test would fail. This runs before
    that flush: it empties the ledger's append-only tables with their triggers dropped, then
    creates the triggers again (a DELETE of no rows fires none). PostgreSQL's flush truncates,
    which its row triggers do not see.
    """
    yield
    if connection.vendor != "sqlite":
        return
    from importlib import import_module

    guards = import_module("ledger.migrations.0002_database_guards")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys = OFF")  # The flush that follows empties the rest.
        for table in LEDGER_APPEND_ONLY_TABLES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        for table in ("exchange_orderhold", *reversed(LEDGER_APPEND_ONLY_TABLES)):
            cursor.execute(f"DELETE FROM {table}")
        for table in LEDGER_APPEND_ONLY_TABLES:
            for statement in guards.SQLITE_APPEND_ONLY:
                cursor.execute(statement.format(table=table))
        cursor.execute("PRAGMA foreign_keys = ON")
