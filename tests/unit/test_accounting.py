"""engine.accounting: the Tally of records read back, the summary and its identities.

A Tally is built by hand here with encoded events, as ``ReadBack.poll`` feeds it from
the topics: one small coding run with a review, a fix that still fails, a fix that
passes (and the engine's RESOLVED verdict on it), and an audit sample.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from engine.accounting import ENGINE_VERDICTS, Tally, all_settled, identities, summarize
from engine.events import (
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    CodedEncounter,
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    DeadLetter,
    DenialWorkItem,
    Encounter,
    Finding,
    Remittance,
    Severity,
)

ENCOUNTERS = "encounters = coded_first_pass + coding_review + dead_lettered"
FIXES = "coding_fixes = coded_after_review + coding_fixes_still_failing + coding_fixes_rejected"
RESOLVED = "coded_after_review = coding_fixes_resolved"
CODED = "coded = claims_submitted + duplicates_dropped"


def error(rule_id: str, element: str = "diagnoses[0]") -> Finding:
    return Finding(rule_id, Severity.ERROR, f"{rule_id} found", element)


def warning(rule_id: str, element: str = "diagnoses[1]") -> Finding:
    return Finding(rule_id, Severity.WARNING, f"{rule_id} found", element)


def engine_verdict(fix: CodingAction, kind: CodingActionType) -> CodingAction:
    """The engine's verdict on ``fix``, as the re-check writes it."""
    return dataclasses.replace(fix, action_id=f"{fix.action_id}:{kind}", action=kind, actor="engine",
                               note="verdict", changes=[], corrected_encounter=None)


@pytest.fixture
def run_events(samples):
    """(logical topic, key, event) for one run: 4 encounters, 1 review (2 fixes), 1 audit, 1 dead letter."""
    coded = samples[CodedEncounter]
    item = samples[CodingReviewItem]
    action = samples[CodingAction]

    def first_pass(encounter_id: str, findings: list[Finding]) -> CodedEncounter:
        return dataclasses.replace(coded, encounter_id=encounter_id, findings=findings, review_work_item_id=None)

    review_rev1 = dataclasses.replace(item, work_item_id="CR-ENC-2", encounter_id="ENC-2", revision=1,
                                      is_audit=False, findings=[
        error("ICD10_NOT_BILLABLE", "diagnoses[0]=M54.5"), error("ICD10_NOT_BILLABLE", "diagnoses[1]=E11"),
        error("DX_DUPLICATE"), warning("DX_UNLINKED")])
    audit = dataclasses.replace(item, work_item_id="CR-ENC-3", encounter_id="ENC-3", revision=1, is_audit=True,
                                findings=[warning("DX_UNLINKED")])
    on_enc_2 = dataclasses.replace(action, work_item_id="CR-ENC-2", encounter_id="ENC-2")
    fix_1 = dataclasses.replace(on_enc_2, action_id="CA-1", revision=1, action=CodingActionType.FIX)
    review_rev2 = dataclasses.replace(review_rev1, revision=2, findings=[error("DX_POINTER_RANGE")])
    query = dataclasses.replace(on_enc_2, action_id="CA-2", revision=2, action=CodingActionType.QUERY,
                                corrected_encounter=None)
    fix_2 = dataclasses.replace(on_enc_2, action_id="CA-3", revision=2, action=CodingActionType.FIX)
    agree = dataclasses.replace(action, action_id="CA-4", work_item_id="CR-ENC-3", encounter_id="ENC-3", revision=1,
                                action=CodingActionType.AUDIT_AGREE, corrected_encounter=None)
    after_review = dataclasses.replace(coded, encounter_id="ENC-2", findings=[], review_work_item_id="CR-ENC-2")
    letter = dataclasses.replace(samples[DeadLetter], source_topic="claims.encounters")
    return [
        ("encounters", "ENC-1", dataclasses.replace(samples[Encounter], encounter_id="ENC-1")),
        ("encounters", "ENC-2", dataclasses.replace(samples[Encounter], encounter_id="ENC-2")),
        ("encounters", "ENC-3", dataclasses.replace(samples[Encounter], encounter_id="ENC-3")),
        ("encounters", "ENC-4", dataclasses.replace(samples[Encounter], encounter_id="ENC-4")),
        ("coded", "ENC-1", first_pass("ENC-1", [warning("DX_UNLINKED"), warning("NCCI_PTP_BYPASSED")])),
        ("coding-review", "ENC-2", review_rev1),
        ("coded", "ENC-3", first_pass("ENC-3", [warning("DX_UNLINKED")])),
        ("coding-review", "ENC-3", audit),
        ("dead-letter", "claims.encounters:0:3", letter),
        ("coding-actions", "ENC-2", fix_1),
        ("coding-review", "ENC-2", review_rev2),
        ("coding-actions", "ENC-2", query),
        ("coding-actions", "ENC-2", fix_2),
        ("coded", "ENC-2", after_review),
        ("coding-actions", "ENC-2", engine_verdict(fix_2, CodingActionType.RESOLVED)),
        ("coding-actions", "ENC-3", agree),
    ]


