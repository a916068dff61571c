"""simulators.payer.adjudication: the profile file, the deterministic rules, pricing and cost
sharing against the accumulators, reversals, balancing over thousands of claims, and
the calibration of the stochastic denials to the payers' published figures.

Claims are built by hand here (no EHR, no coding): each test says exactly which lines
a payer sees, and a hand-made ``PayerReference`` says who the members are, which
authorizations were issued and what the fee schedule pays.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any

import pytest
import yaml

from engine.model.events import (
    Adjustment,
    ClaimSubmitted,
    GroupCode,
    Remittance,
    RemittanceOutcome,
)
from simulators.coverage import Authorization, Coverage
from simulators.ehr import VISITS
from simulators.payer.adjudication import (
    CATEGORY_TOLERANCE,
    NOT_DENIALS,
    RATE_TOLERANCE,
    Accumulator,
    AdjudicatedClaim,
    Adjudication,
    Calibration,
    CodeList,
    MemberState,
    PayerBook,
    PayerProfile,
    PayerReference,
    PendingPayment,
    Plan,
    adjudicate,
    allowed_for,
    denial_probability,
    payer_claim_control_number,
    pick_category,
    profile_fit,
    release_at,
    remittance_id,
    rule_denials,
)
from tests import factories

UTC = UTC
CO, PR, OA = GroupCode.CO, GroupCode.PR, GroupCode.OA
ZERO = Decimal("0.00")
CENTS = Decimal("0.01")
DOS = date(2026, 3, 2)
SUBMITTED = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 4, 9, 0, 5, tzinfo=UTC)
SINCE = date(2020, 1, 1)

#: The payer's fee schedule for the hand-made claims: round numbers, so every allowed
#: amount below is fee × factor worked out by hand (MCR01 0.42, MCA01 0.45, MCD01 0.30,
#: PPO01 0.65, HMO01 0.55).
FEES = {
    "99213": Decimal("200.00"),
    "99214": Decimal("1000.00"),
    "99396": Decimal("300.00"),
    "80053": Decimal("100.00"),
    "71046": Decimal("200.00"),
    "36415": Decimal("20.00"),
    "20610": Decimal("300.00"),
    "51798": Decimal("100.00"),
    "82247": Decimal("50.00"),
    "G0103": Decimal("60.00"),
}


def money(value: Decimal) -> Decimal:
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


def total(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO)


#: The hand-made claims (``tests.factories.make_claim``, lines as (code, charge[, units])):
#: MCR01 member M1, seen on DOS, submitted two days after the date of service at 09:00.
make_claim = partial(factories.make_claim, date_of_service=DOS, encounter_occurred_at=SUBMITTED)


def coverage(member: str = "M1", payer: str = "MCR01", plan: str | None = None, start: date = SINCE,
             end: date | None = None) -> Coverage:
    return Coverage(member, payer, plan or f"{payer}-SILVER", "18", None, start, end)


def reference(book: PayerBook, *members: Coverage, auths: dict | None = None, fees: dict | None = None,
              seed: int = 1) -> PayerReference:
    return PayerReference(book, {c.member_id: c for c in members}, auths or {}, FEES if fees is None else fees,
                          seed)


def quiet() -> Calibration:
    """A calibration far ahead of every target: the stochastic draw never denies."""
    return Calibration(claims=10_000, denied=10_000)


def cas(remit_line: Any) -> list[tuple[GroupCode, str, Decimal]]:
    return [(a.group_code, a.carc, a.amount) for a in remit_line.adjustments]


def one(result: Adjudication) -> Remittance:
    (remit,) = result.remittances
    return remit


# --- the profile file -----------------------------------------------------------------


def test_the_profile_file_has_the_five_payer_types(book):
    assert {p.payer_id: p.payer_type for p in book.payers.values()} == {
        "MCR01": "medicare", "MCA01": "medicare-advantage", "MCD01": "medicaid", "PPO01": "commercial",
        "HMO01": "commercial"}
    assert "PPO" in book.payers["PPO01"].name and "HMO" in book.payers["HMO01"].name
    assert sum(p.share for p in book.payers.values()) == pytest.approx(1.0)


def test_first_pass_denial_rates_are_premier_s_figures(book):
    assert {p: book.payers[p].first_pass_denial_rate for p in book.payers} == {
        "MCR01": 0.084, "MCA01": 0.157, "PPO01": 0.139, "HMO01": 0.139, "MCD01": 0.167}


def test_category_shares_are_kff_s_normalised_to_one(book):
    kff = {"administrative": 18, "excluded-service": 16, "benefit-limit": 12, "prior-auth": 9,
           "medical-necessity": 6, "other": 34}
    for profile in book.payers.values():
        shares = {c.name: c.share for c in profile.categories}
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares == pytest.approx({name: n / 95 for name, n in kff.items()})
        for category in profile.categories:
            assert category.reasons and {r.carc for r in category.reasons} <= category.carcs
            assert all(r.scope in ("claim", "line") for r in category.reasons)


def test_medicare_part_b_benefits(book):
    plan = book.payers["MCR01"].plan("MCR01-GOLD")  # no GOLD tier at Medicare: the default plan
    assert (plan.deductible, plan.coinsurance, plan.oop_max, plan.copays) == (
        Decimal("283.00"), Decimal("0.20"), None, {})
    assert "preventive" in plan.no_cost_share


@pytest.mark.parametrize("plan_id, deductible, office_copay", [
    ("PPO01-GOLD", "500.00", "20.00"),
    ("PPO01-BRONZE", "3000.00", None),
    ("PPO01-SILVER", "1500.00", "30.00"),  # no SILVER tier: the default plan
    (None, "1500.00", "30.00"),
])
def test_a_plan_is_chosen_by_the_tier_after_the_last_dash(book, plan_id, deductible, office_copay):
    plan = book.payers["PPO01"].plan(plan_id)
    assert plan.deductible == Decimal(deductible)
    assert plan.copays.get("office") == (Decimal(office_copay) if office_copay else None)


@pytest.mark.parametrize("code, service_type", [
    ("99396", "preventive"), ("99213", "office"), ("99215", "office"), ("80053", "lab"), ("0030U", "lab"),
    ("71046", "imaging"), ("97110", "therapy"), ("J3301", "drug"), ("20610", "procedure"),
    ("A9999", "procedure"),  # in no list: the default
])
def test_service_types(book, code, service_type):
    assert book.service_type(code) == service_type


@pytest.mark.parametrize("items, inside, outside", [
    (["99202-99215"], ["99202", "99213", "99215"], ["99201", "99216", "9921", "992130", "99396"]),
    (["J0000-J9999"], ["J0000", "J3301", "j3301", "J9999"], ["K0001", "J00001", "J999", "0001U"]),
    (["0001U-0999U"], ["0001U", "0030U"], ["1000U", "0001M"]),
    (["G0103", " q0091 "], ["G0103", "Q0091", "q0091"], ["G0104", "G010"]),
    ([], [], ["99213"]),
])
def test_code_lists_hold_codes_and_same_length_ranges(items, inside, outside):
    codes = CodeList.parse(items)
    assert all(code in codes for code in inside)
    assert not any(code in codes for code in outside)


@pytest.mark.parametrize("bad", ["9920-99215", "J000-J9999", "99202-9921"])
def test_a_range_with_ends_of_different_length_is_rejected(bad):
    with pytest.raises(ValueError, match="same length"):
        CodeList.parse([bad])


def test_a_payer_without_a_default_plan_is_rejected(settings, tmp_path):
    doc = yaml.safe_load(settings.payer_profiles_file.read_text())
    doc["payers"][0]["plans"] = {"GOLD": doc["payers"][0]["plans"]["default"]}
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ValueError, match="MCR01 has no default plan"):
        PayerBook.load(path)


def test_a_payer_may_set_its_own_denial_categories(settings, tmp_path):
    doc = yaml.safe_load(settings.payer_profiles_file.read_text())
    doc["payers"][1]["denial_categories"] = {
        "administrative": {"share": 1, "reasons": [{"carc": "16", "group": "CO", "rarc": "MA130"}]},
        "other": {"share": 3, "reasons": [{"carc": "4", "group": "CO", "scope": "line"}]},
    }
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    custom = PayerBook.load(path)
    assert [(c.name, c.share) for c in custom.payers["MCA01"].categories] == [("administrative", 0.25),
                                                                             ("other", 0.75)]
    assert custom.payers["MCR01"].categories == PayerBook.load(settings.payer_profiles_file).payers[
        "MCR01"].categories


@pytest.mark.parametrize("carc, category", [
    ("31", "administrative"), ("18", "administrative"), ("29", "administrative"), ("96", "excluded-service"),
    ("204", "excluded-service"), ("119", "benefit-limit"), ("15", "prior-auth"), ("197", "prior-auth"),
    ("50", "medical-necessity"), ("97", "other"), ("129", "other"), ("999", "other"),
])
def test_each_carc_counts_in_its_category(book, carc, category):
    assert book.payers["PPO01"].category_of(carc) == category


# --- the deterministic rules ------------------------------------------------------------


def _unknown_member(book):
    return make_claim("C1", [("99213", "140.00")], member_id="NOBODY"), reference(book, coverage())


def _another_payer_s_member(book):
    return make_claim("C1", [("99213", "140.00")], payer_id="PPO01"), reference(book, coverage())


def _before_coverage(book):
    return make_claim("C1", [("99213", "140.00")]), reference(book, coverage(start=DOS + timedelta(days=1)))


def _after_coverage(book):
    return make_claim("C1", [("99213", "140.00")]), reference(book, coverage(end=DOS - timedelta(days=1)))


def _past_timely_filing(book):
    late = datetime.combine(DOS + timedelta(days=91), time(9), tzinfo=UTC)  # PPO01 allows 90 days
    return (make_claim("C1", [("99213", "140.00")], payer_id="PPO01", submitted_at=late),
            reference(book, coverage(payer="PPO01")))


def _replacement_of_an_unknown_claim(book):
    return (make_claim("C2", [("99213", "140.00")], frequency_code="7", original_claim_id="C-NEVER-SEEN"),
            reference(book, coverage()))


def _void_of_an_unknown_claim(book):
    return (make_claim("C2", [("99213", "140.00")], frequency_code="8", original_claim_id=None),
            reference(book, coverage()))


def _first_claim_level_rule_wins(book):
    late = datetime.combine(DOS + timedelta(days=400), time(9), tzinfo=UTC)
    return (make_claim("C1", [("99213", "140.00"), ("20610", "185.00")], payer_id="PPO01", member_id="NOBODY",
                       submitted_at=late),
            reference(book, coverage(payer="PPO01")))


CLAIM_RULES: dict[str, tuple[Callable, str, GroupCode, str | None]] = {
    "31-unknown-member": (_unknown_member, "31", CO, None),
    "31-member-of-another-payer": (_another_payer_s_member, "31", CO, None),
    "26-before-coverage": (_before_coverage, "26", CO, None),
    "27-after-coverage-ended": (_after_coverage, "27", CO, None),
    "29-past-timely-filing": (_past_timely_filing, "29", CO, None),
    "129-replacement-of-unknown-original": (_replacement_of_an_unknown_claim, "129", CO, None),
    "129-void-without-original": (_void_of_an_unknown_claim, "129", CO, None),
    "31-wins-over-29-and-197": (_first_claim_level_rule_wins, "31", CO, None),
}


@pytest.mark.parametrize("build, carc, group, rarc", CLAIM_RULES.values(), ids=CLAIM_RULES.keys())
def test_a_claim_level_rule_denies_every_line(book, codec, build, carc, group, rarc):
    claim, ref = build(book)
    cal = Calibration()
    result = adjudicate(claim, MemberState(), ref, cal, codec, NOW)
    remit = one(result)
    assert (remit.outcome, remit.claim_status_code) == (RemittanceOutcome.DENIED, "4")
    assert (remit.paid_amount, remit.allowed_amount, remit.patient_responsibility) == (ZERO, ZERO, ZERO)
    assert remit.billed_amount == claim.total_charge
    assert remit.rarcs == ([rarc] if rarc else [])
    assert remit.payment_method == "NON"
    for claim_line, remit_line in zip(claim.lines, remit.lines, strict=True):
        assert (remit_line.allowed_amount, remit_line.paid_amount, remit_line.rarcs) == (ZERO, ZERO, [])
        assert remit_line.adjustments == [Adjustment(group, carc, claim_line.charge, claim_line.units)]
    if claim.frequency_code == "1":  # a deterministic first-pass denial counts towards the calibration
        assert (result.first_pass, result.denial_category) == (True, book.payers[claim.payer_id].category_of(carc))
        assert (cal.claims, cal.denied, cal.rule_denied) == (1, 1, 1)
    else:
        assert (result.first_pass, result.denial_category, cal.claims) == (False, None, 0)


def _no_authorization(book):
    return (make_claim("C1", [("99214", "210.00"), ("20610", "185.00")], payer_id="PPO01"),
            reference(book, coverage(payer="PPO01")))


def _authorization_expired(book):
    expired = Authorization("PA1", "PPO01", "M1", "20610", DOS - timedelta(days=200), DOS - timedelta(days=1))
    return (make_claim("C1", [("99214", "210.00"), ("20610", "185.00")], payer_id="PPO01"),
            reference(book, coverage(payer="PPO01"), auths={("M1", "20610"): [expired]}))


def _authorization_for_another_member(book):
    other = Authorization("PA1", "PPO01", "M2", "20610", DOS, DOS)
    return (make_claim("C1", [("99214", "210.00"), ("20610", "185.00")], payer_id="PPO01"),
            reference(book, coverage(payer="PPO01"), auths={("M2", "20610"): [other]}))


def _non_covered_96(book):
    return (make_claim("C1", [("99213", "140.00"), ("G0103", "28.00")], payer_id="MCA01"),
            reference(book, coverage(payer="MCA01")))


def _non_covered_204(book):
    return (make_claim("C1", [("99213", "140.00"), ("82247", "22.00")], payer_id="MCD01"),
            reference(book, coverage(payer="MCD01")))


def _bundled_97(book):
    return (make_claim("C1", [("99214", "210.00"), ("51798", "40.00")], payer_id="MCA01"),
            reference(book, coverage(payer="MCA01")))


def _bundled_234(book):
    return (make_claim("C1", [("99214", "210.00"), ("51798", "40.00")], payer_id="HMO01"),
            reference(book, coverage(payer="HMO01")))


LINE_RULES: dict[str, tuple[Callable, str, str | None, bool]] = {  # last: denied when billed alone
    "197-authorization-missing": (_no_authorization, "197", None, True),
    "197-authorization-of-another-member": (_authorization_for_another_member, "197", None, True),
    "15-authorization-expired": (_authorization_expired, "15", None, True),
    "96-non-covered": (_non_covered_96, "96", "N130", True),
    "204-non-covered": (_non_covered_204, "204", "N130", True),
    "97-bundled-with-e/m": (_bundled_97, "97", "M15", False),
    "234-bundled-with-e/m": (_bundled_234, "234", None, False),
}


@pytest.mark.parametrize("build, carc, rarc, alone_denied", LINE_RULES.values(), ids=LINE_RULES.keys())
def test_a_line_rule_denies_its_line_and_pays_the_rest(book, codec, build, carc, rarc, alone_denied):
    claim, ref = build(book)
    cal = quiet()
    result = adjudicate(claim, MemberState(), ref, cal, codec, NOW)
    remit = one(result)
    paid_line, denied_line = remit.lines
    assert denied_line.adjustments == [Adjustment(CO, carc, claim.lines[1].charge, 1)]
    assert (denied_line.allowed_amount, denied_line.paid_amount) == (ZERO, ZERO)
    assert denied_line.rarcs == ([rarc] if rarc else [])
    assert remit.rarcs == []  # a line's remark stays on the line
    assert paid_line.allowed_amount > ZERO and paid_line.rarcs == []
    assert all(a.carc in NOT_DENIALS for a in paid_line.adjustments)
    assert (remit.outcome, remit.claim_status_code) == (RemittanceOutcome.PARTIALLY_PAID, "1")
    assert result.denial_category == book.payers[claim.payer_id].category_of(carc)
    assert cal.rule_denied == 1
    # The line billed alone: a fully denied claim, except a bundled line, which has no E/M to go into.
    alone = dataclasses.replace(claim, claim_id="C9", lines=[dataclasses.replace(claim.lines[1], line_number=1)],
                                total_charge=claim.lines[1].charge)
    lone = one(adjudicate(alone, MemberState(), ref, quiet(), codec, NOW))
    if alone_denied:
        assert (lone.outcome, lone.claim_status_code, lone.lines[0].adjustments[0].carc) == (
            RemittanceOutcome.DENIED, "4", carc)
    else:
        assert (lone.outcome, lone.claim_status_code) == (RemittanceOutcome.PAID, "1")


def _just_covered_from_the_start(book):
    return make_claim("C1", [("99213", "140.00")]), reference(book, coverage(start=DOS))


def _just_covered_on_the_last_day(book):
    return make_claim("C1", [("99213", "140.00")]), reference(book, coverage(end=DOS))


def _filed_on_the_last_day(book):
    last = datetime.combine(DOS + timedelta(days=90), time(23, 59), tzinfo=UTC)
    return (make_claim("C1", [("99213", "140.00")], payer_id="PPO01", submitted_at=last),
            reference(book, coverage(payer="PPO01")))


def _authorization_valid_on_its_last_day(book):
    auth = Authorization("PA1", "PPO01", "M1", "20610", DOS - timedelta(days=30), DOS)
    expired = Authorization("PA0", "PPO01", "M1", "20610", DOS - timedelta(days=300), DOS - timedelta(days=200))
    return (make_claim("C1", [("99214", "210.00"), ("20610", "185.00")], payer_id="PPO01"),
            reference(book, coverage(payer="PPO01"), auths={("M1", "20610"): [expired, auth]}))


def _bundled_code_alone(book):
    return make_claim("C1", [("51798", "40.00")], payer_id="MCA01"), reference(book, coverage(payer="MCA01"))


def _bundled_code_with_a_preventive_visit(book):
    return (make_claim("C1", [("99396", "280.00"), ("51798", "40.00")], payer_id="MCA01"),
            reference(book, coverage(payer="MCA01")))


def _listed_code_at_a_payer_that_does_not_list_it(book):
    return (make_claim("C1", [("99214", "210.00"), ("51798", "40.00"), ("G0103", "28.00"), ("20610", "185.00")],
                       payer_id="MCR01"),
            reference(book, coverage()))


NO_RULE = {
    "dos-on-coverage-start": _just_covered_from_the_start,
    "dos-on-coverage-end": _just_covered_on_the_last_day,
    "filed-on-day-90-of-90": _filed_on_the_last_day,
    "authorization-valid-on-its-last-day": _authorization_valid_on_its_last_day,
    "51798-alone": _bundled_code_alone,
    "51798-with-a-preventive-code": _bundled_code_with_a_preventive_visit,
    "medicare-lists-nothing": _listed_code_at_a_payer_that_does_not_list_it,
}


@pytest.mark.parametrize("build", NO_RULE.values(), ids=NO_RULE.keys())
def test_no_rule_fires_just_inside_the_limits(book, codec, build):
    claim, ref = build(book)
    profile = book.payers[claim.payer_id]
    assert rule_denials(claim, profile, ref, MemberState(), None) == []
    remit = one(adjudicate(claim, MemberState(), ref, quiet(), codec, NOW))
    assert remit.outcome == RemittanceOutcome.PAID
    assert all(ln.allowed_amount > ZERO for ln in remit.lines)


def test_an_exact_duplicate_under_another_claim_id_is_oa_18(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    first = one(adjudicate(make_claim("C1", [("99213", "140.00"), ("36415", "18.00")]), state, ref, cal, codec, NOW))
    assert first.outcome == RemittanceOutcome.PAID
    duplicate = make_claim("C2", [("99213", "140.00"), ("36415", "18.00")])
    result = adjudicate(duplicate, state, ref, cal, codec, NOW)
    remit = one(result)
    assert (remit.outcome, remit.rarcs, result.denial_category) == (RemittanceOutcome.DENIED, ["M86"], "administrative")
    assert [ln.adjustments for ln in remit.lines] == [[Adjustment(OA, "18", Decimal("140.00"), 1)],
                                                      [Adjustment(OA, "18", Decimal("18.00"), 1)]]
    # Lines in another order are still the same claim; another charge, units or date is not.
    reordered = make_claim("C3", [("36415", "18.00"), ("99213", "140.00")])
    assert one(adjudicate(reordered, state, ref, cal, codec, NOW)).rarcs == ["M86"]
    for n, lines, dos in [(4, [("99213", "141.00"), ("36415", "18.00")], DOS),
                          (5, [("99213", "140.00"), ("36415", "18.00", 2)], DOS),
                          (6, [("99213", "140.00"), ("36415", "18.00")], DOS + timedelta(days=1))]:
        other = one(adjudicate(make_claim(f"C{n}", lines, date_of_service=dos), state, ref, cal, codec, NOW))
        assert other.outcome == RemittanceOutcome.PAID, n


def test_a_redelivered_claim_id_gives_nothing_and_changes_nothing(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), Calibration()
    claim = make_claim("C1", [("99213", "140.00")])
    first = adjudicate(claim, state, ref, cal, codec, NOW)
    assert len(first.remittances) == 1 and first.first_pass
    before, seen = state.dumps(), dataclasses.replace(cal, by_category=dict(cal.by_category))
    again = adjudicate(claim, state, ref, cal, codec, NOW + timedelta(hours=1))
    assert again == Adjudication([], None, False)
    assert state.dumps() == before and cal == seen


def test_a_claim_matching_a_voided_one_is_not_a_duplicate(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    lines = [("99213", "140.00")]
    adjudicate(make_claim("C1", lines), state, ref, cal, codec, NOW)
    void = adjudicate(make_claim("C1V", lines, frequency_code="8", original_claim_id="C1"), state, ref, cal, codec, NOW)
    assert [r.claim_status_code for r in void.remittances] == ["22"]
    again = one(adjudicate(make_claim("C2", lines), state, ref, cal, codec, NOW))
    assert again.outcome == RemittanceOutcome.PAID


def test_an_unknown_payer_is_an_error(book, codec):
    claim = make_claim("C1", [("99213", "140.00")], payer_id="NOPE9")
    with pytest.raises(ValueError, match="NOPE9"):
        adjudicate(claim, MemberState(), reference(book, coverage(payer="NOPE9")), Calibration(), codec, NOW)


# --- pricing ----------------------------------------------------------------------------


@pytest.mark.parametrize("payer, fees, code, units, charge, allowed", [
    ("MCR01", {"99213": "100.00"}, "99213", 1, "140.00", "42.00"),  # 100 × 0.42
    ("MCR01", {"99213": "100.00"}, "99213", 3, "420.00", "126.00"),  # per unit × units
    ("MCR01", {"99213": "1000.00"}, "99213", 1, "140.00", "140.00"),  # 420 capped at the charge
    ("MCR01", {}, "99213", 1, "140.00", "58.80"),  # no fee: the charge × factor
    ("PPO01", {"99213": "10.10"}, "99213", 1, "140.00", "6.57"),  # 6.565 rounds half up
    ("HMO01", {"99213": "100.00"}, "99213", 2, "150.00", "110.00"),
])
def test_allowed_is_fee_times_factor_capped_at_the_charge(book, payer, fees, code, units, charge, allowed):
    line = factories.make_claim_line(1, code, units=units, charge=charge, date_of_service=DOS)
    fee_schedule = {k: Decimal(v) for k, v in fees.items()}
    assert allowed_for(line, book.payers[payer], fee_schedule) == Decimal(allowed)


def test_co_45_is_billed_minus_allowed_on_each_line(book, codec):
    fees = {"99213": Decimal("100.00"), "80053": Decimal("1000.00"), "36415": Decimal("20.00")}
    claim = make_claim("C1", [("99213", "140.00"), ("80053", "62.00"), ("36415", "36.00", 2)], payer_id="MCA01")
    remit = one(adjudicate(claim, MemberState(), reference(book, coverage(payer="MCA01"), fees=fees), quiet(),
                           codec, NOW))
    office, capped, lab = remit.lines
    assert office.allowed_amount == Decimal("45.00")
    assert office.adjustments[0] == Adjustment(CO, "45", Decimal("95.00"))
    assert capped.allowed_amount == Decimal("62.00") and not any(a.carc == "45" for a in capped.adjustments)
    assert lab.allowed_amount == Decimal("18.00")  # 2 × 20 × 0.45
    assert lab.adjustments == [Adjustment(CO, "45", Decimal("18.00"))]  # lab: no cost share at MCA01
    assert remit.allowed_amount == Decimal("125.00")
    assert remit.paid_amount == remit.allowed_amount - Decimal("20.00")  # the office copay


# --- cost sharing and accumulators ------------------------------------------------------


def visit(claim_id: str, dos: date, code: str = "99214", charge: str = "500.00", **kw: Any) -> ClaimSubmitted:
    return make_claim(claim_id, [(code, charge)], date_of_service=dos, **kw)


def pr(remit: Remittance) -> list[tuple[str, Decimal]]:
    return [(a.carc, a.amount) for a in remit.all_adjustments() if a.group_code == PR]


def test_medicare_deductible_then_coinsurance_then_a_fresh_plan_year(book, codec):
    """MCR01: deductible 283, coinsurance 20 %. Each visit allows 1000 × 0.42 = 420."""
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    first = one(adjudicate(visit("C1", date(2026, 1, 12)), state, ref, cal, codec, NOW))
    second = one(adjudicate(visit("C2", date(2026, 2, 9)), state, ref, cal, codec, NOW))
    next_year = one(adjudicate(visit("C3", date(2027, 1, 5)), state, ref, cal, codec, NOW))
    assert pr(first) == [("1", Decimal("283.00")), ("2", Decimal("27.40"))]  # (420 − 283) × 20 %
    assert (first.allowed_amount, first.paid_amount, first.patient_responsibility) == (
        Decimal("420.00"), Decimal("109.60"), Decimal("310.40"))
    assert pr(second) == [("2", Decimal("84.00"))]
    assert second.paid_amount == Decimal("336.00") > first.paid_amount
    assert pr(next_year) == pr(first) and next_year.paid_amount == first.paid_amount
    assert state.accumulators == {
        2026: Accumulator(Decimal("283.00"), Decimal("394.40")),
        2027: Accumulator(Decimal("283.00"), Decimal("310.40")),
    }


def test_the_deductible_runs_through_the_lines_in_order(book, codec):
    claim = make_claim("C1", [("99213", "300.00"), ("99213", "300.00"), ("99213", "300.00")])  # 84 allowed each
    fees = {"99213": Decimal("500.00")}  # 210 allowed each
    remit = one(adjudicate(claim, MemberState(), reference(book, coverage(), fees=fees), quiet(), codec, NOW))
    assert [[(a.carc, a.amount) for a in ln.adjustments if a.group_code == PR] for ln in remit.lines] == [
        [("1", Decimal("210.00"))],
        [("1", Decimal("73.00")), ("2", Decimal("27.40"))],
        [("2", Decimal("42.00"))],
    ]
    assert [ln.paid_amount for ln in remit.lines] == [ZERO, Decimal("109.60"), Decimal("168.00")]


def with_plan(book: PayerBook, payer_id: str, **plan: Any) -> PayerBook:
    """The book with the payer's default plan replaced."""
    fields = {"deductible": ZERO, "coinsurance": ZERO, "oop_max": None, "copays": {}, "no_cost_share": frozenset()}
    fields.update(plan)
    profile: PayerProfile = dataclasses.replace(book.payers[payer_id], plans={"default": Plan(**fields)})
    return dataclasses.replace(book, payers={**book.payers, payer_id: profile})


