"""engine.ops.audit and the Tally's distinct counting: a redelivered output (same source
header) counts once and is reported as a redelivery; an encounter with no outcome is a
gap; a claim, posting, work item or statement twice is a duplicate."""

from __future__ import annotations

import dataclasses

from engine.model.events import ClaimSubmitted, DenialWorkItem, Encounter, PatientStatement
from engine.ops.audit import audit
from engine.ops.reconciliation import Tally, summarize
from engine.runtime.stages import SOURCE_HEADER
from tests.unit.ops.test_reconciliation import claim_flow, tally_of

NOW_MS = 10_000_000


def with_encounters(tally: Tally, codec, samples, ids: list[str], at_ms: int = NOW_MS) -> None:
    for encounter_id in ids:
        tally.add("encounters", encounter_id.encode(),
                  codec.encode(dataclasses.replace(samples[Encounter], encounter_id=encounter_id)), codec, at_ms)


def test_a_settled_flow_audits_clean(codec, samples, settings) -> None:
    tally = tally_of(claim_flow(samples, ["ENC-1", "ENC-2"]), codec)
    with_encounters(tally, codec, samples, ["ENC-1", "ENC-2"])
    result = audit(tally, settings, NOW_MS, grace_s=0)
    assert (result.encounters, result.lost, result.duplicates) == (2, [], 0)


def test_an_output_delivered_again_from_the_same_source_counts_once(codec, samples, settings) -> None:
    claim = dataclasses.replace(samples[ClaimSubmitted], claim_id="C1", encounter_id="ENC-1")
    header = [(SOURCE_HEADER, b"claims.coded:3:17:0")]
    tally = Tally()
    for _ in range(3):  # the batch processed again after two crashes
        tally.add("claims-submitted", b"C1", codec.encode(claim), codec, NOW_MS, header)
    summary = summarize(tally, settings, 1.0)
    assert summary["claims_submitted"] == 1 and summary["repeated_claim_ids"] == 0
    assert summary["redelivered"] == 2 and summary["redelivered_by_topic"] == {"claims-submitted": 2}
    assert audit(tally, settings, NOW_MS).original_claims_twice == []


def test_an_original_claim_from_two_sources_is_a_duplicate(codec, samples, settings) -> None:
    claim = dataclasses.replace(samples[ClaimSubmitted], claim_id="C1", encounter_id="ENC-1")
    tally = Tally()
    for offset in (17, 18):
        tally.add("claims-submitted", b"C1", codec.encode(claim), codec, NOW_MS,
                  [(SOURCE_HEADER, f"claims.coded:3:{offset}:0".encode())])
    other = dataclasses.replace(claim, claim_id="C2")
    tally.add("claims-submitted", b"C2", codec.encode(other), codec, NOW_MS)
    result = audit(tally, settings, NOW_MS)
    assert result.original_claims_twice == ["C1"] and result.encounters_billed_twice == ["ENC-1"]
    assert result.report()["original_claims_twice_sources"] == {"C1": ["claims.coded:3:17:0", "claims.coded:3:18:0"]}
    assert not result.ok


def test_an_encounter_with_no_outcome_is_in_flight_then_lost(codec, samples, settings) -> None:
    tally = tally_of(claim_flow(samples, ["ENC-1"]), codec)
    with_encounters(tally, codec, samples, ["ENC-1", "ENC-GONE"], at_ms=NOW_MS - 60_000)
    assert audit(tally, settings, NOW_MS, grace_s=300).in_flight == ["ENC-GONE"]
    late = audit(tally, settings, NOW_MS, grace_s=30)
    assert late.lost == ["ENC-GONE"] and late.in_flight == [] and not late.ok


def test_a_duplicate_dropped_does_not_end_a_lost_original(codec, samples, settings) -> None:
    """A resend dropped as a duplicate of a claim that never left is no outcome for the encounter."""
    from engine.model.events import DuplicateDropped

    tally = Tally()
    with_encounters(tally, codec, samples, ["ENC-1", "ENC-1"], at_ms=0)
    tally.add("duplicates", b"ENC-1", codec.encode(DuplicateDropped(
        claim_id="C1", encounter_id="ENC-1", source_topic="claims.coded", source_partition=0, source_offset=2,
        dropped_at=samples[ClaimSubmitted].submitted_at)), codec)
    result = audit(tally, settings, NOW_MS, grace_s=0)
    assert result.lost == ["ENC-1"] and result.resent == 1


def test_a_work_item_or_statement_twice_is_a_duplicate(codec, samples, settings) -> None:
    tally = tally_of(claim_flow(samples, ["ENC-1"]), codec)
    tally.add("denials.missing-information", b"C0", codec.encode(samples[DenialWorkItem]), codec)
    statement = dataclasses.replace(samples[PatientStatement], remittance_id="R0", statement_id="S0")
    tally.add("statements", b"C0", codec.encode(statement), codec)
    result = audit(tally, settings, NOW_MS, grace_s=0)
    assert result.work_items_twice == [samples[DenialWorkItem].work_item_id]
    assert result.statements_twice == ["S0"]
