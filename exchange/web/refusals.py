"""A service's refusal as the pages write it: its message and its stable code, the one the API
answers and the docs list, so that a user can look it up or quote it (the ticket, capacity and
pool pages wrote the code; funding, team, API keys, sign-up, hedging and order cancels and
amends wrote the message alone)."""

from exchange.errors import ExchangeError


def refusal_text(error: ExchangeError) -> str:
    return f"{error.message} ({error.code})"
