"""simulators.ehr: the planned encounter stream."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.claims.eligibility import EligibilityCache
from engine.claims.stage import ClaimStageState, bill_coded, on_eligibility
from engine.coding.rules import check_encounter, code_encounter
from engine.model.events import EligibilityStatus, Encounter, Procedure, Severity
from engine.reference.codesets import npi_is_valid
from engine.runtime.stages import SourceMessage
from engine.wire.codec import UndecodableEvent
from simulators import ehr
from simulators.ehr import (
    BAD_KINDS,
    CODING_ERROR_KINDS,
    ELIGIBILITY_KINDS,
    EXPECTED_RULE,
    EXPECTED_SCRUB_RULE,
    SCRUB_KINDS,
    UNREADABLE_KINDS,
    Kind,
    plan_encounters,
    practice_for,
)
from simulators.payer.app import answer_eligibility

TODAY = date(2026, 3, 2)
N = 1000
BAD_RATE = 0.05
RESEND_RATE = 0.03


@pytest.fixture(scope="module")
def plan(codec, book):
    return plan_encounters(N, seed=5, bad_rate=BAD_RATE, resend_rate=RESEND_RATE, codec=codec, book=book,
                           today=TODAY)


@pytest.fixture
def error_rules(errors):
    """``error_rules(enc)``: the rule ids of the encounter's ERROR findings."""
    return lambda enc: {rule_id for rule_id, _ in errors(enc)}


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 3, 2, 8, 0, 0, 500_000, tzinfo=UTC)


def test_same_seed_same_records_with_the_clock_pinned(codec, book, monkeypatch):
    """Everything but the emission instant comes from the seeded RNG."""
    monkeypatch.setattr(ehr, "datetime", _FrozenDatetime)
    a = plan_encounters(300, 9, 0.1, 0.05, codec, book, today=TODAY)
    b = plan_encounters(300, 9, 0.1, 0.05, codec, book, today=TODAY)
    assert a == b
    c = plan_encounters(300, 10, 0.1, 0.05, codec, book, today=TODAY)
    assert [r.value for r in a] != [r.value for r in c]


def test_same_seed_same_encounters_apart_from_occurred_at(codec, book):
    a = plan_encounters(300, 9, 0.1, 0.05, codec, book, today=TODAY)
    b = plan_encounters(300, 9, 0.1, 0.05, codec, book, today=TODAY)
    assert [(r.kind, r.encounter_id) for r in a] == [(r.kind, r.encounter_id) for r in b]
    for ra, rb in zip(a, b, strict=True):
        if ra.kind == Kind.UNDECODABLE:
            assert ra.value == rb.value
        elif ra.kind != Kind.TRUNCATED:
            ea, eb = codec.decode(ra.value, Encounter), codec.decode(rb.value, Encounter)
            assert dataclasses.replace(ea, occurred_at=eb.occurred_at) == eb


def test_encounter_ids_are_unique_and_sequential(plan):
    firsts = [r.encounter_id for r in plan if r.kind != Kind.RESEND]
    assert firsts == [f"ENC-5-{i:07d}" for i in range(N)]


def test_exactly_round_n_times_bad_rate_bad_records_in_equal_turns(plan):
    kinds = Counter(r.kind for r in plan)
    bad = sum(kinds[k] for k in BAD_KINDS)
    assert bad == round(N * BAD_RATE)
    per_kind = [kinds[k] for k in BAD_KINDS]
    assert max(per_kind) - min(per_kind) <= 1
    assert sum(per_kind) == bad and min(per_kind) >= 1
    assert kinds[Kind.GOOD] == N - bad


@pytest.mark.parametrize("n, rate", [(7, 0.5), (40, 0.1), (101, 0.03), (20, 0.0), (12, 1.0)])
def test_bad_count_for_other_sizes(codec, book, n, rate):
    records = plan_encounters(n, 3, rate, 0.0, codec, book, today=TODAY)
    kinds = Counter(r.kind for r in records)
    assert sum(kinds[k] for k in BAD_KINDS) == round(n * rate)
    assert len(records) == n


