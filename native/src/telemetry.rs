//! A validated fast path for `streams.decode.decode_event`: telemetry in its plain shape becomes the same
//! `TelemetryEvent` that pydantic would make, without pydantic's per-field work; anything else is left to pydantic.
//!
//! The plain shape: a JSON object of the model's fields only (no unknown or repeated key), strings as strings,
//! the status as an integer, numbers as numbers, and `ts` as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`. The field list and
//! every constraint come from the model itself (`streams.decode` reads them), so a constraint cannot be skipped;
//! a record that breaks one, or any other record, gets `None` here and goes through pydantic, whose answer,
//! event or error, is the contract. `tests/test_decode_fast_path.py` holds the two to the same events.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{
    PyBytes, PyDateTime, PyDict, PyList, PySet, PyString, PyTuple, PyType, PyTzInfo,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Integer,
    Number,
    Timestamp,
}

struct Field {
    key: String,
    name: Py<PyString>,
    kind: Kind,
    optional: bool,
    min_length: usize,
    max_length: usize,
    ge: f64,
    le: f64,
    /// Whether its texts recur from record to record, and so are taken from the cache.
    recurs: bool,
}

enum Value<'a> {
    Absent,
    Null,
    Text(Cow<'a, str>),
    Integer(i64),
    Number(f64),
}

/// What `streams.decode` says of a field: name, kind, optional, min_length, max_length, ge, le.
type FieldSpec = (
    String,
    String,
    bool,
    Option<usize>,
    Option<usize>,
    Option<f64>,
    Option<f64>,
);

/// Microseconds since the epoch that a double holds exactly: past them, `datetime.timestamp()` rounds otherwise.
const EXACT_MICROSECONDS: i64 = 1 << 53;

/// Strings up to this long are taken from `StringCache`: a client's user agent (most under 200 bytes) recurs on
/// every call, and made fresh it cost each detector that looks it up a hash and a compare of its whole text.
const CACHED_STRING_BYTES: usize = 256;
const CACHED_STRINGS: usize = 1 << 12;

/// A string object of a recent record, with its text's hash: a lookup compares the hash before the text, so a miss
/// reads no text, and a hit reads the object's own (which the detectors have just used).
struct CachedString {
    hash: u64,
    object: Py<PyString>,
}

/// The string objects of recent records, one per slot by hash: a client's account, key, address and agent recur
/// on every call, so each becomes one object whose hash Python works out once for every store that looks it up.
struct StringCache {
    slots: Vec<Option<CachedString>>,
}

impl StringCache {
    fn string<'py>(&mut self, py: Python<'py>, text: &str) -> Bound<'py, PyString> {
        if text.len() > CACHED_STRING_BYTES {
            return PyString::new(py, text);
        }
        let hash = short_text_hash(text.as_bytes());
        let slot = &mut self.slots[hash as usize % CACHED_STRINGS];
        if let Some(cached) = slot {
            let object = cached.object.bind(py);
            if cached.hash == hash && object.to_str().is_ok_and(|cached| cached == text) {
                return object.clone();
            }
        }
        let fresh = PyString::new(py, text);
        *slot = Some(CachedString {
            hash,
            object: fresh.clone().unbind(),
        });
        fresh
    }
}

/// A slot-picking hash of a short text, eight bytes a step (FxHash's mixing): byte by byte, the hash took as
/// long as the rest of a lookup.
fn short_text_hash(bytes: &[u8]) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut hash = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(SEED);
    // The slot is the hash's low bits: fold the well-mixed high bits into them.
    hash ^ (hash >> 32)
}

/// A derived text field: fields' texts joined by a separator, an event's `key_subject` ("account/key").
struct Joined {
    name: Py<PyString>,
    separator: String,
    parts: Vec<usize>,
}

