"""The action forms billers post, read into the desk's ``ActionRequest`` (a form that cannot
be read publishes nothing), and the desk's refusals read back as lines the biller sees."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TypedDict

from engine.denials.desk import ActionRefused, ActionRequest
from engine.denials.work_items import TRANSITIONS, ClaimCorrections, LineCorrection, WorkItemState
from engine.model.events import ClaimSubmitted, DenialActionType, Finding

A = DenialActionType

#: URL name → action a biller may take; APPEAL_DECIDED and RESUBMIT_REJECTED are the
#: payer's and the engine's, never offered.
ACTIONS: dict[str, DenialActionType] = {
    "claim": A.CLAIM,
    "resubmit": A.RESUBMIT,
    "void": A.VOID,
    "appeal": A.APPEAL,
    "writeoff": A.WRITE_OFF,
    "reopen": A.REOPEN,
}


def allowed_actions(state: WorkItemState) -> list[DenialActionType]:
    """The biller actions the item's status allows now (``engine.denials.work_items.TRANSITIONS``)."""
    return [kind for kind in ACTIONS.values() if state.status in TRANSITIONS[kind]]


class FormError(ValueError):
    """A form field that cannot be read; nothing was published."""


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FormError(f"{what}: a whole number, got {text.strip()!r}") from None


def _amount(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise FormError(f"{what}: an amount like 120.00, got {text.strip()!r}") from None
    if not value.is_finite() or value < 0:
        raise FormError(f"{what}: an amount of 0.00 or more, got {text.strip()!r}")
    return value.quantize(Decimal("0.01"))


def _code_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip().upper() for part in re.split(r"[,\s]+", text) if part.strip())


class _LineChange(TypedDict, total=False):
    """The fields of a ``LineCorrection`` a resubmit form changes (absent: unchanged)."""

    procedure_code: str
    modifiers: tuple[str, ...]
    units: int
    dx_pointers: tuple[int, ...]
    charge: Decimal


def parse_corrections(form: Mapping[str, str], claim: ClaimSubmitted) -> ClaimCorrections:
    """The resubmit form against the standing claim: a field changes a line only when it
    differs from what the claim has, so an untouched form is a plain resubmission."""
    fixes: list[LineCorrection] = []
    remove: set[int] = set()
    for ln in claim.lines:
        prefix = f"line-{ln.line_number}-"
        if form.get(prefix + "drop"):
            remove.add(ln.line_number)
            continue
        change: _LineChange = {}
        code = form.get(prefix + "code", "").strip().upper()
        if code and code != ln.procedure_code:
            change["procedure_code"] = code
        if prefix + "modifiers" in form:
            modifiers = _code_list(form[prefix + "modifiers"])
            if modifiers != tuple(ln.modifiers):
                change["modifiers"] = modifiers
        units = form.get(prefix + "units", "").strip()
        if units:
            count = _int(units, f"line {ln.line_number} units")
            if count < 1:
                raise FormError(f"line {ln.line_number} units: at least 1")
            if count != ln.units:
                change["units"] = count
        pointers = form.get(prefix + "pointers", "").strip()
        if pointers:
            parsed = tuple(_int(p, f"line {ln.line_number} dx pointers") for p in re.split(r"[,\s]+", pointers) if p)
            if parsed != tuple(ln.dx_pointers):
                change["dx_pointers"] = parsed
        charge = form.get(prefix + "charge", "").strip()
        if charge:
            change["charge"] = _amount(charge, f"line {ln.line_number} charge")
        if change:
            fixes.append(LineCorrection(ln.line_number, **change))
    diagnoses: tuple[str, ...] | None = None
    if "diagnoses" in form:
        given = _code_list(form["diagnoses"])
        if not given:
            raise FormError("diagnoses: at least one code")
        diagnoses = given if given != tuple(claim.diagnoses) else None
    if remove and len(remove) == len(claim.lines):
        raise FormError("every line is dropped: void the claim instead")
    return ClaimCorrections(lines=tuple(fixes), diagnoses=diagnoses, remove_lines=frozenset(remove))


def _text(form: Mapping[str, str], name: str, limit: int = 500) -> str | None:
    value = form.get(name, "").strip()
    if len(value) > limit:
        raise FormError(f"{name}: at most {limit} characters")
    return value or None


def parse_action(kind: DenialActionType, form: Mapping[str, str], user: str,
                 claim: ClaimSubmitted | None = None) -> ActionRequest:
    """The form of one action as the desk's request; ``claim`` (the standing claim) is
    needed for a resubmission only."""
    note = _text(form, "note")
    if kind == A.APPEAL and not note:
        raise FormError("an appeal needs a note: the grounds of the appeal")
    if kind == A.WRITE_OFF:
        reason = _text(form, "adjustment_reason", 10)
        if not reason:
            raise FormError("a write-off needs an adjustment reason")
        amount = form.get("amount", "").strip()
        return ActionRequest(kind, user, note=note, adjustment_reason=reason.upper(),
                             amount=_amount(amount, "amount") if amount else None)
    if kind == A.RESUBMIT:
        if claim is None:
            raise FormError("the standing claim is not on claims-submitted")
        standing = form.get("standing_claim_id", "").strip()
        if standing and standing != claim.claim_id:
            raise FormError(f"the claim standing at the payer is now {claim.claim_id}, not {standing}: "
                            f"reload the item and correct that one")
        return ActionRequest(kind, user, note=note, corrections=parse_corrections(form, claim),
                             force=bool(form.get("force")))
    return ActionRequest(kind, user, note=note)


def redact(text: str, claim: ClaimSubmitted | None) -> str:
    """A refusal message as shown: the patient's birth date, should a check ever quote it,
    is blanked (the scrubber's SCRUB_DOS_BEFORE_BIRTH no longer does; this guards the page
    against the next rule that might); everything else is ids and codes."""
    if claim is not None and claim.patient_birth_date is not None:
        text = text.replace(claim.patient_birth_date.isoformat(), "[birth date]")
    return text


def refusal_lines(exc: ActionRefused, claim: ClaimSubmitted | None) -> list[str]:
    """What the biller reads: why, and each finding of a claim that failed the checks."""
    findings: list[Finding] = exc.findings
    if not findings:
        return [redact(str(exc), claim)]
    return ["The corrected claim fails the checks; nothing was sent:",
            *(redact(f"{f.severity} {f.rule_id} {f.element}: {f.message}", claim) for f in findings)]
