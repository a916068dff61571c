"""The engine's worker, declared: each stage with the topic it reads, the event it decodes
and the pure function it runs; the tables they keep; and the faust app that feeds them
(``engine/runtime/faust_app.py``: batch agents, acks awaited per batch)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

import faust

from engine.claims.build import ClaimContext
from engine.claims.eligibility import EligibilityCache
from engine.claims.stage import ClaimStageState, bill_coded, on_eligibility
from engine.coding.review import recode_action, remember_opened
from engine.coding.rules import CodingReference, code_encounter
from engine.denials.actions import handle_denial_action
from engine.model.events import CodedEncounter, CodingAction, DenialAction, EligibilityResponse, Encounter, Remittance
from engine.posting.ledger import post_remittance
from engine.posting.routing import DenialRouting
from engine.reference.codesets import warm_up
from engine.runtime.cluster_watch import watch_cluster
from engine.runtime.faust_app import TABLE_PARTITIONS, add_stages, make_faust_app, run_app, string_table
from engine.runtime.kafka import resolve_idempotence
from engine.runtime.staged_state import StagedTable
from engine.runtime.stages import Emit, SourceMessage, Stage
from engine.runtime.transactional_worker import run_transactionally
from engine.runtime.transactions import EXACTLY_ONCE
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from engine.wire.topics import Table, Topic

#: The worker's tables, each keyed like the topic its stage reads (encounter id, or claim
#: id for the ledger and the denied claims), so its changelog partition is the source's.
TABLES = (
    Table.CLAIMS_BY_ENCOUNTER,  # encounter id → claim id (dedupe), and the coded event while parked for its 271
    Table.CODING_ITEMS_BY_ENCOUNTER,  # coder work items: the current revision, so a stale fix is rejected
    # 271 answers by payer|member, reused for the TTL. Keyed by member, not encounter: with
    # several workers each keeps the answers it asked for (a cache: a miss asks again).
    Table.ELIGIBILITY_ANSWERS,
    Table.CLAIM_LEDGER,  # claim id → posted amounts
    Table.DENIED_CLAIMS,  # denied claim id → the biller actions handled, claims sent, write-offs made
)


@dataclass
class WorkerContext:
    """What the stages read besides their events: reference data, settings and tables
    (faust tables in the worker, dicts in tests)."""

    codec: Codec
    coding: CodingReference
    claims: ClaimContext
    routing: DenialRouting
    tables: Mapping[Table, MutableMapping[str, str]]
    audit_rate: float
    statement_due_days: int
    claim_state: ClaimStageState = field(init=False)

    def __post_init__(self) -> None:
        self.claim_state = ClaimStageState(
            self.tables[Table.CLAIMS_BY_ENCOUNTER],
            EligibilityCache(self.tables[Table.ELIGIBILITY_ANSWERS], self.codec, self.claims.eligibility_ttl))

    @classmethod
    def load(cls, settings: Settings, codec: Codec, tables: Mapping[Table, MutableMapping[str, str]]) -> WorkerContext:
        return cls(codec, CodingReference.load(settings), ClaimContext.load(settings, codec),
                   DenialRouting.load(settings.denial_routing_file), tables, settings.coding_audit_rate,
                   settings.statement_due_days)


def _code(ctx: WorkerContext, encounter: Encounter, message: SourceMessage, now: datetime) -> Iterable[Emit]:
    emits = code_encounter(encounter, message.value or b"", ctx.coding, now, ctx.audit_rate)
    return remember_opened(emits, ctx.tables[Table.CODING_ITEMS_BY_ENCOUNTER])


def _recode(ctx: WorkerContext, action: CodingAction, message: SourceMessage, now: datetime) -> Iterable[Emit]:
    """Coder actions: a correction is checked again like a new encounter."""
    return recode_action(action, ctx.codec, ctx.coding, now, ctx.tables[Table.CODING_ITEMS_BY_ENCOUNTER])


def _bill(ctx: WorkerContext, coded: CodedEncounter, message: SourceMessage, now: datetime) -> Iterable[Emit]:
    return bill_coded(coded, message, ctx.claim_state, ctx.claims, now)


def _decide_eligibility(ctx: WorkerContext, answer: EligibilityResponse, message: SourceMessage,
                        now: datetime) -> Iterable[Emit]:
    """The payer's 271 answers: the parked encounters go on to the claim or the front desk."""
    return on_eligibility(answer, ctx.claim_state, ctx.claims, now)


