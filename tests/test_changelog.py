"""The state changelog, without Kafka: what a compacted changelog keeps rebuilds a partition's state exactly,
and a restore from a checkpoint older than the committed offset replays the input in between silently."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import streams.pipeline
from models.config import WardenConfig
from models.telemetry import TelemetryEvent
from streams.pipeline import (
    CHANGELOG_BATCH_END,
    CHECKPOINT_DUE,
    CHECKPOINT_FULL,
    CHECKPOINT_MUST,
    CHECKPOINT_SUBJECT,
    PartitionProcessor,
    Pipeline,
)
from streams.records import Channel, OutputRecord, SourceRecord

MARKER = f"0|{CHECKPOINT_SUBJECT}".encode()


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
        source.position = start + len(batch)
        for record in source.checkpoint(now=0.0):
            assert record.channel is Channel.STATE and record.partition == 0
            assert dict(record.headers)[CHANGELOG_BATCH_END] == str(start + len(batch)).encode()
            compacted[record.key] = record.value  # compaction keeps each key's latest record
            records_written += 1
    assert records_written > len(compacted), "no subject was ever written twice: the test proves little"
    assert None in compacted.values(), "no tombstone: eviction was not exercised"
    assert compacted[MARKER] == b"{}", "the checkpoint marker is a record of its own, never a tombstone"

    replica = PartitionProcessor(0, config, changelog=True)
    for key, value in compacted.items():
        replica.apply_state_record(key, value)
    assert _state(replica) == _state(source)


def test_one_record_holds_a_key_in_every_detector_that_tracks_it(small_events: list[TelemetryEvent]) -> None:
    processor = PartitionProcessor(0, WardenConfig(), changelog=True)
    processor.process(small_events[:200])
    records = {record.key: record.value for record in processor.checkpoint(now=0.0)}
    event = small_events[0]
    value = records.pop(f"0|{event.key_subject}".encode())
    assert value is not None
    assert {"traffic_anomaly/keys", "key_sharing/keys", "crawler/keys"} <= set(orjson.loads(value))
    stores = [store for detector in processor.detectors for store in detector.stores().values()]
    held = {subject for store in [*stores, *processor.policy.stores().values()] for subject, _ in store.items()}
    assert records.pop(MARKER) == b"{}"
    assert len(records) + 1 == len(held), "one record per subject, however many stores hold it"


def test_a_checkpoint_waits_for_the_interval_unless_many_subjects_changed(
    small_events: list[TelemetryEvent],
) -> None:
    config = WardenConfig.model_validate({"kafka": {"checkpoint_interval_ms": 1000, "checkpoint_max_pending": 10**6}})
    processor = PartitionProcessor(0, config, changelog=True)
    assert processor.checkpoint_urgency(now=1000.0) == (CHECKPOINT_MUST, 0.0), "commits need a first checkpoint"
    processor.process(small_events[:100])
    processor.position = 100
    processor.checkpoint(now=1000.0)
    processor.process(small_events[100:200])
    processor.position = 200
    assert processor.checkpoint_urgency(now=1000.9) is None
    assert processor.checkpoint_urgency(now=1001.5) == (CHECKPOINT_DUE, pytest.approx(0.5))
    pending = processor.checkpoint(now=1001.5)
    assert len(pending) > 2, "the subjects changed by the second batch, and the marker"
    assert processor.checkpoint_urgency(now=5000.0) is None, "the state has not moved since"

    eager = PartitionProcessor(0, config.model_copy(update={"kafka": config.kafka.model_copy(
        update={"checkpoint_max_pending": 5})}), changelog=True)
    eager.process(small_events[:100])
    eager.position = 100
    eager.checkpoint(now=0.0)
    eager.process(small_events[100:200])
    eager.position = 200
    pressing = eager.checkpoint_urgency(now=0.0)
    assert pressing is not None and pressing[0] == CHECKPOINT_FULL and pressing[1] >= 5, "the cap passed: due now"


def test_partitions_due_together_checkpoint_one_per_batch_longest_waiting_first(
    small_simulation: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(streams.pipeline.time, "monotonic", lambda: clock[0])
    config = WardenConfig.model_validate({"kafka": {"checkpoint_interval_ms": 1000, "checkpoint_max_pending": 10**6}})
    pipeline = Pipeline(config, frozenset(Channel))
    lines = [line for line in small_simulation[0].read_bytes().splitlines() if line.strip()]
    records = [SourceRecord(line, offset % 3, offset) for offset, line in enumerate(lines)]
    checkpointed = []
    for batch, seconds in enumerate([0.0, 2.0, 0.1, 0.1, 0.1]):
        clock[0] += seconds
        result = pipeline.process(records[batch * 300 : (batch + 1) * 300])
        checkpointed.append(sorted({output.partition for output in result.outputs if output.channel is Channel.STATE}))
    # The first batch checkpoints every partition at once (none may commit without one); 2 s later all three are
    # due, and they take turns: the longest waiting first (on a tie, the lowest partition), then nothing is due.
    assert checkpointed == [[0, 1, 2], [0], [1], [2], []]


def test_partitions_full_at_once_also_take_turns(small_simulation: tuple[Path, Path]) -> None:
    config = WardenConfig.model_validate({"kafka": {"checkpoint_interval_ms": 600_000, "checkpoint_max_pending": 5}})
    pipeline = Pipeline(config, frozenset(Channel))
    lines = [line for line in small_simulation[0].read_bytes().splitlines() if line.strip()]
    records = [SourceRecord(line, offset % 3, offset) for offset, line in enumerate(lines[:1500])]
    written = []
    for start in range(0, len(records), 300):
        result = pipeline.process(records[start : start + 300])
        written.append(sorted({output.partition for output in result.outputs if output.channel is Channel.STATE}))
    assert written[0] == [0, 1, 2], "first checkpoints cannot wait"
    assert all(len(partitions) == 1 for partitions in written[1:]), "every partition is past the cap: one a batch"
    assert {partition for partitions in written[1:] for partition in partitions} == {0, 1, 2}, "they take turns"


def test_a_clean_stop_checkpoints_every_partition_that_moved_due_or_not(small_simulation: tuple[Path, Path]) -> None:
    rarely = {"checkpoint_interval_ms": 600_000, "checkpoint_max_pending": 10**6}
    config = WardenConfig.model_validate({"kafka": rarely})
    pipeline = Pipeline(config, frozenset(Channel))
    lines = [line for line in small_simulation[0].read_bytes().splitlines() if line.strip()]
    records = [SourceRecord(line, offset % 2, offset) for offset, line in enumerate(lines[:600])]
    pipeline.process(records[:300])  # the first checkpoints
    assert not _outputs(pipeline.process(records[300:]).outputs, Channel.STATE), "not due for ten minutes"
    final = pipeline.checkpoint_all()
    markers = {record.partition: dict(record.headers)[CHANGELOG_BATCH_END] for record in final
               if record.key is not None and record.key.endswith(b"|")}
    assert markers == {0: b"599", 1: b"600"}, "each partition's marker at the position it reached"
    assert pipeline.checkpoint_all() == [], "nothing moved since"


def _outputs(outputs: list[OutputRecord], channel: Channel) -> list[bytes | None]:
    return [output.value for output in outputs if output.channel is channel]


@pytest.mark.parametrize("crash_at", [0.2, 0.5, 0.8])
def test_a_restore_replays_from_its_checkpoint_and_emits_only_what_was_never_committed(
    small_simulation: tuple[Path, Path], crash_at: float
) -> None:
    # Checkpoints by count only (the interval never passes within the test), so most batches write none.
    config = WardenConfig.model_validate({"kafka": {"checkpoint_interval_ms": 600_000, "checkpoint_max_pending": 80}})
    lines = [line for line in small_simulation[0].read_bytes().splitlines() if line.strip()]
    records = [SourceRecord(line, 0, offset) for offset, line in enumerate(lines)]
    channels = frozenset(Channel)

    # The uninterrupted run, batch by batch; the crash comes after a batch that wrote no checkpoint.
    straight = Pipeline(config, channels)
    results = [straight.process(records[start : start + 100]) for start in range(0, len(records), 100)]
    written = [n for n, result in enumerate(results) if _outputs(result.outputs, Channel.STATE)]
    quiet = [n for n in range(written[0], len(results)) if n not in written]
    assert len(written) > 5 and len(quiet) > 20, "many batches should wait for a checkpoint, not all"
    crash = quiet[int(crash_at * len(quiet))]
    changelog: dict[bytes, tuple[bytes | None, int]] = {}  # what compaction keeps, up to the crash
    for result in results[: crash + 1]:
        for output in result.outputs:
            if output.channel is Channel.STATE and output.key is not None:
                changelog[output.key] = (output.value, int(dict(output.headers)[CHANGELOG_BATCH_END]))
    committed = results[crash].positions[0]
    checkpoint = changelog[MARKER][1]
    assert checkpoint < committed
    after_crash = [output for result in results[crash + 1 :] for output in result.outputs]

    # The restored run: state as of the checkpoint, input from there, in batches cut differently.
    restored = Pipeline(config, channels)
    processor = restored.reset_partition(0)
    for key, (value, _) in changelog.items():
        processor.apply_state_record(key, value)
    processor.position, processor.replay_until = checkpoint, committed
    emitted: list[OutputRecord] = []
    for start in range(checkpoint, len(records), 333):
        result = restored.process(records[start : start + 333])
        assert result.positions[0] >= committed, "a commit below the committed offset would emit outputs again"
        emitted.extend(result.outputs)
    assert processor.replay_until == 0
    for channel in (Channel.FINDINGS, Channel.ACTIONS, Channel.DEAD_LETTERS):
        assert _outputs(emitted, channel) == _outputs(after_crash, channel)
    assert _state(processor) == _state(straight.processors[0])
