"""The payer's appeals desk: a biller's APPEAL (on ``denial-actions``) gets the payer's
decision, an APPEAL_DECIDED on the same topic. Overturned, the payer pays the amount
appealed (the engine posts it to the claim's ledger); upheld, the denial stands.

The draw is seeded by the run's seed and the appeal's action id, so a redelivered appeal
gets the same decision with the same id (the fold applies it once), and a second appeal of
the same item after a reopen is a new draw. The rate is the payer's
``appeal_overturn_rate`` (``payer_profiles.yaml``, with its source).
"""

from __future__ import annotations

import random
from datetime import datetime

from engine.model.events import DenialAction, DenialActionType
from engine.runtime.stages import Emit, ProcessingError
from engine.wire.topics import Topic
from simulators.payer.adjudication import PayerBook


def decision_id(appeal: DenialAction) -> str:
    return f"{appeal.action_id}:{DenialActionType.APPEAL_DECIDED}"


def decide_appeal(appeal: DenialAction, book: PayerBook, seed: int, now: datetime) -> list[Emit]:
    """The payer's answer to one APPEAL; nothing for any other action."""
    if appeal.action != DenialActionType.APPEAL:
        return []
    profile = book.payers.get(appeal.payer_id or "")
    if profile is None:
        raise ProcessingError(f"appeal {appeal.action_id}: payer {appeal.payer_id!r} unknown to the simulator")
    rng = random.Random(f"appeal:{seed}:{appeal.action_id}")
    overturned = rng.random() < profile.appeal_overturn_rate
    days = round(rng.triangular(profile.appeal_days[0], profile.appeal_days[2], profile.appeal_days[1]))
    decision = DenialAction(
        action_id=decision_id(appeal), work_item_id=appeal.work_item_id, claim_id=appeal.claim_id,
        action=DenialActionType.APPEAL_DECIDED, user=f"payer:{profile.payer_id}", at=now,
        note=f"{'overturned' if overturned else 'upheld'} after {days} days", appeal_overturned=overturned,
        amount=appeal.amount if overturned else None, payer_id=profile.payer_id,
    )
    return [Emit(Topic.DENIAL_ACTIONS, appeal.claim_id, decision)]