def test_undecodable_and_truncated_records_are_undecodable(plan, codec):
    broken = [r for r in plan if r.kind in (Kind.UNDECODABLE, Kind.TRUNCATED)]
    assert {r.kind for r in broken} == {Kind.UNDECODABLE, Kind.TRUNCATED}
    for record in broken:
        with pytest.raises(UndecodableEvent):
            codec.decode(record.value, Encounter)


def test_bad_kinds_are_the_unreadable_and_every_coding_error_kind():
    assert BAD_KINDS == (*UNREADABLE_KINDS, *CODING_ERROR_KINDS)
    assert set(CODING_ERROR_KINDS) == set(EXPECTED_RULE)
    assert Kind.GOOD not in BAD_KINDS and Kind.RESEND not in BAD_KINDS
    # The registration problems are not bad for the coder: they have kinds of their own.
    assert ELIGIBILITY_KINDS == (Kind.LAPSED_COVERAGE, Kind.UNKNOWN_MEMBER)
    assert SCRUB_KINDS == tuple(EXPECTED_SCRUB_RULE) == (Kind.BAD_NPI, Kind.MISSING_SUBSCRIBER, Kind.LATE_FILING)
    assert not {*ELIGIBILITY_KINDS, *SCRUB_KINDS} & {*BAD_KINDS, Kind.GOOD, Kind.RESEND}
    assert set(Kind) == {Kind.GOOD, Kind.RESEND, *BAD_KINDS, *ELIGIBILITY_KINDS, *SCRUB_KINDS}


def test_spoiled_records_decode_but_fail_the_coding_checks(plan, codec, error_rules):
    spoiled = [r for r in plan if r.kind in CODING_ERROR_KINDS]
    assert {r.kind for r in spoiled} == set(CODING_ERROR_KINDS)
    for record in spoiled:
        enc = codec.decode(record.value, Encounter)
        assert enc.encounter_id == record.encounter_id
        assert EXPECTED_RULE[record.kind] in error_rules(enc), record.kind


def test_resends_repeat_an_earlier_good_record(plan):
    resends = [i for i, r in enumerate(plan) if r.kind == Kind.RESEND]
    assert resends, "resend_rate 3% of ~950 good encounters should resend some"
    for i in resends:
        original = plan[i - 1]
        assert original.kind == Kind.GOOD
        assert (original.encounter_id, original.value) == (plan[i].encounter_id, plan[i].value)


def test_no_resends_at_rate_zero(codec, book):
    assert all(r.kind != Kind.RESEND for r in plan_encounters(200, 4, 0.0, 0.0, codec, book, today=TODAY))


def test_good_encounters_pass_coding_and_are_billable(plan, codec, fees, book, claim_ctx, error_rules):
    good = [codec.decode(r.value, Encounter) for r in plan if r.kind == Kind.GOOD]
    assert len(good) > 900
    practice = practice_for(5, book, TODAY)
    members = {m.patient.patient_id: m for m in practice.members}
    for enc in good:
        assert not error_rules(enc), (enc.encounter_id, error_rules(enc))
        assert all(p.code in fees.charges for p in enc.procedures)
        assert enc.payer_id in book.payers and enc.payer_id in claim_ctx.payers
        assert npi_is_valid(enc.billing_npi) and npi_is_valid(enc.rendering_npi)
        assert enc.billing_npi[0] == "2"  # organisation NPI
        # The practice's own providers: the claim stage knows them (providers.csv).
        assert enc.billing_npi == claim_ctx.providers.billing.npi
        assert enc.rendering_npi in claim_ctx.providers.rendering
        # A member of the panel, covered on the date of service, the subscriber as registered.
        member = members[enc.patient.patient_id]
        assert (enc.member_id, enc.payer_id, enc.patient_address) == (member.member_id, member.payer_id, member.address)
        assert member.coverage.covers(enc.date_of_service)
        if member.coverage.relationship == "18":
            assert enc.subscriber is None
        else:
            assert enc.subscriber == dataclasses.replace(member.coverage.subscriber, address=member.address)
            assert enc.subscriber.birth_date is not None
        assert 0 <= (TODAY - enc.date_of_service).days < 30
        assert enc.patient.birth_date < enc.date_of_service
        assert enc.source_system == ehr.SOURCE_SYSTEM


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_visit_template_is_clean_for_every_patient_it_fits(fees, book, coding_ref, seed):
    """Each template, for each patient ``Practice.patients_for`` gives it, on the first and
    the last date of service the simulator may pick: no finding at all, not even a warning."""
    practice = ehr.Practice.generate(random.Random(seed), book, TODAY)
    for visit in ehr.VISITS:
        members = practice.patients_for(visit)
        assert members, visit.name
        assert all(code in fees.charges for code, *_ in visit.lines), visit.name
        for member in members:
            for day in (TODAY, TODAY - timedelta(days=29)):
                enc = Encounter(
                    "ENC-T", ehr.SOURCE_SYSTEM, datetime(2026, 1, 1, tzinfo=UTC), member.patient,
                    member.payer_id, member.member_id, practice.billing_npi, practice.rendering_npis[0], day,
                    visit.place_of_service, list(visit.diagnoses),
                    [Procedure(c, list(m), u, list(p)) for c, m, u, p in visit.lines],
                )
                assert check_encounter(enc, coding_ref) == [], (visit.name, member.age, member.patient.sex, day)


