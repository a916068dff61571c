"""The faust worker: wires each stage's pure batch function to its topics.

Per BROKER.md, faust's per-message machinery costs ~300–500 µs of CPU an event, so
every agent takes batches (``take_events``), keeps values as raw bytes (our own Avro
codec, not faust's serializers), produces through faust's producer without awaiting
each send, and waits for the broker's acks once per batch before the batch's offsets
are acknowledged: at-least-once, and every stage is idempotent downstream.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping, Sequence

import faust
from faust.types import EventT

from engine.claims import ClaimContext, ClaimStageState, bill_coded, on_eligibility
from engine.codec import Codec, default_codec
from engine.codesets import warm_up
from engine.coding import CodingReference, code_encounter
from engine.coding_review import recode_action, remember_opened
from engine.denials import DenialRouting, route_remittance
from engine.eligibility import EligibilityCache
from engine.events import CodedEncounter, CodingAction, EligibilityResponse, Encounter, Remittance
from engine.kafka import SendFn, produce_emits
from engine.pipeline import SourceMessage, StageResult, run_stage, utcnow
from engine.settings import Settings

log = logging.getLogger(__name__)

BILLED_TABLE = "claims_by_encounter"
CODING_ITEMS_TABLE = "coding_items_by_encounter"
AWAITING_TABLE = "awaiting_eligibility"
ANSWERS_TABLE = "eligibility_answers"


# --- the stages as batch functions (no faust here) ---------------------------


def coding_stage(
    messages: Sequence[SourceMessage], codec: Codec, ref: CodingReference, audit_rate: float,
    items: MutableMapping[str, str],
) -> StageResult:
    now = utcnow()
    return run_stage("coding", messages, codec, Encounter,
                     lambda enc, msg: remember_opened(code_encounter(enc, msg.value or b"", ref, now, audit_rate), items))


def recoding_stage(
    messages: Sequence[SourceMessage], codec: Codec, ref: CodingReference, items: MutableMapping[str, str]
) -> StageResult:
    """Coder actions: a correction is checked again like a new encounter."""
    now = utcnow()
    return run_stage("recoding", messages, codec, CodingAction,
                     lambda action, msg: recode_action(action, codec, ref, now, items))


def claims_stage(
    messages: Sequence[SourceMessage], codec: Codec, state: ClaimStageState, ctx: ClaimContext
) -> StageResult:
    now = utcnow()
    return run_stage("claims", messages, codec, CodedEncounter, lambda c, msg: bill_coded(c, msg, state, ctx, now))


def eligibility_stage(
    messages: Sequence[SourceMessage], codec: Codec, state: ClaimStageState, ctx: ClaimContext
) -> StageResult:
    """The payer's 271 answers: the parked encounters go on to the claim or the front desk."""
    now = utcnow()
    return run_stage("eligibility", messages, codec, EligibilityResponse,
                     lambda answer, msg: on_eligibility(answer, state, ctx, now))


def denials_stage(messages: Sequence[SourceMessage], codec: Codec, routing: DenialRouting) -> StageResult:
    now = utcnow()
    return run_stage("denials", messages, codec, Remittance, lambda r, msg: route_remittance(r, msg, routing, now))


# --- faust wiring ------------------------------------------------------------


def make_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap_servers}",
        store="memory://",
        datadir=str(settings.state_dir / "faust"),  # not the working directory
        topic_partitions=8,
        topic_allow_declare=False,  # `claims topics apply` owns topic creation
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_commit_every=settings.batch_max,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_acks=-1,
        stream_wait_empty=False,
        stream_buffer_maxsize=settings.batch_max * 4,
        web_enabled=False,
        table_standby_replicas=0,
    )
    codec = default_codec(settings.schemas_dir)
    claim_ctx = ClaimContext.load(settings, codec)
    routing = DenialRouting.load(settings.denial_routing_file)
    coding_ref = CodingReference.load(settings)

    def raw_topic(logical: str) -> Any:
        return app.topic(settings.topic(logical), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", allow_empty=True)

    # Keyed by encounter id, like the coded topic: with use_partitioner the changelog
    # partition equals the source partition, so a rebalance moves key and state together.
    billed = app.Table(
        BILLED_TABLE, default=None, key_type=str, value_type=str, partitions=8, use_partitioner=True
    )

    # Coder work items by encounter id (encounters and coding-actions are both keyed by
    # it, so co-partitioned): the current revision, so a stale fix is rejected.
    coding_items = app.Table(
        CODING_ITEMS_TABLE, default=None, key_type=str, value_type=str, partitions=8, use_partitioner=True
    )

    # Coded encounters waiting for their eligibility answer, by encounter id (coded and
    # eligibility-responses are both keyed by it: co-partitioned with the agents).
    awaiting = app.Table(
        AWAITING_TABLE, default=None, key_type=str, value_type=str, partitions=8, use_partitioner=True
    )
    # 271 answers by payer|member, reused for the TTL. Keyed by member, not encounter:
    # with several workers each keeps the answers it asked for (a cache: a miss asks again).
    answers = app.Table(
        ANSWERS_TABLE, default=None, key_type=str, value_type=str, partitions=8, use_partitioner=True
    )
    claim_state = ClaimStageState(billed, awaiting, EligibilityCache(answers, codec, claim_ctx.eligibility_ttl))

    send = _faust_send(app)

    def agent_for(source: str, stage: Callable[[Sequence[SourceMessage]], StageResult]) -> None:
        async def process(stream: faust.StreamT[bytes]) -> None:
            async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
                await produce_emits(send, settings, codec, stage(_messages(events)).emits)

        process.__name__ = f"{source.replace('-', '_')}_agent"
        app.agent(raw_topic(source), name=f"{settings.app_id}.{process.__name__}")(process)

    agent_for("encounters", lambda msgs: coding_stage(msgs, codec, coding_ref, settings.coding_audit_rate, coding_items))
    agent_for("coding-actions", lambda msgs: recoding_stage(msgs, codec, coding_ref, coding_items))
    agent_for("coded", lambda msgs: claims_stage(msgs, codec, claim_state, claim_ctx))
    agent_for("eligibility-responses", lambda msgs: eligibility_stage(msgs, codec, claim_state, claim_ctx))
    agent_for("remittances", lambda msgs: denials_stage(msgs, codec, routing))

    @app.on_after_configured.connect
    def _quiet(app: faust.App, **_: Any) -> None:  # pragma: no cover - faust signal
        logging.getLogger().setLevel(settings.log_level)

    warm_up()
    return app


def _messages(events: Sequence[EventT]) -> list[SourceMessage]:
    return [
        SourceMessage(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
        for e in events
    ]


def _faust_send(app: faust.App) -> SendFn:
    async def send(topic: str, key: bytes, value: bytes) -> Awaitable[object]:
        return await app.producer.send(topic=topic, key=key, value=value, partition=None, timestamp=None,
                                       headers=None)

    return send


def run_worker(settings: Settings, bootstrap_servers: str) -> None:
    """Run the engine's agents in this process until SIGTERM/SIGINT."""
    from faust.worker import Worker

    app = make_app(settings, bootstrap_servers)
    worker = Worker(app, loglevel=settings.log_level.lower().replace("warning", "warn"), quiet=True)
    # faust leaves the root logger at DEBUG: records get built and dropped (BROKER.md).
    logging.getLogger().setLevel(settings.log_level)
    worker.execute_from_commandline()

