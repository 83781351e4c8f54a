import re
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.export import (
    ACCOUNT_COMPONENT,
    COMMODITY_NAME,
    account_name,
    account_names,
    commodity_name,
    commodity_names,
    format_amount,
)
from ledger.models import Account
from tests.ledger.test_selectors import GPU_CODE, SLOT_CODE, build_ledger

BEAN_CHECK = Path(sys.executable).parent / "bean-check"
ROOTS = {"Assets", "Liabilities", "Equity", "Income", "Expenses"}


def bean_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BEAN_CHECK), str(path)], capture_output=True, text=True, timeout=120, check=False
    )


def export(tmp_path: Path, *args: str) -> tuple[Path, str]:
    path = tmp_path / "ledger.beancount"
    call_command(
        "ledger_export", "--format", "beancount", "--output", str(path), *args, stderr=StringIO()
    )
    return path, path.read_text()


def assert_valid_account_name(name: str) -> None:
    root, *components = name.split(":")
    assert root in ROOTS
    assert components
    for component in components:
        assert ACCOUNT_COMPONENT.fullmatch(component), name


@pytest.mark.django_db
def test_export_passes_bean_check(tmp_path):
    ledger = build_ledger()
    path, text = export(tmp_path)
    result = bean_check(path)
    assert result.returncode == 0, result.stdout + result.stderr + text
    assert 'option "operating_currency" "USD"' in text
    assert f'code: "{GPU_CODE}"' in text
    assert f'code: "{SLOT_CODE}"' in text
    assert text.count(" * ") == len(ledger.entries)
    for entry in ledger.entries.values():
        assert f"ledger_entry: {entry.pk}\n" in text
    assert text.count(" balance ") == len(ledger.accounts)
    assert text.count(" open ") == len(ledger.accounts)
    # Exact decimals: 2.000001 dollars of cloud costs, 2.5 calls as 2.500.
    assert "Expenses:Exchange:Cloud-costs  2.000001 USD" in text
    assert re.search(r"Assets:Customer:Bob:Position  2\.500 H100SXM", text)
    assert 'Deposit \\"alice\\"' in text
    assert f"ledger_reverses: {ledger.entries['fee'].pk}\n" in text


@pytest.mark.django_db
def test_export_to_stdout(tmp_path):
    build_ledger()
    out = StringIO()
    call_command("ledger_export", stdout=out)
    path = tmp_path / "stdout.beancount"
    path.write_text(out.getvalue())
    result = bean_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_account_export_passes_bean_check(tmp_path):
    ledger = build_ledger()
    alice = ledger.accounts["alice"]
    path, text = export(tmp_path, "--account", alice.code)
    result = bean_check(path)
    assert result.returncode == 0, result.stdout + result.stderr + text
    # Only the entries touching alice's cash, with all their postings and accounts.
    touching = {e.pk for e in ledger.entries.values() if e.postings.filter(account=alice).exists()}
    assert set(map(int, re.findall(r"ledger_entry: (\d+)", text))) == touching
    assert text.count(" balance ") == 1
    assert "balance Liabilities:Customer:Alice:Cash  -580.000000 ~ 0 USD" in text
    assert "open Assets:Customer:Bob:Position" in text  # Touched by the trade.
    assert "open Income:Exchange:Fees" in text  # Touched by the fee.
    assert "Equity:Exchange:Slots" not in text


@pytest.mark.django_db
def test_several_accounts_export(tmp_path):
    ledger = build_ledger()
    codes = [ledger.accounts["bob_slots"].code, ledger.accounts["cloud"].code]
    path, text = export(tmp_path, "--account", codes[0], "--account", codes[1])
    result = bean_check(path)
    assert result.returncode == 0, result.stdout + result.stderr + text
    assert text.count(" balance ") == 2
    assert text.count(" * ") == 2


@pytest.mark.django_db
def test_unknown_account_is_refused(tmp_path):
    with pytest.raises(CommandError, match="nope"):
        export(tmp_path, "--account", "nope")

    # and nothing is left behind: neither the file nor a half-written one beside it
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_an_output_in_a_folder_that_does_not_exist_is_refused_by_name(tmp_path):
    build_ledger()
    output = tmp_path / "missing" / "ledger.beancount"

    with pytest.raises(CommandError) as raised:
        call_command("ledger_export", "--output", str(output), stderr=StringIO())

    assert str(raised.value) == f"--output {output}: No such file or directory"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_corrupted_total_fails_bean_check(tmp_path):
    ledger = build_ledger()
    bob = ledger.accounts["bob"]
    # One smallest unit off: the export's zero tolerance catches it.
    Account.objects.filter(pk=bob.pk).update(credits_posted=bob.credits_posted + 1)
    path, _ = export(tmp_path)
    result = bean_check(path)
    assert result.returncode != 0
    assert "Liabilities:Customer:Bob:Cash" in result.stdout + result.stderr


def test_commodity_names_are_valid_deterministic_and_unique():
    codes = [
        "USD",
        "EUR",
        GPU_CODE,
        SLOT_CODE,
        "usd",
        "U",
        "1X",
        "A" * 64,
        "A" * 65,
        "H100:SXM",
        "H100-SXM",
        "H100_SXM",
        "X-",
        "É",
        "",
    ]
    names = commodity_names(codes)
    assert names == commodity_names(list(reversed(codes)))
    assert len(set(names.values())) == len(codes)
    for code, name in names.items():
        assert COMMODITY_NAME.fullmatch(name), (code, name)
        assert commodity_name(code) == commodity_name(code)
    assert names["USD"] == "USD"
    assert names["H100-SXM"] == "H100-SXM"
    assert names[GPU_CODE].startswith("H100SXM-USEAST")
    # A valid code that happens to equal another code's hashed name gets a longer hash.
    clash = commodity_name("usd")
    names = commodity_names(["usd", clash])
    assert names[clash] == clash and names["usd"] != clash
    assert COMMODITY_NAME.fullmatch(names["usd"])


def test_account_names_are_valid_deterministic_and_unique():
    pairs = [
        ("exchange:bank", "asset"),
        ("customer:alice:cash", "liability"),
        ("customer:Alice:cash", "liability"),
        ("customer:alice_x:cash", "liability"),
        ("customer:alice-x:cash", "liability"),
        ("customer::cash", "liability"),
        ("_odd:-dash:9lives", "equity"),
        ("ünï:cödé", "income"),
        ("fees", "income"),
        ("costs", "expense"),
    ]
    names = account_names(pairs)
    assert names == account_names(list(reversed(pairs)))
    assert len(set(names.values())) == len(pairs)
    for name in names.values():
        assert_valid_account_name(name)
    assert names["exchange:bank"] == "Assets:Exchange:Bank"
    assert account_name("fees", "income") == "Income:Fees"
    assert account_name("costs", "expense") == "Expenses:Costs"


def test_format_amount_is_exact():
    assert format_amount(-1_500_000, 6) == "-1.500000"
    assert format_amount(1, 6) == "0.000001"
    assert format_amount(7, 0) == "7"
    assert format_amount(2**62 - 1, 6) == "4611686018427.387903"
    assert Decimal(format_amount(123_456_789, 3)) == Decimal("123456.789")


@pytest.mark.django_db(transaction=True)
def test_export_in_its_own_transaction(tmp_path):
    """Outside a transaction the export opens its own: a read-only snapshot on PostgreSQL.

    Transactional on SQLite too: tests/conftest.py lets the flush empty the ledger."""
    build_ledger()
    path, text = export(tmp_path)
    result = bean_check(path)
    assert result.returncode == 0, result.stdout + result.stderr + text
