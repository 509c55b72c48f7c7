//! The per-event path of `detectors.traffic`: a subject's open bucket (`TrafficSubject`) and the `TrafficWindow`
//! that counts each event into its account's and its key's, closing buckets into their seasonal models. Scoring
//! (thresholds, assessments, findings) stays in Python, where it runs only once a bucket passes a floor.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::seasonal::{LaneLearner, MAX_LANES};
use crate::state::{touch_as, SubjectStore};

/// The signals' lanes in a subject's seasonal state: requests, credits, auth and rate-limit errors.
const SIGNALS: usize = 3;

/// One account's or key's open bucket, and its signals' seasonal state (`detectors.seasonal.SeasonalState`).
#[pyclass(module = "detectors.native")]
pub struct TrafficSubject {
    #[pyo3(get, set)]
    last_seen_ms: i64,
    /// The open bucket's number (event time over the bucket length), -1 before the first event.
    #[pyo3(get)]
    bucket: i64,
    #[pyo3(get)]
    requests: i64,
    #[pyo3(get)]
    credits: f64,
    #[pyo3(get)]
    errors: i64,
    #[pyo3(get, set)]
    last_flag_ms: Option<i64>,
    #[pyo3(get)]
    model: Py<PyAny>,
    /// Requests, credits and errors under which the open bucket cannot be flagged (None: not yet worked out for
    /// this bucket). Derived from the models once per bucket, so not in dumps.
    #[pyo3(get, set)]
    alarm_floors: Option<(f64, f64, f64)>,
}

#[pymethods]
impl TrafficSubject {
    #[new]
    fn new(last_seen_ms: i64, model: Py<PyAny>) -> Self {
        Self {
            last_seen_ms,
            bucket: -1,
            requests: 0,
            credits: 0.0,
            errors: 0,
            last_flag_ms: None,
            model,
            alarm_floors: None,
        }
    }

    /// The open bucket's value of each signal: requests, credits, errors.
    fn observed(&self) -> (f64, f64, f64) {
        (self.requests as f64, self.credits, self.errors as f64)
    }

    fn dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let data = PyDict::new(py);
        data.set_item("last_seen_ms", self.last_seen_ms)?;
        data.set_item("bucket", self.bucket)?;
        data.set_item("requests", self.requests)?;
        data.set_item("credits", self.credits)?;
        data.set_item("errors", self.errors)?;
        data.set_item("last_flag_ms", self.last_flag_ms)?;
        data.set_item("model", self.model.bind(py).call_method0("dump")?)?;
        Ok(data)
    }

    /// A subject from its dump, with its seasonal state already loaded from the dump's `model`.
    #[staticmethod]
    fn load(data: &Bound<'_, PyAny>, model: Py<PyAny>) -> PyResult<Self> {
        Ok(Self {
            last_seen_ms: data.get_item("last_seen_ms")?.extract()?,
            bucket: data.get_item("bucket")?.extract()?,
            requests: data.get_item("requests")?.extract()?,
            credits: data.get_item("credits")?.extract()?,
            errors: data.get_item("errors")?.extract()?,
            last_flag_ms: data.get_item("last_flag_ms")?.extract()?,
            model,
            alarm_floors: None,
        })
    }
}

/// Buckets of `bucket_ms`, the learner of the subjects' states, and the configured floors under which a bucket
/// is never scored.
#[pyclass(frozen, module = "detectors.native")]
pub struct TrafficWindow {
    bucket_ms: i64,
    max_gap_buckets: i64,
    learner: Py<LaneLearner>,
    min_events: i64,
    min_credits: f64,
    min_errors: i64,
}

