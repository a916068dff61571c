"""Fixes in engine.runtime.kafka_compat. The flow control: resuming a flow that already runs keeps
the records queued meanwhile; resuming a suspended flow still drops the stale ones."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest.mock import patch

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP, Message
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from engine.runtime import kafka_compat
from engine.settings import Settings

kafka_compat.apply()  # what importing engine.runtime.kafka does


async def test_resuming_a_running_flow_keeps_what_is_queued() -> None:
    flow = FlowControlEvent()
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    flow.resume()
    queue.put_nowait("claim fetched after the seek")

    flow.resume()  # faust's second resume, after recovery

    assert queue.qsize() == 1


async def test_resuming_a_suspended_flow_drops_what_was_queued_before() -> None:
    flow = FlowControlEvent()
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    flow.resume()
    queue.put_nowait("record of a partition about to be revoked")
    flow.suspend()

    flow.resume()

    assert queue.qsize() == 0 and flow.is_active()


async def test_a_partition_assigned_and_not_yet_seeked_has_no_position_to_check() -> None:
    """faust's livelock detector read the position of such a partition, and aiokafka's
    assertion crashed the worker's consumer in the middle of a rebalance."""
    tp = TopicPartition("claims.coded", 3)
    subscriptions = SubscriptionState()
    assert not kafka_compat.position_known(subscriptions, tp)  # nothing assigned yet

    subscriptions.assign_from_user({tp})
    assert not kafka_compat.position_known(subscriptions, tp)
    assert not kafka_compat.position_known(subscriptions, TopicPartition("claims.coded", 4))

    subscriptions.seek(tp, 17)
    assert kafka_compat.position_known(subscriptions, tp)


async def test_a_faust_app_made_for_exactly_once_reads_committed_records_only(tmp_path: Path) -> None:
    """faust reads committed only in its own transaction mode; ours is not that, and the
    payer simulator answered a 270 of an aborted transaction."""
    from engine.runtime.faust_app import make_faust_app

    isolation = {}
    for guarantee in ("at_least_once", "exactly_once"):
        settings = replace(Settings(), state_dir=tmp_path / guarantee, processing_guarantee=guarantee)
        app = make_faust_app(settings, f"compat-{guarantee}", "127.0.0.1:9")
        consumer = kafka_compat.read_committed_if_marked(app, AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9"))
        isolation[guarantee] = consumer._isolation_level
        await consumer.stop()  # never started: only marks it closed
    assert isolation == {"at_least_once": "read_uncommitted", "exactly_once": "read_committed"}
    assert "apply.<locals>" in AIOKafkaConsumerThread._create_worker_consumer.__qualname__  # installed


class _FetchedRecord:
    """What faust's fetch hands its consumer: only the offset matters to the commit."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


@contextlib.contextmanager
def _faust_consumer(tmp_path: Path, topic: str) -> Iterator[Any]:
    """faust's own consumer of an app (never started) that acknowledges ``topic``."""
    from engine.runtime.faust_app import make_faust_app

    app = make_faust_app(replace(Settings(), state_dir=tmp_path), "compat-commit", "127.0.0.1:9")
    app.topics._acking_topics.add(topic)
    consumer = app.consumer
    try:
        yield consumer
    finally:
        consumer._thread.thread_loop.close()  # made with the consumer, never run


def _message(tp: TP, offset: int) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"key", b"value", None)


