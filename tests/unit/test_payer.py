"""simulators.payer: adjudication is balanced, deterministic and true to the payer profiles.

Property tests as plain loops over seeded claims (no hypothesis dependency).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

from engine.claims import build_claim, claim_id_for
from engine.coding import code_encounter
from engine.events import (
    Address,
    ClaimLine,
    ClaimSubmitted,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
    Encounter,
    GroupCode,
    Remittance,
    RemittanceOutcome,
    Subscriber,
)
from engine.pipeline import ProcessingError, SourceMessage
from simulators.ehr import Kind, plan_encounters
from simulators.coverage import Coverage
from simulators.payer import PayerBook, PayerProfile, adjudicate, adjudicate_claim, answer_eligibility

SEED = 11
N_PLANNED = 3200
TODAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
ZERO = Decimal("0.00")
CENTS = Decimal("0.01")


@pytest.fixture(scope="module")
def planned_claims(codec, book, claim_ctx, coding_ref) -> list[ClaimSubmitted]:
    """Claims built the way the pipeline builds them: EHR plan → coding → claim."""
    records = plan_encounters(N_PLANNED, seed=SEED, bad_rate=0.0, resend_rate=0.0, codec=codec, book=book,
                              today=TODAY)
    claims = []
    for record in records:
        assert record.kind == Kind.GOOD
        enc = codec.decode(record.value, Encounter)
        (emit,) = code_encounter(enc, record.value, coding_ref, NOW)  # audit_rate 0: one emit
        assert emit.topic == "coded"
        claims.append(build_claim(emit.event, claim_ctx, NOW))
    return claims


@pytest.fixture(scope="module")
def random_claims(book, fees) -> list[ClaimSubmitted]:
    """Synthesised claims: 1–12 random lines of random fee-schedule codes and units, any payer."""
    rng = random.Random("unit-test-random-claims")
    codes = sorted(fees.charges)
    claims = []
    for index in range(1500):
        n_lines = rng.randint(1, 12)
        lines = []
        for number in range(1, n_lines + 1):
            code = rng.choice(codes)
            units = rng.randint(1, 6)
            lines.append(ClaimLine(number, code, [], units, fees.charge(code, units), [1], date(2026, 2, 1)))
        claim_id = claim_id_for(f"RANDOM-{index}")
        claims.append(ClaimSubmitted(
            claim_id=claim_id, encounter_id=f"RANDOM-{index}", encounter_occurred_at=NOW,
            patient_control_number=claim_id, frequency_code="1", original_claim_id=None,
            payer_id=rng.choice(sorted(book.payers)), member_id="M1", patient_id="MRN1", billing_npi="1912301953",
            rendering_npi="1234567893", date_of_service=date(2026, 2, 1), place_of_service="11", diagnoses=["I10"],
            lines=lines, total_charge=sum((ln.charge for ln in lines), ZERO), submitted_at=NOW,
        ))
    return claims


def for_payer(claim: ClaimSubmitted, payer_id: str) -> ClaimSubmitted:
    return dataclasses.replace(claim, payer_id=payer_id)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


def total(values) -> Decimal:
    return sum(values, ZERO)


def check_remittance(claim: ClaimSubmitted, remit: Remittance, profile: PayerProfile) -> None:
    """Every invariant of one remittance, derived from the 835 rules and the profile."""
    assert remit.claim_id == claim.claim_id and remit.encounter_id == claim.encounter_id
    assert remit.payer_id == claim.payer_id and remit.patient_control_number == claim.patient_control_number
    assert remit.date_of_service == claim.date_of_service
    assert remit.payment_date == claim.submitted_at.date() + timedelta(days=profile.payment_lag_days)
    assert remit.billed_amount == claim.total_charge
    assert [(ln.line_number, ln.procedure_code, ln.billed_amount) for ln in remit.lines] == [
        (ln.line_number, ln.procedure_code, ln.charge) for ln in claim.lines]

    for rl in remit.lines:
        adjustments = total(a.amount for a in rl.adjustments)
        assert rl.billed_amount - adjustments == rl.paid_amount
        assert rl.paid_amount >= ZERO
        assert ZERO <= rl.allowed_amount <= rl.billed_amount
        assert all(a.amount > ZERO for a in rl.adjustments)
        assert all(a.amount == a.amount.quantize(CENTS) for a in rl.adjustments)
        if rl.allowed_amount > ZERO:  # a paid line: contract, copay, coinsurance
            expected_allowed = min(rl.billed_amount, money(rl.billed_amount * profile.fee_factor))
            assert rl.allowed_amount == expected_allowed
            co45 = total(a.amount for a in rl.adjustments if (a.group_code, a.carc) == (GroupCode.CO, "45"))
            assert co45 == rl.billed_amount - rl.allowed_amount
            copay = total(a.amount for a in rl.adjustments if (a.group_code, a.carc) == (GroupCode.PR, "3"))
            coins = total(a.amount for a in rl.adjustments if (a.group_code, a.carc) == (GroupCode.PR, "2"))
            assert coins == money((rl.allowed_amount - copay) * profile.coinsurance)
            assert {(a.group_code, a.carc) for a in rl.adjustments} <= {
                (GroupCode.CO, "45"), (GroupCode.PR, "3"), (GroupCode.PR, "2")}
        else:  # a denied line: one CAS for the whole charge
            assert rl.paid_amount == ZERO
            (only,) = rl.adjustments
            assert only.amount == rl.billed_amount

    all_adjustments = remit.all_adjustments()
    assert remit.billed_amount - total(a.amount for a in all_adjustments) == remit.paid_amount
    assert remit.patient_responsibility == total(a.amount for a in all_adjustments if a.group_code == GroupCode.PR)
    assert remit.paid_amount == total(ln.paid_amount for ln in remit.lines)
    assert remit.allowed_amount == total(ln.allowed_amount for ln in remit.lines)
    assert remit.paid_amount >= ZERO
    assert remit.allowed_amount <= remit.billed_amount
    copay_total = total(a.amount for a in all_adjustments if (a.group_code, a.carc) == (GroupCode.PR, "3"))
    assert copay_total == min(profile.copay, remit.allowed_amount)  # copay is taken once per claim

    fully_denied = remit.paid_amount == ZERO and all(ln.allowed_amount == ZERO for ln in remit.lines)
    assert (remit.outcome == RemittanceOutcome.DENIED) == fully_denied
    assert (remit.claim_status_code == "4") == fully_denied
    some_denied = any(ln.allowed_amount == ZERO for ln in remit.lines)
    if not fully_denied:
        assert remit.outcome == (RemittanceOutcome.PARTIALLY_PAID if some_denied else RemittanceOutcome.PAID)
        assert remit.claim_status_code == "1"
        assert remit.lines[0].allowed_amount > ZERO  # a partial denial never hits the first (E/M) line
        assert sum(ln.allowed_amount == ZERO for ln in remit.lines) <= 1


def test_enough_claims(planned_claims, random_claims):
    assert len(planned_claims) == N_PLANNED
    assert len(planned_claims) + len(random_claims) >= 3000
    assert len({c.payer_id for c in planned_claims}) == 5


def test_every_remittance_balances_and_follows_its_profile(planned_claims, random_claims, book, codec):
    outcomes: Counter[RemittanceOutcome] = Counter()
    for claim in [*planned_claims, *random_claims]:
        remit = adjudicate(claim, book, SEED, NOW)
        check_remittance(claim, remit, book.payers[claim.payer_id])
        outcomes[remit.outcome] += 1
    assert set(outcomes) == set(RemittanceOutcome)  # every branch was exercised


def test_remittances_round_trip_through_the_codec(planned_claims, book, codec):
    for claim in planned_claims[:500]:
        remit = adjudicate(claim, book, SEED, NOW)
        assert codec.decode(codec.encode(remit), Remittance) == remit


def test_same_seed_same_remittances_in_any_order(planned_claims, book):
    first = [adjudicate(c, book, SEED, NOW) for c in planned_claims]
    backwards = [adjudicate(c, book, SEED, NOW) for c in reversed(planned_claims)]
    assert first == backwards[::-1]


def test_different_seed_changes_outcomes_somewhere(planned_claims, book):
    a = [adjudicate(c, book, SEED, NOW).outcome for c in planned_claims]
    b = [adjudicate(c, book, SEED + 1, NOW).outcome for c in planned_claims]
    differing = sum(x != y for x, y in zip(a, b))
    assert differing > len(planned_claims) // 50


@pytest.fixture(scope="module")
def per_profile(planned_claims, book) -> dict[str, list[tuple[ClaimSubmitted, Remittance]]]:
    """Every planned claim adjudicated by every payer (≥ 3000 claims per profile)."""
    return {
        payer_id: [(c, adjudicate(c, book, SEED, NOW)) for c in (for_payer(c, payer_id) for c in planned_claims)]
        for payer_id in book.payers
    }


def test_each_profile_balances(per_profile, book):
    for payer_id, pairs in per_profile.items():
        for claim, remit in pairs:
            check_remittance(claim, remit, book.payers[payer_id])


def test_denial_rate_matches_each_profile(per_profile, book):
    for payer_id, pairs in per_profile.items():
        assert len(pairs) >= 2000
        denied = sum(r.outcome == RemittanceOutcome.DENIED for _, r in pairs)
        rate = denied / len(pairs)
        expected = book.payers[payer_id].first_pass_denial_rate
        assert abs(rate - expected) <= 0.04, f"{payer_id}: {rate:.3f} vs {expected}"


def test_partial_denial_rate_matches_each_profile(per_profile, book):
    for payer_id, pairs in per_profile.items():
        eligible = [r for c, r in pairs if len(c.lines) > 1 and r.outcome != RemittanceOutcome.DENIED]
        assert len(eligible) >= 1000
        partial = sum(r.outcome == RemittanceOutcome.PARTIALLY_PAID for r in eligible) / len(eligible)
        expected = book.payers[payer_id].partial_denial_rate
        assert abs(partial - expected) <= 0.03, f"{payer_id}: {partial:.3f} vs {expected}"
    single_line = [r for pairs in per_profile.values() for c, r in pairs if len(c.lines) == 1]
    assert single_line and all(r.outcome != RemittanceOutcome.PARTIALLY_PAID for r in single_line)


def test_denials_use_the_denial_mixes(per_profile, book):
    full = {(r.carc, r.group_code, r.rarc) for r in book.denial_mix}
    partial = {(r.carc, r.group_code) for r in book.partial_denial_mix}
    seen_full, seen_partial = set(), set()
    for pairs in per_profile.values():
        for _, remit in pairs:
            if remit.outcome == RemittanceOutcome.DENIED:
                reasons = {(a.carc, a.group_code) for ln in remit.lines for a in ln.adjustments}
                assert len(reasons) == 1
                ((carc, group),) = reasons
                rarc = remit.rarcs[0] if remit.rarcs else None
                assert (carc, group, rarc) in full
                assert all(ln.rarcs == remit.rarcs for ln in remit.lines)
                seen_full.add((carc, group, rarc))
            elif remit.outcome == RemittanceOutcome.PARTIALLY_PAID:
                (denied,) = [ln for ln in remit.lines if ln.allowed_amount == ZERO]
                (a,) = denied.adjustments
                assert (a.carc, a.group_code) in partial
                seen_partial.add((a.carc, a.group_code))
    assert seen_full == full
    assert seen_partial == partial


def test_profiles_have_different_fee_factors(planned_claims, book):
    factors = {p.payer_id: p.fee_factor for p in book.payers.values()}
    assert len(set(factors.values())) == len(factors)
    low, high = min(factors, key=factors.get), max(factors, key=factors.get)
    compared = 0
    for claim in planned_claims:
        a = adjudicate(for_payer(claim, low), book, SEED, NOW)
        b = adjudicate(for_payer(claim, high), book, SEED, NOW)
        if a.outcome == b.outcome == RemittanceOutcome.PAID:
            assert a.allowed_amount < b.allowed_amount
            for la, lb, cl in zip(a.lines, b.lines, claim.lines, strict=True):
                assert la.allowed_amount == min(cl.charge, money(cl.charge * factors[low]))
                assert lb.allowed_amount == min(cl.charge, money(cl.charge * factors[high]))
            compared += 1
    assert compared > 100


def test_unknown_payer_is_a_processing_error(planned_claims, book):
    with pytest.raises(ProcessingError, match="NOPE9"):
        adjudicate(for_payer(planned_claims[0], "NOPE9"), book, SEED, NOW)


def test_adjudicate_claim_emits_one_remittance_keyed_by_claim(planned_claims, book):
    claim = planned_claims[0]
    (emit,) = list(adjudicate_claim(claim, SourceMessage("claims.claims-submitted", 0, 0, None, b""), book, SEED,
                                    NOW))
    assert (emit.topic, emit.key) == ("remittances", claim.claim_id)
    assert emit.event == adjudicate(claim, book, SEED, NOW)
    assert emit.event.adjudicated_at == NOW


def test_payer_book_loads_the_profiles_file(book: PayerBook, settings):
    import yaml

    doc = yaml.safe_load(settings.payer_profiles_file.read_text())
    assert list(book.payers) == [str(p["payer_id"]) for p in doc["payers"]]
    for p in doc["payers"]:
        profile = book.payers[p["payer_id"]]
        assert profile.fee_factor == Decimal(str(p["fee_factor"]))
        assert isinstance(profile.copay, Decimal) and isinstance(profile.coinsurance, Decimal)
        assert profile.first_pass_denial_rate == p["first_pass_denial_rate"]
        assert profile.deductible == Decimal(str(p["deductible"])) and profile.deductible >= ZERO
    assert book.payers["MCR01"].deductible == Decimal("283.00")  # Medicare Part B 2026
    assert len(book.denial_mix) == len(doc["denial_mix"])


# --- eligibility (270 → 271) ----------------------------------------------------------

DOS = date(2026, 2, 27)


@pytest.fixture
def members() -> dict[str, Coverage]:
    spouse = Subscriber("01", "Wei", "Chen", date(1956, 1, 30), "M")
    return {
        "PPO000000001": Coverage("PPO000000001", "PPO01", "PPO01-GOLD", "18", None, date(2021, 1, 1), None),
        "PPO000000002": Coverage("PPO000000002", "PPO01", "PPO01-SILVER", "01", spouse, date(2019, 5, 1),
                                 date(2025, 11, 30)),
        "PPO000000003": Coverage("PPO000000003", "PPO01", "PPO01-BRONZE", "18", None, date(2026, 4, 1), None),
        "MCR000000004": Coverage("MCR000000004", "MCR01", "MCR01-GOLD", "18", None, date(2011, 7, 1),
                                 date(2026, 12, 31)),
    }


def request_for(member_id: str, payer_id: str = "PPO01", day: date = DOS) -> EligibilityRequest:
    return EligibilityRequest(f"ER-{member_id}", f"ENC-{member_id}", payer_id, member_id, "Chen", date(1958, 7, 14),
                              day, NOW)


def test_an_active_member_gets_plan_copay_and_deductible(members, book):
    answer = answer_eligibility(request_for("PPO000000001"), members, book, NOW)
    assert answer == EligibilityResponse(
        request_id="ER-PPO000000001", encounter_id="ENC-PPO000000001", payer_id="PPO01", member_id="PPO000000001",
        date_of_service=DOS, status=EligibilityStatus.ACTIVE, plan_id="PPO01-GOLD", coverage_start=date(2021, 1, 1),
        coverage_end=None, copay=book.payers["PPO01"].copay, deductible_remaining=book.payers["PPO01"].deductible,
        reason=None, responded_at=NOW,
    )
    assert (answer.copay, answer.deductible_remaining) == (Decimal("30.00"), Decimal("1500.00"))
    medicare = answer_eligibility(request_for("MCR000000004", "MCR01"), members, book, NOW)
    assert (medicare.status, medicare.coverage_end, medicare.copay, medicare.deductible_remaining) == (
        EligibilityStatus.ACTIVE, date(2026, 12, 31), Decimal("0.00"), Decimal("283.00"))
    # The last day of coverage is covered.
    assert answer_eligibility(request_for("MCR000000004", "MCR01", date(2026, 12, 31)), members, book,
                              NOW).status == EligibilityStatus.ACTIVE


def test_a_lapsed_member_is_inactive_with_the_end_date(members, book):
    answer = answer_eligibility(request_for("PPO000000002"), members, book, NOW)
    assert answer.status == EligibilityStatus.INACTIVE
    assert answer.reason == "coverage ended 2025-11-30"
    assert (answer.plan_id, answer.coverage_start, answer.coverage_end) == (
        "PPO01-SILVER", date(2019, 5, 1), date(2025, 11, 30))
    assert answer.copay is None and answer.deductible_remaining is None
    after_the_end = answer_eligibility(request_for("MCR000000004", "MCR01", date(2027, 1, 1)), members, book, NOW)
    assert (after_the_end.status, after_the_end.reason) == (EligibilityStatus.INACTIVE, "coverage ended 2026-12-31")


def test_a_visit_before_coverage_starts_is_inactive_with_the_start_date(members, book):
    answer = answer_eligibility(request_for("PPO000000003"), members, book, NOW)
    assert (answer.status, answer.reason) == (EligibilityStatus.INACTIVE, "coverage starts 2026-04-01")
    assert (answer.coverage_start, answer.coverage_end, answer.copay) == (date(2026, 4, 1), None, None)
    # Before the start of a coverage that has since ended: still the start is the reason.
    early = answer_eligibility(request_for("PPO000000002", day=date(2019, 4, 30)), members, book, NOW)
    assert (early.status, early.reason) == (EligibilityStatus.INACTIVE, "coverage starts 2019-05-01")


@pytest.mark.parametrize("member_id, payer_id", [("PPO999999999", "PPO01"), ("PPO000000001", "HMO01"),
                                                 ("MCR000000004", "PPO01")],
                         ids=["unknown-member", "payer-mismatch", "payer-mismatch-other-way"])
def test_an_unknown_member_or_another_payer_s_member_is_not_found(members, book, member_id, payer_id):
    answer = answer_eligibility(request_for(member_id, payer_id), members, book, NOW)
    assert (answer.status, answer.reason) == (EligibilityStatus.NOT_FOUND, "member not found")
    assert (answer.plan_id, answer.coverage_start, answer.coverage_end, answer.copay,
            answer.deductible_remaining) == (None, None, None, None, None)
    assert (answer.payer_id, answer.member_id, answer.request_id) == (payer_id, member_id, f"ER-{member_id}")


def test_every_answer_round_trips_through_the_codec(members, book, codec):
    for member_id, coverage in members.items():
        for day in (DOS, date(2027, 6, 1), date(2010, 1, 1)):
            answer = answer_eligibility(request_for(member_id, coverage.payer_id, day), members, book, NOW)
            assert codec.decode(codec.encode(answer), EligibilityResponse) == answer
            assert (answer.status == EligibilityStatus.ACTIVE) == coverage.covers(day)


def test_the_simulator_answers_requests_from_the_master_data_files(members, book, codec, settings, tmp_path):
    """PayerSimulator.answer reads the coverage the EHR wrote (master-data folder) and
    answers each request keyed by its encounter; an unreadable request is dead-lettered."""
    import dataclasses as dc

    from engine.events import Patient, Sex
    from simulators.coverage import PatientRecord, write_master_data
    from simulators.payer import PayerSimulator

    local = dc.replace(settings, state_dir=tmp_path)
    records = [PatientRecord(Patient(f"MRN{i}", "Ana", "Chen", date(1958, 7, 14), Sex.F),
                             Address("1 OAK ST", "DENVER", "CO", "80202"), coverage)
               for i, coverage in enumerate(members.values())]
    write_master_data(records, local.master_data_dir)
    simulator = PayerSimulator(local, "unused:9092", codec)
    requests = [request_for("PPO000000001"), request_for("PPO000000002"), request_for("PPO999999999")]
    messages = [SourceMessage("claims.eligibility-requests", 0, i, r.encounter_id.encode(), codec.encode(r))
                for i, r in enumerate(requests)]
    messages.append(SourceMessage("claims.eligibility-requests", 0, 3, None, b"HL7|not-avro|"))
    emits = simulator.answer(messages)
    assert [(e.topic, e.key) for e in emits[:3]] == [("eligibility-responses", r.encounter_id) for r in requests]
    assert [e.event.status for e in emits[:3]] == [EligibilityStatus.ACTIVE, EligibilityStatus.INACTIVE,
                                                    EligibilityStatus.NOT_FOUND]
    assert emits[3].topic == "dead-letter" and emits[3].event.stage == "payer-eligibility"
    assert simulator.members == members
