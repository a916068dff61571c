"""Exactly-once for a stage run on aiokafka: a batch's outputs and its input offsets are
committed in one Kafka transaction, per input partition, so a ``read_committed`` reader
sees each output once however often the stage crashed between producing and committing.

Each owned input partition has its own transactional producer, with an id made of the
group and the partition (aiokafka's ``send_offsets_to_transaction`` sends the bare group
id, so fencing comes from the id alone): whoever starts a producer with that id fences
the previous owner's and aborts its open transaction. Why the faust worker is not run
this way is in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from engine.runtime.delivery import (
    RETRY_CAP_S,
    RETRY_FIRST_S,
    RETRY_LOG_EVERY_S,
    DeliveryFailed,
    Outbound,
    OutputLimits,
    _retriable,
    fit_outputs,
    refused_letter,
)
from engine.runtime.stages import SourceMessage, StageResult
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

log = logging.getLogger(__name__)

EXACTLY_ONCE = "exactly_once"


def transactional_id(group_id: str, tp: TopicPartition) -> str:
    return f"{group_id}.{tp.topic}.{tp.partition}"


@dataclass
class PartitionProducers(ConsumerRebalanceListener):  # type: ignore[misc]
    """A started transactional producer per input partition this member owns; a revoked
    partition's producer is stopped (the new owner's start fences it anyway)."""

    make: Callable[[str], AIOKafkaProducer]
    group_id: str

    def __post_init__(self) -> None:
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}

    async def for_partition(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self.producers.get(tp)
        if producer is None:
            producer = self.make(transactional_id(self.group_id, tp))
            try:
                await producer.start()  # InitProducerId: fences the id's last owner, aborts its transaction
            except BaseException:
                await producer.stop()
                raise
            self.producers[tp] = producer
        return producer

    async def drop(self, tp: TopicPartition) -> None:
        producer = self.producers.pop(tp, None)
        if producer is not None:
            await producer.stop()

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        for tp in revoked:
            await self.drop(tp)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Producers start on a partition's first batch."""

    async def close(self) -> None:
        for tp in list(self.producers):
            await self.drop(tp)


class Fenced(Exception):
    """Another member took the partition over: this batch is its to process."""


async def commit_in_transaction(producer: AIOKafkaProducer, group_id: str, records: Sequence[Outbound],
                                offsets: dict[TopicPartition, int]) -> None:
    """Produce ``records`` and move ``offsets`` in one transaction; every record's
    acknowledgement is awaited before the commit, and any failure aborts all of it (a
    refused record fails only its own send future: aiokafka would commit the rest)."""
    try:
        async with producer.transaction():
            sent = [await producer.send(record.topic, value=record.payload, key=record.key,
                                        headers=list(record.headers) or None) for record in records]
            await asyncio.gather(*sent)
            await producer.send_offsets_to_transaction(offsets, group_id)
    except ProducerFenced as fenced:
        raise Fenced(str(fenced)) from fenced


@dataclass
class Delivered:
    """What became of a batch delivered in transactions: the partitions another member
    fenced this one out of, and the messages (by ``id``) whose dead letter went instead of
    their outputs."""

    fenced: list[TopicPartition] = field(default_factory=list)
    lettered: set[int] = field(default_factory=set)

    def committed(self, message: SourceMessage) -> bool:
        """Whether ``message``'s outputs (and state) were committed."""
        return (id(message) not in self.lettered
                and TopicPartition(message.topic, message.partition) not in self.fenced)


