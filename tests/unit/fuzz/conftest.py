"""The fuzz suite's count of cases, in the terminal summary."""

from __future__ import annotations

import pytest

from tests.unit.fuzz.cases import CASES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    terminalreporter.section("fuzz cases")
    for test, n in sorted(CASES.items()):
        terminalreporter.write_line(f"{n:7d}  {test}")
    terminalreporter.write_line(f"{sum(CASES.values()):7d}  cases in all (inputs fuzzed, valid neighbours not counted)")
