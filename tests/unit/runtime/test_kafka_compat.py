"""The flow-control fix in engine.runtime.kafka_compat: resuming a flow that already runs keeps
the records queued meanwhile; resuming a suspended flow still drops the stale ones."""

from __future__ import annotations

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
