"""Topic names in one place (the ``Topic`` and ``Table`` enums), ``topics.yaml`` loaded, and
``apply``, which makes a cluster match it without destroying data (creates what is missing,
reports drift)."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

if TYPE_CHECKING:
    from engine.settings import Settings

log = logging.getLogger(__name__)


class Topic(StrEnum):
    """Every logical topic (the real name is ``CLAIMS_TOPIC_PREFIX`` + value); a test checks
    this list against ``topics.yaml`` both ways."""

    ENCOUNTERS = "encounters"
    CODED = "coded"
    CODING_REVIEW = "coding-review"
    CODING_ACTIONS = "coding-actions"
    DENIAL_ACTIONS = "denial-actions"
    ELIGIBILITY_REQUESTS = "eligibility-requests"
    ELIGIBILITY_RESPONSES = "eligibility-responses"
    FRONT_DESK = "front-desk"
    SCRUB_REJECTED = "scrub-rejected"
    CLAIMS_SUBMITTED = "claims-submitted"
    DUPLICATES = "duplicates"
    PAYER_CLAIMS = "payer-claims"
    REMITTANCES = "remittances"
    CLAIM_STATUS = "claim-status"
    STATEMENTS = "statements"
    PAYMENTS = "payments"
    UNAPPLIED_CASH = "unapplied-cash"
    DEAD_LETTER = "dead-letter"
    # One denial work queue per category (engine/reference/data/denial_routing.yaml).
    DENIALS_ELIGIBILITY = "denials.eligibility"
    DENIALS_AUTHORIZATION = "denials.authorization"
    DENIALS_CODING = "denials.coding"
    DENIALS_BUNDLING = "denials.bundling"
    DENIALS_MEDICAL_NECESSITY = "denials.medical-necessity"
    DENIALS_NON_COVERED = "denials.non-covered"
    DENIALS_BENEFIT_MAXIMUM = "denials.benefit-maximum"
    DENIALS_COORDINATION_OF_BENEFITS = "denials.coordination-of-benefits"
    DENIALS_TIMELY_FILING = "denials.timely-filing"
    DENIALS_DUPLICATE = "denials.duplicate"
    DENIALS_MISSING_INFORMATION = "denials.missing-information"
    DENIALS_OTHER = "denials.other"

    @classmethod
    def denial_queues(cls) -> tuple[Topic, ...]:
        return tuple(t for t in cls if t.startswith(DENIAL_QUEUE_PREFIX))

    @property
    def queue_name(self) -> str:
        """A denial queue topic's queue name (``denials.coding`` → ``coding``)."""
        return self.value.removeprefix(DENIAL_QUEUE_PREFIX)


DENIAL_QUEUE_PREFIX = "denials."


class Table(StrEnum):
    """The faust tables; each has a compacted changelog ``{app id}-{table}-changelog``."""

    CLAIMS_BY_ENCOUNTER = "claims_by_encounter"
    CODING_ITEMS_BY_ENCOUNTER = "coding_items_by_encounter"
    ELIGIBILITY_ANSWERS = "eligibility_answers"
    CLAIM_LEDGER = "claim_ledger"
    DENIED_CLAIMS = "denied_claims"
    PAYER_MEMBERS = "payer_members"  # the payer simulator's app

    def changelog(self, app_id: str) -> str:
        return f"{app_id}-{self.value}-changelog"


_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def retention_ms(value: str | int) -> int:
    """``7d`` → 604800000; ``forever`` → -1 (Kafka's "keep everything")."""
    if isinstance(value, int):
        return value
    if value == "forever":
        return -1
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"retention {value!r}: expected e.g. 7d, 12h, 500ms or forever")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


#: ``auto`` replication: the cluster's brokers, at most this many.
MAX_AUTO_REPLICATION = 3


@dataclass(frozen=True)
class TopicSpec:
    logical_name: str
    name: str
    schema: str
    partitions: int
    #: None: ``auto`` until ``for_cluster`` knows the brokers.
    replication_factor: int | None
    min_insync_replicas: int | None
    retention_ms: int
    cleanup_policy: str
    max_message_bytes: int

    def for_cluster(self, brokers: int) -> TopicSpec:
        """The spec with ``auto`` replication resolved for a cluster of ``brokers``: as
        many replicas as brokers up to three, and two in sync from three on."""
        rf = self.replication_factor or min(brokers, MAX_AUTO_REPLICATION)
        isr = self.min_insync_replicas or (2 if rf >= 3 else 1)
        return replace(self, replication_factor=rf, min_insync_replicas=isr)

    @property
    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms),
                   "max.message.bytes": str(self.max_message_bytes)}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return configs


def _auto_or_int(value: object) -> int | None:
    return None if value in (None, "auto") else int(str(value))


