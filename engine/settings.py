"""All configuration in one place, read from the environment with sane defaults.

Every knob an operator may turn is a field here; agents and simulators take a
``Settings`` instead of reading the environment themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.wire.topics import Topic

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "engine" / "reference" / "data"
#: The brokers Claimflow can start on loopback.
BROKERS = ("tansu", "kafka")
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    # --- Kafka -------------------------------------------------------------
    #: Empty means: start (or reuse) the embedded Tansu broker on loopback.
    bootstrap_servers: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_BOOTSTRAP", ""))
    #: The broker `claims run` starts when none is configured or running: ``tansu`` (the
    #: embedded default, memory only) or ``kafka`` (Apache Kafka from the jars pom.xml pins).
    broker: str = field(default_factory=lambda: _env("CLAIMS_BROKER", "tansu"))
    #: Nodes of a loopback Kafka cluster (combined broker+controller; 3 gives RF 3, min ISR 2).
    kafka_nodes: int = field(default_factory=lambda: _env_int("CLAIMS_KAFKA_NODES", 1))
    kafka_heap_mb: int = field(default_factory=lambda: _env_int("CLAIMS_KAFKA_HEAP_MB", 512))
    #: Where Maven copies the broker's jars (shared by every state directory).
    kafka_lib_dir: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_KAFKA_LIB_DIR", str(Path.home() / ".claimflow" / "kafka-lib")))
    )
    #: Prefix of every topic name, so several environments can share a cluster.
    topic_prefix: str = field(default_factory=lambda: _env("CLAIMS_TOPIC_PREFIX", "claims."))
    topics_file: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_TOPICS_FILE", str(PROJECT_ROOT / "topics.yaml")))
    )
    #: A block under ``environments`` in topics.yaml whose keys override its defaults
    #: (and single topics) for this deployment, without a copy of the file.
    topics_env: str = field(default_factory=lambda: _env("CLAIMS_TOPICS_ENV", ""))
    #: Replicas of every topic, over topics.yaml; 0: as declared (``auto``: the cluster's
    #: brokers, at most 3).
    replication_factor: int = field(default_factory=lambda: _env_int("CLAIMS_REPLICATION_FACTOR", 0))
    schemas_dir: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_SCHEMAS_DIR", str(PROJECT_ROOT / "schemas")))
    )
    #: faust application id: consumer group and prefix of its internal topics.
    app_id: str = field(default_factory=lambda: _env("CLAIMS_APP_ID", "claimflow"))
    #: Tansu's first group join waits about half the session timeout (BROKER.md):
    #: 10 s keeps the first event a few seconds away instead of ~30 s.
    session_timeout_s: float = field(default_factory=lambda: _env_float("CLAIMS_SESSION_TIMEOUT_S", 10.0))
    heartbeat_interval_s: float = field(default_factory=lambda: _env_float("CLAIMS_HEARTBEAT_S", 1.0))
    #: Every this many seconds each process checks that its broker is the one it started on
    #: (same cluster id, its topics still there): engine/runtime/cluster_watch.py.
    cluster_check_s: float = field(default_factory=lambda: _env_float("CLAIMS_CLUSTER_CHECK_S", 10.0))
    #: TLS and SASL for every client (producers, consumers, admin, faust): PLAINTEXT, SSL,
    #: SASL_PLAINTEXT or SASL_SSL; SASL mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    security_protocol: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"))
    sasl_mechanism: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SASL_MECHANISM", "PLAIN"))
    sasl_username: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SASL_USERNAME", ""))
    sasl_password: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SASL_PASSWORD", ""), repr=False)
    #: PEM files: the CA that signed the brokers' certificates; a client certificate and key
    #: when the brokers ask for one (mutual TLS).
    ssl_cafile: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SSL_CA", ""))
    ssl_certfile: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SSL_CERT", ""))
    ssl_keyfile: str = field(default_factory=lambda: _env("CLAIMS_KAFKA_SSL_KEY", ""))
    #: Idempotent producers: ``auto`` asks the broker once (Kafka: yes; Tansu refuses
    #: InitProducerId), ``on`` or ``off`` say so.
    idempotence: str = field(default_factory=lambda: _env("CLAIMS_IDEMPOTENCE", "auto"))
    #: ``at_least_once`` (every consumer dedupes by id) or ``exactly_once``: the stages run on
    #: aiokafka commit their outputs and offsets in one transaction per input partition
    #: (Kafka only: Tansu's transactions leak aborted records, BROKER.md). docs/reliability.md.
    processing_guarantee: str = field(
        default_factory=lambda: _env("CLAIMS_PROCESSING_GUARANTEE", "at_least_once"))
    #: Every client's request timeout and the pause between retries (a leader election on a
    #: real cluster takes seconds; producers retry until the request timeout).
    request_timeout_ms: int = field(default_factory=lambda: _env_int("CLAIMS_KAFKA_REQUEST_TIMEOUT_MS", 30_000))
    retry_backoff_ms: int = field(default_factory=lambda: _env_int("CLAIMS_KAFKA_RETRY_BACKOFF_MS", 200))
    producer_linger_ms: int = field(default_factory=lambda: _env_int("CLAIMS_PRODUCER_LINGER_MS", 5))
    producer_max_batch_bytes: int = field(
        default_factory=lambda: _env_int("CLAIMS_PRODUCER_MAX_BATCH_BYTES", 256 * 1024)
    )

    # --- Stages ------------------------------------------------------------
    #: Events an agent takes per batch, and how long it waits to fill one.
    batch_max: int = field(default_factory=lambda: _env_int("CLAIMS_BATCH_MAX", 1000))
    batch_within_s: float = field(default_factory=lambda: _env_float("CLAIMS_BATCH_WITHIN_S", 0.05))
    fee_schedule_file: Path = field(
        default_factory=lambda: Path(
            _env("CLAIMS_FEE_SCHEDULE", str(DATA_DIR / "fee_schedule.csv"))
        )
    )
    #: Coding reference data: the shipped samples, or the full CMS quarterly files
    #: (PTP: a file or a folder of ccipra-…-f1..f4 files; MUE: the practitioner CSV).
    modifiers_file: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_MODIFIERS", str(DATA_DIR / "modifiers.csv")))
    )
    ncci_ptp_path: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_NCCI_PTP", str(DATA_DIR / "ncci_ptp_practitioner.txt")))
    )
    ncci_mue_path: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_NCCI_MUE", str(DATA_DIR / "mue_practitioner.csv")))
    )
    #: PTP edits deleted more than this many years ago are not loaded (no claim that
    #: can still be filed is that old; the full files hold three decades).
    ncci_history_years: int = field(default_factory=lambda: _env_int("CLAIMS_NCCI_HISTORY_YEARS", 3))
    icd10_demographic_edits_file: Path = field(
        default_factory=lambda: Path(
            _env("CLAIMS_ICD10_DEMOGRAPHIC_EDITS", str(DATA_DIR / "icd10_demographic_edits.yaml"))
        )
    )
    #: Share of clean encounters also sent to coders as a quality-control audit sample.
    coding_audit_rate: float = field(default_factory=lambda: _env_float("CLAIMS_CODING_AUDIT_RATE", 0.02))
    #: Master data the claim stage reads (README: data files).
    providers_file: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_PROVIDERS", str(DATA_DIR / "providers.csv")))
    )
    payers_file: Path = field(default_factory=lambda: Path(_env("CLAIMS_PAYERS", str(DATA_DIR / "payers.csv"))))
    place_of_service_file: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_PLACE_OF_SERVICE", str(DATA_DIR / "place_of_service.csv")))
    )
    #: How long an eligibility (271) answer is reused for the same member before asking again.
    eligibility_ttl_s: float = field(default_factory=lambda: _env_float("CLAIMS_ELIGIBILITY_TTL_S", 86_400.0))
    #: X12 envelope identities for `claims export 837` (ISA06/ISA08, GS02/GS03, 1000A/1000B).
    x12_sender_id: str = field(default_factory=lambda: _env("CLAIMS_X12_SENDER_ID", "CLAIMFLOW"))
    x12_receiver_id: str = field(default_factory=lambda: _env("CLAIMS_X12_RECEIVER_ID", "CLEARINGHOUSE"))
    x12_submitter_name: str = field(
        default_factory=lambda: _env("CLAIMS_X12_SUBMITTER_NAME", "CLAIMFLOW FAMILY MEDICINE GROUP")
    )
    x12_submitter_phone: str = field(default_factory=lambda: _env("CLAIMS_X12_SUBMITTER_PHONE", "3035550100"))
    x12_receiver_name: str = field(default_factory=lambda: _env("CLAIMS_X12_RECEIVER_NAME", "CLAIMFLOW CLEARINGHOUSE"))
    #: ISA15: T (test) until a clearinghouse has certified the feed, then P.
    x12_usage: str = field(default_factory=lambda: _env("CLAIMS_X12_USAGE", "T"))
    #: Days a patient has to pay a statement (due date = the payer's payment date + this).
    statement_due_days: int = field(default_factory=lambda: _env_int("CLAIMS_STATEMENT_DUE_DAYS", 30))
    denial_routing_file: Path = field(
        default_factory=lambda: Path(
            _env("CLAIMS_DENIAL_ROUTING", str(DATA_DIR / "denial_routing.yaml"))
        )
    )

    # --- The biller's web page ----------------------------------------------
    #: Where `claims run` / `claims web` serve the denial queues. Port 0: a free port.
    web_host: str = field(default_factory=lambda: _env("CLAIMS_WEB_HOST", "127.0.0.1"))
    web_port: int = field(default_factory=lambda: _env_int("CLAIMS_WEB_PORT", 8088))
    #: The token a biller enters before acting on the page. Never a default in code:
    #: empty means `claims run` / `claims web` draw a random one and print it.
    web_token: str = field(default_factory=lambda: _env("CLAIMS_WEB_TOKEN", ""))

    # --- Simulators --------------------------------------------------------
    payer_profiles_file: Path = field(
        default_factory=lambda: Path(
            _env("CLAIMS_PAYER_PROFILES", str(PROJECT_ROOT / "simulators" / "payer" / "profiles.yaml"))
        )
    )
    #: The coder simulator's consumer group (it reads the coder work queue); empty: ``coder_group_id``.
    coder_group: str = field(default_factory=lambda: _env("CLAIMS_CODER_GROUP_ID", ""))
    seed: int = field(default_factory=lambda: _env_int("CLAIMS_SEED", 1))
    #: Simulated seconds per real second for payer latency: a payment due 14–30 days
    #: after submission is released 14–30 × 86,400 / scale seconds later (default: a
    #: simulated day every 0.05 s). 0 releases every remittance at once.
    payer_time_scale: float = field(default_factory=lambda: _env_float("CLAIMS_PAYER_TIME_SCALE", 1_728_000.0))
    #: How often the payer simulator looks for payments that have come due (seconds).
    payer_release_interval_s: float = field(default_factory=lambda: _env_float("CLAIMS_PAYER_RELEASE_INTERVAL_S", 0.1))
    #: Encounters per second the EHR simulator emits in an open-ended run. Each
    #: encounter leaves ~2.3 KB in the embedded broker's RAM (measured, README):
    #: ~0.4 GB an hour at the default.
    rate: float = field(default_factory=lambda: _env_float("CLAIMS_RATE", 50.0))
    bad_rate: float = field(default_factory=lambda: _env_float("CLAIMS_BAD_RATE", 0.02))
    #: Share of encounters from patients whose coverage lapsed or whose member id was
    #: mistyped (eligibility holds them), and share with bad registration or provider
    #: data (a mistyped NPI, a missing subscriber birth date, a visit past timely filing).
    lapsed_rate: float = field(default_factory=lambda: _env_float("CLAIMS_LAPSED_RATE", 0.02))
    incomplete_rate: float = field(default_factory=lambda: _env_float("CLAIMS_INCOMPLETE_RATE", 0.02))
    #: Share of encounters the EHR sends twice (interface retries happen): exercises dedupe.
    resend_rate: float = field(default_factory=lambda: _env_float("CLAIMS_RESEND_RATE", 0.01))

    # --- Local state -------------------------------------------------------
    #: Where a running embedded broker records its address for other commands.
    state_dir: Path = field(
        default_factory=lambda: Path(_env("CLAIMS_STATE_DIR", str(Path.home() / ".claimflow")))
    )
    log_level: str = field(default_factory=lambda: _env("CLAIMS_LOG_LEVEL", "WARNING"))

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ValueError(f"CLAIMS_BROKER={self.broker!r}: expected one of {', '.join(BROKERS)}")
        if self.idempotence not in ("auto", "on", "off"):
            raise ValueError(f"CLAIMS_IDEMPOTENCE={self.idempotence!r}: expected auto, on or off")
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise ValueError(f"CLAIMS_PROCESSING_GUARANTEE={self.processing_guarantee!r}: expected one of "
                             f"{', '.join(PROCESSING_GUARANTEES)}")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"CLAIMS_KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: expected one of "
                             f"{', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"CLAIMS_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r}: expected one of "
                             f"{', '.join(SASL_MECHANISMS)}")

    @property
    def max_request_bytes(self) -> int:
        """The largest record a topic in topics.yaml takes (``max_message_bytes``): what a
        producer may send and a consumer must fetch in one partition."""
        from engine.wire.topics import declared_max_message_bytes

        return declared_max_message_bytes(self.topics_file, self.topics_env)

    @property
    def broker_state_file(self) -> Path:
        return self.state_dir / "broker.json"

    @property
    def kafka_dir(self) -> Path:
        """A `claims broker --kafka` cluster's configuration and data (kept across restarts)."""
        return self.state_dir / "kafka"

    @property
    def master_data_dir(self) -> Path:
        """The simulated patients and coverage the EHR writes and the payer reads."""
        return self.state_dir / "master"

    @property
    def payer_app_id(self) -> str:
        """The payer simulator's faust app (its own consumer group and tables)."""
        return f"{self.app_id}-payer"

    @property
    def coder_group_id(self) -> str:
        """The coder simulator's consumer group: its own per app, so two loops on one cluster
        (or two tests on one broker) never share a group across their topics."""
        return self.coder_group or f"{self.app_id}-coder-simulator"

    @property
    def worker_log_file(self) -> Path:
        return self.state_dir / "worker.log"

    @property
    def payer_log_file(self) -> Path:
        return self.state_dir / "payer.log"

    def topic(self, topic: Topic) -> str:
        """Full topic name of a logical topic (``Topic.ENCOUNTERS`` → ``claims.encounters``)."""
        return f"{self.topic_prefix}{topic}"

    def with_bootstrap(self, bootstrap_servers: str) -> Settings:
        return replace(self, bootstrap_servers=bootstrap_servers)
