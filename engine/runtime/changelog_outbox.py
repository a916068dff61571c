"""The changelog records of a faust app's tables, in the order they were written, sent in
one batch per partition instead of one producer call per record."""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Callable
from typing import Any

from engine.runtime.partition_batches import BatchProducer, PlacedRecord, send_batches

log = logging.getLogger(__name__)


#: A table entry written (a value) or deleted (``None``, a tombstone), in its changelog partition.
ChangelogRecord = PlacedRecord


class ChangelogFailed(Exception):
    """A changelog record was not acknowledged: the tables in memory are ahead of their
    changelogs, and no batch may be acknowledged on them any more."""


class ChangelogOutbox:
    """Changelog records taken in call order and handed to the producer in batches.

    A table write is synchronous (``table[key] = value``), so its record waits here until a
    flush. Flushes take turns: each hands over everything written before it, so a
    partition's records reach the log in the order they were written, whoever wrote them (a
    batch agent, a timer). ``flush`` returns once every record written before it was called
    is acknowledged by the broker. A record that is not stops the outbox for good
    (``on_failure`` is told once, every flush raises ``ChangelogFailed``), as faust's own
    producer buffer crashes its app: the process restarts and restores its tables from
    what the changelogs hold.

    faust's own path queues each record for a task that produces it alone (and, past 100
    queued, makes the writer wait for them one by one): about a tenth of the payer's CPU.
    """

    def __init__(self, producer: Callable[[], BatchProducer],
                 on_failure: Callable[[BaseException], None] = lambda exc: None) -> None:
        self._producer = producer
        self._on_failure = on_failure
        self._pending: list[ChangelogRecord] = []
        self._in_flight: list[asyncio.Future[Any]] = []
        self._turn = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def pending(self) -> list[ChangelogRecord]:
        """The records written and not yet handed to the producer."""
        return list(self._pending)

    def put(self, record: ChangelogRecord) -> None:
        """Take ``record``; it is sent by the next flush (one is started soon if nobody asks)."""
        self._pending.append(record)
        if self._background is None or self._background.done():
            try:
                self._background = asyncio.get_running_loop().create_task(self._flush_in_background())
            except RuntimeError:  # no loop: a table written outside the app (a test), flushed by hand
                self._background = None

    async def flush(self) -> None:
        """Send what was written so far and wait until the broker has all of it."""
        async with self._turn:
            self._raise_if_failed()
            taken, self._pending = self._pending, []
            if taken:
                try:
                    self._in_flight.extend(future for _, future in await send_batches(self._producer(), taken))
                except Exception as exc:  # not handed over: those records are gone
                    self._fail(exc)
            waiting = list(self._in_flight)
        if waiting:
            await asyncio.wait(waiting)  # a cancelled flush leaves the records in flight
            self._in_flight = [future for future in self._in_flight if not future.done()]
            for future in waiting:
                if future.cancelled():
                    self._fail(asyncio.CancelledError("a changelog batch was cancelled"))
                elif future.exception() is not None:
                    self._fail(typing.cast(BaseException, future.exception()))
        self._raise_if_failed()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            log.error("a changelog record was not acknowledged (%s): the tables are ahead of their changelogs",
                      type(exc).__name__)
            self._on_failure(exc)
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise ChangelogFailed(f"a changelog record was not acknowledged: {type(self._failure).__name__}"
                                  ) from self._failure

    async def _flush_in_background(self) -> None:
        await asyncio.sleep(0)  # the rest of the writer's synchronous writes come along
        try:
            await self.flush()
        except ChangelogFailed:  # told to on_failure; whoever waits for these records raises too
            pass
