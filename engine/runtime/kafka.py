"""aiokafka plumbing shared by the simulators, the read-back monitor and the CLI:
producer/consumer factories tuned for Tansu, and producing a stage's emits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from engine.runtime import kafka_compat
from engine.runtime.stages import Emit, SourceMessage
from engine.settings import Settings
from engine.wire.codec import Codec, UndecodableEvent
from engine.wire.topics import Topic

kafka_compat.apply()


def make_producer(settings: Settings, bootstrap_servers: str) -> AIOKafkaProducer:
    # acks=all and no idempotence: Tansu answers aiokafka's InitProducerId v0 with an
    # error (BROKER.md), so delivery is at-least-once and every stage is idempotent.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=settings.producer_linger_ms,
        max_batch_size=settings.producer_max_batch_bytes,
        enable_idempotence=False,
    )


def make_group_consumer(
    settings: Settings, bootstrap_servers: str, group_id: str, *topics: str
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        max_poll_records=settings.batch_max,
    )


def encode_emit(settings: Settings, codec: Codec, emit: Emit) -> tuple[str, bytes, bytes]:
    """(real topic name, key bytes, framed Avro value) of a stage's emit; an event that is
    already framed bytes (a record passed on unchanged) goes as it is."""
    value = emit.event if isinstance(emit.event, bytes) else codec.encode(emit.event)
    return settings.topic(emit.topic), emit.key.encode(), value


SendFn = Callable[[str, bytes, bytes], Awaitable[Awaitable[object]]]


async def produce_emits(send: SendFn, settings: Settings, codec: Codec, emits: Iterable[Emit]) -> None:
    """Send every emit and wait until the broker has them all (before committing).

    ``send(topic, key, value)`` enqueues one record and returns its delivery future:
    aiokafka's producer in the simulators, faust's in the worker.
    """
    futures: list[Awaitable[object]] = []
    for emit in emits:
        futures.append(await send(*encode_emit(settings, codec, emit)))
    if futures:
        await asyncio.gather(*futures)


def aiokafka_send(producer: AIOKafkaProducer) -> SendFn:
    async def send(topic: str, key: bytes, value: bytes) -> Awaitable[object]:
        delivery: Awaitable[object] = await producer.send(topic, value=value, key=key)
        return delivery

    return send


def source_message(record: ConsumerRecord[bytes, bytes]) -> SourceMessage:
    return SourceMessage(record.topic, record.partition, record.offset, record.key, record.value)


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: Callable[[Sequence[SourceMessage]], Awaitable[None]],
    stop: asyncio.Event,
    timeout_ms: int = 200,
) -> None:
    """getmany → handle → commit, until ``stop`` is set. At-least-once: the commit
    happens only after ``handle`` returned (its output acknowledged by the broker)."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        if not batches:
            continue
        messages = [source_message(r) for records in batches.values() for r in records]
        await handle(messages)
        await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})


async def assign_all(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    """Assign every partition of ``topics`` (no group) and seek to the beginning.

    The partitions come from a fresh all-topics Metadata request: a consumer without a
    subscription knows no topic on Kafka (its bootstrap asks for none; Tansu answers every
    topic to that), and ``consumer.topics()`` does not keep what it fetched.
    """
    cluster = await consumer._client.fetch_all_metadata()
    partitions = [
        TopicPartition(topic, p) for topic in topics for p in sorted(cluster.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    if partitions:  # a topic not created yet has none (and seek_to_beginning() means "all assigned")
        await consumer.seek_to_beginning(*partitions)
    return partitions


async def read_to_highwater(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    timeout_s: float,
    on_records: Callable[[list[ConsumerRecord[bytes, bytes]]], None] = lambda records: None,
) -> None:
    """Consume until every partition's position reaches its fetch high watermark.

    Not ListOffsets: Tansu answers it wrongly for the latest offset (BROKER.md); the
    high watermark comes with every fetch and is right on Tansu and Kafka alike.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=100, max_records=10_000)).values():
            on_records(records)
        if all([await _caught_up(consumer, tp) for tp in partitions]):
            return
    raise TimeoutError(f"not read to the high watermark of {len(partitions)} partitions in {timeout_s}s")


async def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 30.0
                     ) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` now, without a consumer group: read to each partition's
    fetch high watermark, bounded by ``timeout_s``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await assign_all(consumer, [topic])
        records: list[ConsumerRecord[bytes, bytes]] = []
        await read_to_highwater(consumer, partitions, timeout_s, records.extend)
        return records
    finally:
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    highwater = consumer.highwater(tp)
    return highwater is not None and await consumer.position(tp) >= highwater


async def run_consumer_stage(
    settings: Settings,
    bootstrap_servers: str,
    codec: Codec,
    group_id: str,
    source: Topic,
    process: Callable[[Sequence[SourceMessage]], list[Emit]],
    stop: asyncio.Event,
) -> None:
    """An aiokafka stage outside faust (the simulators): consume ``source`` in a group,
    produce what ``process`` emits, commit after the acks, until ``stop``."""
    consumer = make_group_consumer(settings, bootstrap_servers, group_id, settings.topic(source))
    producer = make_producer(settings, bootstrap_servers)
    await producer.start()
    await consumer.start()
    send = aiokafka_send(producer)
    try:

        async def handle(messages: Sequence[SourceMessage]) -> None:
            await produce_emits(send, settings, codec, process(messages))

        await consume_batches(consumer, handle, stop)
    finally:
        await consumer.stop()
        await producer.stop()


T = TypeVar("T")


async def read_events(settings: Settings, bootstrap_servers: str, codec: Codec, topic: Topic,
                      event_type: type[T]) -> list[T]:
    """Every event of ``event_type`` on the logical ``topic`` now (``read_topic``), decoded; a
    record that does not decode is skipped: the stage that met it dead-lettered it."""
    decoded = []
    for record in await read_topic(bootstrap_servers, settings.topic(topic)):
        try:
            decoded.append(codec.decode(record.value, event_type))
        except UndecodableEvent:
            continue
    return decoded
