//! The core of `detectors.state.SubjectStore`: every detector's and the policy's per-subject state, an LRU map
//! of subject → state with idle expiry and the tracking the changelog needs. Every event touches several
//! stores, so the map and its touch are compiled; the states stay Python objects (compiled or not).
//!
//! The changelog's hook (`before_change`, a bound method of the changelog, which holds the stores: a cycle)
//! lives in the Python subclass's `__dict__`, where the collector sees it; what this core holds (the factory,
//! the loader, states, subjects and sets of subjects) refers to no store.

use hashlink::LinkedHashMap;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyList, PySet, PyString, PyTuple, PyType};

/// A subject's id object (what callers gave, handed back by `items`) and its state.
type Entry = (Py<PyString>, Py<PyAny>);

/// Subjects in least recently seen order, each with its state; memory bounded by a cap on subjects (the least
/// recently seen goes first) and by idle expiry on event time, which is also checked on access, so whether a
/// subject was physically swept never changes a result.
#[pyclass(subclass, module = "detectors.native")]
pub struct SubjectStore {
    factory: Py<PyAny>,
    loader: Py<PyAny>,
    #[pyo3(get, set)]
    max_subjects: usize,
    #[pyo3(get, set)]
    idle_ttl_ms: i64,
    states: LinkedHashMap<Box<str>, Entry>,
    dirty: Py<PySet>,
    /// Off unless a changelog consumes the changes: a replay need not remember what it touched.
    #[pyo3(get, set)]
    track_changes: bool,
    /// Subjects a checkpoint under way has yet to write: `before_change` is called with one of them before the
    /// store changes or drops it (the changelog copies it then).
    #[pyo3(get, set)]
    unwritten: Py<PyAny>,
    #[pyo3(get)]
    evicted: u64,
}

#[pymethods]
impl SubjectStore {
    #[new]
    fn new(
        py: Python<'_>,
        factory: Py<PyAny>,
        loader: Py<PyAny>,
        max_subjects: usize,
        idle_ttl_ms: i64,
    ) -> PyResult<Self> {
        Ok(Self {
            factory,
            loader,
            max_subjects,
            idle_ttl_ms,
            states: LinkedHashMap::new(),
            dirty: PySet::empty(py)?.unbind(),
            track_changes: false,
            unwritten: PyFrozenSet::empty(py)?.into_any().unbind(),
            evicted: 0,
        })
    }

    /// `SubjectStore[S]` for a subclass's and an annotation's sake, as generic Python classes have it.
    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        cls.py()
            .import("types")?
            .getattr("GenericAlias")?
            .call1((cls, item))
    }

    fn __len__(&self) -> usize {
        self.states.len()
    }

    fn __contains__(&self, subject: &str) -> bool {
        self.states.contains_key(subject)
    }

    /// (subject, state) pairs, least recently seen first.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.states
                .values()
                .map(|(subject, state)| {
                    PyTuple::new(py, [subject.bind(py).as_any(), state.bind(py)])
                })
                .collect::<PyResult<Vec<_>>>()?,
        )
    }

    /// The subject's state, fresh if it is new or idle past the TTL; marks it recently used and dirty.
    #[pyo3(name = "touch")]
    fn py_touch(
        slf: &Bound<'_, Self>,
        subject: &Bound<'_, PyString>,
        now_ms: i64,
    ) -> PyResult<Py<PyAny>> {
        touch(slf, subject, now_ms, last_seen_ms)
    }

    /// Forget subjects idle past the TTL at this event time; returns how many went.
    fn expire(slf: &Bound<'_, Self>, watermark_ms: i64) -> PyResult<usize> {
        let py = slf.py();
        let stale: Vec<Py<PyString>> = {
            let this = slf.borrow();
            let mut stale = Vec::new();
            for (subject, state) in this.states.values() {
                if idle(&this, last_seen_ms(state.bind(py))?, watermark_ms) {
                    stale.push(subject.clone_ref(py));
                }
            }
            stale
        };
        for subject in &stale {
            before_change(slf, subject.bind(py))?;
            let mut this = slf.borrow_mut();
            this.states.remove(subject.bind(py).to_str()?);
            if this.track_changes {
                this.dirty.bind(py).add(subject)?;
            }
        }
        Ok(stale.len())
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = PyDict::new(py);
        for (subject, state) in self.states.values() {
            snapshot.set_item(subject, state.bind(py).call_method0(intern!(py, "dump"))?)?;
        }
        Ok(snapshot)
    }

    fn restore(&mut self, py: Python<'_>, snapshot: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut states = LinkedHashMap::new();
        for (subject, data) in snapshot.iter() {
            let subject = subject.cast_into::<PyString>()?;
            let state = self.loader.bind(py).call1((data,))?.unbind();
            states.insert(subject.to_str()?.into(), (subject.unbind(), state));
        }
        self.states = states;
        self.dirty.bind(py).clear();
        Ok(())
    }

    /// Subjects changed (or gone) since the last drain: what one batch's changelog must carry.
    fn drain_dirty(&mut self, py: Python<'_>) -> PyResult<Py<PySet>> {
        Ok(std::mem::replace(
            &mut self.dirty,
            PySet::empty(py)?.unbind(),
        ))
    }

    /// The subject's state as JSON-able data, or None when the store does not hold it.
    fn dump_of(&self, py: Python<'_>, subject: &str) -> PyResult<Option<Py<PyAny>>> {
        self.states
            .get(subject)
            .map(|(_, state)| Ok(state.bind(py).call_method0(intern!(py, "dump"))?.unbind()))
            .transpose()
    }

    /// Replay one changelog record (restore after a rebalance or crash): a state where it stood, or a new one
    /// at the most recently seen end; None drops the subject.
    fn apply_change(
        &mut self,
        py: Python<'_>,
        subject: &Bound<'_, PyString>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let key = subject.to_str()?;
        if data.is_none() {
            self.states.remove(key);
        } else {
            let state = self.loader.bind(py).call1((data,))?.unbind();
            self.states
                .replace(key.into(), (subject.clone().unbind(), state));
        }
        Ok(())
    }
}

