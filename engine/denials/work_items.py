"""Denial work queues, the pure domain (no Kafka, no agent, no CLI): a work item's state as
the fold of its biller actions and remittances, its transitions, deadline and priority.
Design notes and the transition table: docs/denials.md, section "Design notes"."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from engine.model.codes import REPLACEMENT, VOID
from engine.model.events import (
    ClaimLine,
    ClaimSubmitted,
    DenialAction,
    DenialActionType,
    DenialWorkItem,
    Remittance,
    RemittanceOutcome,
)
from engine.model.money import CENTS, ZERO
from engine.runtime.stages import ProcessingError

#: Appeal window when the payer has none configured. Medicare allows 120 days from the
#: initial determination and ACA plans 180; 60 is our own conservative assumption, so an
#: item of an unknown payer never looks safer than it is.
DEFAULT_APPEAL_DAYS = 60

#: Days-left scale of the urgency weight: an item due in 30 days counts double its amount.
URGENCY_HORIZON_DAYS = 30


class WorkItemStatus(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESUBMITTED = "RESUBMITTED"  # waiting for the payer's answer to the replacement claim
    VOIDED = "VOIDED"
    APPEALED = "APPEALED"  # waiting for the payer's appeal decision
    RESOLVED_PAID = "RESOLVED_PAID"
    APPEAL_WON = "APPEAL_WON"
    APPEAL_LOST = "APPEAL_LOST"
    WRITTEN_OFF = "WRITTEN_OFF"
    REOPENED = "REOPENED"


S = WorkItemStatus
A = DenialActionType

#: Closed: nobody works the item any more (it may still be reopened, see REOPEN).
RESOLVED = frozenset({S.RESOLVED_PAID, S.APPEAL_WON, S.APPEAL_LOST, S.WRITTEN_OFF, S.VOIDED})
#: Open = not resolved; together the two partition every status (accounting relies on it).
OPEN_STATUSES = frozenset(S) - RESOLVED
#: Open and waiting for a biller (not for the payer): what a work list shows.
ACTIONABLE = frozenset({S.OPEN, S.IN_PROGRESS, S.REOPENED})
#: Closed items a money-recovering outcome ended.
RECOVERED = frozenset({S.RESOLVED_PAID, S.APPEAL_WON})

_WORKABLE = frozenset({S.OPEN, S.REOPENED, S.IN_PROGRESS})

#: action -> the statuses it may be applied in (targets: ``_target``).
TRANSITIONS: dict[DenialActionType, frozenset[WorkItemStatus]] = {
    A.CLAIM: _WORKABLE,
    A.RESUBMIT: _WORKABLE,
    A.VOID: _WORKABLE,
    A.APPEAL: _WORKABLE,
    A.APPEAL_DECIDED: frozenset({S.APPEALED}),
    A.WRITE_OFF: _WORKABLE | {S.APPEAL_LOST},
    A.REOPEN: frozenset({S.WRITTEN_OFF, S.APPEAL_LOST, S.VOIDED}),
    A.RESUBMIT_REJECTED: frozenset({S.RESUBMITTED, S.VOIDED}),
}


# --- deadlines and priority -----------------------------------------------------


def appeal_deadline(item: DenialWorkItem, appeal_days_by_payer: Mapping[str, int],
                    default_days: int = DEFAULT_APPEAL_DAYS) -> date:
    """Last day to appeal: the item's creation date + the payer's appeal window.

    Payers count the window from the initial determination (the remittance), not the
    date of service; the item is made when that remittance is posted, so ``created_at``
    is the closest date the item carries (it never makes the window look longer)."""
    days = appeal_days_by_payer.get(item.payer_id, default_days)
    return item.created_at.date() + timedelta(days=days)


def days_left(deadline: date, today: date) -> int:
    """Whole days until the deadline: 0 on the day itself, negative once it passed."""
    return (deadline - today).days


def priority_score(amount_at_risk: Decimal, days_left: int, recoverable: bool) -> Decimal:
    """Money × urgency, so a biller works the most dollars closest to their deadline first.

    urgency = 1 + 30 / max(days_left, 1): 2 with 30 days left, 31 on the last day; an
    expired deadline weighs as much as the last day (it still sorts high, and the work
    list flags it: a corrected claim may still be possible). Non-recoverable denials
    (routing says so) score 0: working them rarely brings money back. Decimal, never
    float, so equal inputs give equal scores on every machine."""
    if not recoverable or amount_at_risk <= ZERO:
        return ZERO
    urgency = 1 + Decimal(URGENCY_HORIZON_DAYS) / Decimal(max(days_left, 1))
    return (amount_at_risk * urgency).quantize(CENTS)


# --- the fold ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkItemState:
    """A denial work item as its actions and remittances left it."""

    work_item_id: str
    claim_id: str
    amount_at_risk: Decimal
    status: WorkItemStatus = S.OPEN
    assignee: str | None = None
    #: Ids applied, in order: DenialAction.action_id and Remittance.remittance_id.
    history: tuple[str, ...] = ()
    #: The latest replacement (7) or void (8) claim sent for this denial.
    replacement_claim_id: str | None = None
    written_off_amount: Decimal = ZERO
    recovered_amount: Decimal = ZERO
    #: 1 for the first denial; +1 each time the replacement was denied again.
    round: int = 1
    #: The claim standing at the payer, which the next correction replaces (None: the denied claim).
    standing_claim_id: str | None = None
    #: What the payer had paid on the standing claim: a replacement recovers only what it pays beyond it.
    paid_before: Decimal = ZERO

    @property
    def current_claim_id(self) -> str:
        return self.standing_claim_id or self.claim_id

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def new_state(item: DenialWorkItem, paid_before: Decimal = ZERO) -> WorkItemState:
    """The state of a freshly routed denial (``paid_before``: what the payer paid on the
    remittance that denied it, non-zero when only some lines were denied)."""
    return WorkItemState(work_item_id=item.work_item_id, claim_id=item.claim_id, amount_at_risk=item.amount_at_risk,
                         paid_before=paid_before)


def next_claim_id(state: WorkItemState, kind: DenialActionType) -> str:
    """The id of the replacement (R) or void (V) claim a RESUBMIT / VOID would send now.

    Derived from the item's state, so two billers correcting the same state name the same
    claim: the second action is refused by the fold and the claim is sent once."""
    letter = {A.RESUBMIT: "R", A.VOID: "V"}[kind]
    return f"{state.claim_id}-{letter}{len(state.history) + 1}"


def apply_action(state: WorkItemState, action: DenialAction) -> WorkItemState:
    """The state after one biller action (the transition table in the module docstring).

    Applying an action id already in the history returns the state unchanged, so a
    redelivered event is harmless. Errors name ids and statuses only, never PHI."""
    if action.action_id in state.history:
        return state
    if action.work_item_id != state.work_item_id or action.claim_id != state.claim_id:
        raise ProcessingError(
            f"action {action.action_id} is for work item {action.work_item_id} / claim {action.claim_id}, "
            f"not {state.work_item_id} / {state.claim_id}")
    kind = DenialActionType(action.action)
    if state.status not in TRANSITIONS[kind]:
        raise ProcessingError(
            f"action {action.action_id}: {kind} is not allowed on work item {state.work_item_id} "
            f"in status {state.status}{_why_not(kind, state.status)}")
    changes = _changes(kind, state, action)
    return dataclasses.replace(state, history=(*state.history, action.action_id), **changes)


def _why_not(kind: DenialActionType, status: WorkItemStatus) -> str:
    if kind == A.APPEAL_DECIDED:
        return " (no appeal is pending)"
    if kind == A.WRITE_OFF and status == S.WRITTEN_OFF:
        return " (already written off)"
    if kind == A.REOPEN and status in RECOVERED:
        return " (money was recovered; a new underpayment is a new denial)"
    if kind == A.REOPEN:
        return " (the item is not closed)"
    if kind == A.RESUBMIT_REJECTED:
        return " (no replacement or void is in flight)"
    if status in (S.RESUBMITTED, S.APPEALED):
        return " (waiting for the payer)"
    return ""


def _changes(kind: DenialActionType, state: WorkItemState, action: DenialAction) -> dict[str, Any]:
    owner = state.assignee or action.user
    if kind == A.CLAIM:
        return {"status": S.IN_PROGRESS, "assignee": action.user}
    if kind in (A.RESUBMIT, A.VOID):
        if not action.replacement_claim_id or action.replacement_claim_id == state.claim_id:
            raise ProcessingError(f"action {action.action_id}: {kind} needs the id of the new claim it sent")
        status = S.RESUBMITTED if kind == A.RESUBMIT else S.VOIDED
        return {"status": status, "assignee": owner, "replacement_claim_id": action.replacement_claim_id}
    if kind == A.APPEAL:
        return {"status": S.APPEALED, "assignee": owner}
    if kind == A.APPEAL_DECIDED:
        if action.appeal_overturned is None:
            raise ProcessingError(f"action {action.action_id}: APPEAL_DECIDED needs appeal_overturned")
        if not action.appeal_overturned:
            return {"status": S.APPEAL_LOST}
        recovered = _money(action, default=ZERO)
        return {"status": S.APPEAL_WON, "recovered_amount": state.recovered_amount + recovered}
    if kind == A.WRITE_OFF:
        if not action.adjustment_reason:
            raise ProcessingError(f"action {action.action_id}: WRITE_OFF needs an adjustment reason code")
        return {"status": S.WRITTEN_OFF, "assignee": owner,
                "written_off_amount": _money(action, default=state.amount_at_risk)}
    if kind == A.REOPEN:  # a write-off is taken back: the balance is worked again
        return {"status": S.REOPENED, "assignee": action.user, "written_off_amount": ZERO}
    if kind == A.RESUBMIT_REJECTED:
        if action.replacement_claim_id != state.replacement_claim_id:
            raise ProcessingError(f"action {action.action_id}: rejects claim {action.replacement_claim_id}, but the "
                                  f"item's latest is {state.replacement_claim_id}")
        return {"status": S.IN_PROGRESS, "replacement_claim_id": None}
    raise ProcessingError(f"action {action.action_id}: unknown action {kind}")  # pragma: no cover


def _money(action: DenialAction, default: Decimal) -> Decimal:
    amount = default if action.amount is None else action.amount
    if amount < ZERO:
        raise ProcessingError(f"action {action.action_id}: amount must not be negative")
    return amount.quantize(CENTS)


def apply_remittance(state: WorkItemState, remittance: Remittance, replaced: bool = True) -> WorkItemState:
    """The payer's answer to the replacement claim: paid (or partly paid for more than
    the replaced claim had paid) resolves the item with what it gained; denied again, or
    paid no more than before, puts it back in the queue for a new round.

    ``replaced``: the payer reversed the claim the replacement named. It does not when it
    denies a replacement at claim level (the original stands), and then the next
    correction must name that claim again, not the denied replacement.

    The reversal itself (CLP02 22) changes nothing here: the replacement's own answer is
    what decides the item."""
    if remittance.remittance_id in state.history:
        return state
    if remittance.outcome == RemittanceOutcome.REVERSED:
        return state
    if state.status != S.RESUBMITTED or remittance.claim_id != state.replacement_claim_id:
        raise ProcessingError(
            f"remittance {remittance.remittance_id} for claim {remittance.claim_id} does not answer work item "
            f"{state.work_item_id} (status {state.status}, replacement {state.replacement_claim_id})")
    history = (*state.history, remittance.remittance_id)
    gained = max(remittance.paid_amount - state.paid_before, ZERO) if replaced else remittance.paid_amount
    if remittance.outcome == RemittanceOutcome.PAID or (
            remittance.outcome == RemittanceOutcome.PARTIALLY_PAID and gained > ZERO):
        return dataclasses.replace(state, status=S.RESOLVED_PAID, history=history,
                                   recovered_amount=state.recovered_amount + gained)
    standing: dict[str, Any] = ({"standing_claim_id": remittance.claim_id, "paid_before": remittance.paid_amount}
                                if replaced else {})
    return dataclasses.replace(state, status=S.OPEN, history=history, round=state.round + 1,
                               replacement_claim_id=None, **standing)


@dataclass(frozen=True, slots=True)
class FoldedQueues:
    """Every work item with its state, and the actions that were refused (illegal for the
    state they met: two billers acting at once, a stale screen)."""

    items: list[tuple[DenialWorkItem, WorkItemState]]
    refused: list[tuple[DenialAction, str]]


def fold_work_items(items: Iterable[DenialWorkItem], actions: Iterable[DenialAction],
                    remittances: Iterable[Remittance],
                    paid_by_remittance: Mapping[str, Decimal] | None = None) -> FoldedQueues:
    """The queues as the events left them: one item per work item id (a routed-twice
    remittance is one item), its actions in topic order, and the answers to its
    replacement claims in time order among them (a payer's answer adjudicated before an
    action applies before it), so a later read folds an action the way it met the item.

    What each denying remittance paid comes from ``remittances``, or from
    ``paid_by_remittance`` when the caller keeps only the replacements' remittances."""
    items_by_id: dict[str, DenialWorkItem] = {}
    for item in items:
        items_by_id.setdefault(item.work_item_id, item)
    by_claim: dict[str, list[Remittance]] = {}
    paid_by_remittance = dict(paid_by_remittance or {})
    for remittance in remittances:
        by_claim.setdefault(remittance.claim_id, []).append(remittance)
        paid_by_remittance[remittance.remittance_id] = remittance.paid_amount
    states = {wid: new_state(item, paid_by_remittance.get(item.remittance_id, ZERO))
              for wid, item in items_by_id.items()}
    refused: list[tuple[DenialAction, str]] = []

    def answer_replacement(wid: str, until: datetime | None = None) -> None:
        state = states[wid]
        while state.status == S.RESUBMITTED:
            pending = [r for r in by_claim.get(state.replacement_claim_id or "", [])
                       if r.remittance_id not in state.history and r.outcome != RemittanceOutcome.REVERSED
                       and (until is None or r.adjudicated_at <= until)]
            if not pending:
                break
            replaced = any(r.outcome == RemittanceOutcome.REVERSED for r in by_claim.get(state.current_claim_id, []))
            state = apply_remittance(state, pending[0], replaced)
        states[wid] = state

    acted: set[str] = set()
    for action in actions:
        if action.work_item_id not in states:
            refused.append((action, f"no work item {action.work_item_id}"))
            continue
        answer_replacement(action.work_item_id, until=action.at)
        acted.add(action.work_item_id)
        try:
            states[action.work_item_id] = apply_action(states[action.work_item_id], action)
        except ProcessingError as exc:
            refused.append((action, str(exc)))
    for wid in acted:
        answer_replacement(wid)
    return FoldedQueues([(items_by_id[wid], states[wid]) for wid in items_by_id], refused)


