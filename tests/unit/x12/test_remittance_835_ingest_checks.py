"""What `claims ingest 835` refuses or names before it reads money into the books: a file
whose BPR02 is not its claim payments less PLB, an SE01 that miscounts its segments, a
version other than 5010; and payments that share a trace number are still two payments.
The unbalanced and miscounted cases are those found in public 835 files (BPR02 1,222.00
against 1,224.54; SE01 39 for 41)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.app import app
from engine.x12.remittance_835_matching import match_file
from engine.x12.remittance_835_read import read_835
from engine.x12.validation import balance_findings_835

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"
PLB_FILE = "835_plb.835"  # BPR02 96.95 = CLP04 90 + 61.20 − PLB 54.25; SE*35


def fixture(name: str) -> str:
    with open(FIXTURES / name, newline="") as f:
        return f.read()


def unbalanced() -> str:
    """The PLB file with a BPR02 two dollars and a few cents off, and two segments more than
    its SE01 says."""
    text = fixture(PLB_FILE).replace("BPR*I*96.95*", "BPR*I*94.41*")
    return text.replace("DTM*405*20260414~\n", "DTM*405*20260414~\nREF*EV*BMH01~\nREF*F2*1~\n")


def test_a_clean_file_has_no_findings() -> None:
    assert balance_findings_835(fixture(PLB_FILE)) == []


def test_an_unbalanced_miscounted_file_is_named_by_segment() -> None:
    findings = balance_findings_835(unbalanced())
    assert any("BPR02 94.41" in f and "Σ CLP04 151.20" in f and "54.25" in f for f in findings), findings
    assert any("SE01 '35' but 37 segments" in f for f in findings), findings
    assert all("0912" in f for f in findings)  # the transaction's control number


@pytest.mark.parametrize(("old", "new", "named"), [
    ("GS*HP*BMH01*CLAIMFLOW*20260414*0930*912*X*005010X221A1", "GS*HP*BMH01*CLAIMFLOW*20260414*0930*912*X*004010X091A1",
     "GS08 is version '004010X091A1'"),
    ("ST*835*0912~", "ST*835*0912*004010X091A1~", "ST03 is version '004010X091A1'"),
])
def test_a_version_other_than_5010_is_named_not_read(old: str, new: str, named: str) -> None:
    text = fixture(PLB_FILE).replace(old, new)
    assert text != fixture(PLB_FILE)
    with pytest.raises(ValueError, match=named):
        read_835(text)


def test_the_cli_refuses_an_unbalanced_file_before_it_reaches_the_broker(tmp_path: Path) -> None:
    path = tmp_path / "unbalanced.835"
    path.write_text(unbalanced(), encoding="latin-1")
    result = CliRunner().invoke(app, ["ingest", "835", str(path)], env={"CLAIMS_KAFKA_BOOTSTRAP": "127.0.0.1:9"})
    assert result.exit_code == 2
    assert "refused" in result.output and "BPR02 94.41" in result.output and "SE01" in result.output
    assert "--accept-unbalanced" in result.output


def test_two_payments_sharing_a_trace_number_are_two_payments() -> None:
    [payment] = read_835(fixture(PLB_FILE))
    reissued = replace(payment, payment_amount=payment.payment_amount + 10, claims=[])
    now = datetime(2026, 4, 16, tzinfo=UTC)
    first = match_file([payment], {}, "835:a", now, {})
    again = match_file([payment], {}, "835:b", now, {})
    other = match_file([reissued], {}, "835:c", now, {})
    assert first[0].payment.payment_id == again[0].payment.payment_id  # the same file twice: one payment
    assert other[0].payment.payment_id != first[0].payment.payment_id
