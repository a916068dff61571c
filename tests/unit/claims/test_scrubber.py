"""engine.claims.scrubber: every rule with failing and passing cases, boundaries included.

Claims are built by hand: ``claim()`` is a complete, clean ClaimSubmitted (v2 fields
filled) and each case changes one thing with ``dataclasses.replace``. A failing case
names exactly the errors it must raise, so a case cannot pass by tripping another rule.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from engine.claims import scrubber
from engine.claims.scrubber import (
    SCRUB_RULE_IDS,
    SCRUB_RULES,
    TIMELY_FILING_NEAR_MARGIN,
    ScrubContext,
    load_places_of_service,
    scrub_claim,
    scrub_item_id,
)
from engine.model.events import (
    Address,
    ClaimLine,
    ClaimSubmitted,
    EligibilityResponse,
    EligibilityStatus,
    Finding,
    Severity,
    Subscriber,
)
from engine.reference.master_data import PayerInfo
from engine.settings import DATA_DIR
from engine.x12.claim_837_write import claim_problems
from tests.factories import make_claim, make_claim_line, make_provider

TODAY = date(2026, 11, 25)
DOS = date(2026, 11, 2)
TOMORROW = TODAY + timedelta(days=1)
OFFICE = Address("100 MAIN ST", "DENVER", "CO", "802021234")
HOME = Address("12 ELM ST", "AURORA", "CO", "800101234")
PPO = PayerInfo("PPO01", "COMMERCIAL PPO", "CI", 90, "PPO01")
MEDICARE = PayerInfo("MCR01", "MEDICARE PART B", "MB", 365, "MCR01")
PLACES = load_places_of_service(DATA_DIR / "place_of_service.csv")
BILLING = make_provider(npi="1234567893", entity_type="2", name="CLAIMFLOW FAMILY MEDICINE", first_name="",
                        taxonomy="261QP2300X", tax_id="841234567", address=OFFICE)
RENDERING = make_provider(npi="1912301953")
PARENT = Subscriber("19", "LI", "CHEN", date(1984, 1, 2), "M", HOME, "GRP-100")


def lines_on(day: date) -> list[ClaimLine]:
    return [
        make_claim_line(1, "99213", charge="140.00", dx_pointers=[1, 2], date_of_service=day),
        make_claim_line(2, "36415", charge="18.00", date_of_service=day),
    ]


def claim(**changes: object) -> ClaimSubmitted:
    """A complete, clean office visit: a 99213 and a venipuncture for an adult who is her
    own subscriber, billed by the group for one of its physicians; tests change one thing
    (and only that: nothing is derived again from a change)."""
    base = make_claim(
        "C8F3A2B1C0D9E8F70", lines_on(DOS), encounter_id="ENC-1001",
        encounter_occurred_at=datetime(2026, 11, 2, 15, 30, tzinfo=UTC),
        payer_id="PPO01", member_id="PPO123456789", patient_id="MRN-000417",
        billing_npi=BILLING.npi, rendering_npi=RENDERING.npi, date_of_service=DOS,
        diagnoses=["I10", "E78.5"], submitted_at=datetime(2026, 11, 25, 9, tzinfo=UTC),
        billing_provider=BILLING, rendering_provider=RENDERING,
        payer_name="COMMERCIAL PPO", claim_filing_indicator="CI",
        subscriber=Subscriber("18", "ANA", "CHEN", date(1970, 5, 17), "F", HOME, "GRP-100"),
        patient_first_name="ANA", patient_last_name="CHEN", patient_birth_date=date(1970, 5, 17), patient_sex="F",
        patient_address=HOME,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def answer(start: date | None = date(2020, 1, 1), end: date | None = None,
           status: EligibilityStatus = EligibilityStatus.ACTIVE) -> EligibilityResponse:
    return EligibilityResponse("ER-1", "ENC-1001", "PPO01", "PPO123456789", DOS, status, "PPO01-GOLD", start, end,
                               Decimal("30.00"), Decimal("0.00"), None, datetime(2026, 11, 3, tzinfo=UTC))


def context(**changes: object) -> ScrubContext:
    return replace(ScrubContext(PPO, answer(), TODAY, PLACES), **changes)  # type: ignore[arg-type]


def errors(c: ClaimSubmitted, ctx: ScrubContext) -> list[tuple[str, str]]:
    return sorted((f.rule_id, f.element) for f in scrub_claim(c, ctx) if f.severity == Severity.ERROR)


def dependent(**changes: object) -> ClaimSubmitted:
    """The patient is a child on her father's policy."""
    return claim(subscriber=replace(PARENT, **changes), patient_first_name="MIA", patient_birth_date=date(2015, 6, 1))


