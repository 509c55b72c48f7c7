"""Fetched Kafka records read by compiled code.

kafka-python reads each record of a v2 record batch in Python: varints, slices, a `DefaultRecord`, then a
`ConsumerRecord`. That was ~5 µs a record, a third of a worker's time on a backlog. `CompiledPartitionRecords`
keeps kafka-python's handling of whole batches (the CRC check, aborted transactions, control batches, the fetch
position) and reads the records of a v2 batch with `native.RecordBatchReader`. The reader makes the same
`ConsumerRecord`s from the same bytes; `tests/test_kafka_records.py` holds the two to that. A consumer may take
records of some of `ConsumerRecord`'s fields instead (Warden's input consumer takes `SourceRecord`s): only those
fields are made, and no `ConsumerRecord` is made to be copied and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
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

    record_type: type[tuple[Any, ...]] = ConsumerRecord
    """The records handed out: a namedtuple of `ConsumerRecord`'s fields (``read_records_compiled``)."""
    record_fields: tuple[str, ...] = ConsumerRecord._fields

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[Any]:
        if key_deserializer is not None or value_deserializer is not None:
            for record in super()._unpack_records(tp, records, key_deserializer, value_deserializer):
                yield self._picked(record)
            return
        reader = RecordBatchReader(self.record_type, tp.topic, tp.partition)
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

    def _picked(self, record: ConsumerRecord) -> Any:
        """A `ConsumerRecord`'s fields as a record of ``record_type``."""
        if self.record_type is ConsumerRecord:
            return record
        return tuple.__new__(self.record_type, (getattr(record, name) for name in self.record_fields))

    def _legacy_records(self, tp: Any, batch: Any) -> Iterator[Any]:
        """A batch of message format v0 or v1, from topics written before Kafka 0.11, read by kafka-python."""
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise kafka.errors.CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset {record.offset} failed crc check"
                )
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            yield self._picked(ConsumerRecord(
                tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp, record.timestamp_type,
                record.key, record.value, record.headers, record.checksum,
                len(record.key) if record.key is not None else -1,
                len(record.value) if record.value is not None else -1,
                -1,  # v0 and v1 records have no headers
            ))


def read_records_compiled(consumer: KafkaConsumer, record_type: type[tuple[Any, ...]] = ConsumerRecord) -> None:
    """Have ``consumer`` read its fetched records with `CompiledPartitionRecords`, handing out records of
    ``record_type``: a namedtuple of some of `ConsumerRecord`'s fields, ``offset`` among them (kafka-python reads
    it), or `ConsumerRecord` itself."""
    fetcher = consumer._fetcher
    if not isinstance(getattr(fetcher, "PartitionRecords", None), type):
        raise RuntimeError("this kafka-python's fetcher has no PartitionRecords to replace; Warden is written for 3.0")
    fetcher.PartitionRecords = compiled_partition_records(record_type)


@cache
def compiled_partition_records(record_type: type[tuple[Any, ...]]) -> type[CompiledPartitionRecords]:
    """`CompiledPartitionRecords` handing out records of ``record_type``."""
    if record_type is ConsumerRecord:
        return CompiledPartitionRecords
    RecordBatchReader(record_type, "", 0)  # refuses a field ConsumerRecord has not
    fields: tuple[str, ...] = record_type._fields  # type: ignore[attr-defined]  # a namedtuple's
    if "offset" not in fields:
        raise TypeError(f"{record_type.__name__}: kafka-python reads a record's offset")
    name = f"CompiledPartitionRecordsOf{record_type.__name__}"
    return type(name, (CompiledPartitionRecords,), {"record_type": record_type, "record_fields": fields})
