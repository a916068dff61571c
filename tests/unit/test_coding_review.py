"""engine.coding_review: the coder queue as a fold of events, corrections, and the re-check."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from engine.codec import UndecodableEvent
from engine.coding import code_encounter, review_item_id
from engine.coding_review import (
    ALLOWED,
    CLOSED,
    NEEDS_CODER,
    Correction,
    CorrectionError,
    ItemStatus,
    apply_correction,
    fold_items,
    recode_action,
    summarize_queue,
)
from engine.events import (
    CodedEncounter,
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    Encounter,
    Finding,
    Procedure,
    Severity,
)
from engine.pipeline import ProcessingError, SourceMessage
from engine.worker import recoding_stage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ITEM_ID = "CR-00000000000000AA"
ENC_ID = "ENC-UNIT-0000001"
FIX, QUERY, ANSWER = CodingActionType.FIX, CodingActionType.QUERY, CodingActionType.ANSWER
AGREE, DISAGREE = CodingActionType.AUDIT_AGREE, CodingActionType.AUDIT_DISAGREE


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
    return CodingAction(
        action_id=f"CA-{kind}-{minute}", work_item_id=work_item_id, encounter_id=ENC_ID, revision=revision,
        action=kind, actor=actor, note=note, changes=changes or [], corrected_encounter=corrected,
        occurred_at=at(minute))


def resolution(minute: int, work_item_id: str | None = ITEM_ID) -> CodedEncounter:
    return CodedEncounter(
        encounter_id=ENC_ID, encounter_occurred_at=T0, patient_id="MRN1", patient_birth_date=T0.date(),
        patient_sex="F", payer_id="MCR01", member_id="M1", billing_npi="1912301953", rendering_npi="1234567893",
        date_of_service=T0.date(), place_of_service="11", diagnoses=["M54.50"], lines=[], findings=[],
        coded_at=at(minute), review_work_item_id=work_item_id)


def fold(items=(), actions=(), resolutions=()):
    return fold_items(list(items), list(actions), list(resolutions))


def status(items=(), actions=(), resolutions=()) -> ItemStatus:
    return fold(items, actions, resolutions)[ITEM_ID].status


# --- the fold ----------------------------------------------------------------------------------


def test_open_query_answer_fix_resolved():
    events = [action(QUERY, 1, note="Which region of the back?"), action(ANSWER, 2, note="Lumbar", actor="dr-9"),
              action(FIX, 3, changes=["diagnoses[1]: M54.5 -> M54.50"])]
    assert status([item()]) == ItemStatus.OPEN
    assert status([item()], events[:1]) == ItemStatus.QUERIED
    assert status([item()], events[:2]) == ItemStatus.ANSWERED
    assert status([item()], events) == ItemStatus.FIX_SUBMITTED
    queue = fold([item()], events, [resolution(4)])
    work = queue[ITEM_ID]
    assert work.status == ItemStatus.RESOLVED
    assert (work.question, work.answer) == ("Which region of the back?", "Lumbar")
    assert work.updated_at == at(4) and work.created_at == at(0) and work.revision == 1
    assert [(h.at, h.what, h.actor) for h in work.history] == [
        (at(0), "opened", "engine"),
        (at(1), "query", "coder-1"),
        (at(2), "answer", "dr-9"),
        (at(3), "fix: diagnoses[1]: M54.5 -> M54.50", "coder-1"),
        (at(4), "correction passed the checks: claim generation (revision 1)", "engine"),
    ]
    assert work.history[1].note == "Which region of the back?"


def test_events_are_applied_in_time_order_whatever_the_input_order():
    events = [action(QUERY, 1), action(ANSWER, 2), action(FIX, 3)]
    forward = fold([item()], events, [resolution(4)])
    backward = fold([item()], list(reversed(events)), [resolution(4)])
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
    queue = fold([item()], [action(FIX, 1, work_item_id="CR-UNKNOWN"), action(AGREE, 2, work_item_id="CR-UNKNOWN")],
                 [resolution(3, "CR-UNKNOWN")])
    assert list(queue) == [ITEM_ID] and queue[ITEM_ID].status == ItemStatus.OPEN
    assert fold([], [action(FIX, 1)], [resolution(2)]) == {}


def test_a_first_pass_coded_event_resolves_nothing():
    assert status([item()], [], [resolution(1, None)]) == ItemStatus.OPEN


@pytest.mark.parametrize(
    "actions, expected",
    [
        pytest.param([action(ANSWER, 1)], ItemStatus.OPEN, id="answer-without-query"),
        pytest.param([action(AGREE, 1)], ItemStatus.OPEN, id="audit-outcome-on-an-error-item"),
        pytest.param([action(QUERY, 1), action(QUERY, 2)], ItemStatus.QUERIED, id="query-twice"),
        pytest.param([action(FIX, 1), action(FIX, 2)], ItemStatus.FIX_SUBMITTED, id="fix-while-rechecking"),
        pytest.param([action(FIX, 1), action(QUERY, 2)], ItemStatus.FIX_SUBMITTED, id="query-while-rechecking"),
        pytest.param([action(QUERY, 1), action(FIX, 2)], ItemStatus.FIX_SUBMITTED, id="fix-while-queried"),
        pytest.param([action(QUERY, 1), action(ANSWER, 2), action(QUERY, 3)], ItemStatus.QUERIED, id="query-again"),
    ],
)
def test_disallowed_actions_have_no_effect(actions, expected):
    assert status([item()], actions) == expected


def test_nothing_moves_a_resolved_item():
    for kind in CodingActionType:
        assert status([item()], [action(FIX, 1), action(kind, 3)], [resolution(2)]) == ItemStatus.RESOLVED


def test_same_instant_item_before_action_before_resolution():
    work = fold([item(1, 5)], [action(FIX, 5)], [resolution(5)])[ITEM_ID]
    assert work.status == ItemStatus.RESOLVED
    assert [h.what for h in work.history] == [
        "opened", "fix", "correction passed the checks: claim generation (revision 1)"]


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
    assert ALLOWED[ItemStatus.AUDIT_OPEN] == {AGREE, DISAGREE}
    assert all(state not in ALLOWED for state in CLOSED | {ItemStatus.FIX_SUBMITTED})
    assert NEEDS_CODER == {ItemStatus.OPEN, ItemStatus.ANSWERED, ItemStatus.AUDIT_OPEN}


def test_summarize_queue_counts_every_status():
    other = "CR-00000000000000BB"
    queue = fold([item(), item(work_item_id=other, is_audit=True)], [action(QUERY, 1)])
    counts = summarize_queue(list(queue.values()))
    assert set(counts) == {str(s) for s in ItemStatus}
    assert counts["QUERIED"] == counts["AUDIT_OPEN"] == 1 and sum(counts.values()) == 2


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


def test_reorder_diagnoses_pointers_follow(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(dx_order=(3, 1, 2)))
    assert corrected.diagnoses == ["E78.5", "E11.9", "I10"]
    assert pointers(corrected) == [[2, 3], [1], [1, 2]]
    assert changes == ["diagnoses reordered: E78.5, E11.9, I10"]


def test_drop_then_reorder_counts_the_remaining_diagnoses(three_dx):
    corrected, changes = apply_correction(three_dx, Correction(drop_dx=(2,), dx_order=(2, 1)))
    assert corrected.diagnoses == ["E78.5", "E11.9"]
    assert pointers(corrected) == [[2], [1], [1, 2]]
    assert changes == ["diagnosis 2: dropped I10", "diagnoses reordered: E78.5, E11.9",
                       "line 1: pointer to dropped diagnosis 2 removed"]


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
        pytest.param(Correction(dx_order=(1, 2)), "each of the 3 diagnoses once", id="order-too-short"),
        pytest.param(Correction(dx_order=(1, 1, 2)), "each of the 3 diagnoses once", id="order-repeats"),
        pytest.param(Correction(drop_dx=(1,), dx_order=(1, 2, 3)), "each of the 2 diagnoses", id="order-after-drop"),
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
        set_dx={1: "E11.65"}, add_dx=("Z79.4",), drop_dx=(2,), dx_order=(3, 1, 2), set_code={1: "99215"},
        set_modifiers={1: ("XS",)}, set_units={2: 3}, set_pointers={3: (1,)}, drop_lines=(2,)))
    assert three_dx == before
    assert corrected != three_dx
    assert all(a is not b for a, b in zip(corrected.procedures, three_dx.procedures))


def test_a_correction_changes_only_what_it_names_or_says_so(make_encounter):
    enc = make_encounter(procedures=[Procedure("99214", ["25"], 1, [1, 3]), Procedure("J3301", [], 4, [1])])
    corrected, changes = apply_correction(enc, Correction(set_units={2: 2}))
    assert corrected.procedures[0].dx_pointers == [1, 3] or any("line 1" in c for c in changes), changes


def test_dropping_the_same_line_twice_drops_only_that_line(three_dx):
    try:
        corrected, _ = apply_correction(three_dx, Correction(drop_lines=(2, 2)))
    except CorrectionError:
        return  # refusing the repeated position is fine too
    assert [p.code for p in corrected.procedures] == ["99214", "36415"]


def test_a_change_line_counts_from_1_in_words_not_in_the_findings_0_based_brackets(make_encounter, coding_ref):
    from engine.coding import check_encounter

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


def fix_action(item_: CodingReviewItem, corrected: bytes | None, minute: int = 1, revision: int | None = None,
               kind: CodingActionType = FIX, changes: list[str] | None = None) -> CodingAction:
    return CodingAction(
        action_id=f"CA-{minute}", work_item_id=item_.work_item_id, encounter_id=item_.encounter_id,
        revision=item_.revision if revision is None else revision, action=kind, actor="coder-1", note=None,
        changes=changes or [], corrected_encounter=corrected, occurred_at=at(minute))


def test_a_clean_fix_goes_on_to_the_claim_naming_its_item(opened, codec, coding_ref):
    enc, review = opened
    corrected, changes = apply_correction(enc, Correction(set_dx={1: "M54.50"}))
    act = fix_action(review, codec.encode(corrected), changes=changes)
    emits = recode_action(act, codec, coding_ref, at(2))
    assert [(e.topic, e.key) for e in emits] == [("coded", enc.encounter_id)]  # no audit item for a fix
    coded = emits[0].event
    assert coded.review_work_item_id == review.work_item_id == review_item_id(enc.encounter_id)
    assert coded.diagnoses == ["M54.50", "I10"] and coded.coded_at == at(2)
    assert codec.decode(codec.encode(coded), CodedEncounter) == coded
    # The queue, rebuilt from the three topics, shows the item resolved.
    queue = fold_items([review], [act], [coded])
    assert queue[review.work_item_id].status == ItemStatus.RESOLVED


def test_a_fix_that_still_fails_opens_the_next_revision(opened, codec, coding_ref):
    enc, review = opened
    corrected, _ = apply_correction(enc, Correction(set_dx={1: "M54.5"}, set_units={1: 0}))
    corrected_bytes = codec.encode(corrected)
    act = fix_action(review, corrected_bytes)
    (emit,) = recode_action(act, codec, coding_ref, at(2))
    assert (emit.topic, emit.key) == ("coding-review", enc.encounter_id)
    rev2 = emit.event
    assert (rev2.work_item_id, rev2.revision, rev2.is_audit, rev2.encounter, rev2.created_at) == (
        review.work_item_id, 2, False, corrected_bytes, at(2))
    assert [f.rule_id for f in rev2.findings] == ["ICD10_NOT_BILLABLE", "UNITS_INVALID"]
    # A fix of revision 2 that fails again opens revision 3.
    (emit3,) = recode_action(fix_action(rev2, corrected_bytes, minute=3), codec, coding_ref, at(4))
    assert emit3.event.revision == 3
    queue = fold_items([review, rev2], [act], [])
    assert (queue[review.work_item_id].status, queue[review.work_item_id].revision) == (ItemStatus.OPEN, 2)


@pytest.mark.parametrize("kind", [QUERY, ANSWER, AGREE, DISAGREE], ids=str)
def test_only_a_fix_is_rechecked(opened, codec, coding_ref, kind):
    enc, review = opened
    assert recode_action(fix_action(review, codec.encode(enc), kind=kind), codec, coding_ref, at(2)) == []
    assert recode_action(fix_action(review, None, kind=kind), codec, coding_ref, at(2)) == []


def test_a_fix_without_a_corrected_encounter_is_a_processing_error(opened, codec, coding_ref):
    _, review = opened
    with pytest.raises(ProcessingError, match="carries no corrected encounter"):
        recode_action(fix_action(review, None), codec, coding_ref, at(2))


def test_a_fix_carrying_another_encounter_is_a_processing_error(opened, codec, coding_ref, make_encounter):
    _, review = opened
    other = make_encounter(encounter_id="ENC-UNIT-0000002")
    with pytest.raises(ProcessingError, match="carries encounter ENC-UNIT-0000002"):
        recode_action(fix_action(review, codec.encode(other)), codec, coding_ref, at(2))


@pytest.mark.parametrize("corrected", [b"HL7|not-avro|", b""], ids=["not-avro", "empty"])
def test_an_undecodable_corrected_encounter_is_undecodable(opened, codec, coding_ref, corrected):
    _, review = opened
    with pytest.raises(UndecodableEvent):
        recode_action(fix_action(review, corrected), codec, coding_ref, at(2))


def test_a_corrected_encounter_of_another_schema_is_undecodable(opened, codec, coding_ref, samples):
    _, review = opened
    with pytest.raises(UndecodableEvent, match="Encounter was expected"):
        recode_action(fix_action(review, codec.encode(samples[CodedEncounter])), codec, coding_ref, at(2))


def test_recoding_stage_rechecks_fixes_and_dead_letters_bad_ones(opened, codec, coding_ref, make_encounter):
    enc, review = opened
    clean, _ = apply_correction(enc, Correction(set_dx={1: "M54.50"}))
    actions = [
        fix_action(review, codec.encode(clean)),
        fix_action(review, codec.encode(enc), minute=2),  # still M54.5
        fix_action(review, None, kind=QUERY, minute=3),
        fix_action(review, codec.encode(make_encounter(encounter_id="ENC-OTHER")), minute=4),
        fix_action(review, b"garbage", minute=5),
    ]
    messages = [SourceMessage("claims.coding-actions", 1, offset, enc.encounter_id.encode(), codec.encode(a))
                for offset, a in enumerate(actions)]
    messages.append(SourceMessage("claims.coding-actions", 1, 5, None, b"HL7|not-avro|"))
    result = recoding_stage(messages, codec, coding_ref)
    assert [e.topic for e in result.emits] == ["coded", "coding-review", "dead-letter", "dead-letter", "dead-letter"]
    assert result.emits[0].event.review_work_item_id == review.work_item_id
    assert result.emits[1].event.revision == 2
    assert [(d.stage, d.error_type, d.source_offset) for d in result.dead_letters] == [
        ("recoding", "ProcessingError", 3), ("recoding", "UndecodableEvent", 4), ("recoding", "UndecodableEvent", 5)]
