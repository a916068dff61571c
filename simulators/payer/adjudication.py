"""How the simulated payers adjudicate a claim: pure functions, no Kafka.

The payer simulator (``simulators/payer/app.py``) keeps one ``MemberState`` per payer and
member in a faust table and calls ``adjudicate`` for each claim in arrival order. The
order of the decision is the profile file's (``payer_profiles.yaml``): deterministic
rules first, then a seeded stochastic denial calibrated to the payer's published
figures, then pricing and the member's cost sharing against the plan-year accumulators.

Every remittance balances, on the claim and on every line (835 rule): billed − Σ CAS =
paid, and patient responsibility = Σ PR amounts. A reversal (CLP02 22) is the original
remittance with every amount negated.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from engine.model.codes import ORIGINAL, REPLACEMENT, VOID, ClaimStatusCode
from engine.model.events import (
    Adjustment,
    ClaimLine,
    ClaimSubmitted,
    GroupCode,
    Remittance,
    RemittanceLine,
    RemittanceOutcome,
)
from engine.model.money import ZERO, money
from engine.posting.ledger import remittance_id
from engine.posting.routing import NOT_DENIALS
from engine.runtime.stages import ProcessingError
from engine.wire.codec import Codec
from engine.wire.state import StateRecord
from simulators.coverage import Authorization, Coverage

# --- the profile file ---------------------------------------------------------------


@dataclass(frozen=True)
class CodeList:
    """Single codes and same-length text ranges ("99202-99215")."""

    codes: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, items: Iterable[str]) -> CodeList:
        codes, ranges = set(), []
        for item in items:
            item = str(item).strip().upper()
            if "-" in item:
                low, high = item.split("-", 1)
                if len(low) != len(high):
                    raise ValueError(f"code range {item!r}: both ends must have the same length")
                ranges.append((low, high))
            else:
                codes.add(item)
        return cls(frozenset(codes), tuple(ranges))

    def __contains__(self, code: object) -> bool:
        code = str(code).upper()
        return code in self.codes or any(len(code) == len(lo) and lo <= code <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class DenialReason:
    carc: str
    group_code: GroupCode
    rarc: str | None
    scope: str  # "claim" or "line"


@dataclass(frozen=True)
class DenialCategory:
    name: str
    share: float  # of all denials, 0..1
    reasons: tuple[DenialReason, ...]
    carcs: frozenset[str]


@dataclass(frozen=True)
class Plan:
    deductible: Decimal
    coinsurance: Decimal
    oop_max: Decimal | None
    copays: dict[str, Decimal]
    no_cost_share: frozenset[str]


@dataclass(frozen=True)
class BundlingRule:
    carc: str
    codes: CodeList
    with_codes: CodeList


@dataclass(frozen=True)
class PayerProfile:
    payer_id: str
    name: str
    payer_type: str
    share: float
    fee_factor: Decimal
    timely_filing_days: int
    latency_days: tuple[float, float, float]  # min, mode, max
    first_pass_denial_rate: float
    plans: dict[str, Plan]
    prior_auth_codes: CodeList
    non_covered: dict[str, CodeList]  # CARC → codes
    bundled: tuple[BundlingRule, ...]
    categories: tuple[DenialCategory, ...]
    #: Share of appeals the payer overturns (pays), and how long it takes to decide.
    appeal_overturn_rate: float = 0.0
    appeal_days: tuple[float, float, float] = (30.0, 45.0, 60.0)

    def plan(self, plan_id: str | None) -> Plan:
        """The plan's benefit design: by the tier after the last '-' of the plan id, else default."""
        tier = (plan_id or "").rsplit("-", 1)[-1]
        return self.plans.get(tier, self.plans["default"])

    @property
    def copay(self) -> Decimal:
        """The office-visit copay of the default plan (what an eligibility answer quotes)."""
        return self.plans["default"].copays.get("office", ZERO)

    @property
    def deductible(self) -> Decimal:
        return self.plans["default"].deductible

    def category_of(self, carc: str) -> str:
        return next((c.name for c in self.categories if carc in c.carcs), "other")


