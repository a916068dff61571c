"""The coder simulator: works the coding-review queue the way a coder does, so a demo
run shows the queue closing.

For each new work item it reads the findings and corrects what a coder can correct
from the chart — a header code to its unspecified leaf, a missing 7th character or
placeholder, the principal diagnosis order, a duplicate, an unknown modifier, a
bundled line, units over the MUE, dx pointers — and checks the correction with the
same rules before sending it. What needs the provider (an unknown code, a sex or age
conflict, missing registration data) it queries. Audit samples it agrees with.
Every decision is a pure function of the item, so a seed gives the same actions.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.coding.findings import has_errors
from engine.coding.review import Correction, apply_correction
from engine.coding.rules import Chart, CodingReference, check_encounter
from engine.model.events import CodingAction, CodingActionType, CodingReviewItem, Encounter, Finding
from engine.reference.codesets import icd10_leaves, is_external_cause, with_placeholders, with_seventh_character
from engine.runtime.kafka import run_consumer_stage
from engine.runtime.stages import Emit, SourceMessage, StageResult, run_stage, utcnow
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

ACTOR = "coder-sim"
_DX = re.compile(r"^diagnoses\[(\d+)\]")
_LINE = re.compile(r"^procedures\[(\d+)\]")
_MODIFIER = re.compile(r"^procedures\[(\d+)\]\.modifiers\[(\d+)\]")


@dataclass
class _Plan:
    """A correction under construction (0-based positions, converted at the end)."""

    set_dx: dict[int, str] = field(default_factory=dict)
    drop_dx: set[int] = field(default_factory=set)
    reorder: bool = False  # list the reason for the visit first
    drop_modifiers: dict[int, set[str]] = field(default_factory=dict)
    set_units: dict[int, int] = field(default_factory=dict)
    set_pointers: dict[int, tuple[int, ...]] = field(default_factory=dict)
    drop_lines: set[int] = field(default_factory=set)


def unspecified_leaf(code: str) -> str | None:
    """The leaf a coder picks for a header code when the chart says no more: the
    shortest billable descendant described as unspecified or without complications."""
    generic = [leaf for leaf, description in icd10_leaves(code)
               if re.search(r"unspecified|without complications", description, re.I)]
    return min(generic, key=lambda d: (len(d), d), default=None)


def _index(pattern: re.Pattern[str], element: str) -> int | None:
    match = pattern.match(element)
    return int(match.group(1)) if match else None


def plan_correction(enc: Encounter, findings: Sequence[Finding], ref: CodingReference) -> Correction | None:
    """The correction a coder makes from the chart alone, or None if the item needs
    the provider (or a rule the simulator does not correct)."""
    chart = Chart.of(enc, ref)
    plan = _Plan()
    for finding in (f for f in findings if f.severity == "ERROR"):
        dx, line = _index(_DX, finding.element), _index(_LINE, finding.element)
        code = chart.diagnoses[dx].code if dx is not None and dx < len(chart.diagnoses) else ""
        match finding.rule_id:
            case "ICD10_NOT_BILLABLE" if dx is not None and (leaf := unspecified_leaf(code)):
                plan.set_dx[dx] = leaf
            case "ICD10_SEVENTH_CHAR_MISSING" if dx is not None:
                plan.set_dx[dx] = with_seventh_character(code, "A")  # initial encounter
            case "ICD10_PLACEHOLDER_MISSING" if dx is not None and (fixed := with_placeholders(code)):
                plan.set_dx[dx] = fixed
            case "ICD10_EXCLUDES1" | "DX_DUPLICATE" if dx is not None:
                plan.drop_dx.add(dx)
            case "ICD10_MANIFESTATION_PRINCIPAL" | "ICD10_EXTERNAL_CAUSE_PRINCIPAL" | "DX_PRINCIPAL_UNLINKED":
                plan.reorder = True
            case "MODIFIER_UNKNOWN" | "MODIFIER_FORMAT" if (m := _MODIFIER.match(finding.element)):
                index = int(m.group(1))
                plan.drop_modifiers.setdefault(index, set()).add(chart.lines[index].modifiers[int(m.group(2))])
            case "NCCI_PTP" if line is not None:
                plan.drop_lines.add(line)  # the bundled column-2 line
            case "MUE_EXCEEDED" if line is not None and (mue := ref.mue.get(chart.lines[line].code)):
                plan.set_units[line] = max(1, mue.units)
            case "DX_POINTER_RANGE" | "DX_POINTER_COUNT" if line is not None:
                valid = tuple(dict.fromkeys(p for p in chart.lines[line].dx_pointers if 1 <= p <= len(chart.diagnoses)))
                plan.set_pointers[line] = valid[:4] or (1,)
            case _:
                return None  # needs the provider: unknown code, sex/age, missing data …
    return _as_correction(plan, chart)


def _reason_for_visit(chart: Chart, plan: _Plan) -> int | None:
    """The first diagnosis that may be principal and that a line points at (after
    the plan's pointer fixes)."""
    pointers = [plan.set_pointers.get(line.index, line.dx_pointers) for line in chart.lines]
    linked = {p - 1 for line_pointers in pointers for p in line_pointers}
    for index, dx in enumerate(chart.diagnoses):
        if dx.billable and not dx.manifestation and not is_external_cause(dx.code) and index in linked:
            return index
    return None


def _as_correction(plan: _Plan, chart: Chart) -> Correction | None:
    remaining = [i for i in range(len(chart.diagnoses)) if i not in plan.drop_dx]
    order: tuple[int, ...] = ()
    principal = _reason_for_visit(chart, plan) if plan.reorder else None
    if plan.reorder and principal is None:
        return None
    if principal is not None and principal in remaining and remaining[0] != principal:
        order = tuple(i + 1 for i in [principal, *(i for i in remaining if i != principal)])
    return Correction(
        set_dx={i + 1: code for i, code in plan.set_dx.items()},
        drop_dx=tuple(sorted(i + 1 for i in plan.drop_dx)),
        dx_order=order,
        set_modifiers={i + 1: tuple(m for m in chart.lines[i].modifiers if m not in drop)
                       for i, drop in plan.drop_modifiers.items()},
        set_units={i + 1: units for i, units in plan.set_units.items()},
        set_pointers={i + 1: pointers for i, pointers in plan.set_pointers.items()},
        drop_lines=tuple(sorted(i + 1 for i in plan.drop_lines)),
    )


def work_item(item: CodingReviewItem, codec: Codec, ref: CodingReference) -> list[Emit]:
    """The simulated coder's one action on a new item (nothing on later revisions:
    a correction that failed again waits for a person)."""
    if item.revision != 1:
        return []
    now = utcnow()

    def action(kind: CodingActionType, note: str, changes: list[str] | None = None,
               corrected: bytes | None = None) -> list[Emit]:
        event = CodingAction(
            action_id=f"CA-SIM-{item.work_item_id}-{kind}", work_item_id=item.work_item_id,
            encounter_id=item.encounter_id, revision=item.revision, action=kind, actor=ACTOR, note=note,
            changes=changes or [], corrected_encounter=corrected, occurred_at=now,
        )
        return [Emit(Topic.CODING_ACTIONS, item.encounter_id, event)]

    if item.is_audit:
        return action(CodingActionType.AUDIT_AGREE, "coding supported by the documentation")
    enc = codec.decode(item.encounter, Encounter)
    correction = plan_correction(enc, item.findings, ref)
    if correction is not None and not correction.empty:
        corrected, changes = apply_correction(enc, correction)
        if not has_errors(check_encounter(corrected, ref)):
            return action(CodingActionType.FIX, "corrected from the documentation", changes, codec.encode(corrected))
    rules = ", ".join(dict.fromkeys(f.rule_id for f in item.findings if f.severity == "ERROR"))
    return action(CodingActionType.QUERY, f"Please review the documentation: {rules}")


class CoderSimulator:
    """Consumes coding-review (a consumer group), produces coding actions."""

    def __init__(self, settings: Settings, bootstrap_servers: str, codec: Codec) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.codec = codec
        self.ref = CodingReference.load(settings)
        self.stop = asyncio.Event()

    def process(self, messages: Sequence[SourceMessage]) -> StageResult:
        return run_stage(ACTOR, messages, self.codec, CodingReviewItem,
                         lambda item, msg: work_item(item, self.codec, self.ref))

    async def run(self) -> None:
        await run_consumer_stage(self.settings, self.bootstrap_servers, self.codec, self.settings.coder_group_id,
                                 Topic.CODING_REVIEW, ACTOR, self.process, self.stop)
