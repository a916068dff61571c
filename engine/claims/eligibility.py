"""Eligibility before the claim (270/271 semantics), the pure part.

The claim stage asks the payer whether the member is covered on the date of service
(an ``EligibilityRequest``), parks the coded encounter until the answer comes back
(an ``EligibilityResponse``), and keeps answers in a cache with a TTL so the next visit
of the same member does not ask again. An answer applies to another date of service
only when it decides that date: an ACTIVE or INACTIVE answer carries the coverage
period, a NOT_FOUND answer holds for any date.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from engine.model.events import CodedEncounter, EligibilityRequest, EligibilityResponse, EligibilityStatus
from engine.wire.codec import Codec


def request_id_for(encounter_id: str) -> str:
    return "ER-" + hashlib.blake2b(encounter_id.encode(), digest_size=8).hexdigest().upper()


def front_desk_item_id(encounter_id: str) -> str:
    return "FD-" + hashlib.blake2b(encounter_id.encode(), digest_size=8).hexdigest().upper()


def cache_key(payer_id: str, member_id: str) -> str:
    return f"{payer_id}|{member_id}"


def eligibility_request(coded: CodedEncounter, now: datetime) -> EligibilityRequest:
    subscriber = coded.subscriber
    return EligibilityRequest(
        request_id=request_id_for(coded.encounter_id),
        encounter_id=coded.encounter_id,
        payer_id=coded.payer_id,
        member_id=coded.member_id,
        subscriber_last_name=subscriber.last_name if subscriber else coded.patient_last_name,
        subscriber_birth_date=subscriber.birth_date if subscriber else coded.patient_birth_date,
        date_of_service=coded.date_of_service,
        requested_at=now,
    )


def _in_period(answer: EligibilityResponse, day: date) -> bool:
    """``day`` inside the answer's coverage period (both ends inclusive, no end: open);
    with no period given, only the date the payer was asked about."""
    if answer.coverage_start is None:
        return answer.date_of_service == day
    return answer.coverage_start <= day and (answer.coverage_end is None or day <= answer.coverage_end)


def decides(answer: EligibilityResponse, day: date) -> bool:
    """Whether an answer given for one date of service settles another."""
    if answer.status == EligibilityStatus.NOT_FOUND:
        return True
    if answer.coverage_start is None:  # no period: it speaks for the date asked about only
        return answer.date_of_service == day
    return _in_period(answer, day) == (answer.status == EligibilityStatus.ACTIVE) or answer.date_of_service == day


def covers(answer: EligibilityResponse, day: date) -> bool:
    """ACTIVE on ``day``: the answer's coverage period includes it."""
    return answer.status == EligibilityStatus.ACTIVE and _in_period(answer, day)


@dataclass(frozen=True)
class EligibilityCache:
    """Answers by payer and member, as framed Avro in any mapping (a faust table in the
    worker), reused for ``ttl`` after the payer gave them."""

    entries: MutableMapping[str, str]  # value: the answer's framed Avro as latin-1 text
    codec: Codec
    ttl: timedelta

    def get(self, payer_id: str, member_id: str, day: date, now: datetime) -> EligibilityResponse | None:
        raw = self.entries.get(cache_key(payer_id, member_id))
        if raw is None:
            return None
        answer = self.codec.decode(raw.encode("latin-1"), EligibilityResponse)
        if now - answer.responded_at > self.ttl or not decides(answer, day):
            return None
        return answer

    def put(self, answer: EligibilityResponse) -> None:
        self.entries[cache_key(answer.payer_id, answer.member_id)] = self.codec.encode(answer).decode("latin-1")