@dataclass(frozen=True)
class PayerBook:
    """Every payer profile, the service types, and what authorizations look like."""

    payers: dict[str, PayerProfile]
    service_types: tuple[tuple[str, CodeList], ...]
    default_service_type: str
    authorization_valid: float
    authorization_expired: float

    @classmethod
    def load(cls, path: Path) -> PayerBook:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        categories = _categories(doc["denial_categories"])
        appeals = doc.get("appeals") or {}
        payers = {}
        for p in doc["payers"]:
            latency = p["latency_days"]
            appeal_latency = p.get("appeal_days") or appeals.get("days") or {"min": 30, "mode": 45, "max": 60}
            payers[str(p["payer_id"])] = PayerProfile(
                payer_id=str(p["payer_id"]),
                name=str(p["name"]),
                payer_type=str(p["payer_type"]),
                share=float(p["share"]),
                fee_factor=Decimal(str(p["fee_factor"])),
                timely_filing_days=int(p["timely_filing_days"]),
                latency_days=(float(latency["min"]), float(latency["mode"]), float(latency["max"])),
                first_pass_denial_rate=float(p["first_pass_denial_rate"]),
                plans={str(name): _plan(plan) for name, plan in p["plans"].items()},
                prior_auth_codes=CodeList.parse(p.get("prior_auth_codes") or []),
                non_covered={str(carc): CodeList.parse(codes) for carc, codes in (p.get("non_covered") or {}).items()},
                bundled=tuple(BundlingRule(str(b["carc"]), CodeList.parse(b["codes"]), CodeList.parse(b["with"]))
                              for b in p.get("bundled") or []),
                categories=_categories(p["denial_categories"]) if "denial_categories" in p else categories,
                appeal_overturn_rate=float(p.get("appeal_overturn_rate", appeals.get("overturn_rate", 0.0))),
                appeal_days=(float(appeal_latency["min"]), float(appeal_latency["mode"]), float(appeal_latency["max"])),
            )
            if "default" not in payers[str(p["payer_id"])].plans:
                raise ValueError(f"{path}: payer {p['payer_id']} has no default plan")
        auth = doc.get("authorizations", {})
        return cls(
            payers=payers,
            service_types=tuple((str(s["type"]), CodeList.parse(s["codes"])) for s in doc["service_types"]),
            default_service_type=str(doc.get("default_service_type", "procedure")),
            authorization_valid=float(auth.get("valid", 1.0)),
            authorization_expired=float(auth.get("expired", 0.0)),
        )

    def service_type(self, code: str) -> str:
        return next((name for name, codes in self.service_types if code in codes), self.default_service_type)


def _plan(raw: Mapping[str, Any]) -> Plan:
    return Plan(
        deductible=Decimal(str(raw["deductible"])),
        coinsurance=Decimal(str(raw["coinsurance"])),
        oop_max=Decimal(str(raw["oop_max"])) if raw.get("oop_max") is not None else None,
        copays={str(k): Decimal(str(v)) for k, v in (raw.get("copays") or {}).items()},
        no_cost_share=frozenset(str(s) for s in raw.get("no_cost_share") or []),
    )


def _categories(raw: Mapping[str, Any]) -> tuple[DenialCategory, ...]:
    total = sum(float(c["share"]) for c in raw.values())
    return tuple(
        DenialCategory(
            name=str(name),
            share=float(c["share"]) / total,
            reasons=tuple(DenialReason(str(r["carc"]), GroupCode(r["group"]), r.get("rarc"),
                                       str(r.get("scope", "claim")))
                          for r in c["reasons"]),
            carcs=frozenset(str(x) for x in c.get("carcs", [])) | {str(r["carc"]) for r in c["reasons"]},
        )
        for name, c in raw.items()
    )


# --- what the payer remembers per member ------------------------------------------


@dataclass
class Accumulator:
    deductible_met: Decimal = ZERO
    oop_met: Decimal = ZERO


#: The plan years a member's state keeps: the newest one and the one before. Once a member
#: has a claim of year Y, a claim of Y-2 or earlier sent after it is more than 365 days past
#: its date of service, past every payer's timely-filing limit (the profiles are held to it
#: by a test): the existing rule denies it (29), so the window forgets nothing still payable.
PLAN_YEARS_KEPT = 2