def load_topics(settings: Settings, path: Path | None = None) -> dict[str, TopicSpec]:
    """Topic specs by logical name, with prefixes, defaults and the environment's overrides
    (``CLAIMS_TOPICS_ENV``: a block under ``environments``) applied."""
    doc = yaml.safe_load((path or settings.topics_file).read_text())
    environments = doc.get("environments") or {}
    if settings.topics_env and settings.topics_env not in environments:
        raise ValueError(f"CLAIMS_TOPICS_ENV={settings.topics_env!r}: topics.yaml declares "
                         f"{', '.join(sorted(environments)) or 'no environment'}")
    environment = environments.get(settings.topics_env, {}) if settings.topics_env else {}
    defaults = {**doc.get("defaults", {}), **environment.get("defaults", {})}
    per_topic = environment.get("topics", {})
    specs: dict[str, TopicSpec] = {}
    for entry in doc["topics"]:
        logical = str(entry["name"]).format(app_id=settings.app_id)
        merged = {**defaults, **entry, **per_topic.get(str(entry["name"]), {})}
        name = logical if entry.get("absolute") else settings.topic(Topic(logical))
        cleanup = str(merged["cleanup"])
        if cleanup not in ("delete", "compact"):
            raise ValueError(f"topic {logical}: cleanup must be delete or compact, not {cleanup!r}")
        specs[logical] = TopicSpec(
            logical_name=logical,
            name=name,
            schema=str(merged["schema"]),
            partitions=int(merged["partitions"]),
            replication_factor=settings.replication_factor or _auto_or_int(merged.get("replication_factor")),
            min_insync_replicas=_auto_or_int(merged.get("min_insync_replicas")),
            retention_ms=retention_ms(merged["retention"]),
            cleanup_policy=cleanup,
            max_message_bytes=int(merged["max_message_bytes"]),
        )
    return specs


def max_message_bytes(specs: dict[str, TopicSpec]) -> int:
    """The largest record any topic takes: the producers' ``max_request_size``."""
    return max(spec.max_message_bytes for spec in specs.values())


@functools.lru_cache(maxsize=8)
def declared_max_message_bytes(topics_file: Path, topics_env: str) -> int:
    """``max_message_bytes`` of a topics file, read once per process (every client asks)."""
    from engine.settings import Settings

    return max_message_bytes(load_topics(Settings(topics_file=topics_file, topics_env=topics_env)))


@dataclass(frozen=True)
class ApplyReport:
    created: list[str]
    unchanged: list[str]
    drift: list[str]

    def lines(self) -> list[str]:
        out = [f"created  {name}" for name in self.created]
        out += [f"drift    {line}" for line in self.drift]
        out.append(f"{len(self.created)} created, {len(self.unchanged)} unchanged, {len(self.drift)} drift")
        return out


async def apply_topics(settings: Settings, specs: dict[str, TopicSpec]) -> ApplyReport:
    """Create missing topics on ``settings.bootstrap_servers``; compare existing ones with
    the declaration.

    Never deletes or repartitions: drift is reported for a human to decide.
    """
    from engine.runtime.kafka import make_admin  # the runtime imports this module's enums

    admin = make_admin(settings)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        specs = {logical: spec.for_cluster(brokers) for logical, spec in specs.items()}
        too_wide = [s.name for s in specs.values() if (s.replication_factor or 1) > brokers]
        if too_wide:
            raise ValueError(f"{len(too_wide)} topics declare more replicas than the cluster's {brokers} brokers "
                             f"(e.g. {too_wide[0]}): lower replication_factor or CLAIMS_REPLICATION_FACTOR")
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs.values() if spec.name not in existing]
        created: list[str] = []
        if missing:
            new_topics = [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs) for s in missing
            ]
            try:
                await admin.create_topics(new_topics)
            except TopicAlreadyExistsError:  # a concurrent apply won the race: fine
                pass
            created = [s.name for s in missing]
            await _wait_for_leaders(admin, created)
        present = [spec for spec in specs.values() if spec.name in existing]
        drift = await _drift(admin, present) if present else []
        drifted = {line.split(":", 1)[0] for line in drift}
        unchanged = [s.name for s in present if s.name not in drifted]
        return ApplyReport(created=created, unchanged=unchanged, drift=drift)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Until every partition of the new topics has a leader: Kafka creates them
    asynchronously, and a producer that comes first logs errors while it waits."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        pending = [t["topic"] for t in described
                   if t["error_code"] or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader after {timeout_s:.0f}s: {', '.join(pending[:5])}")
        await asyncio.sleep(0.1)


async def _drift(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    drift: list[str] = []
    described = await admin.describe_topics([s.name for s in specs])
    by_name = {t["topic"]: t["partitions"] for t in described}
    for spec in specs:
        partitions = by_name.get(spec.name)
        if not partitions:
            continue
        if len(partitions) != spec.partitions:
            drift.append(f"{spec.name}: {len(partitions)} partitions, declared {spec.partitions}")
        replicas = min(len(p["replicas"]) for p in partitions)
        if replicas != spec.replication_factor:
            drift.append(f"{spec.name}: replication factor {replicas}, declared {spec.replication_factor}")
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
        )
    except KafkaError as exc:  # some Kafka-compatible brokers do not answer DescribeConfigs
        log.warning("could not describe topic configs (%s); partition counts checked only", exc)
        return drift
    actual_configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries)
            name, entries = resource[3], resource[4]
            actual_configs[name] = {entry[0]: entry[1] for entry in entries}
    for spec in specs:
        have = actual_configs.get(spec.name)
        if have is None:
            continue
        for key, want in spec.configs.items():
            if key not in have:
                drift.append(f"{spec.name}: {key} missing, declared {want}")
            elif have[key] != want:
                drift.append(f"{spec.name}: {key}={have[key]}, declared {want}")
    return drift
