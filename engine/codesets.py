"""Code sets: ICD-10-CM from ``simple-icd-10-cm`` (April 2026 release, FY2026), and the
shapes of CPT / HCPCS Level II codes and modifiers.

CPT descriptors are AMA-copyrighted: we ship and check code *forms*, never descriptor text.
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from types import ModuleType

_CPT_CATEGORY_I = re.compile(r"^\d{5}$")
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

    return simple_icd_10_cm


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


def procedure_code_kind(code: str) -> str | None:
    """The code set a procedure code's form belongs to, or None if it fits none."""
    if _CPT_CATEGORY_I.match(code):
        return "CPT-I"
    if _CPT_CATEGORY_II.match(code):
        return "CPT-II"
    if _CPT_CATEGORY_III.match(code):
        return "CPT-III"
    if _HCPCS_LEVEL_II.match(code):
        return "HCPCS-II"
    return None


def modifier_shape_ok(modifier: str) -> bool:
    return bool(_MODIFIER.match(modifier))


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
    return len(npi) == 10 and npi.isascii() and npi.isdigit() and npi[0] in "12" and npi_check_digit(npi[:9]) == int(npi[9])
