"""The faust worker: wires each stage's pure batch function to its topics
(``engine/runtime/faust_app.py`` holds what every faust app here shares: batch agents, raw
bytes, acks awaited per batch — at-least-once, every stage idempotent downstream)."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence

import faust

from engine.claims.build import ClaimContext, ClaimStageState, bill_coded, on_eligibility
from engine.claims.eligibility import EligibilityCache
from engine.coding.review import recode_action, remember_opened
from engine.coding.rules import CodingReference, code_encounter
from engine.denials.actions import handle_denial_action
from engine.model.events import CodedEncounter, CodingAction, DenialAction, EligibilityResponse, Encounter, Remittance
from engine.posting.ledger import post_remittance
from engine.posting.routing import DenialRouting
from engine.reference.codesets import warm_up
from engine.runtime.faust_app import add_batch_agent, make_faust_app, run_app, string_table
from engine.runtime.stages import SourceMessage, StageResult, run_stage, utcnow
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec

log = logging.getLogger(__name__)

BILLED_TABLE = "claims_by_encounter"
CODING_ITEMS_TABLE = "coding_items_by_encounter"
AWAITING_TABLE = "awaiting_eligibility"
ANSWERS_TABLE = "eligibility_answers"
LEDGER_TABLE = "claim_ledger"
DENIED_CLAIMS_TABLE = "denied_claims"


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


def posting_stage(messages: Sequence[SourceMessage], codec: Codec, ledgers: MutableMapping[str, str],
                  routing: DenialRouting, due_days: int) -> StageResult:
    """Remittances: post to the claim's ledger, bill the patient's share, route denials."""
    now = utcnow()
    return run_stage("posting", messages, codec, Remittance,
                     lambda r, msg: post_remittance(r, ledgers, routing, due_days, now))


def denial_actions_stage(messages: Sequence[SourceMessage], codec: Codec, denied: MutableMapping[str, str],
                         ledgers: MutableMapping[str, str], coding_ref: CodingReference,
                         ctx: ClaimContext) -> StageResult:
    """Billers' actions: replacements and voids checked and sent; write-offs and appeal
    payments on the claim's ledger."""
    now = utcnow()
    return run_stage("denial-actions", messages, codec, DenialAction,
                     lambda action, msg: handle_denial_action(action, denied, ledgers, codec, coding_ref, ctx, now))


# --- faust wiring ------------------------------------------------------------


def make_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    app = make_faust_app(settings, settings.app_id, bootstrap_servers)
    codec = default_codec(settings.schemas_dir)
    claim_ctx = ClaimContext.load(settings, codec)
    routing = DenialRouting.load(settings.denial_routing_file)
    coding_ref = CodingReference.load(settings)

    # Every table is keyed like the topic its agent reads (encounter id, or claim id for
    # the ledger), so its changelog partition is the source partition.
    billed = string_table(app, BILLED_TABLE)  # encounter id → claim id (dedupe)
    # Coder work items: the current revision, so a stale fix is rejected.
    coding_items = string_table(app, CODING_ITEMS_TABLE)
    # Coded encounters waiting for their eligibility answer.
    awaiting = string_table(app, AWAITING_TABLE)
    # 271 answers by payer|member, reused for the TTL. Keyed by member, not encounter:
    # with several workers each keeps the answers it asked for (a cache: a miss asks again).
    answers = string_table(app, ANSWERS_TABLE)
    ledgers = string_table(app, LEDGER_TABLE)  # claim id → posted amounts
    # Denied claim id → the biller actions handled, the claims sent, the write-offs made.
    denied = string_table(app, DENIED_CLAIMS_TABLE)
    claim_state = ClaimStageState(billed, awaiting, EligibilityCache(answers, codec, claim_ctx.eligibility_ttl))

    def agent(source: str, stage: Callable[[Sequence[SourceMessage]], StageResult]) -> None:
        add_batch_agent(app, settings, codec, source, stage)

    agent("encounters", lambda msgs: coding_stage(msgs, codec, coding_ref, settings.coding_audit_rate, coding_items))
    agent("coding-actions", lambda msgs: recoding_stage(msgs, codec, coding_ref, coding_items))
    agent("coded", lambda msgs: claims_stage(msgs, codec, claim_state, claim_ctx))
    agent("eligibility-responses", lambda msgs: eligibility_stage(msgs, codec, claim_state, claim_ctx))
    agent("remittances", lambda msgs: posting_stage(msgs, codec, ledgers, routing, settings.statement_due_days))
    agent("denial-actions", lambda msgs: denial_actions_stage(msgs, codec, denied, ledgers, coding_ref, claim_ctx))
    warm_up()
    return app


def run_worker(settings: Settings, bootstrap_servers: str) -> None:
    """Run the engine's agents in this process until SIGTERM/SIGINT."""
    run_app(make_app(settings, bootstrap_servers), settings)
