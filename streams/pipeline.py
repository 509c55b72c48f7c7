"""The embedded pipeline: decode → detectors → enforcement, one processor per input partition.

State lives with the partition (Kafka assigns partitions, and state moves with them through the
changelog), and every subject is scoped to an account, which Kafka keys by, so any partitioning
gives the same findings and actions as a single-partition replay.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

from detectors.base import Detector
from detectors.registry import build_detectors
from detectors.state import StateOwner
from enforcement.policy import EnforcementPolicy
from models.action import ActionReversal, EnforcementAction
from models.config import WardenConfig
from models.finding import Finding
from models.telemetry import TelemetryEvent
from streams.changelog import Changelog, LatestRecords
from streams.decode import InvalidRecord, dead_letter, decode_events
from streams.records import Channel, OutputRecord, SourceRecord

POLICY_STATE = "policy"
_EVENT_TIME = attrgetter("ts_ms")
"""An event's time in epoch ms, read in C: the watermark reads every event of a batch."""
_EVENT_THEN_DETECTOR = itemgetter(0, 1)
_CHUNK_RECORDS = 1000
"""A batch (10,000 records by default, one commit point) is decoded and processed this many records at a time.
Every detector's step reads every event; a whole batch's events (~15 MB with their dicts and strings) were
built in fresh memory and had left the cache by the next detector, where a chunk's are built in the memory the
last chunk's left. Replays of the benchmark workload, interleaved in one session: 93-98k events/s a whole batch
at a time, 111-119k in chunks."""


@dataclass
class BatchResult:
    outputs: list[OutputRecord] = field(default_factory=list)
    events: int = 0
    invalid: int = 0
    findings: list[Finding] = field(default_factory=list)
    actions: list[EnforcementAction] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)
    """Per input partition, where the source commits to (``Pipeline.commit_positions``)."""


