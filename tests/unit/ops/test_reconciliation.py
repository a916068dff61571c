"""engine.ops.reconciliation: the Tally of records read back, the summary and its identities.

A Tally is built by hand here with encoded events, as ``ReadBack.poll`` feeds it from
the topics: one small coding run with a review, a fix that still fails, a fix that
passes (and the engine's RESOLVED verdict on it), and an audit sample.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from engine.model.events import (
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    CodedEncounter,
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    DeadLetter,
    DenialAction,
    DenialActionType,
    DenialWorkItem,
    DuplicateDropped,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
    Encounter,
    Finding,
    FrontDeskItem,
    PatientStatement,
    Remittance,
    RemittanceOutcome,
    ScrubRejected,
    Severity,
)
from engine.ops.reconciliation import ENGINE_VERDICTS, Tally, all_settled, identities, summarize, unsettled

ENCOUNTERS = "encounters = coded_first_pass + coding_review + dead_lettered"
FIXES = "coding_fixes = coded_after_review + coding_fixes_still_failing + coding_fixes_rejected"
RESOLVED = "coded_after_review = coding_fixes_resolved"
CODED = "coded = claims_submitted_original + scrub_rejected + eligibility_held + duplicates_dropped"
ELIGIBILITY = "eligibility_requests = eligibility_responses"


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


def asked(samples, encounter_id: str, status: EligibilityStatus = EligibilityStatus.ACTIVE
          ) -> list[tuple[str, str, object]]:
    """The eligibility request for a coded encounter and the payer's answer."""
    return [
        ("eligibility-requests", encounter_id, dataclasses.replace(samples[EligibilityRequest],
                                                                   encounter_id=encounter_id)),
        ("eligibility-responses", encounter_id, dataclasses.replace(samples[EligibilityResponse],
                                                                    encounter_id=encounter_id, status=status)),
    ]


def claim_flow(samples, encounter_ids: list[str]) -> list[tuple[str, str, object]]:
    """Downstream of coding: eligibility asked and answered, one claim, remittance and
    statuses per coded encounter (one denied)."""
    status = samples[ClaimStatus]
    events: list[tuple[str, str, object]] = []
    for index, encounter_id in enumerate(encounter_ids):
        claim_id = f"C{index:016d}"
        final = ClaimState.DENIED if index == 0 else ClaimState.PAID
        paid = Decimal("0.00") if final == ClaimState.DENIED else Decimal("100.00")
        events += asked(samples, encounter_id) + [
            ("claims-submitted", claim_id, dataclasses.replace(samples[ClaimSubmitted], claim_id=claim_id,
                                                               encounter_id=encounter_id)),
            ("claim-status", claim_id, dataclasses.replace(status, claim_id=claim_id, status=ClaimState.SUBMITTED,
                                                           billed_amount=Decimal("298.00"), paid_amount=None,
                                                           remittances_posted=0)),
            ("remittances", claim_id, dataclasses.replace(
                samples[Remittance], claim_id=claim_id, encounter_id=encounter_id, remittance_id=f"R{index}",
                claim_frequency_code="1",
                outcome=RemittanceOutcome.DENIED if final == ClaimState.DENIED else RemittanceOutcome.PAID)),
            ("claim-status", claim_id, dataclasses.replace(status, claim_id=claim_id, status=final,
                                                           billed_amount=Decimal("298.00"), paid_amount=paid,
                                                           remittances_posted=1)),
            ("statements", claim_id, dataclasses.replace(samples[PatientStatement], claim_id=claim_id,
                                                         remittance_id=f"R{index}", statement_id=f"S{index}",
                                                         amount=samples[Remittance].patient_responsibility)),
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
    assert checks[ELIGIBILITY] == {"lhs": 0, "rhs": 0, "holds": True}


def test_every_identity_holds_for_a_complete_run(run_events, samples, codec, settings):
    tally = tally_of(run_events + claim_flow(samples, ["ENC-1", "ENC-3", "ENC-2"]), codec)
    summary = summarize(tally, settings, 1.0)
    assert all(check["holds"] for check in summary["identities"].values()), summary["identities"]
    assert (summary["claims_submitted"], summary["remittances"], summary["paid"], summary["denied"]) == (3, 3, 2, 1)
    assert (summary["eligibility_requests"], summary["eligibility_responses"], summary["eligibility_by_status"]) == (
        3, 3, {"ACTIVE": 3})
    assert (summary["claims_built"], summary["scrub_rejected"], summary["eligibility_held"],
            summary["clean_claim_rate"]) == (3, 0, 0, 1.0)
    assert summary["denials_by_queue"] == {"missing-information": 1}
    # Money comes from the remittances (each posted once): three answers, 298.00 billed and 83.50 paid each.
    assert (summary["billed_amount"], summary["paid_amount"], summary["amount_at_risk"]) == (
        "894.00", "250.50", "298.00")
    assert all_settled(tally, 4, settings)
    assert all_settled(tally, 4, settings, coder_running=True)  # the review item and the audit were acted on
    assert not all_settled(tally, 5, settings)  # an encounter not read back yet


def test_a_run_not_settled_says_what_is_behind(run_events, samples, codec, settings):
    complete = tally_of(run_events + claim_flow(samples, ["ENC-1", "ENC-3", "ENC-2"]), codec)
    assert unsettled(complete, 4, settings, coder_running=True) == []
    assert unsettled(complete, 5, settings) == ["4 of 5 encounter records read"]

    unbilled = tally_of(run_events + claim_flow(samples, ["ENC-1", "ENC-3"]), codec)  # ENC-2 coded, never billed
    assert [reason for reason in unsettled(unbilled, 4, settings) if "coded" in reason] == [
        "identity broken: coded = claims_submitted_original + scrub_rejected + eligibility_held + duplicates_dropped"]


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
    assert unsettled(tally, 3, settings, coder_running=True) == [
        "1 coding work items the coder has not acted on (e.g. CR-E3)"]


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
        ENCOUNTERS, FIXES, RESOLVED, CODED, ELIGIBILITY, "claims_submitted - voids_reversed = remittances - reversals",
        "remittances = paid + partially_paid + denied + reversed", "remittances_unbalanced = 0",
        "statement_amount = patient_responsibility", "denials_routed = sum(denials_by_queue)",
        "work_items_created = denials_routed", "work_items_open + work_items_resolved = work_items_created"]


