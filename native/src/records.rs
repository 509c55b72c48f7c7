//! Kafka record batches of message format v2, read into kafka-python's `ConsumerRecord`s: the per-record loop of
//! kafka-python's `DefaultRecordBatch` and `PartitionRecords`, compiled. It makes the same records from the same
//! bytes (`tests/test_kafka_records.py` holds it to kafka-python's own reader), or records of some of their
//! fields, picked by name: Warden's `SourceRecord`, without making the fields it has no use for.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

/// A field of kafka-python's `ConsumerRecord`: topic, partition, leader epoch, offset, timestamp, timestamp type,
/// key, value, headers, checksum, and the key's, value's and headers' sizes.
#[derive(Clone, Copy, PartialEq)]
enum RecordField {
    Topic,
    Partition,
    LeaderEpoch,
    Offset,
    Timestamp,
    TimestampType,
    Key,
    Value,
    Headers,
    Checksum,
    KeySize,
    ValueSize,
    HeadersSize,
}

/// `ConsumerRecord`'s field names, the names a record type's fields are picked by.
const RECORD_FIELDS: [(&str, RecordField); 13] = [
    ("topic", RecordField::Topic),
    ("partition", RecordField::Partition),
    ("leader_epoch", RecordField::LeaderEpoch),
    ("offset", RecordField::Offset),
    ("timestamp", RecordField::Timestamp),
    ("timestamp_type", RecordField::TimestampType),
    ("key", RecordField::Key),
    ("value", RecordField::Value),
    ("headers", RecordField::Headers),
    ("checksum", RecordField::Checksum),
    ("serialized_key_size", RecordField::KeySize),
    ("serialized_value_size", RecordField::ValueSize),
    ("serialized_header_size", RecordField::HeadersSize),
];

/// Why a batch's records stopped: bytes that do not parse (the records before them are still handed out, as
/// kafka-python hands out a batch's records up to the one that fails), or an error in Python.
enum Failure {
    Corrupt(String),
    Python(PyErr),
}

impl From<PyErr> for Failure {
    fn from(error: PyErr) -> Self {
        Self::Python(error)
    }
}

impl From<std::convert::Infallible> for Failure {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

fn corrupt<T>(reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Corrupt(reason.into()))
}

/// A cursor over a batch's records, reading them as kafka-python's `decode_varint` and `_read_msg` do.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, Failure> {
        let Some(&byte) = self.bytes.get(self.at) else {
            return corrupt("a record runs past the end of its batch");
        };
        self.at += 1;
        Ok(byte)
    }

    /// A zigzag varint of up to ten bytes. Ten bytes can hold more than 64 bits, which kafka-python reads as a
    /// Python int too, so the value is wider than i64.
    fn varint(&mut self) -> Result<i128, Failure> {
        let mut value: u128 = 0;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i128) ^ -((value & 1) as i128));
            }
            shift += 7;
            if shift >= 64 {
                return corrupt("a varint out of int64 range");
            }
        }
    }

    /// A length, then that many bytes; any negative length is null.
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, Failure> {
        let length = self.varint()?;
        if length < 0 {
            return Ok(None);
        }
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| self.at.checked_add(length))
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return corrupt("a record runs past the end of its batch");
        };
        let field = &self.bytes[self.at..end];
        self.at = end;
        Ok(Some(field))
    }
}

/// The fields every record of one batch shares.
struct BatchHeader {
    base_offset: i128,
    leader_epoch: Py<PyAny>,
    first_timestamp: i128,
    max_timestamp: Py<PyAny>,
    log_append_time: bool,
    timestamp_type: Py<PyAny>,
}

/// Reads one partition's v2 record batches into records of `record_type`: a namedtuple of `ConsumerRecord`'s fields,
/// all of them (kafka-python's `ConsumerRecord` class) or some, in any order. The topic and partition are given once.
#[pyclass(module = "detectors.native")]
pub struct RecordBatchReader {
    record_type: Py<PyType>,
    fields: Vec<RecordField>,
    topic: Py<PyString>,
    partition: Py<PyAny>,
}

#[pymethods]
impl RecordBatchReader {
    #[new]
    fn new(
        record_type: Bound<'_, PyType>,
        topic: Bound<'_, PyString>,
        partition: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        if !record_type.is_subclass_of::<PyTuple>()? {
            return Err(PyTypeError::new_err("records are namedtuples"));
        }
        let names: Vec<String> = record_type.getattr("_fields")?.extract()?;
        let fields = names
            .iter()
            .map(|name| {
                RECORD_FIELDS
                    .iter()
                    .find(|(known, _)| known == name)
                    .map(|&(_, field)| field)
                    .ok_or_else(|| {
                        PyTypeError::new_err(format!("{name}: a ConsumerRecord has no such field"))
                    })
            })
            .collect::<PyResult<Vec<RecordField>>>()?;
        Ok(Self {
            record_type: record_type.unbind(),
            fields,
            topic: topic.unbind(),
            partition: partition.unbind(),
        })
    }