def tally_of(events, codec) -> Tally:
    tally = Tally()
    for logical, key, event in events:
        tally.add(logical, key.encode(), codec.encode(event), codec)
    return tally


def claim_flow(samples, encounter_ids: list[str]) -> list[tuple[str, str, object]]:
    """Downstream of coding: one claim, remittance and statuses per coded encounter (one denied)."""
    status = samples[ClaimStatus]
    events: list[tuple[str, str, object]] = []
    for index, encounter_id in enumerate(encounter_ids):
        claim_id = f"C{index:016d}"
        final = ClaimState.DENIED if index == 0 else ClaimState.PAID
        paid = Decimal("0.00") if final == ClaimState.DENIED else Decimal("100.00")
        events += [
            ("claims-submitted", claim_id, dataclasses.replace(samples[ClaimSubmitted], claim_id=claim_id,
                                                               encounter_id=encounter_id)),
            ("claim-status", claim_id, dataclasses.replace(status, claim_id=claim_id, status=ClaimState.SUBMITTED,
                                                           billed_amount=Decimal("298.00"), paid_amount=None)),
            ("remittances", claim_id, dataclasses.replace(samples[Remittance], claim_id=claim_id,
                                                          encounter_id=encounter_id)),
            ("claim-status", claim_id, dataclasses.replace(status, claim_id=claim_id, status=final,
                                                           billed_amount=Decimal("298.00"), paid_amount=paid)),
        ]
    events.append(("denials.missing-information", "C0000000000000000", samples[DenialWorkItem]))
    return events


def test_coding_counts(run_events, codec, settings):
    summary = summarize(tally_of(run_events, codec), settings, elapsed_s=2.0)
    assert summary["encounters"] == 4
    assert summary["coded"] == 3
    assert summary["coded_first_pass"] == 2
    assert summary["coding_review"] == 1  # first revisions of error items only: not the audit, not rev 2
    # Items per rule: two ICD10_NOT_BILLABLE findings on one item count once; warnings and rev 2 not at all.
    assert summary["coding_findings_by_rule"] == {"DX_DUPLICATE": 1, "ICD10_NOT_BILLABLE": 1}
    # Warnings on coded encounters, once per encounter per rule.
    assert summary["coding_warnings_by_rule"] == {"DX_UNLINKED": 2, "NCCI_PTP_BYPASSED": 1}
    assert summary["coding_audit_sampled"] == 1
    assert summary["coding_fixes"] == 2  # the QUERY and the audit outcome are not fixes
    assert summary["coding_queries"] == 1
    assert summary["coding_audits_closed"] == 1
    assert summary["coding_fixes_still_failing"] == 1
    assert summary["coding_fixes_resolved"] == 1  # the engine's RESOLVED verdicts
    assert summary["coding_fixes_rejected"] == 0
    assert summary["coded_after_review"] == 1
    assert summary["dead_lettered"] == 1
    assert summary["dead_lettered_by_source"] == {"encounters": 1}
    assert summary["encounters_per_s"] == 2.0