# --- the claim gate: eligibility, front desk, scrubber ---------------------------------------


def clean(samples, encounter_id: str) -> list[tuple[str, str, object]]:
    """An encounter read and coded clean on the first pass."""
    return [("encounters", encounter_id, dataclasses.replace(samples[Encounter], encounter_id=encounter_id)),
            ("coded", encounter_id, dataclasses.replace(samples[CodedEncounter], encounter_id=encounter_id,
                                                        review_work_item_id=None, findings=[]))]


def gate_run(samples) -> list[tuple[str, str, object]]:
    """Five clean encounters past the gate: two submitted, one scrub rejected, one held at
    the front desk (NOT_FOUND), one INACTIVE held; an EHR resend of the first dropped."""
    rejected = samples[ScrubRejected]
    held = samples[FrontDeskItem]
    events: list[tuple[str, str, object]] = []
    for encounter_id in ("G1", "G2", "G3", "G4", "G5"):
        events += clean(samples, encounter_id)
    events += asked(samples, "G1") + asked(samples, "G2") + asked(samples, "G3")
    events += asked(samples, "G4", EligibilityStatus.NOT_FOUND) + asked(samples, "G5", EligibilityStatus.INACTIVE)
    events += [
        ("claims-submitted", "C-G1", dataclasses.replace(samples[ClaimSubmitted], claim_id="C-G1", encounter_id="G1")),
        ("claims-submitted", "C-G2", dataclasses.replace(samples[ClaimSubmitted], claim_id="C-G2", encounter_id="G2")),
        ("scrub-rejected", "C-G3", dataclasses.replace(rejected, claim_id="C-G3", encounter_id="G3", findings=[
            error("SCRUB_REQUIRED", "subscriber.birth_date"), error("SCRUB_REQUIRED", "rendering_provider.name"),
            error("SCRUB_NPI_INVALID", "rendering_provider.npi"),
            warning("SCRUB_TIMELY_FILING_NEAR", "date_of_service")])),
        ("front-desk", "G4", dataclasses.replace(held, encounter_id="G4", status=EligibilityStatus.NOT_FOUND)),
        ("front-desk", "G5", dataclasses.replace(held, encounter_id="G5")),
        *clean(samples, "G1"),
        ("duplicates", "G1", dataclasses.replace(samples[DuplicateDropped], encounter_id="G1")),
    ]
    for claim_id in ("C-G1", "C-G2"):
        events += [
            ("remittances", claim_id, dataclasses.replace(samples[Remittance], claim_id=claim_id,
                                                          remittance_id=f"R-{claim_id}", claim_frequency_code="1",
                                                          outcome=RemittanceOutcome.PAID)),
            ("claim-status", claim_id, dataclasses.replace(samples[ClaimStatus], claim_id=claim_id,
                                                           status=ClaimState.PAID, paid_amount=Decimal("100.00"),
                                                           remittances_posted=1)),
            ("statements", claim_id, dataclasses.replace(samples[PatientStatement], claim_id=claim_id,
                                                         remittance_id=f"R-{claim_id}",
                                                         amount=samples[Remittance].patient_responsibility)),
        ]
    return events