/// Whether a state last seen at `last_seen_ms` was seen longer than the TTL before `at_ms`.
fn idle(store: &SubjectStore, last_seen_ms: i64, at_ms: i64) -> bool {
    at_ms - last_seen_ms > store.idle_ttl_ms
}

/// A state's `last_seen_ms`, which drives idle expiry, as Python reads it: any class of state.
fn last_seen_ms(state: &Bound<'_, PyAny>) -> PyResult<i64> {
    state
        .getattr(intern!(state.py(), "last_seen_ms"))?
        .extract()
}

/// A compiled state's `last_seen_ms`, read without a Python attribute lookup.
pub trait LastSeen {
    fn last_seen_ms(&self) -> i64;
}

/// The changelog's hook, when a checkpoint under way has yet to write this subject (no borrow held: it reads
/// the stores).
fn before_change(store: &Bound<'_, SubjectStore>, subject: &Bound<'_, PyString>) -> PyResult<()> {
    let py = store.py();
    let unwritten = store.borrow().unwritten.clone_ref(py);
    let unwritten = unwritten.bind(py);
    if unwritten.len()? > 0 && unwritten.contains(subject)? {
        store
            .getattr(intern!(py, "before_change"))?
            .call1((subject,))?;
    }
    Ok(())
}

/// `touch` for a detector's compiled step, whose store holds states of one compiled class.
pub fn touch_as<'py, T: pyo3::PyClass + LastSeen>(
    store: &Bound<'py, SubjectStore>,
    subject: &Bound<'py, PyString>,
    now_ms: i64,
) -> PyResult<Bound<'py, T>> {
    let last_seen = |state: &Bound<'_, PyAny>| Ok(state.cast::<T>()?.try_borrow()?.last_seen_ms());
    Ok(touch(store, subject, now_ms, last_seen)?
        .into_bound(store.py())
        .cast_into::<T>()?)
}

/// The subject's state, fresh if it is new or idle past the TTL; marks it recently used and dirty.
fn touch(
    slf: &Bound<'_, SubjectStore>,
    subject: &Bound<'_, PyString>,
    now_ms: i64,
    last_seen_ms: impl Fn(&Bound<'_, PyAny>) -> PyResult<i64>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let key = subject.to_str()?;
    before_change(slf, subject)?;
    let mut this = slf.borrow_mut();
    let live = match this.states.get(key) {
        Some((_, state)) => {
            (!idle(&this, last_seen_ms(state.bind(py))?, now_ms)).then(|| state.clone_ref(py))
        }
        None => None,
    };
    let state = match live {
        Some(state) => {
            this.states.to_back(key);
            state
        }
        None => {
            // New, or back after an idle spell: new, and so the most recently seen.
            this.states.remove(key);
            let state = this.factory.bind(py).call1((now_ms,))?.unbind();
            this.states
                .insert(key.into(), (subject.clone().unbind(), state.clone_ref(py)));
            if this.states.len() > this.max_subjects {
                let dropped = match this.states.front() {
                    Some((_, (dropped, _))) => dropped.clone_ref(py),
                    None => unreachable!("a store over its cap holds a subject"),
                };
                drop(this); // the hook reads the stores
                before_change(slf, dropped.bind(py))?;
                this = slf.borrow_mut();
                this.states.pop_front();
                this.evicted += 1;
                if this.track_changes {
                    this.dirty.bind(py).add(dropped)?;
                }
            }
            state
        }
    };
    if this.track_changes {
        this.dirty.bind(py).add(subject)?;
    }
    Ok(state)
}