# --- queues -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueOverview:
    """One queue at a glance: how much is open, how much money, how stale."""

    queue: str
    open_count: int  # not resolved (incl. waiting for the payer)
    actionable_count: int  # open and waiting for a biller
    amount_at_risk: Decimal  # of the open items
    oldest_open_days: int | None  # None: nothing open


def _age_days(item: DenialWorkItem, today: date) -> int:
    return (today - item.created_at.date()).days


def queue_overview(items: Iterable[tuple[DenialWorkItem, WorkItemState]], today: date) -> dict[str, QueueOverview]:
    """Per queue (sorted by name): open count, $ at risk and age of the oldest open item."""
    by_queue: dict[str, list[tuple[DenialWorkItem, WorkItemState]]] = {}
    for item, state in items:
        by_queue.setdefault(item.queue, []).append((item, state))
    overview: dict[str, QueueOverview] = {}
    for queue in sorted(by_queue):
        open_items = [(i, s) for i, s in by_queue[queue] if s.is_open]
        overview[queue] = QueueOverview(
            queue=queue,
            open_count=len(open_items),
            actionable_count=sum(1 for _, s in open_items if s.status in ACTIONABLE),
            amount_at_risk=sum((i.amount_at_risk for i, _ in open_items), ZERO),
            oldest_open_days=max((_age_days(i, today) for i, _ in open_items), default=None),
        )
    return overview


