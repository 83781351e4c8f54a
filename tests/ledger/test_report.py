"""``ledger_report``: the trial balance and an account's statement, as staff read them."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ledger import services

pytestmark = pytest.mark.django_db


def report(*arguments: str) -> str:
    out = StringIO()
    call_command("ledger_report", *arguments, stdout=out)
    return out.getvalue()


def test_trial_balance_lists_accounts_and_nets_to_zero(alice, bank, usd):
    text = report()

    assert usd.code in text
    assert alice.code in text and bank.code in text
    totals = [line for line in text.splitlines() if "total (must be zero)" in line]
    assert totals and all(line.split()[-1] == "0.00" for line in totals)  # usd has scale 2.


def test_statement_shows_each_posting_with_the_running_balance(alice, bob, usd):
    services.entry_post(
        key="pay-1", description="first payment", postings=[(alice, 100), (bob, -100)]
    )
    services.entry_post(
        key="pay-2", description="second payment", postings=[(alice, 50), (bob, -50)]
    )

    text = report("--statement", bob.code)

    lines = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert [("first payment" in lines[0]), ("second payment" in lines[1])] == [True, True]
    # Credits of 100 then 50 hundredths: the running balance ends at -1.50 (scale 2).
    assert lines[0].split()[-1] == "-1.00"
    assert lines[1].split()[-1] == "-1.50"


def test_statement_of_an_unknown_account_is_a_named_refusal(db):
    with pytest.raises(CommandError, match="No ledger account 'nope'"):
        report("--statement", "nope")
