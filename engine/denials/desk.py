"""The denial work queues on Kafka: read back from the topics (no consumer group, so it
disturbs no one) and folded with ``engine.denials.work_items``; biller actions are appended to
``denial-actions``, keyed by the denied claim. The queues are stored nowhere but the
topics.

``DenialDesk`` is what a biller's tool (``claims denials`` and the web page) works
through: find an item, prepare an action against its current state (a replacement or
void is built from the claim standing at the payer and checked with the same coding rules
and scrubber the engine runs), refuse what the state does not allow, and publish.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from engine.claims.build import ClaimContext
from engine.coding.findings import has_errors
from engine.coding.rules import CodingReference
from engine.denials.actions import check_successor, rejection_note
from engine.denials.work_items import (
    ClaimCorrections,
    FoldedQueues,
    WorkItemState,
    apply_action,
    fold_work_items,
    next_claim_id,
    replacement_claim,
    void_claim,
)
from engine.model.events import ClaimSubmitted, DenialAction, DenialActionType, DenialWorkItem, Finding, Remittance
from engine.posting.routing import DenialRouting
from engine.reference.master_data import appeal_days_by_payer
from engine.runtime.kafka import make_producer, read_events, started
from engine.runtime.stages import ProcessingError
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

A = DenialActionType


async def read_queues(settings: Settings, bootstrap: str, codec: Codec) -> FoldedQueues:
    """Every work item of every queue, folded with its actions and its replacements' answers."""
    routing = DenialRouting.load(settings.denial_routing_file)
    queues = await asyncio.gather(*(read_events(settings, bootstrap, codec, q, DenialWorkItem)
                                    for q in routing.queues()))
    actions, remittances = await asyncio.gather(
        read_events(settings, bootstrap, codec, Topic.DENIAL_ACTIONS, DenialAction),
        read_events(settings, bootstrap, codec, Topic.REMITTANCES, Remittance))
    return fold_work_items((i for q in queues for i in q), actions, remittances)


def new_action_id() -> str:
    return "DA-" + uuid.uuid4().hex[:16].upper()


async def publish_action(settings: Settings, bootstrap: str, codec: Codec, action: DenialAction) -> None:
    async with started(make_producer(settings, bootstrap)) as producer:
        await producer.send_and_wait(settings.topic(Topic.DENIAL_ACTIONS), codec.encode(action),
                                     key=action.claim_id.encode())


