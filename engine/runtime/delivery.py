"""From a stage's result to records the broker has acknowledged: each output fitted to
its topic's size limit (what does not fit becomes its source's dead letter, never an
attempt), then produced with every acknowledgement awaited. A record the broker refuses
turns into its source's dead letter; a broker that does not answer is retried with a
capped backoff. Until ``deliver`` returns, the batch's offsets must not move."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka.errors import KafkaError, KafkaTimeoutError

from engine.runtime.partition_batches import BatchProducer, PlacedRecord, key_partition, send_batches
from engine.runtime.stages import SOURCE_HEADER, Emit, SourceMessage, StageResult, dead_letter
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic, load_topics

log = logging.getLogger(__name__)

#: What a record costs a batch beyond its key and value (batch header, record framing,
#: timestamps, varints): Kafka's limit applies to the batch, so we keep this margin.
RECORD_OVERHEAD_BYTES = 512
#: Backoff between attempts while the broker does not take a batch: doubling, capped.
RETRY_FIRST_S = 0.1
RETRY_CAP_S = 5.0
#: One log line per interval while retrying, not one per attempt.
RETRY_LOG_EVERY_S = 30.0

#: ``send(topic, key, value)`` enqueues one record and returns its delivery future:
#: aiokafka's producer in the simulators, faust's in the worker.
#: Headers of a record, as aiokafka takes them.
Headers = Sequence[tuple[str, bytes]]
SendFn = Callable[[str, bytes, bytes, Headers], Awaitable[Awaitable[object]]]


class OutputTooLarge(Exception):
    """An output over its topic's ``max_message_bytes``: not attempted."""


class OutputNotEncodable(Exception):
    """An output with a value its schema cannot hold (an amount beyond its decimal): not attempted."""


class OutputRefused(Exception):
    """The broker refused an output for good (too large for the broker, invalid)."""


class DeliveryFailed(Exception):
    """Not even a source's dead letter was taken: the batch stays unacknowledged."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """One record to produce: real topic name, key and framed value; ``instead`` when it is
    its source's dead letter, sent instead of outputs that could not be delivered."""

    topic: str
    key: bytes
    value: bytes
    instead: bool = False
    headers: tuple[tuple[str, bytes], ...] = ()
    tombstone: bool = False  # a table entry's deletion: produced with no value

    @property
    def payload(self) -> bytes | None:
        return None if self.tombstone else self.value

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + RECORD_OVERHEAD_BYTES


@dataclass(frozen=True)
class OutputLimits:
    """``max_message_bytes`` per logical topic (``topics.yaml``); a topic it does not name
    gets the largest."""

    by_topic: Mapping[str, int]

    @classmethod
    def of(cls, settings: Settings) -> OutputLimits:
        return cls({name: spec.max_message_bytes for name, spec in load_topics(settings).items()})

    def limit(self, topic: str) -> int:
        return self.by_topic.get(topic) or max(self.by_topic.values())


def fit_outputs(
    stage: str,
    result: StageResult,
    codec: Codec,
    limits: OutputLimits,
    real_topic: Callable[[Topic], str],
    now: Callable[[], datetime],
) -> list[list[Outbound]]:
    """Each source message's outputs as records, encoded once; a message with an output
    that cannot be encoded (a value outside its schema's domain) or is over its topic's
    limit gets its dead letter instead of any of its outputs (half of them would leave the
    loop inconsistent, and an output that never encodes would stall the stage)."""
    fitted: list[list[Outbound]] = []
    for message, emits in result.outputs:
        records, problem = _fit_one(message, emits, codec, limits, real_topic)
        if problem is not None:  # the log says what, not the value's text (it may be PHI); the letter says all
            log.warning("%s: %s[%d]@%d dead-lettered: %s", stage, message.topic, message.partition, message.offset,
                        str(problem).split(": ", 1)[0])
            records = [_encode(dead_letter(stage, message, problem, now()), codec, real_topic, instead=True)]
        fitted.append(records)
    return fitted