OOP_CASES = {
    # PPO01 allows 400 × 0.65 = 260 per office visit.
    "coinsurance-cut-first": (dict(deductible=Decimal("100"), coinsurance=Decimal("0.5"), oop_max=Decimal("150")),
                              [("1", Decimal("100.00")), ("2", Decimal("50.00"))]),
    "then-the-deductible": (dict(deductible=Decimal("100"), coinsurance=Decimal("0.2"), oop_max=Decimal("60")),
                            [("1", Decimal("60.00"))]),
    "a-copay-too": (dict(coinsurance=Decimal("0.2"), oop_max=Decimal("20"), copays={"office": Decimal("30")}),
                    [("3", Decimal("20.00"))]),
    "under-the-cap": (dict(deductible=Decimal("100"), coinsurance=Decimal("0.5"), oop_max=Decimal("1000")),
                      [("1", Decimal("100.00")), ("2", Decimal("80.00"))]),
}


@pytest.mark.parametrize("plan, expected", OOP_CASES.values(), ids=OOP_CASES.keys())
def test_the_out_of_pocket_maximum_caps_the_patient_s_share(book, codec, plan, expected):
    custom = with_plan(book, "PPO01", **plan)
    ref = reference(custom, coverage(payer="PPO01"), fees={"99214": Decimal("400.00")})
    state, cal = MemberState(), quiet()
    first = one(adjudicate(visit("C1", DOS, payer_id="PPO01"), state, ref, cal, codec, NOW))
    assert pr(first) == expected
    assert first.paid_amount == Decimal("260.00") - total(a for _, a in expected)
    oop = plan["oop_max"]
    spent = total(a for _, a in expected)
    assert state.accumulators[DOS.year].oop_met == spent <= oop
    second = one(adjudicate(visit("C2", DOS + timedelta(days=7), payer_id="PPO01"), state, ref, cal, codec, NOW))
    if spent == oop:  # met: the plan pays everything it allows
        assert pr(second) == [] and second.paid_amount == Decimal("260.00")
    assert state.accumulators[DOS.year].oop_met <= oop


