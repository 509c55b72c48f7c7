"""Prometheus metrics, for ``warden run`` (scraped from /metrics) and ``warden replay`` (written at the end).

Labels take values from bounded sets only — detector, severity, clause, action, mode, outcome, partition
number — never account, key or IP ids. Detector and clause values are checked against the registered
detectors, so a detector that invents a label value cannot grow the series count: it is counted as
``other``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from detectors.registry import REGISTRY as DETECTOR_REGISTRY
from streams.pipeline import BatchResult, Pipeline
from streams.records import Channel

REGISTRY = CollectorRegistry(auto_describe=True)

OTHER = "other"
"""The label value for anything outside a bounded set."""

KNOWN_DETECTORS = frozenset(DETECTOR_REGISTRY)
KNOWN_CLAUSES = frozenset(clause for detector in DETECTOR_REGISTRY.values() for clause in detector.clauses)

EVENTS = Counter("warden_events_consumed_total", "Telemetry records consumed", ["outcome"], registry=REGISTRY)
FINDINGS = Counter("warden_findings_total", "Findings emitted", ["detector", "severity"], registry=REGISTRY)
FINDING_CLAUSES = Counter(
    "warden_finding_clauses_total", "Terms clauses cited by emitted findings (one count per clause)",
    ["detector", "clause"], registry=REGISTRY,
)
ACTIONS = Counter(
    "warden_actions_total", "Enforcement actions emitted; detector is the first reason's",
    ["action", "mode", "detector"], registry=REGISTRY,
)
DEAD_LETTERS = Counter("warden_dlq_records_total", "Records sent to the dead-letter output", registry=REGISTRY)
TRANSACTIONS = Counter("warden_transactions_total", "Batch commit points", ["outcome"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "warden_batch_processing_seconds", "Time to process and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
EVENT_LAG = Histogram(
    "warden_event_lag_seconds",
    "Wall clock minus the event time of each finding and action when emitted (warden run only: a replay "
    "reads old events, so it observes nothing here)",
    ["output"], buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "warden_consumer_lag_records", "Records between the consumer position and the partition's high watermark",
    ["partition"], registry=REGISTRY,
)
STATE_SUBJECTS = Gauge("warden_state_subjects", "Subjects held in detector state", ["detector"], registry=REGISTRY)
ASSIGNED_PARTITIONS = Gauge("warden_assigned_partitions", "Input partitions owned by this worker", registry=REGISTRY)
RESTORED_STATE_RECORDS = Counter(
    "warden_state_restored_records_total", "Changelog records replayed on partition assignment", registry=REGISTRY
)
REPLAYED_INPUT_RECORDS = Counter(
    "warden_state_replayed_input_records_total",
    "Input records processed again, without emitting, to bring restored state from its checkpoint to the "
    "committed offset", registry=REGISTRY,
)
CHECKPOINT_RECORDS = Counter(
    "warden_checkpoint_records_total", "State records written to the changelog at checkpoints (markers included)",
    registry=REGISTRY,
)
CHECKPOINT_REPLAY = Gauge(
    "warden_checkpoint_replay_records",
    "Input records a restore of the partition would process again: from its last complete checkpoint to the "
    "position its state has reached", ["partition"], registry=REGISTRY,
)
LAST_BATCH_EVENT_TIME = Gauge(
    "warden_last_event_time_seconds", "Event time of the newest processed event (unix seconds)", registry=REGISTRY
)


def bounded(value: str, known: frozenset[str]) -> str:
    return value if value in known else OTHER


def record_batch(result: BatchResult, seconds: float, now_s: float | None = None) -> None:
    """Count one committed batch. ``now_s`` is the wall clock for the event-lag histogram (run only)."""
    EVENTS.labels("ok").inc(result.events)
    EVENTS.labels("invalid").inc(result.invalid)
    DEAD_LETTERS.inc(result.invalid)
    for finding in result.findings:
        detector = bounded(finding.detector, KNOWN_DETECTORS)
        FINDINGS.labels(detector, finding.severity.value).inc()
        for clause in finding.clauses:
            FINDING_CLAUSES.labels(detector, bounded(clause, KNOWN_CLAUSES)).inc()
        if now_s is not None:
            EVENT_LAG.labels("finding").observe(now_s - finding.ts.timestamp())
    for action in result.actions:
        detector = bounded(action.reasons[0].detector, KNOWN_DETECTORS)
        ACTIONS.labels(action.action.value, action.mode.value, detector).inc()
        if now_s is not None:
            EVENT_LAG.labels("action").observe(now_s - action.ts.timestamp())
    CHECKPOINT_RECORDS.inc(sum(output.channel is Channel.STATE for output in result.outputs))
    TRANSACTIONS.labels("committed").inc()
    BATCH_SECONDS.observe(seconds)


def record_state(pipeline: Pipeline) -> None:
    """Subjects held per detector (summed over partitions) and the newest event time processed."""
    counts: dict[str, int] = {}
    watermark_ms = 0
    for partition, processor in pipeline.processors.items():
        watermark_ms = max(watermark_ms, processor.watermark_ms)
        if (distance := processor.replay_distance) is not None:
            CHECKPOINT_REPLAY.labels(str(partition)).set(distance)
        for name, count in processor.subject_counts().items():
            counts[name] = counts.get(name, 0) + count
    for name, count in counts.items():
        STATE_SUBJECTS.labels(bounded(name, KNOWN_DETECTORS)).set(count)
    if watermark_ms:
        LAST_BATCH_EVENT_TIME.set(watermark_ms / 1000)


def record_consumer_lag(lags: Mapping[int, int]) -> None:
    for partition, lag in lags.items():
        CONSUMER_LAG.labels(str(partition)).set(lag)


def forget_partitions(partitions: Iterable[int]) -> None:
    """Drop the per-partition series of partitions this worker no longer owns, so they do not report stale
    figures."""
    for partition in partitions:
        for gauge in (CONSUMER_LAG, CHECKPOINT_REPLAY):
            with contextlib.suppress(KeyError):
                gauge.remove(str(partition))


def exposition() -> bytes:
    """The Prometheus text exposition of every Warden metric."""
    return generate_latest(REGISTRY)


def write_exposition(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(exposition())