@dataclass
class AdjudicatedClaim:
    """What duplicates, replacements and voids need of a claim the payer answered.

    ``remittance`` is the reversal basis (``reversal_basis``): the answer, framed Avro, less
    what a reversal replaces or derives again. It is kept only while the claim can still be
    reversed; a reversed claim (and a void, whose answer is a reversal) keeps neither it nor
    the fingerprint, only that it was adjudicated (a redelivery) and reversed (a 129)."""

    claim_id: str
    fingerprint: str  # exact duplicates (``fingerprint``); "" once reversed
    frequency_code: str
    remittance: bytes  # the reversal basis; b"" once reversed
    reversed: bool = False
    #: The year of the date of service; 0 in state written before the window (read from ``remittance``).
    plan_year: int = 0

    def reverse(self) -> None:
        """Reversed once, never again: what a reversal or a duplicate needed goes."""
        self.reversed, self.remittance, self.fingerprint = True, b"", ""


@dataclass
class PendingPayment:
    """A remittance waiting for its payment date: the whole remittance as sent, framed Avro,
    and only until the release timer has sent it (``payer/app.py`` then removes it)."""

    due_at: float  # epoch seconds, real time
    remittance: bytes


@dataclass
class MemberState(StateRecord):
    """One member of one payer: accumulators per plan year, the claims adjudicated (for
    duplicates and reversals) and the remittances not yet paid out.

    Accumulators and claims are kept for ``PLAN_YEARS_KEPT`` plan years counted back from
    ``newest_plan_year``, so a member's record, rewritten to the changelog with every claim,
    does not grow with every claim the member ever had."""

    accumulators: dict[int, Accumulator] = field(default_factory=dict)
    claims: dict[str, AdjudicatedClaim] = field(default_factory=dict)
    pending: list[PendingPayment] = field(default_factory=list)
    #: The newest plan year of the member's claims (``window_year``); 0: none yet, or written before the window.
    newest_plan_year: int = 0
    #: How many times the record was written (``member_store``): claim entries written for a
    #: later one are of a write whose record never landed (a kill between the two).
    seq: int = 0

    def accumulator(self, plan_year: int) -> Accumulator:
        return self.accumulators.setdefault(plan_year, Accumulator())

    def find(self, claim_ref: str | None) -> AdjudicatedClaim | None:
        """An adjudicated claim by our claim id or the payer's claim control number."""
        if not claim_ref:
            return None
        if claim_ref in self.claims:
            return self.claims[claim_ref]
        return next((c for c in self.claims.values() if payer_claim_control_number(c.claim_id) == claim_ref), None)

    def keep_window(self, seen_year: int) -> None:
        """Note a claim of ``seen_year`` and drop the plan years that fall out of the window.
        A payment still pending is kept whatever its year: it goes when it is paid out."""
        self.newest_plan_year = max(self.newest_plan_year, seen_year)
        oldest = self.newest_plan_year - PLAN_YEARS_KEPT + 1
        self.accumulators = {year: acc for year, acc in self.accumulators.items() if year >= oldest}
        self.claims = {cid: c for cid, c in self.claims.items() if c.plan_year >= oldest}


def window_year(claim: ClaimSubmitted) -> int:
    """The plan year a claim moves the member's window to: its date of service's, counted
    in the claims' own time (not the wall clock, which a replay of past visits would be far
    ahead of), and never after the year it was sent, so a mistyped date of service cannot
    make the payer forget the member's real years."""
    return min(claim.date_of_service.year, claim.submitted_at.year)


def upgrade(state: MemberState, codec: Codec) -> None:
    """State written before the window: each claim's plan year from its remittance, and a
    reversed claim's remittance dropped. Once per member (``newest_plan_year`` stays set)."""
    if state.newest_plan_year or not state.claims:
        return
    for claim in state.claims.values():
        if claim.plan_year == 0 and claim.remittance:
            claim.plan_year = codec.decode(claim.remittance, Remittance).date_of_service.year
        if claim.reversed:
            claim.reverse()
    state.newest_plan_year = max(c.plan_year for c in state.claims.values())


@dataclass
class Calibration:
    """Per payer, in this process: first-pass claims seen, claims denied and denials per
    category, so the stochastic draw leans toward the profile's figures when a run drifts."""

    claims: int = 0
    denied: int = 0
    rule_denied: int = 0  # by the deterministic rules
    by_category: dict[str, int] = field(default_factory=dict)

    def record(self, category: str | None, by_rule: bool) -> None:
        self.claims += 1
        if category is not None:
            self.denied += 1
            self.rule_denied += by_rule
            self.by_category[category] = self.by_category.get(category, 0) + 1