def test_office_copay_once_per_claim_and_no_deductible(book, codec):
    """PPO01 default plan: deductible 1500, office copay 30, coinsurance 20 %."""
    ref = reference(book, coverage(payer="PPO01"))
    state, cal = MemberState(), quiet()
    claim = make_claim("C1", [("99214", "210.00"), ("99213", "140.00"), ("80053", "62.00")], payer_id="PPO01")
    remit = one(adjudicate(claim, state, ref, cal, codec, NOW))
    office, second_office, lab = remit.lines
    assert [(a.carc, a.amount) for a in office.adjustments if a.group_code == PR] == [("3", Decimal("30.00"))]
    assert [a for a in second_office.adjustments if a.group_code == PR] == []  # copay taken, no deductible either
    assert [(a.carc, a.amount) for a in lab.adjustments if a.group_code == PR] == [("1", lab.allowed_amount)]
    assert state.accumulators[DOS.year] == Accumulator(lab.allowed_amount, Decimal("30.00") + lab.allowed_amount)
    again = one(adjudicate(make_claim("C2", [("99213", "140.00")], payer_id="PPO01",
                                      date_of_service=DOS + timedelta(days=3)), state, ref, cal, codec, NOW))
    assert pr(again) == [("3", Decimal("30.00"))]  # once per claim, not once per year


