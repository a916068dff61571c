"""X12 code values the engine writes and reads, in one place (CAS group codes are the
``GroupCode`` enum of the events)."""

from __future__ import annotations

from enum import StrEnum

#: CLM05-3 claim frequency codes.
ORIGINAL = "1"
REPLACEMENT = "7"  # replaces an earlier claim (a corrected claim)
VOID = "8"  # voids an earlier claim


class ClaimStatusCode(StrEnum):
    """CLP02 claim status codes Claimflow writes and reads."""

    PRIMARY = "1"
    SECONDARY = "2"
    TERTIARY = "3"
    DENIED = "4"
    REVERSAL = "22"


#: X12 individual relationship code (SBR02, PAT01) for "the patient is the subscriber".
SELF = "18"
