"""Code sets: ICD-10-CM from ``simple-icd-10-cm`` (April 2026 release, FY2026), and the
shapes of CPT / HCPCS Level II codes and modifiers.

CPT descriptors are AMA-copyrighted: we ship and check code *forms*, never descriptor text.
Everything a coding rule asks of a diagnosis code is answered by ``icd10_info`` from a
per-code cache, so a check is dictionary lookups, never a scan of the code set.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from types import ModuleType

_CPT_CATEGORY_I = re.compile(r"^\d{5}$")
# Category I codes with a letter: vaccine products/administration (0001A), multianalyte
# assays with algorithmic analyses (0001M), proprietary laboratory analyses (0001U).
_CPT_LETTERED = re.compile(r"^\d{4}[AMU]$")
_CPT_CATEGORY_II = re.compile(r"^\d{4}F$")
_CPT_CATEGORY_III = re.compile(r"^\d{4}T$")
_HCPCS_LEVEL_II = re.compile(r"^[A-V]\d{4}$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")
_ICD10_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z]([0-9A-Z]{1,4})?$")


@cache
def _icd() -> ModuleType:
    # Imported lazily: loading the code set takes ~2 s, paid once per process.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        import simple_icd_10_cm

    module: ModuleType = simple_icd_10_cm
    return module


def normalize_icd10(code: str) -> str:
    """``m545.0`` / ``M5450`` / `` M54.50 `` → ``M54.50`` (X12 later drops the dot)."""
    bare = code.strip().upper().replace(".", "")
    return bare if len(bare) <= 3 else f"{bare[:3]}.{bare[3:]}"


def icd10_shape_ok(code: str) -> bool:
    return bool(_ICD10_SHAPE.match(code.replace(".", "")))


def icd10_exists(code: str) -> bool:
    return icd10_shape_ok(code) and bool(_icd().is_valid_item(code))


def icd10_billable(code: str) -> bool:
    """Only leaf codes are billable; headers such as M54.5 (since FY2022) are not."""
    return icd10_exists(code) and bool(_icd().is_leaf(code))


def icd10_description(code: str) -> str:
    return str(_icd().get_description(code)) if icd10_exists(code) else ""


# --- ICD-10-CM tabular notes -------------------------------------------------

_CODE_REF = r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?"
_REF_SINGLE = re.compile(rf"^({_CODE_REF})(?:\.?-)?$")  # E10.-  O24.4-  P70.2  E08
_REF_RANGE = re.compile(rf"^({_CODE_REF})(?:\.?-)?-({_CODE_REF})(?:\.?-)?$")  # O10-O11  A04.0-A04.4
_PARENS = re.compile(r"\(([^()]*)\)")
_SPACED_DASH = re.compile(r"\s*-\s*")
_MANIFESTATION_TITLE = "classified elsewhere"
#: ICD-10-CM chapter 20, external causes of morbidity (V00–Y99): never a principal diagnosis.
EXTERNAL_CAUSE_FIRST_LETTERS = frozenset("VWXY")


@dataclass(frozen=True, slots=True)
class CodeRange:
    """A code reference from a tabular note, as bare (dotless) bounds: ``E10.-`` is
    E10..E10, ``O10-O11`` is O10..O11; a code matches when its prefix of the bound's
    length falls inside."""

    first: str
    last: str

    def matches(self, bare_code: str) -> bool:
        return self.first <= bare_code[: len(self.first)] and bare_code[: len(self.last)] <= self.last

    @classmethod
    def parse(cls, text: str) -> CodeRange:
        """``E10.-``, ``P70.2``, ``O10-O11``, ``A04.0-A04.4``, ``N70-N98`` …"""
        token = text.strip().upper()
        if match := _REF_RANGE.match(token):
            return cls(_bare(match.group(1)), _bare(match.group(2)))
        if match := _REF_SINGLE.match(token):
            return cls(_bare(match.group(1)), _bare(match.group(1)))
        raise ValueError(f"{text!r} is not an ICD-10-CM code reference")


def _bare(code: str) -> str:
    return code.replace(".", "")


def parse_note_references(note: str) -> tuple[CodeRange, ...]:
    """The code references of one Excludes1 note: every parenthesised group whose parts
    are all code references. Groups with qualifiers ("with 5th character 9") are skipped:
    they cannot be matched exactly, and a false conflict would stop a good claim."""
    ranges: list[CodeRange] = []
    for group in _PARENS.findall(note):
        # The tabular writes some ranges with stray spaces: "I01.0 -I01.9", "P28.3- - P28.4-".
        parts = [part.strip() for part in _SPACED_DASH.sub("-", group).split(",")]
        try:
            parsed = [CodeRange.parse(part) for part in parts]
        except ValueError:
            continue  # the whole group, not the parts before the one that failed
        ranges.extend(parsed)
    return tuple(ranges)


@dataclass(frozen=True, slots=True)
class Icd10Info:
    """What the coding rules need to know of one (normalised) code."""

    code: str
    exists: bool
    billable: bool
    description: str
    #: The 7th-character values the code's category defines (S52 → A, B, C, D, …); empty if none.
    seventh_characters: tuple[str, ...]
    #: Not billable only for want of its 7th character: every child is this code plus
    #: placeholders and a 7th character (S52.501 → S52.501A; T14.90 → T14.90XA).
    needs_seventh_character: bool
    #: Excludes1 references of the code and every ancestor (they apply to descendants).
    excludes1: tuple[CodeRange, ...]
    #: Manifestation code: "… in diseases classified elsewhere" with a "code first" note.
    manifestation: bool

    @property
    def bare(self) -> str:
        return _bare(self.code)


@lru_cache(maxsize=131_072)
def icd10_info(code: str) -> Icd10Info:
    """Everything about a normalised code, computed once per process."""
    icd = _icd()
    if not icd10_exists(code):
        return Icd10Info(code, False, False, "", (), False, (), False)
    lineage = [code, *(a for a in icd.get_ancestors(code))]
    # Categories and below. Not ``is_chapter_or_block``: a one-category block shares its
    # category's name (block "T14" holds category T14), and the category must stay.
    hierarchy = [a for a in dict.fromkeys(lineage)
                 if icd.is_category_or_subcategory(a) or icd.is_extended_subcategory(a)]
    seventh: tuple[str, ...] = ()
    for item in hierarchy:
        if definition := icd.get_seven_chr_def(item):
            seventh = tuple(sorted(definition))
            break
    excludes1 = tuple(ref for item in lineage for note in icd.get_excludes1(item)
                      for ref in parse_note_references(note))
    manifestation = any(_MANIFESTATION_TITLE in icd.get_description(a) for a in hierarchy) and any(
        icd.get_code_first(a) for a in hierarchy
    )
    leaf = bool(icd.is_leaf(code))
    needs_seventh = bool(seventh) and not leaf and all(len(_bare(child)) == 7 for child in icd.get_children(code))
    return Icd10Info(code, True, leaf, str(icd.get_description(code)), seventh, needs_seventh, excludes1,
                     manifestation)


def icd10_leaves(code: str) -> list[tuple[str, str]]:
    """The billable codes under ``code``, with their descriptions."""
    icd = _icd()
    if not icd10_exists(code):
        return []
    return [(d, str(icd.get_description(d))) for d in icd.get_descendants(code) if icd.is_leaf(d)]


def with_placeholders(code: str) -> str | None:
    """The code with the placeholder X inserted before its last character, if that makes
    an existing code: ``T14.90A`` → ``T14.90XA``, ``W19A`` → ``W19.XXXA``."""
    bare = _bare(code)
    if len(bare) >= 7 or len(bare) < 4:
        return None
    candidate = with_seventh_character(bare[:-1], bare[-1])
    return candidate if icd10_exists(candidate) else None


def with_seventh_character(code: str, seventh: str) -> str:
    """``S52.501`` + ``A`` → ``S52.501A``; ``T14.90`` + ``A`` → ``T14.90XA`` (placeholder X
    up to the 6th character, as the tabular requires)."""
    return normalize_icd10(_bare(code).ljust(6, "X") + seventh)


def is_external_cause(code: str) -> bool:
    return code[:1] in EXTERNAL_CAUSE_FIRST_LETTERS


def is_evaluation_and_management(code: str) -> bool:
    """CPT E/M services, 99202–99499: where NCCI accepts modifiers 24, 25 and 57."""
    return len(code) == 5 and code.isdigit() and 99202 <= int(code) <= 99499


@dataclass(frozen=True)
class DemographicEdit:
    """One sex or age edit (the Medicare Code Editor's kinds): codes in ``ranges`` are
    valid only for ``sex`` / ages ``min_age``..``max_age`` in whole years at the date of
    service."""

    edit_id: str
    label: str
    ranges: tuple[CodeRange, ...]
    sex: str | None = None
    min_age: int | None = None
    max_age: int | None = None

    def applies_to(self, code: str) -> bool:
        bare = _bare(code)
        return any(r.matches(bare) for r in self.ranges)


def load_demographic_edits(path: Path) -> tuple[DemographicEdit, ...]:
    """``engine/reference/data/icd10_demographic_edits.yaml``: sex and age edits by code range."""
    import yaml

    document = yaml.safe_load(path.read_text())
    edits = []
    for edit_id, entry in document["edits"].items():
        edits.append(DemographicEdit(
            edit_id=edit_id,
            label=entry["label"],
            ranges=tuple(CodeRange.parse(r) for r in entry["codes"]),
            sex=entry.get("sex"),
            min_age=entry.get("min_age"),
            max_age=entry.get("max_age"),
        ))
    return tuple(edits)


# --- CPT / HCPCS --------------------------------------------------------------


def procedure_code_kind(code: str) -> str | None:
    """The code set a procedure code's form belongs to, or None if it fits none."""
    if _CPT_CATEGORY_I.match(code):
        return "CPT-I"
    if _CPT_LETTERED.match(code):
        return {"A": "CPT-I", "M": "CPT-MAAA", "U": "CPT-PLA"}[code[4]]
    if _CPT_CATEGORY_II.match(code):
        return "CPT-II"
    if _CPT_CATEGORY_III.match(code):
        return "CPT-III"
    if _HCPCS_LEVEL_II.match(code):
        return "HCPCS-II"
    return None


def modifier_shape_ok(modifier: str) -> bool:
    return bool(_MODIFIER.match(modifier))


@dataclass(frozen=True)
class Modifier:
    code: str
    description: str
    #: NCCI procedure-to-procedure bypass modifier (59, X{EPSU}, anatomic, 24/25/57/58/78/79, 91).
    ncci_bypass: bool
    kind: str


class ModifierTable:
    """Known CPT and HCPCS Level II modifiers, from ``engine/reference/data/modifiers.csv``."""

    def __init__(self, modifiers: dict[str, Modifier]) -> None:
        self.modifiers = modifiers
        self.bypass = frozenset(code for code, m in modifiers.items() if m.ncci_bypass)

    @classmethod
    def load(cls, path: Path) -> ModifierTable:
        with path.open(newline="") as handle:
            rows = csv.DictReader(line for line in handle if not line.startswith("#"))
            modifiers = {
                row["modifier"].strip().upper(): Modifier(
                    code=row["modifier"].strip().upper(),
                    description=row["description"].strip(),
                    ncci_bypass=row["ncci_bypass"].strip().lower() in {"y", "yes", "true", "1"},
                    kind=row["kind"].strip(),
                )
                for row in rows
            }
        return cls(modifiers)

    def __contains__(self, code: object) -> bool:
        return code in self.modifiers


def warm_up() -> None:
    """Load the ICD-10-CM data now (worker start-up) rather than on the first event."""
    _icd()


def npi_check_digit(first_nine: str) -> int:
    """Luhn check digit over the 9 digits prefixed with 80840 (the NPI's card-issuer prefix)."""
    digits = [int(d) for d in "80840" + first_nine]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:  # doubled: rightmost payload digit first, check digit excluded
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def npi_is_valid(npi: str) -> bool:
    """10 digits, first 1 or 2, last the Luhn check digit (1234567893 valid, 1234567890 not)."""
    return (len(npi) == 10 and npi.isascii() and npi.isdigit() and npi[0] in "12"
            and npi_check_digit(npi[:9]) == int(npi[9]))