    /// The records of `batch` (a kafka-python `DefaultRecordBatch`, its header read through its properties),
    /// whose records are `buffer[start:]` (decompressed already). Returns the records, their size in bytes as
    /// kafka-python counts it, and why the batch stopped short, if it did: a record that does not parse, or
    /// bytes left after the last record.
    fn read<'py>(
        &self,
        batch: &Bound<'py, PyAny>,
        buffer: &Bound<'py, PyAny>,
        start: usize,
    ) -> PyResult<(Bound<'py, PyList>, u64, Option<String>)> {
        let py = batch.py();
        let timestamp_type = batch.getattr("timestamp_type")?;
        let header = BatchHeader {
            base_offset: batch.getattr("base_offset")?.extract()?,
            leader_epoch: batch.getattr("leader_epoch")?.unbind(),
            first_timestamp: batch.getattr("first_timestamp")?.extract()?,
            max_timestamp: batch.getattr("max_timestamp")?.unbind(),
            log_append_time: timestamp_type.extract::<i64>()? == 1,
            timestamp_type: timestamp_type.unbind(),
        };
        let count: usize = batch.getattr("records_count")?.extract()?;
        // A copy: making the records runs Python (the collector), which must not see the buffer borrowed.
        let bytes: Vec<u8> = buffer.extract()?;
        let records = PyList::empty(py);
        let mut cursor = Cursor {
            bytes: bytes.get(start..).unwrap_or_default(),
            at: 0,
        };
        let mut size = 0u64;
        for _ in 0..count {
            let before = cursor.at;
            match self.record(py, &header, &mut cursor) {
                Ok(record) => records.append(record)?,
                Err(Failure::Corrupt(reason)) => return Ok((records, size, Some(reason))),
                Err(Failure::Python(error)) => return Err(error),
            }
            size += (cursor.at - before) as u64;
        }
        let left = cursor.bytes.len() - cursor.at;
        let unconsumed =
            (left > 0).then(|| format!("{left} unconsumed bytes after all records consumed"));
        Ok((records, size, unconsumed))
    }
}

impl RecordBatchReader {
    fn record<'py>(
        &self,
        py: Python<'py>,
        header: &BatchHeader,
        cursor: &mut Cursor<'_>,
    ) -> Result<Bound<'py, PyAny>, Failure> {
        let length = cursor.varint()?;
        let body_start = cursor.at;
        cursor.varint()?; // the record's attributes: none is defined
        let timestamp_delta = cursor.varint()?;
        let offset = header.base_offset + cursor.varint()?;
        let key = cursor.nullable()?;
        let value = cursor.nullable()?;
        let header_count = cursor.varint()?;
        if header_count < 0 {
            return corrupt(format!(
                "found invalid number of record headers {header_count}"
            ));
        }
        let headers = self
            .fields
            .contains(&RecordField::Headers)
            .then(|| PyList::empty(py));
        let mut header_size = 0usize;
        for _ in 0..header_count {
            let Some(name) = cursor.nullable()? else {
                return corrupt("a header key of negative size");
            };
            let Ok(name) = std::str::from_utf8(name) else {
                return corrupt("a header key that is not UTF-8");
            };
            let content = cursor.nullable()?;
            header_size += name.len() + content.map_or(0, <[u8]>::len);
            if let Some(headers) = &headers {
                headers.append((name, content.map(|content| PyBytes::new(py, content))))?;
            }
        }
        if i128::try_from(cursor.at - body_start).ok() != Some(length) {
            return corrupt(format!(
                "invalid record size: expected to read {length} bytes in record payload, but instead read {}",
                cursor.at - body_start
            ));
        }
        let none = || py.None().into_bound(py);
        let bytes = |field: Option<&[u8]>| {
            field.map_or_else(none, |field| PyBytes::new(py, field).into_any())
        };
        let mut headers = headers;
        let fields = self.fields.iter().map(|field| match field {
            RecordField::Topic => self.topic.bind(py).clone().into_any(),
            RecordField::Partition => self.partition.bind(py).clone(),
            RecordField::LeaderEpoch => header.leader_epoch.bind(py).clone(),
            RecordField::Offset => int(py, offset),
            RecordField::Timestamp if header.log_append_time => {
                header.max_timestamp.bind(py).clone()
            }
            RecordField::Timestamp => int(py, header.first_timestamp + timestamp_delta),
            RecordField::TimestampType => header.timestamp_type.bind(py).clone(),
            RecordField::Key => bytes(key),
            RecordField::Value => bytes(value),
            RecordField::Headers => headers.take().map_or_else(none, Bound::into_any),
            RecordField::Checksum => none(),
            RecordField::KeySize => int(py, size_field(key)),
            RecordField::ValueSize => int(py, size_field(value)),
            RecordField::HeadersSize if header_count == 0 => int(py, -1),
            RecordField::HeadersSize => int(py, header_size as i128),
        });
        Ok(self.new_record(py, fields)?)
    }

    /// A record of ``fields``, made as `tuple.__new__(record_type, fields)` makes it (a namedtuple is a tuple
    /// subclass without a `__dict__`), without the call's argument tuples.
    fn new_record<'py>(
        &self,
        py: Python<'py>,
        fields: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record_type = self.record_type.bind(py);
        // SAFETY: `record_type` is a tuple subclass (checked in `new`), so its instances are tuples of the length
        // allocated, one slot per field of the type; each slot is set once, taking over the reference `into_ptr`
        // gives up.
        unsafe {
            let record = ffi::PyType_GenericAlloc(
                record_type.as_type_ptr(),
                self.fields.len() as ffi::Py_ssize_t,
            );
            let record = Bound::from_owned_ptr_or_err(py, record)?;
            for (at, field) in fields.into_iter().enumerate() {
                ffi::PyTuple_SET_ITEM(record.as_ptr(), at as ffi::Py_ssize_t, field.into_ptr());
            }
            Ok(record)
        }
    }
}

/// A Python int, through a machine integer whenever it fits one.
fn int(py: Python<'_>, value: i128) -> Bound<'_, PyAny> {
    match i64::try_from(value) {
        Ok(value) => value.into_pyobject(py).map(Bound::into_any),
        Err(_) => value.into_pyobject(py).map(Bound::into_any),
    }
    .unwrap_or_else(|never| match never {})
}

/// A key's or value's size as kafka-python's `ConsumerRecord` gives it: -1 for null.
fn size_field(field: Option<&[u8]>) -> i128 {
    field.map_or(-1, |field| field.len() as i128)
}
