"""X12 5010 text primitives shared by the 837P and 835 writers, readers and validators, so
both speak one dialect (delimiters, envelope, amounts, dates): see docs/x12.md."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from engine.model.events import Address

if TYPE_CHECKING:
    from engine.settings import Settings

SEGMENT_TERMINATOR = "~"
ELEMENT_SEPARATOR = "*"
COMPONENT_SEPARATOR = ":"
REPETITION_SEPARATOR = "^"
CENTS = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_CONTROL_NUMBER = 999_999_999  # ISA13 / GS06: 9 digits
_DELIMITERS = (SEGMENT_TERMINATOR, ELEMENT_SEPARATOR, COMPONENT_SEPARATOR, REPETITION_SEPARATOR, "\n", "\r")


# --- writing -------------------------------------------------------------------


def clean(value: str) -> str:
    """Free text without delimiters (a ``*`` in a street name would split the element)."""
    for delimiter in _DELIMITERS:
        value = value.replace(delimiter, " ")
    return " ".join(value.split())


class Composite(str):
    """An element already joined from cleaned components: ``seg`` keeps its separators."""


def seg(seg_id: str, *elements: str) -> str:
    """A segment with trailing empty elements dropped (X12 forbids trailing separators)."""
    values = [e if isinstance(e, Composite) else clean(e) for e in elements]
    while values and values[-1] == "":
        values.pop()
    return ELEMENT_SEPARATOR.join([seg_id, *values])


def composite(*components: str) -> Composite:
    values = [clean(c) for c in components]
    while values and values[-1] == "":
        values.pop()
    return Composite(COMPONENT_SEPARATOR.join(values))


def address(place: Address | None) -> list[str]:
    """N3/N4 for an address (nothing for None)."""
    if place is None:
        return []
    return [seg("N3", place.line1), seg("N4", place.city, place.state, place.postal_code)]


def isa(sender_id: str, receiver_id: str, usage: str, control_number: int, created: datetime) -> str:
    """ISA with its fixed widths: 105 characters, 106 with the terminator."""
    fields = [
        "ISA", "00", " " * 10, "00", " " * 10,
        "ZZ", f"{sender_id:<15}", "ZZ", f"{receiver_id:<15}",
        created.strftime("%y%m%d"), hhmm(created), REPETITION_SEPARATOR, "00501",
        f"{control_number:09d}", "0", usage, COMPONENT_SEPARATOR,
    ]
    return ELEMENT_SEPARATOR.join(fields)


def interchange(functional_id: str, implementation: str, sender_id: str, receiver_id: str, usage: str,
                control_number: int, created: datetime, transactions: Sequence[list[str]]) -> str:
    """ISA, one GS (``functional_id``, GS08 ``implementation``) around ``transactions`` (each
    ST..SE), GE, IEA: every segment ending ``~`` and a newline. ``created`` is the time the
    transactions were stamped with (UTC, see ``utc``)."""
    segments = [
        isa(sender_id, receiver_id, usage, control_number, created),
        seg("GS", functional_id, sender_id, receiver_id, d8(created), hhmm(created), str(control_number), "X",
            implementation),
        *(segment for transaction in transactions for segment in transaction),
        seg("GE", str(len(transactions)), str(control_number)),
        seg("IEA", "1", f"{control_number:09d}"),
    ]
    return "".join(f"{segment}{SEGMENT_TERMINATOR}\n" for segment in segments)


def with_se(segments: list[str], st_control: str) -> list[str]:
    """``segments`` (ST first) closed by the SE that counts them, itself included."""
    return [*segments, seg("SE", str(len(segments) + 1), st_control)]


def check_control_number(control_number: int) -> None:
    if not 1 <= control_number <= MAX_CONTROL_NUMBER:
        raise ValueError(f"control number {control_number} is not 1..999999999")


def check_envelope_settings(settings: Settings) -> None:
    """The usage indicator and the ids the ISA and GS carry."""
    if settings.x12_usage not in {"T", "P"}:
        raise ValueError(f"x12_usage {settings.x12_usage!r} is not T or P")
    for name in ("x12_sender_id", "x12_receiver_id"):
        if not 2 <= len(getattr(settings, name)) <= 15:
            raise ValueError(f"{name} must be 2..15 characters (ISA06/ISA08, GS02/GS03)")


def utc(moment: datetime) -> datetime:
    """Envelope times are UTC; a naive time is taken as UTC already."""
    return moment.astimezone(UTC) if moment.tzinfo else moment


def money(amount: Decimal) -> str:
    """X12 R type without needless zeros: 140, 140.5, 140.55, -12.5."""
    return format(amount.quantize(CENTS).normalize(), "f")


def d8(day: date) -> str:
    return day.strftime("%Y%m%d")


def hhmm(moment: datetime) -> str:
    return moment.strftime("%H%M")


# --- reading -------------------------------------------------------------------


def split(text: str, *, newline_terminator: bool = False) -> tuple[list[list[str]], str]:
    """The segments of ``text`` (each a list of elements, the id first) and the component
    separator, all three delimiters taken from the ISA: element = ISA char 4, component =
    ISA16, segment terminator = the character after it. Newlines (LF or CRLF) after a
    terminator are ignored. A newline as the terminator itself is accepted only with
    ``newline_terminator`` (the 835 reader takes such payer files; the 837 reader does not)."""
    start = text.lstrip()
    if not start.startswith("ISA") or len(start) < 106:
        raise ValueError("not an X12 interchange: it must begin with a 106-character ISA")
    element, component, terminator = start[3], start[104], start[105]
    pieces = start[:105].split(element)
    newline = newline_terminator and terminator in "\r\n"
    if len(pieces) != 17 or len(pieces[16]) != 1 or terminator.isalnum() or (terminator.isspace() and not newline):
        raise ValueError("not an X12 interchange: the ISA must be exactly 106 characters with 16 elements")
    raw = (s.strip("\r\n") for s in start.split(terminator))
    return [s.split(element) for s in raw if s.strip()], component


def get(elements: list[str], position: int) -> str:
    """Element ``position`` (1-based after the id), ``""`` when the segment is shorter."""
    return elements[position] if position < len(elements) else ""


def parse_amount(text: str) -> Decimal:
    """An X12 R amount as Decimal cents; ``ValueError`` when it is not a number."""
    try:
        return Decimal(text).quantize(CENTS)
    except InvalidOperation:
        raise ValueError(f"not an X12 amount: {text!r}") from None


def parse_date(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


def safe_decimal(text: str) -> Decimal | None:
    """For validators: a bad number is reported elsewhere (by pyx12), not raised here."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return None
