"""engine.coding.review: the coder queue as a fold of events, corrections, and the re-check."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from engine.coding.review import (
    ALLOWED,
    CLOSED,
    ENGINE,
    NEEDS_CODER,
    VERDICTS,
    Correction,
    CorrectionError,
    ItemPhase,
    ItemState,
    ItemStatus,
    apply_correction,
    fold_items,
    recode_action,
    remember_opened,
    verdict_on,
)
from engine.coding.rules import code_encounter, review_item_id
from engine.model.events import (
    CodedEncounter,
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    Encounter,
    Finding,
    Procedure,
    Severity,
)
from engine.runtime.stages import Emit, ProcessingError, SourceMessage
from engine.wire.codec import UndecodableEvent
from engine.wire.topics import Table
from engine.worker.stages import STAGE

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ITEM_ID = "CR-00000000000000AA"
ENC_ID = "ENC-UNIT-0000001"
FIX, QUERY, ANSWER = CodingActionType.FIX, CodingActionType.QUERY, CodingActionType.ANSWER
AGREE, DISAGREE = CodingActionType.AUDIT_AGREE, CodingActionType.AUDIT_DISAGREE
RESOLVED, FIX_REJECTED = CodingActionType.RESOLVED, CodingActionType.FIX_REJECTED
PASSED = "correction passed the checks: claim generation"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def finding(rule_id: str, severity: Severity = Severity.ERROR) -> Finding:
    return Finding(rule_id, severity, f"{rule_id} found", "diagnoses[0]")


def item(revision: int = 1, minute: int = 0, *, is_audit: bool = False, work_item_id: str = ITEM_ID,
         findings: list[Finding] | None = None, encounter: bytes | None = None) -> CodingReviewItem:
    return CodingReviewItem(
        work_item_id=work_item_id, encounter_id=ENC_ID,
        findings=findings if findings is not None else [finding("ICD10_NOT_BILLABLE")],
        is_audit=is_audit, encounter=encounter if encounter is not None else f"rev{revision}".encode(),
        created_at=at(minute), revision=revision)


def action(kind: CodingActionType, minute: int, revision: int = 1, *, note: str | None = None,
           changes: list[str] | None = None, work_item_id: str = ITEM_ID, actor: str = "coder-1",
           corrected: bytes | None = None) -> CodingAction:
    """A person's action; its id is ``CA-<kind>-<minute>`` (a FIX at minute 3: ``CA-FIX-3``)."""
    return CodingAction(
        action_id=f"CA-{kind}-{minute}", work_item_id=work_item_id, encounter_id=ENC_ID, revision=revision,
        action=kind, actor=actor, note=note, changes=changes or [], corrected_encounter=corrected,
        occurred_at=at(minute))


def verdict(kind: CodingActionType, minute: int, revision: int = 1, *, fix: str, note: str | None = None,
            work_item_id: str = ITEM_ID) -> CodingAction:
    """The engine's verdict on the FIX ``fix``, as ``recode_action`` writes it."""
    return CodingAction(
        action_id=f"{fix}:{kind}", work_item_id=work_item_id, encounter_id=ENC_ID, revision=revision, action=kind,
        actor=ENGINE, note=note, changes=[], corrected_encounter=None, occurred_at=at(minute))


def resolved(minute: int, revision: int = 1, *, fix: str, work_item_id: str = ITEM_ID) -> CodingAction:
    return verdict(RESOLVED, minute, revision, fix=fix, note="the correction passed every check",
                   work_item_id=work_item_id)


def rejected(minute: int, revision: int = 1, *, fix: str, note: str | None = "stale") -> CodingAction:
    return verdict(FIX_REJECTED, minute, revision, fix=fix, note=note)


def fold(items=(), actions=()):
    return fold_items(list(items), list(actions))


def status(items=(), actions=()) -> ItemStatus:
    return fold(items, actions)[ITEM_ID].status


def whats(items=(), actions=()) -> list[str]:
    return [h.what for h in fold(items, actions)[ITEM_ID].history]


# --- the fold ----------------------------------------------------------------------------------


def test_open_query_answer_fix_resolved():
    events = [action(QUERY, 1, note="Which region of the back?"), action(ANSWER, 2, note="Lumbar", actor="dr-9"),
              action(FIX, 3, changes=["diagnoses[1]: M54.5 -> M54.50"])]
    assert status([item()]) == ItemStatus.OPEN
    assert status([item()], events[:1]) == ItemStatus.QUERIED
    assert status([item()], events[:2]) == ItemStatus.ANSWERED
    assert status([item()], events) == ItemStatus.FIX_SUBMITTED
    queue = fold([item()], [*events, resolved(4, fix="CA-FIX-3")])
    work = queue[ITEM_ID]
    assert work.status == ItemStatus.RESOLVED
    assert (work.question, work.answer) == ("Which region of the back?", "Lumbar")
    assert work.updated_at == at(4) and work.created_at == at(0) and work.revision == 1
    assert [(h.at, h.what, h.actor) for h in work.history] == [
        (at(0), "opened", "engine"),
        (at(1), "query", "coder-1"),
        (at(2), "answer", "dr-9"),
        (at(3), "fix: diagnoses[1]: M54.5 -> M54.50", "coder-1"),
        (at(4), PASSED, "engine"),
    ]
    assert work.history[1].note == "Which region of the back?"
    assert work.rejected_fixes == {}


def test_events_are_applied_in_time_order_whatever_the_input_order():
    events = [action(QUERY, 1), action(ANSWER, 2), action(FIX, 3), resolved(4, fix="CA-FIX-3")]
    forward = fold([item()], events)
    backward = fold([item()], list(reversed(events)))
    assert forward == backward and forward[ITEM_ID].status == ItemStatus.RESOLVED


def test_a_fix_that_still_fails_reopens_as_revision_2():
    rev2 = item(2, 4, findings=[finding("DX_POINTER_RANGE"), finding("DX_UNLINKED", Severity.WARNING)])
    work = fold([item(), rev2], [action(FIX, 3)])[ITEM_ID]
    assert (work.status, work.revision, work.encounter) == (ItemStatus.OPEN, 2, b"rev2")
    assert work.rule_ids == ["DX_POINTER_RANGE"]  # errors only
    assert work.history[-1].what == "correction still fails: revision 2"
    assert work.created_at == at(0) and work.updated_at == at(4)


