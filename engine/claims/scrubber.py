"""The scrubber: the clean-claim gate a built claim passes before it is submitted.

It runs in the claim stage after the claim is built and the payer has answered ACTIVE.
Each rule is a small function ``(claim, ctx) -> findings`` registered with the rule ids
it raises, like the coding rules (``engine.coding.rules``). An ERROR stops the claim: it goes
to the scrub work queue with every finding. A WARNING travels with a submitted claim.

The gate is at least as strict as the 837P writer (``engine.x12.professional.claim_problems``):
a claim that scrubs clean can always be written.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from engine.coding.findings import error, errors_first, registrar, warning
from engine.model.codes import SELF
from engine.model.events import ClaimSubmitted, EligibilityResponse, EligibilityStatus, Finding
from engine.reference.codesets import npi_is_valid
from engine.reference.master_data import PayerInfo
from engine.x12.claim_837_write import FREQUENCIES, MAX_DIAGNOSES, MAX_LINES, MAX_MODIFIERS, MAX_POINTERS

TIMELY_FILING_NEAR_MARGIN = Fraction(1, 10)
"""The last share of a payer's timely-filing window: a claim with no more than this share
of its days left earns a SCRUB_TIMELY_FILING_NEAR warning (9 days or fewer of a 90-day
limit, 36 or fewer of 365).

A claim the payer's front end rejects (999 / 277CA) was never received: it has to be
corrected and sent again inside the same window, and past it the payer denies with
CARC 29 (time limit for filing has expired), which is a write-off. The last tenth is
the time a biller needs to work such a rejection, so the claim should go out now and
be watched. An exact fraction, so the boundary day does not depend on float rounding."""

#: 837P 5010 PAT01, the patient's relationship to the insured when not the insured:
#: 01 spouse, 19 child, 20 employee, 21 unknown, 39 organ donor, 40 cadaver donor,
#: 53 life partner, G8 other relationship.
PATIENT_RELATIONSHIPS = frozenset({"01", "19", "20", "21", "39", "40", "53", "G8"})
#: Patient sex a payer can adjudicate (DMG03). X12 also allows U, but here U is what a
#: claim carries when registration recorded nothing (the ``ClaimSubmitted`` default).
KNOWN_SEXES = frozenset({"F", "M"})
ORGANISATION = "2"  # NM102 entity type: an organisation bills, a person (1) renders
MAX_PATIENT_CONTROL_NUMBER = 38  # CLM01


@dataclass(frozen=True)
class ScrubContext:
    """What a claim is scrubbed against: the payer's master data (None: not a payer we
    bill), the payer's eligibility answer, the day of submission, the CMS POS codes."""

    payer: PayerInfo | None
    eligibility: EligibilityResponse | None
    today: date
    places_of_service: frozenset[str]


def load_places_of_service(path: Path) -> frozenset[str]:
    """The ``code`` column of the CMS Place of Service list (``#`` lines are comments)."""
    with path.open(newline="") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return frozenset(row["code"].strip() for row in rows)


ScrubRule = Callable[[ClaimSubmitted, ScrubContext], Iterable[Finding]]
SCRUB_RULES: list[ScrubRule] = []
#: Every scrub rule id, with the rule function that raises it.
SCRUB_RULE_IDS: dict[str, str] = {}


scrub_rule = registrar(SCRUB_RULES, SCRUB_RULE_IDS)


def _missing(value: object) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not value
    return value is None


# --- who ---------------------------------------------------------------------------


