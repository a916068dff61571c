"""Seven fixes to the client stack, found running faust and aiokafka against Tansu (a
claim submitted while the payer restarted was never adjudicated), applied once, when
``engine.runtime.kafka`` is imported (faust's consumers get them too); its retry logs
are quieted there as well (``engine.runtime.logs``).

- **Leave the group from generation 0.** aiokafka sends LeaveGroup only when
  ``generation > 0``; Tansu numbers a group's first generation 0 (Kafka starts at 1), so a
  member of it that stops stays in the group until its session times out, and the next
  member to join (a restarted worker, the payer after a deploy) waits a rebalance or two
  for the ghost.
- **Resume flow without dropping what already flows.** mode's ``FlowControlEvent.resume``
  empties every stream queue, even when the flow is already running. faust resumes the
  flow while it reads its changelogs, then seeks the stream partitions and resumes again:
  a record fetched between the two was queued, then thrown away, with the consumer's
  position already past it. Clearing belongs to the suspended → running transition only.
- **Seek a partition without a committed offset back to its beginning after recovery.**
  faust resumes fetching while it reads its changelogs, and its recovery loop drops the
  stream records that arrive meanwhile; it then seeks every stream partition to its
  committed offset to read them again, but aiokafka's ``seek_to_committed`` does nothing
  for a partition with no commit (or a commit of 0). With the ``earliest`` reset policy
  every stage uses, "no commit" means "from the beginning". Records read twice this way
  are redeliveries, which every stage already absorbs (at-least-once).
- **Recover tables to the fetch high watermark.** faust reads a table's changelog up to the
  end offsets from ListOffsets, which Tansu answers too low (the last batch's base offset
  + 1: 1–44 records short per partition), so a restarted worker missed its newest table
  entries (lost encounters, claims billed twice). The end offset is the larger of that
  answer and the high watermark of a fetch; on Kafka both agree.
- **Check a partition's progress only once it has a position.** faust's livelock detector
  reads each assigned partition's position, and aiokafka asserts one exists; a partition
  assigned in a rebalance and not yet seeked has none, and the assertion crashed the
  worker's consumer (a crash run on Kafka, the worker waiting for its batch in flight).
- **Read committed records only in exactly-once mode.** faust picks ``read_committed`` only
  in its own transaction mode, which we do not use (docs/reliability.md); a faust app made
  for ``CLAIMS_PROCESSING_GUARANTEE=exactly_once`` (the payer simulator) read the outputs of
  aborted transactions too, and answered a 270 that was never committed.
- **Commit no offset past a record read and not acknowledged.** faust commits up to the
  first hole in a partition's acknowledged offsets, but counts a hole at the committed
  offset itself as none (its check is one off: the committed offset is the next record to
  read, not the last one read), and it counts offsets it never handed to a stream (a fetched
  chunk cut short by a rebalance) as acknowledged. A record whose acknowledgement was
  dropped, because its batch's outputs were not delivered (``AckGate``), was then committed
  over when it sat right at the committed offset: an encounter lost under load on Kafka.
  The commit now stops at the first record fetched and not acknowledged; when later records
  of the partition stay acknowledged ahead of it (``SKIP_GRACE_S``), it was skipped, and the
  partition is sought back to it (read again: a redelivery, which every stage absorbs).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.group import LeaveGroupRequest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from mode.utils.queues import FlowControlEvent

from engine.runtime.logs import quiet_client_retries, redact_record_content

log = logging.getLogger(__name__)

#: The first generation of a consumer group as Tansu numbers it.
FIRST_GENERATION = 0


async def leave_group(coordinator: GroupCoordinator, original: Any) -> None:
    """aiokafka's best-effort LeaveGroup, for generation 0 as well."""
    if coordinator.generation != FIRST_GENERATION or coordinator._group_instance_id is not None:
        await original(coordinator)
        return
    try:
        await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
    except KafkaError as err:  # the session timeout ends the membership anyway
        log.warning("LeaveGroup for group %s failed: %s", coordinator.group_id, err)
    coordinator.reset_generation()


async def seek_to_committed_or_beginning(consumer: AIOKafkaConsumer) -> Mapping[TopicPartition, int | None]:
    """Every assigned partition to its committed offset, or to its beginning if it has none."""
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


#: The Fetch that reads a high watermark waits at most this long for a byte (Tansu
#: answers a Fetch that may not wait with no partitions at all).
FETCH_WAIT_MS = 100


