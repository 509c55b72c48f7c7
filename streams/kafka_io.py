"""Kafka backends: a consumer-group source that restores partition state on assignment, and a
transactional sink that commits outputs, state changes and consumed offsets together."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from models.config import KafkaConfig
from streams.changelog import CHANGELOG_BATCH_END, LatestRecords
from streams.kafka_records import read_records_compiled
from streams.records import Channel, OutputRecord, SourceRecord, new_source_record
from streams.sink import Sink
from streams.source import Source

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 120.0

_SOURCE_FIELDS = itemgetter(*(ConsumerRecord._fields.index(name) for name in SourceRecord._fields))
"""A ConsumerRecord's fields in SourceRecord's order, picked in C (a ConsumerRecord is a tuple)."""


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

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.source.awaiting_restore.discard(tp.partition)
            self.source.on_revoke(tp.partition)

    def on_partitions_assigned(self, assigned: Any) -> None:
        # The listener runs on the consumer's IO thread, where blocking consumer calls (the committed
        # offsets a restore needs) are refused: the restore runs in ``poll`` once the join completes.
        self.source.awaiting_restore.update(tp.partition for tp in assigned)


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
        read_records_compiled(self.consumer)
        self.assign_hooks: list[AssignHook] = []
        self.awaiting_restore: set[int] = set()
        self._sought: set[int] = set()  # partitions a restore moved back while this poll's records were fetched
        self.revoke_hooks: list[AssignHook] = []
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


    def on_revoke(self, partition: int) -> None:
        for hook in self.revoke_hooks:
            hook(partition)

    def poll(self, max_records: int) -> list[SourceRecord]:
        since_last_poll_ms = (time.monotonic() - self._last_poll_end) * 1000
        batch = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=max_records)
        # Newly assigned partitions get their state before any of their records is processed.
        self._sought.clear()
        for partition in sorted(self.awaiting_restore):
            for hook in self.assign_hooks:
                hook(partition)
        self.awaiting_restore.clear()
        for tp in [tp for tp in batch if tp.partition in self._sought]:
            del batch[tp]  # fetched from the committed offset; the restore replays from before it first
        taken = sum(map(len, batch.values()))
        catch_up_ms = self.config.fetch_catch_up_ms
        if batch and taken < max_records and catch_up_ms and since_last_poll_ms > catch_up_ms:
            self._catch_up(batch, max_records - taken)
        self._last_poll_end = time.monotonic()
        records: list[SourceRecord] = []
        for tp in sorted(batch, key=lambda tp: tp.partition):
            records.extend(map(new_source_record, map(_SOURCE_FIELDS, batch[tp])))
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
        """Read ``partition`` from ``offset`` next (a restore replaying from its checkpoint)."""
        self.consumer.seek(TopicPartition(self.topic, partition), offset)
        self._sought.add(partition)

    def rewind(self) -> list[int]:
        """Seek every assigned partition back to its committed offset; returns the partitions."""
        partitions = sorted(self.consumer.assignment(), key=lambda tp: tp.partition)
        for tp in partitions:
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
        return [tp.partition for tp in partitions]

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

    def channels(self) -> frozenset[Channel]:
        return frozenset(self._topics)

    def begin(self, source: Source, positions: dict[int, int]) -> None:
        if not self.config.transactions:
            super().begin(source, positions)
            return
        self.producer.begin_transaction()
        self._open = True
        if positions:  # a checkpoint of its own (a clean stop) consumes nothing
            self._offsets_sent = self._send_offsets(positions)

    def add(self, record: OutputRecord) -> None:
        self.producer.send(
            self._topics[record.channel],
            value=record.value,
            key=record.key,
            headers=list(record.headers) or None,
            partition=record.partition,
        )

    def flush(self) -> None:
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
            self.source.offsets(positions), self.source.consumer.group_metadata()
        )
        producer._sender.wakeup()
        return sent

    def commit(self) -> None:
        if not self.config.transactions:
            super().commit()
            return
        sent, self._offsets_sent = self._offsets_sent, None
        if sent is not None:
            sent.wait()  # raises what the broker answered, like send_offsets_to_transaction
        self.producer.commit_transaction()
        self._open = False

    def abort(self) -> None:
        self._offsets_sent = None
        if self._open:
            self._open = False
            try:
                self.producer.abort_transaction()
            except Exception:
                log.exception("abort_transaction failed")

    def close(self) -> None:
        self.abort()
        self.producer.close()
