"""The payer simulator: its own faust app (``{app_id}-payer``). It answers eligibility
(270 → 271) from the members it knows, and adjudicates claims into remittances that it
pays out after the payer's latency, in simulated time.

Four agents and a timer:

- ``eligibility-requests`` → ``eligibility-responses`` (stateless);
- ``claims-submitted`` → ``payer-claims``: the claim re-keyed by payer|member, so each
  member's state lives in one partition;
- ``payer-claims``: adjudicate (``simulators/payer/adjudication.py``) against the member's
  state in the ``payer_members`` table — accumulators per plan year (for a window of plan
  years, ``PLAN_YEARS_KEPT``) and the remittances waiting for their payment date, and beside
  it one entry per claim adjudicated with what duplicates and reversals need of it
  (``simulators/payer/member_store.py``);
- ``denial-actions``: a biller's appeal gets the payer's decision (``simulators/appeals.py``);
- a timer releases each remittance when its payment date comes (``CLAIMS_PAYER_TIME_SCALE``
  simulated seconds per real second) onto ``remittances``, then forgets it. A crash between
  the two sends it again: posting is idempotent by remittance id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import MutableMapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import faust
from faust.exceptions import NotReady

from engine.claims.build import FeeSchedule
from engine.model.events import (
    ClaimSubmitted,
    DenialAction,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
)
from engine.runtime.faust_app import (
    GroupedStringTable,
    add_stages,
    faust_send,
    make_faust_app,
    run_app,
    string_table,
)
from engine.runtime.kafka import produce_emits, resolve_idempotence
from engine.runtime.stages import Emit, ProcessingError, SourceMessage, Stage
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from engine.wire.topics import Table, Topic
from simulators.appeals import decide_appeal
from simulators.coverage import Coverage, load_authorizations, load_coverage
from simulators.payer import member_store
from simulators.payer.adjudication import (
    Calibration,
    MemberState,
    PayerBook,
    PayerReference,
    PendingPayment,
    adjudicate,
    release_at,
)

log = logging.getLogger(__name__)

def member_key(claim: ClaimSubmitted) -> str:
    return f"{claim.payer_id}|{claim.member_id}"


def answer_eligibility(request: EligibilityRequest, members: dict[str, Coverage], book: PayerBook,
                       now: datetime) -> EligibilityResponse:
    """271: ACTIVE with plan, copay and deductible when the member's coverage is in force
    on the date of service; INACTIVE with the coverage period when it is not; NOT_FOUND
    when the payer has no such member. (The deductible quoted is the plan's annual one;
    the accumulators live with adjudication, in another partition.)"""
    coverage = members.get(request.member_id)
    profile = book.payers.get(request.payer_id)
    found = coverage is not None and coverage.payer_id == request.payer_id
    active = found and coverage is not None and coverage.covers(request.date_of_service)
    reason = None
    if not found:
        reason = "member not found"
    elif not active and coverage is not None:
        reason = (f"coverage ended {coverage.end.isoformat()}"
                  if coverage.end and coverage.end < request.date_of_service
                  else f"coverage starts {coverage.start.isoformat()}")
    plan = profile.plan(coverage.plan_id) if active and profile and coverage else None
    return EligibilityResponse(
        request_id=request.request_id,
        encounter_id=request.encounter_id,
        payer_id=request.payer_id,
        member_id=request.member_id,
        date_of_service=request.date_of_service,
        status=(EligibilityStatus.ACTIVE if active else EligibilityStatus.INACTIVE if found
                else EligibilityStatus.NOT_FOUND),
        plan_id=coverage.plan_id if found and coverage else None,
        coverage_start=coverage.start if found and coverage else None,
        coverage_end=coverage.end if found and coverage else None,
        copay=plan.copays.get("office", Decimal("0.00")) if plan else None,
        deductible_remaining=plan.deductible if plan else None,
        reason=reason,
        responded_at=now,
    )


class PayerRuntime:
    """The payer's state outside the table: reference data (read when the first claim
    comes, after the EHR has written the master data), per-payer calibration, and a
    note of when each member's next payment is due."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.book = PayerBook.load(settings.payer_profiles_file)
        self.fees = FeeSchedule.load(settings.fee_schedule_file).charges
        self._reference: PayerReference | None = None
        self._members: dict[str, Coverage] | None = None
        self.calibration: dict[str, Calibration] = {}
        self.next_due: dict[str, float] = {}
        #: payer|member → MemberState, and its claims beside it (``member_store``): the faust
        #: table in the simulator, a dict in tests.
        self.member_table: MutableMapping[str, str] = {}
        #: The member table was recovered since the last ``rescan`` (a fresh process: yes).
        self.rescan_due = True

    @property
    def members(self) -> dict[str, Coverage]:
        if self._members is None:
            self._members = load_coverage(self.settings.master_data_dir)
        return self._members

    @property
    def reference(self) -> PayerReference:
        if self._reference is None:
            self._reference = PayerReference(self.book, self.members,
                                             load_authorizations(self.settings.master_data_dir), self.fees,
                                             self.settings.seed)
        return self._reference

    def due_payments(self, table: Any, now: float) -> list[tuple[str, MemberState, list[PendingPayment]]]:
        """Members with payments due by ``now``: (key, state, the due payments)."""
        found = []
        for key in [k for k, due in self.next_due.items() if due <= now]:
            del self.next_due[key]
            state = MemberState.loads(table.get(key))
            due = [p for p in state.pending if p.due_at <= now]
            later = [p.due_at for p in state.pending if p.due_at > now]
            if later:
                self.next_due[key] = min(later)
            if due:
                found.append((key, state, due))
        return found

    def forget_released(self, table: Any, key: str, released: list[PendingPayment]) -> None:
        """Drop the payments just sent from the member's state: a pending payment is the one
        place a whole remittance stays in the state, and only until it is paid out. Read
        again, not the state ``due_payments`` gave: the adjudication agent may have written
        this member while the payments were being sent."""
        sent = {(p.due_at, p.remittance) for p in released}
        current = MemberState.loads(table.get(key))
        current.pending = [p for p in current.pending if (p.due_at, p.remittance) not in sent]
        table[key] = current.dumps()

    def table_recovered(self) -> None:
        """The member table was recovered (a start, a rebalance): it may hold payments this
        process has no note of."""
        self.rescan_due = True

    def rescan_if_recovered(self, table: Any) -> None:
        """``rescan`` once after each recovery, not on a clock: a scan reads every entry of the
        table, and the table grows with every claim adjudicated."""
        if self.rescan_due:
            self.rescan_due = False
            self.rescan(table)

    def rescan(self, table: Any) -> None:
        for key, raw in list(member_store.member_records(table)):
            pending = MemberState.loads(raw).pending
            if pending:
                self.next_due[key] = min(self.next_due.get(key, float("inf")), min(p.due_at for p in pending))