def days_after_dos(days: int) -> ScrubContext:
    return context(today=DOS + timedelta(days=days))


# --- failing cases: exactly these errors ------------------------------------------------

REQ = "SCRUB_REQUIRED"
NPI = "SCRUB_NPI_INVALID"
LINE_INVALID = "SCRUB_LINE_INVALID"

FAILING = [
    # SCRUB_NPI_INVALID: check digit (Luhn over 80840 + the first nine), first digit, length
    pytest.param(claim(billing_npi="1234567890", billing_provider=replace(BILLING, npi="1234567890")), context(),
                 [(NPI, "billing_provider.npi")], id="npi-billing-check-digit"),
    pytest.param(claim(rendering_npi="1912301954", rendering_provider=replace(RENDERING, npi="1912301954")),
                 context(), [(NPI, "rendering_provider.npi")], id="npi-rendering-check-digit"),
    pytest.param(claim(rendering_npi="3912301953", rendering_provider=replace(RENDERING, npi="3912301953")),
                 context(), [(NPI, "rendering_provider.npi")], id="npi-first-digit-not-1-or-2"),
    pytest.param(claim(rendering_npi="191230195", rendering_provider=replace(RENDERING, npi="191230195")),
                 context(), [(NPI, "rendering_provider.npi")], id="npi-nine-digits"),
    pytest.param(claim(billing_npi="12345678X3", billing_provider=replace(BILLING, npi="12345678X3")), context(),
                 [(NPI, "billing_provider.npi")], id="npi-not-digits"),
    # SCRUB_REQUIRED: one finding per missing element
    pytest.param(claim(patient_control_number=""), context(), [(REQ, "patient_control_number")], id="req-pcn"),
    pytest.param(claim(billing_npi="", billing_provider=replace(BILLING, npi="")), context(),
                 [(REQ, "billing_provider.npi")], id="req-billing-npi"),
    pytest.param(claim(billing_provider=replace(BILLING, name="")), context(), [(REQ, "billing_provider.name")],
                 id="req-billing-name"),
    pytest.param(claim(billing_provider=replace(BILLING, tax_id="")), context(), [(REQ, "billing_provider.tax_id")],
                 id="req-billing-tax-id"),
    pytest.param(claim(billing_provider=replace(BILLING, address=None)), context(),
                 [(REQ, "billing_provider.address")], id="req-billing-address"),
    pytest.param(claim(billing_provider=None), context(),
                 [(REQ, "billing_provider.address"), (REQ, "billing_provider.name"), (REQ, "billing_provider.tax_id")],
                 id="req-no-billing-provider"),
    pytest.param(claim(rendering_npi="", rendering_provider=None), context(), [(REQ, "rendering_provider.npi")],
                 id="req-group-claim-without-rendering-npi"),
    pytest.param(claim(rendering_provider=replace(RENDERING, name="")), context(),
                 [(REQ, "rendering_provider.name")], id="req-rendering-name"),
    pytest.param(claim(payer_id=""), context(), [(REQ, "payer_id"), ("SCRUB_UNKNOWN_PAYER", "payer_id")],
                 id="req-payer-id"),
    pytest.param(claim(payer_name=""), context(), [(REQ, "payer_name")], id="req-payer-name"),
    pytest.param(claim(claim_filing_indicator=""), context(), [(REQ, "claim_filing_indicator")],
                 id="req-filing-indicator"),
    pytest.param(claim(member_id=""), context(), [(REQ, "member_id")], id="req-member-id"),
    pytest.param(claim(member_id="   "), context(), [(REQ, "member_id")], id="req-member-id-blank"),
    pytest.param(claim(patient_first_name=""), context(), [(REQ, "patient_first_name")], id="req-patient-first-name"),
    pytest.param(claim(patient_last_name=""), context(), [(REQ, "patient_last_name")], id="req-patient-last-name"),
    pytest.param(claim(patient_birth_date=None), context(), [(REQ, "patient_birth_date")], id="req-patient-dob"),
    pytest.param(claim(patient_sex="U"), context(), [(REQ, "patient_sex")], id="req-patient-sex-unknown"),
    pytest.param(claim(patient_sex=""), context(), [(REQ, "patient_sex")], id="req-patient-sex-empty"),
    pytest.param(claim(patient_address=None, subscriber=PARENT), context(), [(REQ, "patient_address")],
                 id="req-dependent-patient-address"),
    pytest.param(dependent(first_name=""), context(), [(REQ, "subscriber.first_name")],
                 id="req-dependent-subscriber-first-name"),
    pytest.param(dependent(last_name=""), context(), [(REQ, "subscriber.last_name")],
                 id="req-dependent-subscriber-last-name"),
    pytest.param(dependent(birth_date=None), context(), [(REQ, "subscriber.birth_date")],
                 id="req-dependent-subscriber-dob"),
    pytest.param(dependent(relationship="99"), context(), [(REQ, "subscriber.relationship")],
                 id="req-relationship-not-an-x12-code"),
    pytest.param(dependent(relationship=""), context(), [(REQ, "subscriber.relationship")],
                 id="req-relationship-empty"),
    pytest.param(claim(diagnoses=[]), context(),
                 [(REQ, "diagnoses"), (LINE_INVALID, "lines[0]"), (LINE_INVALID, "lines[1]")],
                 id="req-no-diagnosis"),  # and the lines point at nothing
    pytest.param(claim(lines=[], total_charge=Decimal("0.00")), context(), [(REQ, "lines")], id="req-no-line"),
    # SCRUB_UNKNOWN_PAYER
    pytest.param(claim(payer_id="ZZZ99"), context(payer=None), [("SCRUB_UNKNOWN_PAYER", "payer_id")],
                 id="payer-not-in-master-data"),
    pytest.param(claim(), context(payer=MEDICARE), [("SCRUB_UNKNOWN_PAYER", "payer_id")],
                 id="payer-master-data-of-another-payer"),
    # SCRUB_DOS_FUTURE (the lines move with the claim: one finding, not one per line)
    pytest.param(claim(date_of_service=TOMORROW, lines=lines_on(TOMORROW)), context(),
                 [("SCRUB_DOS_FUTURE", "date_of_service")], id="dos-tomorrow"),
    # SCRUB_DOS_BEFORE_BIRTH
    pytest.param(claim(patient_birth_date=DOS + timedelta(days=1)), context(),
                 [("SCRUB_DOS_BEFORE_BIRTH", "date_of_service")], id="dos-day-before-birth"),
    # SCRUB_DOS_OUTSIDE_COVERAGE (both bounds inclusive)
    pytest.param(claim(), context(eligibility=answer(end=DOS - timedelta(days=1))),
                 [("SCRUB_DOS_OUTSIDE_COVERAGE", "date_of_service")], id="coverage-ended-the-day-before"),
    pytest.param(claim(), context(eligibility=answer(start=DOS + timedelta(days=1))),
                 [("SCRUB_DOS_OUTSIDE_COVERAGE", "date_of_service")], id="coverage-starts-the-day-after"),
    pytest.param(claim(), context(eligibility=answer(start=None, end=DOS - timedelta(days=1))),
                 [("SCRUB_DOS_OUTSIDE_COVERAGE", "date_of_service")], id="coverage-no-start-ended-before"),
    pytest.param(claim(), context(eligibility=answer(status=EligibilityStatus.INACTIVE)),
                 [("SCRUB_DOS_OUTSIDE_COVERAGE", "date_of_service")], id="coverage-answer-inactive"),
    # SCRUB_LINE_DATE
    pytest.param(claim(lines=[replace(lines_on(DOS)[0], date_of_service=DOS - timedelta(days=1)), lines_on(DOS)[1]]),
                 context(), [("SCRUB_LINE_DATE", "lines[0].date_of_service")], id="line-day-before-the-claim"),
    pytest.param(claim(lines=[lines_on(DOS)[0], replace(lines_on(DOS)[1], date_of_service=TOMORROW)]),
                 context(), [("SCRUB_LINE_DATE", "lines[1].date_of_service")], id="line-in-the-future"),
    # SCRUB_TIMELY_FILING: the limit day is in time, the next is not
    pytest.param(claim(), days_after_dos(91), [("SCRUB_TIMELY_FILING", "date_of_service")], id="filing-91-of-90"),
    pytest.param(claim(payer_id="MCR01"), context(payer=MEDICARE, today=DOS + timedelta(days=366)),
                 [("SCRUB_TIMELY_FILING", "date_of_service")], id="filing-366-of-365"),
    # SCRUB_TOTAL_MISMATCH
    pytest.param(claim(total_charge=Decimal("158.01")), context(), [("SCRUB_TOTAL_MISMATCH", "total_charge")],
                 id="total-a-cent-over"),
    pytest.param(claim(total_charge=Decimal("140.00")), context(), [("SCRUB_TOTAL_MISMATCH", "total_charge")],
                 id="total-of-the-first-line-only"),
    # SCRUB_POS_INVALID
    pytest.param(claim(place_of_service="98"), context(), [("SCRUB_POS_INVALID", "place_of_service")],
                 id="pos-unassigned-98"),
    pytest.param(claim(place_of_service="00"), context(), [("SCRUB_POS_INVALID", "place_of_service")],
                 id="pos-00"),
    pytest.param(claim(place_of_service="1"), context(), [("SCRUB_POS_INVALID", "place_of_service")],
                 id="pos-one-digit"),
    pytest.param(claim(place_of_service=""), context(), [("SCRUB_POS_INVALID", "place_of_service")], id="pos-empty"),
    # SCRUB_FREQUENCY
    pytest.param(claim(frequency_code="2"), context(), [("SCRUB_FREQUENCY", "frequency_code")],
                 id="frequency-not-1-7-8"),
    pytest.param(claim(frequency_code="7"), context(), [("SCRUB_FREQUENCY", "original_claim_id")],
                 id="frequency-replacement-without-original"),
    # SCRUB_LIMITS (837P: 12 diagnoses, 50 lines, CLM01 38 characters)
    pytest.param(claim(diagnoses=["I10", "E78.5", *[f"Z{n:02d}" for n in range(11)]]), context(),
                 [("SCRUB_LIMITS", "diagnoses")], id="limits-13-diagnoses"),
    pytest.param(claim(lines=[replace(lines_on(DOS)[1], line_number=n) for n in range(1, 52)],
                       total_charge=Decimal("918.00")), context(), [("SCRUB_LIMITS", "lines")], id="limits-51-lines"),
    pytest.param(claim(patient_control_number="P" * 39), context(), [("SCRUB_LIMITS", "patient_control_number")],
                 id="limits-pcn-39"),
    # SCRUB_LINE_INVALID
    pytest.param(claim(lines=[replace(lines_on(DOS)[0], modifiers=["25", "GT", "95", "59", "XU"]),
                              lines_on(DOS)[1]]), context(), [(LINE_INVALID, "lines[0]")], id="line-five-modifiers"),
    pytest.param(claim(lines=[replace(lines_on(DOS)[0], dx_pointers=[]), lines_on(DOS)[1]]), context(),
                 [(LINE_INVALID, "lines[0]")], id="line-no-pointer"),
    pytest.param(claim(lines=[lines_on(DOS)[0], replace(lines_on(DOS)[1], dx_pointers=[3])]), context(),
                 [(LINE_INVALID, "lines[1]")], id="line-pointer-past-the-diagnoses"),
    pytest.param(claim(lines=[lines_on(DOS)[0], replace(lines_on(DOS)[1], units=0)]), context(),
                 [(LINE_INVALID, "lines[1]")], id="line-zero-units"),
    pytest.param(claim(lines=[lines_on(DOS)[0], replace(lines_on(DOS)[1], charge=Decimal("-18.00"))],
                       total_charge=Decimal("122.00")), context(), [(LINE_INVALID, "lines[1]")],
                 id="line-negative-charge"),
]


