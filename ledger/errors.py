"""Named refusals of the ledger: stable codes shown to users, as TigerBeetle's result codes."""

from enum import StrEnum


class LedgerErrorCode(StrEnum):
    AMOUNT_INVALID = "LEDGER_AMOUNT_INVALID"
    ENTRY_EMPTY = "LEDGER_ENTRY_EMPTY"
    ENTRY_UNBALANCED = "LEDGER_ENTRY_UNBALANCED"
    ENTRY_ALREADY_REVERSED = "LEDGER_ENTRY_ALREADY_REVERSED"
    ACCOUNT_CLOSED = "LEDGER_ACCOUNT_CLOSED"
    EXISTS_WITH_DIFFERENT_CONTENT = "LEDGER_EXISTS_WITH_DIFFERENT_CONTENT"
    INSUFFICIENT_FUNDS = "LEDGER_INSUFFICIENT_FUNDS"
    DEBITS_EXCEED_CREDITS = "LEDGER_DEBITS_EXCEED_CREDITS"
    CREDITS_EXCEED_DEBITS = "LEDGER_CREDITS_EXCEED_DEBITS"
    HOLD_NOT_PENDING = "LEDGER_HOLD_NOT_PENDING"
    HOLD_AMOUNT_EXCEEDED = "LEDGER_HOLD_AMOUNT_EXCEEDED"
    HOLD_ACCOUNT_NOT_IN_ENTRY = "LEDGER_HOLD_ACCOUNT_NOT_IN_ENTRY"
    KEY_INVALID = "LEDGER_KEY_INVALID"


class LedgerError(Exception):
    """An expected refusal. Nothing of the refused operation is written."""

    def __init__(self, code: LedgerErrorCode, message: str, *, field: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