async def fetched_end_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
                              ) -> dict[TopicPartition, int]:
    """End offsets of ``partitions`` that hold on Tansu too: the larger of ListOffsets'
    answer and the high watermark of a one-byte Fetch at that offset, sent on the
    consumer's own connections (its positions do not move). A partition ListOffsets
    calls empty has no batch at all: that answer is right."""
    listed: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    client = consumer._client
    by_leader: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(lambda: defaultdict(list))
    for tp in partitions:
        leader = client.cluster.leader_for_partition(tp)
        if listed[tp] > 0 and leader is not None and leader >= 0:
            by_leader[leader][tp.topic].append((tp.partition, listed[tp], 1))
    ends = dict(listed)
    for leader, topics in by_leader.items():
        response = await client.send(leader, FetchRequest(FETCH_WAIT_MS, 1, 1 << 20, 0, list(topics.items())))
        for topic, answers in response.topics:
            for partition, error_code, highwater, *_ in answers:
                tp = TopicPartition(topic, partition)
                if error_code == 0 and tp in ends:
                    ends[tp] = max(ends[tp], highwater)
    return ends


def position_known(subscriptions: SubscriptionState, tp: TopicPartition) -> bool:
    """Whether ``tp`` is assigned and has a fetch position yet."""
    subscription = subscriptions.subscription
    assignment = subscription.assignment if subscription is not None else None
    state = assignment.state_value(tp) if assignment is not None else None
    return state is not None and bool(state.has_valid_position)


