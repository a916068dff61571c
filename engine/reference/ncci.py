"""NCCI edits from the CMS quarterly files: procedure-to-procedure (PTP) pairs and
medically unlikely edits (MUE), practitioner tables.

The loaders read the CMS files unchanged — the tab-delimited, Latin-1 PTP text
(``ccipra-v322r0-f1.TXT`` to ``f4``: a copyright line, a title line and a column header
wrapped over four lines, then rows) and the MUE CSV (a multi-line quoted copyright cell,
a header row, then ``code,units,"2 Date of Service Edit: Policy",rationale``) — so a deployment points
``CLAIMS_NCCI_PTP`` / ``CLAIMS_NCCI_MUE`` at the real quarterly files (a file or a
folder of them). The copyright and column-title lines at the top are skipped by shape:
a data row is one whose first fields are procedure codes. The small files shipped in
``engine/reference/data/`` use the same layout.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import TypeVar

from engine.reference.codesets import procedure_code_kind

T = TypeVar("T")


class ModifierIndicator(IntEnum):
    """PTP modifier indicator: may an NCCI-associated modifier bypass the edit?"""

    NOT_ALLOWED = 0
    ALLOWED = 1
    NOT_APPLICABLE = 9  # the edit is effectively deleted


class MueAdjudication(IntEnum):
    """MUE adjudication indicator."""

    LINE = 1  # units per claim line
    DATE_OF_SERVICE_POLICY = 2  # units per date of service, set by policy: not appealable
    DATE_OF_SERVICE_CLINICAL = 3  # units per date of service, clinical benchmark


@dataclass(frozen=True, slots=True)
class PtpEdit:
    column1: str
    column2: str
    existed_before_1996: bool
    effective: date
    deleted: date | None  # None: in force (the file writes "*")
    modifier_indicator: ModifierIndicator
    rationale: str

    def in_force_on(self, day: date) -> bool:
        """From the effective date through the deletion date, both inclusive: CMS
        writes quarter ends as deletion dates (20231231), the last day the edit applied."""
        return self.effective <= day and (self.deleted is None or day <= self.deleted)


@dataclass(frozen=True, slots=True)
class Mue:
    code: str
    units: int
    adjudication: MueAdjudication
    rationale: str


@cache  # a few hundred distinct dates across millions of rows
def _cms_date(text: str) -> date | None:
    text = text.strip()
    if not text or text == "*":
        return None
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _rows(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every row of every CMS file at ``path`` (a file or a folder of .txt/.csv), split
    on tabs (the PTP text files) or as CSV (the MUE files, CSV exports of either), with
    where it stands (``file:row``) for error messages."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".txt", ".csv"}) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .txt or .csv NCCI files in {path}")
    for file in files:
        with file.open(encoding="latin-1", newline="") as handle:  # Latin-1, as CMS publishes them
            tabbed = file.suffix.lower() == ".txt" and "\t" in handle.read(4096)
            handle.seek(0)
            rows = (line.rstrip("\r\n").split("\t") for line in handle) if tabbed else csv.reader(handle)
            for number, row in enumerate(rows, start=1):  # streamed: the full files are ~200 MB
                yield f"{file.name}:{number}", row


def _parsed(path: Path, parse: Callable[[list[str]], T | None]) -> Iterator[T]:
    """``parse`` over every row; a row that breaks it is an error naming the file and row."""
    for where, row in _rows(path):
        try:
            parsed = parse(row)
        except ValueError as exc:
            raise ValueError(f"{where}: bad NCCI row {row!r}: {exc}") from None
        if parsed is not None:
            yield parsed


def _is_code(text: str) -> bool:
    return procedure_code_kind(text.strip().upper()) is not None


class PtpTable:
    """PTP edits keyed by (column 1, column 2). The full CMS files hold ~2.6 million
    rows: codes, rationales and dates are shared objects (``_ptp_edit``), not a copy
    a row."""

    def __init__(self, edits: Iterable[PtpEdit]) -> None:
        by_pair: dict[tuple[str, str], list[PtpEdit]] = defaultdict(list)
        for edit in edits:
            by_pair[(edit.column1, edit.column2)].append(edit)
        self._by_pair: dict[tuple[str, str], tuple[PtpEdit, ...]] = {pair: tuple(e) for pair, e in by_pair.items()}

    def __len__(self) -> int:
        return sum(len(edits) for edits in self._by_pair.values())

    @classmethod
    def load(cls, path: Path, deleted_before: date | None = None) -> PtpTable:
        """Edits deleted before ``deleted_before`` are not kept: no claim that can still
        be filed is dated before it, and the full files hold decades of history."""
        return cls(edit for edit in _parsed(path, _ptp_edit)
                   if (deleted_before is None or edit.deleted is None or edit.deleted >= deleted_before))

    def edit_for(self, column1: str, column2: str, day: date) -> PtpEdit | None:
        """The edit pairing these codes in force on ``day``, if any. The files repeat a
        pair (a deleted period, an indicator-9 row); a row with indicator 9 is no edit."""
        for edit in self._by_pair.get((column1, column2), ()):
            if edit.in_force_on(day) and edit.modifier_indicator != ModifierIndicator.NOT_APPLICABLE:
                return edit
        return None


def _ptp_edit(row: list[str]) -> PtpEdit | None:
    if len(row) < 6 or not (_is_code(row[0]) and _is_code(row[1])):
        return None  # copyright and column-title lines
    effective = _cms_date(row[3])
    if effective is None:
        raise ValueError(f"PTP edit {row[0]}/{row[1]} has no effective date")
    return PtpEdit(
        column1=sys.intern(row[0].strip().upper()),
        column2=sys.intern(row[1].strip().upper()),
        existed_before_1996=row[2].strip() == "*",
        effective=effective,
        deleted=_cms_date(row[4]),
        modifier_indicator=ModifierIndicator(int(row[5].strip())),
        rationale=sys.intern(row[6].strip()) if len(row) > 6 else "",
    )


class MueTable:
    """MUE values keyed by procedure code."""

    def __init__(self, mues: Iterable[Mue]) -> None:
        self._by_code = {mue.code: mue for mue in mues}

    def __len__(self) -> int:
        return len(self._by_code)

    @classmethod
    def load(cls, path: Path) -> MueTable:
        return cls(_parsed(path, _mue))

    def get(self, code: str) -> Mue | None:
        return self._by_code.get(code)


def _mue(row: list[str]) -> Mue | None:
    if len(row) < 3 or not _is_code(row[0]):
        return None
    indicator = row[2].strip()  # "2 Date of Service Edit: Policy"
    return Mue(
        code=row[0].strip().upper(),
        units=int(row[1].strip()),
        adjudication=MueAdjudication(int(indicator[:1])),
        rationale=row[3].strip() if len(row) > 3 else "",
    )
