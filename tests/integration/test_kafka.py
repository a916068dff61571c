"""engine.runtime.kafka and its client fixes (engine.runtime.kafka_compat) against a real broker: a
consumer that stops leaves its group even from the first generation (Tansu numbers it 0,
and aiokafka alone would not leave it); a partition without a committed offset is read
again from its beginning after faust's recovery seek; whether the broker takes idempotent
producers is asked, not assumed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.runtime.kafka import (
    SourceMessage,
    assign_all,
    broker_supports_idempotence,
    consume_batches,
    make_consumer,
    make_group_consumer,
    make_producer,
)
from engine.runtime.kafka_compat import fetched_end_offsets, seek_to_committed_or_beginning
from engine.settings import Settings
from engine.wire.topics import apply_topics, load_topics
from tests.fixtures.kafka import Backend, SettingsFactory

pytestmark = pytest.mark.integration

WAIT_S = 60.0


async def _members(settings: Settings, group_id: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    (group,) = described.groups
    return [member[0] for member in group[5]]  # (error, group_id, state, protocol_type, protocol, members)


async def test_a_stopping_member_of_the_first_generation_leaves_its_group(topic_settings: Settings) -> None:
    settings = topic_settings
    topic = settings.topic("encounters")
    group_id = f"{settings.app_id}-leaver"
    consumer = make_group_consumer(settings, settings.bootstrap_servers, group_id, topic)
    await consumer.start()
    try:
        async with asyncio.timeout(WAIT_S):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
        assert await _members(settings, group_id) == [consumer._coordinator.member_id]
    finally:
        await consumer.stop()
    assert await _members(settings, group_id) == []


async def test_a_batch_whose_partitions_moved_during_handling_is_left_to_their_new_owner(
    topic_settings: Settings,
) -> None:
    """A second member joins while the first handles a batch: the first one's commit does
    not crash it (refused, or taken for partitions it still held) and it goes on; every
    moved partition's record is committed or read again by the newcomer (outputs are
    deduplicated by event id).

    The rebalance starts in the first batch, whatever it holds: a fetch may bring only some
    partitions, and a batch handled before the rebalance would rightly be committed."""
    settings = topic_settings
    topic = settings.topic("encounters")
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        for partition in partitions:
            await producer.send_and_wait(topic, f"record-{partition}".encode(), partition=partition)
    finally:
        await producer.stop()
    group_id = f"{settings.app_id}-moved"
    first = make_group_consumer(settings, settings.bootstrap_servers, group_id, topic)
    newcomer = make_group_consumer(settings, settings.bootstrap_servers, group_id, topic)
    stop = asyncio.Event()
    moving_batch: list[SourceMessage] = []
    reread: set[bytes] = set()
    await first.start()
    try:

        async def read_by_newcomer() -> None:
            for records in (await newcomer.getmany(timeout_ms=200)).values():
                reread.update(r.value for r in records if r.value is not None)

        async def handle(messages: Sequence[SourceMessage]) -> None:
            moving_batch.extend(messages)
            before = first._coordinator.generation
            await newcomer.start()
            while not newcomer.assignment() or first._coordinator.generation == before:
                await read_by_newcomer()
            stop.set()  # the loop commits this batch once more, then ends

        async with asyncio.timeout(WAIT_S):
            await consume_batches(first, handle, stop)
            moved = set(newcomer.assignment())
            assert moved and moved.isdisjoint(first.assignment())
            # Each moved partition's record is either committed by the first member (it handled
            # it: a commit between the rebalance's JoinGroup and SyncGroup carries the new
            # generation and is taken) or read again by the newcomer: never neither.
            committed = {tp: await newcomer.committed(tp) or 0 for tp in moved}
            expected = {f"record-{tp.partition}".encode() for tp, offset in committed.items() if offset == 0}
            while not expected <= reread:
                await read_by_newcomer()
        assert moving_batch
    finally:
        await first.stop()
        await newcomer.stop()


async def test_a_topic_the_metadata_does_not_show_yet_is_waited_for(settings_factory: SettingsFactory) -> None:
    """On a cluster, a topic just created reaches each broker's metadata a moment apart: a
    reader assigned from the first answer would read nothing of it for the whole run."""
    settings = settings_factory()
    topic = settings.topic("encounters")
    consumer = make_consumer(settings)
    await consumer.start()
    fetch = consumer._client.fetch_all_metadata
    listed: list[bool] = []

    async def answer_then_create() -> object:
        cluster = await fetch()
        listed.append(bool(cluster.partitions_for_topic(topic)))
        if len(listed) == 1:  # the topic comes into being right after the first answer
            await apply_topics(settings, {k: v for k, v in load_topics(settings).items() if v.name == topic})
        return cluster

    consumer._client.fetch_all_metadata = answer_then_create  # type: ignore[method-assign]
    try:
        async with asyncio.timeout(WAIT_S):
            partitions = await assign_all(consumer, [topic])
    finally:
        await consumer.stop()
    assert listed[0] is False
    assert {tp.topic for tp in partitions} == {topic}
    assert len(partitions) == load_topics(settings)["encounters"].partitions


@pytest.mark.not_on("tansu", reason="Tansu 0.6.0 never expires a silent member's session (kept 60 s, no heartbeat)")
async def test_a_member_that_stalled_past_its_session_leaves_its_batch_to_be_read_again(
    settings_factory: SettingsFactory,
) -> None:
    """The process stalls (a starved machine: the event loop blocked, no heartbeat) until
    the broker drops it from the group; its commit is then refused. The loop goes on: it
    rejoins and reads the uncommitted records again instead of dying."""
    settings = settings_factory(session_timeout_s=6.0)  # Kafka's group.min.session.timeout.ms
    await apply_topics(settings, load_topics(settings))
    topic = settings.topic("encounters")
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"stalled", partition=0)
    finally:
        await producer.stop()
    group_id = f"{settings.app_id}-stalled"
    consumer = make_group_consumer(settings, settings.bootstrap_servers, group_id, topic)
    stop = asyncio.Event()
    handled: list[bytes] = []
    await consumer.start()
    try:

        async def handle(messages: Sequence[SourceMessage]) -> None:
            handled.extend(m.value or b"" for m in messages)
            if len(handled) == 1:
                _block_until_dropped(settings, group_id, consumer._coordinator.member_id, WAIT_S)
            else:
                stop.set()

        async with asyncio.timeout(WAIT_S * 2):
            await consume_batches(consumer, handle, stop)
        assert handled == [b"stalled", b"stalled"]
    finally:
        await consumer.stop()


def _block_until_dropped(settings: Settings, group_id: str, member_id: str, timeout_s: float) -> None:
    """Hold the calling event loop (nothing of it runs: no heartbeat) until the broker no
    longer lists ``member_id`` in ``group_id``; another thread with its own loop watches."""
    dropped = threading.Event()

    async def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if member_id not in await _members(settings, group_id):
                dropped.set()
                return
            await asyncio.sleep(0.2)  # the broker's describe, polled: the event comes from outside

    watcher = threading.Thread(target=asyncio.run, args=(watch(),), daemon=True)
    watcher.start()
    watcher.join(timeout_s + 5)
    assert dropped.is_set(), f"the broker kept {member_id} in {group_id} for {timeout_s:.0f}s without a heartbeat"


async def test_the_recovery_seek_rereads_a_partition_that_has_no_committed_offset(topic_settings: Settings) -> None:
    """What faust's recovery does: records fetched (and dropped) before the seek are read again."""
    settings = topic_settings
    topic = settings.topic("encounters")
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"committed", partition=0)
        await producer.send_and_wait(topic, b"next", partition=0)
        await producer.send_and_wait(topic, b"never committed", partition=1)
    finally:
        await producer.stop()
    consumer = make_group_consumer(settings, settings.bootstrap_servers, f"{settings.app_id}-seeker", topic)
    await consumer.start()
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(WAIT_S):
            while len(seen) < 3:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen += [r.value for r in records]
        partition_0, partition_1 = sorted(consumer.assignment(), key=lambda tp: tp.partition)[:2]
        await consumer.commit({partition_0: 1})

        committed = await seek_to_committed_or_beginning(consumer)

        assert committed[partition_0] == 1 and committed[partition_1] is None
        assert await consumer.position(partition_0) == 1
        assert await consumer.position(partition_1) == 0
    finally:
        await consumer.stop()


