"""The coder review queue: work items, the actions coders take on them, and the
re-check of a correction.

Nothing is edited in place. A work item (``CodingReviewItem``) is opened by the coding
stage; every coder or provider action is a ``CodingAction`` event, and so is the
engine's verdict on each fix (RESOLVED, FIX_REJECTED; a fix that still fails opens the
item's next revision). An item's state is the fold of those events (``fold_items``),
so any reader — the CLI, a web page, an audit — rebuilds the same queue from the two
topics. The worker keeps each item's current revision in a table (``ItemState``) so a
fix for a revision that is no longer current, or for a resolved item, is rejected
rather than re-checked: two coders cannot both bill one encounter.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from engine.coding.rules import CodingReference, code_encounter, review_item_id
from engine.model.events import (
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    Encounter,
    Finding,
    Procedure,
)
from engine.runtime.stages import Emit, ProcessingError
from engine.wire.codec import Codec
from engine.wire.topics import Topic


class ItemStatus(StrEnum):
    OPEN = "OPEN"  # errors to fix
    QUERIED = "QUERIED"  # waiting for the provider's answer
    ANSWERED = "ANSWERED"  # the provider answered: back with the coder
    FIX_SUBMITTED = "FIX_SUBMITTED"  # a correction is being re-checked
    RESOLVED = "RESOLVED"  # the correction passed and went on to the claim
    AUDIT_OPEN = "AUDIT_OPEN"  # a clean encounter drawn for quality control
    AUDIT_AGREED = "AUDIT_AGREED"
    AUDIT_DISAGREED = "AUDIT_DISAGREED"


#: The statuses the default ``claims coding list`` shows: a coder has something to do,
#: or a fix is awaiting its re-check (one stuck there can be fixed again).
NEEDS_CODER = frozenset({ItemStatus.OPEN, ItemStatus.ANSWERED, ItemStatus.AUDIT_OPEN, ItemStatus.FIX_SUBMITTED})
CLOSED = frozenset({ItemStatus.RESOLVED, ItemStatus.AUDIT_AGREED, ItemStatus.AUDIT_DISAGREED})

#: Which action each status allows a person (anything else is refused with the reason).
ALLOWED: dict[ItemStatus, frozenset[CodingActionType]] = {
    ItemStatus.OPEN: frozenset({CodingActionType.FIX, CodingActionType.QUERY}),
    ItemStatus.QUERIED: frozenset({CodingActionType.ANSWER, CodingActionType.FIX}),
    ItemStatus.ANSWERED: frozenset({CodingActionType.FIX, CodingActionType.QUERY}),
    ItemStatus.FIX_SUBMITTED: frozenset({CodingActionType.FIX}),
    ItemStatus.AUDIT_OPEN: frozenset({CodingActionType.AUDIT_AGREE, CodingActionType.AUDIT_DISAGREE}),
}
#: The engine's verdicts on a fix, written to coding-actions by the re-check.
VERDICTS = frozenset({CodingActionType.RESOLVED, CodingActionType.FIX_REJECTED})
ENGINE = "engine"


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    what: str
    actor: str = "engine"
    note: str | None = None


@dataclass
class WorkItem:
    """One coder work item as of the events read so far."""

    work_item_id: str
    encounter_id: str
    is_audit: bool
    revision: int
    status: ItemStatus
    findings: list[Finding]
    encounter: bytes  # the encounter of the latest revision, as received
    created_at: datetime
    updated_at: datetime
    question: str | None = None
    answer: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    #: FIX action id → why the engine rejected it.
    rejected_fixes: dict[str, str] = field(default_factory=dict)

    @property
    def rule_ids(self) -> list[str]:
        return list(dict.fromkeys(f.rule_id for f in self.findings if f.severity == "ERROR"))

    def refusal(self, action: CodingActionType) -> str | None:
        """Why ``action`` cannot be taken now, or None if it can."""
        if action in ALLOWED.get(self.status, frozenset()):
            return None
        return f"{self.work_item_id} is {self.status}: {action} is not possible now"


def fold_items(items: Iterable[CodingReviewItem], actions: Iterable[CodingAction]) -> dict[str, WorkItem]:
    """The queue: every work item's state from its events, in causal order — by the
    revision they belong to, the item's opening first, then people's actions in time
    order, then the engine's verdicts. (Times alone would let two machines' clocks
    reorder a query and its answer.)"""
    timeline: list[tuple[int, int, datetime, CodingReviewItem | CodingAction]] = [
        *((i.revision, 0, i.created_at, i) for i in items),
        *((a.revision, 2 if a.action in VERDICTS else 1, a.occurred_at, a) for a in actions),
    ]
    timeline.sort(key=lambda entry: entry[:3])
    queue: dict[str, WorkItem] = {}
    for *_, event in timeline:
        if isinstance(event, CodingReviewItem):
            _open(queue, event)
        else:
            _act(queue, event)
    return queue


def _open(queue: dict[str, WorkItem], event: CodingReviewItem) -> None:
    item = queue.get(event.work_item_id)
    if item is not None and (event.revision <= item.revision or item.status in CLOSED):
        return  # a redelivery or an EHR resend of the same encounter
    status = ItemStatus.AUDIT_OPEN if event.is_audit else ItemStatus.OPEN
    what = ("drawn for audit" if event.is_audit else
            "opened" if event.revision == 1 else f"correction still fails: revision {event.revision}")
    if item is None:
        item = WorkItem(event.work_item_id, event.encounter_id, event.is_audit, event.revision, status,
                        list(event.findings), event.encounter, event.created_at, event.created_at)
        queue[event.work_item_id] = item
    else:
        item.revision, item.status, item.findings, item.encounter = (event.revision, status, list(event.findings),
                                                                     event.encounter)
        item.updated_at = event.created_at
    item.history.append(HistoryEntry(event.created_at, what))


_STATUS_AFTER = {
    CodingActionType.FIX: ItemStatus.FIX_SUBMITTED,
    CodingActionType.QUERY: ItemStatus.QUERIED,
    CodingActionType.ANSWER: ItemStatus.ANSWERED,
    CodingActionType.AUDIT_AGREE: ItemStatus.AUDIT_AGREED,
    CodingActionType.AUDIT_DISAGREE: ItemStatus.AUDIT_DISAGREED,
}


def _act(queue: dict[str, WorkItem], action: CodingAction) -> None:
    item = queue.get(action.work_item_id)
    if item is None:
        return
    if action.action == CodingActionType.FIX_REJECTED:
        item.rejected_fixes[verdict_on(action)] = action.note or ""
        item.history.append(HistoryEntry(action.occurred_at, "fix rejected", action.actor, action.note))
        return  # the item is as it was: resolved, at a newer revision, or an audit sample
    if action.action == CodingActionType.RESOLVED:
        if action.revision == item.revision and item.status not in CLOSED:
            item.status, item.updated_at = ItemStatus.RESOLVED, action.occurred_at
            item.history.append(HistoryEntry(action.occurred_at, "correction passed the checks: claim generation",
                                             action.actor))
        return
    if action.revision != item.revision or item.refusal(action.action):
        return  # stale (an older revision) or not allowed: recorded on the topic, no effect
    item.status = _STATUS_AFTER[action.action]
    item.updated_at = action.occurred_at
    if action.action == CodingActionType.QUERY:
        item.question, item.answer = action.note, None
    elif action.action == CodingActionType.ANSWER:
        item.answer = action.note
    what = str(action.action).lower().replace("_", " ")
    if action.changes:
        what += ": " + "; ".join(action.changes)
    item.history.append(HistoryEntry(action.occurred_at, what, action.actor, action.note))


def verdict_on(verdict: CodingAction) -> str:
    """The FIX action a verdict answers (its id is ``<fix id>:<verdict>``)."""
    return verdict.action_id.rsplit(":", 1)[0]


# --- corrections ---------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """What a coder changes. Positions are 1-based and always those of the encounter as
    ``claims coding show`` prints it (added diagnoses follow the last one), whatever
    else the same correction drops or reorders."""

    set_dx: dict[int, str] = field(default_factory=dict)
    add_dx: tuple[str, ...] = ()
    drop_dx: tuple[int, ...] = ()
    dx_order: tuple[int, ...] = ()  # the kept diagnoses in their new order, e.g. (2, 1)
    set_code: dict[int, str] = field(default_factory=dict)
    set_modifiers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    set_units: dict[int, int] = field(default_factory=dict)
    set_pointers: dict[int, tuple[int, ...]] = field(default_factory=dict)
    drop_lines: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Correction()


class CorrectionError(ValueError):
    """A correction that names a diagnosis or line the encounter does not have."""


def apply_correction(enc: Encounter, fix: Correction) -> tuple[Encounter, list[str]]:
    """The corrected encounter and one line per change. Diagnosis pointers follow their
    diagnosis when diagnoses are dropped or reordered; a pointer past the last diagnosis
    is left for the checks to report."""
    diagnoses = list(enc.diagnoses)
    lines = [replace(p, modifiers=list(p.modifiers), dx_pointers=list(p.dx_pointers)) for p in enc.procedures]
    changes: list[str] = []

    # 1. In place, at the positions shown.
    for position, code in sorted(fix.set_dx.items()):
        _check(position, len(diagnoses), "diagnosis")
        changes.append(f"diagnosis {position}: {diagnoses[position - 1]} -> {code.strip().upper()}")
        diagnoses[position - 1] = code.strip().upper()
    for position, code in sorted(fix.set_code.items()):
        _check(position, len(lines), "line")
        changes.append(f"line {position}: {lines[position - 1].code} -> {code.strip().upper()}")
        lines[position - 1].code = code.strip().upper()
    for position, mods in sorted(fix.set_modifiers.items()):
        _check(position, len(lines), "line")
        new = [m.strip().upper() for m in mods if m.strip()]
        changes.append(f"line {position} modifiers: {','.join(lines[position - 1].modifiers) or '-'}"
                       f" -> {','.join(new) or '-'}")
        lines[position - 1].modifiers = new
    for position, count in sorted(fix.set_units.items()):
        _check(position, len(lines), "line")
        changes.append(f"line {position} units: {lines[position - 1].units} -> {count}")
        lines[position - 1].units = count
    for position, pointers in sorted(fix.set_pointers.items()):
        _check(position, len(lines), "line")
        changes.append(f"line {position} dx pointers: {_pointers(lines[position - 1])}"
                       f" -> {','.join(map(str, pointers))}")
        lines[position - 1].dx_pointers = list(pointers)

    # 2. Additions, then drops and the new order; pointers follow their diagnosis.
    for code in fix.add_dx:
        diagnoses.append(code.strip().upper())
        changes.append(f"diagnosis {len(diagnoses)}: added {code.strip().upper()}")
    dropped = sorted(set(fix.drop_dx))
    for position in dropped:
        _check(position, len(diagnoses), "diagnosis")
        changes.append(f"diagnosis {position}: dropped {diagnoses[position - 1]}")
    kept = [p for p in range(1, len(diagnoses) + 1) if p not in dropped]
    order = list(fix.dx_order) or kept
    if sorted(order) != kept:
        raise CorrectionError(f"--dx-order must list each kept diagnosis ({','.join(map(str, kept))}) once, got "
                              f"{','.join(map(str, order))}")
    if fix.dx_order:
        changes.append("diagnoses reordered: " + ", ".join(diagnoses[p - 1] for p in order))
    new_position = {old: new for new, old in enumerate(order, start=1)}
    for number, line in enumerate(lines, start=1):
        lost = [p for p in line.dx_pointers if p in dropped]
        if lost:
            changes.append(f"line {number}: pointer to dropped diagnosis {','.join(map(str, lost))} removed")
        line.dx_pointers = [new_position.get(p, p) for p in line.dx_pointers if p not in dropped]
    diagnoses = [diagnoses[p - 1] for p in order]

    # 3. Lines last, so every position above meant the line shown.
    for position in sorted(set(fix.drop_lines), reverse=True):
        _check(position, len(lines), "line")
        changes.append(f"line {position}: dropped {lines[position - 1].code}")
        del lines[position - 1]
    return replace(enc, diagnoses=diagnoses, procedures=lines), changes


def _check(position: int, count: int, what: str) -> None:
    if not 1 <= position <= count:
        raise CorrectionError(f"there is no {what} {position} (the encounter has {count})")


def _pointers(line: Procedure) -> str:
    return ",".join(map(str, line.dx_pointers)) or "-"


# --- the re-check (the coding stage's second input) ------------------------------


class ItemPhase(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    AUDIT = "audit"


@dataclass(frozen=True)
class ItemState:
    """What the worker remembers of a work item, keyed by encounter id in a table:
    its current revision, whether it is still open, and every fix it has handled (a
    redelivered fix — at-least-once delivery — is recognised and skipped; an item sees
    a handful of fixes)."""

    revision: int
    phase: ItemPhase
    handled: tuple[str, ...] = ()

    def dump(self) -> str:
        return f"{self.revision}|{self.phase}|{','.join(self.handled)}"

    @classmethod
    def load(cls, text: str | None) -> ItemState | None:
        if not text:
            return None
        revision, phase, handled = text.split("|", 2)
        return cls(int(revision), ItemPhase(phase), tuple(handled.split(",")) if handled else ())


def remember_opened(emits: list[Emit], items: MutableMapping[str, str]) -> list[Emit]:
    """Record in the table the work items the coding stage opened. Only the first time:
    an EHR resend of an encounter must not reset an item a coder already moved on, and
    is not drawn for audit a second time."""
    kept = []
    for emit in emits:
        item = emit.event
        if isinstance(item, CodingReviewItem):
            if item.encounter_id in items:
                if item.is_audit:
                    continue
            else:
                items[item.encounter_id] = ItemState(
                    item.revision, ItemPhase.AUDIT if item.is_audit else ItemPhase.OPEN).dump()
        kept.append(emit)
    return kept


def recode_action(action: CodingAction, codec: Codec, ref: CodingReference, now: datetime,
                  items: MutableMapping[str, str]) -> list[Emit]:
    """A FIX re-runs every check on the corrected encounter: clean, it goes on to claim
    generation naming the item it resolves (and a RESOLVED verdict); still failing, it
    opens the item's next revision. A FIX for a resolved item, an audit sample or a
    revision that is no longer current gets a FIX_REJECTED verdict instead. Other
    actions change only the item's state (the fold), so emit nothing."""
    if action.action != CodingActionType.FIX:
        return []
    if action.work_item_id != review_item_id(action.encounter_id):
        raise ProcessingError(f"FIX {action.action_id}: work item {action.work_item_id} is not encounter "
                              f"{action.encounter_id}'s")
    state = ItemState.load(items.get(action.encounter_id)) or ItemState(1, ItemPhase.OPEN)
    if action.action_id in state.handled:
        return []  # a redelivery: its outcome was already emitted
    rejection = (
        "the item is already resolved" if state.phase == ItemPhase.RESOLVED else
        "an audit sample: its claim already went out" if state.phase == ItemPhase.AUDIT else
        f"revision {action.revision} is not the item's current revision ({state.revision})"
        if action.revision != state.revision else None
    )
    handled = (*state.handled, action.action_id)
    if rejection is not None:
        items[action.encounter_id] = replace(state, handled=handled).dump()
        return [_verdict(action, CodingActionType.FIX_REJECTED, f"{action.action_id}: {rejection}", now)]
    if action.corrected_encounter is None:
        raise ProcessingError(f"FIX {action.action_id} carries no corrected encounter")
    corrected = codec.decode(action.corrected_encounter, Encounter)
    if corrected.encounter_id != action.encounter_id:
        raise ProcessingError(f"FIX {action.action_id} for {action.encounter_id} carries encounter "
                              f"{corrected.encounter_id}")
    emits = code_encounter(corrected, action.corrected_encounter, ref, now,
                           review_work_item_id=action.work_item_id, revision=action.revision + 1)
    if emits[0].topic == Topic.CODED:
        items[action.encounter_id] = ItemState(state.revision, ItemPhase.RESOLVED, handled).dump()
        emits.append(_verdict(action, CodingActionType.RESOLVED, "the correction passed every check", now))
    else:
        items[action.encounter_id] = ItemState(action.revision + 1, ItemPhase.OPEN, handled).dump()
    return emits


def _verdict(fix: CodingAction, verdict: CodingActionType, note: str, now: datetime) -> Emit:
    event = CodingAction(
        action_id=f"{fix.action_id}:{verdict}", work_item_id=fix.work_item_id, encounter_id=fix.encounter_id,
        revision=fix.revision, action=verdict, actor=ENGINE, note=note, changes=[], corrected_encounter=None,
        occurred_at=now,
    )
    return Emit(Topic.CODING_ACTIONS, fix.encounter_id, event)
