"""The coder review queue on Kafka: read it back from the topics, publish actions.

The queue is not stored anywhere but the topics: ``QueueReader`` reads coding-review and
coding-actions from the beginning (no consumer group, so it disturbs no one) and folds
them with ``engine.coding.review.fold_items``; every later ``refresh`` reads only what
arrived since. ``publish_action`` appends a ``CodingAction``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from engine.coding.review import WorkItem, fold_items
from engine.model.events import CodingAction, CodingReviewItem
from engine.runtime.kafka import assign_all, make_consumer, make_producer, read_to_highwater, started
from engine.runtime.stages import utcnow
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

QUEUE_TOPICS = (Topic.CODING_REVIEW, Topic.CODING_ACTIONS)


@dataclass
class QueueReader:
    settings: Settings
    bootstrap_servers: str
    codec: Codec
    items: list[CodingReviewItem] = field(default_factory=list)
    actions: list[CodingAction] = field(default_factory=list)
    unreadable: int = 0

    async def __aenter__(self) -> QueueReader:
        self._logical = {self.settings.topic(t): t for t in QUEUE_TOPICS}
        self._consumer = make_consumer(self.settings.with_bootstrap(self.bootstrap_servers),
                                       auto_offset_reset="earliest")
        await self._consumer.start()
        self._partitions = await assign_all(self._consumer, list(self._logical))
        await self.refresh()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def refresh(self, timeout_s: float = 60.0) -> dict[str, WorkItem]:
        """Read up to the end of every partition and return the queue as of then."""
        await read_to_highwater(self._consumer, self._partitions, timeout_s, self._take)
        return self.queue()

    def _take(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            try:
                if self._logical[record.topic] == Topic.CODING_REVIEW:
                    self.items.append(self.codec.decode(record.value, CodingReviewItem))
                else:
                    self.actions.append(self.codec.decode(record.value, CodingAction))
            except ValueError:
                self.unreadable += 1  # the engine dead-letters these; the queue skips them

    def queue(self) -> dict[str, WorkItem]:
        return fold_items(self.items, self.actions)

    async def until(self, done: Callable[[dict[str, WorkItem]], bool], timeout_s: float) -> dict[str, WorkItem]:
        """Refresh until ``done(queue)``, or raise TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            queue = await self.refresh(timeout_s=max(1.0, deadline - time.monotonic()))
            if done(queue):
                return queue
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the queue did not reach the expected state in {timeout_s:.0f}s")


def find_item(queue: dict[str, WorkItem], ref: str) -> WorkItem | None:
    """An item by work item id or by encounter id."""
    ref = ref.strip()
    if ref.upper() in queue:
        return queue[ref.upper()]
    return next((item for item in queue.values() if item.encounter_id == ref), None)


def new_action(item: WorkItem, **fields: object) -> CodingAction:
    return CodingAction(
        action_id="CA-" + uuid.uuid4().hex[:16].upper(),
        work_item_id=item.work_item_id,
        encounter_id=item.encounter_id,
        revision=item.revision,
        occurred_at=utcnow(),
        **fields,  # type: ignore[arg-type]
    )


async def publish_action(settings: Settings, bootstrap_servers: str, codec: Codec, action: CodingAction) -> None:
    """Append the action to coding-actions and wait for the broker's ack."""
    async with started(make_producer(settings, bootstrap_servers)) as producer:
        await producer.send_and_wait(settings.topic(Topic.CODING_ACTIONS), value=codec.encode(action),
                                     key=action.encounter_id.encode())
