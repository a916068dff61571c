"""Table writes that wait for the outputs they stand for.

A stage's handler writes its tables as it goes (the claim id of an encounter taken on, a
parked encounter, a ledger). Written straight away, an entry could outlive its outputs: a
crash, a refused or oversized output, and the entry stayed while the claim never left, so
the encounter sent again was dropped as a duplicate of nothing. Here a batch's writes are
journalled per source message, visible to the rest of the batch, and applied to the real
tables only for the messages whose outputs the broker acknowledged; a message dead-lettered
by its handler or by delivery leaves no state behind.

Each batch agent opens its own journal (a context variable, so agents running side by side
in one event loop do not see each other's pending writes); a write outside a journal (a
timer, a test) goes straight to the table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.runtime.stages import SourceMessage


class _Deleted:
    """The pending value of a key popped in this batch."""


DELETED = _Deleted()

_current: ContextVar[StateJournal | None] = ContextVar("claimflow_state_journal", default=None)


@dataclass(slots=True)
class _Write:
    message: SourceMessage
    table: MutableMapping[str, str]
    key: str
    value: str | _Deleted


@dataclass
class StateJournal:
    """The pending table writes of one batch, in order, each with its source message."""

    writes: list[_Write] = field(default_factory=list)
    message: SourceMessage | None = None
    _view: dict[tuple[int, str], str | _Deleted] = field(default_factory=dict)

    @staticmethod
    def current() -> StateJournal | None:
        return _current.get()

    @classmethod
    @contextlib.contextmanager
    def opened(cls) -> Iterator[StateJournal]:
        """This task's journal for one batch; whatever is not applied is dropped on exit."""
        journal = cls()
        token = _current.set(journal)
        try:
            yield journal
        finally:
            _current.reset(token)

    def begin(self, message: SourceMessage | None) -> None:
        """The writes that follow belong to ``message``."""
        self.message = message

    def discard(self, message: SourceMessage) -> None:
        """Forget ``message``'s writes (its handler failed: it leaves no state)."""
        self.writes = [w for w in self.writes if w.message is not message]
        self._rebuild_view()

    def pending(self, table: MutableMapping[str, str], key: str) -> str | _Deleted | None:
        return self._view.get((id(table), key))

    def record(self, table: MutableMapping[str, str], key: str, value: str | _Deleted) -> bool:
        """Journal a write; False when no message is open (then it goes straight through)."""
        if self.message is None:
            return False
        self.writes.append(_Write(self.message, table, key, value))
        self._view[(id(table), key)] = value
        return True

    def apply(self, delivered: Callable[[SourceMessage], bool]) -> int:
        """Write to the tables what the messages whose outputs were ``delivered`` wrote, in
        order; drop the rest. Returns the number of writes applied."""
        applied = 0
        for write in self.writes:
            if not delivered(write.message):
                continue
            if isinstance(write.value, _Deleted):
                write.table.pop(write.key, None)
            else:
                write.table[write.key] = write.value
            applied += 1
        self.writes = []
        self._view = {}
        self.message = None
        return applied

    def _rebuild_view(self) -> None:
        self._view = {(id(w.table), w.key): w.value for w in self.writes}


class StagedTable(MutableMapping[str, str]):
    """A table as a stage sees it: reads see the batch's pending writes; writes are
    journalled while a journal is open, else written through."""

    def __init__(self, table: MutableMapping[str, str]) -> None:
        self.table = table

    def __getitem__(self, key: str) -> str:
        journal = _current.get()
        pending = journal.pending(self.table, key) if journal is not None else None
        if isinstance(pending, _Deleted):
            raise KeyError(key)
        if pending is not None:
            return pending
        value = self.table[key]
        if value is None:  # a faust table with default=None answers None for a missing key
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: str) -> None:
        journal = _current.get()
        if journal is None or not journal.record(self.table, key, value):
            self.table[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        journal = _current.get()
        if journal is None or not journal.record(self.table, key, DELETED):
            del self.table[key]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        journal = _current.get()
        seen: set[str] = set()
        for key in list(self.table):
            seen.add(key)
            if key in self:
                yield key
        if journal is not None:
            for write in journal.writes:
                if write.table is self.table and write.key not in seen and write.key in self:
                    seen.add(write.key)
                    yield write.key

    def __len__(self) -> int:
        return sum(1 for _ in self)