/// Decodes telemetry records in the plain shape into instances of `model`.
#[pyclass(module = "detectors.native")]
pub struct EventDecoder {
    strings: StringCache,
    model: Py<PyType>,
    fields: Vec<Field>,
    timestamp: usize,
    epoch_ms: Py<PyString>,
    joined: Joined,
    utc: Py<PyTzInfo>,
    object_new: Py<PyAny>,
    /// Every field as None, then the epoch milliseconds: a record's fields are copied into it in place, no dict
    /// growing as they come.
    blank: Py<PyDict>,
    /// Per set of fields a record has (a bit per field), the events' fields set: one set object for every event
    /// with those fields. A frozen event's fields set never changes (pydantic's `model_copy` copies it first).
    /// Only optional fields may be absent, so there are at most 2 to the power of their number.
    fields_sets: HashMap<u64, Py<PySet>>,
    /// Every event's `__pydantic_extra__`: empty, as the plain shape has no extra field, and as unchanging.
    no_extra: Py<PyDict>,
    dict_name: Py<PyString>,
    fields_set_name: Py<PyString>,
    extra_name: Py<PyString>,
    private_name: Py<PyString>,
}

#[pymethods]
impl EventDecoder {
    /// `fields`: per model field, in the model's order, `(name, kind, optional, min_length, max_length, ge, le)`
    /// with kind one of "text", "integer", "number", "timestamp" and None for an absent bound. `epoch_ms`: where
    /// an event keeps its time in epoch milliseconds once worked out (the model's derived field). `joined`:
    /// `(name, separator, parts)`, a derived field that is required text fields joined by a separator.
    /// `one_per_call`: text fields whose values seldom recur (a call's id), made fresh rather than cached, where
    /// each was a miss that pushed a recurring string out. The model must be frozen: events share their fields
    /// set and their empty extra fields.
    #[new]
    fn new(
        py: Python<'_>,
        model: Py<PyType>,
        fields: &Bound<'_, PyList>,
        epoch_ms: &Bound<'_, PyString>,
        joined: (Bound<'_, PyString>, String, Vec<String>),
        one_per_call: Vec<String>,
    ) -> PyResult<Self> {
        let mut parsed = Vec::new();
        for spec in fields.iter() {
            let spec = spec.cast_into::<PyTuple>()?;
            let (key, kind, optional, min_length, max_length, ge, le): FieldSpec =
                spec.extract()?;
            let kind = match kind.as_str() {
                "text" => Kind::Text,
                "integer" => Kind::Integer,
                "number" => Kind::Number,
                "timestamp" => Kind::Timestamp,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "field {key}: no fast path for a field of kind {other:?}"
                    )))
                }
            };
            if one_per_call.contains(&key) && kind != Kind::Text {
                return Err(PyValueError::new_err(format!(
                    "field {key}: only text fields are made fresh"
                )));
            }
            parsed.push(Field {
                name: PyString::intern(py, &key).unbind(),
                recurs: !one_per_call.contains(&key),
                key,
                kind,
                optional,
                min_length: min_length.unwrap_or(0),
                max_length: max_length.unwrap_or(usize::MAX),
                ge: ge.unwrap_or(f64::NEG_INFINITY),
                le: le.unwrap_or(f64::INFINITY),
            });
        }
        let timestamps: Vec<usize> = (0..parsed.len())
            .filter(|&at| parsed[at].kind == Kind::Timestamp)
            .collect();
        let [timestamp] = timestamps.as_slice() else {
            return Err(PyValueError::new_err(
                "the fast path needs exactly one timestamp field",
            ));
        };
        let (joined_name, separator, joined_parts) = joined;
        let parts = joined_parts
            .iter()
            .map(
                |part| match parsed.iter().position(|field| field.key == *part) {
                    Some(at) if parsed[at].kind == Kind::Text && !parsed[at].optional => Ok(at),
                    _ => Err(PyValueError::new_err(format!(
                        "{part}: only required text fields are joined"
                    ))),
                },
            )
            .collect::<PyResult<Vec<usize>>>()?;
        let intern = |name: &str| PyString::intern(py, name).unbind();
        if parsed.len() > 64 {
            return Err(PyValueError::new_err(
                "the fast path takes models of up to 64 fields",
            ));
        }
        if let Some(unknown) = one_per_call
            .iter()
            .find(|key| !parsed.iter().any(|field| field.key == **key))
        {
            return Err(PyValueError::new_err(format!("{unknown}: no such field")));
        }
        let blank = PyDict::new(py);
        for field in &parsed {
            blank.set_item(field.name.bind(py), py.None())?;
        }
        blank.set_item(epoch_ms, 0)?;
        blank.set_item(&joined_name, "")?;
        Ok(Self {
            joined: Joined {
                name: joined_name.unbind(),
                separator,
                parts,
            },
            blank: blank.unbind(),
            fields_sets: HashMap::new(),
            no_extra: PyDict::new(py).unbind(),
            strings: StringCache {
                slots: (0..CACHED_STRINGS).map(|_| None).collect(),
            },
            model,
            timestamp: *timestamp,
            fields: parsed,
            epoch_ms: epoch_ms.clone().unbind(),
            utc: PyTzInfo::utc(py)?.to_owned().unbind(),
            object_new: py
                .import("builtins")?
                .getattr("object")?
                .getattr("__new__")?
                .unbind(),
            dict_name: intern("__dict__"),
            fields_set_name: intern("__pydantic_fields_set__"),
            extra_name: intern("__pydantic_extra__"),
            private_name: intern("__pydantic_private__"),
        })
    }

    /// ``decode_batch(values, max_bytes)``: `decode` of each record of a batch, in a list, with the indices of
    /// the records it declined (None in the list): those not in the plain shape, longer than `max_bytes`, or
    /// with no bytes at all (a Kafka tombstone's None).
    fn decode_batch<'py>(
        &mut self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
        max_bytes: usize,
    ) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
        let decoded = PyList::empty(py);
        let mut declined = Vec::new();
        for (at, value) in values.iter().enumerate() {
            let event = match value.cast::<PyBytes>() {
                Ok(bytes) if bytes.as_bytes().len() <= max_bytes => {
                    self.decode(py, bytes.as_bytes())?
                }
                _ => None,
            };
            if event.is_none() {
                declined.push(at);
            }
            decoded.append(event)?;
        }
        Ok((decoded, declined))
    }

    /// The event the record holds, or None when it is not in the plain shape (pydantic then decides).
    fn decode<'py>(
        &mut self,
        py: Python<'py>,
        value: &[u8],
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut reader = serde_json::Deserializer::from_slice(value);
        let Ok(values) = reader.deserialize_map(RecordVisitor {
            fields: &self.fields,
        }) else {
            return Ok(None);
        };
        if reader.end().is_err() {
            return Ok(None);
        }
        let time = match &values[self.timestamp] {
            Value::Text(ts) => UtcTime::parse(ts),
            Value::Integer(epoch_ms) => UtcTime::from_epoch_ms(*epoch_ms),
            _ => None,
        };
        let Some(time) = time else {
            return Ok(None);
        };
        if !self
            .fields
            .iter()
            .zip(&values)
            .all(|(field, value)| field.admits(value))
        {
            return Ok(None);
        }
        let data = self.blank.bind(py).copy()?;
        for (field, value) in self.fields.iter().zip(&values) {
            let name = field.name.bind(py);
            match value {
                Value::Absent | Value::Null => {} // None already
                Value::Text(_) | Value::Integer(_) if field.kind == Kind::Timestamp => {
                    data.set_item(name, time.datetime(py, self.utc.bind(py))?)?
                }
                Value::Text(text) if field.recurs => {
                    data.set_item(name, self.strings.string(py, text))?
                }
                Value::Text(text) => data.set_item(name, PyString::new(py, text))?,
                Value::Integer(number) => data.set_item(name, number)?,
                Value::Number(number) => data.set_item(name, number)?,
            }
        }
        let present = self.fields_set(py, &values)?;
        // Worked out now, while the parts are at hand: the value the model's derived field would compute.
        data.set_item(self.epoch_ms.bind(py), time.epoch_ms())?;
        let texts = self.joined.parts.iter().map(|&at| match &values[at] {
            Value::Text(text) => text.as_ref(),
            _ => unreachable!("a required text field admitted holds text"),
        });
        let joined = texts.collect::<Vec<&str>>().join(&self.joined.separator);
        // Recurring (a key's every call), so from the cache: one object, its hash worked out once.
        data.set_item(self.joined.name.bind(py), self.strings.string(py, &joined))?;
        let event = self.object_new.bind(py).call1((self.model.bind(py),))?;
        // As `model_construct` sets them: past the frozen model's __setattr__.
        for (name, value) in [
            (&self.dict_name, data.into_any()),
            (&self.fields_set_name, present.into_any()),
            (&self.extra_name, self.no_extra.bind(py).clone().into_any()),
            (&self.private_name, py.None().into_bound(py)),
        ] {
            // SAFETY: live objects; generic setattr stores into the instance's dict slot or slots.
            if unsafe {
                ffi::PyObject_GenericSetAttr(event.as_ptr(), name.as_ptr(), value.as_ptr())
            } < 0
            {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(Some(event))
    }
}