#: How hard the draw leans on the running deficit: a deficit of this many claims doubles the odds.
CALIBRATION_WINDOW = 20.0


def denial_probability(profile: PayerProfile, cal: Calibration) -> float:
    """The chance that a claim the rules let through is denied: the share still needed
    after the rules' own denials, plus a proportional correction for the running deficit."""
    target = profile.first_pass_denial_rate
    rule_rate = cal.rule_denied / cal.claims if cal.claims else 0.0
    base = max(0.0, (target - rule_rate) / (1.0 - rule_rate)) if rule_rate < 1 else 0.0
    deficit = target * cal.claims - cal.denied
    return min(1.0, max(0.0, base + deficit / CALIBRATION_WINDOW))


def pick_category(profile: PayerProfile, cal: Calibration, rng: random.Random) -> DenialCategory:
    """The category whose count lags its share the most gets the most weight."""
    weights = [max(0.0, c.share * (cal.denied + 1) - cal.by_category.get(c.name, 0)) for c in profile.categories]
    if sum(weights) <= 0:
        weights = [c.share for c in profile.categories]
    return rng.choices(profile.categories, weights=weights, k=1)[0]


# --- one claim -----------------------------------------------------------------------


@dataclass(frozen=True)
class PayerReference:
    """What a payer knows besides the claim: its members, authorizations and fees."""

    book: PayerBook
    members: Mapping[str, Coverage]
    authorizations: Mapping[tuple[str, str], Sequence[Authorization]]  # (member id, code) → issued
    fees: Mapping[str, Decimal]  # fee schedule per unit by code
    seed: int


@dataclass(frozen=True)
class Denial:
    reason: DenialReason
    line_numbers: frozenset[int] | None  # None: the whole claim
    by_rule: bool


@dataclass(frozen=True)
class Adjudication:
    """What a claim produced: remittances in order (a reversal first), the category of
    its first-pass denial (None: not denied, or not a first-pass claim)."""

    remittances: list[Remittance]
    denial_category: str | None
    first_pass: bool
    encoded: list[bytes] = field(default_factory=list)  # the remittances as framed Avro, in order


def fingerprint(claim: ClaimSubmitted) -> str:
    """Equal for exact duplicates: same member, date, providers and lines."""
    lines = sorted((ln.procedure_code, tuple(ln.modifiers), ln.units, str(ln.charge), ln.date_of_service.isoformat())
                   for ln in claim.lines)
    basis = json.dumps([claim.payer_id, claim.member_id, claim.date_of_service.isoformat(), claim.billing_npi,
                        claim.rendering_npi, lines])
    return hashlib.blake2b(basis.encode(), digest_size=10).hexdigest()


def payer_claim_control_number(claim_id: str) -> str:
    return "P" + hashlib.blake2b(claim_id.encode(), digest_size=7).hexdigest().upper()


def trace_number(payer_id: str, payment_date: date) -> str:
    """One EFT per payer per payment date."""
    return f"EFT{payment_date:%Y%m%d}{payer_id}"


def latency_days(profile: PayerProfile, rng: random.Random) -> int:
    low, mode, high = profile.latency_days
    return round(rng.triangular(low, high, mode))


def rule_denials(claim: ClaimSubmitted, profile: PayerProfile, ref: PayerReference, state: MemberState,
                 original: AdjudicatedClaim | None) -> list[Denial]:
    """The deterministic rules, claim-level first; the first claim-level denial wins."""

    def claim_denial(carc: str, group: GroupCode = GroupCode.CO, rarc: str | None = None) -> list[Denial]:
        return [Denial(DenialReason(carc, group, rarc, "claim"), None, True)]

    if claim.frequency_code == VOID:  # a void asks only to take the original back
        return claim_denial("129") if original is None or original.reversed else []
    coverage = ref.members.get(claim.member_id)
    if coverage is None or coverage.payer_id != claim.payer_id:
        return claim_denial("31")
    if claim.date_of_service < coverage.start:
        return claim_denial("26")
    if coverage.end is not None and claim.date_of_service > coverage.end:
        return claim_denial("27")
    if (claim.submitted_at.date() - claim.date_of_service).days > profile.timely_filing_days:
        return claim_denial("29")
    if claim.frequency_code in (REPLACEMENT, VOID) and (original is None or original.reversed):
        return claim_denial("129")
    if claim.frequency_code == ORIGINAL:
        mine = fingerprint(claim)
        if any(c.fingerprint == mine and c.claim_id != claim.claim_id and not c.reversed and c.frequency_code != VOID
               for c in state.claims.values()):
            return claim_denial("18", GroupCode.OA, "M86")
    denials: list[Denial] = []
    codes = {ln.procedure_code for ln in claim.lines}
    for line in claim.lines:
        reason = _line_rule(line, codes, claim, profile, ref)
        if reason is not None:
            denials.append(Denial(reason, frozenset({line.line_number}), True))
    return denials