def test_a_stale_action_for_revision_1_after_revision_2_has_no_effect():
    items = [item(), item(2, 4)]
    assert status(items, [action(FIX, 3), action(FIX, 5, revision=1)]) == ItemStatus.OPEN
    assert status(items, [action(FIX, 3), action(QUERY, 5, revision=1)]) == ItemStatus.OPEN
    # The same action on the current revision takes effect.
    assert status(items, [action(FIX, 3), action(FIX, 5, revision=2)]) == ItemStatus.FIX_SUBMITTED
    # An action for a revision not yet opened has no effect either.
    assert status([item()], [action(FIX, 5, revision=2)]) == ItemStatus.OPEN


def test_a_redelivered_older_revision_does_not_reopen():
    queue = fold([item(), item(2, 4), item(1, 6)], [action(FIX, 3), action(QUERY, 5, revision=2)])
    work = queue[ITEM_ID]
    assert (work.status, work.revision, work.encounter) == (ItemStatus.QUERIED, 2, b"rev2")


# --- the fold: causal order (revision, then opening / people / engine, then time) ---------------


def test_a_revision_stamped_before_the_fix_that_opened_it_still_follows_it():
    """The coder's clock runs ahead of the engine's: the FIX (revision 1) says minute 10,
    the revision it caused says minute 5. The fix still applies to revision 1 first."""
    items = [item(), item(2, 5)]
    work = fold(items, [action(FIX, 10)])[ITEM_ID]
    assert (work.status, work.revision) == (ItemStatus.OPEN, 2)
    assert [h.what for h in work.history] == ["opened", "fix", "correction still fails: revision 2"]
    # A query on revision 2, stamped before revision 2 was opened, lands on revision 2.
    assert status(items, [action(FIX, 10), action(QUERY, 3, revision=2)]) == ItemStatus.QUERIED


def test_a_verdict_stamped_before_its_fix_still_follows_it():
    work = fold([item()], [resolved(2, fix="CA-FIX-5"), action(FIX, 5)])[ITEM_ID]
    assert work.status == ItemStatus.RESOLVED
    assert [h.what for h in work.history] == ["opened", "fix", PASSED]
    # A rejection too: the stale fix (revision 1, clock ahead) and its verdict come
    # before revision 2 opens, whatever their stamps.
    events = [action(FIX, 1), action(FIX, 9), rejected(3, fix="CA-FIX-9", note="revision 1 is no longer current")]
    work = fold([item(), item(2, 2)], events)[ITEM_ID]
    assert (work.status, work.revision) == (ItemStatus.OPEN, 2)
    assert [h.what for h in work.history] == [
        "opened", "fix", "fix", "fix rejected", "correction still fails: revision 2"]
    assert work.rejected_fixes == {"CA-FIX-9": "revision 1 is no longer current"}


def test_within_a_revision_the_opening_comes_first_and_the_verdict_last():
    # All at one instant, and even a verdict stamped before the item was opened.
    for verdict_minute in (5, 0):
        work = fold([item(1, 5)], [resolved(verdict_minute, fix="CA-FIX-5"), action(FIX, 5)])[ITEM_ID]
        assert work.status == ItemStatus.RESOLVED
        assert [h.what for h in work.history] == ["opened", "fix", PASSED]


# --- the fold: the engine's verdicts -------------------------------------------------------------


def test_verdict_on_names_the_fix():
    assert verdict_on(resolved(1, fix="CA-FIX-3")) == "CA-FIX-3"
    assert verdict_on(rejected(1, fix="CA-FIX-3")) == "CA-FIX-3"
    assert verdict_on(rejected(1, fix="CA:with:colons")) == "CA:with:colons"
    assert VERDICTS == {RESOLVED, FIX_REJECTED} and ENGINE == "engine"


def test_resolved_closes_the_item_at_its_current_revision():
    rev2 = item(2, 2)
    work = fold([item(), rev2], [action(FIX, 1), action(FIX, 3, revision=2), resolved(4, 2, fix="CA-FIX-3")])[ITEM_ID]
    assert (work.status, work.revision, work.updated_at) == (ItemStatus.RESOLVED, 2, at(4))
    assert (work.history[-1].what, work.history[-1].actor) == (PASSED, ENGINE)


def test_resolved_for_a_revision_not_opened_resolves_nothing():
    assert status([item()], [action(FIX, 1), resolved(2, 2, fix="CA-FIX-1")]) == ItemStatus.FIX_SUBMITTED


@pytest.mark.parametrize(
    "before, expected",
    [
        pytest.param([], ItemStatus.OPEN, id="open"),
        pytest.param([action(QUERY, 1)], ItemStatus.QUERIED, id="queried"),
        pytest.param([action(FIX, 1)], ItemStatus.FIX_SUBMITTED, id="fix-submitted"),
        pytest.param([action(FIX, 1), resolved(2, fix="CA-FIX-1")], ItemStatus.RESOLVED, id="resolved"),
    ],
)
def test_fix_rejected_changes_no_status_only_history(before, expected):
    note = "CA-FIX-4: the item is already resolved"
    work = fold([item()], [*before, rejected(5, fix="CA-FIX-4", note=note)])[ITEM_ID]
    assert work.status == expected
    assert work.rejected_fixes == {"CA-FIX-4": note}
    last = work.history[-1]
    assert (last.at, last.what, last.actor, last.note) == (at(5), "fix rejected", ENGINE, note)


def test_fix_rejected_on_an_audit_item_and_without_a_note():
    audit = item(is_audit=True, findings=[])
    work = fold([audit], [action(FIX, 1), rejected(2, fix="CA-FIX-1", note=None)])[ITEM_ID]
    assert work.status == ItemStatus.AUDIT_OPEN
    assert work.rejected_fixes == {"CA-FIX-1": ""}
    assert [h.what for h in work.history] == ["drawn for audit", "fix rejected"]