#[pymethods]
impl TrafficWindow {
    #[new]
    #[pyo3(signature = (*, bucket_ms, max_gap_buckets, learner, min_events, min_credits, min_errors))]
    fn new(
        bucket_ms: i64,
        max_gap_buckets: i64,
        learner: Py<LaneLearner>,
        min_events: i64,
        min_credits: f64,
        min_errors: i64,
    ) -> PyResult<Self> {
        if bucket_ms < 1 || max_gap_buckets < 0 {
            return Err(PyValueError::new_err(format!(
                "buckets of at least 1 ms and no negative gap, not {bucket_ms} ms and {max_gap_buckets}"
            )));
        }
        Ok(Self {
            bucket_ms,
            max_gap_buckets,
            learner,
            min_events,
            min_credits,
            min_errors,
        })
    }

    /// ``observe(accounts, account_id, keys, key_subject, now_ms, credits, error)``: one event into its account's
    /// and its key's open buckets, each touched in its store (a bucket the event's time has passed is closed
    /// first, and learned). Returns `(account, key)` when either open bucket has reached a floor, so that
    /// scoring could find something, else None (most events).
    #[allow(clippy::too_many_arguments)]
    fn observe<'py>(
        &self,
        accounts: &Bound<'py, SubjectStore>,
        account_id: &Bound<'py, PyString>,
        keys: &Bound<'py, SubjectStore>,
        key_subject: &Bound<'py, PyString>,
        now_ms: i64,
        credits: f64,
        error: bool,
    ) -> PyResult<Option<(Bound<'py, TrafficSubject>, Bound<'py, TrafficSubject>)>> {
        let py = accounts.py();
        let account = touch_as::<TrafficSubject>(accounts, account_id, now_ms)?;
        let key = touch_as::<TrafficSubject>(keys, key_subject, now_ms)?;
        let mut reached = false;
        for subject in [&account, &key] {
            let mut subject = subject.borrow_mut();
            if now_ms > subject.last_seen_ms {
                subject.last_seen_ms = now_ms;
            }
            let bucket = now_ms.div_euclid(self.bucket_ms);
            if bucket > subject.bucket {
                self.close_buckets(py, &mut subject, bucket)?;
            }
            // A late event (bucket already closed) counts in the open bucket: it was still this subject's load.
            subject.requests += 1;
            subject.credits += credits;
            subject.errors += i64::from(error);
            reached |= !self.below_floors(&subject);
        }
        Ok(reached.then_some((account, key)))
    }

    /// Whether the subject's open bucket is under every configured floor: most are, and then nothing is scored.
    #[pyo3(name = "below_floors")]
    fn py_below_floors(&self, subject: PyRef<'_, TrafficSubject>) -> bool {
        self.below_floors(&subject)
    }
}

impl TrafficWindow {
    fn below_floors(&self, subject: &TrafficSubject) -> bool {
        subject.requests < self.min_events
            && subject.credits < self.min_credits
            && subject.errors < self.min_errors
    }

    /// Teach the models the closed bucket, then the empty buckets of an idle spell (the most recent
    /// `max_gap_buckets`): quiet time is part of a subject's pattern.
    fn close_buckets(
        &self,
        py: Python<'_>,
        subject: &mut TrafficSubject,
        bucket: i64,
    ) -> PyResult<()> {
        if subject.bucket >= 0 {
            let empty = (bucket - subject.bucket - 1).min(self.max_gap_buckets);
            let mut observed = [0.0; MAX_LANES];
            let (requests, credits, errors) = subject.observed();
            observed[..SIGNALS].copy_from_slice(&[requests, credits, errors]);
            let mut points = Vec::with_capacity(1 + empty.max(0) as usize);
            points.push((subject.bucket * self.bucket_ms, observed));
            points.extend(
                ((bucket - empty)..bucket).map(|quiet| (quiet * self.bucket_ms, [0.0; MAX_LANES])),
            );
            self.learner
                .get()
                .learn(py, subject.model.bind(py), &points)?;
        }
        subject.bucket = bucket;
        subject.requests = 0;
        subject.credits = 0.0;
        subject.errors = 0;
        subject.alarm_floors = None;
        Ok(())
    }
}