def test_templates_fit_only_patients_of_their_sex_and_age(book):
    practice = ehr.Practice.generate(random.Random(4), book, TODAY)
    for visit in ehr.VISITS:
        for member in practice.patients_for(visit):
            assert visit.sex in (None, member.patient.sex)
            assert visit.min_age <= member.age <= visit.max_age
    assert len(practice.members) == 600
    assert {m.patient.patient_id for m in practice.members} == {f"MRN{i:06d}" for i in range(600)}


def test_invalid_code_pools_really_are_invalid(make_encounter, error_rules):
    def with_first_line(**changes):
        enc = make_encounter()
        return dataclasses.replace(enc, procedures=[dataclasses.replace(enc.procedures[0], **changes)])

    for dx in ehr.MALFORMED_DIAGNOSES:
        assert "ICD10_FORMAT" in error_rules(make_encounter(diagnoses=[dx, "I10"])), dx
    for dx in ehr.UNKNOWN_DIAGNOSES:
        assert "ICD10_UNKNOWN" in error_rules(make_encounter(diagnoses=[dx, "I10"])), dx
    for dx in ehr.HEADER_DIAGNOSES:
        assert "ICD10_NOT_BILLABLE" in error_rules(make_encounter(diagnoses=[dx, "I10"])), dx
    for code in ehr.MALFORMED_PROCEDURES:
        assert "PROC_FORMAT" in error_rules(with_first_line(code=code)), code
    for modifier in ehr.UNKNOWN_MODIFIERS:
        assert "MODIFIER_UNKNOWN" in error_rules(with_first_line(modifiers=[modifier])), modifier
    for column1, column2 in ehr.NCCI_BUNDLED_LINE.items():
        enc = make_encounter(procedures=[Procedure(column1, [], 1, [1, 2]), Procedure(column2, [], 1, [1])])
        assert "NCCI_PTP" in error_rules(enc), (column1, column2)


def test_payers_follow_their_share(codec, book):
    records = plan_encounters(2000, 21, 0.0, 0.0, codec, book, today=TODAY)
    patients: dict[str, str] = {}
    for r in records:
        enc = codec.decode(r.value, Encounter)
        patients[enc.patient.patient_id] = enc.payer_id
    shares = Counter(patients.values())
    for payer_id, profile in book.payers.items():
        assert abs(shares[payer_id] / len(patients) - profile.share) < 0.08, payer_id


# --- registration problems: eligibility and scrubber kinds ---------------------------------

LAPSED_RATE = 0.04
INCOMPLETE_RATE = 0.06


@pytest.fixture(scope="module")
def registration_plan(codec, book):
    return plan_encounters(N, seed=5, bad_rate=BAD_RATE, resend_rate=RESEND_RATE, codec=codec, book=book,
                           today=TODAY, lapsed_rate=LAPSED_RATE, incomplete_rate=INCOMPLETE_RATE)


@pytest.fixture(scope="module")
def practice(book):
    """The plan's practice: ``plan_encounters`` uses ``practice_for(seed, book, today)``."""
    return practice_for(5, book, TODAY)


