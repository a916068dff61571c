"""engine.runtime.stages.run_stage: decode, handle, and dead-letter without stopping."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.claims.eligibility import EligibilityCache
from engine.claims.stage import ClaimStageState, bill_coded, on_eligibility
from engine.coding.rules import code_encounter
from engine.model.events import (
    ClaimSubmitted,
    CodedEncounter,
    DeadLetter,
    EligibilityRequest,
    EligibilityResponse,
    Encounter,
    Remittance,
)
from engine.posting.ledger import post_remittance
from engine.posting.routing import is_routable
from engine.runtime.stages import DEAD_LETTER_TOPIC, Emit, ProcessingError, SourceMessage, dead_letter, run_stage
from simulators.coverage import Coverage
from simulators.payer.adjudication import Calibration, MemberState, PayerReference, adjudicate
from simulators.payer.app import answer_eligibility, member_key

FAILED_AT = datetime(2026, 3, 2, 16, 0, 0, 7_000, tzinfo=UTC)


def clock():
    return FAILED_AT


def msg(value: bytes | None, offset: int, key: bytes | None = b"k", topic: str = "claims.encounters",
        partition: int = 4) -> SourceMessage:
    return SourceMessage(topic, partition, offset, key, value)


def echo_handler(enc: Encounter, message: SourceMessage):
    yield Emit("first", enc.encounter_id, ("a", message.offset))
    yield Emit("second", enc.encounter_id, ("b", message.offset))


def encounter_bytes(codec, make_encounter, n: int) -> list[bytes]:
    return [codec.encode(make_encounter(encounter_id=f"ENC-{i}")) for i in range(n)]


def test_emits_keep_source_then_handler_order(codec, make_encounter):
    values = encounter_bytes(codec, make_encounter, 4)
    result = run_stage("t", [msg(v, 10 + i) for i, v in enumerate(values)], codec, Encounter, echo_handler)
    assert [(e.topic, e.key, e.event) for e in result.emits] == [
        (topic, f"ENC-{i}", (tag, 10 + i)) for i in range(4) for topic, tag in (("first", "a"), ("second", "b"))]
    assert result.dead_letters == []


def assert_dead_letter(emit: Emit, message: SourceMessage, stage: str, error_type: str) -> DeadLetter:
    assert emit.topic == DEAD_LETTER_TOPIC
    assert emit.key == f"{message.topic}:{message.partition}:{message.offset}"
    letter = emit.event
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.error_type, letter.source_topic, letter.source_partition, letter.source_offset,
            letter.source_key, letter.original_value, letter.failed_at) == (
        stage, error_type, message.topic, message.partition, message.offset, message.key,
        message.value if message.value is not None else b"", FAILED_AT)
    assert letter.reason
    return letter


def test_undecodable_processing_error_and_bug_become_dead_letters(codec, make_encounter, caplog):
    good = encounter_bytes(codec, make_encounter, 4)

    def handler(enc: Encounter, message: SourceMessage):
        if enc.encounter_id == "ENC-1":
            raise ProcessingError("no charge for 99499")
        if enc.encounter_id == "ENC-2":
            raise KeyError("surprise")
        return [Emit("out", enc.encounter_id, message.offset)]

    messages = [
        msg(good[0], 0),
        msg(b"HL7|not-avro|", 1, key=None),
        msg(good[1], 2),
        msg(good[2], 3),
        msg(good[3][:20], 4),
        msg(good[3], 5),
    ]
    with caplog.at_level(logging.WARNING, logger="engine.runtime.stages"):
        result = run_stage("coding", messages, codec, Encounter, handler, now=clock)
    assert [e.topic for e in result.emits] == ["out", DEAD_LETTER_TOPIC, DEAD_LETTER_TOPIC, DEAD_LETTER_TOPIC,
                                               DEAD_LETTER_TOPIC, "out"]
    assert [e.event for e in result.emits if e.topic == "out"] == [0, 5]
    undecodable = assert_dead_letter(result.emits[1], messages[1], "coding", "UndecodableEvent")
    assert "magic byte" in undecodable.reason
    processing = assert_dead_letter(result.emits[2], messages[2], "coding", "ProcessingError")
    assert processing.reason == "no charge for 99499"
    bug = assert_dead_letter(result.emits[3], messages[3], "coding", "KeyError")
    assert "surprise" in bug.reason
    assert_dead_letter(result.emits[4], messages[4], "coding", "UndecodableEvent")
    assert len(result.dead_letters) == 4
    # Dead letters are themselves valid events.
    for letter in result.dead_letters:
        assert codec.decode(codec.encode(letter), DeadLetter) == letter
    # Logs name offsets, never the event's content (PHI).
    assert "Ana" not in caplog.text and "Chen" not in caplog.text


def test_a_failing_generator_leaves_no_partial_emits(codec, make_encounter):
    values = encounter_bytes(codec, make_encounter, 2)

    def handler(enc: Encounter, message: SourceMessage):
        yield Emit("out", enc.encounter_id, "partial")
        if enc.encounter_id == "ENC-0":
            raise ProcessingError("half way")

    result = run_stage("t", [msg(values[0], 0), msg(values[1], 1)], codec, Encounter, handler, now=clock)
    assert [(e.topic, e.event if e.topic == "out" else None) for e in result.emits] == [
        (DEAD_LETTER_TOPIC, None), ("out", "partial")]


def test_none_value_and_wrong_schema_are_dead_lettered(codec, make_encounter, samples):
    messages = [msg(None, 0), msg(codec.encode(samples[Remittance]), 1)]
    result = run_stage("coding", messages, codec, Encounter, echo_handler, now=clock)
    letters = result.dead_letters
    assert [d.error_type for d in letters] == ["UndecodableEvent", "UndecodableEvent"]
    assert letters[0].original_value == b""
    assert "expected" in letters[1].reason


def test_reason_is_capped(make_message):
    letter = dead_letter("s", make_message(b"x"), ValueError("x" * 5000), FAILED_AT).event
    assert len(letter.reason) == 1000


def test_keyboard_interrupt_is_not_swallowed(codec, make_encounter):
    def handler(enc, message):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("t", [msg(encounter_bytes(codec, make_encounter, 1)[0], 0)], codec, Encounter, handler)


def test_default_clock_is_aware_utc(codec):
    (letter,) = run_stage("t", [msg(b"", 0)], codec, Encounter, echo_handler).dead_letters
    assert letter.failed_at.tzinfo is not None
    assert letter.failed_at.utcoffset().total_seconds() == 0


def test_stages_chain_end_to_end(codec, make_encounter, claim_ctx, routing, book, coding_ref, now):
    """Encounter bytes → coded → eligibility request → payer's answer → claim → remittance →
    status/statement/work item, each hop through the codec. Every 40th member's coverage lapsed."""
    billing, rendering = claim_ctx.providers.billing.npi, sorted(claim_ctx.providers.rendering)
    encounters = [make_encounter(encounter_id=f"ENC-E2E-{i}", payer_id=payer, member_id=f"{payer}{i:09d}",
                                 billing_npi=billing, rendering_npi=rendering[i % len(rendering)])
                  for i, payer in enumerate(sorted(book.payers) * 40)]
    members = {e.member_id: Coverage(e.member_id, e.payer_id, f"{e.payer_id}-GOLD", "18", None, date(2020, 1, 1),
                                     date(2025, 12, 31) if i % 40 == 0 else None) for i, e in enumerate(encounters)}
    lapsed = sum(c.end is not None for c in members.values())
    coded = run_stage("coding", [msg(codec.encode(e), i) for i, e in enumerate(encounters)], codec, Encounter,
                      lambda enc, m: code_encounter(enc, m.value or b"", coding_ref, now))
    assert [e.topic for e in coded.emits] == ["coded"] * len(encounters)
    coded_msgs = [msg(codec.encode(e.event), i, topic="claims.coded") for i, e in enumerate(coded.emits)]
    coded_msgs.append(coded_msgs[0])  # a redelivery
    state = ClaimStageState({}, EligibilityCache({}, codec, timedelta(hours=24)))
    asked = run_stage("claims", coded_msgs, codec, CodedEncounter,
                      lambda c, m: bill_coded(c, m, state, claim_ctx, now))
    assert [e.topic for e in asked.emits] == ["eligibility-requests"] * len(encounters) + ["duplicates"]
    request_msgs = [msg(codec.encode(e.event), i, topic="claims.eligibility-requests")
                    for i, e in enumerate(asked.emits[:-1])]
    answered = run_stage("payer-eligibility", request_msgs, codec, EligibilityRequest,
                         lambda r, m: [Emit("eligibility-responses", r.encounter_id,
                                            answer_eligibility(r, members, book, now))])
    answer_msgs = [msg(codec.encode(e.event), i, topic="claims.eligibility-responses")
                   for i, e in enumerate(answered.emits)]
    claims = run_stage("eligibility", answer_msgs, codec, EligibilityResponse,
                       lambda a, m: on_eligibility(a, state, claim_ctx, now))
    assert claims.dead_letters == []
    topics = [e.topic for e in claims.emits]
    assert topics.count("front-desk") == lapsed > 0
    assert topics.count("claims-submitted") == topics.count("claim-status") == len(encounters) - lapsed
    assert dict(state.awaiting) == {}
    claim_msgs = [msg(codec.encode(e.event), i, topic="claims.claims-submitted")
                  for i, e in enumerate(claims.emits) if e.topic == "claims-submitted"]
    # The payer: each member's state, one calibration per payer, remittances at once (time scale 0).
    reference = PayerReference(book, members, {}, claim_ctx.fees.charges, 3)
    states: dict[str, MemberState] = {}
    calibration: dict[str, Calibration] = {}

    def pay(claim: ClaimSubmitted, message: SourceMessage) -> list[Emit]:
        result = adjudicate(claim, states.setdefault(member_key(claim), MemberState()), reference,
                            calibration.setdefault(claim.payer_id, Calibration()), codec, now)
        return [Emit("remittances", r.claim_id, r) for r in result.remittances]

    remits = run_stage("payer", claim_msgs, codec, ClaimSubmitted, pay)
    assert [e.topic for e in remits.emits] == ["remittances"] * len(claim_msgs)
    assert [e.key for e in remits.emits] == [e.event.claim_id for e in claims.emits if e.topic == "claims-submitted"]
    remit_msgs = [msg(codec.encode(e.event), i, topic="claims.remittances") for i, e in enumerate(remits.emits)]
    ledgers: dict[str, str] = {}
    posted = run_stage("posting", remit_msgs, codec, Remittance,
                       lambda r, m: post_remittance(r, ledgers, routing, 30, now))
    assert posted.dead_letters == []
    denied = sum(is_routable(e.event, routing) for e in remits.emits)  # denied in full or in part
    assert denied > 0
    assert sum(e.topic.startswith("denials.") for e in posted.emits) == denied
    assert sum(e.topic == "claim-status" for e in posted.emits) == len(claim_msgs) == len(ledgers)
    owing = sum(e.event.patient_responsibility != 0 for e in remits.emits)
    assert sum(e.topic == "statements" for e in posted.emits) == owing > 0