def test_coding_identities_hold(run_events, codec, settings):
    checks = summarize(tally_of(run_events, codec), settings, 1.0)["identities"]
    assert checks[ENCOUNTERS] == {"lhs": 4, "rhs": 2 + 1 + 1, "holds": True}
    assert checks[FIXES] == {"lhs": 2, "rhs": 1 + 1 + 0, "holds": True}
    assert checks[RESOLVED] == {"lhs": 1, "rhs": 1, "holds": True}
    # Nothing was billed yet: the downstream identity does not hold.
    assert checks[CODED] == {"lhs": 3, "rhs": 0, "holds": False}


def test_every_identity_holds_for_a_complete_run(run_events, samples, codec, settings):
    tally = tally_of(run_events + claim_flow(samples, ["ENC-1", "ENC-3", "ENC-2"]), codec)
    summary = summarize(tally, settings, 1.0)
    assert all(check["holds"] for check in summary["identities"].values()), summary["identities"]
    assert (summary["claims_submitted"], summary["remittances"], summary["paid"], summary["denied"]) == (3, 3, 2, 1)
    assert summary["denials_by_queue"] == {"missing-information": 1}
    assert (summary["billed_amount"], summary["paid_amount"], summary["amount_at_risk"]) == (
        "894.00", "200.00", "298.00")
    assert all_settled(tally, 4, settings)
    assert all_settled(tally, 4, settings, coder_running=True)  # the review item and the audit were acted on
    assert not all_settled(tally, 5, settings)  # an encounter not read back yet


def coder_sim_run(samples, *, e2_actions: int, e3_actions: int, audit_closed: bool = True
                  ) -> list[tuple[str, str, object]]:
    """As the coder simulator acts (one action per item revision): E1 clean and audited,
    E2 and E3 with errors. E2: FIX fails (revision 2), FIX passes (RESOLVED). E3: a QUERY."""
    item, action, coded = samples[CodingReviewItem], samples[CodingAction], samples[CodedEncounter]
    enc = samples[Encounter]

    def review(encounter_id: str, revision: int, is_audit: bool = False):
        return ("coding-review", encounter_id, dataclasses.replace(
            item, work_item_id=f"CR-{encounter_id}", encounter_id=encounter_id, revision=revision, is_audit=is_audit))

    def act(encounter_id: str, revision: int, kind: CodingActionType):
        return ("coding-actions", encounter_id, dataclasses.replace(
            action, action_id=f"CA-{encounter_id}-{revision}-{kind}", work_item_id=f"CR-{encounter_id}",
            encounter_id=encounter_id, revision=revision, action=kind))

    events = [("encounters", e, dataclasses.replace(enc, encounter_id=e)) for e in ("E1", "E2", "E3")]
    events += [("coded", "E1", dataclasses.replace(coded, encounter_id="E1", review_work_item_id=None)),
               review("E1", 1, is_audit=True), review("E2", 1), review("E3", 1)]
    if audit_closed:
        events += [act("E1", 1, CodingActionType.AUDIT_AGREE)]
    if e2_actions >= 1:
        events += [act("E2", 1, CodingActionType.FIX), review("E2", 2)]
    if e2_actions >= 2:
        fix = act("E2", 2, CodingActionType.FIX)
        events += [fix, ("coded", "E2", dataclasses.replace(coded, encounter_id="E2", review_work_item_id="CR-E2")),
                   ("coding-actions", "E2", engine_verdict(fix[2], CodingActionType.RESOLVED))]
    if e3_actions:
        events += [act("E3", 1, CodingActionType.QUERY)]
    coded_ids = ["E1", "E2"] if e2_actions >= 2 else ["E1"]
    return events + claim_flow(samples, coded_ids)


