"""What the coding rules and the scrubber share: findings, and the registry that lists
each rule function with the ids it raises (so README, summaries and tests can name them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from engine.model.events import Finding, Severity

F = TypeVar("F", bound=Callable[..., object])


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