def _post(ctx: WorkerContext, remittance: Remittance, message: SourceMessage, now: datetime) -> Iterable[Emit]:
    """Remittances: post to the claim's ledger, bill the patient's share, route denials."""
    return post_remittance(remittance, ctx.tables[Table.CLAIM_LEDGER], ctx.routing, ctx.statement_due_days, now)


def _act(ctx: WorkerContext, action: DenialAction, message: SourceMessage, now: datetime) -> Iterable[Emit]:
    """Billers' actions: replacements and voids checked and sent; write-offs and appeal
    payments on the claim's ledger."""
    return handle_denial_action(action, ctx.tables[Table.DENIED_CLAIMS], ctx.tables[Table.CLAIM_LEDGER], ctx.codec,
                                ctx.coding, ctx.claims, now)


_CODING_STATE = (Table.CODING_ITEMS_BY_ENCOUNTER,)
_CLAIM_STATE = (Table.CLAIMS_BY_ENCOUNTER, Table.ELIGIBILITY_ANSWERS)
STAGES: tuple[Stage[WorkerContext], ...] = (
    Stage("coding", Topic.ENCOUNTERS, Encounter, _code, _CODING_STATE),
    Stage("recoding", Topic.CODING_ACTIONS, CodingAction, _recode, _CODING_STATE),
    Stage("claims", Topic.CODED, CodedEncounter, _bill, _CLAIM_STATE),
    Stage("eligibility", Topic.ELIGIBILITY_RESPONSES, EligibilityResponse, _decide_eligibility, _CLAIM_STATE),
    Stage("posting", Topic.REMITTANCES, Remittance, _post, (Table.CLAIM_LEDGER,)),
    Stage("denial-actions", Topic.DENIAL_ACTIONS, DenialAction, _act,  # not a topic: the stage's name
          (Table.DENIED_CLAIMS, Table.CLAIM_LEDGER)),
)
STAGE = {stage.name: stage for stage in STAGES}


def make_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    app = make_faust_app(settings, settings.app_id, bootstrap_servers)
    codec = default_codec(settings.schemas_dir)
    # Staged: a stage's writes reach the table only with the outputs they stand for.
    context = WorkerContext.load(settings, codec, {table: StagedTable(string_table(app, table)) for table in TABLES})
    add_stages(app, settings, codec, STAGES, context)
    warm_up()
    return app


def run_worker(settings: Settings, bootstrap_servers: str) -> None:
    """Run the engine's agents in this process until SIGTERM/SIGINT: on faust, or on
    aiokafka in transactions with ``exactly_once`` (``engine/runtime/transactional_worker.py``)."""
    settings = asyncio.run(resolve_idempotence(settings, bootstrap_servers))
    if settings.processing_guarantee == EXACTLY_ONCE:
        asyncio.run(run_exactly_once(settings, bootstrap_servers))
        return
    run_app(make_app(settings, bootstrap_servers), settings)


async def run_exactly_once(settings: Settings, bootstrap_servers: str, stop: asyncio.Event | None = None) -> None:
    """The stages exactly once until SIGTERM/SIGINT (or ``stop``), watching the broker for a reset."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    codec = default_codec(settings.schemas_dir)
    warm_up()
    watcher = asyncio.create_task(watch_cluster(settings.with_bootstrap(bootstrap_servers), "the engine worker", stop))
    try:
        await run_transactionally(settings, bootstrap_servers, codec, STAGES,
                                  lambda tables: WorkerContext.load(settings, codec, tables), TABLES,
                                  TABLE_PARTITIONS, stop)
    finally:
        stop.set()
        await watcher