def test_claim_gate_counts(samples, codec, settings):
    summary = summarize(tally_of(gate_run(samples), codec), settings, 1.0)
    assert summary["coded"] == 6
    assert (summary["eligibility_requests"], summary["eligibility_responses"]) == (5, 5)
    assert summary["eligibility_by_status"] == {"ACTIVE": 3, "INACTIVE": 1, "NOT_FOUND": 1}
    assert summary["eligibility_held"] == 2
    assert (summary["claims_built"], summary["claims_submitted"], summary["scrub_rejected"]) == (3, 2, 1)
    # Items per rule, errors only: two SCRUB_REQUIRED findings on one claim count once.
    assert summary["scrub_findings_by_rule"] == {"SCRUB_NPI_INVALID": 1, "SCRUB_REQUIRED": 1}
    assert summary["clean_claim_rate"] == round(2 / 3, 4) == 0.6667
    assert summary["duplicates_dropped"] == 1


def test_a_balanced_gate_run_holds_every_identity(samples, codec, settings):
    tally = tally_of(gate_run(samples), codec)
    checks = summarize(tally, settings, 1.0)["identities"]
    assert checks[CODED] == {"lhs": 6, "rhs": 2 + 1 + 2 + 1, "holds": True}
    assert checks[ELIGIBILITY] == {"lhs": 5, "rhs": 5, "holds": True}
    assert all(check["holds"] for check in checks.values()), checks
    assert all_settled(tally, 6, settings)


def test_no_claim_built_has_no_clean_claim_rate(codec, settings):
    summary = summarize(Tally(), settings, 1.0)
    assert summary["clean_claim_rate"] is None
    assert (summary["claims_built"], summary["eligibility_by_status"], summary["scrub_findings_by_rule"]) == (0, {}, {})


def letter_from(samples, logical: str, stage: str) -> tuple[str, str, object]:
    return ("dead-letter", f"claims.{logical}:0:1", dataclasses.replace(
        samples[DeadLetter], source_topic=f"claims.{logical}", stage=stage))


@pytest.mark.parametrize(
    "extra, broken",
    [
        pytest.param(lambda s: [*clean(s, "G6"), ("eligibility-requests", "G6",
                                                                      s[EligibilityRequest])],
                     {CODED, ELIGIBILITY}, id="parked-waiting-for-its-answer"),
        pytest.param(lambda s: [*clean(s, "G6"), *asked(s, "G6")], {CODED},
                     id="answered-but-not-decided-yet"),
        pytest.param(lambda s: [("eligibility-responses", "G6", s[EligibilityResponse])], {ELIGIBILITY},
                     id="answer-without-a-request"),
        pytest.param(lambda s: [("front-desk", "G6", s[FrontDeskItem])], {CODED}, id="front-desk-without-coded"),
        pytest.param(lambda s: [("scrub-rejected", "C-G6", s[ScrubRejected])], {CODED},
                     id="scrub-rejected-without-coded"),
        pytest.param(lambda s: [*clean(s, "G6"), *asked(s, "G6", EligibilityStatus.INACTIVE),
                                ("front-desk", "G6", s[FrontDeskItem])], set(), id="balanced-held"),
        pytest.param(lambda s: [*clean(s, "G6"), *asked(s, "G6"),
                                ("scrub-rejected", "C-G6", s[ScrubRejected])], set(), id="balanced-rejected"),
        pytest.param(lambda s: [*clean(s, "G6"), letter_from(s, "coded", "claims")], set(),
                     id="balanced-coded-dead-lettered"),
        pytest.param(lambda s: [*clean(s, "G6"), *asked(s, "G6"),
                                letter_from(s, "eligibility-responses", "eligibility")], set(),
                     id="balanced-answer-dead-lettered-by-the-claim-stage"),
    ],
)
def test_an_unbalanced_gate_breaks_exactly_its_identity(samples, codec, settings, extra, broken):
    tally = tally_of(gate_run(samples) + extra(samples), codec)
    summary = summarize(tally, settings, 1.0)
    assert {name for name, check in summary["identities"].items() if not check["holds"]} == broken
    assert all_settled(tally, 0, settings) is (not broken)


