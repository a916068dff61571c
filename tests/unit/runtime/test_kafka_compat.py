"""Fixes in engine.runtime.kafka_compat. The flow control: resuming a flow that already runs keeps
the records queued meanwhile; resuming a suspended flow still drops the stale ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
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
