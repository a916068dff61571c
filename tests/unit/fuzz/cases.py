"""How many fuzz cases ran: each test counts the examples hypothesis gave it, and the
terminal summary (``conftest.py``) prints the total, so a run reports its number of cases."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings

#: Cases run per test (its node name), this session, in this process.
CASES: Counter[str] = Counter()

#: The fuzz tests' hypothesis settings: a fixed number of examples each, derandomized (the
#: same cases on every run and machine, so a failure reproduces) and no example database.
#: Fixtures are session data or factories called per example, hence the health check.
_FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)


def fuzz(max_examples: int) -> settings:
    """The fuzz settings with ``max_examples`` cases (the figure the summary adds up)."""
    return settings(_FUZZ, max_examples=max_examples)


def count(test: str, n: int = 1) -> None:
    CASES[test] += n
