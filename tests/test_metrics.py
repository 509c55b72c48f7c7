"""Prometheus metrics: a replay over 10k accounts keeps the series count small and no label carries an id."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from models.action import ActionKind, ActionMode
from models.config import WardenConfig
from models.finding import Severity
from streams import metrics
from streams.cli import main
from streams.files import JsonlFileSink, JsonlFileSource
from streams.pipeline import BatchResult, Pipeline
from streams.records import Channel, OutputRecord, SourceRecord
from streams.runner import Runner
from streams.simulator import SimulationSpec, write_simulation

MAX_SERIES = 300
BAD_LINES = [b'{"event_id": "broken", "ts": "2026-01-05T04:00:00Z"}', b"not json at all"]

BOUNDED_LABEL_VALUES = {
    "outcome": {"ok", "invalid", "committed", "aborted"},
    "detector": metrics.KNOWN_DETECTORS | {metrics.OTHER},
    "clause": metrics.KNOWN_CLAUSES | {metrics.OTHER},
    "severity": {severity.value for severity in Severity},
    "action": {kind.value for kind in ActionKind},
    "mode": {mode.value for mode in ActionMode},
    "output": {"finding", "action"},
}
BUCKET_BOUND = re.compile(r"^(\+Inf|[0-9.]+(e[+-]?[0-9]+)?)$")
LOOKS_LIKE_AN_ID = re.compile(r"acct-|key-|dev-|\d+\.\d+\.\d+\.\d+|:.*:|[0-9a-f]{8,}")


def _samples(exposition: bytes) -> Iterator[Sample]:
    for family in text_string_to_metric_families(exposition.decode()):
        yield from family.samples


def _dead_letters() -> float:
    return metrics.REGISTRY.get_sample_value("warden_dlq_records_total") or 0.0


@pytest.fixture(scope="module")
def ten_thousand_accounts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """Telemetry of over 10k accounts: 4 h of 40 accounts with every abuse scenario (so findings and actions
    of every kind are counted), then 20 min of 12k benign accounts (over 10k of them active), then two malformed lines.
    Returns the file and every account, key, device and IP id in it."""
    directory = tmp_path_factory.mktemp("metrics")
    abuse, crowd = directory / "abuse.jsonl", directory / "crowd.jsonl"
    abuse_spec = SimulationSpec(accounts=40, duration_s=4 * 3600, seed=11, scenarios_per_kind=2)
    write_simulation(abuse_spec, abuse, directory / "abuse-truth.jsonl")
    crowd_spec = SimulationSpec(
        accounts=12_000, duration_s=20 * 60, seed=5, scenarios_per_kind=0, median_rate_per_min=0.25,
        start=abuse_spec.start.replace(hour=4),
    )
    write_simulation(crowd_spec, crowd, directory / "crowd-truth.jsonl")
    combined = directory / "telemetry.jsonl"
    combined.write_bytes(abuse.read_bytes() + crowd.read_bytes() + b"\n".join(BAD_LINES) + b"\n")
    ids: set[str] = set()
    for line in crowd.read_bytes().splitlines():
        event = orjson.loads(line)
        ids.update(str(event[name]) for name in ("account_id", "api_key_id", "ip", "device_id") if event[name])
    # Heavy-tailed rates leave some of the 12k accounts silent in 20 minutes; more than 10k are active.
    assert len({identifier for identifier in ids if identifier.startswith("acct-")}) > 10_000
    return combined, ids


@pytest.fixture(scope="module")
def replay_exposition(ten_thousand_accounts: tuple[Path, set[str]], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    telemetry, _ = ten_thousand_accounts
    out = tmp_path_factory.mktemp("replay")
    before = _dead_letters()
    code = main([
        "replay", str(telemetry), "--actions-out", str(out / "a.jsonl"), "--findings-out", str(out / "f.jsonl"),
        "--metrics-out", str(out / "metrics.prom"), "--no-progress",
    ])
    assert code == 0
    assert _dead_letters() - before == len(BAD_LINES)
    return (out / "metrics.prom").read_bytes()


def test_series_stay_few_after_10k_accounts(replay_exposition: bytes) -> None:
    series = list(_samples(replay_exposition))
    assert 0 < len(series) < MAX_SERIES, f"{len(series)} series"


def test_label_values_come_from_bounded_sets(replay_exposition: bytes) -> None:
    for sample in _samples(replay_exposition):
        for label, value in sample.labels.items():
            if label == "le":
                assert BUCKET_BOUND.match(value), sample
            elif label == "partition":
                assert value.isdigit(), sample
            else:
                assert value in BOUNDED_LABEL_VALUES[label], f"{sample.name}: {label}={value!r} is not a bounded value"


def test_no_label_value_is_an_account_key_device_or_ip(
    replay_exposition: bytes, ten_thousand_accounts: tuple[Path, set[str]]
) -> None:
    _, ids = ten_thousand_accounts
    values = {value for sample in _samples(replay_exposition) for value in sample.labels.values()}
    assert not values & ids
    assert not [value for value in values if LOOKS_LIKE_AN_ID.search(value)]


def test_replay_counts_findings_actions_clauses_and_state(replay_exposition: bytes) -> None:
    samples = list(_samples(replay_exposition))
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    found_detectors = {s.labels["detector"] for s in by_name["warden_findings_total"] if s.value > 0}
    assert {"crawler", "key_sharing", "minor_safety"} <= found_detectors
    assert any(s.value > 0 for s in by_name["warden_actions_total"])
    assert {s.labels["clause"] for s in by_name["warden_finding_clauses_total"] if s.value > 0} >= {"8.2.1", "8.2.6"}
    subjects = {s.labels["detector"]: s.value for s in by_name["warden_state_subjects"]}
    assert subjects["key_sharing"] >= 10_000, "per-key state of the 10k accounts"
    assert by_name["warden_last_event_time_seconds"][0].value > 0


def test_unknown_detector_and_clause_are_counted_as_other() -> None:
    assert metrics.bounded("acct-1234", metrics.KNOWN_DETECTORS) == metrics.OTHER
    assert metrics.bounded("crawler", metrics.KNOWN_DETECTORS) == "crawler"


def test_consumer_lag_series_of_a_revoked_partition_disappear() -> None:
    metrics.record_consumer_lag({0: 5, 3: 12})
    assert metrics.REGISTRY.get_sample_value("warden_consumer_lag_records", {"partition": "3"}) == 12
    metrics.forget_partitions([3, 7])
    assert metrics.REGISTRY.get_sample_value("warden_consumer_lag_records", {"partition": "3"}) is None
    assert metrics.REGISTRY.get_sample_value("warden_consumer_lag_records", {"partition": "0"}) == 5
    metrics.forget_partitions([0])


def test_the_replay_a_restore_would_need_is_reported_per_partition(small_simulation: tuple[Path, Path]) -> None:
    def replay(partition: int) -> float | None:
        return metrics.REGISTRY.get_sample_value("warden_checkpoint_replay_records", {"partition": str(partition)})

    kafka = {"checkpoint_interval_ms": 0, "checkpoint_records_per_batch": 5}
    pipeline = Pipeline(WardenConfig.model_validate({"kafka": kafka}), frozenset(Channel))
    lines = [line for line in small_simulation[0].read_bytes().splitlines() if line.strip()][:400]
    records = [SourceRecord(line, 2, offset) for offset, line in enumerate(lines)]
    pipeline.process(records[:200])
    metrics.record_state(pipeline)
    assert replay(2) == 0, "the first checkpoint is written whole"
    pipeline.process(records[200:300])
    pipeline.process(records[300:])
    metrics.record_state(pipeline)
    # The second checkpoint (at 300) is still being written 5 records a batch: a restore replays from 200.
    assert pipeline.processors[2].checkpoint_started is not None
    assert replay(2) == 200
    metrics.forget_partitions([2])
    assert replay(2) is None


def test_event_lag_is_observed_only_with_a_wall_clock(small_simulation: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = small_simulation
    lag_count = {"output": "finding"}

    def observed() -> float:
        return metrics.REGISTRY.get_sample_value("warden_event_lag_seconds_count", lag_count) or 0.0

    def replay(wall_clock: float | None) -> int:
        source, sink = JsonlFileSource(events), JsonlFileSink({Channel.FINDINGS: tmp_path / "f.jsonl"})
        runner = Runner(WardenConfig(), source, sink, wall_clock=None if wall_clock is None else lambda: wall_clock)
        try:
            summary = runner.run_to_end()
        finally:
            source.close()
            sink.close()
        return sum(summary.findings.values())

    before = observed()
    replay(None)
    assert observed() == before
    findings = replay(2_000_000_000.0)
    assert findings > 0 and observed() - before == findings


def test_checkpoint_records_are_counted_and_nothing_else() -> None:
    def written() -> float:
        return metrics.REGISTRY.get_sample_value("warden_checkpoint_records_total") or 0.0

    before = written()
    state, action = OutputRecord(Channel.STATE, b"0|acct", b"{}"), OutputRecord(Channel.ACTIONS, b"acct", b"{}")
    metrics.record_batch(BatchResult(outputs=[state, action, state]), seconds=0.01)
    assert written() == before + 2