def _line_rule(line: ClaimLine, codes: set[str], claim: ClaimSubmitted, profile: PayerProfile,
               ref: PayerReference) -> DenialReason | None:
    code = line.procedure_code
    if code in profile.prior_auth_codes:
        issued = ref.authorizations.get((claim.member_id, code), ())
        if not issued:
            return DenialReason("197", GroupCode.CO, None, "line")
        if not any(a.covers(line.date_of_service) for a in issued):
            return DenialReason("15", GroupCode.CO, None, "line")
    for carc, listed in profile.non_covered.items():
        if code in listed:
            return DenialReason(carc, GroupCode.CO, "N130", "line")
    for rule in profile.bundled:
        if code in rule.codes and any(other != code and other in rule.with_codes for other in codes):
            return DenialReason(rule.carc, GroupCode.CO, "M15" if rule.carc == "97" else None, "line")
    return None


def stochastic_denial(claim: ClaimSubmitted, profile: PayerProfile, cal: Calibration,
                      rng: random.Random) -> Denial | None:
    if rng.random() >= denial_probability(profile, cal):
        return None
    category = pick_category(profile, cal, rng)
    reason = rng.choice(category.reasons)
    if reason.scope == "line" and len(claim.lines) > 1:
        return Denial(reason, frozenset({rng.choice(claim.lines).line_number}), False)
    return Denial(replace(reason, scope="claim"), None, False)


def _denied_line(line: ClaimLine, reason: DenialReason) -> RemittanceLine:
    return RemittanceLine(
        line_number=line.line_number, procedure_code=line.procedure_code, billed_amount=line.charge,
        allowed_amount=ZERO, paid_amount=ZERO,
        adjustments=[Adjustment(reason.group_code, reason.carc, line.charge, line.units)],
        rarcs=[reason.rarc] if reason.rarc and reason.scope == "line" else [],
        modifiers=list(line.modifiers), units=line.units, date_of_service=line.date_of_service,
    )


@dataclass
class _Sharing:
    """Cost sharing running through one claim: the accumulator and copays already taken."""

    plan: Plan
    acc: Accumulator
    copay_types_taken: set[str] = field(default_factory=set)

    def share(self, allowed: Decimal, service_type: str) -> list[Adjustment]:
        """PR adjustments for one line: copay, else deductible then coinsurance; all
        capped at what is left of the out-of-pocket maximum."""
        if service_type in self.plan.no_cost_share or allowed <= ZERO:
            return []
        copay = deductible = coinsurance = ZERO
        if service_type in self.plan.copays:
            if service_type not in self.copay_types_taken:
                copay = min(self.plan.copays[service_type], allowed)
                self.copay_types_taken.add(service_type)
        else:
            deductible = min(max(ZERO, self.plan.deductible - self.acc.deductible_met), allowed)
            coinsurance = money((allowed - deductible) * self.plan.coinsurance)
        if self.plan.oop_max is not None:  # the cap takes coinsurance back first, then copay, then deductible
            over = copay + deductible + coinsurance - max(ZERO, self.plan.oop_max - self.acc.oop_met)
            cut = min(max(over, ZERO), coinsurance)
            coinsurance, over = coinsurance - cut, over - cut
            cut = min(max(over, ZERO), copay)
            copay, over = copay - cut, over - cut
            deductible -= min(max(over, ZERO), deductible)
        self.acc.deductible_met += deductible
        self.acc.oop_met += copay + deductible + coinsurance
        return [Adjustment(GroupCode.PR, carc, amount)
                for carc, amount in (("3", copay), ("1", deductible), ("2", coinsurance)) if amount > ZERO]


