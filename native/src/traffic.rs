//! The per-event path of `detectors.traffic`: a subject's open bucket (`TrafficSubject`) and the `TrafficWindow`
//! that counts each event into its account's and its key's, closing buckets into their seasonal models. Scoring
//! (thresholds, assessments, findings) stays in Python, where it runs only once a bucket passes a floor.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::events::EventFields;
use crate::seasonal::{LaneLearner, MAX_LANES};
use crate::state::{touch_as, LastSeen, SubjectStore};

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

impl LastSeen for TrafficSubject {
    fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms
    }
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

/// Where the step stopped: the event's index in the batch, its account and its key.
type Stopped<'py> = (
    usize,
    Bound<'py, TrafficSubject>,
    Bound<'py, TrafficSubject>,
);

/// Buckets of `bucket_ms`, the learner of the subjects' states, the configured floors under which a bucket
/// is never scored, and what the step needs to know which events scoring could flag: the statuses that count
/// as errors, the cooldown after a flag, and the least share of errors in an error storm.
#[pyclass(frozen, module = "detectors.native")]
pub struct TrafficWindow {
    bucket_ms: i64,
    max_gap_buckets: i64,
    learner: Py<LaneLearner>,
    min_events: i64,
    min_credits: f64,
    min_errors: i64,
    min_error_share: f64,
    error_statuses: Vec<i64>,
    cooldown_ms: i64,
}

#[pymethods]
impl TrafficWindow {
    #[new]
    #[pyo3(signature = (
        *, bucket_ms, max_gap_buckets, learner, min_events, min_credits, min_errors, min_error_share,
        error_statuses, cooldown_ms
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        bucket_ms: i64,
        max_gap_buckets: i64,
        learner: Py<LaneLearner>,
        min_events: i64,
        min_credits: f64,
        min_errors: i64,
        min_error_share: f64,
        error_statuses: Vec<i64>,
        cooldown_ms: i64,
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
            min_error_share,
            error_statuses,
            cooldown_ms,
        })
    }

    /// ``step(accounts, keys, events, start)``: counts `events[start:]` in turn into their accounts' and keys'
    /// open buckets, each touched in its store (a bucket the event's time has passed is closed first, and
    /// learned), up to the first event after which scoring could flag its account or key: its account is not
    /// cooling down, and a subject's open bucket has reached a configured floor and either its alarm floors
    /// (`may_flag`) or alarm floors not yet worked out for this bucket. Returns `(index, account, key)` for that
    /// event, or None when the batch is counted (most events need no scoring).
    fn step<'py>(
        &self,
        accounts: &Bound<'py, SubjectStore>,
        keys: &Bound<'py, SubjectStore>,
        events: &Bound<'py, PyList>,
        start: usize,
    ) -> PyResult<Option<Stopped<'py>>> {
        let py = events.py();
        for index in start..events.len() {
            let event = EventFields::at(events, index)?;
            let now_ms: i64 = event.get(intern!(py, "ts_ms"))?.extract()?;
            let status: i64 = event.get(intern!(py, "status"))?.extract()?;
            let account = touch_as::<TrafficSubject>(
                accounts,
                &event.string(intern!(py, "account_id"))?,
                now_ms,
            )?;
            let key = touch_as::<TrafficSubject>(
                keys,
                &event.string(intern!(py, "key_subject"))?,
                now_ms,
            )?;
            let credits: f64 = event.get(intern!(py, "credits"))?.extract()?;
            let error = self.error_statuses.contains(&status);
            let mut scorable = false;
            for subject in [&account, &key] {
                let mut subject = subject.borrow_mut();
                self.count(py, &mut subject, now_ms, credits, error)?;
                scorable |= self.might_flag(&subject);
            }
            let cooling = account
                .borrow()
                .last_flag_ms
                .is_some_and(|flagged| now_ms - flagged < self.cooldown_ms);
            if scorable && !cooling {
                return Ok(Some((index, account, key)));
            }
        }
        Ok(None)
    }

    /// Whether the subject's open bucket is under every configured floor: most are, and then nothing is scored.
    #[pyo3(name = "below_floors")]
    fn py_below_floors(&self, subject: PyRef<'_, TrafficSubject>) -> bool {
        self.below_floors(&subject)
    }

    /// Whether scoring could flag the subject's open bucket, by its counts against the configured floors and its
    /// alarm floors (which must have been worked out for the bucket when it is past a configured floor). The
    /// counts only grow within a bucket while the models stand still, so most calls need no scoring at all.
    fn may_flag(&self, subject: PyRef<'_, TrafficSubject>) -> PyResult<bool> {
        if !self.below_floors(&subject) && subject.alarm_floors.is_none() {
            return Err(PyValueError::new_err(
                "the bucket's alarm floors have not been worked out",
            ));
        }
        Ok(self.might_flag(&subject))
    }
}

impl TrafficWindow {
    /// One event into a subject's open bucket, closing (and learning) the buckets its time has passed. A late
    /// event (bucket already closed) counts in the open bucket: it was still this subject's load.
    fn count(
        &self,
        py: Python<'_>,
        subject: &mut TrafficSubject,
        now_ms: i64,
        credits: f64,
        error: bool,
    ) -> PyResult<()> {
        if now_ms > subject.last_seen_ms {
            subject.last_seen_ms = now_ms;
        }
        let bucket = now_ms.div_euclid(self.bucket_ms);
        if bucket > subject.bucket {
            self.close_buckets(py, subject, bucket)?;
        }
        subject.requests += 1;
        subject.credits += credits;
        subject.errors += i64::from(error);
        Ok(())
    }

    /// `may_flag`, and true as well for a bucket past a configured floor whose alarm floors are yet to be
    /// worked out (in Python, from the models).
    fn might_flag(&self, subject: &TrafficSubject) -> bool {
        if self.below_floors(subject) {
            return false;
        }
        let Some((requests_floor, credits_floor, errors_floor)) = subject.alarm_floors else {
            return true;
        };
        // Counts within a bucket stay far under 2**53, where an i64 is exactly an f64 (as Python compares them).
        let (requests, errors) = (subject.requests as f64, subject.errors as f64);
        requests >= requests_floor
            || subject.credits >= credits_floor
            || (errors >= errors_floor && errors >= self.min_error_share * requests)
    }

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
