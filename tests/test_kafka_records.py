"""The compiled record reader against kafka-python's own: the same ConsumerRecords and fetch positions from the same
fetched bytes, built by kafka-python's batch builders (every message format, compression, transactions)."""

from __future__ import annotations

import struct
from collections import namedtuple
from typing import Any

import kafka.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import TopicPartition
from kafka.consumer.fetcher import Fetcher, IsolationLevel
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.record.util import calc_crc32c

from streams.kafka_records import CompiledPartitionRecords, compiled_partition_records
from streams.records import SourceRecord

TP = TopicPartition("usage", 3)
GZIP, ZSTD = 1, 4
TIMESTAMP_TYPE_BIT, CONTROL_BIT = 0x08, 0x20
ATTRIBUTES_AT, CRC_AT = 21, 17  # in a v2 batch header

nullable_bytes = st.none() | st.binary(max_size=40)
record = st.tuples(nullable_bytes, nullable_bytes, st.lists(st.tuples(st.text(max_size=8), nullable_bytes), max_size=3))
batch = st.fixed_dictionaries({
    "magic": st.sampled_from([0, 1, 2, 2, 2]),
    "compression": st.sampled_from([0, 0, GZIP, ZSTD]),
    "records": st.lists(record, min_size=1, max_size=12),
    "timestamp": st.integers(0, 2**41),
    "log_append_time": st.booleans(),
    "skip": st.integers(0, 3),
})


def _batch_bytes(spec: dict[str, Any], offset: int) -> bytes:
    magic, compression = spec["magic"], spec["compression"]
    if magic < 2 and compression == ZSTD:
        compression = GZIP  # zstd came with format v2
    builder = MemoryRecordsBuilder(magic, compression, batch_size=1 << 20, offset=offset)
    for at, (key, value, headers) in enumerate(spec["records"]):
        builder.append(spec["timestamp"] + at if magic else None, key, value, headers if magic == 2 else [])
    builder.close()
    data = builder.buffer()
    if magic == 2 and spec["log_append_time"]:
        data = _with_attribute_bits(data, TIMESTAMP_TYPE_BIT)
    return bytes(data)


def _with_attribute_bits(data: bytes | bytearray, bits: int) -> bytes:
    """A v2 batch with ``bits`` set in its attributes, its CRC made again (it covers the attributes onward)."""
    data = bytearray(data)
    (attributes,) = struct.unpack_from(">h", data, ATTRIBUTES_AT)
    struct.pack_into(">h", data, ATTRIBUTES_AT, attributes | bits)
    struct.pack_into(">I", data, CRC_AT, calc_crc32c(memoryview(data)[ATTRIBUTES_AT:]))
    return bytes(data)


def _fetched(specs: list[dict[str, Any]]) -> bytes:
    fetched, offset = b"", 0
    for spec in specs:
        offset += spec["skip"]  # gaps, as compaction leaves
        fetched += _batch_bytes(spec, offset)
        offset += len(spec["records"])
    return fetched


def _drain(
    kind: type[Any], fetched: bytes, fetch_offset: int = 0, take: int | None = None, **options: Any
) -> tuple[list[Any], list[int], type[Exception] | None, int]:
    """Every record ``kind`` hands out, taking ``take`` at a time; the fetch position after each take; the error
    that stopped it; the records it counted."""
    drained: list[Any] = []
    part = kind(fetch_offset, TP, MemoryRecords(fetched), on_drain=drained.append, **options)
    records: list[Any] = []
    positions: list[int] = []
    error = None
    while part:
        try:
            taken = part.take(take)
        except kafka.errors.CorruptRecordError as corrupt:
            error = type(corrupt)
            break
        records.extend(taken)
        positions.append(part.next_fetch_offset)
        if not taken:
            break
    return records, positions, error, part.records_read


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batch, min_size=1, max_size=4), st.integers(0, 6), st.sampled_from([None, 1, 5]))
def test_the_compiled_reader_hands_out_what_kafka_python_does(specs: list[dict[str, Any]], start: int,
                                                              take: int | None) -> None:
    fetched = _fetched(specs)
    expected = _drain(Fetcher.PartitionRecords, fetched, start, take)
    assert _drain(CompiledPartitionRecords, fetched, start, take) == expected
    assert expected[0] or start > 0  # the records were read, not lost on both sides
    records, *rest = _drain(compiled_partition_records(SourceRecord), fetched, start, take)
    assert (_as_source_records(expected[0]), *expected[1:]) == (records, *rest)
    assert all(type(record) is SourceRecord for record in records)