def allowed_for(line: ClaimLine, profile: PayerProfile, fees: Mapping[str, Decimal]) -> Decimal:
    """Fee schedule × the payer's factor, capped at the billed charge."""
    per_unit = fees.get(line.procedure_code)
    base = per_unit * line.units if per_unit is not None else line.charge
    return min(line.charge, money(base * profile.fee_factor))


def _paid_line(line: ClaimLine, profile: PayerProfile, ref: PayerReference, sharing: _Sharing) -> RemittanceLine:
    allowed = allowed_for(line, profile, ref.fees)
    adjustments: list[Adjustment] = []
    if line.charge > allowed:
        adjustments.append(Adjustment(GroupCode.CO, "45", line.charge - allowed))
    patient = sharing.share(allowed, ref.book.service_type(line.procedure_code))
    adjustments.extend(patient)
    paid = allowed - sum((a.amount for a in patient), ZERO)
    return RemittanceLine(line.line_number, line.procedure_code, line.charge, allowed, paid, adjustments,
                          modifiers=list(line.modifiers), units=line.units, date_of_service=line.date_of_service)


def build_remittance(claim: ClaimSubmitted, lines: list[RemittanceLine], claim_rarcs: list[str],
                     profile: PayerProfile, payment_date: date, now: datetime) -> Remittance:
    paid = sum((ln.paid_amount for ln in lines), ZERO)
    allowed = sum((ln.allowed_amount for ln in lines), ZERO)
    patient = sum((a.amount for ln in lines for a in ln.adjustments if a.group_code == GroupCode.PR), ZERO)
    fully_denied = all(ln.allowed_amount == ZERO and ln.paid_amount == ZERO and
                       any(a.carc not in NOT_DENIALS for a in ln.adjustments) for ln in lines)
    some_denied = any(a.carc not in NOT_DENIALS and a.group_code != GroupCode.PR
                      for ln in lines for a in ln.adjustments)
    outcome = (RemittanceOutcome.DENIED if fully_denied
               else RemittanceOutcome.PARTIALLY_PAID if some_denied else RemittanceOutcome.PAID)
    status = ClaimStatusCode.DENIED if fully_denied else ClaimStatusCode.PRIMARY
    pccn = payer_claim_control_number(claim.claim_id)
    trace = trace_number(claim.payer_id, payment_date)
    return Remittance(
        remittance_id=remittance_id(claim.payer_id, pccn, str(status), trace),
        claim_id=claim.claim_id,
        encounter_id=claim.encounter_id,
        encounter_occurred_at=claim.encounter_occurred_at,
        patient_control_number=claim.patient_control_number,
        payer_id=claim.payer_id,
        payer_claim_control_number=pccn,
        date_of_service=claim.date_of_service,
        claim_status_code=str(status),
        outcome=outcome,
        billed_amount=claim.total_charge,
        allowed_amount=allowed,
        paid_amount=paid,
        patient_responsibility=patient,
        adjustments=[],
        rarcs=claim_rarcs,
        lines=lines,
        payment_date=payment_date,
        trace_number=trace,
        adjudicated_at=now,
        claim_frequency_code=claim.frequency_code,
        payer_name=profile.name,
        payee_npi=claim.billing_npi,
        payment_method="ACH" if paid > ZERO else "NON",
    )


def reversal_of(original: Remittance, caused_by: ClaimSubmitted, payment_date: date, now: datetime) -> Remittance:
    """CLP02 22: the original remittance with every amount negated, paid out with the
    claim that caused it (its replacement or void)."""

    def neg(adjustments: list[Adjustment]) -> list[Adjustment]:
        return [Adjustment(a.group_code, a.carc, -a.amount, a.quantity) for a in adjustments]

    trace = trace_number(original.payer_id, payment_date)
    status = str(ClaimStatusCode.REVERSAL)
    return replace(
        original,
        remittance_id=remittance_id(original.payer_id, original.payer_claim_control_number, status, trace),
        claim_status_code=status,
        outcome=RemittanceOutcome.REVERSED,
        billed_amount=-original.billed_amount,
        allowed_amount=-original.allowed_amount,
        paid_amount=-original.paid_amount,
        patient_responsibility=-original.patient_responsibility,
        adjustments=neg(original.adjustments),
        lines=[replace(ln, billed_amount=-ln.billed_amount, allowed_amount=-ln.allowed_amount,
                       paid_amount=-ln.paid_amount, adjustments=neg(ln.adjustments)) for ln in original.lines],
        payment_date=payment_date,
        trace_number=trace,
        adjudicated_at=now,
        claim_frequency_code=caused_by.frequency_code,
        payment_method="ACH",
    )