@dataclass(frozen=True, slots=True)
class WorkListEntry:
    item: DenialWorkItem
    state: WorkItemState
    appeal_deadline: date
    days_left: int
    priority: Decimal
    expired: bool  # the appeal window has closed: only a corrected claim or a write-off is left


SORTS = ("priority", "deadline", "amount", "age")


def work_list(items: Iterable[tuple[DenialWorkItem, WorkItemState]], queue: str, today: date, *,
              sort: str = "priority", appeal_days_by_payer: Mapping[str, int] | None = None,
              default_days: int = DEFAULT_APPEAL_DAYS) -> list[WorkListEntry]:
    """The actionable items of one queue in the order a biller should take them.

    ``priority``: highest score first; ``deadline``: soonest first; ``amount``: most money
    first; ``age``: oldest first. Ties fall back to deadline then work item id, so the
    order is total and the same on every run."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
    entries = []
    for item, state in items:
        if item.queue != queue or state.status not in ACTIONABLE:
            continue
        deadline = appeal_deadline(item, appeal_days_by_payer or {}, default_days)
        left = days_left(deadline, today)
        entries.append(WorkListEntry(item, state, deadline, left,
                                     priority_score(item.amount_at_risk, left, item.recoverable), left < 0))
    keys = {
        "priority": lambda e: (-e.priority, e.appeal_deadline, e.item.work_item_id),
        "deadline": lambda e: (e.appeal_deadline, -e.priority, e.item.work_item_id),
        "amount": lambda e: (-e.item.amount_at_risk, e.appeal_deadline, e.item.work_item_id),
        "age": lambda e: (e.item.created_at, e.appeal_deadline, e.item.work_item_id),
    }
    return sorted(entries, key=keys[sort])


# --- accounting -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkItemAccounting:
    """Every denial work item is open or resolved, never both nor neither:
    ``open + resolved == created`` always."""

    created: int
    open: int
    resolved: int
    #: Resolved with money back: paid on resubmission or appeal won.
    denials_resolved: int
    recovered_amount: Decimal
    written_off_amount: Decimal
    by_status: dict[str, int]


def work_item_accounting(states: Iterable[WorkItemState]) -> WorkItemAccounting:
    states = list(states)
    by_status = {str(s): 0 for s in WorkItemStatus}
    for state in states:
        by_status[str(state.status)] += 1
    return WorkItemAccounting(
        created=len(states),
        open=sum(1 for s in states if s.status in OPEN_STATUSES),
        resolved=sum(1 for s in states if s.status in RESOLVED),
        denials_resolved=sum(1 for s in states if s.status in RECOVERED),
        recovered_amount=sum((s.recovered_amount for s in states), ZERO),
        written_off_amount=sum((s.written_off_amount for s in states), ZERO),
        by_status=by_status,
    )


# --- corrected and void claims -----------------------------------------------------------


class Fees(Protocol):
    """What a corrected line's new charge is looked up in (``engine.claims.build.FeeSchedule``)."""

    def charge(self, code: str, units: int) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class LineCorrection:
    """What changes on one claim line; None leaves the field as it was."""

    line_number: int
    procedure_code: str | None = None
    modifiers: tuple[str, ...] | None = None
    units: int | None = None
    dx_pointers: tuple[int, ...] | None = None
    charge: Decimal | None = None  # default: per-unit charge × units, or the fee schedule for a new code


