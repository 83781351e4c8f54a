"""The matching engine: routes commands to per-instrument books and numbers the events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from matching.book import OrderBook
from matching.model import (
    Cancel,
    Command,
    Event,
    NewOrder,
    Replace,
    RestingOrder,
    Tick,
)

# Book method per command type; the engine's dispatch is one dict lookup and one call.
_BOOK_HANDLERS: dict[type, Callable[[OrderBook, Any, int, list[Event]], int]] = {
    NewOrder: OrderBook.submit,
    Cancel: OrderBook.cancel,
    Replace: OrderBook.replace,
    Tick: OrderBook.tick,
}


class Engine:
    """Deterministic price-time priority matching engine for many instruments.

    Parameters
    ----------
    start_seq : int
        Sequence number of the last event already issued; the first event gets
        ``start_seq + 1``. A restarted matcher passes its last persisted sequence number.

    Examples
    --------
    >>> from matching import Engine, NewOrder, Side
    >>> engine = Engine()
    >>> [event.seq for event in engine.process(NewOrder(1, 7, 3, Side.BUY, 10, 2350))]
    [1]
    >>> engine.book(7).best_bid()
    (2350, 10)
    """

    def __init__(self, start_seq: int = 0) -> None:
        self._seq = start_seq
        self._books: dict[int, OrderBook] = {}
        self._sorted_instruments: list[int] = []
        # Largest `now` of the engine-wide ticks; a book created later starts from it.
        self._now: int | None = None

    @property
    def seq(self) -> int:
        """Sequence number of the last event issued."""
        return self._seq

    def process(self, command: Command) -> list[Event]:
        """Apply one command and return the events it caused, in order.

        Parameters
        ----------
        command : NewOrder, Cancel, Replace or Tick

        Returns
        -------
        list of Event
            Numbered consecutively after the previous command's events.
        """
        events: list[Event] = []
        # An engine-wide tick has instrument None, which never names a book.
        book = self._books.get(command.instrument)  # type: ignore[arg-type]
        if book is None:
            self._seq = self._without_book(command, self._seq, events)
        else:
            self._seq = _BOOK_HANDLERS[type(command)](book, command, self._seq, events)
        return events

    def book(self, instrument: int) -> OrderBook:
        """The book of ``instrument``, created empty if the engine has none yet."""
        book = self._books.get(instrument)
        if book is None:
            book = self._books[instrument] = OrderBook(instrument, self._now)
            self._sorted_instruments = sorted(self._books)
        return book

    def instruments(self) -> list[int]:
        """Ids of the instruments that have a book, ascending."""
        return list(self._sorted_instruments)

    def drop(self, instrument: int) -> None:
        """Forget the book of ``instrument`` (its orders, seen order ids and clock)."""
        if self._books.pop(instrument, None) is not None:
            self._sorted_instruments = sorted(self._books)

    def restore(self, orders: Iterable[RestingOrder]) -> None:
        """Load resting orders into their books without matching and without events.

        Parameters
        ----------
        orders : iterable of RestingOrder
            In priority order within each price level (as returned by `OrderBook.orders`),
            possibly for several instruments. Order ids must be new to their book and the
            resulting books must not be crossed.
        """
        touched: dict[int, OrderBook] = {}
        for resting in orders:
            book = touched.get(resting.instrument)
            if book is None:
                book = touched[resting.instrument] = self.book(resting.instrument)
            book.restore(resting)
        for book in touched.values():
            best_bid = book.best_bid()
            best_ask = book.best_ask()
            assert best_bid is None or best_ask is None or best_bid[0] < best_ask[0], (
                f"restored book {book.instrument} is crossed"
            )

    # ----------------------------------------------------------------------------------
    # Commands that find no book.

    def _without_book(self, command: Command, seq: int, events: list[Event]) -> int:
        """Handle a command whose instrument has no book (or an engine-wide tick)."""
        if isinstance(command, Tick):
            if command.instrument is not None:
                return seq
            now = command.now
            if self._now is None or now > self._now:
                self._now = now
            books = self._books
            for instrument in self._sorted_instruments:
                seq = books[instrument].expire(now, seq, events)
            return seq
        if isinstance(command, NewOrder):
            book = self.book(command.instrument)
        else:
            # An unregistered empty book rejects a cancel or replace exactly like a
            # registered one would, without the command creating a book.
            book = OrderBook(command.instrument, self._now)
        return _BOOK_HANDLERS[type(command)](book, command, seq, events)