@pytest.mark.parametrize("bad, ctx, expected", FAILING)
def test_a_failing_case_raises_exactly_its_errors(bad, ctx, expected):
    assert errors(bad, ctx) == sorted(expected)


# --- passing cases: no error ------------------------------------------------------------

PASSING = [
    pytest.param(claim(), context(), id="the-clean-claim"),
    pytest.param(claim(), context(eligibility=None), id="no-eligibility-answer"),
    # NPI
    pytest.param(claim(rendering_npi="1234567893", rendering_provider=replace(RENDERING, npi="1234567893")),
                 context(), id="npi-1234567893"),
    pytest.param(claim(billing_npi="1912301953", rendering_npi="1912301953",
                       billing_provider=replace(BILLING, npi="1912301953", entity_type="1", name="CARTER",
                                                first_name="AVA"), rendering_provider=None), context(),
                 id="solo-physician-bills-and-renders"),
    # required: who the insured is
    pytest.param(claim(subscriber=None), context(), id="no-subscriber-record-patient-is-insured"),
    pytest.param(claim(subscriber=replace(PARENT, relationship="18", birth_date=None)), context(),
                 id="self-subscriber-record-without-dob"),
    *(pytest.param(dependent(relationship=code), context(), id=f"dependent-relationship-{code}")
      for code in ("01", "19", "G8", "53")),
    pytest.param(claim(patient_sex="M"), context(), id="patient-sex-M"),
    pytest.param(claim(patient_address=None), context(), id="self-subscribed-patient-without-address"),
    # dates
    pytest.param(claim(date_of_service=TODAY, lines=lines_on(TODAY)), context(eligibility=answer()),
                 id="dos-today"),
    pytest.param(claim(patient_birth_date=DOS, subscriber=replace(PARENT, relationship="19")), context(),
                 id="dos-on-the-birth-date"),
    pytest.param(claim(), context(eligibility=answer(end=DOS)), id="coverage-ends-on-the-dos"),
    pytest.param(claim(), context(eligibility=answer(start=DOS)), id="coverage-starts-on-the-dos"),
    pytest.param(claim(), context(eligibility=answer(start=DOS, end=DOS)), id="coverage-of-one-day"),
    pytest.param(claim(), context(eligibility=answer(start=None, end=None)), id="coverage-without-dates"),
    pytest.param(claim(), days_after_dos(90), id="filing-90-of-90"),
    pytest.param(claim(payer_id="MCR01"), context(payer=MEDICARE, today=DOS + timedelta(days=365)),
                 id="filing-365-of-365"),
    pytest.param(claim(payer_id="ZZZ99"), context(payer=None, today=DOS + timedelta(days=9999)),
                 id="filing-not-checked-without-payer-data"),  # SCRUB_UNKNOWN_PAYER only, below
    # money, place, frequency, limits
    pytest.param(claim(total_charge=Decimal("158")), context(), id="total-same-value-other-exponent"),
    pytest.param(claim(lines=[lines_on(DOS)[0], replace(lines_on(DOS)[1], charge=Decimal("0.00"))],
                       total_charge=Decimal("140.00")), context(), id="line-charge-zero"),
    *(pytest.param(claim(place_of_service=code), context(), id=f"pos-{code}")
      for code in ("02", "10", "12", "19", "20", "21", "22", "23", "27", "58", "66", "99")),
    pytest.param(claim(frequency_code="7", original_claim_id="PAYER-ICN-1"), context(), id="frequency-7-with-icn"),
    pytest.param(claim(frequency_code="8", original_claim_id="PAYER-ICN-1"), context(), id="frequency-8-with-icn"),
    pytest.param(claim(diagnoses=["I10", "E78.5", *[f"Z{n:02d}" for n in range(10)]]), context(),
                 id="limits-12-diagnoses"),
    pytest.param(claim(lines=[replace(lines_on(DOS)[1], line_number=n) for n in range(1, 51)],
                       total_charge=Decimal("900.00")), context(), id="limits-50-lines"),
    pytest.param(claim(patient_control_number="P" * 38), context(), id="limits-pcn-38"),
    pytest.param(claim(lines=[replace(lines_on(DOS)[0], modifiers=["25", "GT", "95", "59"], dx_pointers=[1, 2]),
                              replace(lines_on(DOS)[1], units=3, charge=Decimal("54.00"))],
                       total_charge=Decimal("194.00")), context(), id="line-four-modifiers-three-units"),
]


