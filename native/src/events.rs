//! Reading `models.telemetry.TelemetryEvent`s in a detector's compiled step over a batch.

use pyo3::ffi;
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
        // `event.__dict__` without looking the attribute up on the type (pydantic's models declare `__getattr__`,
        // which makes every lookup a slow one).
        // SAFETY: a live object; PyObject_GenericGetDict returns a new reference or NULL with an error set.
        let fields = unsafe {
            Bound::from_owned_ptr_or_err(
                event.py(),
                ffi::PyObject_GenericGetDict(event.as_ptr(), std::ptr::null_mut()),
            )?
        }
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
