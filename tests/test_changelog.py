"""The state changelog, without Kafka: what a compacted changelog keeps rebuilds a partition's state exactly,
checkpoints are written a share per batch while the state goes on changing, a crash at any batch restores
the state of the last complete checkpoint, and a restore from a checkpoint older than the committed offset
replays the input in between silently."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

import streams.pipeline
from models.config import WardenConfig
from models.telemetry import TelemetryEvent
from streams.changelog import CHANGELOG_BATCH_END, MARKER_VALUE, Changelog, marker_key, subject_key
from streams.pipeline import PartitionProcessor, Pipeline
from streams.records import Channel, OutputRecord, SourceRecord

MARKER = b"0|"


def _state(processor: PartitionProcessor) -> bytes:
    detectors = {detector.name: detector.snapshot() for detector in processor.detectors}
    return orjson.dumps({"detectors": detectors, "policy": processor.policy.snapshot()}, option=orjson.OPT_SORT_KEYS)


def _compact(outputs: list[OutputRecord], committed: int | None = None) -> dict[bytes, tuple[int, bytes | None]]:
    """What a compacted changelog keeps of ``outputs``: each key's latest record, as the restore reads it."""
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    for output in outputs:
        if output.channel is Channel.STATE and output.key is not None:
            batch_end = int(dict(output.headers)[CHANGELOG_BATCH_END])
            if committed is None or batch_end <= committed:
                latest[output.key] = (batch_end, output.value)
    return latest


def _outputs(outputs: list[OutputRecord], channel: Channel) -> list[bytes | None]:
    return [output.value for output in outputs if output.channel is channel]


def _records(path: Path, partitions: int = 1, limit: int | None = None) -> list[SourceRecord]:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()][:limit]
    return [SourceRecord(line, offset % partitions, offset) for offset, line in enumerate(lines)]


def test_the_compacted_changelog_rebuilds_every_store(small_events: list[TelemetryEvent]) -> None:
    # Tight caps, so that evictions (tombstones and subjects leaving some stores) are part of the run.
    config = WardenConfig.model_validate({"state": {"max_subjects": 40}})
    source = PartitionProcessor(0, config, changelog=True)
    written: list[OutputRecord] = []
    for start in range(0, len(small_events), 500):
        batch = small_events[start : start + 500]
        source.process(batch)
        source.position = start + len(batch)
        records = source.checkpoint(now=0.0)
        for record in records:
            assert record.channel is Channel.STATE and record.partition == 0
            assert dict(record.headers)[CHANGELOG_BATCH_END] == str(start + len(batch)).encode()
        written.extend(records)
    compacted = _compact(written)
    assert len(written) > len(compacted), "no subject was ever written twice: the test proves little"
    assert None in (value for _, value in compacted.values()), "no tombstone: eviction was not exercised"
    assert compacted[MARKER] == (len(small_events), MARKER_VALUE), "the marker is a record of its own"
    subjects = [key.split(b"|", 2) for key in compacted if key != MARKER]
    assert {slot for _, slot, _ in subjects} == {b"0", b"1"}, "a subject written again goes under its other key"

    replica = PartitionProcessor(0, config, changelog=True)
    held: list[int] = []  # the records still held as each subject's state is applied
    store = next(iter(replica.detectors[0].stores().values()))
    apply_change = store.apply_change

    def counting(subject: str, data: dict[str, object] | None) -> None:
        held.append(len(compacted))
        apply_change(subject, data)

    store.apply_change = counting  # type: ignore[method-assign]
    keys = len(compacted)
    checkpoint, applied = replica.restore(compacted)
    assert checkpoint == len(small_events) and applied > 0
    assert _state(replica) == _state(source)
    # The restore takes the records over: those not chosen (a subject's older key, the marker) go before any
    # state is built, and each chosen one as its state is applied, so the bytes and the states are never both
    # held whole.
    assert keys > applied + 1 and compacted == {}
    assert held == list(range(applied - 1, -1, -1))


def test_one_record_holds_a_key_in_every_detector_that_tracks_it(small_events: list[TelemetryEvent]) -> None:
    processor = PartitionProcessor(0, WardenConfig(), changelog=True)
    processor.process(small_events[:200])
    records = {record.key: record.value for record in processor.checkpoint(now=0.0)}
    event = small_events[0]
    value = records.pop(subject_key(0, 1, event.key_subject))
    assert value is not None
    assert {"traffic_anomaly/keys", "key_sharing/keys", "crawler/keys"} <= set(orjson.loads(value))
    stores = [store for detector in processor.detectors for store in detector.stores().values()]
    held = {subject for store in [*stores, *processor.policy.stores().values()] for subject, _ in store.items()}
    assert records.pop(MARKER) == MARKER_VALUE
    assert len(records) + 1 == len(held), "one record per subject, however many stores hold it"


