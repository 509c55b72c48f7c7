//! Reading `models.telemetry.TelemetryEvent`s in a detector's compiled step over a batch.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

/// One event's fields, read from its `__dict__`: pydantic keeps every field there, and the derived values
/// (`ts_ms`, `key_subject`) are cached there once worked out. One not worked out yet is read as Python reads it,
/// which works it out and caches it for the next detector.
pub struct EventFields<'py> {
    event: Bound<'py, PyAny>,
    fields: Bound<'py, PyDict>,
}

impl<'py> EventFields<'py> {
    /// The event at `index` of a batch.
    pub fn at(events: &Bound<'py, PyList>, index: usize) -> PyResult<Self> {
        let event = events.get_item(index)?;
        let fields = event
            .getattr(pyo3::intern!(event.py(), "__dict__"))?
            .cast_into::<PyDict>()?;
        Ok(Self { event, fields })
    }

    pub fn get(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        match self.fields.get_item(name)? {
            Some(value) => Ok(value),
            None => self.event.getattr(name),
        }
    }

    pub fn string(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
        Ok(self.get(name)?.cast_into::<PyString>()?)
    }
}