def _answer(runtime: PayerRuntime, request: EligibilityRequest, message: SourceMessage, now: datetime) -> list[Emit]:
    return [Emit(Topic.ELIGIBILITY_RESPONSES, request.encounter_id,
                 answer_eligibility(request, runtime.members, runtime.book, now))]


def _intake(runtime: PayerRuntime, claim: ClaimSubmitted, message: SourceMessage, now: datetime) -> list[Emit]:
    """Re-keyed by payer and member, the bytes passed on as they came."""
    return [Emit(Topic.PAYER_CLAIMS, member_key(claim), message.value or b"")]


def _adjudicate(runtime: PayerRuntime, claim: ClaimSubmitted, message: SourceMessage, now: datetime) -> list[Emit]:
    """Adjudicate the claim against its member's state; remittances wait in the state until
    their payment date (or go at once when the time scale is 0)."""
    table = runtime.member_table
    key = member_key(claim)
    view = member_store.load(table, key, claim)
    state = view.state
    cal = runtime.calibration.setdefault(claim.payer_id, Calibration())
    try:
        result = adjudicate(claim, state, runtime.reference, cal, runtime.codec, now)
    except ValueError as exc:
        raise ProcessingError(str(exc)) from exc
    emits = []
    for remit, encoded in zip(result.remittances, result.encoded, strict=False):
        due = release_at(claim, remit.payment_date, runtime.settings.payer_time_scale)
        if runtime.settings.payer_time_scale <= 0:
            emits.append(Emit(Topic.REMITTANCES, remit.claim_id, remit))
        else:
            state.pending.append(PendingPayment(due, encoded))
            runtime.next_due[key] = min(runtime.next_due.get(key, due), due)
    member_store.store(table, view)
    return emits


def _decide_appeal(runtime: PayerRuntime, action: DenialAction, message: SourceMessage, now: datetime) -> list[Emit]:
    return decide_appeal(action, runtime.book, runtime.settings.seed, now)


PAYER_STAGES: tuple[Stage[PayerRuntime], ...] = (
    Stage("payer-eligibility", Topic.ELIGIBILITY_REQUESTS, EligibilityRequest, _answer),
    Stage("payer-intake", Topic.CLAIMS_SUBMITTED, ClaimSubmitted, _intake),
    Stage("payer", Topic.PAYER_CLAIMS, ClaimSubmitted, _adjudicate, (Table.PAYER_MEMBERS,)),
    Stage("payer-appeals", Topic.DENIAL_ACTIONS, DenialAction, _decide_appeal),
)
PAYER_STAGE = {stage.name: stage for stage in PAYER_STAGES}


def make_payer_app(settings: Settings, bootstrap_servers: str) -> faust.App:
    app = make_faust_app(settings, settings.payer_app_id, bootstrap_servers)
    codec = default_codec(settings.schemas_dir)
    runtime = PayerRuntime(settings, codec)
    members = runtime.member_table = string_table(app, Table.PAYER_MEMBERS, GroupedStringTable)
    send = faust_send(app)
    add_stages(app, settings, codec, PAYER_STAGES, runtime)

    @members.on_recover  # type: ignore[untyped-decorator]
    async def members_recovered() -> None:  # pragma: no cover - faust calls it after each recovery
        runtime.table_recovered()

    async def release_due_payments() -> None:
        now = time.time()
        runtime.rescan_if_recovered(members)
        for key, _, due in runtime.due_payments(members, now):
            emits = [Emit(Topic.REMITTANCES, (codec.decode_record(p.remittance)[1])["claim_id"], p.remittance)
                     for p in due]
            await produce_emits(send, settings, codec, emits)
            runtime.forget_released(members, key, due)


    async def release_timer() -> None:
        try:
            await release_due_payments()
        except NotReady:  # a SIGTERM: faust stops the producer before its timers
            log.info("payer stopping: due payments stay pending in the member table until the restart")

    app.timer(interval=settings.payer_release_interval_s)(release_timer)
    return app


def run_payer(settings: Settings, bootstrap_servers: str) -> None:
    """Run the payer simulator in this process until SIGTERM/SIGINT."""
    settings = asyncio.run(resolve_idempotence(settings, bootstrap_servers))
    run_app(make_payer_app(settings, bootstrap_servers), settings)
