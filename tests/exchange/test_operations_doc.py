"""docs/OPERATIONS.md, the staff runbook, names only what exists: its commands and their flags,
settings, error codes, beat entries and tasks, back-office and admin pages, and admin actions.
A rename in the code that leaves the runbook behind fails here."""

import re
from enum import StrEnum
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.management import get_commands, load_command_class
from django.urls import Resolver404, resolve

from exchange import errors, tasks
from ledger import errors as ledger_errors

RUNBOOK = Path(settings.BASE_DIR) / "docs" / "OPERATIONS.md"
CODE_PREFIXES = (
    "ORDER_|RISK_|CATALOG_|FUNDING_|STAFF_|AUTH_|API_KEY_|POOL_|LEDGER_|PARTICIPANT_|PRICING_"
)
# Environment variables the settings read without a setting of the same name.
ENVIRONMENT_ONLY = {"EXCHANGE_VAR_DIR", "EXCHANGE_DATABASE_PREPARE_THRESHOLD"}
ACTION_VERBS = (
    "Halt trading|Resume trading|Cancel the selected|Approve and|Reject the selected|Top up|"
    "Liquidate the|Close the selected|Revoke the selected"
)


@pytest.fixture(scope="module")
def text() -> str:
    return RUNBOOK.read_text()


def _spans(text: str) -> list[str]:
    """What the runbook writes in backticks."""
    return re.findall(r"`([^`\n]+)`", text)


def _codes() -> set[str]:
    enums = [
        value
        for module in (errors, ledger_errors)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
    ]
    return {str(member) for enum in enums for member in enum}


def test_every_error_code_named_exists(text):
    named = set(re.findall(rf"\b(?:{CODE_PREFIXES})[A-Z_]+\b", text))

    assert named, "the runbook names error codes"
    assert named - _codes() == set()


def test_every_setting_named_exists(text):
    named = {
        name
        for span in _spans(text)
        for name in re.findall(r"\b(?:EXCHANGE|CELERY)_[A-Z_]+\b", span)
    }

    assert named - ENVIRONMENT_ONLY - {name for name in named if hasattr(settings, name)} == set()


def test_every_command_and_flag_named_exists(text):
    commands = get_commands()
    checked = 0
    for span in _spans(text):
        match = re.search(r"manage\.py (\w+)(.*)", span)
        if match is None:
            continue
        name, rest = match.groups()
        assert name in commands, name
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        options = {option for action in parser._actions for option in action.option_strings}
        for flag in re.findall(r"--[a-z][a-z-]*", rest):
            assert flag in options, f"{name} {flag}"
            checked += 1

    assert checked >= 5


def test_every_beat_entry_and_task_named_exists(text):
    rows = re.findall(r"^\| `([a-z-]+)` \| `([a-z_]+)` \|", text, flags=re.MULTILINE)

    assert len(rows) == len(settings.CELERY_BEAT_SCHEDULE)
    for entry, task in rows:
        assert settings.CELERY_BEAT_SCHEDULE[entry]["task"] == f"exchange.tasks.{task}"
        assert hasattr(tasks, task)
    for task in re.findall(r"exchange\.tasks\.([a-z_]+)", text):
        assert hasattr(tasks, task), task


def test_every_page_named_resolves(text):
    paths = {
        span.split("?")[0]
        for span in _spans(text)
        if re.fullmatch(r"/(admin|backoffice|api-keys|stripe)/[\w/.-]*(\?[\w=&]+)?", span)
        and "..." not in span  # "/admin/..." stands for the admin's pages.
    }

    assert len(paths) > 15
    for path in sorted(paths):
        try:
            match = resolve(path)
        except Resolver404:
            pytest.fail(f"{path} does not resolve")
        # The admin's patterns take any word for an object's id, or fall through to its
        # catch-all: the runbook names pages, never an object.
        assert match.url_name is not None, path
        assert not {"object_id", "url"} & set(match.kwargs), path


def test_every_admin_action_named_exists(text):
    descriptions = {
        str(getattr(model_admin, name).short_description)
        for model_admin in admin.site._registry.values()
        for name in model_admin.actions or []
        if isinstance(name, str)
    }
    named = set(re.findall(rf'"((?:{ACTION_VERBS})[^"]*)"', " ".join(text.split())))

    assert len(named) >= 9
    assert named - descriptions == set()
