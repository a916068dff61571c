"""engine.claims.eligibility: which answer settles which date of service, the answer cache and
the 270 request built from a coded encounter."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.claims.eligibility import (
    EligibilityCache,
    cache_key,
    covers,
    decides,
    eligibility_request,
    front_desk_item_id,
    request_id_for,
)
from engine.model.events import CodedEncounter, EligibilityRequest, EligibilityResponse, EligibilityStatus, Subscriber

#: The instant the sample answers were given (conftest NOW).
NOW = datetime(2026, 3, 2, 14, 30, 15, 250_000, tzinfo=UTC)
ACTIVE, INACTIVE, NOT_FOUND = EligibilityStatus.ACTIVE, EligibilityStatus.INACTIVE, EligibilityStatus.NOT_FOUND
ASKED = date(2026, 2, 27)  # the date of service the answer was given for
START = date(2021, 1, 1)
ENDED = date(2025, 12, 31)
FUTURE_START = date(2026, 4, 1)


def answer(samples, status: EligibilityStatus, start: date | None, end: date | None, **changes) -> EligibilityResponse:
    return dataclasses.replace(samples[EligibilityResponse], status=status, coverage_start=start, coverage_end=end,
                               date_of_service=ASKED, **changes)


# (status, coverage start, coverage end, day asked about, decides, covers)
TABLE = [
    # NOT_FOUND: no such member, whatever the day.
    (NOT_FOUND, None, None, ASKED, True, False),
    (NOT_FOUND, None, None, date(1999, 1, 1), True, False),
    (NOT_FOUND, None, None, date(2030, 12, 31), True, False),
    # ACTIVE and open-ended: any day from the start on, not before it.
    (ACTIVE, START, None, ASKED, True, True),
    (ACTIVE, START, None, START, True, True),
    (ACTIVE, START, None, date(2030, 6, 1), True, True),
    (ACTIVE, START, None, START - timedelta(days=1), False, False),
    # ACTIVE with an end: inside the period, both ends included; after it not settled.
    (ACTIVE, START, date(2026, 6, 30), date(2026, 6, 30), True, True),
    (ACTIVE, START, date(2026, 6, 30), date(2026, 7, 1), False, False),
    # ACTIVE without a period: only the day asked about.
    (ACTIVE, None, None, ASKED, True, True),
    (ACTIVE, None, None, ASKED + timedelta(days=1), False, False),
    # INACTIVE, lapsed: settles (not covered) any day after the end; a day inside the old period needs asking.
    (INACTIVE, START, ENDED, ASKED, True, False),
    (INACTIVE, START, ENDED, date(2026, 1, 1), True, False),
    (INACTIVE, START, ENDED, date(2030, 1, 1), True, False),
    (INACTIVE, START, ENDED, ENDED, False, False),
    (INACTIVE, START, ENDED, date(2024, 5, 5), False, False),
    (INACTIVE, START, ENDED, START - timedelta(days=1), True, False),
    # INACTIVE, not started yet (open-ended from a later start): settles days before the start only.
    (INACTIVE, FUTURE_START, None, ASKED, True, False),
    (INACTIVE, FUTURE_START, None, FUTURE_START - timedelta(days=1), True, False),
    (INACTIVE, FUTURE_START, None, FUTURE_START, False, False),
    (INACTIVE, FUTURE_START, None, date(2027, 1, 1), False, False),
    # INACTIVE without a period: only the day asked about.
    (INACTIVE, None, None, ASKED, True, False),
    (INACTIVE, None, None, ASKED - timedelta(days=1), False, False),
]


@pytest.mark.parametrize("status, start, end, day, settles, covered", TABLE,
                         ids=[f"{s}-{a}-{b}-on-{d}" for s, a, b, d, *_ in TABLE])
def test_decides_and_covers(samples, status, start, end, day, settles, covered):
    given = answer(samples, status, start, end)
    assert decides(given, day) is settles
    assert covers(given, day) is covered


def test_covered_implies_decided(samples):
    """An answer that says a day is covered always settles it (the cache may reuse it)."""
    for status, start, end, day, _, _ in TABLE:
        given = answer(samples, status, start, end)
        assert not covers(given, day) or decides(given, day)


def test_an_active_answer_whose_period_misses_its_own_day_settles_it_as_not_covered(samples):
    """Inconsistent, but the day asked about is always settled by its own answer."""
    given = answer(samples, ACTIVE, START, ENDED)
    assert decides(given, ASKED) and not covers(given, ASKED)


# --- the cache -------------------------------------------------------------------

TTL = timedelta(hours=24)


@pytest.fixture
def cache(codec) -> EligibilityCache:
    return EligibilityCache({}, codec, TTL)


def test_a_cached_answer_is_reused_within_the_ttl(cache, samples, codec):
    given = samples[EligibilityResponse]  # ACTIVE from 2021, open-ended, responded at NOW
    assert given.responded_at == NOW
    cache.put(given)
    assert list(cache.entries) == [cache_key(given.payer_id, given.member_id)] == ["PPO01|PPO123456789"]
    stored = cache.entries["PPO01|PPO123456789"]
    assert isinstance(stored, str)  # a string table: the framed Avro as latin-1 text
    assert codec.decode(stored.encode("latin-1"), EligibilityResponse) == given
    assert cache.get("PPO01", "PPO123456789", ASKED, NOW) == given
    assert cache.get("PPO01", "PPO123456789", ASKED + timedelta(days=3), NOW + timedelta(hours=5)) == given
    assert cache.get("PPO01", "PPO123456789", ASKED, NOW + TTL) == given  # the TTL itself still counts


def test_a_cached_answer_expires_after_the_ttl(cache, samples):
    given = samples[EligibilityResponse]
    cache.put(given)
    assert cache.get("PPO01", "PPO123456789", ASKED, NOW + TTL + timedelta(milliseconds=1)) is None
    assert cache.get("PPO01", "PPO123456789", ASKED, NOW + timedelta(days=30)) is None
    # Expired is not deleted: a fresh answer replaces it.
    fresh = dataclasses.replace(given, request_id="ER-FRESH", responded_at=NOW + timedelta(days=30))
    cache.put(fresh)
    assert len(cache.entries) == 1
    assert cache.get("PPO01", "PPO123456789", ASKED, NOW + timedelta(days=30, hours=1)) == fresh


def test_a_cache_miss_for_another_member_or_payer(cache, samples):
    cache.put(samples[EligibilityResponse])
    assert cache.get("PPO01", "PPO999999999", ASKED, NOW) is None
    assert cache.get("HMO01", "PPO123456789", ASKED, NOW) is None
    assert EligibilityCache({}, cache.codec, TTL).get("PPO01", "PPO123456789", ASKED, NOW) is None


def test_a_cached_answer_that_does_not_settle_the_day_is_a_miss(cache, samples):
    cache.put(answer(samples, ACTIVE, START, date(2026, 6, 30)))
    assert cache.get("PPO01", "PPO123456789", date(2026, 6, 30), NOW) is not None
    assert cache.get("PPO01", "PPO123456789", date(2026, 7, 1), NOW) is None
    cache.put(answer(samples, INACTIVE, START, ENDED, reason="coverage ended 2025-12-31"))
    assert cache.get("PPO01", "PPO123456789", date(2026, 3, 1), NOW).status == INACTIVE
    assert cache.get("PPO01", "PPO123456789", date(2025, 6, 1), NOW) is None


def test_a_not_found_answer_is_reused_for_any_day(cache, samples):
    cache.put(answer(samples, NOT_FOUND, None, None, reason="member not found", plan_id=None, copay=None,
                     deductible_remaining=None))
    for day in (ASKED, date(2020, 1, 1), date(2026, 12, 31)):
        assert cache.get("PPO01", "PPO123456789", day, NOW).status == NOT_FOUND


# --- the request ------------------------------------------------------------------


@pytest.fixture
def coded(make_coded_encounter) -> CodedEncounter:
    """A coded encounter whose patient is the subscriber (it carries no subscriber)."""
    return make_coded_encounter(subscriber=None)


def test_request_for_a_patient_who_is_the_subscriber(coded, codec):
    request = eligibility_request(coded, NOW)
    assert request == EligibilityRequest(
        request_id=request_id_for(coded.encounter_id),
        encounter_id=coded.encounter_id,
        payer_id=coded.payer_id,
        member_id=coded.member_id,
        subscriber_last_name=coded.patient_last_name,
        subscriber_birth_date=coded.patient_birth_date,
        date_of_service=coded.date_of_service,
        requested_at=NOW,
    )
    assert (request.subscriber_last_name, request.subscriber_birth_date) == ("Chen", date(1958, 7, 14))
    assert codec.decode(codec.encode(request), EligibilityRequest) == request


def test_request_for_a_dependent_names_the_subscriber(coded, codec):
    parent = Subscriber("19", "Lee", "Okafor", date(1980, 4, 2), "F")
    request = eligibility_request(dataclasses.replace(coded, subscriber=parent), NOW)
    assert (request.subscriber_last_name, request.subscriber_birth_date) == ("Okafor", date(1980, 4, 2))
    assert (request.member_id, request.payer_id, request.date_of_service) == (
        coded.member_id, coded.payer_id, coded.date_of_service)
    no_birth_date = dataclasses.replace(parent, birth_date=None)
    unrecorded = eligibility_request(dataclasses.replace(coded, subscriber=no_birth_date), NOW)
    assert (unrecorded.subscriber_last_name, unrecorded.subscriber_birth_date) == ("Okafor", None)
    assert codec.decode(codec.encode(unrecorded), EligibilityRequest) == unrecorded


def test_request_and_front_desk_ids_are_deterministic_and_distinct():
    ids = {request_id_for(f"ENC-1-{i:07d}") for i in range(2000)}
    assert len(ids) == 2000 and all(i.startswith("ER-") for i in ids)
    assert request_id_for("ENC-1-0000001") == request_id_for("ENC-1-0000001")
    assert front_desk_item_id("ENC-1-0000001").startswith("FD-")
    assert front_desk_item_id("ENC-1-0000001")[3:] == request_id_for("ENC-1-0000001")[3:]  # one hash, two prefixes
    assert front_desk_item_id("ENC-1-0000001") != front_desk_item_id("ENC-1-0000002")
