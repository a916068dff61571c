"""What a generated event class does beyond its fields (``engine/wire/generate.py`` makes
the class inherit from the base named here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.model.events import Adjustment, RemittanceLine


class RemittanceBehaviour:
    __slots__ = ()
    if TYPE_CHECKING:  # the generated class's fields; not annotations at run time (get_type_hints)
        adjustments: list[Adjustment]
        lines: list[RemittanceLine]

    def all_adjustments(self) -> list[Adjustment]:
        """Claim-level CAS followed by every line's CAS."""
        return [*self.adjustments, *(adj for line in self.lines for adj in line.adjustments)]