def test_a_checkpoint_begins_after_the_interval_or_once_many_subjects_changed(
    small_events: list[TelemetryEvent],
) -> None:
    config = WardenConfig.model_validate({"kafka": {"checkpoint_interval_ms": 1000, "checkpoint_max_pending": 10**6}})
    processor = PartitionProcessor(0, config, changelog=True)
    processor.process(small_events[:100])
    processor.position = 100
    first = processor.begin_checkpoint(now=1000.0)
    assert first[-1].key == MARKER and len(first) > 1, "the first is written whole at once: commits need it"
    processor.process(small_events[100:200])
    processor.position = 200
    assert processor.begin_checkpoint(now=1000.9) == [] and processor.checkpoint_started is None
    assert processor.begin_checkpoint(now=1001.5) == [], "begun, not written"
    assert processor.checkpoint_started == (1001.5, 200)
    pending = processor.write_checkpoint(budget=10**6)
    assert len(pending) > 2 and pending[-1].key == MARKER, "the subjects changed by the second batch, and the marker"
    assert processor.checkpoint_started is None
    processor.begin_checkpoint(now=5000.0)
    assert processor.checkpoint_started is None, "the input has not moved since"

    eager = PartitionProcessor(0, config.model_copy(update={"kafka": config.kafka.model_copy(
        update={"checkpoint_max_pending": 5})}), changelog=True)
    eager.process(small_events[:100])
    eager.position = 100
    eager.begin_checkpoint(now=0.0)
    eager.process(small_events[100:200])
    eager.position = 200
    eager.begin_checkpoint(now=0.0)
    assert eager.checkpoint_started == (0.0, 200), "the cap passed: begun at once"