class ActionRefused(Exception):
    """The action is not allowed now, or its replacement claim fails the checks; nothing
    was published. The message names ids, codes and statuses only."""

    def __init__(self, message: str, findings: list[Finding] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []


@dataclass(frozen=True)
class ActionRequest:
    """What a biller asks for; the desk fills in the rest from the item's state."""

    kind: DenialActionType
    user: str
    note: str | None = None
    adjustment_reason: str | None = None  # WRITE_OFF
    amount: Decimal | None = None  # WRITE_OFF (default: the $ at risk)
    corrections: ClaimCorrections = field(default_factory=ClaimCorrections)  # RESUBMIT
    force: bool = False  # RESUBMIT: send even if the local checks find errors (the engine checks again)


class NoSuchWorkItem(ActionRefused):
    """No work item has that id (nor a claim with that id one)."""


def find_item(items: list[tuple[DenialWorkItem, WorkItemState]], ref: str) -> tuple[DenialWorkItem, WorkItemState]:
    """By work item id, or by claim id when the claim has one item."""
    found = [(i, s) for i, s in items if ref in (i.work_item_id, i.claim_id)]
    if not found:
        raise NoSuchWorkItem(f"no work item {ref}")
    if len(found) > 1:
        raise ActionRefused(f"{ref} names {len(found)} work items: use a work item id")
    return found[0]


def mask_member_id(member_id: str) -> str:
    """All but the last 4 characters hidden: what a biller needs to match a call or a card.
    An id of 8 characters or fewer shows only its last 2, so most of it stays hidden."""
    shown = 4 if len(member_id) > 8 else 2 if len(member_id) > 2 else 0
    return "•" * (len(member_id) - shown) + member_id[len(member_id) - shown:]


class DenialDesk:
    """The biller's side of the queues, for one broker. Reference data (fee schedule,
    payers, coding tables) is loaded once, on first use."""

    def __init__(self, settings: Settings, bootstrap: str, codec: Codec) -> None:
        self.settings, self.bootstrap, self.codec = settings, bootstrap, codec
        self._ctx: ClaimContext | None = None
        self._coding: CodingReference | None = None

    @property
    def ctx(self) -> ClaimContext:
        if self._ctx is None:
            self._ctx = ClaimContext.load(self.settings, self.codec)
        return self._ctx

    @property
    def coding(self) -> CodingReference:
        if self._coding is None:
            self._coding = CodingReference.load(self.settings)
        return self._coding

    @property
    def appeal_days(self) -> dict[str, int]:
        return appeal_days_by_payer(self.ctx.payers)

    async def queues(self) -> FoldedQueues:
        return await read_queues(self.settings, self.bootstrap, self.codec)

    async def item(self, ref: str) -> tuple[DenialWorkItem, WorkItemState]:
        return find_item((await self.queues()).items, ref)

    async def claim(self, claim_id: str) -> ClaimSubmitted:
        """The latest submission of ``claim_id`` on claims-submitted."""
        claims = await read_events(self.settings, self.bootstrap, self.codec, Topic.CLAIMS_SUBMITTED, ClaimSubmitted)
        found = [c for c in claims if c.claim_id == claim_id]
        if not found:
            raise ActionRefused(f"claim {claim_id} is not on claims-submitted")
        return found[-1]

    async def prepare(self, ref: str, request: ActionRequest, now: datetime | None = None
                      ) -> tuple[DenialAction, WorkItemState, WorkItemState]:
        """The action the request makes on the item now, with the state before and after;
        ``ActionRefused`` if the state does not allow it or its claim fails the checks."""
        now = now or datetime.now(UTC)
        item, state = await self.item(ref)
        fields: dict[str, object] = {"note": request.note, "payer_id": item.payer_id}
        if request.kind == A.WRITE_OFF:
            fields |= {"adjustment_reason": request.adjustment_reason,
                       "amount": state.amount_at_risk if request.amount is None else request.amount}
        elif request.kind == A.APPEAL:
            fields["amount"] = state.amount_at_risk
        elif request.kind in (A.RESUBMIT, A.VOID):
            fields |= await self._successor(item, state, request, now)
        action = DenialAction(new_action_id(), item.work_item_id, item.claim_id, request.kind, request.user, now,
                              **fields)  # type: ignore[arg-type]
        try:
            after = apply_action(state, action)
        except ProcessingError as exc:
            raise ActionRefused(str(exc)) from None
        return action, state, after

    async def _successor(self, item: DenialWorkItem, state: WorkItemState, request: ActionRequest,
                         now: datetime) -> dict[str, object]:
        standing = await self.claim(state.current_claim_id)
        claim_id = next_claim_id(state, request.kind)
        try:
            claim = (replacement_claim(standing, request.corrections, claim_id, now, fees=self.ctx.fees)
                     if request.kind == A.RESUBMIT else void_claim(standing, claim_id, now))
            findings = check_successor(claim, self.coding, self.ctx, now)
        except ProcessingError as exc:
            raise ActionRefused(str(exc)) from None
        if has_errors(findings) and not request.force:
            raise ActionRefused(f"claim {claim_id} fails the checks: {rejection_note(findings)}", findings)
        return {"replacement_claim_id": claim_id, "replacement_claim": self.codec.encode(claim)}

    async def act(self, ref: str, request: ActionRequest) -> tuple[DenialAction, WorkItemState]:
        """Prepare and publish: the action and the state it leads to."""
        action, _, after = await self.prepare(ref, request)
        await publish_action(self.settings, self.bootstrap, self.codec, action)
        return action, after

    async def wait_for(self, work_item_id: str, statuses: Collection[str], timeout_s: float) -> WorkItemState | None:
        """The item's state once it is in one of ``statuses`` (the payer answered, the
        engine judged), or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            _, state = find_item((await self.queues()).items, work_item_id)
            if state.status in statuses:
                return state
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.5)  # polling the topics, bounded by the deadline


def today() -> date:
    return datetime.now(UTC).date()
