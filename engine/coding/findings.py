"""What the coding rules and the scrubber share: findings, and the registry that lists
each rule function with the ids it raises (so README, summaries and tests can name them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

from engine.model.events import Finding, Severity

F = TypeVar("F", bound=Callable[..., object])

#: A finding's message and element as a work item carries them: bad input (a 400 KB
#: "code") is named by its first characters and its length, not copied into every finding.
FINDING_TEXT_MAX = 200
#: The most findings a work item lists (20,000 repeated diagnoses raise 20,000); one more
#: counts the rest.
FINDINGS_LISTED = 100


def error(rule_id: str, message: str, element: str) -> Finding:
    return Finding(rule_id=rule_id, severity=Severity.ERROR, message=message, element=element)


def warning(rule_id: str, message: str, element: str) -> Finding:
    return Finding(rule_id=rule_id, severity=Severity.WARNING, message=message, element=element)


def has_errors(findings: Iterable[Finding]) -> bool:
    """An ERROR stops the encounter (coding) or the claim (scrubber); WARNINGs travel."""
    return any(f.severity == Severity.ERROR for f in findings)


def errors_first(findings: list[Finding]) -> list[Finding]:
    """Errors before warnings, each in the order the rules raised them (a stable sort)."""
    return sorted(findings, key=lambda f: f.severity != Severity.ERROR)


def cut_text(text: str, limit: int = FINDING_TEXT_MAX) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def for_work_item(findings: list[Finding]) -> list[Finding]:
    """The findings a work item carries: each one's text cut, at most ``FINDINGS_LISTED``,
    then one finding that counts the rest (with the first omitted one's rule and the
    worst severity among them)."""
    listed = [replace(f, message=cut_text(f.message), element=cut_text(f.element)) for f in findings[:FINDINGS_LISTED]]
    rest = findings[FINDINGS_LISTED:]
    if rest:
        omitted_errors = sum(f.severity == Severity.ERROR for f in rest)
        listed.append(Finding(rule_id=rest[0].rule_id, severity=Severity.ERROR if omitted_errors else Severity.WARNING,
                              message=f"{len(rest)} more findings not listed ({omitted_errors} errors)",
                              element=cut_text(rest[0].element)))
    return listed


def registrar(functions: list[F], ids: dict[str, str]) -> Callable[..., Callable[[F], F]]:
    """A decorator factory: ``@rule("ID_A", "ID_B")`` appends the function to
    ``functions`` (run order) and maps each id to the function's name in ``ids``."""

    def rule(*rule_ids: str) -> Callable[[F], F]:
        def register(function: F) -> F:
            functions.append(function)
            for rule_id in rule_ids:
                ids[rule_id] = function.__name__
            return function

        return register

    return rule
