"""Fixes in engine.runtime.kafka_compat. The flow control: resuming a flow that already runs keeps
the records queued meanwhile; resuming a suspended flow still drops the stale ones."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from engine.runtime import kafka_compat

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