@pytest.mark.parametrize("good, ctx", PASSING)
def test_a_passing_case_has_no_error(good, ctx):
    found = errors(good, ctx)
    if ctx.payer is None:
        assert found == [("SCRUB_UNKNOWN_PAYER", "payer_id")]
    else:
        assert found == []


def test_a_clean_realistic_claim_has_no_finding_at_all():
    assert scrub_claim(claim(), context()) == []
    assert scrub_claim(dependent(), context()) == []


# --- the timely-filing warning --------------------------------------------------------


@pytest.mark.parametrize("payer, days, warned", [
    pytest.param(PPO, 80, False, id="90-day-limit-10-days-left"),
    pytest.param(PPO, 81, True, id="90-day-limit-9-days-left"),  # 10 % of 90
    pytest.param(PPO, 90, True, id="90-day-limit-on-the-last-day"),
    pytest.param(MEDICARE, 328, False, id="365-day-limit-37-days-left"),
    pytest.param(MEDICARE, 329, True, id="365-day-limit-36-days-left"),  # 10 % of 365 is 36.5
])
def test_near_the_limit_is_a_warning_not_an_error(payer, days, warned):
    findings = scrub_claim(claim(payer_id=payer.payer_id), context(payer=payer, today=DOS + timedelta(days=days)))
    expected = [("SCRUB_TIMELY_FILING_NEAR", Severity.WARNING, "date_of_service")] if warned else []
    assert [(f.rule_id, f.severity, f.element) for f in findings] == expected


