"""837P export: pyx12 (in-process and the ``x12valid`` script) accepts what we write,
catches what we break, and ``read_837p`` gives back every field X12 carries."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.model.codes import SELF
from engine.model.events import Address, ClaimLine, ClaimSubmitted, Provider, Subscriber
from engine.reference.codesets import normalize_icd10
from engine.settings import Settings
from engine.x12.claim_837_read import read_837p
from engine.x12.claim_837_write import IMPLEMENTATION, insured, write_837p
from engine.x12.validation import validate_837p

CREATED = datetime(2026, 3, 10, 14, 5, tzinfo=UTC)
CONTROL = 4217
DOS = date(2026, 3, 2)

DENVER = Address("1600 GRANT ST STE 200", "DENVER", "CO", "80203")
MILLER_HOME = Address("42 ELM CT", "AURORA", "CO", "80012")
GROUP = Provider("1234567893", "2", "CLAIMFLOW FAMILY MEDICINE GROUP", "", "207Q00000X", "841234567", DENVER)
DR_NGUYEN = Provider("1912301953", "1", "NGUYEN", "ANNA", "207R00000X", "", None)
DR_PATEL = Provider("1456789019", "1", "PATEL", "RAVI", "208000000X", "", None)
DR_SOLO = Provider("1678901236", "1", "OKAFOR", "CHIDI", "207Q00000X", "931112222",
                   Address("9 MAPLE AVE", "BOULDER", "CO", "80302"))

TWELVE_DX = ["E11.65", "I10", "E78.5", "M54.50", "J45.909", "K21.9",
             "F41.1", "G47.33", "E66.9", "Z68.30", "R73.03", "Z79.4"]
ROBERT = Subscriber("19", "ROBERT", "MILLER", date(1981, 7, 14), "M", MILLER_HOME, "GRP-88120")


def _line(number: int, code: str, charge: str, pointers: list[int], modifiers: list[str] | None = None,
          units: int = 1) -> ClaimLine:
    return ClaimLine(number, code, modifiers or [], units, Decimal(charge), pointers, DOS)


def _claim(pcn: str, lines: list[ClaimLine], **overrides: Any) -> ClaimSubmitted:
    base = ClaimSubmitted(
        claim_id=pcn, encounter_id=f"ENC-{pcn}", encounter_occurred_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        patient_control_number=pcn, frequency_code="1", original_claim_id=None, payer_id="87726",
        member_id="UHC99887766", patient_id=f"MRN-{pcn}", billing_npi=GROUP.npi, rendering_npi=DR_NGUYEN.npi,
        date_of_service=DOS, place_of_service="11", diagnoses=["J06.9"], lines=lines,
        total_charge=sum((line.charge for line in lines), Decimal("0.00")), submitted_at=CREATED,
        billing_provider=GROUP, rendering_provider=DR_NGUYEN, payer_name="UNITEDHEALTHCARE",
        claim_filing_indicator="CI", subscriber=None, patient_first_name="", patient_last_name="",
        patient_birth_date=None, patient_sex="U", patient_address=None,
    )
    return replace(base, **overrides)


def _claims() -> list[ClaimSubmitted]:
    """Five claims, given out of hierarchy order on purpose: a self-subscriber with 12
    diagnoses and 4 modifiers; a child (19) with a replacement (7) and an original; the
    spouse (01) of the same subscriber; a solo practitioner's void (8) for a patient with
    no subscriber record, no birth date and no address."""
    self_subscriber = Subscriber(SELF, "MARIA", "GARCIA", date(1974, 2, 9), "F", DENVER, "GRP-10442")
    self_claim = _claim(
        "CF0001",
        [_line(1, "99214", "185.50", [1, 2, 3, 4], ["25"]),
         _line(2, "20610", "240.05", [5, 6], ["RT", "XS", "GA", "KX"]),
         _line(3, "96372", "40.00", [12], units=2)],
        diagnoses=TWELVE_DX, subscriber=self_subscriber, patient_first_name="MARIA", patient_last_name="GARCIA",
        patient_birth_date=date(1974, 2, 9), patient_sex="F", patient_address=DENVER, member_id="UHC10000001",
    )
    child = dict(subscriber=ROBERT, patient_first_name="EMMA", patient_last_name="MILLER",
                 patient_birth_date=date(2016, 11, 3), patient_sex="F", patient_address=MILLER_HOME,
                 member_id="BCBS55501", payer_id="00510", payer_name="BLUE CROSS BLUE SHIELD",
                 claim_filing_indicator="BL")
    replacement = _claim("CF0002R", [_line(1, "99393", "150.75", [1, 2]), _line(2, "90460", "25", [1])],
                         diagnoses=["Z00.129", "Z23"], frequency_code="7", original_claim_id="BCBS2026030500042",
                         rendering_npi=DR_PATEL.npi, rendering_provider=DR_PATEL, **child)
    child_again = _claim("CF0003", [_line(1, "99213", "110.10", [1])], diagnoses=["J02.9"],
                         rendering_npi=DR_PATEL.npi, rendering_provider=DR_PATEL, **child)
    spouse = _claim("CF0004", [_line(1, "99203", "160", [1, 2], ["95"])], diagnoses=["R51.9", "G44.209"],
                    place_of_service="10",
                    **{**child, "subscriber": replace(ROBERT, relationship="01"), "patient_first_name": "LINDA",
                       "patient_birth_date": date(1983, 1, 30), "patient_sex": "F"})
    void = _claim("CF0005", [_line(1, "99212", "75.25", [1])], diagnoses=["L30.9"], frequency_code="8",
                  original_claim_id="MCR26061000777", billing_npi=DR_SOLO.npi, rendering_npi=DR_SOLO.npi,
                  billing_provider=DR_SOLO, rendering_provider=DR_SOLO, payer_id="04412", payer_name="MEDICARE PART B",
                  claim_filing_indicator="MB", member_id="1EG4TE5MK73", patient_first_name="HAROLD",
                  patient_last_name="BECK", patient_sex="M", patient_id="")
    return [replacement, self_claim, void, spouse, child_again]


@pytest.fixture(scope="module")
def x12_settings() -> Settings:
    return replace(Settings(), x12_sender_id="CLAIMFLOW", x12_receiver_id="CLEARINGHOUSE",
                   x12_submitter_name="CLAIMFLOW FAMILY MEDICINE GROUP", x12_submitter_phone="3035550100",
                   x12_receiver_name="CLAIMFLOW CLEARINGHOUSE", x12_usage="T")


@pytest.fixture(scope="module")
def claims() -> list[ClaimSubmitted]:
    return _claims()


@pytest.fixture(scope="module")
def text(claims: list[ClaimSubmitted], x12_settings: Settings) -> str:
    return write_837p(claims, x12_settings, CONTROL, CREATED)


def _segments(text: str) -> list[list[str]]:
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def _first(text: str, seg_id: str) -> list[str]:
    return next(s for s in _segments(text) if s[0] == seg_id)


def _claim_segments(text: str, pcn: str) -> list[list[str]]:
    """The segments of one 2300 loop, CLM up to the next CLM, HL or SE."""
    segments = _segments(text)
    start = next(i for i, s in enumerate(segments) if s[0] == "CLM" and s[1] == pcn)
    end = next(i for i in range(start + 1, len(segments)) if segments[i][0] in {"CLM", "HL", "SE"})
    return segments[start:end]


# --- the comparison helper ---------------------------------------------------------


def carried(claim: ClaimSubmitted) -> dict[str, Any]:
    """What an 837P carries of a claim, in the shape ``read_837p`` gives it back (module
    docstring of engine.x12.professional): placeholders left out, the self-subscriber filled in,
    the rendering provider reduced to what 2310B holds."""
    billing = claim.billing_provider
    assert billing is not None
    billing_x12 = replace(billing, first_name=billing.first_name if billing.entity_type == "1" else "")
    rendering = claim.rendering_provider
    assert rendering is not None
    rendering_x12 = billing_x12 if rendering.npi == billing.npi else replace(
        rendering, tax_id="", address=None, first_name=rendering.first_name if rendering.entity_type == "1" else "")
    person = insured(claim)
    subscriber = replace(person, sex=person.sex if person.birth_date else "U")
    self_ = person.relationship == SELF
    return {
        "patient_control_number": claim.patient_control_number,
        "frequency_code": claim.frequency_code,
        "original_claim_id": claim.original_claim_id if claim.frequency_code in {"7", "8"} else None,
        "payer_id": claim.payer_id, "payer_name": claim.payer_name, "member_id": claim.member_id,
        "claim_filing_indicator": claim.claim_filing_indicator, "patient_id": claim.patient_id,
        "billing_npi": billing.npi, "rendering_npi": rendering.npi,
        "billing_provider": billing_x12, "rendering_provider": rendering_x12,
        "date_of_service": claim.date_of_service, "place_of_service": claim.place_of_service,
        "diagnoses": [normalize_icd10(code) for code in claim.diagnoses],
        "lines": [replace(line, line_number=n, charge=line.charge.quantize(Decimal("0.01")))
                  for n, line in enumerate(claim.lines, 1)],
        "total_charge": claim.total_charge,
        "subscriber": subscriber,
        "patient": ((subscriber.first_name, subscriber.last_name, subscriber.birth_date, subscriber.sex,
                     subscriber.address) if self_ else
                    (claim.patient_first_name, claim.patient_last_name, claim.patient_birth_date,
                     claim.patient_sex, claim.patient_address)),
    }


def carried_read(claim: ClaimSubmitted) -> dict[str, Any]:
    view = carried(claim)
    view["patient"] = (claim.patient_first_name, claim.patient_last_name, claim.patient_birth_date,
                       claim.patient_sex, claim.patient_address)
    return view


def assert_same_claims(expected: list[ClaimSubmitted], actual: list[ClaimSubmitted]) -> None:
    by_pcn = {claim.patient_control_number: claim for claim in actual}
    assert sorted(by_pcn) == sorted(claim.patient_control_number for claim in expected)
    for claim in expected:
        want, got = carried(claim), carried_read(by_pcn[claim.patient_control_number])
        assert got == want, {k: (want[k], got[k]) for k in want if want[k] != got[k]}


# --- pyx12 accepts the interchange ---------------------------------------------------


def test_pyx12_in_process_finds_no_errors(text: str) -> None:
    assert validate_837p(text) == []


def _x12valid(path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "x12valid"
    return subprocess.run([str(script), str(path)], capture_output=True, text=True, timeout=120, cwd=path.parent)


def test_x12valid_script_accepts_the_file(text: str, tmp_path: Path) -> None:
    """x12valid exits 1 whatever the verdict (its wrapper calls sys.exit(True)): the
    signal is ``<file>: OK`` on stderr, no ERROR line, and the 999 it writes beside the file."""
    path = tmp_path / "claims.x12"
    path.write_text(text, encoding="ascii")
    result = _x12valid(path)
    assert f"{path}: OK" in result.stderr, result.stderr
    assert "ERROR" not in result.stderr
    ack = (tmp_path / "claims.x12.997").read_text()
    assert "AK2*837*0001*005010X222A1~" in ack and "IK5*A~" in ack and "AK9*A*1*1*1~" in ack


def test_x12valid_script_rejects_a_wrong_se01(text: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.x12"
    path.write_text(_break_se01(text), encoding="ascii")
    result = _x12valid(path)
    assert f"{path}: Failure" in result.stderr
    assert "SE count of" in result.stderr
    assert "AK9*R" in (tmp_path / "broken.x12.997").read_text()


def _break_se01(text: str) -> str:
    se = _first(text, "SE")
    return text.replace(f"SE*{se[1]}*{se[2]}~", f"SE*{int(se[1]) - 1}*{se[2]}~")


@pytest.mark.parametrize(("label", "breaker", "expected"), [
    ("wrong SE01", _break_se01, "SE count of"),
    ("GE02 differs from GS06", lambda t: t.replace(f"GE*1*{CONTROL}~", f"GE*1*{CONTROL + 1}~"), "does not match GS"),
    ("IEA02 differs from ISA13", lambda t: t.replace(f"IEA*1*{CONTROL:09d}", f"IEA*1*{CONTROL + 1:09d}"),
     "does not match ISA"),
    ("state not a US state", lambda t: t.replace("DENVER*CO", "DENVER*XX"), "not a valid code"),
    ("SBR02 19 in 2000B", lambda t: t.replace("SBR*P**", "SBR*P*19*"), "SBR02"),
    ("HL parent unknown", lambda t: t.replace("*2*23*0~", "*9*23*0~"), "not a valid parent"),
    ("trailing separator", lambda t: t.replace("PAT*19~", "PAT*19*~"), "trailing element"),
    ("second HI segment", lambda t: t.replace("*ABF:Z6830*ABF:R7303*ABF:Z794~", "~\nHI*ABF:Z6830*ABF:R7303*ABF:Z794~"),
     "not found"),
    ("X222A2 version", lambda t: t.replace("005010X222A1", "005010X222A2"), "Map not found"),
    ("short ISA", lambda t: t.replace("CLAIMFLOW      *", "CLAIMFLOW     *", 1), "106 characters"),
    # pyx12 checks neither of these three: validate_837p adds them.
    ("CLM02 is not the sum of SV102", lambda t: t.replace("CLM*CF0001*465.55*", "CLM*CF0001*465.56*"), "CLM02"),
    ("HL04 says no children", lambda t: t.replace("*1*22*1~", "*1*22*0~", 1), "HL04"),
    ("dotted ICD-10 code", lambda t: t.replace("ABK:E1165", "ABK:E11.65"), "dot"),
])
def test_validate_reports_a_broken_file(text: str, label: str, breaker: Any, expected: str) -> None:
    broken = breaker(text)
    assert broken != text, label
    errors = validate_837p(broken)
    assert any(expected in error for error in errors), (label, errors)


def test_validate_is_silent(text: str, capfd: pytest.CaptureFixture[str]) -> None:
    assert validate_837p(_break_se01(text))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# --- round trip --------------------------------------------------------------------------


def test_round_trip_keeps_every_carried_field(claims: list[ClaimSubmitted], text: str) -> None:
    assert_same_claims(claims, read_837p(text))


def test_comparison_helper_notices_a_difference(claims: list[ClaimSubmitted], text: str) -> None:
    read = read_837p(text)
    read[0].lines[0].modifiers.append("59")
    with pytest.raises(AssertionError):
        assert_same_claims(claims, read)


def test_reader_placeholders(text: str) -> None:
    claim = next(c for c in read_837p(text) if c.patient_control_number == "CF0001")
    assert claim.claim_id == "CF0001" and claim.encounter_id == ""
    assert claim.submitted_at == claim.encounter_occurred_at == CREATED
    assert claim.patient_id == "MRN-CF0001"  # REF*EA


def test_split_into_several_transactions(claims: list[ClaimSubmitted], x12_settings: Settings) -> None:
    text = write_837p(claims, x12_settings, CONTROL, CREATED, max_claims_per_transaction=2)
    assert validate_837p(text) == []
    assert [s[2] for s in _segments(text) if s[0] == "ST"] == ["0001", "0002", "0003"]
    assert_same_claims(claims, read_837p(text))


# --- envelope and counts -------------------------------------------------------------------


def test_isa_is_fixed_width(text: str) -> None:
    isa = text.split("~")[0] + "~"
    assert len(isa) == 106
    fields = isa[:-1].split("*")
    assert [len(f) for f in fields[1:]] == [2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1]
    assert fields[6] == "CLAIMFLOW      " and fields[11] == "^" and fields[16] == ":" and fields[15] == "T"


def test_control_numbers_and_segment_counts(text: str) -> None:
    segments = _segments(text)
    isa, gs, iea, ge = segments[0], segments[1], segments[-1], segments[-2]
    assert isa[13] == iea[2] == f"{CONTROL:09d}" and iea[1] == "1"
    assert gs[6] == ge[2] == str(CONTROL)
    assert gs[1] == "HC" and gs[8] == IMPLEMENTATION
    starts = [i for i, s in enumerate(segments) if s[0] == "ST"]
    assert int(ge[1]) == len(starts) == 1
    for start in starts:
        end = next(i for i in range(start, len(segments)) if segments[i][0] == "SE")
        st, se = segments[start], segments[end]
        assert st[1:] == ["837", se[2], IMPLEMENTATION]
        assert int(se[1]) == end - start + 1
    bht = _first(text, "BHT")
    assert bht[1:3] == ["0019", "00"] and bht[4:7] == ["20260310", "1405", "CH"]


def test_claim_total_is_the_sum_of_the_lines(text: str) -> None:
    for claim_segments in (_claim_segments(text, pcn) for pcn in ("CF0001", "CF0002R", "CF0004")):
        charges = [Decimal(s[2]) for s in claim_segments if s[0] == "SV1"]
        assert Decimal(claim_segments[0][2]) == sum(charges)


def test_amounts_have_no_needless_zeros(text: str) -> None:
    charges = [s[2] for s in _claim_segments(text, "CF0001") if s[0] == "SV1"]
    assert charges == ["185.5", "240.05", "40"]
    assert _claim_segments(text, "CF0001")[0][2] == "465.55"


# --- hierarchy -----------------------------------------------------------------------------


def _hls(text: str) -> list[tuple[str, str, str, str]]:
    return [(s[1], s[2], s[3], s[4]) for s in _segments(text) if s[0] == "HL"]


def test_hierarchy_ids_parents_and_child_codes(text: str) -> None:
    # group → (Garcia self | Miller → Emma, Linda); solo practitioner → Beck self
    assert _hls(text) == [
        ("1", "", "20", "1"),
        ("2", "1", "22", "1"), ("3", "2", "23", "0"), ("4", "2", "23", "0"),
        ("5", "1", "22", "0"),
        ("6", "", "20", "1"),
        ("7", "6", "22", "0"),
    ]


def test_dependent_gets_a_patient_loop(text: str) -> None:
    segments = _segments(text)
    hl3 = segments.index(["HL", "3", "2", "23", "0"])
    assert segments[hl3 + 1] == ["PAT", "19"]
    assert segments[hl3 + 2] == ["NM1", "QC", "1", "MILLER", "EMMA"]
    assert segments[hl3 + 5] == ["DMG", "D8", "20161103", "F"]
    assert [s[1] for s in segments[hl3:] if s[0] == "CLM"][:2] == ["CF0002R", "CF0003"]
    hl4 = segments.index(["HL", "4", "2", "23", "0"])
    assert segments[hl4 + 1] == ["PAT", "01"]
    sbr = segments[segments.index(["HL", "2", "1", "22", "1"]) + 1]
    assert sbr == ["SBR", "P", "", "GRP-88120", "", "", "", "", "", "BL"]


def test_self_subscriber_has_no_patient_loop(text: str) -> None:
    segments = _segments(text)
    hl5 = segments.index(["HL", "5", "1", "22", "0"])
    assert segments[hl5 + 1] == ["SBR", "P", "18", "GRP-10442", "", "", "", "", "", "CI"]
    assert segments[hl5 + 2] == ["NM1", "IL", "1", "GARCIA", "MARIA", "", "", "", "MI", "UHC10000001"]
    loop = segments[hl5:segments.index(["HL", "6", "", "20", "1"])]
    assert not any(s[0] == "PAT" for s in loop)
    assert ["DMG", "D8", "19740209", "F"] in loop


def test_unknown_birth_date_and_address_are_left_out(text: str) -> None:
    segments = _segments(text)
    hl7 = segments.index(["HL", "7", "6", "22", "0"])
    assert [s[0] for s in segments[hl7:hl7 + 6]] == ["HL", "SBR", "NM1", "NM1", "CLM", "REF"]
    assert segments[hl7 + 1][2] == "18"


def test_rendering_loop_only_when_it_differs(text: str) -> None:
    assert ["NM1", "82", "1", "NGUYEN", "ANNA", "", "", "", "XX", "1912301953"] in _claim_segments(text, "CF0001")
    assert ["PRV", "PE", "PXC", "207R00000X"] in _claim_segments(text, "CF0001")
    assert not any(s[:2] == ["NM1", "82"] for s in _claim_segments(text, "CF0005"))


def test_billing_provider_loop(text: str) -> None:
    segments = _segments(text)
    assert segments[segments.index(["HL", "1", "", "20", "1"]) + 1: segments.index(["HL", "1", "", "20", "1"]) + 6] == [
        ["PRV", "BI", "PXC", "207Q00000X"],
        ["NM1", "85", "2", "CLAIMFLOW FAMILY MEDICINE GROUP", "", "", "", "", "XX", "1234567893"],
        ["N3", "1600 GRANT ST STE 200"], ["N4", "DENVER", "CO", "80203"], ["REF", "EI", "841234567"],
    ]


# --- claim content ---------------------------------------------------------------------------


def test_replacement_claim_carries_ref_f8(text: str) -> None:
    loop = _claim_segments(text, "CF0002R")
    assert loop[0] == ["CLM", "CF0002R", "175.75", "", "", "11:B:7", "Y", "A", "Y", "Y"]
    assert loop[1] == ["REF", "F8", "BCBS2026030500042"]
    void = _claim_segments(text, "CF0005")
    assert void[0][5] == "11:B:8" and void[1] == ["REF", "F8", "MCR26061000777"]
    assert not any(s[:2] == ["REF", "F8"] for s in _claim_segments(text, "CF0003"))


def test_twelve_diagnoses_in_one_hi_without_dots(text: str) -> None:
    his = [s for s in _claim_segments(text, "CF0001") if s[0] == "HI"]
    assert len(his) == 1
    assert his[0][1:] == ["ABK:E1165", *(f"ABF:{code.replace('.', '')}" for code in TWELVE_DX[1:])]
    assert not any("." in s[i] for s in _segments(text) if s[0] == "HI" for i in range(1, len(s)))


def test_service_lines(text: str) -> None:
    loop = _claim_segments(text, "CF0001")
    lines = [s for s in loop if s[0] in {"LX", "SV1", "DTP"}]
    assert lines == [
        ["LX", "1"], ["SV1", "HC:99214:25", "185.5", "UN", "1", "", "", "1:2:3:4"], ["DTP", "472", "D8", "20260302"],
        ["LX", "2"], ["SV1", "HC:20610:RT:XS:GA:KX", "240.05", "UN", "1", "", "", "5:6"],
        ["DTP", "472", "D8", "20260302"],
        ["LX", "3"], ["SV1", "HC:96372", "40", "UN", "2", "", "", "12"], ["DTP", "472", "D8", "20260302"],
    ]


def test_delimiters_in_free_text_are_replaced(claims: list[ClaimSubmitted], x12_settings: Settings) -> None:
    odd = replace(claims[1], patient_control_number="CF0099",
                  patient_address=Address("1*2~3:4^5", "DENVER", "CO", "80203"),
                  subscriber=replace(claims[1].subscriber, address=Address("1*2~3:4^5", "DENVER", "CO", "80203")))
    text = write_837p([odd], x12_settings, 1, CREATED)
    assert validate_837p(text) == []
    assert ["N3", "1 2 3 4 5"] in _segments(text)


@pytest.mark.parametrize(("label", "change", "message"), [
    ("13 diagnoses", dict(diagnoses=[*TWELVE_DX, "Z00.00"]), "13 diagnoses"),
    ("pointer past the diagnoses", dict(diagnoses=["J06.9"]), "pointer outside"),
    ("replacement without REF*F8", dict(frequency_code="7", original_claim_id=None), r"REF\*F8"),
    ("total is not the lines", dict(total_charge=Decimal("1.00")), "total charge"),
    ("no billing provider", dict(billing_provider=None), "billing provider"),
    ("billing provider without tax id", dict(billing_provider=replace(GROUP, tax_id="")), r"REF\*EI"),
    ("unnamed payer", dict(payer_name=""), "payer name"),
    ("dependent without birth date", dict(subscriber=ROBERT, patient_birth_date=None), "dependent"),
])
def test_write_refuses_what_837p_cannot_express(claims: list[ClaimSubmitted], x12_settings: Settings, label: str,
                                                change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_837p([replace(claims[1], **change)], x12_settings, 1, CREATED)


def test_write_refuses_a_bad_envelope(claims: list[ClaimSubmitted], x12_settings: Settings) -> None:
    with pytest.raises(ValueError, match="control number"):
        write_837p(claims, x12_settings, 1_000_000_000, CREATED)
    with pytest.raises(ValueError, match="x12_sender_id"):
        write_837p(claims, replace(x12_settings, x12_sender_id="A" * 16), 1, CREATED)
    with pytest.raises(ValueError, match="at least one claim"):
        write_837p([], x12_settings, 1, CREATED)


def test_self_subscriber_fills_blanks_from_the_patient_and_back(claims: list[ClaimSubmitted],
                                                                 x12_settings: Settings) -> None:
    garcia = claims[1]
    sparse = replace(garcia, subscriber=replace(garcia.subscriber, birth_date=None, address=None))
    text = write_837p([sparse], x12_settings, 1, CREATED)
    assert ["DMG", "D8", "19740209", "F"] in _segments(text)
    (back,) = read_837p(text)
    assert back.subscriber == garcia.subscriber
    assert (back.patient_birth_date, back.patient_address) == (garcia.patient_birth_date, garcia.patient_address)


def test_reads_and_validates_an_independently_generated_837p() -> None:
    """A file from another generator (x12sdk writes X222A2 strings; the segments are the
    same): the reader walks its self and dependent branches, and validation agrees it is clean."""
    generate = pytest.importorskip("x12sdk.generate")
    text = generate.generate_837p(seed=7, claims=3).replace("005010X222A2", IMPLEMENTATION)
    assert validate_837p(text) == []
    claims = read_837p(text)
    assert [c.subscriber.relationship for c in claims if c.subscriber] == ["18", "18", "19"]
    assert all(c.total_charge == sum(line.charge for line in c.lines) for c in claims)
    assert all("." in dx or len(dx) == 3 for c in claims for dx in c.diagnoses)


def test_more_than_100_claims_for_one_patient_repeat_the_loop(claims: list[ClaimSubmitted],
                                                               x12_settings: Settings) -> None:
    """Loop 2300 repeats at most 100 times under one 2000B/2000C (pyx12: "exceeded max count")."""
    garcia, emma = claims[1], claims[0]
    many = [replace(c, patient_control_number=f"{c.patient_control_number}-{i}") for c in (garcia, emma)
            for i in range(101)]
    text = write_837p(many, x12_settings, 1, CREATED)
    assert validate_837p(text) == []
    assert [hl[2:] for hl in _hls(text)] == [("20", "1"), ("22", "0"), ("22", "0"), ("22", "1"),
                                             ("23", "0"), ("23", "0")]
    assert len(read_837p(text)) == 202