def test_a_fix_stuck_in_its_recheck_can_be_fixed_again():
    """The first fix never got a verdict (dead-lettered): a second fix is taken and resolves."""
    events = [action(FIX, 1), action(FIX, 2, changes=["diagnosis 1: M54.5 -> M54.50"])]
    assert status([item()], events) == ItemStatus.FIX_SUBMITTED
    assert whats([item()], events) == ["opened", "fix", "fix: diagnosis 1: M54.5 -> M54.50"]
    assert status([item()], [*events, resolved(3, fix="CA-FIX-2")]) == ItemStatus.RESOLVED


@pytest.mark.parametrize("outcome, final", [(AGREE, ItemStatus.AUDIT_AGREED), (DISAGREE, ItemStatus.AUDIT_DISAGREED)])
def test_audit_agree_and_disagree(outcome, final):
    audit = item(is_audit=True, findings=[])
    assert status([audit]) == ItemStatus.AUDIT_OPEN
    work = fold([audit], [action(outcome, 1, note="reviewed")])[ITEM_ID]
    assert work.status == final and work.is_audit
    assert work.history[0].what == "drawn for audit"
    # Closed: a second outcome, or a fix, changes nothing.
    other = DISAGREE if outcome == AGREE else AGREE
    assert status([audit], [action(outcome, 1), action(other, 2), action(FIX, 3)]) == final


def test_an_audit_item_takes_no_fix_or_query():
    audit = item(is_audit=True, findings=[])
    assert status([audit], [action(FIX, 1), action(QUERY, 2), action(ANSWER, 3)]) == ItemStatus.AUDIT_OPEN


def test_actions_on_an_unknown_item_are_ignored():
    queue = fold([item()], [action(FIX, 1, work_item_id="CR-UNKNOWN"), action(AGREE, 2, work_item_id="CR-UNKNOWN"),
                            resolved(3, fix="CA-FIX-1", work_item_id="CR-UNKNOWN"),
                            verdict(FIX_REJECTED, 4, fix="CA-FIX-1", work_item_id="CR-UNKNOWN")])
    assert list(queue) == [ITEM_ID] and queue[ITEM_ID].status == ItemStatus.OPEN
    assert queue[ITEM_ID].rejected_fixes == {}
    assert fold([], [action(FIX, 1), resolved(2, fix="CA-FIX-1")]) == {}


@pytest.mark.parametrize(
    "actions, expected",
    [
        pytest.param([action(ANSWER, 1)], ItemStatus.OPEN, id="answer-without-query"),
        pytest.param([action(AGREE, 1)], ItemStatus.OPEN, id="audit-outcome-on-an-error-item"),
        pytest.param([action(QUERY, 1), action(QUERY, 2)], ItemStatus.QUERIED, id="query-twice"),
        pytest.param([action(FIX, 1), action(QUERY, 2)], ItemStatus.FIX_SUBMITTED, id="query-while-rechecking"),
        pytest.param([action(FIX, 1), action(ANSWER, 2)], ItemStatus.FIX_SUBMITTED, id="answer-while-rechecking"),
        pytest.param([action(QUERY, 1), action(FIX, 2)], ItemStatus.FIX_SUBMITTED, id="fix-while-queried"),
        pytest.param([action(QUERY, 1), action(ANSWER, 2), action(QUERY, 3)], ItemStatus.QUERIED, id="query-again"),
        pytest.param([rejected(1, fix="CA-FIX-0")], ItemStatus.OPEN, id="fix-rejected-moves-nothing"),
    ],
)
def test_disallowed_actions_have_no_effect(actions, expected):
    assert status([item()], actions) == expected


def test_nothing_moves_a_resolved_item():
    for kind in CodingActionType:
        assert status([item()], [action(FIX, 1), resolved(2, fix="CA-FIX-1"), action(kind, 3)]) == ItemStatus.RESOLVED


def test_a_closed_item_is_not_reopened_by_a_later_revision_or_an_ehr_resend():
    done = [action(FIX, 1), resolved(2, fix="CA-FIX-1")]
    for late in (item(2, 3), item(1, 3)):
        work = fold([item(), late], done)[ITEM_ID]
        assert (work.status, work.revision, work.encounter) == (ItemStatus.RESOLVED, 1, b"rev1")
        assert [h.what for h in work.history] == ["opened", "fix", PASSED]
    # An audit closed by its outcome: an EHR resend's error item does not reopen it.
    audit = item(is_audit=True, findings=[])
    assert status([audit, item(1, 5), item(2, 6)], [action(AGREE, 1)]) == ItemStatus.AUDIT_AGREED


@pytest.mark.parametrize("state", list(ItemStatus), ids=str)
@pytest.mark.parametrize("kind", list(CodingActionType), ids=str)
def test_refusal_says_why_or_none(state, kind):
    work = fold([item()])[ITEM_ID]
    work.status = state
    refusal = work.refusal(kind)
    if kind in ALLOWED.get(state, frozenset()):
        assert refusal is None
    else:
        assert refusal == f"{ITEM_ID} is {state}: {kind} is not possible now"


def test_allowed_actions_table():
    assert ALLOWED[ItemStatus.OPEN] == {FIX, QUERY}
    assert ALLOWED[ItemStatus.QUERIED] == {ANSWER, FIX}
    assert ALLOWED[ItemStatus.ANSWERED] == {FIX, QUERY}
    assert ALLOWED[ItemStatus.FIX_SUBMITTED] == {FIX}  # a fix stuck in its re-check can be fixed again
    assert ALLOWED[ItemStatus.AUDIT_OPEN] == {AGREE, DISAGREE}
    assert all(state not in ALLOWED for state in CLOSED)
    assert not any(VERDICTS & allowed for allowed in ALLOWED.values())  # verdicts are the engine's alone
    assert NEEDS_CODER == {ItemStatus.OPEN, ItemStatus.ANSWERED, ItemStatus.AUDIT_OPEN, ItemStatus.FIX_SUBMITTED}
    assert CLOSED == {ItemStatus.RESOLVED, ItemStatus.AUDIT_AGREED, ItemStatus.AUDIT_DISAGREED}


# --- corrections --------------------------------------------------------------------------------


