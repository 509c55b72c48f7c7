"""Prometheus metrics. Labels take values from bounded sets only (detector, severity, action, mode,
outcome, partition number), never account, key or IP ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.pipeline import BatchResult

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter("warden_events_consumed_total", "Telemetry records consumed", ["outcome"], registry=REGISTRY)
FINDINGS = Counter("warden_findings_total", "Findings emitted", ["detector", "severity"], registry=REGISTRY)
ACTIONS = Counter(
    "warden_actions_total", "Enforcement actions emitted", ["action", "mode", "detector"], registry=REGISTRY
)
DEAD_LETTERS = Counter("warden_dlq_records_total", "Records sent to the dead-letter output", registry=REGISTRY)
TRANSACTIONS = Counter("warden_transactions_total", "Batch commit points", ["outcome"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "warden_batch_processing_seconds", "Time to process and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
STATE_SUBJECTS = Gauge("warden_state_subjects", "Subjects held in detector state", ["detector"], registry=REGISTRY)
ASSIGNED_PARTITIONS = Gauge("warden_assigned_partitions", "Input partitions owned by this worker", registry=REGISTRY)
RESTORED_STATE_RECORDS = Counter(
    "warden_state_restored_records_total", "Changelog records replayed on partition assignment", registry=REGISTRY
)
LAST_BATCH_EVENT_TIME = Gauge(
    "warden_last_event_time_seconds", "Event time of the newest processed event", registry=REGISTRY
)


def record_batch(result: BatchResult, seconds: float) -> None:
    EVENTS.labels("ok").inc(result.events)
    EVENTS.labels("invalid").inc(result.invalid)
    DEAD_LETTERS.inc(result.invalid)
    for finding in result.findings:
        FINDINGS.labels(finding.detector, finding.severity.value).inc()
    for action in result.actions:
        ACTIONS.labels(action.action.value, action.mode.value, action.reasons[0].detector).inc()
    TRANSACTIONS.labels("committed").inc()
    BATCH_SECONDS.observe(seconds)