async def test_the_record_at_the_committed_offset_left_unacknowledged_is_not_committed_over(tmp_path: Path) -> None:
    """An encounter lost under load on Kafka: its batch's acks were dropped (outputs not
    delivered), and faust committed past it because it sat right at the committed offset."""
    tp = TP("encounters", 6)
    with _faust_consumer(tmp_path, tp.topic) as consumer:
        consumer._committed_offset[tp] = 20
        kafka_compat.record_fetched(consumer, {tp: [_FetchedRecord(offset) for offset in range(20, 35)]})
        for offset in range(21, 35):  # 20's ack was dropped
            consumer.ack(_message(tp, offset))

        clock = [100.0]
        kafka_compat.unacked_reads(consumer, tp).clock = lambda: clock[0]
        with patch.object(type(consumer), "seek", autospec=True) as seek:
            assert consumer._new_offset(tp) is None
            clock[0] += kafka_compat.SKIP_GRACE_S - 0.1  # it may still be on its way
            assert consumer._new_offset(tp) is None
            await asyncio.sleep(0)
            seek.assert_not_called()
            clock[0] += 0.1
            assert consumer._new_offset(tp) is None
            await asyncio.sleep(0)  # the seek back is a task of its own
        seek.assert_called_once_with(consumer, tp, 20)

        consumer.ack(_message(tp, 20))  # read again and processed
        assert consumer._new_offset(tp) == 35


async def test_a_commit_stops_at_the_first_record_read_and_not_acknowledged(tmp_path: Path) -> None:
    tp = TP("claims.coded", 2)
    with _faust_consumer(tmp_path, tp.topic) as consumer:
        kafka_compat.record_fetched(consumer, {tp: [_FetchedRecord(offset) for offset in range(0, 10)]})
        for offset in range(0, 4):
            consumer.ack(_message(tp, offset))

        assert consumer._new_offset(tp) == 4  # 4 to 9 are still being processed
        for offset in range(4, 10):
            consumer.ack(_message(tp, offset))
        assert consumer._new_offset(tp) == 10


async def test_offsets_that_hold_no_record_are_committed_over(tmp_path: Path) -> None:
    """A transaction marker at the committed offset (read_committed readers) is no record:
    the commit goes past it."""
    tp = TP("claims.submitted", 0)
    with _faust_consumer(tmp_path, tp.topic) as consumer:
        consumer._committed_offset[tp] = 40
        kafka_compat.record_fetched(consumer, {tp: [_FetchedRecord(offset) for offset in range(41, 45)]})
        for offset in range(41, 45):
            consumer.ack(_message(tp, offset))

        assert consumer._new_offset(tp) == 45


def test_a_partition_read_again_after_a_seek_starts_its_reads_afresh() -> None:
    clock = [0.0]
    reads = kafka_compat.UnackedReads(clock=lambda: clock[0])
    reads.fetched(range(30, 40))
    reads.fetched(range(20, 25))  # sought back to 20

    assert reads.first() == 20
    reads.acked(22)  # fetched before the seek, processed after it, ahead of 20 read again
    assert reads.skipped() is None
    reads.acked(20)
    reads.acked(21)
    assert reads.first() == 23 and reads.skipped() is None  # caught up: nothing skipped


def test_a_record_left_behind_for_good_is_sought_back_to_once() -> None:
    clock = [0.0]
    reads = kafka_compat.UnackedReads(clock=lambda: clock[0])
    reads.fetched(range(20, 25))
    reads.acked(21)

    assert reads.skipped() is None
    clock[0] = kafka_compat.SKIP_GRACE_S
    assert reads.skipped() == 20
    assert reads.skipped() is None


async def test_records_faust_drops_as_read_already_do_not_hold_the_commit(tmp_path: Path) -> None:
    """After a rebalance the client can fetch from an older position before faust's own
    seek; faust drops those records as read already, and they were never acked again: the
    commit stalled on them (a crash run, both cores busy) until they were read a third time."""
    tp = TP("encounters", 1)
    with _faust_consumer(tmp_path, tp.topic) as consumer:
        consumer._committed_offset[tp] = 100
        consumer._read_offset[tp] = 129  # faust has handed on up to 129
        kafka_compat.record_fetched(consumer, {tp: [_FetchedRecord(offset) for offset in range(103, 135)]})
        for offset in range(100, 135):
            if offset >= 129:  # 103-128 are dropped by faust's fetch loop
                consumer.ack(_message(tp, offset))
            else:
                consumer._acked_index[tp].add(offset)  # acked the first time they were read
                consumer._acked[tp].append(offset)

        assert consumer._new_offset(tp) == 135
        assert kafka_compat.unacked_reads(consumer, tp).first() is None