impl EventDecoder {
    /// The fields set of an event with these values: the fields not absent from its record.
    fn fields_set<'py>(
        &mut self,
        py: Python<'py>,
        values: &[Value<'_>],
    ) -> PyResult<Bound<'py, PySet>> {
        let present = values
            .iter()
            .enumerate()
            .filter(|(_, value)| !matches!(value, Value::Absent))
            .fold(0u64, |bits, (at, _)| bits | 1 << at);
        if let Some(set) = self.fields_sets.get(&present) {
            return Ok(set.bind(py).clone());
        }
        let set = PySet::empty(py)?;
        for (at, field) in self.fields.iter().enumerate() {
            if present & 1 << at != 0 {
                set.add(field.name.bind(py))?;
            }
        }
        self.fields_sets.insert(present, set.clone().unbind());
        Ok(set)
    }
}

impl Field {
    fn admits(&self, value: &Value<'_>) -> bool {
        match value {
            Value::Absent | Value::Null => self.optional,
            Value::Text(text) => {
                self.kind == Kind::Timestamp
                    || (self.min_length..=self.max_length).contains(&text.chars().count())
            }
            Value::Integer(_) if self.kind == Kind::Timestamp => true, // its range is `from_epoch_ms`'s
            Value::Integer(number) => {
                let number = *number as f64;
                number >= self.ge && number <= self.le
            }
            Value::Number(number) => *number >= self.ge && *number <= self.le,
        }
    }
}

