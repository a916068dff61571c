"""What the X12 exports and the 835 ingest take from outside the file: the submitted claims
read back from claims-submitted, and interchange control numbers unique per sender."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from engine.model.events import ClaimSubmitted
from engine.runtime.kafka import read_topic
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic
from engine.x12.segments import MAX_CONTROL_NUMBER  # the counter wraps after 999,999,999 interchanges


async def submitted_claims(settings: Settings, bootstrap_servers: str, codec: Codec,
                           since: datetime | None = None) -> list[ClaimSubmitted]:
    """Every claim on claims-submitted (submitted at or after ``since``), oldest first."""
    records = await read_topic(settings.with_bootstrap(bootstrap_servers), settings.topic(Topic.CLAIMS_SUBMITTED),
                               timeout_s=120.0)
    claims = [codec.decode(r.value, ClaimSubmitted) for r in records]
    chosen = [c for c in claims if since is None or c.submitted_at >= since]
    return sorted(chosen, key=lambda c: (c.submitted_at, c.claim_id))


def next_control_number(state_dir: Path) -> int:
    """Interchange control numbers unique per sender: a counter in the state folder."""
    path = state_dir / "x12-control-number"
    state_dir.mkdir(parents=True, exist_ok=True)
    current = int(path.read_text()) if path.exists() else 0
    number = current % MAX_CONTROL_NUMBER + 1
    path.write_text(str(number))
    return number