def _fit_one(message: SourceMessage, emits: Sequence[Emit], codec: Codec, limits: OutputLimits,
             real_topic: Callable[[Topic], str]) -> tuple[list[Outbound], Exception | None]:
    records: list[Outbound] = []
    for n, emit in enumerate(emits):
        what = "record" if isinstance(emit.event, bytes) else type(emit.event).__name__
        try:
            record = _encode(emit, codec, real_topic, source=source_header(emit.made_from or message.at, n))
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:  # fastavro's refusals
            return [], OutputNotEncodable(f"the {what} for {emit.topic} cannot be encoded: {exc}")
        if record.size > limits.limit(emit.topic):
            return [], OutputTooLarge(f"the {what} for {emit.topic} is {record.size} bytes, over its "
                                      f"max_message_bytes {limits.limit(emit.topic)}")
        records.append(record)
    return records, None


def _encode(emit: Emit, codec: Codec, real_topic: Callable[[Topic], str], instead: bool = False,
            source: bytes | None = None) -> Outbound:
    value = emit.event if isinstance(emit.event, bytes) else codec.encode(emit.event)
    headers = ((SOURCE_HEADER, source),) if source is not None else ()
    return Outbound(real_topic(emit.topic), emit.key.encode(), value, instead, headers)


def source_header(record_at: str, n: int) -> bytes:
    """The ``SOURCE_HEADER`` of output ``n`` of the record read at ``record_at``."""
    return f"{record_at}:{n}".encode()


async def deliver(
    send: SendFn,
    batch: Sequence[tuple[SourceMessage, list[Outbound]]],
    refused: Callable[[SourceMessage, BaseException], Outbound],
    producer: Callable[[], BatchProducer] | None = None,
) -> set[int]:
    """Produce every record of ``batch`` and wait for the broker's acknowledgements.

    Per source message: all its records taken → done; one refused for good → its dead
    letter (``refused``) goes instead; the broker not answering (retriable errors, after
    the producer's own retries) → that message is sent again after a capped backoff, for
    as long as it takes (a redelivered output is recognised downstream by its id). With a
    ``producer``, records go in one batch per partition (``send_batches``); a batch refused
    for good is sent again record by record, so only the message it was for is lettered.
    Returns only when every message is delivered, with the ``id()`` of each message whose
    dead letter went instead of its outputs; raises ``DeliveryFailed`` when even a dead
    letter is refused. Cancellation (shutdown) leaves the batch unacknowledged.
    """
    pending = list(batch)
    lettered: set[int] = set()
    backoff = RETRY_FIRST_S
    first_failure: float | None = None
    last_log = 0.0
    while pending:
        if producer is None:
            outcomes = await _send_each(send, pending)
        else:
            outcomes = await _send_batched(send, producer(), pending)
        retry: list[tuple[SourceMessage, list[Outbound]]] = []
        retriable: list[BaseException] = []
        for (message, records), error in zip(pending, outcomes, strict=True):
            if error is None:
                continue
            if _retriable(error):
                retry.append((message, records))
                retriable.append(error)
            elif id(message) in lettered:
                raise DeliveryFailed(
                    f"the dead letter of {message.topic}[{message.partition}]@{message.offset} "
                    f"was refused: {type(error).__name__}"
                ) from error
            else:
                lettered.add(id(message))
                retry.append((message, [refused(message, error)]))
        pending = retry
        if retriable:
            clock = time.monotonic()
            first_failure = first_failure or clock
            if clock - last_log >= RETRY_LOG_EVERY_S:
                last_log = clock
                log.warning(
                    "broker not taking %d record group(s) for %.0fs (%s); retrying every ≤%.0fs",
                    len(retriable),
                    clock - first_failure,
                    type(retriable[0]).__name__,
                    RETRY_CAP_S,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_CAP_S)
    return lettered


async def _send_each(send: SendFn, batch: Sequence[tuple[SourceMessage, list[Outbound]]]) -> list[BaseException | None]:
    """Enqueue every record, then await all acknowledgements: per message, its first error."""
    futures: list[list[Awaitable[object]]] = []
    errors: list[BaseException | None] = []
    for _, records in batch:
        mine: list[Awaitable[object]] = []
        error: BaseException | None = None
        for record in records:
            try:
                mine.append(await send(record.topic, record.key, record.value, record.headers))
            except KafkaError as exc:  # refused before sending: too large for the producer, no metadata
                error = exc
                break
        futures.append(mine)
        errors.append(error)
    flat = [future for mine in futures for future in mine]
    results = iter(await asyncio.gather(*flat, return_exceptions=True))
    for index, mine in enumerate(futures):
        for _ in mine:
            outcome = next(results)
            if isinstance(outcome, BaseException) and errors[index] is None:
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                errors[index] = outcome
    return errors