class PartitionProcessor:
    """Detectors and policy for one input partition, with its event-time watermark."""

    def __init__(self, partition: int, config: WardenConfig, changelog: bool) -> None:
        self.partition = partition
        self.config = config
        self.detectors: list[Detector] = build_detectors(config)
        self.policy = EnforcementPolicy(config)
        self.watermark_ms = 0
        self._next_sweep_ms: int | None = None
        self.position = 0
        """The input offset the state has reached: the next offset after the last record processed."""
        self.replay_until = 0
        """After a restore from a checkpoint older than the committed offset: records before this offset are
        processed again to rebuild the state, but their outputs were committed before and are not emitted."""
        # Every store, named ``owner/store`` (a detector's name or ``policy``), in a fixed order: the changelog's
        # names. A store object stays the same for the processor's life (a restore refills it).
        owners: list[tuple[str, StateOwner]] = [*((d.name, d) for d in self.detectors), (POLICY_STATE, self.policy)]
        stores = [(f"{owner}/{name}", store) for owner, holder in owners for name, store in holder.stores().items()]
        self.changelog = Changelog(partition, stores) if changelog else None

    def process(self, events: list[TelemetryEvent]) -> tuple[list[Finding], list[EnforcementAction]]:
        findings: list[Finding] = []
        actions: list[EnforcementAction] = []
        # Each detector over all the events (a compiled step, most of them), then the policy over the findings in
        # the order a per-event loop makes: by event, then by detector. A sort keeps that order.
        found = [
            (index, order, finding)
            for order, detector in enumerate(self.detectors)
            for index, finding in detector.observe_batch(events)
        ]
        found.sort(key=_EVENT_THEN_DETECTOR)
        for index, _, finding in found:
            findings.append(finding)
            action = self.policy.decide(finding, events[index])
            if action is not None:
                actions.append(action)
        if events:
            self.watermark_ms = max(self.watermark_ms, max(map(_EVENT_TIME, events)))
        self._sweep()
        return findings, actions

    def _sweep(self) -> None:
        """Physically drop idle subjects every ``sweep_interval_s`` of event time (memory only)."""
        if self._next_sweep_ms is None:
            self._next_sweep_ms = self.watermark_ms + self.config.state.sweep_interval_s * 1000
        if self.watermark_ms < self._next_sweep_ms:
            return
        for detector in self.detectors:
            detector.expire(self.watermark_ms)
        self.policy.expire(self.watermark_ms)
        self._next_sweep_ms = self.watermark_ms + self.config.state.sweep_interval_s * 1000

    def apply_reversals(self, reversals: list[ActionReversal]) -> None:
        for reversal in reversals:
            self.policy.apply_reversal(reversal)

    def reconfigured(self, config: WardenConfig) -> PartitionProcessor:
        """The same partition under a new config (hot reload), keeping every detector's and the policy's state."""
        fresh = PartitionProcessor(self.partition, config, changelog=self.changelog is not None)
        previous = {detector.name: detector for detector in self.detectors}
        for detector in fresh.detectors:
            if detector.name in previous:
                detector.restore(previous[detector.name].snapshot())
        fresh.policy.restore(self.policy.snapshot())
        fresh.watermark_ms = self.watermark_ms
        fresh._next_sweep_ms = self._next_sweep_ms
        # The changelog goes on where it was: what changed since the last checkpoint still has to be written.
        fresh.position, fresh.replay_until = self.position, self.replay_until
        if fresh.changelog is not None and self.changelog is not None:
            fresh.changelog.take_over(self.changelog)
        return fresh

    def subject_counts(self) -> dict[str, int]:
        return {detector.name: detector.subject_count() for detector in self.detectors}

    def _changelog(self) -> Changelog:
        if self.changelog is None:
            raise RuntimeError(f"partition {self.partition} keeps no changelog")
        return self.changelog

    def begin_checkpoint(self, now: float) -> list[OutputRecord]:
        """Begin a checkpoint if one is due; ``write_checkpoint`` writes it. A partition's first, when its
        changelog holds none, is due at once and written whole here: any offset a partition commits must
        have a checkpoint at or before it, or a restore would have nothing to replay from. Later ones (and
        the first after a restore from a checkpoint) are due once none is under way and either
        ``checkpoint_max_pending`` subjects have changed or the interval has passed and the input moved."""
        kafka, changelog = self.config.kafka, self._changelog()
        if changelog.started is None:
            return changelog.complete(now, self.position)
        if changelog.under_way:
            return []
        at, position = changelog.started
        interval_passed = now - at >= kafka.checkpoint_interval_ms / 1000 and position != self.position
        if interval_passed or len(changelog.changed()) >= kafka.checkpoint_max_pending:
            changelog.start(now, self.position)
        return []

    def write_checkpoint(self, budget: int, shed_bytes: int = 0) -> list[OutputRecord]:
        """Up to ``budget`` subjects of the checkpoint under way, and past it more of the copies made before a
        change until ``shed_bytes`` of them are written (and the marker once it is all written)."""
        return self._changelog().write(budget, shed_bytes)

    @property
    def checkpoint_copy_bytes(self) -> int:
        """What the copies made for the checkpoint under way hold until they are written."""
        return self._changelog().copy_bytes

    @property
    def checkpoint_started(self) -> tuple[float, int] | None:
        """When the checkpoint under way began, and its position; None when none is."""
        changelog = self._changelog()
        return changelog.started if changelog.under_way else None

    @property
    def replay_distance(self) -> int | None:
        """Input records a restore would process again (from the last complete checkpoint to this position); None
        without a changelog or before the first checkpoint."""
        if self.changelog is None or self.changelog.completed is None:
            return None
        return self.position - self.changelog.completed

    def moved_since_checkpoint(self) -> bool:
        """Whether a checkpoint now would hold anything new: one under way, input processed or state changed."""
        changelog = self._changelog()
        return (
            changelog.started is None
            or changelog.under_way
            or changelog.started[1] != self.position
            or bool(changelog.changed())
        )

    def checkpoint(self, now: float) -> list[OutputRecord]:
        """A whole checkpoint now: the rest of the one under way, then one at this position."""
        return self._changelog().complete(now, self.position)

    def restore(self, latest: LatestRecords) -> tuple[int | None, int]:
        """The state from a compacted changelog partition: the position it has reached and the records applied."""
        return self._changelog().restore(latest)


