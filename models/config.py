"""The one YAML config, validated at start: every threshold, the enforcement ladder, shadow mode.

A bad config stops the start with the field and the reason (see ``load_config``).
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.action import ActionKind, ActionScope
from models.finding import Severity
from models.timestamps import UtcTimestamp

PositiveSeconds = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateConfig(_Section):
    """Bounds on detector memory, so a flood of new keys or IPs cannot exhaust it."""

    max_subjects: int = Field(default=200_000, ge=1, description="Per detector and partition; LRU beyond")
    idle_ttl_s: PositiveSeconds = Field(default=2 * 86_400, description="A subject idle this long is forgotten")
    sweep_interval_s: PositiveSeconds = Field(default=600, description="Event time between expiry sweeps")


class DetectorConfig(_Section):
    enabled: bool = True
    shadow: bool = Field(default=False, description="Emit this detector's actions with mode=shadow")


class TrafficAnomalyConfig(DetectorConfig):
    """Requests, credits and auth/rate-limit errors per event-time bucket, per account and per API key,
    against each subject's own level and daily/weekly seasonality (clauses 7.1, 11.1(5))."""

    bucket_s: PositiveSeconds = 60
    # The online model (detectors/seasonal.py); ``warden score-series`` uses the same values.
    level_alpha: float = Field(default=0.02, gt=0.0, lt=1.0, description="EWMA weight of a new value in the level")
    season_alpha: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="Weight of one more day (week) in an hour-of-day (day-of-week) slot"
    )
    scale_alpha: float = Field(default=0.02, gt=0.0, lt=1.0, description="EWMA weight in the absolute-deviation scale")
    season_shrinkage: float = Field(
        default=2.0, ge=0.0, description="Periods of history at which a seasonal offset counts half"
    )
    huber_z: float = Field(default=3.0, gt=0.0, description="Residuals beyond this z teach the model only this much")
    cusum_drift: float = Field(default=1.5, ge=0.0, description="Per-value z allowance of the sustained-shift CUSUM")
    cusum_limit: float = Field(default=15.0, gt=0.0, description="CUSUM that scores like a point at alarm_z")
    alarm_z: float = Field(default=4.5, gt=0.0, description="Robust z that scores 0.5")
    score_slope: float = Field(default=1.5, gt=0.0, description="Steepness of the z → 0..1 score logistic")
    min_scale: float = Field(default=0.05, gt=0.0, description="Floor of the model's scale (asinh units)")
    count_unit: float = Field(
        default=10.0, gt=0.0, description="asinh unit of requests and errors per bucket: linear below, log above"
    )
    credits_unit: float = Field(default=10.0, gt=0.0, description="asinh unit of credits per bucket")
    series_unit_fraction: float = Field(
        default=5.0, gt=0.0, description="score-series: asinh unit as a multiple of the warm-up median |value|"
    )
    warmup_buckets: int = Field(default=20, ge=2, description="Values before a subject's own history fully counts")
    # Cold start: configured population priors, the same on every partition, so any partitioning agrees.
    prior_rate_per_bucket: float = Field(default=20.0, gt=0, description="Prior requests per bucket of a new subject")
    prior_credits_per_bucket: float = Field(default=300.0, gt=0, description="Prior credits per bucket")
    prior_errors_per_bucket: float = Field(default=2.0, gt=0, description="Prior 401/403/429 calls per bucket")
    prior_spread: float = Field(default=1.0, gt=0, description="Prior scale as a multiple of the prior value")
    # What makes a finding.
    flag_score: float = Field(default=0.3, gt=0.0, lt=1.0, description="Model score at which a bucket is flagged")
    surge_ratio: float = Field(default=3.0, gt=1.0, description="Observed / expected a volume or credit finding needs")
    high_severity_ratio: float = Field(default=10.0, gt=1.0, description="Observed / expected that makes it high")
    min_bucket_events: int = Field(default=20, ge=1, description="Never flag a bucket with fewer requests")
    min_bucket_credits: float = Field(default=200.0, ge=0, description="Never flag a bucket burning fewer credits")
    min_error_events: int = Field(default=15, ge=1, description="Never flag an error storm of fewer errors")
    min_error_share: Fraction = Field(default=0.3, description="Share of the bucket's calls that are errors")
    error_statuses: list[int] = Field(
        default_factory=lambda: [401, 403, 429], description="HTTP codes that count as auth / rate-limit errors"
    )
    max_gap_buckets: int = Field(
        default=120, ge=1, description="Empty buckets learned after an idle spell, at most (older ones are skipped)"
    )
    cooldown_s: PositiveSeconds = 3600

    @model_validator(mode="after")
    def _severity_above_flag(self) -> TrafficAnomalyConfig:
        if self.high_severity_ratio < self.surge_ratio:
            raise ValueError("high_severity_ratio must be at least surge_ratio")
        return self