@dataclass(frozen=True, slots=True)
class ClaimCorrections:
    """A biller's corrections for a replacement claim (frequency 7)."""

    lines: tuple[LineCorrection, ...] = ()
    diagnoses: tuple[str, ...] | None = None
    remove_lines: frozenset[int] = frozenset()


def replacement_claim(original: ClaimSubmitted, corrections: ClaimCorrections, new_claim_id: str,
                      now: datetime, *, fees: Fees | None = None) -> ClaimSubmitted:
    """The corrected claim: frequency 7 naming the original (REF*F8), same patient,
    payer, member and patient control number (an 835 matches a replacement by its
    original's PCN). The payer reverses the original and adjudicates this one."""
    if original.frequency_code == VOID:
        raise ProcessingError(f"claim {original.claim_id} is a void; it cannot be replaced")
    by_number = {ln.line_number: ln for ln in original.lines}
    unknown = sorted(({c.line_number for c in corrections.lines} | corrections.remove_lines) - by_number.keys())
    if unknown:
        raise ProcessingError(f"claim {original.claim_id} has no line {unknown[0]}")
    fixes = {c.line_number: c for c in corrections.lines}
    lines = [_corrected(ln, fixes.get(ln.line_number), fees, original.claim_id)
             for ln in original.lines if ln.line_number not in corrections.remove_lines]
    if not lines:
        raise ProcessingError(f"replacement of claim {original.claim_id} would have no lines")
    diagnoses = list(corrections.diagnoses) if corrections.diagnoses is not None else list(original.diagnoses)
    for ln in lines:
        if not ln.dx_pointers or any(not 1 <= p <= len(diagnoses) for p in ln.dx_pointers):
            raise ProcessingError(
                f"replacement of claim {original.claim_id}: line {ln.line_number} points past the diagnoses")
    return _successor(original, new_claim_id, REPLACEMENT, now, lines=lines, diagnoses=diagnoses)