/// A UTC time to the microsecond, as the plain shape writes it.
struct UtcTime {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    microsecond: u32,
}

impl UtcTime {
    /// `YYYY-MM-DDTHH:MM:SS[.f to .ffffff]Z` with every part in range, or None.
    fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let number = |from: usize, to: usize| -> Option<u32> {
            bytes.get(from..to)?.iter().try_fold(0u32, |sum, &byte| {
                byte.is_ascii_digit()
                    .then(|| sum * 10 + u32::from(byte - b'0'))
            })
        };
        let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
        if bytes.len() < 20
            || bytes.last() != Some(&b'Z')
            || separators.iter().any(|&(at, byte)| bytes[at] != byte)
        {
            return None;
        }
        // The fraction, its dot included: none, or 1 to 6 digits.
        let microsecond = match bytes.len() - 20 {
            0 => 0,
            fraction @ 2..=7 if bytes[19] == b'.' => {
                number(20, 19 + fraction)? * 10u32.pow(7 - fraction as u32)
            }
            _ => return None,
        };
        let time = Self {
            year: number(0, 4)? as i32,
            month: number(5, 7)? as u8,
            day: number(8, 10)? as u8,
            hour: number(11, 13)? as u8,
            minute: number(14, 16)? as u8,
            second: number(17, 19)? as u8,
            microsecond,
        };
        let in_range = time.year >= 1
            && (1..=12).contains(&time.month)
            && time.day >= 1
            && time.day <= days_in_month(time.year, time.month)
            && time.hour < 24
            && time.minute < 60
            && time.second < 60
            && time.exact_in_a_double();
        in_range.then_some(time)
    }

    /// Whether `datetime.timestamp()` of this time is its microseconds over 10**6 as `epoch_ms` divides them:
    /// only while a double holds the microseconds exactly. Later times (past the year 2255) go to pydantic.
    fn exact_in_a_double(&self) -> bool {
        self.epoch_microseconds().abs() < EXACT_MICROSECONDS
    }

    /// The time the model makes of epoch milliseconds (a JSON integer): pydantic reads the integer as a float,
    /// `timestamps._epoch_ms_to_utc` checks its range and returns `datetime.fromtimestamp(ms / 1000.0, tz=UTC)`,
    /// whose microsecond CPython rounds half to even from the float's fraction (`_PyTime_DoubleToDenominator`).
    fn from_epoch_ms(epoch_ms: i64) -> Option<Self> {
        if !(0..=MAX_EPOCH_MS).contains(&epoch_ms) {
            return None;
        }
        let seconds = epoch_ms as f64 / 1000.0; // exact below 2**53, as Python's float() of the integer is
        let mut whole = seconds.trunc();
        let mut fraction = round_half_even((seconds - whole) * 1e6);
        if fraction >= 1e6 {
            fraction -= 1e6;
            whole += 1.0;
        }
        let whole = whole as i64;
        let (year, month, day) = civil_from_days(whole.div_euclid(86_400));
        let second_of_day = whole.rem_euclid(86_400);
        let time = Self {
            year,
            month,
            day,
            hour: (second_of_day / 3_600) as u8,
            minute: (second_of_day / 60 % 60) as u8,
            second: (second_of_day % 60) as u8,
            microsecond: fraction as u32,
        };
        time.exact_in_a_double().then_some(time)
    }

    fn epoch_microseconds(&self) -> i64 {
        let seconds = days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        seconds * 1_000_000 + i64::from(self.microsecond)
    }

    /// `int(datetime.timestamp() * 1000)`: the microseconds over 10**6 (exact integers, so correctly rounded, as
    /// Python divides them), times 1000, truncated.
    fn epoch_ms(&self) -> i64 {
        (self.epoch_microseconds() as f64 / 1e6 * 1000.0).trunc() as i64
    }

    fn datetime<'py>(
        &self,
        py: Python<'py>,
        utc: &Bound<'py, PyTzInfo>,
    ) -> PyResult<Bound<'py, PyDateTime>> {
        PyDateTime::new(
            py,
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.microsecond,
            Some(utc),
        )
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `timestamps._MAX_EPOCH_MS`: 9999-12-31T23:59:59.999Z, the last time a datetime holds.
const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// CPython's `_PyTime_RoundHalfEven`.
fn round_half_even(value: f64) -> f64 {
    let rounded = value.round();
    if (value - rounded).abs() == 0.5 {
        2.0 * (value / 2.0).round()
    } else {
        rounded
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u8;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The record's object: each key must name a field, once.
struct RecordVisitor<'f> {
    fields: &'f [Field],
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Vec<Value<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a telemetry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: Vec<Value<'de>> = self.fields.iter().map(|_| Value::Absent).collect();
        // Producers write the fields in one order, mostly the model's: the field after the last is tried first.
        let mut next = 0;
        while let Some(key) = map.next_key_seed(TextSeed)? {
            let at = match self.fields.get(next) {
                Some(field) if field.key == *key => next,
                _ => match self.fields.iter().position(|field| field.key == *key) {
                    Some(at) => at,
                    None => return Err(de::Error::custom("a key that is no field")),
                },
            };
            next = at + 1;
            if !matches!(values[at], Value::Absent) {
                return Err(de::Error::custom("a repeated key"));
            }
            values[at] = map.next_value_seed(ValueSeed {
                kind: self.fields[at].kind,
            })?;
        }
        Ok(values)
    }
}