#: Where the simulator's remittances come from (the field's default): what ``restored`` puts back.
_SOURCE = str(next(f.default for f in fields(Remittance) if f.name == "source"))


def reversal_basis(answer: Remittance) -> Remittance:
    """What the member state keeps of an answer so that it can be reversed: the remittance
    without the ids, trace, names and source that ``restored`` derives again from the claim
    id and the payer (a reversal replaces the ids and the trace anyway). Encoded, about a
    third smaller than the whole remittance."""
    return replace(answer, remittance_id="", claim_id="", payer_id="", payer_claim_control_number="",
                   trace_number="", payer_name="", payment_method="", source="")


def restored(basis: Remittance, claim_id: str, profile: PayerProfile) -> Remittance:
    """The answer again from its reversal basis, as far as a reversal reads it. A whole
    remittance (state written before the window) comes back as it was."""
    pccn = payer_claim_control_number(claim_id)
    trace = trace_number(profile.payer_id, basis.payment_date)
    return replace(basis, remittance_id=remittance_id(profile.payer_id, pccn, basis.claim_status_code, trace),
                   claim_id=claim_id, payer_id=profile.payer_id, payer_claim_control_number=pccn, trace_number=trace,
                   payer_name=profile.name, payment_method="ACH" if basis.paid_amount > ZERO else "NON",
                   source=_SOURCE)


def _unwind(state: MemberState, original: Remittance) -> None:
    """A reversal gives the member back what the original charged to the accumulators."""
    acc = state.accumulator(original.date_of_service.year)
    adjustments = [a for ln in original.lines for a in ln.adjustments if a.group_code == GroupCode.PR]
    acc.deductible_met -= sum((a.amount for a in adjustments if a.carc == "1"), ZERO)
    acc.oop_met -= sum((a.amount for a in adjustments), ZERO)


def _payment_date(claim: ClaimSubmitted, latency: int) -> date:
    try:
        return claim.submitted_at.date() + timedelta(days=latency)
    except OverflowError:  # submitted on 9999-12-31: no day to pay it on
        raise ProcessingError(f"claim {claim.claim_id}: submitted too late in the calendar to be paid "
                              f"{latency} days after") from None


def adjudicate(claim: ClaimSubmitted, state: MemberState, ref: PayerReference, cal: Calibration,
               codec: Codec, now: datetime) -> Adjudication:
    """Adjudicate one claim for one member; ``state`` and ``cal`` are updated in place, the
    state trimmed to its plan-year window. A claim id already adjudicated gives nothing (a
    redelivery); one of a plan year the window has dropped is adjudicated as new."""
    profile = ref.book.payers.get(claim.payer_id)
    if profile is None:
        raise ValueError(f"claim {claim.claim_id}: payer {claim.payer_id!r} unknown to the simulator")
    if claim.claim_id in state.claims:
        return Adjudication([], None, False)
    upgrade(state, codec)
    rng = random.Random(f"payer:{ref.seed}:{claim.claim_id}")
    payment_date = _payment_date(claim, latency_days(profile, rng))
    original = state.find(claim.original_claim_id) if claim.frequency_code != ORIGINAL else None
    denials = rule_denials(claim, profile, ref, state, original)
    first_pass = claim.frequency_code == ORIGINAL
    if first_pass and not denials:
        stochastic = stochastic_denial(claim, profile, cal, rng)
        denials = [stochastic] if stochastic is not None else []

    remittances: list[Remittance] = []
    # A claim-level denial of a replacement leaves the original standing; a line-level one
    # does not stop the replacement from replacing it.
    if original is not None and not any(d.line_numbers is None for d in denials):
        original_remit = restored(codec.decode(original.remittance, Remittance), original.claim_id, profile)
        remittances.append(reversal_of(original_remit, claim, payment_date, now))
        original.reverse()
        _unwind(state, original_remit)
    answer = None
    if claim.frequency_code != VOID or denials:  # a void is answered by the reversal alone
        answer = _answer(claim, denials, profile, ref, state, payment_date, now)
        remittances.append(answer)
    state.claims[claim.claim_id] = _remembered(claim, answer, codec)
    state.keep_window(window_year(claim))
    category = profile.category_of(denials[0].reason.carc) if denials else None
    if first_pass:
        cal.record(category, by_rule=bool(denials) and denials[0].by_rule)
    return Adjudication(remittances, category if first_pass else None, first_pass,
                        [codec.encode(r) for r in remittances])


