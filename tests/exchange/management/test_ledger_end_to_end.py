"""The demo market end to end: seeding, trading, then the books checked and exported."""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from exchange.models import Trade
from ledger.models import Entry
from ledger.selectors import ledger_problems

BEAN_CHECK = Path(sys.executable).parent / "bean-check"

pytestmark = pytest.mark.django_db


def test_demo_trading_leaves_books_that_check_and_export(tmp_path):
    # given the demo market, funded, after 2,000 random orders
    call_command("seed_demo", stdout=StringIO())
    call_command("simulate_market", orders=2000, seed=11, stdout=StringIO())
    assert Trade.objects.count() > 100
    assert Entry.objects.exists()

    # when the books are checked and exported
    check_output = StringIO()
    call_command("ledger_check", stdout=check_output)
    export = tmp_path / "books.beancount"
    call_command("ledger_export", format="beancount", output=str(export), stderr=StringIO())

    # then both the ledger's own check and Beancount's accept them
    assert ledger_problems() == []
    assert check_output.getvalue().startswith("ledger ok")
    result = subprocess.run(
        [str(BEAN_CHECK), str(export)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