def void_claim(original: ClaimSubmitted, new_claim_id: str, now: datetime) -> ClaimSubmitted:
    """The void (frequency 8): the original's content unchanged, naming it, so the payer
    takes its payment back."""
    if original.frequency_code == VOID:
        raise ProcessingError(f"claim {original.claim_id} is already a void")
    return _successor(original, new_claim_id, VOID, now,
                      lines=[dataclasses.replace(ln, modifiers=list(ln.modifiers), dx_pointers=list(ln.dx_pointers))
                             for ln in original.lines],
                      diagnoses=list(original.diagnoses))


def _successor(original: ClaimSubmitted, new_claim_id: str, frequency: str, now: datetime, *,
               lines: list[ClaimLine], diagnoses: list[str]) -> ClaimSubmitted:
    if not new_claim_id or new_claim_id == original.claim_id:
        raise ProcessingError(f"claim {original.claim_id}: the new claim needs its own id")
    return dataclasses.replace(
        original,
        claim_id=new_claim_id,
        frequency_code=frequency,
        original_claim_id=original.claim_id,
        diagnoses=diagnoses,
        lines=lines,
        total_charge=sum((ln.charge for ln in lines), ZERO),
        submitted_at=now,
    )


def _corrected(line: ClaimLine, fix: LineCorrection | None, fees: Fees | None, claim_id: str) -> ClaimLine:
    if fix is None:
        return dataclasses.replace(line, modifiers=list(line.modifiers), dx_pointers=list(line.dx_pointers))
    code = fix.procedure_code or line.procedure_code
    units = line.units if fix.units is None else fix.units
    if units < 1:
        raise ProcessingError(f"claim {claim_id} line {line.line_number}: units must be at least 1")
    if fix.charge is not None:
        charge = fix.charge.quantize(CENTS)
    elif code == line.procedure_code:
        charge = (line.charge / line.units * units).quantize(CENTS)
    elif fees is not None:
        charge = fees.charge(code, units)
    else:
        raise ProcessingError(f"claim {claim_id} line {line.line_number}: a new procedure code needs a charge")
    return ClaimLine(
        line_number=line.line_number,
        procedure_code=code,
        modifiers=list(line.modifiers if fix.modifiers is None else fix.modifiers),
        units=units,
        charge=charge,
        dx_pointers=list(line.dx_pointers if fix.dx_pointers is None else fix.dx_pointers),
        date_of_service=line.date_of_service,
    )