class Pipeline:
    """Stateless decoding in front of per-partition processors; turns a batch of records into outputs."""

    def __init__(self, config: WardenConfig, channels: frozenset[Channel], source_name: str = "input") -> None:
        self.config = config
        self.channels = channels
        self.source_name = source_name
        self.processors: dict[int, PartitionProcessor] = {}
        self.totals: Counter[str] = Counter()
        # Lifted actions by id; every partition gets them, since the one owning the account is the one they match.
        self.reversals: dict[str, ActionReversal] = {}

    def processor(self, partition: int) -> PartitionProcessor:
        found = self.processors.get(partition)
        return self.reset_partition(partition) if found is None else found

    def reset_partition(self, partition: int) -> PartitionProcessor:
        """A fresh processor for a newly assigned partition, to be filled from its changelog."""
        self.processors[partition] = PartitionProcessor(partition, self.config, Channel.STATE in self.channels)
        self.processors[partition].apply_reversals(list(self.reversals.values()))
        return self.processors[partition]

    def add_reversals(self, reversals: list[ActionReversal]) -> None:
        """Manual reversals: applied to every partition now and to every partition assigned later."""
        self.reversals.update((reversal.action.action_id, reversal) for reversal in reversals)
        for partition in sorted(self.processors):
            self.processors[partition].apply_reversals(reversals)

    def reconfigure(self, config: WardenConfig) -> None:
        """Hot reload between batches: new thresholds, ladders and policy version; all state is kept."""
        self.config = config
        for partition in sorted(self.processors):
            self.processors[partition] = self.processors[partition].reconfigured(config)

    def drop_partition(self, partition: int) -> None:
        """Forget a revoked partition; its state lives on in the changelog for the next owner."""
        self.processors.pop(partition, None)

    def commit_positions(self, records: list[SourceRecord]) -> dict[int, int]:
        """Per input partition, the offset after the batch's last record, or further where a restore is replaying
        up to a later offset (committing less would emit the replayed outputs again): where the source commits
        to once the batch is done. Known before the batch is processed, so a transactional sink sends it ahead."""
        ends = {record.partition: record.offset + 1 for record in records}  # a partition's records in offset order
        for partition, end in ends.items():
            processor = self.processors.get(partition)
            if processor is not None and processor.replay_until > end:
                ends[partition] = processor.replay_until
        return ends

    def process(self, records: list[SourceRecord], between_chunks: Callable[[], None] | None = None) -> BatchResult:
        """One batch's outputs; ``between_chunks`` is called after each chunk of its records (the sink's
        ``advance``)."""
        result = BatchResult(positions=self.commit_positions(records))
        # One commit point, decoded and processed a chunk of records at a time: each chunk's events are freed
        # before the next chunk's are built, in the memory they leave, which is still in cache.
        for start in range(0, len(records), _CHUNK_RECORDS):
            self._process_chunk(records[start : start + _CHUNK_RECORDS], result)
            if between_chunks is not None:
                between_chunks()
        if Channel.STATE in self.channels:
            self._checkpoint(result.outputs, len(records))
        self._count(result)
        return result

    def _process_chunk(self, records: list[SourceRecord], result: BatchResult) -> None:
        by_partition: dict[int, list[TelemetryEvent]] = {}
        chunk_end: dict[int, int] = {}
        # Per partition being rebuilt after a restore, the offset up to which its records are replayed, and
        # how many of its events (the first ones: records come in offset order) are replayed.
        replay_until = {p: processor.replay_until for p, processor in self.processors.items() if processor.replay_until}
        replayed: dict[int, int] = {}
        for record, event in zip(records, decode_events([record.value for record in records]), strict=True):
            # A source returns each partition's records in offset order: the last one ends the chunk.
            partition = record.partition
            chunk_end[partition] = record.offset + 1
            replaying = bool(replay_until) and record.offset < replay_until.get(partition, 0)
            if isinstance(event, InvalidRecord):
                result.invalid += 1
                if Channel.DEAD_LETTERS in self.channels and not replaying:
                    result.outputs.append(dead_letter(record, str(event), self.source_name))
                continue
            events = by_partition.get(partition)
            if events is None:
                events = by_partition[partition] = []
            events.append(event)
            if replaying:
                replayed[partition] = len(events)
        result.events += sum(map(len, by_partition.values()))
        if by_partition:
            # One partition's detectors do, for the chunk's events of every partition, the work their peers share.
            chunk_events = [event for events in by_partition.values() for event in events]
            for detector in self.processor(min(by_partition)).detectors:
                detector.prepare(chunk_events)
        for partition in sorted(chunk_end):
            processor = self.processor(partition)
            events = by_partition.get(partition, [])
            if partition in replayed:
                processor.process(events[: replayed[partition]])  # their outputs were committed before
                events = events[replayed[partition] :]
            findings, actions = processor.process(events)
            processor.position = chunk_end[partition]
            if processor.position >= processor.replay_until:
                processor.replay_until = 0
            result.findings.extend(findings)
            result.actions.extend(actions)
            if Channel.FINDINGS in self.channels:
                result.outputs.extend(
                    OutputRecord(Channel.FINDINGS, f.account_id.encode(), f.model_dump_json().encode())
                    for f in findings
                )
            if Channel.ACTIONS in self.channels:
                result.outputs.extend(
                    OutputRecord(Channel.ACTIONS, a.account_id.encode(), a.model_dump_json().encode())
                    for a in actions
                )

    def _checkpoint(self, outputs: list[OutputRecord], batch_records: int) -> None:
        """Begin the checkpoints that are due, and write the batch's budget of subjects of those under way, the
        longest under way first: ``checkpoint_records_per_batch`` for a full batch, in proportion for a batch of
        fewer ``batch_records``, at least ``checkpoint_min_records_per_batch``. Only a partition whose changelog
        holds no checkpoint writes its first whole at once (``PartitionProcessor.begin_checkpoint``).

        Partitions assigned together fall due together. Writing them all in one batch held it up (measured:
        1,254 records, 209 ms at 300 accounts), and so did one partition's checkpoint at 10,000 accounts
        (357 ms): the budget spreads the changelog's work evenly over the batches. When subjects change faster
        than the budget writes them, checkpoints run back to back and each holds more changes per subject.

        The copies made for checkpoints under way are held until written: past ``checkpoint_max_copy_bytes``
        in all, the batch writes more of them, whatever the budget, so memory stays bounded when most
        subjects change while waiting (a large population under heavy load).
        """
        kafka, processors = self.config.kafka, self.processors
        full = kafka.checkpoint_records_per_batch
        share = -(-full * batch_records // self.config.pipeline.batch_size)  # rounded up
        now, budget = time.monotonic(), max(share, min(kafka.checkpoint_min_records_per_batch, full))
        for partition in sorted(processors):
            outputs.extend(processors[partition].begin_checkpoint(now))
        under_way = {p: started for p, processor in processors.items() if (started := processor.checkpoint_started)}
        shed = sum(processors[p].checkpoint_copy_bytes for p in under_way) - kafka.checkpoint_max_copy_bytes
        for partition in sorted(under_way, key=lambda p: (under_way[p], p)):
            processor = processors[partition]
            held = processor.checkpoint_copy_bytes
            records = processor.write_checkpoint(max(budget, 0), max(shed, 0))
            outputs.extend(records)
            budget -= len(records)
            shed -= held - processor.checkpoint_copy_bytes
            if budget <= 0 and shed <= 0:
                break

    def checkpoint_all(self) -> list[OutputRecord]:
        """A checkpoint of every partition that moved since its last one, whether due or not: on a clean stop,
        so that whoever takes the partitions next has nothing to process again. Nothing without a changelog."""
        if Channel.STATE not in self.channels:
            return []
        now = time.monotonic()
        return [
            record
            for partition in sorted(self.processors)
            if self.processors[partition].moved_since_checkpoint()
            for record in self.processors[partition].checkpoint(now)
        ]

    def _count(self, result: BatchResult) -> None:
        self.totals["events"] += result.events
        self.totals["invalid"] += result.invalid
        for finding in result.findings:
            self.totals[f"findings.{finding.detector}"] += 1
        for action in result.actions:
            self.totals[f"actions.{action.action.value}.{action.mode.value}"] += 1