def test_the_margin_is_an_exact_tenth():
    assert TIMELY_FILING_NEAR_MARGIN == Fraction(1, 10)  # a Fraction: no float rounding at the boundary day
    assert scrubber.__doc__ and TIMELY_FILING_NEAR_MARGIN.__class__ is Fraction


def test_past_the_limit_there_is_no_warning_as_well():
    findings = scrub_claim(claim(), days_after_dos(91))
    assert [(f.rule_id, f.severity) for f in findings] == [("SCRUB_TIMELY_FILING", Severity.ERROR)]


# --- the rule set -----------------------------------------------------------------------


def test_every_rule_id_is_raised_by_a_failing_case():
    raised = {rule_id for case in FAILING for rule_id, _ in case.values[2]} | {"SCRUB_TIMELY_FILING_NEAR"}
    assert raised == set(SCRUB_RULE_IDS)


def test_every_registered_rule_raises_an_id_and_has_a_name():
    assert {rule.__name__ for rule in SCRUB_RULES} == set(SCRUB_RULE_IDS.values())
    assert all(re.fullmatch(r"SCRUB_[A-Z_]+", rule_id) for rule_id in SCRUB_RULE_IDS)


def test_the_rule_ids_are_these():
    assert set(SCRUB_RULE_IDS) == {
        "SCRUB_NPI_INVALID", "SCRUB_REQUIRED", "SCRUB_UNKNOWN_PAYER", "SCRUB_DOS_FUTURE", "SCRUB_DOS_BEFORE_BIRTH",
        "SCRUB_DOS_OUTSIDE_COVERAGE", "SCRUB_LINE_DATE", "SCRUB_TIMELY_FILING", "SCRUB_TIMELY_FILING_NEAR",
        "SCRUB_TOTAL_MISMATCH", "SCRUB_POS_INVALID", "SCRUB_FREQUENCY", "SCRUB_LIMITS", "SCRUB_LINE_INVALID",
    }


