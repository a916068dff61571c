"""`claims topics apply` against a real broker: creates, is idempotent, reports drift."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.wire.topics import apply_topics, load_topics
from tests.fixtures.kafka import SettingsFactory, read_topic

pytestmark = pytest.mark.integration


async def test_apply_creates_every_declared_topic_then_is_a_no_op(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    specs = load_topics(settings)
    first = await apply_topics(settings, specs)
    assert sorted(first.created) == sorted(s.name for s in specs.values())
    second = await apply_topics(settings, specs)
    assert second.created == [] and second.drift == []
    assert sorted(second.unchanged) == sorted(first.created)

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"])
                     for t in await admin.describe_topics([s.name for s in specs.values()])}
    finally:
        await admin.close()
    assert described == {s.name: s.partitions for s in specs.values()}


async def test_drift_is_reported_and_data_kept(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    specs = load_topics(settings)
    encounters = specs["encounters"].name
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(encounters, 4, 1)])  # as Tansu's auto-create would
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    await producer.send_and_wait(encounters, b"keep me", key=b"k")
    await producer.stop()

    report = await apply_topics(settings, specs)
    assert f"{encounters}: 4 partitions, declared 8" in report.drift
    assert encounters not in report.created
    assert [r.value for r in await read_topic(settings, encounters)] == [b"keep me"]
