"""Kafka backends: a consumer-group source that restores partition state on assignment, and a
transactional sink that commits outputs, state changes and consumed offsets together."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from models.config import KafkaConfig
from streams.changelog import CHANGELOG_BATCH_END, LatestRecords
from streams.kafka_records import read_records_compiled
from streams.records import Channel, OutputRecord, SourceRecord
from streams.sink import Sink
from streams.source import Source

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 120.0


def ensure_topics(config: KafkaConfig) -> None:
    """Create Warden's topics if missing: inputs and outputs with the configured partitions; the
    changelog compacted and with as many partitions as the input, since it follows them."""
    topics = config.topics
    large = {"max.message.bytes": str(config.max_record_bytes + 65_536)}
    wanted = [
        NewTopic(topics.telemetry, config.partitions, config.replication_factor),
        NewTopic(topics.findings, config.partitions, config.replication_factor),
        NewTopic(topics.actions, config.partitions, config.replication_factor),
        NewTopic(topics.reversals, config.partitions, config.replication_factor),
        NewTopic(topics.dead_letters, config.partitions, config.replication_factor, topic_configs=large),
        NewTopic(topics.state, config.partitions, config.replication_factor,
                 topic_configs={"cleanup.policy": "compact", **large}),
    ]
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers, **config.security.client_options())
    try:
        existing = set(admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created them first
                admin.create_topics(missing)
            admin.wait_for_topics([topic.name for topic in missing], timeout_ms=30_000)
    finally:
        admin.close()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    # The listener runs on the consumer's IO thread, at any moment of a loop turn, and blocking consumer calls
    # (the committed offsets a restore needs) are refused there: it only notes what changed, and ``poll``
    # drops and restores state on the loop's thread, between batches.

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.source.note_rebalance(revoked=[tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.source.note_rebalance(assigned=[tp.partition for tp in assigned])


AssignHook = Callable[[int], None]


class KafkaSource(Source):
    """One consumer-group member on the telemetry topic. Offsets are committed by the sink.

    ``assign_hooks``/``revoke_hooks`` let the runner restore and drop per-partition state as
    the consumer rebalances, before any record of a newly assigned partition is processed.
    """

    def __init__(self, config: KafkaConfig, instance_id: str) -> None:
        self.config = config
        self.topic = config.topics.telemetry
        self.name = self.topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=config.group_id,
            client_id=f"warden-{instance_id}",
            # Static membership: a restarted worker with the same id takes its partitions back at once,
            # without waiting out the dead member's session or rebalancing the whole group.
            group_instance_id=f"{config.transactional_id_prefix}-{instance_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=config.max_poll_records,
            **config.fetch_options(),
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=max(1000, config.session_timeout_ms // 4),
            **config.security.client_options(),
        )
        read_records_compiled(self.consumer, SourceRecord)
        self.assign_hooks: list[AssignHook] = []
        self.revoke_hooks: list[AssignHook] = []
        self._rebalance_lock = threading.Lock()
        self.awaiting_restore: set[int] = set()  # assigned since the last poll
        self.revoked: set[int] = set()  # revoked since the last poll
        self._sought: set[int] = set()  # partitions a restore moved back while this poll's records were fetched
        self.group_metadata: Any = None  # as of the last poll (``poll``)
        self._last_poll_end = time.monotonic()

    def subscribe(self, timeout_s: float = 30.0) -> None:
        """Join the group once the consumer's metadata has the topic's partitions. Without them (a topic created
        a moment before), the first join assigns nothing and a second follows at once; kafka-python 3.0.12 was
        seen once to hang in such a second join's SyncGroup, and the worker never consumed. (A second join
        soon after the first also happens with the metadata there, so this makes the hang rarer, not
        impossible.)"""
        deadline = time.monotonic() + timeout_s
        while not self.consumer.partitions_for_topic(self.topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {self.topic} in the cluster's metadata after {timeout_s:.0f}s")
            time.sleep(0.1)
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))


    def note_rebalance(self, revoked: Iterable[int] = (), assigned: Iterable[int] = ()) -> None:
        """What a rebalance revoked and assigned, noted on the consumer's IO thread for the next ``poll``."""
        with self._rebalance_lock:
            self.awaiting_restore.difference_update(revoked)
            self.revoked.update(revoked)
            self.awaiting_restore.update(assigned)

    def _rebalanced(self) -> set[int]:
        """Drop the state of the partitions revoked since the last poll, then restore the assigned ones (in that
        order: a partition revoked and assigned again is restored from what was committed). Returns the partitions
        whose records this poll must leave out.

        Dropping a partition's state as the IO thread learns of the revocation, as this did, raced with the batch
        being processed: its next chunk made a fresh, empty processor for the partition and processed its records
        with no history. A batch that goes on with a revoked partition's state commits only if its offsets were
        accepted before the group moved on; otherwise the broker refuses them and the batch is aborted."""
        with self._rebalance_lock:
            revoked, self.revoked = self.revoked, set()
            assigned, self.awaiting_restore = self.awaiting_restore, set()
        for partition in sorted(revoked):
            for hook in self.revoke_hooks:
                hook(partition)
        self._sought.clear()
        for partition in sorted(assigned):
            for hook in self.assign_hooks:
                hook(partition)
        return revoked | self._sought

    def poll(self, max_records: int) -> list[SourceRecord]:
        since_last_poll_ms = (time.monotonic() - self._last_poll_end) * 1000
        batch = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=max_records)
        # The group generation the batch's offsets are committed under, read before the rebalances noted so far are
        # applied. The listener notes a revocation before the group moves to a new generation, so a partition
        # revoked since this read either has its records left out below, or the broker refuses the batch's
        # offsets, which carry the generation it was revoked from (a newer one would be accepted: the group
        # checks the generation, not which member owns a partition).
        self.group_metadata = self.consumer.group_metadata()
        # A partition's records wait for its state: records of a revoked partition, or fetched before its restore
        # moved it to where its state is, are left out (fetched again from there, or by the partition's new owner).
        left_out = self._rebalanced()
        for tp in [tp for tp in batch if tp.partition in left_out]:
            del batch[tp]
        taken = sum(map(len, batch.values()))
        catch_up_ms = self.config.fetch_catch_up_ms
        if batch and taken < max_records and catch_up_ms and since_last_poll_ms > catch_up_ms:
            self._catch_up(batch, max_records - taken)
        self._last_poll_end = time.monotonic()
        records: list[SourceRecord] = []
        for tp in sorted(batch, key=lambda tp: tp.partition):
            records.extend(batch[tp])
        return records

    def _catch_up(self, batch: dict[Any, list[Any]], room: int) -> None:
        """Add what arrived while the previous batch was processed.

        kafka-python sends the next fetch as soon as a poll hands out the buffered records, and the
        broker answers it at once, so the records a poll returns were fetched when the previous poll
        returned: they wait one whole batch more than they need to. A second poll takes the answer to
        the fetch the first one sent, which holds everything up to now. It is worth it only after a
        batch that took longer than ``fetch_catch_up_ms``; with nothing new the broker holds that
        fetch, and the wait ends after ``fetch_catch_up_ms``.
        """
        more = self.consumer.poll(timeout_ms=self.config.fetch_catch_up_ms, max_records=room)
        for tp, records in more.items():
            batch.setdefault(tp, []).extend(records)

    @property
    def exhausted(self) -> bool:
        return False

    def lags(self) -> dict[int, int]:
        """Per assigned partition, records between our position and the last known high watermark
        (from fetch responses, so no extra request); partitions not fetched yet are left out."""
        lags: dict[int, int] = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lags[tp.partition] = max(0, highwater - self.consumer.position(tp))
        return lags

    def offsets(self, positions: dict[int, int]) -> dict[TopicPartition, OffsetAndMetadata]:
        return {TopicPartition(self.topic, p): OffsetAndMetadata(offset, "", -1) for p, offset in positions.items()}

    def commit(self, positions: dict[int, int]) -> None:
        self.consumer.commit(self.offsets(positions))

    def committed_offset(self, partition: int) -> int:
        """The group's committed offset of one input partition (0 when none)."""
        return self.consumer.committed(TopicPartition(self.topic, partition)) or 0

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (a restore: from where the partition's state is)."""
        self.consumer.seek(TopicPartition(self.topic, partition), offset)
        self._sought.add(partition)

    def assigned(self) -> list[int]:
        """The partitions assigned now, in order."""
        return sorted(tp.partition for tp in self.consumer.assignment())

    def close(self) -> None:
        self.consumer.close()


class ChangelogReader:
    """Reads changelog partitions for restores through one consumer, kept for the worker's life. A consumer
    made for each partition waited ~0.1 s for its connection and metadata before reading anything: a
    rebalance of four partitions paused 0.45 s (measured), where one kept consumer takes ~0.1 s for the first
    partition and a few ms for each after."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._reader: KafkaConsumer | None = None

    def read(self, partition: int, committed: int) -> LatestRecords:
        """The committed changelog of one partition, as compaction keeps it: per key, the latest record's
        ``batch_end`` and value, leaving out changes of batches that end past the ``committed`` input offset
        (they will be processed again)."""
        if self._reader is None:
            config = self.config
            self._reader = KafkaConsumer(
                bootstrap_servers=config.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                **config.fetch_options(),
                **config.security.client_options(),
            )
            read_records_compiled(self._reader)
        reader, tp = self._reader, TopicPartition(self.config.topics.state, partition)
        try:
            reader.assign([tp])
            reader.seek_to_beginning(tp)
            end = reader.end_offsets([tp])[tp]
            deadline = time.monotonic() + RESTORE_TIMEOUT_S
            latest: LatestRecords = {}
            while reader.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"changelog partition {partition} not restored within {RESTORE_TIMEOUT_S}s")
                # Only this partition's records: none of an earlier restore's partition may slip in.
                for record in reader.poll(timeout_ms=500).get(tp, []):
                    batch_end = _batch_end(record.headers)
                    if batch_end <= committed:
                        latest[record.key] = (batch_end, record.value)
            return latest
        except BaseException:
            self.close()  # the next restore starts from a new consumer
            raise

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _batch_end(headers: list[tuple[str, bytes]] | None) -> int:
    for name, value in headers or ():
        if name == CHANGELOG_BATCH_END:
            return int(value)
    return 0


class KafkaSink(Sink):
    """Produces findings, actions, dead letters and state changes; with transactions on, each batch's
    records and its consumed offsets commit in one Kafka transaction (exactly-once)."""

    def __init__(self, config: KafkaConfig, source: KafkaSource, instance_id: str) -> None:
        self.config = config
        self.source = source
        topics = config.topics
        self._topics = {
            Channel.FINDINGS: topics.findings,
            Channel.ACTIONS: topics.actions,
            Channel.DEAD_LETTERS: topics.dead_letters,
            Channel.STATE: topics.state,
        }
        options: dict[str, Any] = {
            "bootstrap_servers": config.bootstrap_servers,
            "client_id": f"{config.transactional_id_prefix}-{instance_id}",
            "linger_ms": config.linger_ms,
            "batch_size": config.batch_size,
            "retry_backoff_ms": config.retry_backoff_ms,
            "max_request_size": config.max_record_bytes + 65_536,
            **config.security.client_options(),
        }
        if config.transactions:
            # A stable id per instance: a restarted worker fences its dead predecessor at once.
            options["transactional_id"] = f"{config.transactional_id_prefix}-{instance_id}"
            options["transaction_timeout_ms"] = config.transaction_timeout_ms
        else:
            options["acks"] = "all"
        self.producer = KafkaProducer(**options)
        if config.transactions:
            self.producer.init_transactions()
        # Each output topic's metadata now: kafka-python's send otherwise fetches it at the first record for the
        # topic and blocks on it (~0.1 s a topic measured), inside a batch and ahead of that batch's actions.
        for topic in self._topics.values():
            self.producer.partitions_for(topic)
        self._open = False
        self._offsets_sent: Any = None  # the open transaction's offsets, sent as it began (``_send_offsets``)
        self._opening: dict[int, int] | None = None  # a begun batch's positions until its transaction opens
        self._committing: Any = None  # the last batch's commit (its EndTxn's result) while it completes

    def channels(self) -> frozenset[Channel]:
        return frozenset(self._topics)

    def begin(self, source: Source, positions: dict[int, int]) -> None:
        """Begin a batch. Its transaction opens as soon as the last batch's commit has completed: at once, or at the
        first ``advance``, ``add`` or ``commit`` after that."""
        if not self.config.transactions:
            super().begin(source, positions)
            return
        self._opening = positions
        self.advance()

    def advance(self) -> None:
        """Open the begun batch's transaction if the last commit has completed, without waiting for it. Called
        between chunks of the batch's work: the offsets then go ahead and are answered while the rest of it is
        processed."""
        if self._committing is None or self._committing.is_done:
            self._open_transaction()

    def _open_transaction(self) -> None:
        """Open the begun batch's transaction, once the last commit has completed, unless it is open already."""
        if self._opening is None:
            return
        self.settle()
        positions, self._opening = self._opening, None
        self.producer.begin_transaction()
        self._open = True
        if positions:  # a checkpoint of its own (a clean stop) consumes nothing
            self._offsets_sent = self._send_offsets(positions)

    def add(self, record: OutputRecord) -> None:
        self._open_transaction()
        self.producer.send(
            self._topics[record.channel],
            value=record.value,
            key=record.key,
            headers=list(record.headers) or None,
            partition=record.partition,
        )

    def flush(self) -> None:
        self.settle()
        self.producer.flush()

    def _send_offsets(self, positions: dict[int, int]) -> Any:
        """The batch's consumed offsets into the open transaction, without waiting for the broker's answers.

        ``KafkaProducer.send_offsets_to_transaction`` waits for two round trips (AddOffsetsToTxn to the
        transaction coordinator, then TxnOffsetCommit to the group's), and a commit that sent them last waited
        for them after the batch's work. Sent as the batch begins, they are answered while it is processed.
        This is that method without its wait, on kafka-python internals that the version pin keeps stable;
        ``commit`` waits on the result it returns."""
        producer = self.producer
        sent = producer._transaction_manager.send_offsets_to_transaction(
            self.source.offsets(positions), self.source.group_metadata
        )
        producer._sender.wakeup()
        return sent

    def commit(self) -> None:
        """Send the batch's commit and return; it completes while the next batch is polled and processed, and
        that batch's transaction opens after it (``settle``).

        ``KafkaProducer.commit_transaction`` waits for the records' flush and the EndTxn round trip (7-36 ms a
        batch measured with the broker on the other core), and the worker's core stood idle for it: ~20% of a
        drain's time. A failed commit is raised by ``settle``, inside the next batch, which is then aborted too,
        and the worker rewinds both (a rewind restores the state from the changelog, which the failed
        transaction's records never reach). The group's offsets are safe meanwhile: a read_committed consumer
        that takes over a partition waits for pending transactional offsets (KIP-447)."""
        if not self.config.transactions:
            super().commit()
            return
        self._open_transaction()
        sent, self._offsets_sent = self._offsets_sent, None
        if sent is not None:
            # Answered while the batch was processed, as a rule. A commit begun after they failed (a rebalance's new
            # generation) never completed: kafka-python held its EndTxn behind the records it would not send.
            sent.wait()
        self._committing = self.producer._transaction_manager.begin_commit()  # commit_transaction without its wait
        self.producer._sender.wakeup()

    def settle(self) -> None:
        """Wait for the last batch's commit to complete; raises what the broker answered."""
        committing, self._committing = self._committing, None
        if committing is not None:
            committing.wait()
            self._open = False

    def abort(self) -> None:
        """Give up the begun batch: after the last commit has completed (or failed), its transaction, if open."""
        self._opening, self._offsets_sent = None, None
        try:
            self.settle()
        except KafkaError as error:
            log.warning("the last batch's commit failed (%s); aborting it", error)
        if self._open:
            self._open = False
            try:
                self.producer.abort_transaction()
            except Exception:
                log.exception("abort_transaction failed")

    def close(self) -> None:
        self.abort()
        self.producer.close()