def _as_source_records(records: list[Any]) -> list[SourceRecord]:
    """kafka-python's records' fields that a SourceRecord has."""
    return [SourceRecord(record.value, record.partition, record.offset, record.key) for record in records]


def test_a_record_type_with_a_field_kafka_python_has_not_or_without_the_offset_is_refused() -> None:
    with pytest.raises(TypeError, match="no such field"):
        compiled_partition_records(namedtuple("Named", "value offset size"))
    with pytest.raises(TypeError, match="offset"):
        compiled_partition_records(namedtuple("Unplaced", "value partition"))


def test_records_carry_every_field_kafka_python_gives() -> None:
    spec = {"magic": 2, "compression": GZIP, "timestamp": 1_700_000_000_000, "log_append_time": False, "skip": 0,
            "records": [(b"acct-1", b'{"x": 1}', [("trace", b"abc"), ("é", None)]), (None, None, [])]}
    records, positions, error, read = _drain(CompiledPartitionRecords, _fetched([spec]))
    first, second = records
    assert (first.topic, first.partition, first.offset) == ("usage", 3, 0)
    assert (first.key, first.value) == (b"acct-1", b'{"x": 1}')
    assert first.headers == [("trace", b"abc"), ("é", None)]
    assert (first.serialized_key_size, first.serialized_value_size, first.serialized_header_size) == (6, 8, 10)
    assert (second.key, second.value, second.headers, second.serialized_header_size) == (None, None, [], -1)
    assert (second.timestamp, second.timestamp_type) == (1_700_000_000_001, 0)
    assert (positions[-1], error, read) == (2, None, 2)


ABORT_MARKER_KEY = struct.pack(">hh", 0, 0)  # a control record's version, then its type: 0 is an abort
AbortedTransaction = namedtuple("AbortedTransaction", "producer_id first_offset")  # a fetch response's entry


def _transactional(offset: int, values: list[bytes], producer_id: int, abort_marker: bool = False) -> bytes:
    builder = MemoryRecordsBuilder(2, 0, batch_size=1 << 20, offset=offset, transactional=True,
                                   producer_id=producer_id, producer_epoch=0, base_sequence=0)
    for value in values:
        builder.append(0, ABORT_MARKER_KEY if abort_marker else None, value)
    builder.close()
    data = builder.buffer()
    return _with_attribute_bits(data, CONTROL_BIT) if abort_marker else bytes(data)


def test_read_committed_skips_aborted_transactions_and_control_batches_as_kafka_python_does() -> None:
    fetched = (
        _transactional(0, [b"kept-1", b"kept-2"], producer_id=7)
        + _transactional(2, [b"aborted-1", b"aborted-2"], producer_id=8)
        + _transactional(4, [b"\x00\x00\x00\x00\x00\x00"], producer_id=8, abort_marker=True)
        + _transactional(5, [b"kept-3"], producer_id=8)
    )
    aborted = [AbortedTransaction(producer_id=8, first_offset=2)]
    options = {"isolation_level": IsolationLevel.READ_COMMITTED, "aborted_transactions": aborted}
    expected = _drain(Fetcher.PartitionRecords, fetched, **options)
    assert [record.value for record in expected[0]] == [b"kept-1", b"kept-2", b"kept-3"]
    assert _drain(CompiledPartitionRecords, fetched, **options) == expected


CORRUPTED = _batch_bytes({"magic": 2, "compression": 0, "timestamp": 5, "log_append_time": False, "skip": 0,
                          "records": [(b"k", b"value-one", [("h", b"v")]), (None, b"value-two", [])]}, 0)
RECORDS_AT = 61  # after the v2 batch header


@pytest.mark.parametrize("flip_at", range(RECORDS_AT, len(CORRUPTED)))
def test_a_corrupt_record_stops_both_readers_with_the_same_error(flip_at: int) -> None:
    """A byte changed inside the records, the CRC made again to match (as a broker bug would leave them)."""
    data = bytearray(CORRUPTED)
    data[flip_at] ^= 0xFF
    fetched = _with_attribute_bits(data, 0)
    theirs, _, their_error, _ = _drain(Fetcher.PartitionRecords, fetched)
    ours, _, our_error, _ = _drain(CompiledPartitionRecords, fetched)
    assert our_error == their_error
    assert ours == theirs[: len(ours)]
    picked, _, picked_error, _ = _drain(compiled_partition_records(SourceRecord), fetched)
    assert (picked, picked_error) == (_as_source_records(ours), our_error)
