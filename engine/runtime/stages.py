"""What every stage shares, independent of the runtime that feeds it: a batch of
source messages in, the events to emit and the dead letters out.

A stage never raises for one bad event: it turns it into a ``DeadLetter`` carrying
the reason, the source topic/partition/offset and the original bytes, and goes on.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from engine.model.events import DeadLetter
from engine.runtime.staged_state import StateJournal
from engine.wire.codec import Codec, UndecodableEvent
from engine.wire.topics import Topic

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C")

DEAD_LETTER_TOPIC = Topic.DEAD_LETTER

#: The most of an original value a dead letter carries: the first bytes, with the whole
#: value's size and digest (the record itself stays at its source offset, for replay).
#: The dead-letter topic's ``max_message_bytes`` takes a letter this size (a test checks).
DEAD_LETTER_KEEP_BYTES = 512 * 1024
#: The most of a source key a dead letter carries.
DEAD_LETTER_KEY_BYTES = 1024


#: The header naming the source record an output was made from, and which of its outputs it
#: is (``topic:partition:offset:n``): the same on a redelivery, so a reader recognises one.
SOURCE_HEADER = "claimflow-source"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One consumed record, as the runtime hands it to a stage."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def at(self) -> str:
        """Where the record was read: ``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def origin(self) -> str | None:
        """The record this one was made from (its ``SOURCE_HEADER``): two records with one
        origin are one output delivered twice, not two events."""
        value = next((v for k, v in self.headers if k == SOURCE_HEADER), None)
        return value.decode(errors="replace") if value is not None else None


@dataclass(frozen=True, slots=True)
class Emit:
    """An event a stage wants produced: logical topic name, key, event."""

    topic: Topic
    key: str
    event: Any
    #: The record this output is made from when it is not the message being handled
    #: (``topic:partition:offset``: a parked coded encounter, decided by its 271). Its
    #: source header names that record, so the same record decided again after a crash
    #: (a kill between the claim's ack and its dedupe entry) is a redelivery, not a new claim.
    made_from: str | None = None


@dataclass(slots=True)
class StageResult:
    """Each source message with what the stage emits for it, in source order."""

    outputs: list[tuple[SourceMessage, list[Emit]]] = field(default_factory=list)

    @property
    def emits(self) -> list[Emit]:
        return [emit for _, emits in self.outputs for emit in emits]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [e.event for e in self.emits if e.topic == DEAD_LETTER_TOPIC]


Handler = Callable[[T, SourceMessage], Iterable[Emit]]


class ProcessingError(Exception):
    """A decoded event the stage cannot process (bad reference data, broken invariant)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def dead_letter(stage: str, message: SourceMessage, exc: BaseException, now: datetime) -> Emit:
    """The dead letter of ``message``: why, where from, and its bytes (cut beyond
    ``DEAD_LETTER_KEEP_BYTES``, with the whole value's size and SHA-256)."""
    value = message.value if message.value is not None else b""
    letter = DeadLetter(
        stage=stage,
        error_type=type(exc).__name__,
        reason=str(exc)[:1000],
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        source_key=message.key[:DEAD_LETTER_KEY_BYTES] if message.key is not None else None,
        original_value=value[:DEAD_LETTER_KEEP_BYTES],
        failed_at=now,
        original_size=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
        original_truncated=len(value) > DEAD_LETTER_KEEP_BYTES,
    )
    return Emit(DEAD_LETTER_TOPIC, message.at, letter)


def run_stage(
    stage: str,
    messages: Sequence[SourceMessage],
    codec: Codec,
    event_type: type[T],
    handler: Handler[T],
    now: Callable[[], datetime] = utcnow,
) -> StageResult:
    """Decode each message and hand it to ``handler``; failures become dead letters.

    Emits keep the order of the source messages, so per-key order is preserved. Under an
    open ``StateJournal`` each message's table writes are journalled with it, and a
    message that fails leaves none.
    """
    result = StageResult()
    journal = StateJournal.current()
    for message in messages:
        if journal is not None:
            journal.begin(message)
        try:
            event = codec.decode(message.value, event_type)
            emits = list(handler(event, message))
        except (UndecodableEvent, ProcessingError) as exc:
            if journal is not None:
                journal.discard(message)
            emits = [dead_letter(stage, message, exc, now())]
            # Offsets only: the event's content may be PHI.
            log.warning("%s: dead-lettered %s[%d]@%d: %s", stage, message.topic, message.partition,
                        message.offset, type(exc).__name__)
        except Exception as exc:  # a bug must not stop the stage: keep the event, say why
            if journal is not None:
                journal.discard(message)
            emits = [dead_letter(stage, message, exc, now())]
            log.exception("%s: unexpected error on %s[%d]@%d", stage, message.topic, message.partition,
                          message.offset)
        result.outputs.append((message, emits))
    if journal is not None:
        journal.begin(None)
    return result


@dataclass(frozen=True)
class Stage(Generic[C]):
    """A stream processor, declared: the topic it reads, the event it decodes there and the
    pure function it runs on each, given the stage's context ``C`` (its tables and reference
    data) and the batch's time. The runtime feeds it; it knows nothing of the runtime."""

    name: str
    source: Topic
    event_type: type[Any]
    handle: Callable[[C, Any, SourceMessage, datetime], Iterable[Emit]]
    #: The tables the stage reads and writes: stages that share one are run by one agent
    #: (``stage_groups``), so neither decides on an entry the other is about to change.
    state: tuple[str, ...] = ()

    def run(self, context: C, codec: Codec, messages: Sequence[SourceMessage]) -> StageResult:
        now = utcnow()
        return run_stage(self.name, messages, codec, self.event_type,
                         lambda event, message: self.handle(context, event, message, now))


def stage_groups(stages: Sequence[Stage[C]]) -> list[tuple[Stage[C], ...]]:
    """The stages that share state (a table, directly or through another stage), each group
    in declaration order; a stage with no state is a group of its own.

    A batch decides on the table entries it reads, and its writes land only once its
    outputs are acknowledged. Two agents in one worker interleave at every await, so a
    batch of one decided on an entry the other's batch was about to change: a 271 read
    before its encounter's parking landed was dropped (the encounter parked for good), and
    a resend's stale "parked" written over "decided" let the next 271 bill the encounter
    again. One agent per group reads all the group's topics, one batch at a time.
    """
    group = list(range(len(stages)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    owner: dict[str, int] = {}
    for i, stage in enumerate(stages):
        for table in stage.state:
            if table in owner:
                group[root(i)] = root(owner[table])
            else:
                owner[table] = i
    members: dict[int, list[Stage[C]]] = {}
    for i, stage in enumerate(stages):
        members.setdefault(root(i), []).append(stage)
    return [tuple(m) for m in members.values()]


def run_group(stages: Sequence[Stage[C]], context: C, codec: Codec, messages: Sequence[SourceMessage],
              topic_name: Callable[[Topic], str]) -> StageResult:
    """A batch read from the topics of a group of stages: each run of consecutive
    messages from one topic goes to that topic's stage, in source order, so a message sees
    the table writes of every message before it in the batch."""
    by_topic = {topic_name(stage.source): stage for stage in stages}
    result = StageResult()
    for topic, run in itertools.groupby(messages, key=lambda message: message.topic):
        result.outputs.extend(by_topic[topic].run(context, codec, list(run)).outputs)
    return result
