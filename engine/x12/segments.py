"""X12 5010 primitives shared by the 837P (``engine.x12.professional``) and 835 (``engine.x12.remittance``)
writers, readers and validators: segment building, the ISA, splitting a file on the
delimiters its ISA declares, amounts and dates, and pyx12 run silently in-process.

We write with the common delimiters (``*`` elements, ``:`` components, ``^`` repetitions,
``~`` plus a newline after each segment); the readers take whatever the ISA declares.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

SEGMENT_TERMINATOR = "~"
ELEMENT_SEPARATOR = "*"
COMPONENT_SEPARATOR = ":"
REPETITION_SEPARATOR = "^"
CENTS = Decimal("0.01")
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


def isa(sender_id: str, receiver_id: str, usage: str, control_number: int, created: datetime) -> str:
    """ISA with its fixed widths: 105 characters, 106 with the terminator."""
    fields = [
        "ISA", "00", " " * 10, "00", " " * 10,
        "ZZ", f"{sender_id:<15}", "ZZ", f"{receiver_id:<15}",
        created.strftime("%y%m%d"), hhmm(created), REPETITION_SEPARATOR, "00501",
        f"{control_number:09d}", "0", usage, COMPONENT_SEPARATOR,
    ]
    return ELEMENT_SEPARATOR.join(fields)


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


# --- validation ------------------------------------------------------------------

VALIDATION_LOCK = threading.Lock()


class Collect(logging.Handler):
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
