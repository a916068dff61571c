"""The coder review queue: work items, the actions coders take on them, and the
re-check of a correction.

Nothing is edited in place. A work item (``CodingReviewItem``) is opened by the coding
stage; every coder or provider action is a ``CodingAction`` event; a correction that
passes comes back as a ``CodedEncounter`` naming the item. An item's state is the fold
of those events (``fold_items``), so any reader — the CLI, a web page, an audit —
rebuilds the same queue from the topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Iterable, Sequence

from engine.codec import Codec
from engine.coding import CodingReference, code_encounter
from engine.events import (
    CodedEncounter,
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    Encounter,
    Finding,
    Procedure,
)
from engine.pipeline import Emit, ProcessingError


class ItemStatus(StrEnum):
    OPEN = "OPEN"  # errors to fix
    QUERIED = "QUERIED"  # waiting for the provider's answer
    ANSWERED = "ANSWERED"  # the provider answered: back with the coder
    FIX_SUBMITTED = "FIX_SUBMITTED"  # a correction is being re-checked
    RESOLVED = "RESOLVED"  # the correction passed and went on to the claim
    AUDIT_OPEN = "AUDIT_OPEN"  # a clean encounter drawn for quality control
    AUDIT_AGREED = "AUDIT_AGREED"
    AUDIT_DISAGREED = "AUDIT_DISAGREED"


#: The statuses a coder has something to do in (the default ``claims coding list``).
NEEDS_CODER = frozenset({ItemStatus.OPEN, ItemStatus.ANSWERED, ItemStatus.AUDIT_OPEN})
CLOSED = frozenset({ItemStatus.RESOLVED, ItemStatus.AUDIT_AGREED, ItemStatus.AUDIT_DISAGREED})

#: Which action each status allows (anything else is refused with the reason).
ALLOWED: dict[ItemStatus, frozenset[CodingActionType]] = {
    ItemStatus.OPEN: frozenset({CodingActionType.FIX, CodingActionType.QUERY}),
    ItemStatus.QUERIED: frozenset({CodingActionType.ANSWER, CodingActionType.FIX}),
    ItemStatus.ANSWERED: frozenset({CodingActionType.FIX, CodingActionType.QUERY}),
    ItemStatus.AUDIT_OPEN: frozenset({CodingActionType.AUDIT_AGREE, CodingActionType.AUDIT_DISAGREE}),
}


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

    @property
    def rule_ids(self) -> list[str]:
        return list(dict.fromkeys(f.rule_id for f in self.findings if f.severity == "ERROR"))

    def refusal(self, action: CodingActionType) -> str | None:
        """Why ``action`` cannot be taken now, or None if it can."""
        if action in ALLOWED.get(self.status, frozenset()):
            return None
        return f"{self.work_item_id} is {self.status}: {action} is not possible now"


def fold_items(
    items: Iterable[CodingReviewItem], actions: Iterable[CodingAction], resolutions: Iterable[CodedEncounter]
) -> dict[str, WorkItem]:
    """The queue: every work item's state from its events, applied in time order
    (opened items first at equal times, then actions, then resolutions)."""
    timeline: list[tuple[datetime, int, object]] = [
        *((i.created_at, 0, i) for i in items),
        *((a.occurred_at, 1, a) for a in actions),
        *((r.coded_at, 2, r) for r in resolutions if r.review_work_item_id),
    ]
    timeline.sort(key=lambda entry: (entry[0], entry[1]))
    queue: dict[str, WorkItem] = {}
    for _, _, event in timeline:
        if isinstance(event, CodingReviewItem):
            _open(queue, event)
        elif isinstance(event, CodingAction):
            _act(queue, event)
        elif isinstance(event, CodedEncounter) and event.review_work_item_id in queue:
            item = queue[event.review_work_item_id]
            item.status = ItemStatus.RESOLVED
            item.updated_at = event.coded_at
            item.history.append(HistoryEntry(event.coded_at, f"correction passed the checks: claim generation "
                                                             f"(revision {item.revision})"))
    return queue


def _open(queue: dict[str, WorkItem], event: CodingReviewItem) -> None:
    item = queue.get(event.work_item_id)
    if item is not None and event.revision <= item.revision:
        return  # a redelivery
    status = ItemStatus.AUDIT_OPEN if event.is_audit else ItemStatus.OPEN
    what = ("drawn for audit" if event.is_audit else
            "opened" if event.revision == 1 else f"correction still fails: revision {event.revision}")
    if item is None:
        item = WorkItem(event.work_item_id, event.encounter_id, event.is_audit, event.revision, status,
                        list(event.findings), event.encounter, event.created_at, event.created_at)
        queue[event.work_item_id] = item
    else:
        item.revision, item.status, item.findings, item.encounter = event.revision, status, list(event.findings), event.encounter
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
    if item is None or action.revision != item.revision or item.refusal(action.action):
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


# --- corrections ---------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """What a coder changes. Positions are 1-based, as coders count diagnoses and lines."""

    set_dx: dict[int, str] = field(default_factory=dict)
    add_dx: tuple[str, ...] = ()
    drop_dx: tuple[int, ...] = ()
    dx_order: tuple[int, ...] = ()  # the new order of the (remaining) diagnoses, e.g. (2, 1)
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
    diagnosis when diagnoses are dropped or reordered."""
    diagnoses = list(enc.diagnoses)
    lines = [replace(p, modifiers=list(p.modifiers), dx_pointers=list(p.dx_pointers)) for p in enc.procedures]
    changes: list[str] = []

    for position, code in sorted(fix.set_dx.items()):
        _check(position, len(diagnoses), "diagnosis")
        changes.append(f"diagnosis {position}: {diagnoses[position - 1]} -> {code.strip().upper()}")
        diagnoses[position - 1] = code.strip().upper()
    for code in fix.add_dx:
        diagnoses.append(code.strip().upper())
        changes.append(f"diagnosis {len(diagnoses)}: added {code.strip().upper()}")

    # Drop, then reorder: old position -> new one. Pointers to a dropped diagnosis go
    # (and the change says so); pointers past the last diagnosis stay for the checks.
    dropped = sorted(set(fix.drop_dx))
    for position in dropped:
        _check(position, len(diagnoses), "diagnosis")
        changes.append(f"diagnosis {position}: dropped {diagnoses[position - 1]}")
    keep = [p for p in range(1, len(diagnoses) + 1) if p not in dropped]
    order = list(fix.dx_order) or list(range(1, len(keep) + 1))
    if sorted(order) != list(range(1, len(keep) + 1)):
        raise CorrectionError(f"--dx-order must list each of the {len(keep)} diagnoses once, got {order}")
    new_of_old = {keep[old - 1]: new for new, old in enumerate(order, start=1)}
    if fix.dx_order:
        changes.append("diagnoses reordered: " + ", ".join(diagnoses[keep[old - 1] - 1] for old in order))
    count_before = len(diagnoses)
    diagnoses = [diagnoses[keep[old - 1] - 1] for old in order]
    for number, line in enumerate(lines, start=1):
        lost = [p for p in line.dx_pointers if p in dropped]
        if lost:
            changes.append(f"line {number}: pointer to dropped diagnosis {','.join(map(str, lost))} removed")
        line.dx_pointers = [new_of_old.get(p, p) if 1 <= p <= count_before else p
                            for p in line.dx_pointers if p not in dropped]

    for position, code in sorted(fix.set_code.items()):
        _check(position, len(lines), "line")
        changes.append(f"line {position}: {lines[position - 1].code} -> {code.strip().upper()}")
        lines[position - 1].code = code.strip().upper()
    for position, mods in sorted(fix.set_modifiers.items()):
        _check(position, len(lines), "line")
        new = [m.strip().upper() for m in mods if m.strip()]
        changes.append(f"line {position} modifiers: {','.join(lines[position - 1].modifiers) or '-'} -> {','.join(new) or '-'}")
        lines[position - 1].modifiers = new
    for position, count in sorted(fix.set_units.items()):
        _check(position, len(lines), "line")
        changes.append(f"line {position} units: {lines[position - 1].units} -> {count}")
        lines[position - 1].units = count
    for position, pointers in sorted(fix.set_pointers.items()):
        _check(position, len(lines), "line")
        changes.append(f"line {position} dx pointers: {_pointers(lines[position - 1])} -> {','.join(map(str, pointers))}")
        lines[position - 1].dx_pointers = list(pointers)
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


def recode_action(action: CodingAction, codec: Codec, ref: CodingReference, now: datetime) -> list[Emit]:
    """A FIX re-runs every check on the corrected encounter: clean, it goes on to claim
    generation naming the item it resolves; still failing, it opens the item's next
    revision. Other actions change only the item's state (the fold), so emit nothing."""
    if action.action != CodingActionType.FIX:
        return []
    if action.corrected_encounter is None:
        raise ProcessingError(f"FIX {action.action_id} carries no corrected encounter")
    corrected = codec.decode(action.corrected_encounter, Encounter)
    if corrected.encounter_id != action.encounter_id:
        raise ProcessingError(f"FIX {action.action_id} for {action.encounter_id} carries encounter "
                              f"{corrected.encounter_id}")
    return code_encounter(corrected, action.corrected_encounter, ref, now,
                          review_work_item_id=action.work_item_id, revision=action.revision + 1)


def summarize_queue(queue: Sequence[WorkItem]) -> dict[str, int]:
    counts = {str(status): 0 for status in ItemStatus}
    for item in queue:
        counts[str(item.status)] += 1
    return counts