@pytest.mark.parametrize("e2_actions, e3_actions, audit_closed, settled",
                         [(0, 0, True, False), (1, 0, True, False), (2, 1, True, True), (2, 1, False, False)],
                         ids=["only-the-audit-closed", "e2-fix-still-failing", "every-item-acted-on",
                              "every-error-item-but-not-the-audit"])
def test_with_the_coder_running_every_item_needs_an_action(samples, codec, settings, e2_actions, e3_actions,
                                                           audit_closed, settled):
    tally = tally_of(coder_sim_run(samples, e2_actions=e2_actions, e3_actions=e3_actions,
                                   audit_closed=audit_closed), codec)
    assert all_settled(tally, 3, settings)  # the identities hold in each state: items wait, nothing is lost
    assert all_settled(tally, 3, settings, coder_running=True) is settled


def test_with_the_coder_running_actions_on_revisions_do_not_stand_in_for_untouched_items(samples, codec, settings):
    tally = tally_of(coder_sim_run(samples, e2_actions=2, e3_actions=0), codec)
    assert all_settled(tally, 3, settings)
    assert not all_settled(tally, 3, settings, coder_running=True)


def test_the_engine_s_verdicts_are_not_a_coder_acting(samples, codec, settings):
    """A verdict at revision 1 (RESOLVED, FIX_REJECTED) is the engine's: it covers no item."""
    assert ENGINE_VERDICTS == {"RESOLVED", "FIX_REJECTED"}
    events = coder_sim_run(samples, e2_actions=2, e3_actions=0)
    e3_fix = dataclasses.replace(samples[CodingAction], action_id="CA-E3", work_item_id="CR-E3", encounter_id="E3",
                                 revision=1)
    tally = tally_of(events + [("coding-actions", "E3", engine_verdict(e3_fix, kind))
                               for kind in (CodingActionType.RESOLVED, CodingActionType.FIX_REJECTED)], codec)
    assert (tally.review_ids, tally.audit_ids) == ({"CR-E2", "CR-E3"}, {"CR-E1"})
    assert tally.items_acted_on == {"CR-E1", "CR-E2"}
    assert not all_settled(tally, 3, settings, coder_running=True)


def test_with_the_coder_running_an_ehr_resend_needs_no_second_action(samples, codec, settings):
    """The resend opens the same work item id again: one action on it is enough (ids, not records)."""
    events = coder_sim_run(samples, e2_actions=2, e3_actions=1)
    resend = [("encounters", "E3", dataclasses.replace(samples[Encounter], encounter_id="E3")),
              ("coding-review", "E3", dataclasses.replace(samples[CodingReviewItem], work_item_id="CR-E3",
                                                          encounter_id="E3", revision=1, is_audit=False))]
    tally = tally_of(events + resend, codec)
    assert (tally.review_opened, tally.review_ids) == (3, {"CR-E2", "CR-E3"})
    assert all_settled(tally, 4, settings, coder_running=True)


