"""Working the dead-letter topic (``claims dlq``): letters listed by stage and reason, one
shown, and replayed after a fix — the original bytes sent again to the topic they came
from, under their key, where the stage that gave up reads them anew. Replay is safe to
repeat: every stage recognises an event it already processed by its id."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition

from engine.model.events import DeadLetter
from engine.runtime.kafka import make_consumer, make_producer, read_topic, started
from engine.settings import Settings
from engine.wire.codec import Codec, UndecodableEvent
from engine.wire.topics import Topic

#: How much of a reason the list shows: enough to tell reasons apart.
REASON_SHOWN = 100


@dataclass(frozen=True)
class Letter:
    """A dead letter with where it sits on the dead-letter topic (its id: ``partition:offset``)."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def letter_id(self) -> str:
        return f"{self.partition}:{self.offset}"


class ReplayError(Exception):
    """A letter that cannot be replayed (its original is gone or does not match its digest)."""


async def read_letters(settings: Settings, codec: Codec, timeout_s: float = 60.0) -> tuple[list[Letter], int]:
    """Every dead letter now on the topic, and the number of records there that are not one."""
    letters: list[Letter] = []
    unreadable = 0
    for record in await read_topic(settings, settings.topic(Topic.DEAD_LETTER), timeout_s):
        try:
            letters.append(Letter(record.partition, record.offset, codec.decode(record.value, DeadLetter)))
        except UndecodableEvent:
            unreadable += 1
    return sorted(letters, key=lambda x: (x.letter.failed_at, x.partition, x.offset)), unreadable


def matching(letters: Iterable[Letter], stage: str | None = None, reason: str | None = None,
             ids: Sequence[str] = ()) -> list[Letter]:
    """Letters of ``stage`` whose error type or reason contains ``reason`` (any case), or
    those named by id."""
    wanted = reason.lower() if reason else None
    return [
        x for x in letters
        if (stage is None or x.letter.stage == stage)
        and (wanted is None or wanted in x.letter.error_type.lower() or wanted in x.letter.reason.lower())
        and (not ids or x.letter_id in ids)
    ]


def by_stage_and_reason(letters: Iterable[Letter]) -> list[tuple[str, str, str, int]]:
    """(stage, error type, reason cut to ``REASON_SHOWN``, count), most frequent first."""
    counts = Counter((x.letter.stage, x.letter.error_type, x.letter.reason[:REASON_SHOWN]) for x in letters)
    return [(stage, error, reason, n) for (stage, error, reason), n in counts.most_common()]


async def original_of(settings: Settings, letter: DeadLetter, timeout_s: float = 30.0) -> bytes:
    """The whole original value: the letter's copy, or (cut) the record at its source offset,
    checked against the letter's digest."""
    if not letter.original_truncated:
        value = letter.original_value
    else:
        value = await _record_at(settings, TopicPartition(letter.source_topic, letter.source_partition),
                                 letter.source_offset, timeout_s)
    if hashlib.sha256(value).hexdigest() != letter.original_sha256:
        raise ReplayError(f"the original at {letter.source_topic}[{letter.source_partition}]@{letter.source_offset} "
                          "does not match the letter's digest (retention or compaction removed it?)")
    return value


async def _record_at(settings: Settings, tp: TopicPartition, offset: int, timeout_s: float) -> bytes:
    async with started(make_consumer(settings, auto_offset_reset="none")) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await asyncio.wait_for(consumer.getone(tp), timeout_s)
        if record.offset != offset or record.value is None:
            raise ReplayError(f"{tp.topic}[{tp.partition}]@{offset} is no longer there")
        value: bytes = record.value
        return value


async def replay(settings: Settings, letters: Sequence[Letter]) -> int:
    """Send each letter's original to its source topic under its key; acknowledged before
    returning. Returns how many were sent."""
    originals = [(x.letter, await original_of(settings, x.letter)) for x in letters]
    async with started(make_producer(settings, settings.bootstrap_servers)) as producer:
        futures = [await producer.send(letter.source_topic, value=value, key=letter.source_key)
                   for letter, value in originals]
        await asyncio.gather(*futures)
    return len(originals)
