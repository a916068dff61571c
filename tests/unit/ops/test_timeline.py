"""engine.ops.timeline: a claim's story from the events — its whole family of versions, in
time order, nothing of another encounter, and no PHI in any line."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from engine.model.events import (
    ClaimSubmitted,
    CodedEncounter,
    CodingReviewItem,
    DenialWorkItem,
    Encounter,
    PatientStatement,
    Remittance,
    RemittanceOutcome,
)
from engine.ops.timeline import ClaimEvents, claim_family, claim_timeline
from tests.unit.conftest import sample_events


def _story() -> tuple[ClaimEvents, ClaimSubmitted, ClaimSubmitted]:
    """An encounter coded after review, claimed, denied, corrected and paid; plus another
    encounter's claim that must stay out."""
    ev = sample_events()
    enc: Encounter = ev[Encounter]
    t0 = enc.occurred_at
    coded = replace(ev[CodedEncounter], encounter_id=enc.encounter_id, coded_at=t0 + timedelta(minutes=5))
    review = replace(ev[CodingReviewItem], encounter_id=enc.encounter_id, created_at=t0 + timedelta(minutes=1))
    original = replace(ev[ClaimSubmitted], claim_id="CLM-ORIG", encounter_id=enc.encounter_id, frequency_code="1",
                       original_claim_id=None, submitted_at=t0 + timedelta(minutes=6))
    replacement = replace(original, claim_id="CLM-REPL", frequency_code="7", original_claim_id="CLM-ORIG",
                          submitted_at=t0 + timedelta(days=20))
    other = replace(original, claim_id="CLM-OTHER", encounter_id="ENC-SOMEONE-ELSE")
    remit: Remittance = ev[Remittance]
    denied = replace(remit, remittance_id="R-DENIED", claim_id="CLM-ORIG", outcome=RemittanceOutcome.DENIED,
                     claim_status_code="4", adjudicated_at=t0 + timedelta(days=15))
    paid = replace(remit, remittance_id="R-PAID", claim_id="CLM-REPL", adjudicated_at=t0 + timedelta(days=35))
    not_ours = replace(remit, remittance_id="R-OTHER", claim_id="CLM-OTHER")
    item = replace(ev[DenialWorkItem], work_item_id="DN-1", claim_id="CLM-ORIG",
                   created_at=t0 + timedelta(days=15, seconds=1))
    statement = replace(ev[PatientStatement], statement_id="ST-1", claim_id="CLM-REPL",
                        created_at=t0 + timedelta(days=35, seconds=1))
    events = ClaimEvents(encounters=[enc], coded=[coded], coding_review=[review],
                         claims=[other, replacement, original], remittances=[not_ours, paid, denied],
                         statements=[statement], denials=[item])
    return events, original, replacement


def test_the_family_is_every_version_of_the_encounters_claim_in_submission_order() -> None:
    events, original, replacement = _story()
    for claim_id in ("CLM-ORIG", "CLM-REPL"):
        assert [c.claim_id for c in claim_family(claim_id, events.claims)] == ["CLM-ORIG", "CLM-REPL"]


def test_the_timeline_tells_the_story_in_time_order_from_either_version() -> None:
    events, _, _ = _story()
    timeline = claim_timeline("CLM-REPL", events)
    assert [e.stage for e in timeline] == ["encounter", "coding", "coding", "claim", "payer", "denials", "claim",
                                           "payer", "billing"]
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    text = "\n".join(e.what for e in timeline)
    for expected in ("CLM-ORIG submitted (original)", "CLM-REPL submitted (replacement of CLM-ORIG)", "R-DENIED",
                     "R-PAID", "DN-1", "ST-1"):
        assert expected in text
    assert "CLM-OTHER" not in text and "R-OTHER" not in text
    assert claim_timeline("CLM-ORIG", events) == timeline


def test_no_line_carries_phi() -> None:
    events, original, _ = _story()
    enc = events.encounters[0]
    text = "\n".join(e.what for e in claim_timeline("CLM-ORIG", events))
    for phi in (enc.patient.first_name, enc.patient.last_name, enc.member_id, original.member_id,
                enc.patient.birth_date.isoformat(), enc.clinical_note):
        assert phi and phi not in text


def test_an_unknown_claim_has_no_timeline() -> None:
    events, _, _ = _story()
    assert claim_timeline("CLM-NOPE", events) == []