/// A JSON string, borrowed from the record unless it has escapes.
struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text))
    }
}

/// A field's value as its kind takes it in the plain shape: null, or a string, an integer or a number.
struct ValueSeed {
    kind: Kind,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a value in the plain shape")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        self.text(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        self.text(Cow::Owned(text.to_owned()))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        match self.kind {
            Kind::Integer | Kind::Timestamp => Ok(Value::Integer(number)),
            Kind::Number => Ok(Value::Number(number as f64)),
            _ => Err(E::custom("a number where the plain shape has none")),
        }
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        match self.kind {
            Kind::Integer | Kind::Timestamp => i64::try_from(number)
                .map(Value::Integer)
                .map_err(|_| E::custom("an integer past 64 bits")),
            Kind::Number => Ok(Value::Number(number as f64)),
            _ => Err(E::custom("a number where the plain shape has none")),
        }
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        match self.kind {
            // serde_json reads both "-0" and "-0.0" as -0.0, where Python reads the first as the integer 0.
            Kind::Number if number == 0.0 && number.is_sign_negative() => {
                Err(E::custom("a negative zero, integer or not"))
            }
            Kind::Number => Ok(Value::Number(number)),
            _ => Err(E::custom("a fraction where the plain shape has none")),
        }
    }
}

impl ValueSeed {
    fn text<'de, E: de::Error>(&self, text: Cow<'de, str>) -> Result<Value<'de>, E> {
        match self.kind {
            Kind::Text | Kind::Timestamp => Ok(Value::Text(text)),
            _ => Err(E::custom("a string where the plain shape has a number")),
        }
    }
}