def test_errors_come_first_in_rule_order_and_each_names_its_element():
    bad = claim(billing_npi="1234567890", billing_provider=replace(BILLING, npi="1234567890"), member_id="",
                total_charge=Decimal("1.00"), place_of_service="98")
    findings = scrub_claim(bad, days_after_dos(85))
    assert [(f.rule_id, f.severity) for f in findings] == [
        ("SCRUB_NPI_INVALID", Severity.ERROR), ("SCRUB_REQUIRED", Severity.ERROR),
        ("SCRUB_TOTAL_MISMATCH", Severity.ERROR), ("SCRUB_POS_INVALID", Severity.ERROR),
        ("SCRUB_TIMELY_FILING_NEAR", Severity.WARNING),
    ]
    assert all(isinstance(f, Finding) and f.message and f.element for f in findings)
    assert scrub_claim(bad, days_after_dos(85)) == findings  # deterministic


def test_one_required_finding_per_missing_element_with_its_name():
    bad = claim(payer_name="", member_id="", patient_first_name="", patient_sex="U")
    findings = [f for f in scrub_claim(bad, context()) if f.rule_id == "SCRUB_REQUIRED"]
    assert [f.element for f in findings] == ["payer_name", "member_id", "patient_first_name", "patient_sex"]
    assert findings[0].message == "payer_name is missing"
    assert findings[3].message == "patient_sex 'U' is not F or M"