async def test_the_broker_is_asked_whether_it_takes_idempotent_producers(backend: Backend) -> None:
    """Kafka hands out producer ids (after its coordinator loaded); Tansu 0.6.0 answers
    aiokafka's InitProducerId v0 with an error, so producers there are plain at-least-once."""
    supported = await broker_supports_idempotence(Settings().with_bootstrap(backend.bootstrap_servers))
    assert supported is (backend.name == "kafka")


async def test_end_offsets_for_recovery_are_the_fetch_high_watermark(topic_settings: Settings) -> None:
    """faust reads a table's changelog up to these end offsets when a worker starts: on
    Tansu, ListOffsets answers the last batch's base offset + 1 (BROKER.md), so they come
    from the fetch high watermark; on Kafka both agree."""
    settings = topic_settings
    topic = settings.topic("encounters")
    producer = make_producer(replace(settings, producer_linger_ms=50), settings.bootstrap_servers)
    await producer.start()
    try:
        for _ in range(5):  # five batches of 100: the last batch's base offset is 400
            await asyncio.gather(*[await producer.send(topic, b"entry", partition=0) for _ in range(100)])
    finally:
        await producer.stop()
    empty = TopicPartition(topic, 1)
    filled = TopicPartition(topic, 0)
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        assert await fetched_end_offsets(consumer, [filled, empty]) == {filled: 500, empty: 0}
    finally:
        await consumer.stop()


def test_faust_recovery_asks_the_fetch_high_watermark() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert AIOKafkaConsumerThread._highwaters.__qualname__.endswith("fetched_highwaters")