@scrub_rule("SCRUB_NPI_INVALID")
def npi_check_digits(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Billing and rendering NPI: 10 digits, first 1 or 2, Luhn check digit over 80840 +
    the first nine. (A missing NPI is SCRUB_REQUIRED's.)"""
    for element, npi in (("billing_provider.npi", claim.billing_npi), ("rendering_provider.npi", claim.rendering_npi)):
        if npi and not npi_is_valid(npi):
            yield error("SCRUB_NPI_INVALID", f"NPI {npi} is not a valid NPI (10 digits, first 1 or 2, check digit)",
                         element)


@scrub_rule("SCRUB_REQUIRED")
def required_elements(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """What the 837P and the payer need, present: one finding per missing element."""
    billing = claim.billing_provider
    values: dict[str, object] = {
        "patient_control_number": claim.patient_control_number,
        "billing_provider.npi": claim.billing_npi,
        "billing_provider.name": billing.name if billing else None,
        "billing_provider.tax_id": billing.tax_id if billing else None,
        "billing_provider.address": billing.address if billing else None,
    }
    if billing is not None and billing.entity_type == ORGANISATION:
        values["rendering_provider.npi"] = claim.rendering_npi  # an organisation renders nothing
    if claim.rendering_npi and claim.rendering_npi != claim.billing_npi:  # 2310B: NM103 required
        values["rendering_provider.name"] = claim.rendering_provider.name if claim.rendering_provider else None
    values |= {
        "payer_id": claim.payer_id,
        "payer_name": claim.payer_name,
        "claim_filing_indicator": claim.claim_filing_indicator,
        "member_id": claim.member_id,
        "patient_first_name": claim.patient_first_name,
        "patient_last_name": claim.patient_last_name,
        "patient_birth_date": claim.patient_birth_date,
        "patient_sex": claim.patient_sex if claim.patient_sex in KNOWN_SEXES else None,
    }
    subscriber = claim.subscriber
    if subscriber is not None and subscriber.relationship != SELF:
        values |= {
            "patient_address": claim.patient_address,  # 2010CA N3/N4
            "subscriber.relationship": subscriber.relationship if subscriber.relationship in PATIENT_RELATIONSHIPS
            else None,
            "subscriber.first_name": subscriber.first_name,
            "subscriber.last_name": subscriber.last_name,
            "subscriber.birth_date": subscriber.birth_date,
        }
    values |= {"diagnoses": claim.diagnoses, "lines": claim.lines}
    for element, value in values.items():
        if _missing(value):
            yield error("SCRUB_REQUIRED", _missing_message(claim, element), element)


def _missing_message(claim: ClaimSubmitted, element: str) -> str:
    if element == "patient_sex" and claim.patient_sex:
        return f"patient_sex {claim.patient_sex!r} is not F or M"
    if element == "subscriber.relationship" and claim.subscriber and claim.subscriber.relationship:
        return f"subscriber.relationship {claim.subscriber.relationship!r} is not an 837P patient relationship code"
    if element in ("diagnoses", "lines"):
        return f"the claim has no {element}"
    return f"{element} is missing"


@scrub_rule("SCRUB_UNKNOWN_PAYER")
def payer_known(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """The payer is in the payer master data (its name, SBR09 and filing limit come from it)."""
    if ctx.payer is None or ctx.payer.payer_id != claim.payer_id:
        yield error("SCRUB_UNKNOWN_PAYER", f"payer {claim.payer_id!r} is not in the payer master data", "payer_id")


# --- when ----------------------------------------------------------------------------


@scrub_rule("SCRUB_DOS_FUTURE")
def service_not_in_future(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    if claim.date_of_service > ctx.today:
        yield error("SCRUB_DOS_FUTURE", f"date of service {claim.date_of_service} is after today ({ctx.today})",
                     "date_of_service")


@scrub_rule("SCRUB_DOS_BEFORE_BIRTH")
def service_not_before_birth(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Service on the day of birth is fine (a newborn's first exam)."""
    born = claim.patient_birth_date
    if born is not None and claim.date_of_service < born:
        # No birth date in the message: findings travel to queues, verdicts and screens (PHI).
        yield error("SCRUB_DOS_BEFORE_BIRTH", f"date of service {claim.date_of_service} is before the patient's "
                     "birth date", "date_of_service")


@scrub_rule("SCRUB_DOS_OUTSIDE_COVERAGE")
def service_within_coverage(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Inside the payer's answer: coverage_start ≤ DOS ≤ coverage_end, both inclusive,
    a missing bound open. Without an answer there is nothing to check."""
    answer = ctx.eligibility
    if answer is None:
        return
    dos = claim.date_of_service
    if answer.status != EligibilityStatus.ACTIVE:
        yield error("SCRUB_DOS_OUTSIDE_COVERAGE", f"the payer answered {answer.status} for {dos}", "date_of_service")
    elif (answer.coverage_start is not None and dos < answer.coverage_start) or (
        answer.coverage_end is not None and dos > answer.coverage_end
    ):
        yield error("SCRUB_DOS_OUTSIDE_COVERAGE", f"date of service {dos} is outside coverage "
                     f"{answer.coverage_start or 'open'}..{answer.coverage_end or 'open'}", "date_of_service")


@scrub_rule("SCRUB_LINE_DATE")
def line_dates(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Every line on the claim's date of service (one-day claims), so none in the future
    either. A line on the claim's date when that date is in the future is SCRUB_DOS_FUTURE's
    finding, not one more per line."""
    for index, line in enumerate(claim.lines):
        day = line.date_of_service
        if day != claim.date_of_service:
            after = f", after today ({ctx.today})" if day > ctx.today else ""
            yield error("SCRUB_LINE_DATE", f"line {line.line_number} is dated {day}{after}; the claim "
                         f"{claim.date_of_service}", f"lines[{index}].date_of_service")


@scrub_rule("SCRUB_TIMELY_FILING", "SCRUB_TIMELY_FILING_NEAR")
def timely_filing(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Days since the date of service within the payer's limit (the limit day itself is in
    time); a warning once only TIMELY_FILING_NEAR_MARGIN of the window is left."""
    if ctx.payer is None:
        return  # SCRUB_UNKNOWN_PAYER
    age = (ctx.today - claim.date_of_service).days
    limit = ctx.payer.timely_filing_days
    if age > limit:
        yield error("SCRUB_TIMELY_FILING", f"{age} days after the date of service; {ctx.payer.name} accepts claims "
                     f"for {limit} days", "date_of_service")
    elif limit - age <= limit * TIMELY_FILING_NEAR_MARGIN:
        yield warning("SCRUB_TIMELY_FILING_NEAR", f"{age} of {limit} days used: submit now", "date_of_service")


# --- what ------------------------------------------------------------------------------


@scrub_rule("SCRUB_TOTAL_MISMATCH")
def total_is_sum_of_lines(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """CLM02 = Σ SV102."""
    lines = sum((line.charge for line in claim.lines), Decimal("0.00"))
    if lines != claim.total_charge:
        yield error("SCRUB_TOTAL_MISMATCH", f"total charge {claim.total_charge} but the lines sum to {lines}",
                     "total_charge")


@scrub_rule("SCRUB_POS_INVALID")
def place_of_service_listed(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    if claim.place_of_service not in ctx.places_of_service:
        yield error("SCRUB_POS_INVALID", f"place of service {claim.place_of_service!r} is not in the CMS list",
                     "place_of_service")


@scrub_rule("SCRUB_FREQUENCY")
def frequency(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """CLM05-3 is 1 original, 7 replacement or 8 void; 7 and 8 name the original (REF*F8)."""
    if claim.frequency_code not in FREQUENCIES:
        yield error("SCRUB_FREQUENCY", f"frequency code {claim.frequency_code!r} is not 1, 7 or 8", "frequency_code")
    elif claim.frequency_code != "1" and not claim.original_claim_id:
        yield error("SCRUB_FREQUENCY", f"frequency {claim.frequency_code} needs the original claim's number",
                     "original_claim_id")


@scrub_rule("SCRUB_LIMITS")
def claim_limits(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """What one 837P claim can carry: 12 diagnoses (HI), 50 lines (2400), a 38-character CLM01."""
    if len(claim.diagnoses) > MAX_DIAGNOSES:
        yield error("SCRUB_LIMITS", f"{len(claim.diagnoses)} diagnoses (at most {MAX_DIAGNOSES})", "diagnoses")
    if len(claim.lines) > MAX_LINES:
        yield error("SCRUB_LIMITS", f"{len(claim.lines)} lines (at most {MAX_LINES})", "lines")
    if len(claim.patient_control_number) > MAX_PATIENT_CONTROL_NUMBER:
        yield error("SCRUB_LIMITS", f"patient control number longer than {MAX_PATIENT_CONTROL_NUMBER} characters",
                     "patient_control_number")


@scrub_rule("SCRUB_LINE_INVALID")
def line_shapes(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Each line: up to 4 modifiers, 1–4 diagnosis pointers into the claim's diagnoses,
    at least one unit, a charge not below zero."""
    for index, line in enumerate(claim.lines):
        element = f"lines[{index}]"
        problems = []
        if len(line.modifiers) > MAX_MODIFIERS:
            problems.append(f"{len(line.modifiers)} modifiers (at most {MAX_MODIFIERS})")
        if not 1 <= len(line.dx_pointers) <= MAX_POINTERS:
            problems.append(f"{len(line.dx_pointers)} diagnosis pointers (1 to {MAX_POINTERS})")
        if any(not 1 <= pointer <= len(claim.diagnoses) for pointer in line.dx_pointers):
            problems.append(f"a diagnosis pointer outside 1..{len(claim.diagnoses)}: {line.dx_pointers}")
        if line.units < 1:
            problems.append(f"{line.units} units")
        if line.charge < 0:
            problems.append(f"charge {line.charge}")
        for problem in problems:
            yield error("SCRUB_LINE_INVALID", f"line {line.line_number}: {problem}", element)


def scrub_claim(claim: ClaimSubmitted, ctx: ScrubContext) -> list[Finding]:
    """Every finding of every rule, errors first; rule order, then finding order, within
    a severity (the sort is stable)."""
    findings = [finding for check in SCRUB_RULES for finding in check(claim, ctx)]
    return errors_first(findings)


def scrub_item_id(claim_id: str) -> str:
    """One scrub work item per claim: the same id however often the claim is rejected."""
    return "SR-" + hashlib.blake2b(claim_id.encode(), digest_size=8).hexdigest().upper()