def test_a_request_dead_lettered_by_the_payer_accounts_for_its_encounter(samples, codec, settings):
    extra = [*clean(samples, "G6"), ("eligibility-requests", "G6", samples[EligibilityRequest]),
             letter_from(samples, "eligibility-requests", "payer-eligibility")]
    summary = summarize(tally_of(gate_run(samples) + extra, codec), settings, 1.0)
    assert summary["identities"][ELIGIBILITY]["holds"]
    assert summary["identities"][CODED]["holds"]


# --- payer answers: repeats, balancing, reversals, first pass per payer ---------------------


def _remittance(samples, claim_id: str, remittance_id: str, **changes: object) -> tuple[str, str, object]:
    changes = {"claim_frequency_code": "1", **changes}
    return ("remittances", claim_id, dataclasses.replace(samples[Remittance], claim_id=claim_id,
                                                         remittance_id=remittance_id, **changes))


def test_a_remittance_delivered_twice_counts_once(samples, codec):
    tally = tally_of([_remittance(samples, "C1", "R1"), _remittance(samples, "C1", "R1")], codec)
    assert tally.repeated_remittances == 1
    assert tally.remittances_by_status == {"1": 1}
    assert tally.paid_amount == samples[Remittance].paid_amount


def test_an_unbalanced_remittance_breaks_its_identity(samples, codec, settings):
    off_by_a_cent = _remittance(samples, "C1", "R1", paid_amount=samples[Remittance].paid_amount + Decimal("0.01"))
    summary = summarize(tally_of([off_by_a_cent], codec), settings, 1.0)
    assert summary["remittances_unbalanced"] == 1
    assert not summary["identities"]["remittances_unbalanced = 0"]["holds"]


def test_a_void_answered_by_its_reversal_balances_the_claim_identity(samples, codec, settings):
    void = dataclasses.replace(samples[ClaimSubmitted], claim_id="C-VOID", frequency_code="8", original_claim_id="C1")
    original = samples[Remittance]
    reversal = ("remittances", "C1", dataclasses.replace(
        original, remittance_id="R-REV", claim_id="C1", claim_status_code="22", claim_frequency_code="8",
        billed_amount=-original.billed_amount, allowed_amount=-original.allowed_amount,
        paid_amount=-original.paid_amount, patient_responsibility=-original.patient_responsibility,
        adjustments=[dataclasses.replace(a, amount=-a.amount) for a in original.adjustments],
        lines=[dataclasses.replace(ln, billed_amount=-ln.billed_amount, allowed_amount=-ln.allowed_amount,
                                   paid_amount=-ln.paid_amount,
                                   adjustments=[dataclasses.replace(a, amount=-a.amount) for a in ln.adjustments])
               for ln in original.lines]))
    events = [("claims-submitted", "C1", dataclasses.replace(samples[ClaimSubmitted], claim_id="C1")),
              _remittance(samples, "C1", "R1"), ("claims-submitted", "C-VOID", void), reversal]
    summary = summarize(tally_of(events, codec), settings, 1.0)
    assert (summary["claims_submitted"], summary["voids_submitted"], summary["voids_reversed"],
            summary["reversals"], summary["remittances_unbalanced"]) == (2, 1, 1, 1, 0)
    assert summary["identities"]["claims_submitted - voids_reversed = remittances - reversals"]["holds"]
    assert summary["paid_amount"] == "0.00"  # the payment and its reversal


def test_first_pass_denials_per_payer_count_claims_with_any_denial(samples, codec, settings):
    paid = _remittance(samples, "C1", "R1", payer_id="MCR01", lines=samples[Remittance].lines[:1],
                       adjustments=[], billed_amount=Decimal("210.00"), paid_amount=Decimal("85.20"),
                       allowed_amount=Decimal("136.50"))
    partly = _remittance(samples, "C2", "R2", payer_id="MCR01")  # line 2 denied CO-97 after a CO-253
    replacement = _remittance(samples, "C3", "R3", payer_id="MCR01", claim_frequency_code="7")
    summary = summarize(tally_of([paid, partly, replacement], codec), settings, 1.0)
    # CO-253 (sequestration) is not in not_denials, so it decides before the line's CO-97.
    assert summary["first_pass_by_payer"] == {
        "MCR01": {"claims": 2, "denied": 1, "denial_rate": 0.5, "deciding_carcs": {"253": 1}}}