@dataclass
class TransactionalDelivery:
    """``fit_outputs`` then one transaction per input partition of a batch. A transaction
    that fails is aborted and its partition's messages go again one transaction each: a
    message whose output the broker refuses for good gets its dead letter instead, one the
    broker does not answer is retried with a capped backoff."""

    producers: PartitionProducers
    stage: str
    codec: Codec
    limits: OutputLimits
    real_topic: Callable[[Topic], str]
    now: Callable[[], datetime]

    async def deliver(self, result: StageResult,
                      state: Callable[[SourceMessage], list[Outbound]] = lambda message: []) -> Delivered:
        """Commit the batch, each message's outputs with its ``state`` records (its table
        entries, as changelog records) unless it is dead-lettered instead. Says which
        partitions another member fenced this one out of (not committed here) and which
        messages went to their dead letter (they leave no state)."""
        fitted = fit_outputs(self.stage, result, self.codec, self.limits, self.real_topic, self.now)
        by_partition: dict[TopicPartition, list[tuple[SourceMessage, list[Outbound]]]] = {}
        delivered = Delivered()
        for (message, _), records in zip(result.outputs, fitted, strict=True):
            if any(record.instead for record in records):
                delivered.lettered.add(id(message))
            else:
                records = records + state(message)
            by_partition.setdefault(TopicPartition(message.topic, message.partition), []).append((message, records))
        for tp, batch in by_partition.items():
            try:
                await self._partition(tp, batch, delivered)
            except Fenced as reason:
                log.warning("%s: fenced out of %s[%d] by another member (%s)", self.stage, tp.topic, tp.partition,
                            reason)
                delivered.fenced.append(tp)
        return delivered

    async def _partition(self, tp: TopicPartition, batch: list[tuple[SourceMessage, list[Outbound]]],
                         delivered: Delivered) -> None:
        records = [record for _, mine in batch for record in mine]
        try:
            await self._commit(tp, records, batch[-1][0].offset + 1)
            return
        except KafkaError as error:
            log.warning("%s: the transaction of %d message(s) from %s[%d] was aborted (%s); one by one now",
                        self.stage, len(batch), tp.topic, tp.partition, type(error).__name__)
        letter = refused_letter(self.stage, self.codec, self.real_topic, self.now)
        for message, mine in batch:
            if await self._one(tp, message, mine, letter):
                delivered.lettered.add(id(message))

    async def _one(self, tp: TopicPartition, message: SourceMessage, records: list[Outbound],
                   letter: Callable[[SourceMessage, BaseException], Outbound]) -> bool:
        """One message in its own transaction; True when its dead letter went instead."""
        backoff, first_failure, last_log, lettered = RETRY_FIRST_S, time.monotonic(), 0.0, False
        while True:
            try:
                await self._commit(tp, records, message.offset + 1)
                return lettered
            except KafkaError as error:
                if not _retriable(error):
                    if lettered:
                        raise DeliveryFailed(f"the dead letter of {tp.topic}[{tp.partition}]@{message.offset} "
                                             f"was refused: {type(error).__name__}") from error
                    records, lettered = [letter(message, error)], True
                    continue
                clock = time.monotonic()
                if clock - last_log >= RETRY_LOG_EVERY_S:
                    last_log = clock
                    log.warning("broker not taking a transaction for %.0fs (%s); retrying every ≤%.0fs",
                                clock - first_failure, type(error).__name__, RETRY_CAP_S)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_CAP_S)

    async def _commit(self, tp: TopicPartition, records: Sequence[Outbound], next_offset: int) -> None:
        producer = await self.producers.for_partition(tp)
        try:
            await commit_in_transaction(producer, self.producers.group_id, records, {tp: next_offset})
        except KafkaError:
            if producer._txn_manager.is_fatal_error():  # unusable: the next attempt starts a new one
                await self.producers.drop(tp)
            raise
        except Fenced:
            await self.producers.drop(tp)
            raise


async def consume_transactionally(consumer: AIOKafkaConsumer, delivery: TransactionalDelivery,
                                  process: Callable[[Sequence[SourceMessage]], StageResult],
                                  stop: asyncio.Event, timeout_ms: int = 200) -> None:
    """getmany → process → one transaction per partition, until ``stop``. A batch whose
    partition was taken over (fenced) is left to the new owner: this member seeks back, and
    reads it again only if the partition is still its own after the rebalance."""
    from engine.runtime.kafka import source_message

    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        if not batches:
            continue
        messages = [source_message(r) for records in batches.values() for r in records]
        for tp in (await delivery.deliver(process(messages))).fenced:
            if tp in consumer.assignment():
                consumer.seek(tp, batches[tp][0].offset)


def exactly_once_settings(settings: Settings) -> Settings:
    """Transactions need an idempotent producer; a broker that refuses one cannot do them."""
    if settings.idempotence == "off":
        raise RuntimeError("CLAIMS_PROCESSING_GUARANTEE=exactly_once needs transactions, and this broker refuses "
                           "idempotent producers (Tansu does; BROKER.md): run on Apache Kafka, or at_least_once")
    return replace(settings, idempotence="on")