def test_the_messages_say_what_is_wrong():
    (npi,) = scrub_claim(claim(rendering_npi="1912301954", rendering_provider=replace(RENDERING, npi="1912301954")),
                         context())
    assert "1912301954" in npi.message
    (late,) = scrub_claim(claim(), days_after_dos(91))
    assert late.message == "91 days after the date of service; COMMERCIAL PPO accepts claims for 90 days"
    (total,) = scrub_claim(claim(total_charge=Decimal("158.01")), context())
    assert total.message == "total charge 158.01 but the lines sum to 158.00"


@pytest.mark.parametrize("c, ctx", [pytest.param(*case.values[:2], id=case.id) for case in [*FAILING, *PASSING]])
def test_a_claim_that_scrubs_clean_can_be_written_as_837p(c, ctx):
    """The gate is at least as strict as the 837P writer: every case without a scrub
    error is one ``engine.x12.professional`` can write."""
    if not errors(c, ctx):
        assert claim_problems(c) == []


# --- ids and data ---------------------------------------------------------------------


def test_scrub_item_id_is_deterministic_per_claim():
    assert scrub_item_id("C1") == scrub_item_id("C1") != scrub_item_id("C2")
    assert re.fullmatch(r"SR-[0-9A-F]{16}", scrub_item_id("C1"))
    assert scrub_item_id("C1") == "SR-" + __import__("hashlib").blake2b(b"C1", digest_size=8).hexdigest().upper()


def test_the_shipped_cms_place_of_service_list():
    text = (DATA_DIR / "place_of_service.csv").read_text()
    assert text.startswith("# CMS Place of Service Code Set")
    rows = [line.split(",", 1) for line in text.splitlines()[2:]]
    codes = [code for code, _ in rows]
    assert codes == sorted(set(codes)) and all(re.fullmatch(r"\d\d", code) for code in codes)
    assert all(name.strip() for _, name in rows)
    assert frozenset(codes) == PLACES
    assert len(PLACES) == 52
    assert {"01", "02", "10", "11", "12", "19", "20", "21", "22", "23", "24", "31", "32", "33", "41", "42", "49",
            "50", "51", "52", "53", "54", "55", "56", "57", "60", "61", "62", "65", "71", "72", "81", "99"} <= PLACES
    assert not {"00", "28", "30", "35", "40", "43", "48", "59", "63", "64", "67", "70", "73", "80", "82", "98"} & PLACES


def test_load_places_of_service_skips_comments_and_strips(tmp_path: Path):
    path = tmp_path / "pos.csv"
    path.write_text("# a comment, with a comma\ncode,name\n11,Office\n 23 ,Emergency Room - Hospital\n")
    assert load_places_of_service(path) == frozenset({"11", "23"})


def test_no_finding_message_carries_the_birth_date():
    """Findings travel to queues, engine verdicts and screens: a birth date is PHI."""
    born = DOS + timedelta(days=1)
    findings = scrub_claim(claim(patient_birth_date=born), context())
    assert any(f.rule_id == "SCRUB_DOS_BEFORE_BIRTH" for f in findings)
    assert not any(born.isoformat() in f.message for f in findings)
