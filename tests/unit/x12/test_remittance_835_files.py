"""835 files in and out (``engine/x12/remittance_835_*.py``): which remittances a period's file
holds, and ``match_payment``: claim payments matched to our claims by patient control
number (replacements sharing it, payer-changed lines, payer mismatches, unknown claims as
unapplied cash), the payment with its PLB; and the acceptance round trip: remittances →
``write_835`` → ``read_835`` → ``match_payment`` gives the same remittances and ledgers."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.model.events import (
    Adjustment,
    ClaimLine,
    ClaimSubmitted,
    GroupCode,
    PaymentReceived,
    ProviderAdjustment,
    Remittance,
    RemittanceLine,
    RemittanceOutcome,
    UnappliedPayment,
)
from engine.posting.ledger import Ledger, post, remittance_id
from engine.posting.routing import DenialRouting
from engine.settings import Settings
from engine.x12.remittance_835_ingest import totals
from engine.x12.remittance_835_matching import (
    IngestResult,
    choose_claim,
    known_claims,
    match_file,
    match_lines,
    match_payment,
    outcome_of,
    pcn_index,
)
from engine.x12.remittance_835_period import select_remittances
from engine.x12.remittance_835_read import ClaimPayment835, Line835, Payment835, read_835
from engine.x12.remittance_835_write import write_835
from engine.x12.validation import redact_x12_error, validate_835
from simulators.payer.adjudication import PayerBook, build_remittance, reversal_of
from tests.unit.conftest import NOW, sample_events

D = Decimal
CO, PR, OA = GroupCode.CO, GroupCode.PR, GroupCode.OA
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"
DOS = date(2026, 2, 27)
PAID_ON = date(2026, 3, 20)
TRACE = "EFT20260320PPO01"
SOURCE = "835:test.835"
LATER = NOW + timedelta(days=3)


@pytest.fixture
def x12() -> SimpleNamespace:
    """The 835 reader, writer and validator, which these tests use together."""
    return SimpleNamespace(ClaimPayment835=ClaimPayment835, Line835=Line835, Payment835=Payment835,
                           read_835=read_835, write_835=write_835, validate_835=validate_835)


def fixture(name: str) -> str:
    with open(FIXTURES / name, newline="") as f:
        return f.read()


# --- building claims and 835 payments ---------------------------------------------------------


def claim(claim_id: str, lines: Sequence[tuple[str, list[str], int, str]] = (("99213", [], 1, "150"),), *,
          pcn: str | None = None, **fields: Any) -> ClaimSubmitted:
    """The conftest sample claim, renamed, with ``lines`` (code, modifiers, units, charge)."""
    base = copy.deepcopy(sample_events()[ClaimSubmitted])
    claim_lines = [ClaimLine(n, code, list(mods), units, D(charge), [1], DOS)
                   for n, (code, mods, units, charge) in enumerate(lines, 1)]
    return replace(base, claim_id=claim_id, encounter_id=f"ENC-{claim_id}", patient_control_number=pcn or claim_id,
                   lines=claim_lines, total_charge=sum((ln.charge for ln in claim_lines), D(0)), **fields)


def svc(x12: SimpleNamespace, code: str, billed: str, adjustments: Sequence[Adjustment] = (), *, ref: str | None = None,
        modifiers: Sequence[str] = (), units: int = 1, submitted: str | None = None,
        submitted_modifiers: Sequence[str] = (), allowed: str | None = None, rarcs: Sequence[str] = (),
        dos: date | None = DOS) -> Any:
    """A balanced SVC loop: paid = billed − Σ CAS."""
    paid = D(billed) - sum((a.amount for a in adjustments), D(0))
    return x12.Line835(
        line_control_number=ref, procedure_code=code, modifiers=list(modifiers), billed_amount=D(billed),
        paid_amount=paid, units=units, submitted_procedure_code=submitted,
        submitted_modifiers=list(submitted_modifiers), allowed_amount=D(allowed) if allowed is not None else None,
        adjustments=list(adjustments), rarcs=list(rarcs), date_of_service=dos)


def clp(x12: SimpleNamespace, pcn: str, status: str, lines: list[Any], *, pccn: str, frequency: str = "1",
        adjustments: Sequence[Adjustment] = (), rarcs: Sequence[str] = (), dos: date | None = DOS) -> Any:
    """A balanced CLP loop over ``lines``."""
    everything = [*adjustments, *(a for ln in lines for a in ln.adjustments)]
    billed = sum((ln.billed_amount for ln in lines), D(0))
    paid = billed - sum((a.amount for a in everything), D(0))
    return x12.ClaimPayment835(
        patient_control_number=pcn, claim_status_code=status, billed_amount=billed, paid_amount=paid,
        patient_responsibility=sum((a.amount for a in everything if a.group_code == PR), D(0)),
        claim_filing_indicator="15", payer_claim_control_number=pccn, facility_code="11",
        claim_frequency_code=frequency, adjustments=list(adjustments), rarcs=list(rarcs), lines=lines,
        date_of_service=dos, segments=f"CLP*{pcn}*{status}*{billed}*{paid}**15*{pccn}*11*{frequency}~")


def payment(x12: SimpleNamespace, claims: list[Any], *, payer_id: str = "PPO01", trace: str = TRACE,
            plb: Sequence[ProviderAdjustment] = (), method: str = "ACH") -> Any:
    total = sum((c.paid_amount for c in claims), D(0)) - sum((a.amount for a in plb), D(0))
    return x12.Payment835(
        payer_id=payer_id, payer_name="COMMERCIAL PPO", payee_npi="1912301953", trace_number=trace,
        payment_method=method, payment_amount=total, payment_date=PAID_ON, provider_adjustments=list(plb),
        claims=claims)


def by_claim(result: IngestResult) -> dict[str, Remittance]:
    return {r.claim_id: r for r in result.remittances}


# --- out: the remittances of a period -----------------------------------------------------------


def test_period_payer_and_redeliveries() -> None:
    base = sample_events()[Remittance]

    def remit(rid: str, paid_on: date, payer: str = "PPO01", status: str = "1", claim_id: str = "C1") -> Remittance:
        return replace(base, remittance_id=rid, payment_date=paid_on, payer_id=payer, claim_status_code=status,
                       claim_id=claim_id, trace_number=f"EFT{paid_on:%Y%m%d}{payer}")

    march = [remit("R1", date(2026, 3, 1)), remit("R2", date(2026, 3, 31)), remit("R3", date(2026, 3, 15), "MCR01")]
    outside = [remit("R0", date(2026, 2, 28)), remit("R4", date(2026, 4, 1))]
    redelivered = replace(march[0], adjudicated_at=NOW + timedelta(hours=1))  # the same id again
    every = [*outside, *march, redelivered]
    chosen = select_remittances(every, date(2026, 3, 1), date(2026, 3, 31), None)
    assert [r.remittance_id for r in chosen] == ["R1", "R3", "R2"]  # by payment date; R1 once
    assert chosen[0] is march[0]  # the first delivery kept
    assert [r.remittance_id for r in select_remittances(every, None, None, "MCR01")] == ["R3"]
    assert [r.remittance_id for r in select_remittances(every, date(2026, 3, 16), None, None)] == ["R2", "R4"]
    assert len(select_remittances(every)) == 5
    # a reversal goes before the payment of the claim that replaced it, whatever the topic order
    pair = [remit("R-NEW", PAID_ON, claim_id="C-REPL"), remit("R-REV", PAID_ON, status="22", claim_id="C-ORIG")]
    assert [r.remittance_id for r in select_remittances(pair)] == ["R-REV", "R-NEW"]


# --- in: which claim ----------------------------------------------------------------------------


def test_multi_claim_payment_from_a_payer_file(x12: SimpleNamespace) -> None:
    """The hand-written multi-claim 835: two of the claims are ours, the third is not."""
    [pay] = x12.read_835(fixture("835_multi_claim.835"))
    ours = [claim("C-1001", [("99213", [], 1, "150"), ("36415", [], 1, "35")], pcn="CF1001", payer_id="61101"),
            claim("C-1002", [("99214", ["25"], 1, "210"), ("96372", [], 1, "40"), ("81002", [], 1, "15")],
                  pcn="CF1002", payer_id="61101")]
    result = match_payment(pay, pcn_index(ours), SOURCE, NOW)

    paid, partial = result.remittances
    assert (paid.claim_id, paid.outcome, partial.claim_id, partial.outcome) == (
        "C-1001", RemittanceOutcome.PAID, "C-1002", RemittanceOutcome.PARTIALLY_PAID)
    assert (paid.billed_amount, paid.allowed_amount, paid.paid_amount, paid.patient_responsibility) == (
        D("185"), D("108.20"), D("83.20"), D("25"))
    assert (paid.payer_id, paid.payer_claim_control_number, paid.trace_number, paid.payment_date) == (
        "61101", "SPH2026040300011", "EFT0000457712", date(2026, 4, 3))
    assert (paid.payer_name, paid.payee_npi, paid.payment_method, paid.source, paid.adjudicated_at) == (
        "SUMMIT PEAK HEALTH", "1234567893", "ACH", SOURCE, NOW)
    assert (paid.encounter_id, paid.encounter_occurred_at, paid.date_of_service) == (
        "ENC-C-1001", ours[0].encounter_occurred_at, date(2026, 3, 16))  # DTM*232
    assert paid.remittance_id == remittance_id("61101", "SPH2026040300011", "1", "EFT0000457712")
    assert [(ln.line_number, ln.procedure_code, ln.allowed_amount) for ln in paid.lines] == [
        (1, "99213", D("98.40")), (2, "36415", D("9.80"))]
    # the third line has no REF*6R: matched by its code
    assert [(ln.line_number, ln.procedure_code, ln.modifiers) for ln in partial.lines] == [
        (1, "99214", ["25"]), (2, "96372", []), (3, "81002", [])]
    assert (partial.lines[1].rarcs, partial.lines[1].adjustments) == (["M15"], [Adjustment(CO, "97", D("40"), 1)])

    [unknown] = result.unapplied
    assert unknown.patient_control_number == "CF1003"
    assert unknown.reason == "no claim with patient control number CF1003"
    assert (unknown.payer_id, unknown.trace_number, unknown.payer_claim_control_number, unknown.claim_status_code) == (
        "61101", "EFT0000457712", "SPH2026040300013", "4")
    assert (unknown.billed_amount, unknown.paid_amount, unknown.source, unknown.received_at) == (
        D("480"), D("0"), SOURCE, NOW)
    assert unknown.x12_segments == pay.claims[2].segments  # the CLP loop as received, never dropped
    assert unknown.x12_segments.startswith("CLP*CF1003*4*480*0**12*SPH2026040300013*11*1~\n")
    assert unknown.x12_segments.endswith("AMT*B6*0~") and "SVC*HC:73721:RT*480*0~" in unknown.x12_segments
    assert unknown.item_id.startswith("UA-") and len(unknown.item_id) == 19 and unknown.item_id[3:].isupper()

    received = result.payment
    assert (received.payer_id, received.payer_name, received.trace_number, received.payment_method) == (
        "61101", "SUMMIT PEAK HEALTH", "EFT0000457712", "ACH")
    assert (received.payment_amount, received.payment_date, received.provider_adjustments) == (
        D("160.40"), date(2026, 4, 3), [])
    assert (received.claim_payments, received.matched, received.unapplied) == (3, 2, 1)
    assert (received.source, received.received_at) == (SOURCE, NOW)
    assert received.payment_id.startswith("PAY-")

    emits = result.emits()
    assert [(e.topic, e.key) for e in emits] == [("remittances", "C-1001"), ("remittances", "C-1002"),
                                                ("unapplied-cash", "61101"), ("payments", "61101")]
    assert totals([result]) == {"payments": 1, "claim payments": 3, "matched": 2, "unapplied": 1,
                                "total paid": D("160.40"), "PLB total": D("0")}


def test_several_claims_of_one_transaction(x12: SimpleNamespace) -> None:
    a = claim("C-A", [("99213", [], 1, "150"), ("81002", [], 2, "15")])
    b = claim("C-B", [("99214", ["25"], 1, "210"), ("J3301", [], 4, "88")])
    c = claim("C-C", [("73721", ["RT"], 1, "480")])
    d = claim("C-D", [("97110", [], 1, "90"), ("97140", [], 1, "80")])
    pay = payment(x12, [
        clp(x12, "C-A", "1", [svc(x12, "99213", "150", [Adjustment(CO, "45", D("51.60")), Adjustment(PR, "3", D(25))],
                                  ref="1", allowed="98.40"),
                              svc(x12, "81002", "15", [Adjustment(CO, "45", D("11.52"))], ref="2", units=2)],
            pccn="PA"),
        clp(x12, "C-B", "1", [svc(x12, "99214", "210", [Adjustment(CO, "45", D("77.85"))], modifiers=["25"]),
                              svc(x12, "J3301", "88", [Adjustment(CO, "97", D(88), 4)], units=4, rarcs=["M15"])],
            pccn="PB"),
        clp(x12, "C-C", "4", [svc(x12, "73721", "480", [Adjustment(CO, "197", D(480))], modifiers=["RT"])],
            pccn="PC", rarcs=["N54"]),
        clp(x12, "C-D", "1", [svc(x12, "97110", "90", [Adjustment(CO, "50", D(90))]),
                              svc(x12, "97140", "80", [Adjustment(CO, "96", D(80))])], pccn="PD"),
    ])
    result = match_payment(pay, pcn_index([d, c, b, a]), SOURCE, NOW)
    remits = by_claim(result)
    assert [r.claim_id for r in result.remittances] == ["C-A", "C-B", "C-C", "C-D"]  # the 835's order
    assert {cid: r.outcome for cid, r in remits.items()} == {
        "C-A": RemittanceOutcome.PAID, "C-B": RemittanceOutcome.PARTIALLY_PAID, "C-C": RemittanceOutcome.DENIED,
        "C-D": RemittanceOutcome.DENIED}  # C-D: status 1, nothing paid, every line denied
    a_remit = remits["C-A"]
    # allowed: AMT*B6, else paid + the patient's share; the claim's: Σ lines without AMT*AU
    assert [ln.allowed_amount for ln in a_remit.lines] == [D("98.40"), D("3.48")]
    assert a_remit.allowed_amount == D("101.88") and a_remit.patient_responsibility == D(25)
    assert [ln.units for ln in a_remit.lines] == [1, 2]
    assert remits["C-C"].rarcs == ["N54"] and remits["C-C"].payment_method == "NON"
    assert remits["C-B"].lines[1].date_of_service == DOS
    assert [r.remittance_id for r in result.remittances] == [
        remittance_id("PPO01", pccn, status, TRACE) for pccn, status in [("PA", "1"), ("PB", "1"), ("PC", "4"),
                                                                          ("PD", "1")]]
    assert (result.payment.matched, result.payment.unapplied, result.unapplied) == (4, 0, [])


@pytest.mark.parametrize("replacement_charge", ["150", "210"], ids=["same-charge", "corrected-charge"])
def test_reversal_and_replacement_sharing_a_pcn(x12: SimpleNamespace, replacement_charge: str) -> None:
    original = claim("C-ORIG", pcn="PCN-77", submitted_at=NOW)
    replacement = claim("C-REPL", [("99214", [], 1, replacement_charge)], pcn="PCN-77", frequency_code="7",
                        original_claim_id="C-ORIG", submitted_at=LATER)
    index = pcn_index([replacement, original])
    assert [c.claim_id for c in index["PCN-77"]] == ["C-ORIG", "C-REPL"]

    first_payment = clp(x12, "PCN-77", "1", [svc(x12, "99213", "150", [Adjustment(CO, "45", D("51.60"))], ref="1")],
                        pccn="P-ORIG")
    taken_back = clp(x12, "PCN-77", "22", [svc(x12, "99213", "-150", [Adjustment(CO, "45", D("-51.60"))], ref="1")],
                     pccn="P-ORIG", frequency="7")
    repaid = clp(x12, "PCN-77", "1", [svc(x12, "99214", replacement_charge, [Adjustment(CO, "45", D("10"))], ref="1")],
                 pccn="P-REPL", frequency="7")
    # ingested late: the original's first payment still goes to the original
    [paid] = match_payment(payment(x12, [first_payment], trace="EFT1"), index, SOURCE, NOW).remittances
    assert (paid.claim_id, paid.outcome, paid.claim_frequency_code) == ("C-ORIG", RemittanceOutcome.PAID, "1")

    result = match_payment(payment(x12, [taken_back, repaid], trace="EFT2"), index, SOURCE, NOW)
    reversal, replaced = result.remittances
    assert (reversal.claim_id, reversal.outcome, reversal.paid_amount, reversal.claim_frequency_code) == (
        "C-ORIG", RemittanceOutcome.REVERSED, D("-98.40"), "7")
    assert (replaced.claim_id, replaced.outcome, replaced.patient_control_number) == (
        "C-REPL", RemittanceOutcome.PAID, "PCN-77")
    assert reversal.remittance_id == remittance_id("PPO01", "P-ORIG", "22", "EFT2") != paid.remittance_id
    assert result.payment.payment_amount == D("-98.40") + replaced.paid_amount

    # a void of the original: its reversal carries frequency 8
    void = claim("C-VOID", pcn="PCN-77", frequency_code="8", original_claim_id="C-ORIG", submitted_at=LATER)
    voided = clp(x12, "PCN-77", "22", [svc(x12, "99213", "-150", [], ref="1")], pccn="P-ORIG", frequency="8")
    [reversed_] = match_payment(payment(x12, [voided]), pcn_index([original, void]), SOURCE, NOW).remittances
    assert reversed_.claim_id == "C-ORIG"


def test_replacement_naming_the_payers_number(x12: SimpleNamespace) -> None:
    """An 837 replacement's REF*F8 is the payer's claim control number: a CLP with that
    number pays or reverses the claim it replaced, even along a chain of replacements."""
    original = claim("C-1", pcn="PCN-9", submitted_at=NOW)
    first = claim("C-2", pcn="PCN-9", frequency_code="7", original_claim_id="P-1", submitted_at=NOW + timedelta(days=1))
    second = claim("C-3", pcn="PCN-9", frequency_code="7", original_claim_id="P-2", submitted_at=LATER)
    candidates = [original, first, second]

    def chosen(status: str, pccn: str, frequency: str) -> str:
        billed = "-150" if status == "22" else "150"
        cp = clp(x12, "PCN-9", status, [svc(x12, "99213", billed, [], ref="1")], pccn=pccn, frequency=frequency)
        return choose_claim(cp, candidates).claim_id

    assert chosen("1", "P-1", "1") == "C-1"
    assert chosen("22", "P-1", "7") == "C-1"
    assert chosen("22", "P-2", "7") == "C-2"  # the earliest rule alone would say C-1
    assert chosen("1", "P-3", "7") == "C-3"  # nothing names P-3: the latest of frequency 7


def test_a_payer_number_seen_before_decides(x12: SimpleNamespace) -> None:
    original = claim("C-1", pcn="PCN-5", submitted_at=NOW)
    replacement = claim("C-2", pcn="PCN-5", frequency_code="7", original_claim_id="C-1", submitted_at=LATER)
    # the payer's first payment of the replacement says frequency 1 (payers are not always exact)
    cp = clp(x12, "PCN-5", "1", [svc(x12, "99213", "150", [], ref="1")], pccn="P-2", frequency="1")
    index = pcn_index([original, replacement])
    assert choose_claim(cp, index["PCN-5"]).claim_id == "C-1"
    posted = replace(sample_events()[Remittance], claim_id="C-2", payer_id="PPO01", payer_claim_control_number="P-2")
    known = known_claims([posted])
    assert known == {("PPO01", "P-2"): "C-2"}
    [remit] = match_payment(payment(x12, [cp]), index, SOURCE, NOW, known).remittances
    assert remit.claim_id == "C-2"
    # and within one file, a later transaction knows what an earlier one matched
    reversal = clp(x12, "PCN-5", "22", [svc(x12, "99213", "-150", [], ref="1")], pccn="P-2", frequency="1")
    first, second = match_file([payment(x12, [cp], trace="T1"), payment(x12, [reversal], trace="T2")], index,
                               SOURCE, NOW, known)
    assert [r.claim_id for r in second.remittances] == ["C-2"]
    assert first.matched_claims == {("PPO01", "P-2"): "C-2"}


def test_payer_mismatch_is_unapplied(x12: SimpleNamespace) -> None:
    ours = claim("C-MCR", pcn="PCN-1", payer_id="MCR01")
    cp = clp(x12, "PCN-1", "1", [svc(x12, "99213", "150", [], ref="1")], pccn="P-1")
    result = match_payment(payment(x12, [cp], payer_id="PPO01"), pcn_index([ours]), SOURCE, NOW)
    assert result.remittances == []
    [item] = result.unapplied
    assert "payer mismatch" in item.reason and "PPO01" in item.reason and "MCR01" in item.reason
    assert "C-MCR" in item.reason
    assert (item.payer_id, item.x12_segments, item.paid_amount) == ("PPO01", cp.segments, D(150))
    assert (result.payment.matched, result.payment.unapplied) == (0, 1)
    # of two claims sharing the PCN, the one billed to this payer
    other = claim("C-PPO", pcn="PCN-1", payer_id="PPO01", submitted_at=NOW - timedelta(days=9))
    [remit] = match_payment(payment(x12, [cp]), pcn_index([ours, other]), SOURCE, NOW).remittances
    assert remit.claim_id == "C-PPO"
    # an 835 that names no payer: the claim's payer is taken
    [remit] = match_payment(payment(x12, [cp], payer_id=""), pcn_index([ours]), SOURCE, NOW).remittances
    assert (remit.claim_id, remit.payer_id) == ("C-MCR", "MCR01")
    assert remit.remittance_id == remittance_id("MCR01", "P-1", "1", TRACE)


# --- in: which line -----------------------------------------------------------------------------


def test_payer_changed_lines_without_ref_6r(x12: SimpleNamespace) -> None:
    """The hand-written re-coded file without its REF*6R: 99214 paid as 99213 (SVC06) and
    97110-59 paid as 97110 (the modifier dropped, named in SVC06)."""
    text = fixture("835_recoded_pipes.835").replace("REF|6R|1\n", "").replace("REF|6R|2\n", "")
    [pay] = x12.read_835(text)
    assert [ln.line_control_number for ln in pay.claims[0].lines] == [None, None]
    ours = claim("C-5001", [("97110", ["59"], 2, "90"), ("99214", [], 1, "210")], pcn="CF5001", payer_id="61101")
    [remit] = match_payment(pay, pcn_index([ours]), SOURCE, NOW).remittances
    recoded, unmodified = remit.lines
    assert (recoded.line_number, recoded.procedure_code, recoded.submitted_procedure_code, recoded.rarcs) == (
        2, "99213", "99214", ["N10"])
    assert (unmodified.line_number, unmodified.procedure_code, unmodified.modifiers) == (1, "97110", [])
    assert (unmodified.submitted_procedure_code, unmodified.submitted_modifiers, unmodified.units) == (
        "97110", ["59"], 2)
    assert remit.outcome == RemittanceOutcome.PARTIALLY_PAID  # CO-150 on the re-coded line


def test_line_matching_passes(x12: SimpleNamespace) -> None:
    ours = claim("C-L", [("99214", ["25"], 1, "210"), ("97110", ["59"], 1, "90"), ("97110", [], 1, "90"),
                         ("J3301", [], 4, "88"), ("36415", [], 1, "35")]).lines

    def numbers(svcs: list[Any]) -> list[int | None]:
        return [ln.line_number if ln is not None else None for ln in match_lines(svcs, ours)]

    # REF*6R first, whatever the code says
    assert numbers([svc(x12, "99999", "35", ref="5"), svc(x12, "99214", "210", ref="1")]) == [5, 1]
    # a dropped modifier keeps the payer's order among lines of one code
    assert numbers([svc(x12, "97110", "90"), svc(x12, "97110", "90")]) == [2, 3]
    # SVC06 names the line as billed, even with the modifier (and before plain codes take it)
    assert numbers([svc(x12, "97110", "90"), svc(x12, "97112", "90", submitted="97110", submitted_modifiers=["59"])]) \
        == [3, 2]
    # the payer's order need not be ours; the charge and units break ties
    assert numbers([svc(x12, "J3301", "88", units=4), svc(x12, "36415", "35"), svc(x12, "99213", "210",
                                                                               submitted="99214")]) == [4, 5, 1]
    # a code none of ours has, without SVC06: the line left over, by position
    assert numbers([svc(x12, "99214", "210"), svc(x12, "G0008", "90"), svc(x12, "97110", "90"),
                    svc(x12, "J3301", "88"), svc(x12, "36415", "35")]) == [1, 3, 2, 4, 5]
    # more SVCs than lines (a split line): the extra reuses the line it names, else 0
    two = claim("C-S", [("99214", [], 1, "210")]).lines
    split = [svc(x12, "99214", "150"), svc(x12, "99211", "60", submitted="99214"), svc(x12, "A0000", "1")]
    assert [ln.line_number if ln else None for ln in match_lines(split, two)] == [1, 1, None]


def test_outcome_rules() -> None:
    def line(paid: str, *adjustments: Adjustment) -> RemittanceLine:
        return RemittanceLine(1, "99213", D(100), D(paid), D(paid), list(adjustments))

    cost_sharing = [Adjustment(CO, "45", D(10)), Adjustment(PR, "1", D(5)), Adjustment(PR, "96", D(5))]
    assert outcome_of("22", D(-50), [], [line("50")]) == RemittanceOutcome.REVERSED
    assert outcome_of("4", D(0), [], [line("0")]) == RemittanceOutcome.DENIED
    assert outcome_of("1", D(80), [], [line("80", *cost_sharing)]) == RemittanceOutcome.PAID  # PR-96: the patient's
    assert outcome_of("1", D(80), [Adjustment(OA, "23", D(1))], [line("80")]) == RemittanceOutcome.PARTIALLY_PAID
    assert outcome_of("2", D(80), [], [line("80"), line("0", Adjustment(CO, "97", D(100)))]) \
        == RemittanceOutcome.PARTIALLY_PAID
    assert outcome_of("1", D(0), [], [line("0", Adjustment(CO, "197", D(100)))] * 2) == RemittanceOutcome.DENIED
    assert outcome_of("1", D(0), [], [line("0", Adjustment(PR, "1", D(100)))]) == RemittanceOutcome.PAID  # deductible
    assert outcome_of("1", D(0), [Adjustment(CO, "16", D(100))], []) == RemittanceOutcome.DENIED
    assert outcome_of("1", D(100), [], []) == RemittanceOutcome.PAID


# --- in: the payment ----------------------------------------------------------------------------


def test_plb_is_carried_into_the_payment(x12: SimpleNamespace) -> None:
    [pay] = x12.read_835(fixture("835_plb.835"))
    ours = [claim("C-4001", pcn="CF4001", payer_id="BMH01"), claim("C-4002", pcn="CF4002", payer_id="BMH01")]
    result = match_payment(pay, pcn_index(ours), SOURCE, NOW)
    assert result.payment.provider_adjustments == [
        ProviderAdjustment("L6", "BMH2026041500012", D("-2.37")),
        ProviderAdjustment("WO", "BMH2026021100031", D("45")),
        ProviderAdjustment("CS", "CAPITATION ADJ", D("12.50")),
        ProviderAdjustment("L6", "BMH2026041500013", D("-0.88")),
    ]
    assert (result.payment.payment_amount, result.payment.payer_id, result.payment.matched) == (D("96.95"), "BMH01", 2)
    assert sum(r.paid_amount for r in result.remittances) == D("151.20")  # claims carry their own amounts
    assert totals([result])["PLB total"] == D("54.25")
    assert totals([result])["total paid"] == D("96.95")


def test_ids_are_deterministic(x12: SimpleNamespace) -> None:
    ours = claim("C-1", pcn="PCN-1")
    claims = [clp(x12, "PCN-1", "1", [svc(x12, "99213", "150", [], ref="1")], pccn="P-1"),
              clp(x12, "PCN-X", "1", [svc(x12, "99213", "150", [], ref="1")], pccn="P-X"),
              clp(x12, "PCN-Y", "1", [svc(x12, "99213", "150", [], ref="1")], pccn="P-X")]  # a payer's slip
    plb = [ProviderAdjustment("WO", "P-0", D("10"))]
    first = match_payment(payment(x12, claims, plb=plb), pcn_index([ours]), SOURCE, NOW)
    again = match_payment(payment(x12, copy.deepcopy(claims), plb=plb), pcn_index([copy.deepcopy(ours)]), SOURCE,
                          NOW + timedelta(hours=5))
    assert [r.remittance_id for r in first.remittances] == [r.remittance_id for r in again.remittances]
    assert [u.item_id for u in first.unapplied] == [u.item_id for u in again.unapplied]
    assert len({u.item_id for u in first.unapplied}) == 2  # never merged, even with the same payer number
    assert first.payment.payment_id == again.payment.payment_id
    assert [replace(r, adjudicated_at=NOW) for r in again.remittances] == first.remittances
    other = match_payment(payment(x12, claims, trace="EFT-OTHER"), pcn_index([ours]), SOURCE, NOW)
    assert other.payment.payment_id != first.payment.payment_id
    assert {u.item_id for u in other.unapplied}.isdisjoint(u.item_id for u in first.unapplied)
    assert isinstance(first.payment, PaymentReceived) and all(isinstance(u, UnappliedPayment) for u in first.unapplied)


def test_events_encode(x12: SimpleNamespace, codec: Any) -> None:
    """What ingest publishes survives the Avro codec."""
    ours = claim("C-1", pcn="PCN-1")
    claims = [clp(x12, "PCN-1", "1", [svc(x12, "99213", "150", [Adjustment(PR, "3", D(25))], ref="1")], pccn="P-1"),
              clp(x12, "PCN-X", "4", [svc(x12, "99213", "150", [Adjustment(CO, "29", D(150))])], pccn="P-X")]
    result = match_payment(payment(x12, claims, plb=[ProviderAdjustment("L6", None, D("-1.25"))]),
                           pcn_index([ours]), SOURCE, NOW)
    for emit in result.emits():
        assert codec.decode(codec.encode(emit.event), type(emit.event)) == emit.event


def test_validation_findings_are_printed_without_phi(x12: SimpleNamespace) -> None:
    text = fixture("835_multi_claim.835").replace("NM1*QC*1*QUILL*MARGOT", "NM1*QC*1*QUILL" + "X" * 60 + "*MARGOT")
    text = text.replace("CLP*CF1001*1*185*83.2*", "CLP*CF1001*1*185*83.21*")
    findings = [redact_x12_error(error) for error in x12.validate_835(text)]
    assert findings and not any("QUILL" in finding for finding in findings)
    assert any('Data element "Patient Last Name" (NM103) is too long' in finding for finding in findings)
    assert "claimflow: CLP CF1001: CLP03 185 − CAS 101.80 = 83.20, not CLP04 83.21" in findings  # ours: kept


# --- the acceptance round trip --------------------------------------------------------------------


def simulated(book: PayerBook) -> tuple[list[Remittance], dict[str, ClaimSubmitted]]:
    """What the payer simulator pays over a month: paid, partially paid, denied, a claim
    paid then replaced (same PCN: a reversal and the replacement's payment in one EFT),
    one paid then voided, and another payer's claim."""
    profile = book.payers["PPO01"]
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def paid_line(line: ClaimLine, allowed: str, *patient: Adjustment) -> RemittanceLine:
        adjustments = [Adjustment(CO, "45", line.charge - D(allowed)), *patient]
        paid = D(allowed) - sum((a.amount for a in patient), D(0))
        return RemittanceLine(line.line_number, line.procedure_code, line.charge, D(allowed), paid, adjustments,
                              modifiers=list(line.modifiers), units=line.units, date_of_service=line.date_of_service)

    def denied_line(line: ClaimLine, carc: str, rarc: str | None = None) -> RemittanceLine:
        return RemittanceLine(line.line_number, line.procedure_code, line.charge, D(0), D(0),
                              [Adjustment(CO, carc, line.charge, line.units)], [rarc] if rarc else [],
                              modifiers=list(line.modifiers), units=line.units, date_of_service=line.date_of_service)

    paid = claim("C-PAID", [("99213", [], 1, "150"), ("81002", [], 2, "30")], submitted_at=t0)
    partial = claim("C-PART", [("99214", ["25"], 1, "210"), ("J3301", [], 4, "88")], submitted_at=t0)
    denied = claim("C-DENY", [("73721", ["RT"], 1, "480")], submitted_at=t0)
    original = claim("C-ORIG", [("99213", [], 1, "150")], pcn="PCN-SHARED", submitted_at=t0)
    replacement = claim("C-REPL", [("99214", [], 1, "210")], pcn="PCN-SHARED", frequency_code="7",
                        original_claim_id="C-ORIG", submitted_at=t0 + timedelta(days=10))
    voided = claim("C-VOIDED", [("99213", [], 1, "150")], submitted_at=t0)
    void = claim("C-VOID", [("99213", [], 1, "150")], pcn="C-VOIDED", frequency_code="8",
                 original_claim_id="C-VOIDED", submitted_at=t0 + timedelta(days=12))
    medicare = claim("C-MCR", [("99213", [], 1, "150")], payer_id="MCR01", payer_name="MEDICARE PART B",
                     claim_filing_indicator="MB", submitted_at=t0)

    day1, day2 = date(2026, 3, 20), date(2026, 3, 27)
    now1, now2 = datetime(2026, 3, 20, 6, tzinfo=UTC), datetime(2026, 3, 27, 6, tzinfo=UTC)
    r_paid = build_remittance(paid, [paid_line(paid.lines[0], "98.40", Adjustment(PR, "3", D(25))),
                                     paid_line(paid.lines[1], "6.96")], [], profile, day1, now1)
    r_partial = build_remittance(partial, [paid_line(partial.lines[0], "132.15", Adjustment(PR, "1", D(40)),
                                                     Adjustment(PR, "2", D("18.43"))),
                                           denied_line(partial.lines[1], "97", "M15")], [], profile, day1, now1)
    r_denied = build_remittance(denied, [denied_line(denied.lines[0], "197")], ["N54"], profile, day1, now1)
    r_original = build_remittance(original, [paid_line(original.lines[0], "98.40", Adjustment(PR, "2", D("19.68")))],
                                  [], profile, day1, now1)
    r_voided = build_remittance(voided, [paid_line(voided.lines[0], "98.40")], [], profile, day1, now1)
    r_reversal = reversal_of(r_original, replacement, day2, now2)
    r_replacement = build_remittance(replacement, [paid_line(replacement.lines[0], "132.15")], [], profile, day2, now2)
    r_void = reversal_of(r_voided, void, day2, now2)
    r_medicare = build_remittance(medicare, [paid_line(medicare.lines[0], "90.00", Adjustment(PR, "2", D(18)))], [],
                                  book.payers["MCR01"], day1, now1)
    remittances = [r_paid, r_partial, r_denied, r_original, r_voided, r_medicare, r_reversal, r_replacement, r_void]
    claims = {c.claim_id: c for c in (paid, partial, denied, original, replacement, voided, void, medicare)}
    return remittances, claims


def ledgers(remittances: Sequence[Remittance], routing: DenialRouting) -> dict[str, Ledger]:
    """Posting's fold, claim by claim, as the remittances agent does it."""
    out: dict[str, Ledger] = {}
    for r in remittances:
        ledger = post(copy.deepcopy(out.get(r.claim_id)), r, routing, None)
        if ledger is not None:
            out[r.claim_id] = ledger
    return out


def test_export_then_ingest_reproduces_the_postings(x12: SimpleNamespace, settings: Settings, book: PayerBook,
                                                     routing: DenialRouting) -> None:
    remittances, claims = simulated(book)
    assert {r.outcome for r in remittances} == set(RemittanceOutcome)
    assert [r.payment_method for r in remittances].count("NON") == 1  # the denial
    exported = select_remittances([*remittances, remittances[0]])  # a redelivery on the topic
    assert len(exported) == len(remittances)
    x12_settings = replace(settings, x12_sender_id="CLAIMFLOW", x12_receiver_id="CLEARINGHOUSE", x12_usage="T")
    text = x12.write_835(exported, claims, x12_settings, 42, NOW)
    assert x12.validate_835(text) == []
    payments = x12.read_835(text)
    assert len(payments) == 3  # PPO01 on two days, MCR01

    results = match_file(payments, pcn_index(claims.values()), SOURCE, NOW)
    assert all(r.unapplied == [] for r in results)
    ingested = [remit for result in results for remit in result.remittances]
    original_by_id = {r.remittance_id: r for r in remittances}
    assert sorted(original_by_id) == sorted(r.remittance_id for r in ingested)
    for remit in ingested:  # field by field, but when and by whom it was adjudicated
        original = original_by_id[remit.remittance_id]
        assert replace(remit, adjudicated_at=original.adjudicated_at, source=original.source) == original, (
            remit.claim_id)
        assert remit.source == SOURCE
    assert ledgers(ingested, routing) == ledgers(exported, routing)
    # fed back onto what was posted from the topic, the file posts nothing twice
    posted = ledgers(remittances, routing)
    assert all(post(copy.deepcopy(posted[r.claim_id]), r, routing, None) is None for r in ingested)
    summary = totals(results)
    assert (summary["claim payments"], summary["matched"], summary["unapplied"]) == (9, 9, 0)
    assert summary["total paid"] == sum((p.payment_amount for p in payments), D(0))