@pytest.fixture
def three_dx(make_encounter) -> Encounter:
    """E11.9, I10, E78.5; lines 99214 → 1,2 / 80061 → 3 / 36415 → 3,1."""
    return make_encounter(diagnoses=["E11.9", "I10", "E78.5"], procedures=[
        Procedure("99214", ["25"], 1, [1, 2]), Procedure("80061", [], 1, [3]), Procedure("36415", [], 1, [3, 1])])


def pointers(enc: Encounter) -> list[list[int]]:
    return [p.dx_pointers for p in enc.procedures]


def test_empty_correction_changes_nothing(three_dx):
    assert Correction().empty and not Correction(set_units={1: 2}).empty
    corrected, changes = apply_correction(three_dx, Correction())
    assert corrected == three_dx and changes == []


def test_set_and_add_diagnoses(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(set_dx={2: " i11.9 "}, add_dx=("z79.4",)))
    assert corrected.diagnoses == ["E11.9", "I11.9", "E78.5", "Z79.4"]
    assert pointers(corrected) == pointers(three_dx)
    assert changes == ["diagnosis 2: I10 -> I11.9", "diagnosis 4: added Z79.4"]


def test_drop_a_diagnosis_pointers_follow(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(drop_dx=(1,)))
    assert corrected.diagnoses == ["I10", "E78.5"]
    assert pointers(corrected) == [[1], [2], [2]]  # pointers to E11.9 vanish, the others move up
    assert changes == ["diagnosis 1: dropped E11.9", "line 1: pointer to dropped diagnosis 1 removed",
                       "line 3: pointer to dropped diagnosis 1 removed"]


def test_dropping_every_diagnosis_a_line_points_at_names_them_all(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(drop_dx=(1, 2)))
    assert corrected.diagnoses == ["E78.5"] and pointers(corrected) == [[], [1], [1]]
    assert changes == ["diagnosis 1: dropped E11.9", "diagnosis 2: dropped I10",
                       "line 1: pointer to dropped diagnosis 1,2 removed",
                       "line 3: pointer to dropped diagnosis 1 removed"]


def test_reorder_diagnoses_pointers_follow(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(dx_order=(3, 1, 2)))
    assert corrected.diagnoses == ["E78.5", "E11.9", "I10"]
    assert pointers(corrected) == [[2, 3], [1], [1, 2]]
    assert changes == ["diagnoses reordered: E78.5, E11.9, I10"]


def test_drop_then_reorder_names_the_kept_diagnoses_by_their_original_positions(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(drop_dx=(2,), dx_order=(3, 1)))
    assert corrected.diagnoses == ["E78.5", "E11.9"]
    assert pointers(corrected) == [[2], [1], [1, 2]]
    assert changes == ["diagnosis 2: dropped I10", "diagnoses reordered: E78.5, E11.9",
                       "line 1: pointer to dropped diagnosis 2 removed"]


def test_pointers_set_in_the_same_correction_use_the_original_numbering(three_dx):
    """Line 1 → diagnosis 3 (E78.5) as shown; diagnosis 2 dropped: E78.5 is now 2."""
    corrected, changes = apply_correction(three_dx, Correction(set_pointers={1: (3,)}, drop_dx=(2,)))
    assert corrected.diagnoses == ["E11.9", "E78.5"]
    assert pointers(corrected) == [[2], [2], [2, 1]]
    assert changes == ["line 1 dx pointers: 1,2 -> 3", "diagnosis 2: dropped I10"]


def test_a_pointer_set_to_a_diagnosis_the_same_correction_drops_is_removed(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(set_pointers={2: (2, 3)}, drop_dx=(2,)))
    assert pointers(corrected) == [[1], [2], [2, 1]]
    assert changes == ["line 2 dx pointers: 3 -> 2,3", "diagnosis 2: dropped I10",
                       "line 1: pointer to dropped diagnosis 2 removed",
                       "line 2: pointer to dropped diagnosis 2 removed"]


def test_set_dx_names_the_diagnosis_shown_even_when_an_earlier_one_is_dropped(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(set_dx={3: "E78.2"}, drop_dx=(1,)))
    assert corrected.diagnoses == ["I10", "E78.2"]
    assert changes[:2] == ["diagnosis 3: E78.5 -> E78.2", "diagnosis 1: dropped E11.9"]


def test_an_added_diagnosis_follows_the_last_one_shown_and_can_be_pointed_at_and_reordered(three_dx):
    fix = Correction(add_dx=("Z79.4",), set_pointers={2: (4,)}, dx_order=(4, 1, 2, 3))
    corrected, changes = apply_correction(three_dx, fix)
    assert corrected.diagnoses == ["Z79.4", "E11.9", "I10", "E78.5"]
    assert pointers(corrected) == [[2, 3], [1], [4, 2]]
    assert changes == ["line 2 dx pointers: 3 -> 4", "diagnosis 4: added Z79.4",
                       "diagnoses reordered: Z79.4, E11.9, I10, E78.5"]


def test_out_of_range_pointers_are_left_for_the_checks(three_dx):
    fix = Correction(set_pointers={1: (1, 7), 2: (0,)}, drop_dx=(2,), dx_order=(3, 1))
    corrected, changes = apply_correction(three_dx, fix)
    assert pointers(corrected) == [[2, 7], [0], [1, 2]]
    assert not any("removed" in change for change in changes)


def test_lines_are_dropped_last_so_every_line_position_is_the_one_shown(three_dx):
    fix = Correction(set_code={3: "36416"}, set_units={2: 2}, set_pointers={3: (2,)}, drop_lines=(1,))
    corrected, changes = apply_correction(three_dx, fix)
    assert [(p.code, p.units, p.dx_pointers) for p in corrected.procedures] == [("80061", 2, [3]), ("36416", 1, [2])]
    assert changes == ["line 3: 36415 -> 36416", "line 2 units: 1 -> 2", "line 3 dx pointers: 3,1 -> 2",
                       "line 1: dropped 99214"]


