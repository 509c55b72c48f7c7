"""Fetched Kafka records read by compiled code.

kafka-python reads each record of a v2 record batch in Python: varints, slices, a `DefaultRecord`, then a
`ConsumerRecord`. That was ~5 µs a record, a third of a worker's time on a backlog. `CompiledPartitionRecords`
keeps kafka-python's handling of whole batches (the CRC check, aborted transactions, control batches, the fetch
position) and reads the records of a v2 batch with `native.RecordBatchReader`. The reader makes the same
`ConsumerRecord`s from the same bytes; `tests/test_kafka_records.py` holds the two to that.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kafka.errors
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord, Fetcher, IsolationLevel

from detectors.native import RecordBatchReader

_V2 = 2


class CompiledPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's records of one fetched partition, with the records of v2 batches read in compiled code.

    This overrides kafka-python's generator of records, written for kafka-python 3.0: the batch-level steps are
    its steps; only the loop over a batch's records is replaced. Batches of the old formats (v0, v1) and
    consumers with deserializers are left to kafka-python's own loop.
    """

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[ConsumerRecord]:
        if key_deserializer is not None or value_deserializer is not None:
            yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
            return
        reader = RecordBatchReader(ConsumerRecord, tp.topic, tp.partition)
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise kafka.errors.CorruptRecordError(
                    f"Record batch for partition {self.topic_partition} at offset {batch.base_offset} failed crc check"
                )
            if batch.magic != _V2:
                yield from self._legacy_records(tp, batch)
                batch = records.next_batch()
                continue
            self.leader_epoch = batch.leader_epoch
            if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
                self._consume_aborted_transactions_up_to(batch.last_offset)
                if self._contains_abort_marker(batch):
                    self.aborted_producer_ids.discard(batch.producer_id)
                elif self._is_batch_aborted(batch):
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                batch = records.next_batch()
                continue
            iter(batch)  # decompresses the records in place, when they are compressed
            unpacked, size, corrupt = reader.read(batch, batch._buffer, batch._pos)
            self.records_read += len(unpacked)
            self.bytes_read += size
            for record in unpacked:
                self.next_fetch_offset = record.offset + 1
                yield record
            if corrupt is not None:
                raise kafka.errors.CorruptRecordError(f"Found invalid record structure: {corrupt}")
            batch = records.next_batch()
        # Format v2 keeps a batch's last offset even when compaction removed its last record: fetching from
        # after it keeps the consumer from fetching the same batch again.
        if last_batch is not None and last_batch.magic == _V2:
            self.next_fetch_offset = last_batch.next_offset
        self.drain()

    def _legacy_records(self, tp: Any, batch: Any) -> Iterator[ConsumerRecord]:
        """A batch of message format v0 or v1, from topics written before Kafka 0.11, read by kafka-python."""
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise kafka.errors.CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset {record.offset} failed crc check"
                )
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            yield ConsumerRecord(
                tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp, record.timestamp_type,
                record.key, record.value, record.headers, record.checksum,
                len(record.key) if record.key is not None else -1,
                len(record.value) if record.value is not None else -1,
                -1,  # v0 and v1 records have no headers
            )


def read_records_compiled(consumer: KafkaConsumer) -> None:
    """Have ``consumer`` read its fetched records with `CompiledPartitionRecords`."""
    fetcher = consumer._fetcher
    if not isinstance(getattr(fetcher, "PartitionRecords", None), type):
        raise RuntimeError("this kafka-python's fetcher has no PartitionRecords to replace; Warden is written for 3.0")
    fetcher.PartitionRecords = CompiledPartitionRecords
