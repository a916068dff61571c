"""The scrubber: the clean-claim gate a built claim passes before it is submitted.

Each rule is a small function ``(claim, ctx) -> findings`` registered with the rule ids
it raises, like the coding rules. An ERROR stops the claim (it goes to the scrub work
queue with every finding); a WARNING travels with it.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable, Iterator

from engine.codesets import npi_is_valid
from engine.events import ClaimSubmitted, EligibilityResponse, Finding, Severity
from engine.reference import PayerInfo

#: Share of the payer's timely-filing limit after which a claim is flagged: a claim
#: in the last tenth of its window is one resubmission away from a CARC 29 denial.
TIMELY_FILING_WARNING_SHARE = 0.9
DEPENDENT_RELATIONSHIPS = frozenset({"01", "19", "G8"})  # spouse, child, other
SELF = "18"


@dataclass(frozen=True)
class ScrubContext:
    payer: PayerInfo | None
    eligibility: EligibilityResponse | None
    today: date
    places_of_service: frozenset[str]


def load_places_of_service(path: Path) -> frozenset[str]:
    with path.open(newline="") as handle:
        return frozenset(row["code"].strip() for row in csv.DictReader(l for l in handle if not l.startswith("#")))


ScrubRule = Callable[[ClaimSubmitted, ScrubContext], Iterable[Finding]]
SCRUB_RULES: list[ScrubRule] = []
SCRUB_RULE_IDS: dict[str, str] = {}


def scrub_rule(*rule_ids: str) -> Callable[[ScrubRule], ScrubRule]:
    def register(function: ScrubRule) -> ScrubRule:
        SCRUB_RULES.append(function)
        for rule_id in rule_ids:
            SCRUB_RULE_IDS[rule_id] = function.__name__
        return function

    return register


def _error(rule_id: str, message: str, element: str) -> Finding:
    return Finding(rule_id=rule_id, severity=Severity.ERROR, message=message, element=element)


@scrub_rule("SCRUB_NPI_INVALID")
def npis(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """10 digits, first 1 or 2, Luhn check digit over 80840 + the first nine."""
    for element, npi in (("billing_provider.npi", claim.billing_npi), ("rendering_provider.npi", claim.rendering_npi)):
        if npi and not npi_is_valid(npi):
            yield _error("SCRUB_NPI_INVALID", f"NPI {npi} fails its check digit", element)


@scrub_rule("SCRUB_REQUIRED")
def required(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """What the 837P and the payer need, present."""
    billing = claim.billing_provider
    subscriber = claim.subscriber
    values: dict[str, object] = {
        "billing_provider.npi": claim.billing_npi,
        "billing_provider.name": billing.name if billing else "",
        "billing_provider.tax_id": billing.tax_id if billing else "",
        "billing_provider.address": billing.address if billing else None,
        "rendering_provider.npi": claim.rendering_npi,
        "rendering_provider.name": claim.rendering_provider.name if claim.rendering_provider else "",
        "payer_id": claim.payer_id,
        "payer_name": claim.payer_name,
        "claim_filing_indicator": claim.claim_filing_indicator,
        "member_id": claim.member_id,
        "patient_first_name": claim.patient_first_name,
        "patient_last_name": claim.patient_last_name,
        "patient_birth_date": claim.patient_birth_date,
        "patient_sex": claim.patient_sex if claim.patient_sex in ("F", "M") else "",
        "diagnoses": claim.diagnoses,
        "lines": claim.lines,
    }
    if subscriber is not None and subscriber.relationship != SELF:
        values |= {
            "subscriber.first_name": subscriber.first_name,
            "subscriber.last_name": subscriber.last_name,
            "subscriber.birth_date": subscriber.birth_date,
            "subscriber.relationship": subscriber.relationship if subscriber.relationship in DEPENDENT_RELATIONSHIPS
            else "",
        }
    for element, value in values.items():
        if value is None or value == "" or value == []:
            yield _error("SCRUB_REQUIRED", f"{element} is missing", element)


@scrub_rule("SCRUB_DOS_FUTURE", "SCRUB_DOS_BEFORE_BIRTH", "SCRUB_DOS_OUTSIDE_COVERAGE", "SCRUB_LINE_DATE")
def dates(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Service not in the future, not before birth, within coverage; lines on the claim's date."""
    dos = claim.date_of_service
    if dos > ctx.today:
        yield _error("SCRUB_DOS_FUTURE", f"date of service {dos} is after today ({ctx.today})", "date_of_service")
    if claim.patient_birth_date is not None and dos < claim.patient_birth_date:
        yield _error("SCRUB_DOS_BEFORE_BIRTH", f"date of service {dos} is before the patient's birth date",
                     "date_of_service")
    answer = ctx.eligibility
    if answer is not None and answer.coverage_start is not None and not (
        answer.coverage_start <= dos and (answer.coverage_end is None or dos <= answer.coverage_end)
    ):
        yield _error("SCRUB_DOS_OUTSIDE_COVERAGE", f"date of service {dos} is outside coverage "
                     f"{answer.coverage_start}..{answer.coverage_end or 'open'}", "date_of_service")
    for line in claim.lines:
        if line.date_of_service != dos or line.date_of_service > ctx.today:
            yield _error("SCRUB_LINE_DATE", f"line {line.line_number} is dated {line.date_of_service}, the claim {dos}",
                         f"lines[{line.line_number - 1}].date_of_service")


@scrub_rule("SCRUB_TIMELY_FILING", "SCRUB_TIMELY_FILING_NEAR")
def timely_filing(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    """Submitted within the payer's limit, counted in days from the date of service."""
    if ctx.payer is None:
        return
    age = (ctx.today - claim.date_of_service).days
    limit = ctx.payer.timely_filing_days
    if age > limit:
        yield _error("SCRUB_TIMELY_FILING", f"{age} days after the date of service; {ctx.payer.name} accepts "
                     f"{limit}", "date_of_service")
    elif age > limit * TIMELY_FILING_WARNING_SHARE:
        yield Finding("SCRUB_TIMELY_FILING_NEAR", Severity.WARNING,
                      f"{age} of {limit} days used: submit now", "date_of_service")


@scrub_rule("SCRUB_TOTAL_MISMATCH")
def total(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    lines = sum((line.charge for line in claim.lines), Decimal("0.00"))
    if lines != claim.total_charge:
        yield _error("SCRUB_TOTAL_MISMATCH", f"total {claim.total_charge} but the lines sum to {lines}", "total_charge")


@scrub_rule("SCRUB_POS_INVALID")
def place_of_service(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    if claim.place_of_service not in ctx.places_of_service:
        yield _error("SCRUB_POS_INVALID", f"place of service {claim.place_of_service!r} is not in the CMS list",
                     "place_of_service")


@scrub_rule("SCRUB_UNKNOWN_PAYER")
def payer(claim: ClaimSubmitted, ctx: ScrubContext) -> Iterator[Finding]:
    if ctx.payer is None:
        yield _error("SCRUB_UNKNOWN_PAYER", f"payer {claim.payer_id!r} is not in the payer master data", "payer_id")


def scrub_claim(claim: ClaimSubmitted, ctx: ScrubContext) -> list[Finding]:
    """Every finding of every rule, errors first (stable within a severity)."""
    findings = [finding for check in SCRUB_RULES for finding in check(claim, ctx)]
    return sorted(findings, key=lambda f: f.severity != Severity.ERROR)


def scrub_item_id(claim_id: str) -> str:
    return "SR-" + hashlib.blake2b(claim_id.encode(), digest_size=8).hexdigest().upper()