def test_checkpoints_share_the_budget_of_a_batch_the_longest_under_way_first(
    small_simulation: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(streams.pipeline.time, "monotonic", lambda: clock[0])
    kafka = {"checkpoint_interval_ms": 1000, "checkpoint_max_pending": 10**6, "checkpoint_records_per_batch": 40}
    pipeline = Pipeline(WardenConfig.model_validate({"kafka": kafka}), frozenset(Channel))
    records = _records(small_simulation[0], partitions=3)
    written: list[dict[int, int]] = []
    markers: list[list[int]] = []
    for batch in range(12):
        clock[0] += 2.0 if batch in (1, 7) else 0.1
        outputs = pipeline.process(records[batch * 300 : (batch + 1) * 300]).outputs
        state = [output for output in outputs if output.channel is Channel.STATE]
        counts: dict[int, int] = {}
        for output in state:
            if output.key != marker_key(output.partition or 0):
                counts[output.partition or 0] = counts.get(output.partition or 0, 0) + 1
        written.append(counts)
        markers.append(sorted(o.partition or 0 for o in state if o.key == marker_key(o.partition or 0)))
    assert markers[0] == [0, 1, 2], "first checkpoints are written whole at once"
    assert all(sum(counts.values()) <= 40 for counts in written[1:]), "no batch writes past the budget"
    # All three begin together 2 s later; the lowest partition goes first on the tie, the next takes what is left.
    assert list(written[1]) == [0] and written[1][0] == 40
    assert all(markers[1:]) is False and sum(map(len, markers[1:7])) == 3, "each completes once, in turn"
    first_done = [batch for batch in range(1, 7) if markers[batch]]
    assert [markers[batch] for batch in first_done] == [[0], [1], [2]]


def test_a_smaller_batch_writes_its_share_of_the_checkpoint_budget_and_at_least_the_floor(
    small_simulation: tuple[Path, Path],
) -> None:
    """The budget follows the batch's records: a batch of a fifth of ``batch_size`` writes a fifth of the full
    budget, and a tiny one the floor, so many small batches a second cost the changelog no more than a few full ones."""
    kafka = {"checkpoint_interval_ms": 0, "checkpoint_records_per_batch": 50, "checkpoint_min_records_per_batch": 4}
    config = WardenConfig.model_validate({"kafka": kafka, "pipeline": {"batch_size": 1000}})
    pipeline = Pipeline(config, frozenset(Channel))
    records = _records(small_simulation[0])
    written: dict[int, list[int]] = {}
    start = 0
    for size in [1000, *[1000, 200, 20] * 8]:
        outputs = pipeline.process(records[start : start + size]).outputs
        start += size
        subjects = [output for output in outputs if output.channel is Channel.STATE and output.key != marker_key(0)]
        written.setdefault(size, []).append(len(subjects))
    assert start <= len(records), "the simulation ran out: the test reads past it"
    # The first batch writes the first checkpoint whole; after it, checkpoints run back to back.
    assert max(written[1000][1:]) == 50 and max(written[200]) == 10 and max(written[20]) == 4
    assert min(written[20]) == 4, "the floor: a checkpoint always under way, every tiny batch writes it"


def test_the_copies_held_for_checkpoints_under_way_stay_under_their_cap(small_simulation: tuple[Path, Path]) -> None:
    kafka = {"checkpoint_interval_ms": 0, "checkpoint_records_per_batch": 5, "checkpoint_max_copy_bytes": 20_000}
    config = WardenConfig.model_validate({"kafka": kafka})
    pipeline = Pipeline(config, frozenset(Channel))
    records = _records(small_simulation[0], partitions=2, limit=3000)
    written: list[OutputRecord] = []
    most = 0
    for start in range(0, len(records), 100):
        outputs = pipeline.process(records[start : start + 100]).outputs
        written.extend(outputs)
        assert sum(processor.checkpoint_copy_bytes for processor in pipeline.processors.values()) <= 20_000
        subjects = [output for output in outputs if output.key is not None and output.key.count(b"|") == 2]
        most = max(most, max(Counter(output.partition for output in subjects).values(), default=0))
    assert most > 5, "the cap never made a batch write past its budget: the test proves nothing"
    written.extend(pipeline.checkpoint_all())
    for partition, processor in pipeline.processors.items():
        replica = PartitionProcessor(partition, config, changelog=True)
        mine = [output for output in written if output.partition == partition]
        assert replica.restore(_compact(mine))[0] == processor.position
        assert _state(replica) == _state(processor)


def test_a_clean_stop_checkpoints_every_partition_that_moved_due_or_not(small_simulation: tuple[Path, Path]) -> None:
    rarely = {"checkpoint_interval_ms": 600_000, "checkpoint_max_pending": 10**6}
    config = WardenConfig.model_validate({"kafka": rarely})
    pipeline = Pipeline(config, frozenset(Channel))
    records = _records(small_simulation[0], partitions=2, limit=600)
    pipeline.process(records[:300])  # the first checkpoints
    assert not _outputs(pipeline.process(records[300:]).outputs, Channel.STATE), "not due for ten minutes"
    final = pipeline.checkpoint_all()
    markers = {record.partition: dict(record.headers)[CHANGELOG_BATCH_END] for record in final
               if record.key is not None and record.key.endswith(b"|")}
    assert markers == {0: b"599", 1: b"600"}, "each partition's marker at the position it reached"
    assert pipeline.checkpoint_all() == [], "nothing moved since"


def test_a_crash_at_any_batch_restores_the_state_of_the_last_complete_checkpoint(
    small_simulation: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checkpoints back to back, a few subjects a batch, tight caps: most checkpoints span several batches
    # whose events change subjects still to be written, and evictions make tombstones.
    copies = [0]
    copy = Changelog._copy

    def counted_copy(self: Changelog, subject: str) -> None:
        copies[0] += 1
        copy(self, subject)

    monkeypatch.setattr(Changelog, "_copy", counted_copy)
    kafka = {"checkpoint_interval_ms": 0, "checkpoint_records_per_batch": 15}
    config = WardenConfig.model_validate({"kafka": kafka, "state": {"max_subjects": 40}})
    records = _records(small_simulation[0], limit=6000)
    straight = Pipeline(config, frozenset(Channel))
    written: list[OutputRecord] = []
    states: dict[int, bytes] = {}  # the state at each batch's end position
    ends: list[int] = []
    for number, start in enumerate(range(0, len(records), 50)):
        if number == 40:  # a hot reload with a checkpoint under way: the new processor goes on with it
            assert straight.processors[0].checkpoint_started is not None
            straight.reconfigure(config)
        result = straight.process(records[start : start + 50])
        written.extend(result.outputs)
        ends.append(len(written))
        states[result.positions[0]] = _state(straight.processors[0])
    assert copies[0] > 50, "few subjects changed while waiting to be written: copy on write went untested"
    completed = [batch_end for batch_end, value in _compact(written).values() if value == MARKER_VALUE]
    spans = sum(1 for output in written if output.key == MARKER)
    assert spans < len(ends) / 2, "checkpoints should mostly take more than one batch"

    for crash, end in enumerate(ends):
        committed = int(records[min(len(records), (crash + 1) * 50) - 1].offset) + 1
        replica = PartitionProcessor(0, config, changelog=True)
        checkpoint, _ = replica.restore(_compact(written[:end], committed))
        assert checkpoint is not None and checkpoint <= committed
        assert _state(replica) == states[checkpoint], f"crash after batch {crash}: not the checkpoint's state"
    assert completed, "no checkpoint completed"

    # A clean stop, twice: the second writes the tombstones that follow the first's under the subjects' other
    # keys. Then compaction may drop every tombstone (after its retention) and no evicted subject comes back.
    final = [*straight.checkpoint_all(), *straight.checkpoint_all()]
    assert any(output.value is None for output in final)
    kept = {key: record for key, record in _compact([*written, *final]).items() if record[1] is not None}
    replica = PartitionProcessor(0, config, changelog=True)
    replica.restore(kept)
    assert _state(replica) == _state(straight.processors[0])


def test_restarts_after_restarts_restore_exactly_even_over_half_written_checkpoints(
    small_simulation: tuple[Path, Path],
) -> None:
    # A crash every seventh batch, each one most likely in the middle of a checkpoint: the restored worker
    # replays from the last complete one and writes on over the stale records of the one that was cut off.
    # No store reaches its cap here: a restore rebuilds a store's recency order only approximately, so once
    # subjects are evicted, a restored worker may evict others than the uninterrupted one (see the README).
    kafka = {"checkpoint_interval_ms": 0, "checkpoint_records_per_batch": 15}
    config = WardenConfig.model_validate({"kafka": kafka})
    records = _records(small_simulation[0], limit=4000)
    straight = Pipeline(config, frozenset(Channel))
    states: dict[int, bytes] = {}
    for start in range(0, len(records), 50):
        position = straight.process(records[start : start + 50]).positions[0]
        states[position] = _state(straight.processors[0])

    log: list[OutputRecord] = []
    pipeline = Pipeline(config, frozenset(Channel))
    position, committed, batches, restores, cut_off = 0, 0, 0, 0, 0
    while position < len(records):
        result = pipeline.process(records[position : position + 50])
        if batches:  # only a partition's very first checkpoint is written whole, not the first after a restore
            assert sum(output.key != MARKER for output in result.outputs if output.channel is Channel.STATE) <= 15
        log.extend(result.outputs)
        position, committed, batches = pipeline.processors[0].position, result.positions[0], batches + 1
        if batches % 7:
            continue
        cut_off += pipeline.processors[0].checkpoint_started is not None
        pipeline = Pipeline(config, frozenset(Channel))
        processor = pipeline.reset_partition(0)
        checkpoint, _ = processor.restore(_compact(log, committed))
        assert checkpoint is not None and _state(processor) == states[checkpoint], f"restore {restores}"
        processor.position, processor.replay_until, position = checkpoint, committed, checkpoint
        restores += 1
    assert restores > 10 and cut_off > restores / 2, "most crashes should cut a checkpoint off"
    assert _state(pipeline.processors[0]) == states[len(records)]


@pytest.mark.parametrize("crash_at", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("restored_batch", [333, 2_500])  # 2,500: batches of several chunks (a thousand records)
def test_a_restore_replays_from_its_checkpoint_and_emits_only_what_was_never_committed(
    small_simulation: tuple[Path, Path], crash_at: float, restored_batch: int
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
    committed = results[crash].positions[0]
    changelog = _compact([output for result in results[: crash + 1] for output in result.outputs], committed)
    after_crash = [output for result in results[crash + 1 :] for output in result.outputs]

    # The restored run: state as of the checkpoint, input from there, in batches cut differently.
    restored = Pipeline(config, channels)
    processor = restored.reset_partition(0)
    checkpoint, _ = processor.restore(changelog)
    assert checkpoint is not None and checkpoint < committed
    processor.position, processor.replay_until = checkpoint, committed
    emitted: list[OutputRecord] = []
    for start in range(checkpoint, len(records), restored_batch):
        result = restored.process(records[start : start + restored_batch])
        assert result.positions[0] >= committed, "a commit below the committed offset would emit outputs again"
        emitted.extend(result.outputs)
    assert processor.replay_until == 0
    for channel in (Channel.FINDINGS, Channel.ACTIONS, Channel.DEAD_LETTERS):
        assert _outputs(emitted, channel) == _outputs(after_crash, channel)
    assert _state(processor) == _state(straight.processors[0])