def test_registration_kinds_have_exact_counts_in_equal_turns(registration_plan):
    kinds = Counter(r.kind for r in registration_plan)
    assert sum(kinds[k] for k in BAD_KINDS) == round(N * BAD_RATE)
    assert sum(kinds[k] for k in ELIGIBILITY_KINDS) == round(N * LAPSED_RATE)
    assert sum(kinds[k] for k in SCRUB_KINDS) == round(N * INCOMPLETE_RATE)
    for group in (ELIGIBILITY_KINDS, SCRUB_KINDS):
        per_kind = [kinds[k] for k in group]
        assert max(per_kind) - min(per_kind) <= 1 and min(per_kind) >= 1, group
    assert kinds[Kind.GOOD] == N - round(N * BAD_RATE) - round(N * LAPSED_RATE) - round(N * INCOMPLETE_RATE)
    firsts = [r.encounter_id for r in registration_plan if r.kind != Kind.RESEND]
    assert firsts == [f"ENC-5-{i:07d}" for i in range(N)]


@pytest.mark.parametrize("n, lapsed, incomplete", [(7, 0.3, 0.3), (40, 0.05, 0.1), (101, 0.02, 0.02), (20, 0.0, 0.5),
                                                   (30, 0.5, 0.0)])
def test_registration_counts_for_other_sizes(codec, book, n, lapsed, incomplete):
    records = plan_encounters(n, 3, 0.1, 0.0, codec, book, today=TODAY, lapsed_rate=lapsed,
                              incomplete_rate=incomplete)
    kinds = Counter(r.kind for r in records)
    assert len(records) == n
    assert sum(kinds[k] for k in BAD_KINDS) == round(n * 0.1)
    assert sum(kinds[k] for k in ELIGIBILITY_KINDS) == round(n * lapsed)
    assert sum(kinds[k] for k in SCRUB_KINDS) == round(n * incomplete)


def test_registration_rates_default_to_zero(codec, book):
    records = plan_encounters(300, 4, 0.0, 0.0, codec, book, today=TODAY)
    assert {r.kind for r in records} == {Kind.GOOD}


def test_registration_problems_pass_the_coding_rules(registration_plan, codec, error_rules):
    """Clean for the coder: they are caught before the claim leaves, not at coding."""
    problems = [r for r in registration_plan if r.kind in (*ELIGIBILITY_KINDS, *SCRUB_KINDS)]
    assert {r.kind for r in problems} == {*ELIGIBILITY_KINDS, *SCRUB_KINDS}
    for record in problems:
        enc = codec.decode(record.value, Encounter)
        assert enc.encounter_id == record.encounter_id
        assert not error_rules(enc), (record.kind, error_rules(enc))


def decoded(plan, codec, kind: Kind) -> list[Encounter]:
    found = [codec.decode(r.value, Encounter) for r in plan if r.kind == kind]
    assert found, kind
    return found


def test_a_lapsed_coverage_visit_is_after_the_member_s_coverage_ended(registration_plan, codec, practice):
    members = {m.patient.patient_id: m for m in practice.members}
    for enc in decoded(registration_plan, codec, Kind.LAPSED_COVERAGE):
        member = members[enc.patient.patient_id]
        assert member.lapsed and enc.member_id == member.member_id and enc.payer_id == member.payer_id
        assert member.coverage.end < enc.date_of_service
        assert not member.coverage.covers(enc.date_of_service)


def test_an_unknown_member_id_is_not_in_the_panel(registration_plan, codec, practice):
    members = {m.patient.patient_id: m for m in practice.members}
    member_ids = {m.member_id for m in practice.members}
    for enc in decoded(registration_plan, codec, Kind.UNKNOWN_MEMBER):
        assert enc.member_id not in member_ids
        member = members[enc.patient.patient_id]  # a real patient, the id mistyped
        assert len(enc.member_id) == len(member.member_id) and enc.member_id[:-2] == member.member_id[:-2]
        assert member.coverage.covers(enc.date_of_service)