class KeySharingConfig(DetectorConfig):
    """One key or account used by several parties: spread, concurrent distant use, impossible travel (3.8, 10.3).

    Addresses of mobile carriers, cloud providers and carrier-grade NAT say little about where a
    person is, so they never count as places or networks by themselves.
    """

    window_s: PositiveSeconds = Field(default=3600, description="Sliding window of the distinct counts")
    panes: int = Field(default=4, ge=1, le=24, description="Sketches per window; the window slides by window_s/panes")
    sketch_precision: int = Field(default=6, ge=4, le=12, description="HyperLogLog registers = 2**precision")
    max_networks: int = Field(default=6, ge=1, description="Distinct located /24 (v4) or /48 (v6) networks tolerated")
    max_asns: int = Field(default=3, ge=1, description="Distinct ASNs tolerated (with max_networks exceeded)")
    max_countries: int = Field(default=3, ge=1, description="Distinct countries tolerated in the window")
    max_devices: int = Field(default=6, ge=1, description="Distinct device ids tolerated across 2+ countries")
    max_user_agents: int = Field(default=6, ge=1, description="Distinct user agents tolerated across 2+ countries")
    min_travel_km: float = Field(default=500.0, gt=0, description="Hops shorter than this are never travel")
    max_speed_kmh: float = Field(default=1000.0, gt=0, description="Faster than a flight between uses is impossible")
    concurrent_window_s: PositiveSeconds = Field(default=1800, description="Window for back-and-forth hops")
    min_switches: int = Field(default=3, ge=2, description="Distant back-and-forth hops that make concurrent use")
    carrier_asns: list[int] = Field(
        default_factory=lambda: [21928, 22394, 20057, 12576, 51207, 55836, 45609, 9605, 26599],
        description="Mobile carriers: their addresses move across a country, so they are no place",
    )
    cloud_asns: list[int] = Field(
        default_factory=lambda: [16509, 14618, 15169, 396982, 8075, 14061, 24940, 16276, 63949, 13335, 20473, 31898],
        description="Cloud and CDN egress: a customer's servers, not its people",
    )
    geoip_city_db: str | None = Field(
        default=None, description="MaxMind City .mmdb (GeoIP2/GeoLite2); null = bundled DB-IP Lite"
    )
    geoip_asn_db: str | None = Field(default=None, description="MaxMind ASN .mmdb; null = bundled DB-IP Lite ASN")
    cooldown_s: PositiveSeconds = 3600


class CrawlerConfig(DetectorConfig):
    """Scraper patterns per API key over a sliding window (clause 8.2.1).

    Timing and read-only mixes alone never flag: SDK clients polling a job look just like that.
    """

    window_s: PositiveSeconds = Field(default=3600, description="Long enough to see a slow crawler's pattern")
    min_requests: int = Field(default=40, ge=5)
    max_window_events: int = Field(default=512, ge=16, description="Cap on events kept per key")
    regular_gap_cv: float = Field(default=0.25, gt=0, description="Gap CV below this counts as machine timing")
    periodic_tolerance: Fraction = Field(default=0.1, description="A gap within this share of the median gap")
    periodic_share: Fraction = Field(default=0.6, description="Share of such gaps that makes the timing periodic")
    read_ratio: Fraction = Field(default=0.9, description="Share of read/list calls with no generation")
    sequential_ratio: Fraction = Field(default=0.6, description="Share of numeric resource ids that step forward")
    max_id_step: int = Field(default=5, ge=1, description="A forward step up to this counts as enumeration")
    not_found_ratio: Fraction = 0.3
    max_user_agents: int = Field(default=3, ge=1, description="Distinct user agents on one key before rotation")
    signal_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "automation_user_agent": 0.4,
            "enumeration": 0.35,
            "rotating_user_agents": 0.25,
            "not_found": 0.2,
            "regular_timing": 0.15,
            "periodic": 0.1,
            "read_only": 0.15,
        },
        description="Weight of each signal; polling clients show timing and reads only, so those weigh least",
    )
    flag_score: float = Field(default=0.5, gt=0, description="Sum of signal weights that flags a key")
    evaluate_every: int = Field(default=8, ge=1, description="Re-score a key every N of its events")
    automation_description_words: list[str] = Field(
        default_factory=lambda: ["crawler", "scraping", "scraper", "spider", "copier", "headless", "automation"],
        description="crawler-user-agents entries tagged only http-library count as automation when their "
        "description names one of these; plain HTTP libraries (python-requests, curl, Go) never do",
    )
    cooldown_s: PositiveSeconds = 3600

    @model_validator(mode="after")
    def _known_signals(self) -> CrawlerConfig:
        unknown = set(self.signal_weights) - CRAWLER_SIGNALS
        if unknown:
            raise ValueError(f"signal_weights has unknown signals {sorted(unknown)}; known: {sorted(CRAWLER_SIGNALS)}")
        return self


