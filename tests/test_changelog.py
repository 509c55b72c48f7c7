"""The state changelog, without Kafka: what a compacted changelog keeps rebuilds a partition's state exactly."""

from __future__ import annotations

import orjson

from models.config import WardenConfig
from models.telemetry import TelemetryEvent
from streams.pipeline import CHANGELOG_BATCH_END, PartitionProcessor
from streams.records import Channel


def _state(processor: PartitionProcessor) -> bytes:
    detectors = {detector.name: detector.snapshot() for detector in processor.detectors}
    return orjson.dumps({"detectors": detectors, "policy": processor.policy.snapshot()}, option=orjson.OPT_SORT_KEYS)


def test_the_compacted_changelog_rebuilds_every_store(small_events: list[TelemetryEvent]) -> None:
    # Tight caps, so that evictions (tombstones and subjects leaving some stores) are part of the run.
    config = WardenConfig.model_validate({"state": {"max_subjects": 40}})
    source = PartitionProcessor(0, config, changelog=True)
    compacted: dict[bytes, bytes | None] = {}
    records_written = 0
    for start in range(0, len(small_events), 500):
        batch = small_events[start : start + 500]
        source.process(batch)
        for record in source.state_changes(batch_end=start + len(batch)):
            assert record.channel is Channel.STATE and record.partition == 0
            assert dict(record.headers)[CHANGELOG_BATCH_END] == str(start + len(batch)).encode()
            compacted[record.key] = record.value  # compaction keeps each key's latest record
            records_written += 1
    assert records_written > len(compacted), "no subject was ever written twice: the test proves little"
    assert None in compacted.values(), "no tombstone: eviction was not exercised"

    replica = PartitionProcessor(0, config, changelog=True)
    for key, value in compacted.items():
        replica.apply_state_record(key, value)
    assert _state(replica) == _state(source)


def test_one_record_holds_a_key_in_every_detector_that_tracks_it(small_events: list[TelemetryEvent]) -> None:
    processor = PartitionProcessor(0, WardenConfig(), changelog=True)
    processor.process(small_events[:200])
    records = {record.key: record.value for record in processor.state_changes(batch_end=200)}
    event = small_events[0]
    value = records[f"0|{event.key_subject}".encode()]
    assert value is not None
    assert {"traffic_anomaly/keys", "key_sharing/keys", "crawler/keys"} <= set(orjson.loads(value))
    stores = [store for detector in processor.detectors for store in detector.stores().values()]
    held = {subject for store in [*stores, *processor.policy.stores().values()] for subject, _ in store.items()}
    assert len(records) == len(held), "one record per subject, however many stores hold it"