@pytest.mark.parametrize("plan_id, expected", [
    ("PPO01-GOLD", [("3", Decimal("20.00"))]),
    ("PPO01-SILVER", [("3", Decimal("30.00"))]),
    ("PPO01-BRONZE", [("1", Decimal("91.00"))]),  # no copay: the deductible takes all 140 × 0.65
])
def test_the_member_s_plan_decides_the_cost_sharing(book, codec, plan_id, expected):
    ref = reference(book, coverage(payer="PPO01", plan=plan_id), fees={"99213": Decimal("140.00")})
    remit = one(adjudicate(make_claim("C1", [("99213", "140.00")], payer_id="PPO01"), MemberState(), ref, quiet(),
                           codec, NOW))
    assert pr(remit) == expected


def test_a_copay_never_exceeds_what_is_allowed(book, codec):
    ref = reference(book, coverage(payer="MCA01"), fees={"99213": Decimal("10.00")})  # 4.50 allowed
    remit = one(adjudicate(make_claim("C1", [("99213", "140.00")], payer_id="MCA01"), MemberState(), ref, quiet(),
                           codec, NOW))
    assert pr(remit) == [("3", Decimal("4.50"))] and remit.paid_amount == ZERO
    assert remit.outcome == RemittanceOutcome.PAID and remit.payment_method == "NON"


