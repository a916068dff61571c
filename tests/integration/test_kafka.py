"""engine.runtime.kafka and its client fixes (engine.runtime.kafka_compat) against a real broker: a
consumer that stops leaves its group even from the first generation (Tansu numbers it 0,
and aiokafka alone would not leave it); a partition without a committed offset is read
again from its beginning after faust's recovery seek; whether the broker takes idempotent
producers is asked, not assumed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine.runtime.kafka import broker_supports_idempotence, make_group_consumer, make_producer
from engine.runtime.kafka_compat import seek_to_committed_or_beginning
from engine.settings import Settings
from tests.fixtures.kafka import Backend

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