@pytest.mark.parametrize(
    "extra, broken",
    [
        pytest.param([("encounters", "ENC-5", None)], {ENCOUNTERS}, id="encounter-not-coded-yet"),
        pytest.param([("coding-actions", "ENC-2", "fix")], {FIXES}, id="fix-not-rechecked-yet"),
        pytest.param([("coded", "ENC-2", "after-review")], {FIXES, RESOLVED},
                     id="coded-after-review-without-a-fix-or-a-verdict"),
        pytest.param([("coded", "ENC-2", "after-review"), ("coding-actions", "ENC-2", "resolved")], {FIXES},
                     id="coded-after-review-with-its-verdict-but-without-a-fix"),
        pytest.param([("coding-actions", "ENC-2", "resolved")], {RESOLVED}, id="resolved-without-a-coded-encounter"),
        pytest.param([("coding-actions", "ENC-2", "rejected")], {FIXES}, id="rejected-without-a-fix"),
        pytest.param([("coding-review", "ENC-2", "rev-3")], {FIXES}, id="revision-without-a-fix"),
        pytest.param([("coded", "ENC-5", "first-pass")], {ENCOUNTERS}, id="coded-without-an-encounter"),
        pytest.param([("coding-actions", "ENC-2", "fix"), ("coding-actions", "ENC-2", "rejected")], set(),
                     id="balanced-a-fix-and-its-rejection"),
        pytest.param([("coding-actions", "ENC-2", "fix"), ("coded", "ENC-2", "after-review"),
                      ("coding-actions", "ENC-2", "resolved")], set(), id="balanced-a-fix-coded-and-resolved"),
    ],
)
def test_an_unbalanced_run_breaks_exactly_its_identity(run_events, samples, codec, settings, extra, broken):
    fix = dataclasses.replace(samples[CodingAction], action_id="CA-9", action=CodingActionType.FIX)
    more = {
        None: dataclasses.replace(samples[Encounter], encounter_id="ENC-5"),
        "fix": fix,
        "after-review": dataclasses.replace(samples[CodedEncounter], review_work_item_id="CR-X"),
        "rev-3": dataclasses.replace(samples[CodingReviewItem], is_audit=False, revision=3),
        "first-pass": dataclasses.replace(samples[CodedEncounter], review_work_item_id=None),
        "resolved": engine_verdict(fix, CodingActionType.RESOLVED),
        "rejected": engine_verdict(fix, CodingActionType.FIX_REJECTED),
    }
    events = run_events + [(topic, key, more[what]) for topic, key, what in extra]
    coded_ids = ["ENC-1", "ENC-3", "ENC-2"] + (["ENC-2b"] if any(t == "coded" for t, _, _ in extra) else [])
    summary = summarize(tally_of(events + claim_flow(samples, coded_ids), codec), settings, 1.0)
    assert {name for name, check in summary["identities"].items() if not check["holds"]} == broken


def test_a_dead_lettered_fix_balances_the_fix_identity(run_events, codec, samples, settings):
    extra_fix = ("coding-actions", "ENC-2", dataclasses.replace(samples[CodingAction], action=CodingActionType.FIX))
    letter = ("dead-letter", "claims.coding-actions:0:9",
              dataclasses.replace(samples[DeadLetter], source_topic="claims.coding-actions", stage="recoding"))
    without = summarize(tally_of(run_events + [extra_fix], codec), settings, 1.0)["identities"][FIXES]
    with_letter = summarize(tally_of(run_events + [extra_fix, letter], codec), settings, 1.0)
    assert without == {"lhs": 3, "rhs": 2, "holds": False}
    assert with_letter["identities"][FIXES] == {"lhs": 3, "rhs": 3, "holds": True}
    assert with_letter["dead_lettered_by_source"] == {"coding-actions": 1, "encounters": 1}
    # The encounters identity counts only the encounter stage's dead letters.
    assert with_letter["identities"][ENCOUNTERS]["holds"]


def test_an_unreadable_record_is_counted_on_its_topic_but_not_read(codec, settings):
    tally = Tally()
    tally.add("coding-review", b"ENC-1", b"HL7|not-avro|", codec)
    tally.add("coded", b"ENC-1", b"\x00\x00\x00", codec)
    assert tally.unreadable == 2
    assert tally.records["coding-review"] == 1 and tally.records["coded"] == 1
    summary = summarize(tally, settings, 0.0)
    assert (summary["coding_review"], summary["coded_after_review"], summary["encounters_per_s"]) == (0, 0, 0.0)


def test_identities_are_named_and_ordered(run_events, codec, settings):
    summary = summarize(tally_of(run_events, codec), settings, 1.0)
    assert [i.name for i in identities(summary)] == list(summary["identities"]) == [
        ENCOUNTERS, FIXES, RESOLVED, CODED, "claims_submitted = remittances",
        "remittances = paid + partially_paid + denied",
        "denied = sum(denials_by_queue)"]