def test_changes_are_listed_in_the_order_they_are_applied(three_dx):
    fix = Correction(set_dx={1: "E11.65"}, add_dx=("Z79.4",), drop_dx=(2,), dx_order=(4, 1, 3),
                     set_code={1: "99215"}, set_modifiers={1: ()}, set_units={2: 3}, set_pointers={2: (1, 3)},
                     drop_lines=(3,))
    corrected, changes = apply_correction(three_dx, fix)
    assert changes == [
        "diagnosis 1: E11.9 -> E11.65", "line 1: 99214 -> 99215", "line 1 modifiers: 25 -> -", "line 2 units: 1 -> 3",
        "line 2 dx pointers: 3 -> 1,3", "diagnosis 4: added Z79.4", "diagnosis 2: dropped I10",
        "diagnoses reordered: Z79.4, E11.65, E78.5", "line 1: pointer to dropped diagnosis 2 removed",
        "line 3: dropped 36415"]
    assert corrected.diagnoses == ["Z79.4", "E11.65", "E78.5"]
    assert [(p.code, p.modifiers, p.units, p.dx_pointers) for p in corrected.procedures] == [
        ("99215", [], 1, [2]), ("80061", [], 3, [2, 3])]


def test_set_code_modifiers_units_pointers(three_dx):
    fix = Correction(set_code={2: " 80053 "}, set_modifiers={1: ("xs", " ", "rt")}, set_units={3: 2},
                     set_pointers={2: (1, 2)})
    corrected, changes = apply_correction(three_dx, fix)
    assert [(p.code, p.modifiers, p.units, p.dx_pointers) for p in corrected.procedures] == [
        ("99214", ["XS", "RT"], 1, [1, 2]), ("80053", [], 1, [1, 2]), ("36415", [], 2, [3, 1])]
    assert changes == ["line 2: 80061 -> 80053", "line 1 modifiers: 25 -> XS,RT", "line 3 units: 1 -> 2",
                       "line 2 dx pointers: 3 -> 1,2"]


def test_clear_modifiers(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(set_modifiers={1: ()}))
    assert corrected.procedures[0].modifiers == [] and changes == ["line 1 modifiers: 25 -> -"]


def test_drop_lines_by_their_original_positions(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(drop_lines=(1, 3)))
    assert [p.code for p in corrected.procedures] == ["80061"]
    assert changes == ["line 3: dropped 36415", "line 1: dropped 99214"]


@pytest.mark.parametrize(
    "fix, message",
    [
        pytest.param(Correction(set_dx={4: "I10"}), "no diagnosis 4", id="set-dx"),
        pytest.param(Correction(drop_dx=(0,)), "no diagnosis 0", id="drop-dx-zero"),
        pytest.param(Correction(drop_dx=(4,)), "no diagnosis 4", id="drop-dx"),
        pytest.param(Correction(dx_order=(1, 2)), r"each kept diagnosis \(1,2,3\) once, got 1,2", id="order-too-short"),
        pytest.param(Correction(dx_order=(1, 1, 2)), r"each kept diagnosis \(1,2,3\) once, got 1,1,2",
                     id="order-repeats"),
        pytest.param(Correction(drop_dx=(1,), dx_order=(1, 2, 3)), r"each kept diagnosis \(2,3\) once, got 1,2,3",
                     id="order-names-a-dropped-diagnosis"),
        # Positions after the drop are not what the coder was shown: refused, not guessed.
        pytest.param(Correction(drop_dx=(1,), dx_order=(2, 1)), r"each kept diagnosis \(2,3\) once, got 2,1",
                     id="order-in-new-positions"),
        pytest.param(Correction(add_dx=("Z79.4",), dx_order=(3, 1, 2)), r"each kept diagnosis \(1,2,3,4\) once",
                     id="order-leaves-out-the-added-one"),
        pytest.param(Correction(set_code={4: "99213"}), "no line 4", id="set-code"),
        pytest.param(Correction(set_modifiers={0: ("25",)}), "no line 0", id="set-modifiers"),
        pytest.param(Correction(set_units={-1: 1}), "no line -1", id="set-units"),
        pytest.param(Correction(set_pointers={9: (1,)}), "no line 9", id="set-pointers"),
        pytest.param(Correction(drop_lines=(4,)), "no line 4", id="drop-line"),
    ],
)
def test_out_of_range_is_a_correction_error(three_dx, fix, message):
    before = copy.deepcopy(three_dx)
    with pytest.raises(CorrectionError, match=message):
        apply_correction(three_dx, fix)
    assert three_dx == before
    assert issubclass(CorrectionError, ValueError)


def test_the_input_encounter_is_not_mutated(three_dx):
    before = copy.deepcopy(three_dx)
    corrected, _ = apply_correction(three_dx, Correction(
        set_dx={1: "E11.65"}, add_dx=("Z79.4",), drop_dx=(2,), dx_order=(3, 1, 4), set_code={1: "99215"},
        set_modifiers={1: ("XS",)}, set_units={2: 3}, set_pointers={3: (1,)}, drop_lines=(2,)))
    assert three_dx == before
    assert corrected != three_dx
    # line 2 dropped: the corrected lines are one fewer, each a new object
    assert all(a is not b for a, b in zip(corrected.procedures, three_dx.procedures, strict=False))


def test_a_correction_changes_only_what_it_names_or_says_so(make_encounter):
    enc = make_encounter(procedures=[Procedure("99214", ["25"], 1, [1, 3]), Procedure("J3301", [], 4, [1])])
    corrected, changes = apply_correction(enc, Correction(set_units={2: 2}))
    assert corrected.procedures[0].dx_pointers == [1, 3] or any("line 1" in c for c in changes), changes


def test_dropping_the_same_line_twice_drops_only_that_line(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(drop_lines=(2, 2)))
    assert [p.code for p in corrected.procedures] == ["99214", "36415"]
    assert changes == ["line 2: dropped 80061"]


def test_a_change_line_counts_from_1_in_words_not_in_the_findings_0_based_brackets(make_encounter, coding_ref):
    from engine.coding.rules import check_encounter

    enc = make_encounter(diagnoses=["M54.5", "I10"])
    (finding,) = check_encounter(enc, coding_ref)
    assert finding.element == "diagnoses[0]=M54.5"
    _, changes = apply_correction(enc, Correction(set_dx={1: "M54.50"}))
    assert changes == ["diagnosis 1: M54.5 -> M54.50"]


