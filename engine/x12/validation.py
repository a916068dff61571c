"""Validation of our 837P and 835 files and of payers' 835s: pyx12 4.0.0 in-process, offline
and silent, plus the rules pyx12 does not check (findings prefixed ``claimflow:``), so an
export is refused before a clearinghouse would. Details: docs/x12.md, "Validation"."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from engine.x12.segments import ZERO, get, safe_decimal, split


def validate_837p(text: str) -> list[str]:
    """Every finding for ``text`` (empty: clean): pyx12's 005010X222A1 validation, then the
    rules pyx12 does not check (prefixed ``claimflow:``): CLM02 = Σ SV102, HL04 says
    whether children follow, no dot in an HI code. In-process, offline and silent."""
    return _findings(text, _rules_837p, newline_terminator=False)


def validate_835(text: str) -> list[str]:
    """Every finding for ``text`` (empty: clean): pyx12's 005010X221A1 validation, then the
    balancing pyx12 does not check (prefixed ``claimflow:``): BPR02 = Σ CLP04 − Σ PLB, per
    claim CLP03 − Σ CAS (claim and lines) = CLP04, per line SVC02 − Σ CAS = SVC03, CLP05 =
    Σ PR CAS, SE01 = the segments from ST to SE. In-process, offline and silent."""
    return _findings(text, _rules_835, newline_terminator=True)


def balance_findings_835(text: str) -> list[str]:
    """The balancing and control-count findings of ``validate_835`` without pyx12 (fast, for
    ingest): each names its transaction and segment. ``ValueError`` for a file that does not
    split into segments."""
    segments, _ = split(text, newline_terminator=True)
    return _payment_balance_errors(segments)


def _findings(text: str, rules: Callable[[list[list[str]], str], list[str]], *, newline_terminator: bool) -> list[str]:
    """A file that does not split is one finding; otherwise pyx12's findings, then ``rules``'."""
    try:
        segments, component = split(text, newline_terminator=newline_terminator)
    except ValueError as exc:
        return [str(exc)]
    return pyx12_errors(text) + rules(segments, component)


# --- pyx12 --------------------------------------------------------------------------------

VALIDATION_LOCK = threading.Lock()


class Collect(logging.Handler):
    """The ERROR records of a logger, as messages."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def pyx12_errors(text: str) -> list[str]:
    """pyx12 reports through its ``pyx12`` logger: the records are collected here and
    kept from propagating (nothing reaches stdout, stderr or the root logger). Its
    defaults (``ParamsBase``), not ~/.pyx12.conf.xml, so every machine judges alike.
    The lock: the logger is process-wide, so two validations at once would mix findings."""
    import pyx12.errors
    import pyx12.params
    import pyx12.x12n_document

    logger = logging.getLogger("pyx12")
    collect = Collect()
    with VALIDATION_LOCK:
        propagate, level = logger.propagate, logger.level
        logger.addHandler(collect)
        logger.propagate = False
        logger.setLevel(logging.ERROR)
        try:
            ok = pyx12.x12n_document.x12n_document(
                param=pyx12.params.ParamsBase(), src_file=io.StringIO(text), fd_997=None, fd_html=None,
            )
        except (pyx12.errors.EngineError, pyx12.errors.X12Error) as exc:
            ok = False
            collect.messages.append(f"pyx12: {exc}")
        finally:
            logger.removeHandler(collect)
            logger.propagate, logger.level = propagate, level
    if not ok and not collect.messages:
        collect.messages.append("pyx12: document is not valid")
    return collect.messages


_QUOTED = re.compile(r'"[^"]*"(\s\([A-Z0-9]{2,6}\))?')
_TRAILING_VALUE = re.compile(r"\s\([^()]*\)$")


def redact_x12_error(message: str) -> str:
    """A validation finding without the element values pyx12 quotes (they can be a
    patient's name or member id): the line, element and rule stay, and so does a quoted
    name pyx12 puts before an element, segment or loop id."""
    if message.startswith("claimflow:"):  # ours: control numbers, codes and amounts only
        return message

    def value(match: re.Match[str]) -> str:
        return match.group(0) if match.group(1) else '"…"'

    return _TRAILING_VALUE.sub(" (…)", _QUOTED.sub(value, message))


# --- 837P: what pyx12 does not check ---------------------------------------------------------


def _rules_837p(segments: list[list[str]], component: str) -> list[str]:
    return _claim_balance_errors(segments) + _hl_child_errors(segments) + _hi_errors(segments, component)


def _claim_balance_errors(segments: list[list[str]]) -> list[str]:
    """CLM02 must equal the sum of its SV102s."""
    errors: list[str] = []
    claim: list[str] | None = None
    lines = Decimal(0)
    for elements in [*segments, ["SE"]]:
        if elements[0] in {"CLM", "HL", "SE"} and claim is not None:
            if safe_decimal(get(claim, 2)) != lines:
                errors.append(f"claimflow: CLM {get(claim, 1)}: CLM02 {get(claim, 2)} is not the sum of SV102 "
                              f"({lines})")
            claim = None
        if elements[0] == "CLM":
            claim, lines = elements, Decimal(0)
        elif elements[0] == "SV1" and claim is not None:
            lines += safe_decimal(get(elements, 2)) or Decimal(0)
    return errors