def test_later_visits_share_of_allowed_is_reported_per_payer_in_submission_order(samples, codec, settings):
    claim = samples[ClaimSubmitted]
    events = []
    for index, paid in enumerate(("0.00", "50.00", "100.00")):
        claim_id = f"C{index}"
        events.append(("claims-submitted", claim_id, dataclasses.replace(claim, claim_id=claim_id,
                                                                        member_id="M1", payer_id="MCR01")))
        events.append(_remittance(samples, claim_id, f"R{index}", payer_id="MCR01", allowed_amount=Decimal("100.00"),
                                  paid_amount=Decimal(paid)))
    summary = summarize(tally_of(events, codec), settings, 1.0)
    assert summary["payer_share_of_allowed_by_visit"] == {"MCR01": {"first": "0.000", "later": "0.750"}}


# --- denial work items: what billers resolved -------------------------------------------------


def test_the_summary_folds_the_work_items_with_the_billers_actions_and_the_replacements_answers(
        run_events, samples, codec, settings):
    """One work item, resubmitted, and the replacement paid: resolved, with what it paid."""
    item = samples[DenialWorkItem]
    denied_claim = item.claim_id
    replacement_id = f"{denied_claim}-R1"
    resubmit = dataclasses.replace(samples[DenialAction], action_id="DA-1", action=DenialActionType.RESUBMIT,
                                   claim_id=denied_claim, replacement_claim_id=replacement_id, amount=None,
                                   adjustment_reason=None)
    paid = dataclasses.replace(samples[Remittance], remittance_id="R-REPL", claim_id=replacement_id,
                               claim_frequency_code="7", outcome=RemittanceOutcome.PAID,
                               paid_amount=Decimal("120.00"))
    denial = ("denials.missing-information", denied_claim, item)
    tally = tally_of([*run_events, denial, ("denial-actions", denied_claim, resubmit),
                      ("remittances", replacement_id, paid)], codec)
    summary = summarize(tally, settings, 1.0)
    assert (summary["work_items_created"], summary["work_items_resolved"], summary["denials_resolved"]) == (1, 1, 1)
    assert summary["recovered_amount"] == "120.00" and summary["denial_actions"] == {"RESUBMIT": 1}
    assert summary["work_items_by_status"] == {"RESOLVED_PAID": 1}


def test_a_status_republished_by_a_write_off_is_not_a_posting(samples, codec, settings):
    status = dataclasses.replace(samples[ClaimStatus], claim_id="C-1", status=ClaimState.DENIED, remittances_posted=1)
    written_off = dataclasses.replace(status, written_off_amount=Decimal("298.00"), balance=Decimal("0.00"))
    summary = summarize(tally_of([("claim-status", "C-1", status), ("claim-status", "C-1", written_off)], codec),
                        settings, 1.0)
    assert summary["denied"] == 1


def test_recovered_is_what_a_replacement_pays_beyond_the_payment_its_reversal_took_back(samples, codec, settings):
    """A partly denied original paid 20.00; the payer reverses it and pays the replacement
    120.00: 100.00 recovered, as the billers' own fold (engine.denials.desk) says."""
    item = samples[DenialWorkItem]
    claim_id, replacement_id = item.claim_id, f"{item.claim_id}-R1"
    base = dataclasses.replace(samples[Remittance], claim_id=claim_id)
    partial = dataclasses.replace(base, remittance_id=item.remittance_id, claim_frequency_code="1",
                                  outcome=RemittanceOutcome.PARTIALLY_PAID, paid_amount=Decimal("20.00"))
    reversal = dataclasses.replace(base, remittance_id="R-REV", claim_status_code="22", claim_frequency_code="7",
                                   outcome=RemittanceOutcome.REVERSED, paid_amount=Decimal("-20.00"))
    paid = dataclasses.replace(base, remittance_id="R-REPL", claim_id=replacement_id, claim_frequency_code="7",
                               outcome=RemittanceOutcome.PAID, paid_amount=Decimal("120.00"))
    resubmit = dataclasses.replace(samples[DenialAction], action_id="DA-1", action=DenialActionType.RESUBMIT,
                                   claim_id=claim_id, replacement_claim_id=replacement_id, amount=None,
                                   adjustment_reason=None)
    events = [("remittances", claim_id, partial), ("denials.missing-information", claim_id, item),
              ("denial-actions", claim_id, resubmit), ("remittances", claim_id, reversal),
              ("remittances", replacement_id, paid)]
    assert summarize(tally_of(events, codec), settings, 1.0)["recovered_amount"] == "100.00"