# --- the re-check --------------------------------------------------------------------------------


@pytest.fixture
def opened(make_encounter, codec, coding_ref):
    """An encounter with a header code (M54.5), through the coding stage: its review item."""
    enc = make_encounter(diagnoses=["M54.5", "I10"])
    (emit,) = code_encounter(enc, codec.encode(enc), coding_ref, at(0))
    assert emit.topic == "coding-review"
    return enc, emit.event


@pytest.fixture
def clean_bytes(opened, codec) -> bytes:
    enc, _ = opened
    corrected, _ = apply_correction(enc, Correction(set_dx={1: "M54.50"}))
    return codec.encode(corrected)


def fix_action(item_: CodingReviewItem, corrected: bytes | None, minute: int = 1, revision: int | None = None,
               kind: CodingActionType = FIX, changes: list[str] | None = None,
               work_item_id: str | None = None) -> CodingAction:
    return CodingAction(
        action_id=f"CA-{minute}", work_item_id=work_item_id or item_.work_item_id, encounter_id=item_.encounter_id,
        revision=item_.revision if revision is None else revision, action=kind, actor="coder-1", note=None,
        changes=changes or [], corrected_encounter=corrected, occurred_at=at(minute))


def state(revision: int, phase: ItemPhase, *handled: str) -> str:
    return ItemState(revision, phase, tuple(handled)).dump()


def assert_verdict(emit: Emit, fix: CodingAction, kind: CodingActionType, now: datetime, codec) -> CodingAction:
    """The emit is the engine's ``kind`` verdict on ``fix``, keyed and stamped as it should be."""
    assert (emit.topic, emit.key) == ("coding-actions", fix.encounter_id)
    event = emit.event
    assert isinstance(event, CodingAction)
    assert (event.action_id, event.work_item_id, event.encounter_id, event.revision, event.action, event.actor) == (
        f"{fix.action_id}:{kind}", fix.work_item_id, fix.encounter_id, fix.revision, kind, ENGINE)
    assert (event.changes, event.corrected_encounter, event.occurred_at) == ([], None, now)
    assert event.note
    assert verdict_on(event) == fix.action_id
    assert codec.decode(codec.encode(event), CodingAction) == event  # the schema knows the verdicts
    return event


def test_item_state_dumps_and_loads():
    for item_state in (ItemState(1, ItemPhase.OPEN), ItemState(3, ItemPhase.RESOLVED, ("CA-7",)),
                       ItemState(1, ItemPhase.AUDIT, ("CA-1", "CA|with|bars"))):
        assert ItemState.load(item_state.dump()) == item_state
    assert ItemState(2, ItemPhase.OPEN, ("CA-1", "CA-2")).dump() == "2|open|CA-1,CA-2"
    assert ItemState.load(None) is None and ItemState.load("") is None


def test_a_clean_fix_goes_on_to_the_claim_naming_its_item_with_a_resolved_verdict(opened, codec, coding_ref):
    enc, review = opened
    corrected, changes = apply_correction(enc, Correction(set_dx={1: "M54.50"}))
    act = fix_action(review, codec.encode(corrected), changes=changes)
    items: dict[str, str] = {}  # no state yet: revision 1, open
    emits = recode_action(act, codec, coding_ref, at(2), items)
    assert [(e.topic, e.key) for e in emits] == [("coded", enc.encounter_id), ("coding-actions", enc.encounter_id)]
    coded = emits[0].event  # and no audit item for a fix
    assert coded.review_work_item_id == review.work_item_id == review_item_id(enc.encounter_id)
    assert coded.diagnoses == ["M54.50", "I10"] and coded.coded_at == at(2)
    assert codec.decode(codec.encode(coded), CodedEncounter) == coded
    assert assert_verdict(emits[1], act, RESOLVED, at(2), codec).note == "the correction passed every check"
    assert items == {enc.encounter_id: "1|resolved|CA-1"}
    # The queue, rebuilt from the two topics, shows the item resolved.
    queue = fold_items([review], [act, emits[1].event])
    assert queue[review.work_item_id].status == ItemStatus.RESOLVED


def test_a_fix_that_still_fails_opens_the_next_revision(opened, codec, coding_ref):
    enc, review = opened
    corrected, _ = apply_correction(enc, Correction(set_dx={1: "M54.5"}, set_units={1: 0}))
    corrected_bytes = codec.encode(corrected)
    act = fix_action(review, corrected_bytes)
    items = {enc.encounter_id: state(1, ItemPhase.OPEN)}
    (emit,) = recode_action(act, codec, coding_ref, at(2), items)
    assert (emit.topic, emit.key) == ("coding-review", enc.encounter_id)
    rev2 = emit.event
    assert (rev2.work_item_id, rev2.revision, rev2.is_audit, rev2.encounter, rev2.created_at) == (
        review.work_item_id, 2, False, corrected_bytes, at(2))
    assert [f.rule_id for f in rev2.findings] == ["ICD10_NOT_BILLABLE", "UNITS_INVALID"]
    assert items == {enc.encounter_id: "2|open|CA-1"}
    # A fix of revision 2 that fails again opens revision 3.
    (emit3,) = recode_action(fix_action(rev2, corrected_bytes, minute=3), codec, coding_ref, at(4), items)
    assert emit3.event.revision == 3
    assert items == {enc.encounter_id: "3|open|CA-1,CA-3"}
    queue = fold_items([review, rev2], [act])
    assert (queue[review.work_item_id].status, queue[review.work_item_id].revision) == (ItemStatus.OPEN, 2)


@pytest.mark.parametrize("kind", [QUERY, ANSWER, AGREE, DISAGREE, RESOLVED, FIX_REJECTED], ids=str)
def test_only_a_fix_is_rechecked(opened, codec, coding_ref, kind):
    enc, review = opened
    items = {enc.encounter_id: state(1, ItemPhase.OPEN)}
    assert recode_action(fix_action(review, codec.encode(enc), kind=kind), codec, coding_ref, at(2), items) == []
    assert recode_action(fix_action(review, None, kind=kind), codec, coding_ref, at(2), items) == []
    assert items == {enc.encounter_id: "1|open|"}