def test_preventive_services_have_no_cost_share(book, codec):
    ref = reference(book, coverage())
    state = MemberState()
    claim = make_claim("C1", [("99396", "280.00"), ("80053", "62.00")])  # deductible not met at all
    remit = one(adjudicate(claim, state, ref, quiet(), codec, NOW))
    preventive, lab = remit.lines
    assert preventive.allowed_amount == Decimal("126.00")
    assert preventive.paid_amount == preventive.allowed_amount
    assert [a.group_code for a in preventive.adjustments] == [CO]
    assert [(a.carc, a.amount) for a in lab.adjustments if a.group_code == PR] == [("1", Decimal("42.00"))]
    assert state.accumulators[DOS.year] == Accumulator(Decimal("42.00"), Decimal("42.00"))


# --- replacements and voids ---------------------------------------------------------------


def negated(remit: Remittance) -> dict[str, Any]:
    """The amounts of a remittance, every one negated."""

    def adjustments(items: list[Adjustment]) -> list[tuple[str, str, Decimal, int | None]]:
        return [(str(a.group_code), a.carc, -a.amount, a.quantity) for a in items]

    return {
        "billed": -remit.billed_amount, "allowed": -remit.allowed_amount, "paid": -remit.paid_amount,
        "patient": -remit.patient_responsibility, "adjustments": adjustments(remit.adjustments),
        "lines": [(ln.line_number, ln.procedure_code, -ln.billed_amount, -ln.allowed_amount, -ln.paid_amount,
                   adjustments(ln.adjustments)) for ln in remit.lines],
    }


def amounts(remit: Remittance) -> dict[str, Any]:
    def adjustments(items: list[Adjustment]) -> list[tuple[str, str, Decimal, int | None]]:
        return [(str(a.group_code), a.carc, a.amount, a.quantity) for a in items]

    return {
        "billed": remit.billed_amount, "allowed": remit.allowed_amount, "paid": remit.paid_amount,
        "patient": remit.patient_responsibility, "adjustments": adjustments(remit.adjustments),
        "lines": [(ln.line_number, ln.procedure_code, ln.billed_amount, ln.allowed_amount, ln.paid_amount,
                   adjustments(ln.adjustments)) for ln in remit.lines],
    }