def _remembered(claim: ClaimSubmitted, answer: Remittance | None, codec: Codec) -> AdjudicatedClaim:
    """What the member state keeps of a claim just answered. A void (answered by a reversal,
    or denied 129) is never reversed itself, so it keeps only that it was seen."""
    if claim.frequency_code == VOID or answer is None:
        return AdjudicatedClaim(claim.claim_id, "", claim.frequency_code, b"", reversed=True,
                                plan_year=claim.date_of_service.year)
    return AdjudicatedClaim(claim.claim_id, fingerprint(claim), claim.frequency_code,
                            codec.encode(reversal_basis(answer)), plan_year=claim.date_of_service.year)


def _answer(claim: ClaimSubmitted, denials: list[Denial], profile: PayerProfile, ref: PayerReference,
            state: MemberState, payment_date: date, now: datetime) -> Remittance:
    whole = next((d for d in denials if d.line_numbers is None), None)
    by_line = {n: d.reason for d in denials if d.line_numbers is not None for n in d.line_numbers}
    coverage = ref.members.get(claim.member_id)
    sharing = _Sharing(profile.plan(coverage.plan_id if coverage else None),
                       state.accumulator(claim.date_of_service.year))
    lines = []
    for line in claim.lines:
        reason = whole.reason if whole is not None else by_line.get(line.line_number)
        lines.append(_denied_line(line, reason) if reason is not None else _paid_line(line, profile, ref, sharing))
    claim_rarcs = [whole.reason.rarc] if whole is not None and whole.reason.rarc else []
    return build_remittance(claim, lines, claim_rarcs, profile, payment_date, now)


def release_at(claim: ClaimSubmitted, payment_date: date, time_scale: float) -> float:
    """Real epoch seconds at which a payment dated ``payment_date`` is released: the
    simulated days from submission, compressed by ``time_scale`` (0: at once)."""
    submitted = claim.submitted_at.timestamp()
    if time_scale <= 0:
        return submitted
    days = (payment_date - claim.submitted_at.date()).days
    return submitted + days * 86_400 / time_scale


#: The acceptance tolerances: denial rate within 3 points of the profile, each category's
#: share of denials within 5 points.
RATE_TOLERANCE, CATEGORY_TOLERANCE = 0.03, 0.05


def profile_fit(first_pass_by_payer: Mapping[str, Mapping[str, Any]], book: PayerBook) -> dict[str, Any]:
    """A run's first-pass denial rate and category mix per payer (from the summary's
    ``first_pass_by_payer``) beside the profile's figures, and whether they are within
    the tolerances."""
    report: dict[str, Any] = {}
    for payer_id, seen in first_pass_by_payer.items():
        profile = book.payers.get(payer_id)
        if profile is None or not seen["claims"]:
            continue
        by_category: dict[str, int] = {c.name: 0 for c in profile.categories}
        for carc, n in seen["deciding_carcs"].items():
            category = profile.category_of(carc)  # "other" even when the payer has no such category
            by_category[category] = by_category.get(category, 0) + n
        denied = max(1, seen["denied"])
        shares = {name: round(n / denied, 4) for name, n in by_category.items()}
        targets = {name: 0.0 for name in by_category} | {c.name: round(c.share, 4) for c in profile.categories}
        report[payer_id] = {
            "denial_rate": seen["denial_rate"],
            "target_rate": profile.first_pass_denial_rate,
            "category_shares": shares,
            "category_targets": targets,
            "within_tolerance": abs(seen["denial_rate"] - profile.first_pass_denial_rate) <= RATE_TOLERANCE
            and all(abs(shares[n] - targets[n]) <= CATEGORY_TOLERANCE for n in targets),
        }
    return report