def read_committed_if_marked(app: Any, consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """``consumer`` (not started yet) reading committed records only, if ``app`` is marked
    ``claimflow_read_committed`` (``engine.runtime.faust_app``, exactly-once mode)."""
    if getattr(app, "claimflow_read_committed", False):
        consumer._isolation_level = "read_committed"  # read by start()
    return consumer


def resume_flow(flow_control: FlowControlEvent, original: Any) -> None:
    """Resume (and drop the stale queued records) only if the flow was suspended."""
    if not flow_control.is_active():
        original(flow_control)


#: How long the first unacknowledged record of a partition may trail a later acknowledged
#: one before it counts as skipped. Right after a seek, records fetched before it can still
#: be processed (and acked) ahead of the same offsets read again; those catch up in moments.
SKIP_GRACE_S = 10.0


class UnackedReads:
    """The records of one partition fetched since its last seek and not acknowledged yet,
    in offset order: the first of them is as far as a commit may go."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetched: deque[int] = deque()
        self._acked: set[int] = set()
        self._trailing_since: float | None = None
        self._rescued: int | None = None
        self.clock = clock

    def fetched(self, offsets: Iterable[int]) -> None:
        fetched = self._fetched
        for offset in offsets:
            if fetched and offset <= fetched[-1]:  # sought back: what was read before is read again
                self.clear()
            fetched.append(offset)

    def acked(self, offset: int) -> None:
        fetched = self._fetched
        if not fetched or offset < fetched[0]:
            return  # read before the last seek, or already past
        self._acked.add(offset)
        while fetched and fetched[0] in self._acked:
            self._acked.discard(fetched.popleft())
            self._trailing_since = None

    def first(self) -> int | None:
        """The first record fetched and not acknowledged, if any."""
        return self._fetched[0] if self._fetched else None

    def skipped(self) -> int | None:
        """The first unacknowledged record if later ones of the partition have been
        acknowledged for ``SKIP_GRACE_S`` (a stream acknowledges its records in order, so it
        will never be), once per record: the offset to seek back to."""
        first = self.first()
        if first is None or not self._acked or first == self._rescued:
            return None
        now = self.clock()
        if self._trailing_since is None:
            self._trailing_since = now
        if now - self._trailing_since < SKIP_GRACE_S:
            return None
        self._rescued = first
        return first

    def clear(self) -> None:
        self._fetched.clear()
        self._acked.clear()
        self._trailing_since = None


def unacked_reads(consumer: Any, tp: TP) -> UnackedReads:
    reads: dict[TP, UnackedReads] = consumer.__dict__.setdefault("claimflow_unacked_reads", {})
    if tp not in reads:
        reads[tp] = UnackedReads()
    return reads[tp]


def forget_reads(consumer: Any, tps: Iterable[TP] | None = None) -> None:
    """Forget the reads of ``tps`` (all when None): they were sought, or revoked."""
    reads: dict[TP, UnackedReads] = consumer.__dict__.get("claimflow_unacked_reads", {})
    for tp in list(reads) if tps is None else tps:
        if tp in reads:
            reads[tp].clear()


def record_fetched(consumer: Any, records: Mapping[TP, list[Any]] | None) -> None:
    """Note the records of a fetch that faust will hand to a stream: not those below its read
    offset, which it drops as read already (fetched again from an older position, after a
    rebalance, before faust's own seek)."""
    if not records:
        return
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    read_offsets = consumer._read_offset
    for tp, batch in records.items():
        if batch and acks_enabled_for(tp.topic):
            read = read_offsets.get(tp)
            unacked_reads(consumer, tp).fetched(r.offset for r in batch if read is None or r.offset >= read)


def committable_offset(consumer: Any, tp: TP) -> int | None:
    """faust's ``Consumer._new_offset`` that stops at the first record fetched and not
    acknowledged, and takes a hole at the committed offset for a hole."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return None
    gap_for_tp = consumer._gap[tp]
    max_offset = max(acked)
    if gap_for_tp:  # offsets faust never handed over (markers, compacted, cut chunks)
        candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda interval: interval.begin)
        if candidates:
            filled = [offset for interval in candidates for offset in range(interval.begin, interval.end)]
            acked.extend(filled)
            gap_for_tp.chop(0, max(filled[-1], max_offset + 1))
    acked.sort()
    committed = consumer._committed_offset[tp]
    if committed and acked[0] - committed > 1:
        return None
    batch = list(next(consecutive_numbers(acked)))
    reads = unacked_reads(consumer, tp)
    first_unacked = reads.first()
    if first_unacked is not None:
        batch = batch[: bisect.bisect_left(batch, first_unacked)]
        skipped = reads.skipped()
        if skipped is not None:
            log.warning("Record %s[%d]@%d was read and never acknowledged; reading the partition again from it",
                        tp.topic, tp.partition, skipped)
            seek_back(consumer, tp, skipped)
    if not batch:
        return None
    acked[: len(batch)] = []
    consumer._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


def seek_back(consumer: Any, tp: TP, offset: int) -> None:
    task = asyncio.ensure_future(consumer.seek(tp, offset))
    task.add_done_callback(_log_seek_failure)
    consumer.__dict__.setdefault("claimflow_seeks", set()).add(task)
    task.add_done_callback(consumer.__dict__["claimflow_seeks"].discard)


def _log_seek_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("Seeking back to a skipped record failed: %s", task.exception())


def apply() -> None:
    """Install the fixes (idempotent)."""
    if getattr(GroupCoordinator, "claimflow_fixes", False):
        return
    quiet_client_retries()
    redact_record_content()
    original_leave = GroupCoordinator._maybe_leave_group

    async def _maybe_leave_group(self: GroupCoordinator) -> None:
        await leave_group(self, original_leave)

    async def seek_to_committed(self: AIOKafkaConsumerThread) -> Any:
        return await self.call_thread(seek_to_committed_or_beginning, self._ensure_consumer())

    original_resume = FlowControlEvent.resume

    def resume(self: FlowControlEvent) -> None:
        resume_flow(self, original_resume)

    async def fetched_highwaters(self: AIOKafkaConsumerThread, partitions: list[TopicPartition]) -> Any:
        if self.consumer.in_transaction:  # faust's exactly-once mode: its own answer
            return await original_highwaters(self, partitions)
        return await fetched_end_offsets(self._ensure_consumer(), list(partitions))

    def verify_event_path(self: AIOKafkaConsumerThread, now: float, tp: Any) -> None:
        if position_known(self._ensure_consumer()._fetcher._subscriptions, TopicPartition(tp.topic, tp.partition)):
            original_verify(self, now, tp)

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        return read_committed_if_marked(self.app, original_create(self, transport))

    original_wait_next = FaustConsumer._wait_next_records
    original_ack = FaustConsumer.ack
    original_seek = FaustConsumer.seek
    original_perform_seek = FaustConsumer.perform_seek
    original_revoked = FaustConsumer.on_partitions_revoked

    async def _wait_next_records(self: FaustConsumer, timeout: float) -> Any:
        records, active = await original_wait_next(self, timeout)
        record_fetched(self, records)
        return records, active

    def ack(self: FaustConsumer, message: Any) -> bool:
        acked = original_ack(self, message)
        unacked_reads(self, message.tp).acked(message.offset)
        return acked

    async def seek(self: FaustConsumer, partition: TP, offset: int) -> None:
        await original_seek(self, partition, offset)
        forget_reads(self, [partition])

    async def perform_seek(self: FaustConsumer) -> None:
        await original_perform_seek(self)
        forget_reads(self)

    async def on_partitions_revoked(self: FaustConsumer, revoked: Any) -> None:
        forget_reads(self, revoked)
        await original_revoked(self, revoked)

    def _new_offset(self: FaustConsumer, tp: TP) -> int | None:
        return committable_offset(self, tp)

    FaustConsumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
    FaustConsumer.ack = ack  # type: ignore[method-assign]
    FaustConsumer.seek = seek  # type: ignore[method-assign]
    FaustConsumer.perform_seek = perform_seek  # type: ignore[method-assign]
    FaustConsumer.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]
    FaustConsumer._new_offset = _new_offset  # type: ignore[method-assign]
    original_create = AIOKafkaConsumerThread._create_worker_consumer
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    original_verify = AIOKafkaConsumerThread.verify_event_path
    AIOKafkaConsumerThread.verify_event_path = verify_event_path  # type: ignore[method-assign]
    original_highwaters = AIOKafkaConsumerThread._highwaters
    GroupCoordinator._maybe_leave_group = _maybe_leave_group
    AIOKafkaConsumerThread._highwaters = fetched_highwaters  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    FlowControlEvent.resume = resume  # type: ignore[method-assign]
    GroupCoordinator.claimflow_fixes = True