def test_a_replacement_reverses_the_original_then_pays_itself(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    original = one(adjudicate(visit("C1", DOS), state, ref, cal, codec, NOW))
    assert pr(original) == [("1", Decimal("283.00")), ("2", Decimal("27.40"))]
    replacement = make_claim("C1R", [("99214", "500.00"), ("36415", "18.00")], frequency_code="7",
                             original_claim_id="C1", submitted_at=SUBMITTED + timedelta(days=20))
    result = adjudicate(replacement, state, ref, cal, codec, NOW)
    reversal, own = result.remittances
    assert (result.first_pass, result.denial_category) == (False, None)
    assert (reversal.claim_id, reversal.claim_status_code, reversal.outcome) == (
        "C1", "22", RemittanceOutcome.REVERSED)
    assert reversal.payer_claim_control_number == original.payer_claim_control_number
    assert amounts(reversal) == negated(original)
    assert reversal.billed_amount - total(a.amount for a in reversal.all_adjustments()) == reversal.paid_amount
    assert (reversal.payment_date, reversal.claim_frequency_code) == (own.payment_date, "7")
    assert reversal.remittance_id != original.remittance_id
    assert (own.claim_id, own.claim_status_code, own.outcome, own.claim_frequency_code) == (
        "C1R", "1", RemittanceOutcome.PAID, "7")
    assert own.payer_claim_control_number == payer_claim_control_number("C1R")
    # The reversal gave the deductible back; the replacement took it again.
    # 99214: 420 allowed; 36415: 20 × 0.42 = 8.40 allowed, the deductible already met → 20 % of it.
    assert pr(own) == [("1", Decimal("283.00")), ("2", Decimal("27.40")), ("2", Decimal("1.68"))]
    assert state.accumulators[DOS.year] == Accumulator(Decimal("283.00"), own.patient_responsibility)
    assert state.claims["C1"].reversed and not state.claims["C1R"].reversed


def test_a_replacement_may_name_the_payer_s_claim_control_number(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    original = one(adjudicate(visit("C1", DOS), state, ref, cal, codec, NOW))
    result = adjudicate(visit("C1R", DOS, frequency_code="7", original_claim_id=original.payer_claim_control_number),
                        state, ref, cal, codec, NOW)
    assert [(r.claim_id, r.claim_status_code) for r in result.remittances] == [("C1", "22"), ("C1R", "1")]


def test_a_void_only_reverses_and_gives_the_accumulators_back(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    original = one(adjudicate(visit("C1", DOS), state, ref, cal, codec, NOW))
    result = adjudicate(visit("C1V", DOS, frequency_code="8", original_claim_id="C1"), state, ref, cal, codec, NOW)
    reversal = one(result)
    assert (reversal.claim_id, reversal.claim_status_code, reversal.outcome, reversal.claim_frequency_code) == (
        "C1", "22", RemittanceOutcome.REVERSED, "8")
    assert amounts(reversal) == negated(original)
    assert state.accumulators[DOS.year] == Accumulator(ZERO, ZERO)
    assert state.claims["C1"].reversed and state.claims["C1V"].reversed
    # A later visit takes the whole deductible again.
    later = one(adjudicate(visit("C2", DOS + timedelta(days=1)), state, ref, cal, codec, NOW))
    assert pr(later)[0] == ("1", Decimal("283.00"))


def test_replacing_an_already_reversed_original_is_129(book, codec):
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    adjudicate(visit("C1", DOS), state, ref, cal, codec, NOW)
    assert len(adjudicate(visit("C1R", DOS, frequency_code="7", original_claim_id="C1"), state, ref, cal, codec,
                          NOW).remittances) == 2
    accumulators = dict(state.accumulators)
    for claim_id, frequency in [("C1R2", "7"), ("C1V", "8")]:
        again = one(adjudicate(visit(claim_id, DOS, frequency_code=frequency, original_claim_id="C1"), state, ref, cal,
                               codec, NOW))
        assert (again.claim_id, again.outcome) == (claim_id, RemittanceOutcome.DENIED)
        assert {a.carc for a in again.all_adjustments()} == {"129"}
    assert state.accumulators == accumulators
    # The chain goes on from the replacement.
    chained = adjudicate(visit("C1R3", DOS, frequency_code="7", original_claim_id="C1R"), state, ref, cal, codec, NOW)
    assert [(r.claim_id, r.claim_status_code) for r in chained.remittances] == [("C1R", "22"), ("C1R3", "1")]


def bundled_original(book: PayerBook, codec: Any) -> tuple[MemberState, PayerReference, Remittance]:
    """An MCA01 visit whose 51798 line is bundled into the E/M (CO-97): partially paid."""
    ref = reference(book, coverage(payer="MCA01"))
    state = MemberState()
    lines = [("99214", "210.00"), ("51798", "40.00")]
    original = one(adjudicate(make_claim("C1", lines, payer_id="MCA01"), state, ref, quiet(), codec, NOW))
    assert original.outcome == RemittanceOutcome.PARTIALLY_PAID and original.paid_amount > ZERO
    return state, ref, original


def test_a_replacement_with_a_line_denial_still_reverses_the_original(book, codec):
    state, ref, original = bundled_original(book, codec)
    replacement = make_claim("C1R", [("99214", "210.00"), ("51798", "40.00")], payer_id="MCA01", frequency_code="7",
                             original_claim_id="C1")
    result = adjudicate(replacement, state, ref, quiet(), codec, NOW)
    assert [(r.claim_id, r.claim_status_code) for r in result.remittances] == [("C1", "22"), ("C1R", "1")]
    assert state.claims["C1"].reversed
    assert state.accumulators[DOS.year].oop_met == Decimal("20.00")  # one office copay, not two


def test_a_void_with_a_bundled_line_only_reverses(book, codec):
    state, ref, original = bundled_original(book, codec)
    void = make_claim("C1V", [("99214", "210.00"), ("51798", "40.00")], payer_id="MCA01", frequency_code="8",
                      original_claim_id="C1")
    result = adjudicate(void, state, ref, quiet(), codec, NOW)
    assert [(r.claim_id, r.claim_status_code, r.outcome) for r in result.remittances] == [
        ("C1", "22", RemittanceOutcome.REVERSED)]
    assert state.accumulators[DOS.year] == Accumulator(ZERO, ZERO)


# --- balancing over thousands of claims ----------------------------------------------------


class World:
    """Seeded members, authorizations and claims over every payer, in arrival order:
    several visits per member across a plan-year boundary, 1–6 lines of fee-schedule
    codes, some charges under the fee, some late filings, lapsed and not-yet-started
    coverage, exact duplicates, replacements and voids (some of unknown or already
    reversed originals)."""

    def __init__(self, book: PayerBook, fees: dict[str, Decimal], seed: str, members_per_payer: int) -> None:
        rng = random.Random(seed)
        codes = sorted(fees)
        self.members: dict[str, Coverage] = {}
        self.auths: dict[tuple[str, str], list[Authorization]] = {}
        self.claims: list[ClaimSubmitted] = []
        first_day = date(2025, 11, 1)
        for payer_id in sorted(book.payers):
            profile = book.payers[payer_id]
            for m in range(members_per_payer):
                member_id = f"{payer_id}{m:06d}"
                draw = rng.random()
                start, end = SINCE, None
                if draw < 0.04:
                    end = first_day + timedelta(days=rng.randrange(30, 150))
                elif draw < 0.07:
                    start = first_day + timedelta(days=rng.randrange(30, 150))
                tier = rng.choice(("GOLD", "SILVER", "BRONZE"))
                self.members[member_id] = Coverage(member_id, payer_id, f"{payer_id}-{tier}", "18", None, start, end)
                for code in sorted(profile.prior_auth_codes.codes):
                    d = rng.random()
                    if d < 0.85:
                        self.auths[(member_id, code)] = [
                            Authorization(f"PA{m}", payer_id, member_id, code, first_day, date(2026, 12, 31))]
                    elif d < 0.90:
                        self.auths[(member_id, code)] = [
                            Authorization(f"PA{m}", payer_id, member_id, code, date(2025, 1, 1), date(2025, 6, 30))]
                mine: list[ClaimSubmitted] = []
                for v in range(rng.randint(3, 6)):
                    dos = first_day + timedelta(days=rng.randrange(0, 180))
                    lag = rng.randrange(1, 25) if rng.random() > 0.03 else rng.randrange(100, 400)
                    lines = []
                    for _ in range(rng.randint(1, 6)):
                        code = rng.choice(codes)
                        units = rng.randint(1, 3)
                        factor = rng.choice((Decimal(1), Decimal(1), Decimal(1), Decimal("0.3"), Decimal("1.5")))
                        lines.append((code, money(fees[code] * units * factor), units))
                    claim = make_claim(f"C{member_id}V{v}", lines, payer_id=payer_id, member_id=member_id,
                                       date_of_service=dos,
                                       submitted_at=datetime.combine(dos + timedelta(days=lag), time(10), tzinfo=UTC))
                    self.claims.append(claim)
                    mine.append(claim)
                    follow = rng.random()
                    target = rng.choice(mine)
                    if follow < 0.10:  # a corrected claim: a line more or less, or other units
                        new_lines = [(ln.procedure_code, ln.charge, ln.units) for ln in target.lines]
                        if len(new_lines) > 1 and rng.random() < 0.5:
                            new_lines.pop()
                        else:
                            new_lines.append((rng.choice(codes), Decimal("25.00"), 1))
                        fix = make_claim(f"{target.claim_id}R{v}", new_lines, payer_id=payer_id, member_id=member_id,
                                         date_of_service=target.date_of_service, frequency_code="7",
                                         original_claim_id=target.claim_id,
                                         submitted_at=claim.submitted_at + timedelta(days=1))
                        self.claims.append(fix)
                        mine.append(fix)
                    elif follow < 0.14:
                        self.claims.append(dataclasses.replace(
                            target, claim_id=f"{target.claim_id}X{v}", frequency_code="8",
                            original_claim_id=target.claim_id, submitted_at=claim.submitted_at + timedelta(days=1)))
                    elif follow < 0.16:
                        self.claims.append(dataclasses.replace(
                            target, claim_id=f"{target.claim_id}U{v}", frequency_code="7",
                            original_claim_id="C-NEVER-SEEN"))
                    elif follow < 0.19 and target.frequency_code == "1":
                        self.claims.append(dataclasses.replace(target, claim_id=f"{target.claim_id}D{v}"))


@pytest.fixture(scope="module")
def world(book, fees) -> World:
    return World(book, fees.charges, "balancing-world", members_per_payer=150)


@pytest.fixture(scope="module")
def adjudicated(world, book, fees, codec) -> tuple[list[tuple[ClaimSubmitted, Adjudication]], dict[str, MemberState]]:
    ref = PayerReference(book, world.members, world.auths, fees.charges, 5)
    states: dict[str, MemberState] = {}
    calibration: dict[str, Calibration] = {}
    results = []
    for claim in world.claims:
        state = states.setdefault(claim.member_id, MemberState())
        cal = calibration.setdefault(claim.payer_id, Calibration())
        results.append((claim, adjudicate(claim, state, ref, cal, codec, NOW)))
    return results, states


def check_balances(remit: Remittance) -> None:
    everything = remit.all_adjustments()
    for ln in remit.lines:
        assert ln.billed_amount - total(a.amount for a in ln.adjustments) == ln.paid_amount, ln
        assert all(a.amount == a.amount.quantize(CENTS) for a in ln.adjustments)
    assert remit.billed_amount - total(a.amount for a in everything) == remit.paid_amount
    assert remit.patient_responsibility == total(a.amount for a in everything if a.group_code == PR)
    assert remit.paid_amount == total(ln.paid_amount for ln in remit.lines)
    assert remit.allowed_amount == total(ln.allowed_amount for ln in remit.lines)
    assert remit.billed_amount == total(ln.billed_amount for ln in remit.lines)


def test_the_world_is_big_and_varied(world, adjudicated):
    results, _ = adjudicated
    assert len(world.claims) >= 3000
    frequencies = Counter(c.frequency_code for c in world.claims)
    assert frequencies["7"] > 150 and frequencies["8"] > 50
    remits = [r for _, result in results for r in result.remittances]
    assert {r.outcome for r in remits} == set(RemittanceOutcome)
    assert sum(r.claim_status_code == "22" for r in remits) > 200
    carcs = {a.carc for r in remits for a in r.all_adjustments()}
    assert {"1", "2", "3", "45", "18", "26", "27", "29", "129", "197", "15", "96", "204", "97", "234"} <= carcs
    assert len({(c.payer_id, c.date_of_service.year) for c in world.claims}) == 10  # two plan years per payer


def test_every_remittance_balances_on_the_claim_and_every_line(adjudicated, book, fees):
    results, _ = adjudicated
    answers: dict[str, Remittance] = {}
    checked = 0
    for claim, result in results:
        profile = book.payers[claim.payer_id]
        for remit in result.remittances:
            check_balances(remit)
            checked += 1
            if remit.claim_status_code == "22":
                original = answers[remit.claim_id]
                assert remit.outcome == RemittanceOutcome.REVERSED
                assert amounts(remit) == negated(original)
                assert remit.payer_claim_control_number == original.payer_claim_control_number
                continue
            answers[remit.claim_id] = remit
            assert remit.claim_id == claim.claim_id and remit.billed_amount == claim.total_charge
            low, _, high = profile.latency_days
            assert low <= (remit.payment_date - claim.submitted_at.date()).days <= high
            fully_denied = all(ln.allowed_amount == ZERO and ln.paid_amount == ZERO for ln in remit.lines) and any(
                a.carc not in NOT_DENIALS for a in remit.all_adjustments())
            assert (remit.outcome == RemittanceOutcome.DENIED) == fully_denied == (remit.claim_status_code == "4")
            for claim_line, ln in zip(claim.lines, remit.lines, strict=True):
                assert ln.paid_amount >= ZERO and ZERO <= ln.allowed_amount <= ln.billed_amount == claim_line.charge
                assert all(a.amount > ZERO for a in ln.adjustments)
                denials = [a for a in ln.adjustments if a.carc not in NOT_DENIALS]
                if denials:  # a denied line: one CAS for the whole charge
                    assert ln.adjustments == denials and len(denials) == 1
                    assert (ln.allowed_amount, denials[0].amount) == (ZERO, ln.billed_amount)
                    continue
                assert ln.allowed_amount == allowed_for(claim_line, profile, fees.charges)
                co45 = total(a.amount for a in ln.adjustments if a.carc == "45")
                assert co45 == ln.billed_amount - ln.allowed_amount
                shares = Counter(a.carc for a in ln.adjustments if a.group_code == PR)
                assert all(n == 1 for n in shares.values()) and not ("3" in shares and "1" in shares)
            copays = Counter(book.service_type(ln.procedure_code) for ln in remit.lines
                             for a in ln.adjustments if a.carc == "3")
            assert all(n == 1 for n in copays.values())  # once per claim per service type
    assert checked > len(results)


def test_accumulators_are_the_sum_of_the_patient_s_shares_and_within_the_plan(adjudicated, world, book):
    """Reversals unwind what the original charged; everything else adds up."""
    results, states = adjudicated
    deductible: Counter[tuple[str, int]] = Counter()
    oop: Counter[tuple[str, int]] = Counter()
    for claim, result in results:
        for remit in result.remittances:
            key = (claim.member_id, remit.date_of_service.year)
            for a in remit.all_adjustments():
                if a.group_code == PR:
                    oop[key] += a.amount
                    deductible[key] += a.amount if a.carc == "1" else ZERO
    seen = 0
    for member_id, state in states.items():
        coverage_ = world.members[member_id]
        plan = book.payers[coverage_.payer_id].plan(coverage_.plan_id)
        for year, acc in state.accumulators.items():
            assert (acc.deductible_met, acc.oop_met) == (deductible[(member_id, year)], oop[(member_id, year)])
            assert ZERO <= acc.deductible_met <= plan.deductible
            assert plan.oop_max is None or acc.oop_met <= plan.oop_max
            seen += acc.oop_met > ZERO
    assert seen > 500


def test_adjudication_is_deterministic_for_a_seed(world, book, fees, codec):
    def run(seed: int) -> list[Remittance]:
        ref = PayerReference(book, world.members, world.auths, fees.charges, seed)
        states: dict[str, MemberState] = {}
        cal: dict[str, Calibration] = {}
        return [r for claim in world.claims[:400] for r in adjudicate(
            claim, states.setdefault(claim.member_id, MemberState()), ref,
            cal.setdefault(claim.payer_id, Calibration()), codec, NOW).remittances]

    first, again, other = run(5), run(5), run(6)
    assert first == again
    changed = sum(a.outcome != b.outcome or a.payment_date != b.payment_date for a, b in zip(first, other, strict=True))
    assert changed > 20


# --- calibration to the published figures ---------------------------------------------------


class MemoCodec:
    """Stands in for the Avro codec where nothing is read back through Kafka: the
    member state keeps a token, and decoding gives the same remittance back."""

    def __init__(self) -> None:
        self.store: dict[bytes, Any] = {}

    def encode(self, event: Any) -> bytes:
        token = str(len(self.store)).encode()
        self.store[token] = event
        return token

    def decode(self, data: bytes, event_type: type) -> Any:
        event = self.store[data]
        assert isinstance(event, event_type)
        return event


CLAIMS_PER_PAYER = 5000


@pytest.fixture(scope="module")
def first_pass(book, fees) -> dict[str, dict[str, Any]]:
    """Per payer, 5,000 first-pass claims of the EHR simulator's visit mix (1,250 members,
    4 visits each, prior authorizations as the EHR issues them), adjudicated in order:
    a summary-shaped tally (``engine.ops.reconciliation``: the deciding CARC is the first denial
    adjustment) and the categories adjudicate() reported."""
    weights = [v.weight for v in VISITS]
    tally: dict[str, dict[str, Any]] = {}
    for payer_id, profile in book.payers.items():
        rng = random.Random(f"calibration:{payer_id}")
        members, auths, claims = {}, {}, []
        for m in range(CLAIMS_PER_PAYER // 4):
            member_id = f"{payer_id}{m:06d}"
            members[member_id] = Coverage(member_id, payer_id, f"{payer_id}-{rng.choice(('GOLD', 'SILVER'))}", "18",
                                          None, SINCE, None)
            for code in sorted(profile.prior_auth_codes.codes):
                draw = rng.random()
                if draw < book.authorization_valid:
                    auths[(member_id, code)] = [
                        Authorization("PA", payer_id, member_id, code, SINCE, date(2026, 12, 31))]
                elif draw < book.authorization_valid + book.authorization_expired:
                    auths[(member_id, code)] = [Authorization("PA", payer_id, member_id, code, SINCE, date(2025, 1, 1))]
            for v in range(4):
                template = rng.choices(VISITS, weights=weights, k=1)[0]
                lines = [(code, money(fees.charges[code] * units), units) for code, _, units, _ in template.lines]
                claims.append(make_claim(f"C{member_id}V{v}", lines, payer_id=payer_id, member_id=member_id,
                                         date_of_service=DOS - timedelta(days=rng.randrange(0, 60))))
        rng.shuffle(claims)
        ref = PayerReference(book, members, auths, fees.charges, 1)
        cal, codec = Calibration(), MemoCodec()
        states: dict[str, MemberState] = {}
        deciding: Counter[str] = Counter()
        reported: Counter[str] = Counter()
        by_rule: Counter[str] = Counter()
        for claim in claims:
            rule_denied = cal.rule_denied
            result = adjudicate(claim, states.setdefault(claim.member_id, MemberState()), ref, cal, codec, NOW)
            remit = one(result)
            decider = next((a for a in remit.all_adjustments() if a.group_code != PR and a.carc not in NOT_DENIALS),
                           None)
            if decider is not None:
                deciding[decider.carc] += 1
                reported[result.denial_category] += 1
                if cal.rule_denied > rule_denied:
                    by_rule[decider.carc] += 1
            else:
                assert result.denial_category is None
        denied = sum(deciding.values())
        tally[payer_id] = {"claims": len(claims), "denied": denied, "denial_rate": round(denied / len(claims), 4),
                           "deciding_carcs": dict(deciding), "reported": reported, "by_rule": by_rule,
                           "calibration": cal}
    return tally


def test_first_pass_denial_rates_are_within_3_points_of_the_profile(first_pass, book):
    for payer_id, seen in first_pass.items():
        assert seen["claims"] == CLAIMS_PER_PAYER
        target = book.payers[payer_id].first_pass_denial_rate
        assert abs(seen["denial_rate"] - target) <= RATE_TOLERANCE == 0.03, (payer_id, seen["denial_rate"], target)
        assert seen["calibration"].claims == CLAIMS_PER_PAYER and seen["calibration"].denied == seen["denied"]


def test_category_shares_are_within_5_points_of_the_profile(first_pass, book):
    for payer_id, seen in first_pass.items():
        profile = book.payers[payer_id]
        by_category = Counter({c.name: 0 for c in profile.categories})
        for carc, n in seen["deciding_carcs"].items():
            by_category[profile.category_of(carc)] += n
        assert by_category == seen["reported"] + Counter({c.name: 0 for c in profile.categories})
        for category in profile.categories:
            share = by_category[category.name] / seen["denied"]
            assert abs(share - category.share) <= CATEGORY_TOLERANCE == 0.05, (payer_id, category.name, share)


def test_profile_fit_reports_every_payer_within_tolerance(first_pass, book):
    summary = {p: {k: seen[k] for k in ("claims", "denied", "denial_rate", "deciding_carcs")}
               for p, seen in first_pass.items()}
    report = profile_fit(summary, book)
    assert set(report) == set(book.payers)
    for payer_id, fit in report.items():
        assert fit["within_tolerance"], (payer_id, fit)
        assert fit["target_rate"] == book.payers[payer_id].first_pass_denial_rate
        assert sum(fit["category_shares"].values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("payer_id, rule_carcs", [
    ("MCR01", {"18"}),  # Medicare lists nothing: only the same visit twice on one day
    ("MCA01", {"18", "197", "15", "96", "97"}),
    ("MCD01", {"18", "197", "15", "204", "97"}),
    ("PPO01", {"18", "197", "15", "204"}),
    ("HMO01", {"18", "197", "15", "234"}),
])
def test_the_rules_deny_on_their_own_and_the_draw_makes_up_the_rest(first_pass, payer_id, rule_carcs):
    seen = first_pass[payer_id]
    cal = seen["calibration"]
    assert set(seen["by_rule"]) == rule_carcs
    assert sum(seen["by_rule"].values()) == cal.rule_denied < cal.denied / 2


def test_profile_fit_flags_a_run_off_its_figures(book):
    summary = {"MCR01": {"claims": 1000, "denied": 200, "denial_rate": 0.2, "deciding_carcs": {"96": 200}},
               "NOPE9": {"claims": 5, "denied": 0, "denial_rate": 0.0, "deciding_carcs": {}},
               "PPO01": {"claims": 0, "denied": 0, "denial_rate": 0.0, "deciding_carcs": {}}}
    report = profile_fit(summary, book)
    assert list(report) == ["MCR01"]  # unknown payers and empty tallies are left out
    assert report["MCR01"]["within_tolerance"] is False
    assert report["MCR01"]["category_shares"]["excluded-service"] == 1.0


def test_profile_fit_with_a_payer_s_own_categories_and_an_unlisted_carc(settings, tmp_path):
    doc = yaml.safe_load(settings.payer_profiles_file.read_text())
    doc["payers"][0]["denial_categories"] = {
        "administrative": {"share": 1, "reasons": [{"carc": "16", "group": "CO", "rarc": "MA130"}]},
        "coding": {"share": 1, "reasons": [{"carc": "4", "group": "CO", "scope": "line"}]},
    }
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    custom = PayerBook.load(path)
    summary = {"MCR01": {"claims": 100, "denied": 10, "denial_rate": 0.1,
                         "deciding_carcs": {"16": 5, "4": 4, "253": 1}}}  # 253: sequestration, from an 835
    report = profile_fit(summary, custom)
    shares = report["MCR01"]["category_shares"]
    assert (shares["administrative"], shares["coding"]) == (0.5, 0.4)


def test_denial_probability_leans_against_the_running_deficit(book):
    profile = book.payers["MCR01"]  # target 8.4 %
    fresh = denial_probability(profile, Calibration())
    behind = denial_probability(profile, Calibration(claims=100, denied=4))
    on_target = denial_probability(profile, Calibration(claims=1000, denied=84))
    ahead = denial_probability(profile, Calibration(claims=100, denied=9))
    far_ahead = denial_probability(profile, Calibration(claims=100, denied=30))
    far_behind = denial_probability(profile, Calibration(claims=1000, denied=0))
    assert fresh == pytest.approx(0.084) == on_target
    assert far_behind == 1.0 > behind > fresh > ahead > far_ahead == 0.0
    assert behind == pytest.approx(0.084 + 4.4 / 20)
    # Denials by the rules leave less for the draw to deny.
    by_rules = denial_probability(profile, Calibration(claims=1000, denied=84, rule_denied=50))
    assert by_rules == pytest.approx((0.084 - 0.05) / 0.95)


def test_pick_category_favours_the_lagging_category(book):
    profile = book.payers["PPO01"]
    on_share = {c.name: round(c.share * 200) for c in profile.categories}
    rng = random.Random(3)
    for lagging in ("medical-necessity", "other", "administrative"):
        cal = Calibration(claims=2000, denied=200, by_category={**on_share, lagging: 0})
        picks = Counter(pick_category(profile, cal, rng).name for _ in range(1000))
        assert picks.most_common(1)[0][0] == lagging and picks[lagging] > 800, picks
    # Every category over its share: the plain shares.
    cal = Calibration(claims=2000, denied=200, by_category={c.name: 1000 for c in profile.categories})
    picks = Counter(pick_category(profile, cal, rng).name for _ in range(4000))
    assert picks.keys() == {c.name for c in profile.categories}
    assert picks["other"] / 4000 == pytest.approx(34 / 95, abs=0.04)


# --- time, identity and state --------------------------------------------------------------


@pytest.mark.parametrize("scale, seconds_later", [(0, 0.0), (-1, 0.0), (86_400, 17.0), (1_728_000, 0.85),
                                                  (1.0, 17 * 86_400.0)])
def test_release_at_compresses_simulated_days(scale, seconds_later):
    claim = make_claim("C1", [("99213", "140.00")], submitted_at=datetime(2026, 3, 4, 9, 0, tzinfo=UTC))
    released = release_at(claim, date(2026, 3, 21), scale)
    assert released == pytest.approx(claim.submitted_at.timestamp() + seconds_later)


def test_remittance_ids_are_deterministic_and_distinct():
    rid = remittance_id("MCR01", "P0011", "1", "EFT20260320MCR01")
    assert rid == remittance_id("MCR01", "P0011", "1", "EFT20260320MCR01")
    assert rid.startswith("R") and len(rid) == 17
    others = {remittance_id("MCR01", "P0011", "22", "EFT20260320MCR01"),
              remittance_id("MCR01", "P0012", "1", "EFT20260320MCR01"),
              remittance_id("MCR01", "P0011", "1", "EFT20260321MCR01"),
              remittance_id("PPO01", "P0011", "1", "EFT20260320MCR01")}
    assert rid not in others and len(others) == 4


def test_member_state_round_trips(book, codec):
    state = MemberState(
        accumulators={2025: Accumulator(Decimal("283.00"), Decimal("1234.56")), 2026: Accumulator(ZERO, ZERO)},
        claims={"C1": AdjudicatedClaim("C1", "ab12", "1", b"\x00\x00\x00\x00\x0f\xff\x00", reversed=True),
                "C2": AdjudicatedClaim("C2", "cd34", "7", b"")},
        pending=[PendingPayment(1_772_000_000.25, b"\x00\x01\xfe"), PendingPayment(1.0, b"x")],
    )
    again = MemberState.loads(state.dumps())
    assert again == state
    assert again.dumps() == state.dumps()
    assert MemberState.loads(None) == MemberState() == MemberState.loads("")


def test_adjudication_goes_on_from_a_reloaded_state(book, codec):
    """The state a faust table keeps as a string is all a payer needs: duplicates,
    reversals and accumulators work across a reload."""
    ref = reference(book, coverage())
    state, cal = MemberState(), quiet()
    original = one(adjudicate(visit("C1", DOS), state, ref, cal, codec, NOW))
    reloaded = MemberState.loads(state.dumps())
    assert reloaded == state
    assert one(adjudicate(visit("C2", DOS), reloaded, ref, cal, codec, NOW)).rarcs == ["M86"]
    reloaded = MemberState.loads(reloaded.dumps())
    reversal, _ = adjudicate(visit("C1R", DOS, frequency_code="7", original_claim_id="C1", charge="450.00"), reloaded,
                             ref, cal, codec, NOW).remittances
    assert amounts(reversal) == negated(original)
    assert reloaded.accumulators[DOS.year].deductible_met == Decimal("283.00")