@pytest.mark.parametrize(
    "table, why",
    [
        pytest.param(state(1, ItemPhase.RESOLVED, "CA-0"), "CA-1: the item is already resolved", id="resolved"),
        pytest.param(state(2, ItemPhase.RESOLVED, "CA-0"), "CA-1: the item is already resolved",
                     id="resolved-at-a-later-revision"),
        pytest.param(state(1, ItemPhase.AUDIT), "CA-1: an audit sample: its claim already went out", id="audit"),
        pytest.param(state(2, ItemPhase.OPEN, "CA-0"),
                     "CA-1: revision 1 is not the item's current revision (2)", id="stale-revision"),
    ],
)
def test_a_fix_the_item_cannot_take_is_rejected_not_rechecked(opened, codec, coding_ref, clean_bytes, table, why):
    enc, review = opened
    items = {enc.encounter_id: table}
    act = fix_action(review, clean_bytes)
    (emit,) = recode_action(act, codec, coding_ref, at(2), items)
    assert assert_verdict(emit, act, FIX_REJECTED, at(2), codec).note == why
    before = ItemState.load(table)
    assert ItemState.load(items[enc.encounter_id]) == ItemState(before.revision, before.phase,
                                                                (*before.handled, "CA-1"))
    # Rejected before the corrected encounter is even read: a FIX without one is rejected too.
    (emit,) = recode_action(fix_action(review, None, minute=2), codec, coding_ref, at(3), items)
    assert emit.event.action == FIX_REJECTED


def test_a_fix_ahead_of_the_table_is_rejected_as_well(opened, codec, coding_ref, clean_bytes):
    enc, review = opened
    items: dict[str, str] = {}  # missing: revision 1
    act = fix_action(review, clean_bytes, revision=2)
    (emit,) = recode_action(act, codec, coding_ref, at(2), items)
    assert emit.event.action == FIX_REJECTED and "not the item's current revision (1)" in emit.event.note
    assert items == {enc.encounter_id: "1|open|CA-1"}


@pytest.mark.parametrize(
    "corrected_kind, table_after",
    [("clean", "1|resolved|CA-1"), ("failing", "2|open|CA-1"), ("rejected", "3|open|CA-1")],
)
def test_a_redelivered_fix_is_skipped(opened, codec, coding_ref, clean_bytes, corrected_kind, table_after):
    """At-least-once delivery: the same FIX again (same action id) emits nothing more."""
    enc, review = opened
    items = {enc.encounter_id: state(3, ItemPhase.OPEN)} if corrected_kind == "rejected" else {}
    act = fix_action(review, clean_bytes if corrected_kind == "clean" else codec.encode(enc))
    assert recode_action(act, codec, coding_ref, at(2), items) != []
    assert items == {enc.encounter_id: table_after}
    assert recode_action(act, codec, coding_ref, at(3), items) == []
    assert items == {enc.encounter_id: table_after}


def test_a_redelivered_earlier_fix_is_skipped_too(opened, codec, coding_ref, clean_bytes):
    """A replayed batch holds two fixes of one item: the first (still failing, revision 2
    opened) and the second (clean, resolved). Replaying the first must emit nothing: a
    verdict would be a third outcome for two fixes, and the accounting identity
    coding_fixes = coded_after_review + still_failing + rejected would break."""
    enc, review = opened
    items: dict[str, str] = {}
    first = fix_action(review, codec.encode(enc), minute=1)
    (rev2,) = recode_action(first, codec, coding_ref, at(2), items)
    second = fix_action(rev2.event, clean_bytes, minute=3)
    assert [e.topic for e in recode_action(second, codec, coding_ref, at(4), items)] == ["coded", "coding-actions"]
    assert recode_action(first, codec, coding_ref, at(5), items) == []


def test_two_coders_cannot_both_bill_one_encounter(opened, codec, coding_ref, clean_bytes):
    enc, review = opened
    items: dict[str, str] = {}
    first, second = fix_action(review, clean_bytes, minute=1), fix_action(review, clean_bytes, minute=2)
    emits = [*recode_action(first, codec, coding_ref, at(3), items),
             *recode_action(second, codec, coding_ref, at(4), items)]
    assert [e.topic for e in emits] == ["coded", "coding-actions", "coding-actions"]
    assert [e.event.action for e in emits[1:]] == [RESOLVED, FIX_REJECTED]
    work = fold_items([review], [first, second, *(e.event for e in emits[1:])])[review.work_item_id]
    assert work.status == ItemStatus.RESOLVED
    assert work.rejected_fixes == {"CA-2": "CA-2: the item is already resolved"}
    assert [h.what for h in work.history] == ["opened", "fix", "fix", PASSED, "fix rejected"]


def test_a_fix_without_a_corrected_encounter_is_a_processing_error(opened, codec, coding_ref):
    _, review = opened
    items: dict[str, str] = {}
    with pytest.raises(ProcessingError, match="carries no corrected encounter"):
        recode_action(fix_action(review, None), codec, coding_ref, at(2), items)
    assert items == {}


def test_a_fix_carrying_another_encounter_is_a_processing_error(opened, codec, coding_ref, make_encounter):
    _, review = opened
    other = make_encounter(encounter_id="ENC-UNIT-0000002")
    items: dict[str, str] = {}
    with pytest.raises(ProcessingError, match="carries encounter ENC-UNIT-0000002"):
        recode_action(fix_action(review, codec.encode(other)), codec, coding_ref, at(2), items)
    assert items == {}


def test_a_fix_naming_another_encounter_s_work_item_is_a_processing_error(opened, codec, coding_ref, clean_bytes):
    enc, review = opened
    items = {enc.encounter_id: state(1, ItemPhase.RESOLVED, "CA-0")}
    act = fix_action(review, clean_bytes, work_item_id=review_item_id("ENC-UNIT-0000002"))
    with pytest.raises(ProcessingError, match=f"is not encounter {enc.encounter_id}'s"):
        recode_action(act, codec, coding_ref, at(2), items)
    assert items == {enc.encounter_id: "1|resolved|CA-0"}  # not even a rejection: the id is wrong


