"""simulators.ehr: the planned encounter stream."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import date, datetime, timezone

import pytest

from engine.codec import UndecodableEvent
from engine.codesets import npi_is_valid
from engine.coding import check_encounter
from engine.events import Encounter, Severity
from simulators import ehr
from simulators.ehr import BAD_KINDS, Kind, plan_encounters

TODAY = date(2026, 3, 2)
N = 1000
BAD_RATE = 0.05
RESEND_RATE = 0.03


@pytest.fixture(scope="module")
def plan(codec, book):
    return plan_encounters(N, seed=5, bad_rate=BAD_RATE, resend_rate=RESEND_RATE, codec=codec, book=book,
                           today=TODAY)


def has_error(enc: Encounter) -> bool:
    return any(f.severity == Severity.ERROR for f in check_encounter(enc))


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 3, 2, 8, 0, 0, 500_000, tzinfo=timezone.utc)


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
    for ra, rb in zip(a, b):
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


def test_spoiled_records_decode_but_fail_the_coding_checks(plan, codec):
    spoiled = [r for r in plan if r.kind in (Kind.INVALID_CODES, Kind.MISSING_DATA)]
    assert {r.kind for r in spoiled} == {Kind.INVALID_CODES, Kind.MISSING_DATA}
    for record in spoiled:
        enc = codec.decode(record.value, Encounter)
        assert enc.encounter_id == record.encounter_id
        findings = check_encounter(enc)
        assert any(f.severity == Severity.ERROR for f in findings), record
        rules = {f.rule_id for f in findings}
        if record.kind == Kind.MISSING_DATA:
            assert rules & {"REQUIRED_FIELD", "DX_POINTER_COUNT"}
        else:
            assert rules & {"ICD10_FORMAT", "ICD10_UNKNOWN", "ICD10_NOT_BILLABLE", "PROC_FORMAT"}


def test_resends_repeat_an_earlier_good_record(plan):
    resends = [i for i, r in enumerate(plan) if r.kind == Kind.RESEND]
    assert resends, "resend_rate 3% of ~950 good encounters should resend some"
    for i in resends:
        original = plan[i - 1]
        assert original.kind == Kind.GOOD
        assert (original.encounter_id, original.value) == (plan[i].encounter_id, plan[i].value)


def test_no_resends_at_rate_zero(codec, book):
    assert all(r.kind != Kind.RESEND for r in plan_encounters(200, 4, 0.0, 0.0, codec, book, today=TODAY))


def test_good_encounters_pass_coding_and_are_billable(plan, codec, fees, book):
    good = [codec.decode(r.value, Encounter) for r in plan if r.kind == Kind.GOOD]
    assert len(good) > 900
    for enc in good:
        assert not has_error(enc), enc.encounter_id
        assert all(p.code in fees.charges for p in enc.procedures)
        assert enc.payer_id in book.payers
        assert npi_is_valid(enc.billing_npi) and npi_is_valid(enc.rendering_npi)
        assert enc.billing_npi[0] == "2"  # organisation NPI
        assert 0 <= (TODAY - enc.date_of_service).days < 30
        assert enc.patient.birth_date < enc.date_of_service
        assert enc.source_system == ehr.SOURCE_SYSTEM


def test_every_visit_template_is_clean(fees):
    from engine.events import Patient, Procedure, Sex

    for visit in ehr.VISITS:
        enc = Encounter(
            "ENC-T", "t", datetime(2026, 1, 1, tzinfo=timezone.utc),
            Patient("MRN1", "A", "B", date(1970, 1, 1), Sex.U), "MCR01", "M1", "2000000008", "1234567893",
            date(2026, 1, 1), visit.place_of_service, list(visit.diagnoses),
            [Procedure(c, list(m), u, list(p)) for c, m, u, p in visit.procedures],
        )
        assert check_encounter(enc) == [], visit
        assert all(code in fees.charges for code, *_ in visit.procedures)


def test_invalid_code_pools_really_are_invalid(make_encounter):
    for dx in ehr.INVALID_DIAGNOSES:
        assert has_error(make_encounter(diagnoses=[dx])), dx
    for code in ehr.INVALID_PROCEDURES:
        enc = make_encounter()
        enc = dataclasses.replace(enc, procedures=[dataclasses.replace(enc.procedures[0], code=code)])
        assert has_error(enc), code


def test_payers_follow_their_share(codec, book):
    records = plan_encounters(2000, 21, 0.0, 0.0, codec, book, today=TODAY)
    patients: dict[str, str] = {}
    for r in records:
        enc = codec.decode(r.value, Encounter)
        patients[enc.patient.patient_id] = enc.payer_id
    shares = Counter(patients.values())
    for payer_id, profile in book.payers.items():
        assert abs(shares[payer_id] / len(patients) - profile.share) < 0.08, payer_id
