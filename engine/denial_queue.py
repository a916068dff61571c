"""The denial work queues on Kafka: read back from the topics (no consumer group, so it
disturbs no one) and folded with ``engine.workqueue``; biller actions are appended to
``denial-actions``. The queues are stored nowhere but the topics."""

from __future__ import annotations

import asyncio
import uuid

from engine.codec import Codec
from engine.denials import DenialRouting
from engine.events import DenialAction, DenialWorkItem, Remittance
from engine.kafka import make_producer, read_events
from engine.settings import Settings
from engine.workqueue import FoldedQueues, fold_work_items

async def read_queues(settings: Settings, bootstrap: str, codec: Codec) -> FoldedQueues:
    """Every work item of every queue, folded with its actions and its replacements' answers."""
    routing = DenialRouting.load(settings.denial_routing_file)
    queues = await asyncio.gather(*(read_events(settings, bootstrap, codec, q, DenialWorkItem) for q in routing.queues()))
    actions, remittances = await asyncio.gather(read_events(settings, bootstrap, codec, "denial-actions", DenialAction),
                                                read_events(settings, bootstrap, codec, "remittances", Remittance))
    return fold_work_items((i for q in queues for i in q), actions, remittances)


def new_action_id() -> str:
    return "DA-" + uuid.uuid4().hex[:16].upper()


async def publish_action(settings: Settings, bootstrap: str, codec: Codec, action: DenialAction) -> None:
    producer = make_producer(settings, bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("denial-actions"), codec.encode(action),
                                     key=action.work_item_id.encode())
    finally:
        await producer.stop()