def test_a_bad_npi_fails_its_check_digit(registration_plan, codec, claim_ctx):
    for enc in decoded(registration_plan, codec, Kind.BAD_NPI):
        assert not npi_is_valid(enc.rendering_npi)
        assert enc.rendering_npi[:-1] in {npi[:-1] for npi in claim_ctx.providers.rendering}  # one digit off
        assert npi_is_valid(enc.billing_npi)


def test_a_missing_subscriber_has_no_birth_date(registration_plan, codec):
    for enc in decoded(registration_plan, codec, Kind.MISSING_SUBSCRIBER):
        assert enc.subscriber is not None and enc.subscriber.relationship in ("01", "19")
        assert enc.subscriber.birth_date is None
        assert enc.subscriber.first_name and enc.subscriber.last_name


def test_a_late_filing_visit_is_400_days_back(registration_plan, codec, practice):
    members = {m.patient.patient_id: m for m in practice.members}
    for enc in decoded(registration_plan, codec, Kind.LATE_FILING):
        assert (TODAY - enc.date_of_service).days == 400
        assert members[enc.patient.patient_id].coverage.covers(enc.date_of_service)  # covered: only late


def test_each_registration_kind_ends_where_it_says(registration_plan, codec, book, practice, coding_ref, claim_ctx):
    """Coding → claim stage → the payer's answer from the panel → the claim stage again:
    eligibility kinds end at the front desk, scrub kinds rejected by their expected rule,
    good encounters submitted."""
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    coverage = {m.member_id: m.coverage for m in practice.members}
    wanted = (Kind.GOOD, *ELIGIBILITY_KINDS, *SCRUB_KINDS)
    ends: dict[Kind, Counter[str]] = {kind: Counter() for kind in wanted}
    for offset, record in enumerate(r for r in registration_plan if r.kind in wanted):
        (coded,) = code_encounter(codec.decode(record.value, Encounter), record.value, coding_ref, now)
        message = SourceMessage("claims.coded", 0, offset, None, codec.encode(coded.event))
        state = ClaimStageState({}, EligibilityCache({}, codec, timedelta(hours=24)))  # each asks the payer
        (asked,) = bill_coded(coded.event, message, state, claim_ctx, now)
        answer = answer_eligibility(asked.event, coverage, book, now)
        emits = on_eligibility(answer, state, claim_ctx, now)
        assert dict(state.awaiting) == {}
        ends[record.kind][emits[0].topic] += 1
        if record.kind == Kind.LAPSED_COVERAGE:
            assert emits[0].event.status == EligibilityStatus.INACTIVE
            assert emits[0].event.reason.startswith("coverage ended ")
        elif record.kind == Kind.UNKNOWN_MEMBER:
            assert (emits[0].event.status, emits[0].event.reason) == (EligibilityStatus.NOT_FOUND, "member not found")
        elif record.kind in EXPECTED_SCRUB_RULE:
            errors = {f.rule_id for f in emits[0].event.findings if f.severity == Severity.ERROR}
            assert EXPECTED_SCRUB_RULE[record.kind] in errors, (record.kind, errors)
    assert {kind: set(topics) for kind, topics in ends.items()} == {
        Kind.GOOD: {"claims-submitted"},
        Kind.LAPSED_COVERAGE: {"front-desk"}, Kind.UNKNOWN_MEMBER: {"front-desk"},
        Kind.BAD_NPI: {"scrub-rejected"}, Kind.MISSING_SUBSCRIBER: {"scrub-rejected"},
        Kind.LATE_FILING: {"scrub-rejected"},
    }


def test_the_practice_is_the_same_for_the_same_seed_and_day(book):
    a, b = practice_for(5, book, TODAY), practice_for(5, book, TODAY)
    assert a == b
    assert practice_for(6, book, TODAY).members != a.members


def test_the_practice_uses_the_given_providers(book, claim_ctx):
    practice = ehr.Practice.generate(random.Random(1), book, TODAY)
    assert practice.billing_npi == claim_ctx.providers.billing.npi
    assert practice.rendering_npis == tuple(claim_ctx.providers.rendering)
    other = dataclasses.replace(claim_ctx.providers, rendering={"1912301953": claim_ctx.providers.billing})
    assert ehr.Practice.generate(random.Random(1), book, TODAY, providers=other).rendering_npis == ("1912301953",)