@pytest.mark.parametrize("corrected", [b"HL7|not-avro|", b""], ids=["not-avro", "empty"])
def test_an_undecodable_corrected_encounter_is_undecodable(opened, codec, coding_ref, corrected):
    _, review = opened
    items: dict[str, str] = {}
    with pytest.raises(UndecodableEvent):
        recode_action(fix_action(review, corrected), codec, coding_ref, at(2), items)
    assert items == {}


def test_a_corrected_encounter_of_another_schema_is_undecodable(opened, codec, coding_ref, samples):
    _, review = opened
    with pytest.raises(UndecodableEvent, match="Encounter was expected"):
        recode_action(fix_action(review, codec.encode(samples[CodedEncounter])), codec, coding_ref, at(2), {})


# --- remembering what the coding stage opened ---------------------------------------------------


def coded_emit(encounter_id: str = ENC_ID) -> Emit:
    return Emit("coded", encounter_id, object())


def review_emit(*, is_audit: bool = False, encounter_id: str = ENC_ID) -> Emit:
    return Emit("coding-review", encounter_id, item(is_audit=is_audit, findings=[]))


def test_remember_opened_records_a_new_error_item_at_revision_1():
    items: dict[str, str] = {}
    emits = [review_emit()]
    assert remember_opened(emits, items) == emits
    assert items == {ENC_ID: "1|open|"}


def test_remember_opened_records_an_audit_sample_as_audit():
    items: dict[str, str] = {}
    emits = [coded_emit(), review_emit(is_audit=True)]
    assert remember_opened(emits, items) == emits
    assert items == {ENC_ID: "1|audit|"}


def test_remember_opened_records_nothing_for_a_clean_encounter_not_drawn():
    items: dict[str, str] = {}
    emits = [coded_emit()]
    assert remember_opened(emits, items) == emits and items == {}


@pytest.mark.parametrize("table", ["1|audit|", "1|open|", "2|open|CA-1", "1|resolved|CA-1"])
def test_an_ehr_resend_is_not_drawn_for_audit_again(table):
    items = {ENC_ID: table}
    coded = coded_emit()
    assert remember_opened([coded, review_emit(is_audit=True)], items) == [coded]
    assert items == {ENC_ID: table}


@pytest.mark.parametrize("table", ["1|audit|", "1|open|", "3|open|CA-2", "2|resolved|CA-4"])
def test_an_ehr_resend_with_errors_keeps_its_item_but_does_not_reset_the_table(table):
    items = {ENC_ID: table}
    emits = [review_emit()]
    assert remember_opened(emits, items) == emits  # on the topic; the fold ignores a revision 1 again
    assert items == {ENC_ID: table}


def test_remember_opened_keys_the_table_by_encounter():
    items: dict[str, str] = {"ENC-OTHER": "2|open|CA-9"}
    remember_opened([review_emit(encounter_id=ENC_ID)], items)
    assert items == {"ENC-OTHER": "2|open|CA-9", ENC_ID: "1|open|"}


# --- the stage as the worker runs it ------------------------------------------------


def test_recoding_stage_rechecks_fixes_rejects_stale_ones_and_dead_letters_bad_ones(
        opened, codec, coding_ref, make_encounter, clean_bytes, worker_context):
    enc, review = opened
    rev2_view = CodingReviewItem(review.work_item_id, enc.encounter_id, [], False, b"", at(0), revision=2)
    actions = [
        fix_action(review, codec.encode(make_encounter(encounter_id="ENC-OTHER")), minute=0),  # another encounter
        fix_action(review, b"garbage", minute=1),
        fix_action(review, codec.encode(enc), minute=2),  # still M54.5: revision 2
        fix_action(review, codec.encode(enc), minute=2),  # redelivered: nothing
        fix_action(rev2_view, clean_bytes, minute=3),  # clean: coded, RESOLVED
        fix_action(review, clean_bytes, minute=4),  # a late fix of revision 1: FIX_REJECTED
        fix_action(review, None, kind=QUERY, minute=5),
        fix_action(review, clean_bytes, minute=6, work_item_id="CR-NOT-THIS-ONE"),
    ]
    messages = [SourceMessage("claims.coding-actions", 1, offset, enc.encounter_id.encode(), codec.encode(a))
                for offset, a in enumerate(actions)]
    messages.append(SourceMessage("claims.coding-actions", 1, len(actions), None, b"HL7|not-avro|"))
    items: dict[str, str] = {}
    result = STAGE["recoding"].run(worker_context(tables={Table.CODING_ITEMS_BY_ENCOUNTER: items}), codec, messages)
    assert [e.topic for e in result.emits] == ["dead-letter", "dead-letter", "coding-review", "coded", "coding-actions",
                                               "coding-actions", "dead-letter", "dead-letter"]
    assert result.emits[2].event.revision == 2
    assert result.emits[3].event.review_work_item_id == review.work_item_id
    assert [(e.event.action_id, e.event.action) for e in result.emits[4:6]] == [
        ("CA-3:RESOLVED", RESOLVED), ("CA-4:FIX_REJECTED", FIX_REJECTED)]
    assert [(d.stage, d.error_type, d.source_offset) for d in result.dead_letters] == [
        ("recoding", "ProcessingError", 0), ("recoding", "UndecodableEvent", 1),
        ("recoding", "ProcessingError", 7), ("recoding", "UndecodableEvent", 8)]
    assert items == {enc.encounter_id: "2|resolved|CA-2,CA-3,CA-4"}
    # The queue rebuilt from what the stages wrote: resolved at revision 2, one fix rejected.
    opened_items = [review, result.emits[2].event]
    actions_on_topic = [*actions, *(e.event for e in result.emits if e.topic == "coding-actions")]
    work = fold_items(opened_items, actions_on_topic)[review.work_item_id]
    assert (work.status, work.revision) == (ItemStatus.RESOLVED, 2)
    assert work.rejected_fixes == {"CA-4": "CA-4: the item is already resolved"}