CRAWLER_SIGNALS = frozenset(
    {
        "automation_user_agent",
        "enumeration",
        "rotating_user_agents",
        "not_found",
        "regular_timing",
        "periodic",
        "read_only",
    }
)


class MinorSafetyConfig(DetectorConfig):
    """Prompts that sexualise or seek to exploit minors (clause 8.2.6)."""

    hit_threshold: Fraction = Field(default=0.8, description="Score at which one prompt is a clear hit")
    near_threshold: Fraction = Field(default=0.5, description="Score of a near-threshold prompt")
    near_hits_to_escalate: int = Field(default=3, ge=2, description="Near-threshold prompts that escalate")
    near_window_s: PositiveSeconds = 7 * 86_400
    redacted_excerpt: bool = Field(default=False, description="Put a redacted excerpt in the evidence")
    learned_model: bool = Field(default=True, description="Combine the scikit-learn prompt model with the lexicon")
    model_weight: Fraction = Field(
        default=0.65,
        description="The model's probability is scaled by this: below hit_threshold, so the model alone "
        "can make a prompt near-threshold (escalating on repeats) but never a clear hit",
    )
    score_cache_size: int = Field(
        default=16_384, ge=0, description="Distinct prompt texts whose scores are remembered (0: no cache)"
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> MinorSafetyConfig:
        if self.near_threshold >= self.hit_threshold:
            raise ValueError(f"near_threshold {self.near_threshold} must be below hit_threshold {self.hit_threshold}")
        if self.model_weight >= self.hit_threshold:
            raise ValueError(
                f"model_weight {self.model_weight} must be below hit_threshold {self.hit_threshold}: "
                "the model alone must never make a clear hit"
            )
        return self


class DetectorsConfig(_Section):
    traffic_anomaly: TrafficAnomalyConfig = TrafficAnomalyConfig()
    key_sharing: KeySharingConfig = KeySharingConfig()
    crawler: CrawlerConfig = CrawlerConfig()
    minor_safety: MinorSafetyConfig = MinorSafetyConfig()

    def by_name(self) -> dict[str, DetectorConfig]:
        return {name: getattr(self, name) for name in type(self).model_fields}


class LadderStep(_Section):
    """One rung: a measure of clause 4.2, on the account or on the finding's API key, for a duration."""

    action: ActionKind
    scope: ActionScope = Field(default=ActionScope.ACCOUNT, description="api_key falls back to account if unknown")
    duration_s: PositiveSeconds | None = None
    requires_review: bool = Field(default=False, description="A person confirms before it is final (always: terminate)")

    @model_validator(mode="after")
    def _duration_matches_action(self) -> LadderStep:
        if self.action is ActionKind.TERMINATE and self.duration_s is not None:
            raise ValueError("terminate is permanent: leave duration_s empty")
        if self.action is not ActionKind.TERMINATE and self.duration_s is None:
            raise ValueError(f"{self.action.value} needs a duration_s")
        return self


class Ladder(_Section):
    """One detector's graduated measures.

    A finding enters at the step its severity names (1-based; null: no action), and climbs one
    step for each earlier action of this ladder on the account within ``lookback_s``.
    """

    steps: list[LadderStep] = Field(min_length=1)
    start_at: dict[Severity, int | None] = Field(description="Severity → first step (1-based); null: no action")
    lookback_s: PositiveSeconds = Field(default=30 * 86_400, description="Earlier offences this recent escalate")
    zero_tolerance: list[Severity] = Field(
        default_factory=list,
        description="Severities enforced at once: never shadow, never allowlisted, reviewed, evidence preserved",
    )
    requires_review: bool = Field(default=False, description="Every action of this ladder goes to a reviewer")
    preserve_evidence: bool = Field(default=False, description="Every action flags its evidence for preservation")

    @model_validator(mode="after")
    def _consistent(self) -> Ladder:
        missing = [s.value for s in Severity if s not in self.start_at]
        if missing:
            raise ValueError(f"start_at lacks {', '.join(missing)} (use null for no action)")
        for severity, step in self.start_at.items():
            if step is not None and not 1 <= step <= len(self.steps):
                raise ValueError(f"start_at.{severity.value} is {step}: steps are numbered 1..{len(self.steps)}")
        for number, (lower, upper) in enumerate(zip(self.steps, self.steps[1:], strict=False), start=2):
            if upper.action.strength < lower.action.strength:
                raise ValueError(f"step {number} ({upper.action.value}) is weaker than the step before it")
        if self.zero_tolerance and not (self.requires_review and self.preserve_evidence):
            raise ValueError("a zero_tolerance ladder needs requires_review and preserve_evidence")
        return self

    def step_for(self, severity: Severity, earlier_offences: int) -> int | None:
        """The 0-based step for a finding of this severity after this many earlier offences."""
        start = self.start_at[severity]
        return None if start is None else min(start - 1 + earlier_offences, len(self.steps) - 1)


def _default_ladders() -> dict[str, Ladder]:
    by_severity = {Severity.LOW: None, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
    hour, day = 3600, 86_400
    return {
        "traffic_anomaly": Ladder(
            steps=[
                LadderStep(action=ActionKind.RESTRICT, duration_s=hour),
                LadderStep(action=ActionKind.RESTRICT, duration_s=6 * hour),
                LadderStep(action=ActionKind.RESTRICT, duration_s=day),
            ],
            start_at=by_severity,
        ),
        "key_sharing": Ladder(
            steps=[
                LadderStep(action=ActionKind.RESTRICT, scope=ActionScope.API_KEY, duration_s=day),
                LadderStep(action=ActionKind.SUSPEND, scope=ActionScope.API_KEY, duration_s=7 * day),
                LadderStep(action=ActionKind.SUSPEND, duration_s=7 * day, requires_review=True),
            ],
            start_at=by_severity,
        ),
        "crawler": Ladder(
            steps=[
                LadderStep(action=ActionKind.RESTRICT, scope=ActionScope.API_KEY, duration_s=hour),
                LadderStep(action=ActionKind.SUSPEND, scope=ActionScope.API_KEY, duration_s=day),
                LadderStep(action=ActionKind.TERMINATE, requires_review=True),
            ],
            start_at={**by_severity, Severity.CRITICAL: 2},
        ),
        "minor_safety": Ladder(
            steps=[LadderStep(action=ActionKind.SUSPEND, duration_s=30 * day, requires_review=True)],
            start_at={Severity.LOW: None, Severity.MEDIUM: None, Severity.HIGH: 1, Severity.CRITICAL: 1},
            zero_tolerance=[Severity.CRITICAL],
            requires_review=True,
            preserve_evidence=True,
        ),
    }


class AllowlistKind(StrEnum):
    ACCOUNT = "account"
    API_KEY = "api_key"
    CIDR = "cidr"
    USER_AGENT = "user_agent"


class AllowlistEntry(_Section):
    """A verified partner: its findings lead to no action while the entry is in force (zero tolerance excepted).

    ``cidr`` and ``user_agent`` entries match the event that completed the finding; ``user_agent``
    is a case-insensitive regular expression searched in the user agent.
    """

    kind: AllowlistKind
    value: str = Field(min_length=1)
    author: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    expires_at: UtcTimestamp | None = Field(default=None, description="Event time the entry lapses; null: never")

    @model_validator(mode="after")
    def _value_parses(self) -> AllowlistEntry:
        if self.kind is AllowlistKind.CIDR:
            try:
                ipaddress.ip_network(self.value)
            except ValueError as error:
                raise ValueError(f"cidr {self.value!r} is not a network: {error}") from None
        if self.kind is AllowlistKind.USER_AGENT:
            try:
                re.compile(self.value)
            except re.error as error:
                raise ValueError(f"user_agent pattern {self.value!r} is not a regular expression: {error}") from None
        return self


class EnforcementConfig(_Section):
    """Findings → actions: a ladder per detector, allowlisted partners. A detector without a ladder only reports."""

    ladders: dict[str, Ladder] = Field(default_factory=_default_ladders)
    allowlist: list[AllowlistEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_detectors(self) -> EnforcementConfig:
        unknown = sorted(set(self.ladders) - set(DetectorsConfig.model_fields))
        if unknown:
            raise ValueError(f"ladders for unknown detectors {unknown}; known: {sorted(DetectorsConfig.model_fields)}")
        return self


class TopicsConfig(_Section):
    telemetry: str = "api.usage.v1"
    findings: str = "warden.findings.v1"
    actions: str = "enforcement.actions.v1"
    dead_letters: str = "warden.dlq.v1"
    state: str = "warden.state.v5"
    reversals: str = "enforcement.reversals.v1"


class KafkaSecurityConfig(_Section):
    """Client security, under kafka-python's own option names; passed to every client unchanged."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = Field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = Field(default=None, repr=False)
    ssl_crlfile: str | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSecurityConfig:
        if self.security_protocol.startswith("SASL") and (
            self.sasl_mechanism is None or self.sasl_plain_username is None or self.sasl_plain_password is None
        ):
            raise ValueError(
                f"{self.security_protocol} needs sasl_mechanism, sasl_plain_username and sasl_plain_password"
            )
        return self

    def client_options(self) -> dict[str, Any]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class KafkaConfig(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "warden"
    topics: TopicsConfig = TopicsConfig()
    partitions: int = Field(default=4, ge=1, description="Partitions of topics Warden creates")
    replication_factor: int = Field(default=1, ge=1)
    transactions: bool = Field(default=True, description="Exactly-once; false gives at-least-once")
    transactional_id_prefix: str = "warden"
    transaction_timeout_ms: int = Field(default=30_000, ge=1000, description="A dead worker's open batch aborts after")
    poll_timeout_ms: int = Field(default=500, ge=1)
    fetch_catch_up_ms: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="After a batch that took longer than this, the next poll also takes what arrived while it "
        "was processed, waiting up to this long for it (kafka-python fetches ahead when a poll returns, so "
        "without this every record waits one extra batch); the broker answers at once when anything arrived, "
        "so the wait is spent only when the topic went quiet. 0 turns it off",
    )
    max_poll_records: int = Field(default=2000, ge=1)
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="How long the broker may hold a fetch with nothing new. A consumer has one fetch open per "
        "broker, for the partitions with nothing buffered, so while a partition that has caught up waits out "
        "this hold, the lagging partitions buffered beside it are not fetched again: Kafka's 500 ms stalled a "
        "worker draining a backlog for up to half a second at a time",
    )
    fetch_max_bytes: int = Field(default=52_428_800, ge=1024)
    max_partition_fetch_bytes: int = Field(default=4_194_304, ge=1024)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    linger_ms: int = Field(
        default=50, ge=0, description="Producer wait to fill a request; a commit sends what is waiting at once"
    )
    batch_size: int = Field(default=1_048_576, ge=1024, description="Producer batch bytes")
    retry_backoff_ms: int = Field(
        default=10,
        ge=1,
        description="Producer wait before a retry. Each batch's commit starts with the broker still writing the "
        "previous transaction's markers, and it answers 'concurrent transactions' until done: kafka-python's "
        "default 100 ms wait added ~90 ms to every batch (measured: offsets into a transaction, median "
        "114 ms at 100, 23 ms at 10)",
    )
    max_record_bytes: int = Field(default=2_097_152, ge=1024, description="Largest record Warden produces (DLQ)")
    checkpoint_interval_ms: int = Field(
        default=1000, ge=0, le=600_000,
        description="How often a partition's changed state goes to the changelog (a checkpoint, written in the "
        "transactions of the batches that follow); a restore replays the input from the last complete "
        "checkpoint to the committed offset without emitting anything again. A subject touched by many batches "
        "in between is written once: at a few hundred accounts, writing every batch cost more than the "
        "detectors (one record per changed subject, ~50 µs a send in kafka-python). 0: a new checkpoint begins "
        "as soon as the last is written",
    )
    checkpoint_max_pending: int = Field(
        default=500, ge=1,
        description="A checkpoint begins sooner once this many subjects of a partition have changed since the "
        "last one began: with many distinct subjects waiting, waiting longer saves little, and the restore's "
        "replay grows",
    )
    checkpoint_records_per_batch: int = Field(
        default=250, ge=1,
        description="Most changelog records of checkpoints under way written with a full batch (pipeline.batch_size "
        "records); a smaller batch writes its share in proportion, at least checkpoint_min_records_per_batch. A "
        "checkpoint is written over as many batches as it needs (what changes meanwhile is copied first), so that "
        "no batch carries a whole one: at 10,000 accounts that made 357 ms turns. ~0.1 ms a record with kafka-python",
    )
    checkpoint_min_records_per_batch: int = Field(
        default=60, ge=1,
        description="The least a batch writes of checkpoints under way (or checkpoint_records_per_batch, if lower), "
        "however few its records. A budget per batch rather than per record made the changelog's work grow with "
        "the batches a second, not the events: at half the maximum rate, batches are small and many, and at "
        "10,000 accounts the changelog then took ~14% of the worker. Lower means less work a batch and a longer "
        "replay after a crash (warden_checkpoint_replay_records)",
    )
    checkpoint_max_copy_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0,
        description="Most bytes of state copied for checkpoints under way (subjects changed before their turn "
        "to be written) that a worker holds: past it, a batch writes more than checkpoint_records_per_batch. "
        "Offline at 10,000 accounts with checkpoints back to back, they peaked at 34 MB (71,000 subjects)",
    )
    security: KafkaSecurityConfig = KafkaSecurityConfig()

    def fetch_options(self) -> dict[str, int]:
        """How every consumer that reads in bulk fetches (the input's and the changelog's), as kafka-python
        options."""
        return {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "fetch_max_bytes": self.fetch_max_bytes,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
        }


class ServerConfig(_Section):
    """The HTTP endpoint that serves /healthz and /metrics while ``warden run`` works."""

    host: str = "0.0.0.0"
    port: int = Field(default=9308, ge=0, le=65535, description="0 picks a free port")
    stall_after_s: int = Field(default=120, ge=1, description="/healthz fails if no loop turn for this long")


class PipelineConfig(_Section):
    batch_size: int = Field(
        default=10_000, ge=1, le=100_000,
        description="Most records per batch / commit point; a worker that keeps up takes what has arrived",
    )
    gc_young_threshold: int = Field(
        default=100_000, ge=0, le=10_000_000,
        description="`warden run` and `warden replay` set Python's youngest-generation collection threshold to "
        "this (Python's default is 700; 0 keeps it). A batch's records, events and outputs live until it "
        "commits: under a threshold smaller than a batch's tracked objects (~4-6 an event) they are promoted "
        "to the older generations during the batch, and every few batches that triggers a full collection, "
        "which walks all detector state (measured ~300 ms at 10,000 accounts). 100,000 holds a batch of the "
        "default 10,000 records: a replay of 139,005 events ran no collection at all, 12% faster than at 20,000",
    )


class WardenConfig(_Section):
    policy_version: str = Field(default="default-1", min_length=1)
    pipeline: PipelineConfig = PipelineConfig()
    state: StateConfig = StateConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    enforcement: EnforcementConfig = EnforcementConfig()
    kafka: KafkaConfig = KafkaConfig()
    server: ServerConfig = ServerConfig()


class ConfigError(ValueError):
    """A config that must not start: the message names the field and the reason."""


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """``field.path: reason`` for each problem, one per line."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{prefix}{location}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> WardenConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (root): expected a mapping, got {type(data).__name__}")
    try:
        return WardenConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: invalid config\n{format_validation_error(error, '  ')}") from None


def load_config(path: str | Path | None) -> WardenConfig:
    """Read and validate a YAML config; ``None`` gives the defaults."""
    if path is None:
        return WardenConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, str(path))