def _hl_child_errors(segments: list[list[str]]) -> list[str]:
    """HL04 is 1 exactly when a later HL (in the same transaction) names this one as parent."""
    errors: list[str] = []
    hls: list[list[str]] = []
    for elements in [*segments, ["SE"]]:
        if elements[0] == "HL":
            hls.append(elements)
        elif elements[0] == "SE":
            parents = {get(hl, 2) for hl in hls}
            errors += [f"claimflow: HL {get(hl, 1)}: HL04 {get(hl, 4)!r} but it has "
                       f"{'children' if get(hl, 1) in parents else 'no children'}"
                       for hl in hls if (get(hl, 4) == "1") != (get(hl, 1) in parents)]
            hls = []
    return errors


def _hi_errors(segments: list[list[str]], component: str) -> list[str]:
    return [f"claimflow: HI code {code!r} has a dot (X12 carries ICD-10-CM codes without it)"
            for elements in segments if elements[0] == "HI"
            for composite in elements[1:] for code in composite.split(component)[1:2] if "." in code]


# --- 835: the balancing pyx12 does not do ---------------------------------------------------------


def _rules_835(segments: list[list[str]], _component: str) -> list[str]:
    return _payment_balance_errors(segments)


@dataclass(slots=True)
class _Tally:
    """Running sums for the balancing checks of one transaction."""

    bpr: list[str] | None = None
    paid: Decimal = ZERO
    plb: Decimal = ZERO
    count: int = 0
    clp: list[str] | None = None
    claim_cas: Decimal = ZERO
    claim_pr: Decimal = ZERO
    svc: list[str] | None = None
    line_cas: Decimal = ZERO


def _payment_balance_errors(segments: list[list[str]]) -> list[str]:
    errors: list[str] = []
    tally: _Tally | None = None
    for elements in segments:
        seg_id = elements[0]
        if seg_id == "ST":
            tally = _Tally()
        if tally is None:
            continue
        tally.count += 1
        if seg_id in {"SVC", "CLP", "PLB", "SE", "LX"}:
            errors += _close_line(tally)
        if seg_id in {"CLP", "PLB", "SE", "LX"}:
            errors += _close_claim(tally)
        if seg_id == "BPR":
            tally.bpr = elements
        elif seg_id == "CLP":
            tally.clp, tally.claim_cas, tally.claim_pr = elements, ZERO, ZERO
            tally.paid += _number(get(elements, 4))
        elif seg_id == "SVC" and tally.clp is not None:
            tally.svc, tally.line_cas = elements, ZERO
        elif seg_id == "CAS" and tally.clp is not None:
            amount = sum((_number(get(elements, i)) for i in range(3, 21, 3)), ZERO)
            tally.claim_cas += amount
            tally.claim_pr += amount if get(elements, 1) == "PR" else ZERO
            if tally.svc is not None:
                tally.line_cas += amount
        elif seg_id == "PLB":
            tally.plb += sum((_number(get(elements, i)) for i in range(4, 16, 2)), ZERO)
        elif seg_id == "SE":
            errors += _close_transaction(tally, elements)
            tally = None
    return errors


def _number(text: str) -> Decimal:
    return (safe_decimal(text) if text else None) or ZERO


def _close_line(tally: _Tally) -> list[str]:
    svc, tally.svc = tally.svc, None
    if svc is None:
        return []
    paid = _number(get(svc, 2)) - tally.line_cas
    if paid != _number(get(svc, 3)):
        return [f"claimflow: CLP {get(tally.clp or [], 1)} SVC {get(svc, 1)}: SVC02 {get(svc, 2)} − CAS "
                f"{tally.line_cas} = {paid}, not SVC03 {get(svc, 3)}"]
    return []


def _close_claim(tally: _Tally) -> list[str]:
    clp, tally.clp = tally.clp, None
    if clp is None:
        return []
    errors = []
    paid = _number(get(clp, 3)) - tally.claim_cas
    if paid != _number(get(clp, 4)):
        errors.append(f"claimflow: CLP {get(clp, 1)}: CLP03 {get(clp, 3)} − CAS {tally.claim_cas} = {paid}, "
                      f"not CLP04 {get(clp, 4)}")
    if _number(get(clp, 5)) != tally.claim_pr:
        errors.append(f"claimflow: CLP {get(clp, 1)}: CLP05 {get(clp, 5) or 0} is not the PR adjustments "
                      f"({tally.claim_pr})")
    return errors


def _close_transaction(tally: _Tally, se: list[str]) -> list[str]:
    errors = []
    control = get(se, 2)
    if tally.bpr is None:
        errors.append(f"claimflow: transaction {control} has no BPR")
    elif _number(get(tally.bpr, 2)) != tally.paid - tally.plb:
        errors.append(f"claimflow: transaction {control}: BPR02 {get(tally.bpr, 2)} is not Σ CLP04 {tally.paid} "
                      f"− Σ PLB {tally.plb} = {tally.paid - tally.plb}")
    if get(se, 1) != str(tally.count):
        errors.append(f"claimflow: transaction {control}: SE01 {get(se, 1)!r} but {tally.count} segments "
                      "from ST to SE")
    return errors