async def _send_batched(send: SendFn, producer: BatchProducer, batch: Sequence[tuple[SourceMessage, list[Outbound]]]
                        ) -> list[BaseException | None]:
    """``_send_each`` in one batch per topic partition: per message, its first error. A batch
    refused for good (one record too large, one invalid) fails every message in it, so those
    messages are sent again one record at a time, which names the one it was."""
    records: list[PlacedRecord] = []
    owners: list[int] = []
    partitions: dict[str, int] = {}
    errors: list[BaseException | None] = [None] * len(batch)
    try:
        for index, (_, outbound) in enumerate(batch):
            for record in outbound:
                if record.topic not in partitions:
                    partitions[record.topic] = len(await producer.partitions_for(record.topic))
                records.append(PlacedRecord(record.topic, key_partition(record.key, partitions[record.topic]),
                                            record.key, record.value, record.headers))
                owners.append(index)
        handed = await send_batches(producer, records)
    except KafkaError:  # no metadata, no room: what was handed over goes on; each message is sent
        return await _send_each(send, batch)  # again alone, which names its own error
    outcomes = await asyncio.gather(*(future for _, future in handed), return_exceptions=True)
    for (members, _), outcome in zip(handed, outcomes, strict=True):
        if isinstance(outcome, asyncio.CancelledError):
            raise outcome
        if isinstance(outcome, BaseException):
            for member in members:
                errors[owners[member]] = errors[owners[member]] or outcome
    refused = [index for index, error in enumerate(errors) if error is not None and not _retriable(error)]
    if refused:
        for index, error in zip(refused, await _send_each(send, [batch[i] for i in refused]), strict=True):
            errors[index] = error
    return errors


def _retriable(error: BaseException) -> bool:
    """aiokafka marks ``KafkaTimeoutError`` (a batch expired unsent, no room in the buffer:
    the broker away for longer than the request timeout) not retriable; for us it is the
    broker not answering, not refusing, so the record is sent again rather than lettered."""
    return isinstance(error, KafkaTimeoutError) or (isinstance(error, KafkaError) and bool(error.retriable))


def refused_letter(
    stage: str, codec: Codec, real_topic: Callable[[Topic], str], now: Callable[[], datetime]
) -> Callable[[SourceMessage, BaseException], Outbound]:
    """The dead letter of a message whose output the broker refused, as a record."""

    def letter(message: SourceMessage, error: BaseException) -> Outbound:
        reason = OutputRefused(f"the broker refused an output: {type(error).__name__}")
        log.warning(
            "%s: %s[%d]@%d dead-lettered: the broker refused an output (%s)",
            stage,
            message.topic,
            message.partition,
            message.offset,
            type(error).__name__,
        )
        return _encode(dead_letter(stage, message, reason, now()), codec, real_topic, instead=True)

    return letter


async def deliver_result(
    send: SendFn,
    stage: str,
    result: StageResult,
    codec: Codec,
    limits: OutputLimits,
    real_topic: Callable[[Topic], str],
    now: Callable[[], datetime],
    producer: Callable[[], BatchProducer] | None = None,
) -> Callable[[SourceMessage], bool]:
    """``fit_outputs`` then ``deliver``: a stage's batch, acknowledged by the broker.
    Returns whether a source message's own outputs were delivered (not its dead letter
    instead): its table writes may then be applied (``StateJournal.apply``)."""
    fitted = fit_outputs(stage, result, codec, limits, real_topic, now)
    batch = [(message, records) for (message, _), records in zip(result.outputs, fitted, strict=True)]
    lettered = await deliver(send, batch, refused_letter(stage, codec, real_topic, now), producer)
    lettered |= {id(message) for message, records in batch if any(r.instead for r in records)}
    return lambda message: id(message) not in lettered
