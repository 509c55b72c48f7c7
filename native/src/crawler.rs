//! The per-event path of `detectors.crawler`: a key's window of recent calls (`KeyActivity`) and the
//! `CrawlerWindow` step that adds each call to it. Scoring (the features' statistics, the rules, findings) stays
//! in Python and runs every `evaluate_every` calls of a key with enough of them.

use indexmap::IndexMap;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::events::EventFields;
use crate::state::{touch_as, LastSeen, SubjectStore};

/// A call's flags: it made something (POST, PUT, PATCH), and it got a 404.
const GENERATING: u8 = 1;
const NOT_FOUND: u8 = 2;

/// Call times as offsets from the window's base: 32 bits each, or 64 for a window that spans more (~24 days).
enum Offsets {
    Narrow(Vec<i32>),
    Wide(Vec<i64>),
}

impl Offsets {
    /// 32 bits when every offset fits, as a window keeps them whenever it can.
    fn of(values: Vec<i64>) -> Self {
        match values.iter().map(|&value| i32::try_from(value)).collect() {
            Ok(narrow) => Self::Narrow(narrow),
            Err(_) => Self::Wide(values),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Narrow(values) => values.len(),
            Self::Wide(values) => values.len(),
        }
    }

    fn get(&self, at: usize) -> i64 {
        match self {
            Self::Narrow(values) => i64::from(values[at]),
            Self::Wide(values) => values[at],
        }
    }

    fn to_vec(&self) -> Vec<i64> {
        (0..self.len()).map(|at| self.get(at)).collect()
    }

    fn push(&mut self, offset: i64) {
        match (&mut *self, i32::try_from(offset)) {
            (Self::Narrow(values), Ok(offset)) => values.push(offset),
            (Self::Narrow(_), Err(_)) => {
                // For this call; narrowed again once the old calls leave.
                let mut wide = self.to_vec();
                wide.push(offset);
                *self = Self::Wide(wide);
            }
            (Self::Wide(values), _) => values.push(offset),
        }
    }

    fn drop_oldest(&mut self, count: usize) {
        match self {
            Self::Narrow(values) => drop(values.drain(..count)),
            Self::Wide(values) => drop(values.drain(..count)),
        }
    }
}

/// A bounded window of one key's recent calls, kept compact: a call costs its time (4 bytes from a base) and a
/// byte of flags.
///
/// `agent_last` maps each user agent in the window (by its 6-byte BLAKE2b digest) to the number, counted by
/// `calls_seen`, of its latest call: an agent leaves the window with that call, so no call records its agent.
/// `forward_steps` holds, per numbered read, whether its id stepped forward from the read before it (judged
/// with `max_id_step` when added; the first read's flag means nothing, as it has no step). Numbered reads are
/// capped by count only, not by time: that is the window's definition.
#[pyclass(module = "detectors.native")]
pub struct KeyActivity {
    #[pyo3(get, set)]
    last_seen_ms: i64,
    /// Call times are offsets from this; it moves on when they have outgrown 32 bits and fit again.
    #[pyo3(get)]
    time_base_ms: i64,
    times: Offsets,
    flags: Vec<u8>,
    calls_seen: i64,
    agent_last: IndexMap<u64, i64>,
    forward_steps: Vec<u8>,
    last_number: Option<i64>,
    automation_agent: bool,
    events_since_score: i64,
    #[pyo3(get, set)]
    last_flag_ms: Option<i64>,
}

impl LastSeen for KeyActivity {
    fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms
    }
}

#[pymethods]
impl KeyActivity {
    #[new]
    fn new(now_ms: i64) -> Self {
        Self {
            last_seen_ms: now_ms,
            time_base_ms: now_ms,
            times: Offsets::Narrow(Vec::new()),
            flags: Vec::new(),
            calls_seen: 0,
            agent_last: IndexMap::new(),
            forward_steps: Vec::new(),
            last_number: None,
            automation_agent: false,
            events_since_score: 0,
            last_flag_ms: None,
        }
    }

    /// The kept calls' times as offsets from `time_base_ms`, oldest first.
    #[getter]
    fn times(&self) -> Vec<i64> {
        self.times.to_vec()
    }

    /// 32 or 64: how wide the kept offsets are.
    #[getter]
    fn offset_bits(&self) -> u32 {
        match self.times {
            Offsets::Narrow(_) => 32,
            Offsets::Wide(_) => 64,
        }
    }

    /// The window's call times in epoch milliseconds, oldest kept first.
    fn call_times(&self) -> Vec<i64> {
        (0..self.times.len())
            .map(|at| self.time_base_ms + self.times.get(at))
            .collect()
    }

    /// What the content features count: (calls, generating calls, 404s, forward steps, numbered reads, distinct
    /// user agents, whether an automation agent was seen).
    fn content_counts(&self) -> (usize, usize, usize, usize, usize, usize, bool) {
        let with = |flag: u8| {
            self.flags
                .iter()
                .filter(|&&flags| flags & flag != 0)
                .count()
        };
        let forward = self
            .forward_steps
            .iter()
            .skip(1)
            .filter(|&&step| step == 1)
            .count();
        (
            self.times.len(),
            with(GENERATING),
            with(NOT_FOUND),
            forward,
            self.forward_steps.len(),
            self.agent_last.len(),
            self.automation_agent,
        )
    }

    fn dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let agents = PyDict::new(py);
        for (agent, last) in &self.agent_last {
            agents.set_item(PyString::new(py, &format!("{agent:012x}")), last)?;
        }
        let data = PyDict::new(py);
        data.set_item("last_seen_ms", self.last_seen_ms)?;
        data.set_item("time_base_ms", self.time_base_ms)?;
        data.set_item("times", self.times.to_vec())?;
        data.set_item("flags", hex(&self.flags))?;
        data.set_item("calls_seen", self.calls_seen)?;
        data.set_item("agent_last", agents)?;
        data.set_item("forward_steps", hex(&self.forward_steps))?;
        data.set_item("last_number", self.last_number)?;
        data.set_item("automation_agent", self.automation_agent)?;
        data.set_item("events_since_score", self.events_since_score)?;
        data.set_item("last_flag_ms", self.last_flag_ms)?;
        Ok(data)
    }

    #[staticmethod]
    fn load(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let times: Vec<i64> = data.get_item("times")?.extract()?;
        let flags = unhex(&data.get_item("flags")?.extract::<String>()?)?;
        if flags.len() != times.len() {
            return Err(PyValueError::new_err(format!(
                "a crawler window of {} call times and {} flags",
                times.len(),
                flags.len()
            )));
        }
        let mut agent_last = IndexMap::new();
        for (agent, last) in data.get_item("agent_last")?.cast_into::<PyDict>()?.iter() {
            let agent: String = agent.extract()?;
            let digest = u64::from_str_radix(&agent, 16)
                .ok()
                .filter(|_| agent.len() == 12)
                .ok_or_else(|| {
                    PyValueError::new_err(format!("not a user agent digest: {agent:?}"))
                })?;
            agent_last.insert(digest, last.extract()?);
        }
        Ok(Self {
            last_seen_ms: data.get_item("last_seen_ms")?.extract()?,
            time_base_ms: data.get_item("time_base_ms")?.extract()?,
            times: Offsets::of(times),
            flags,
            calls_seen: data.get_item("calls_seen")?.extract()?,
            agent_last,
            forward_steps: unhex(&data.get_item("forward_steps")?.extract::<String>()?)?,
            last_number: data.get_item("last_number")?.extract()?,
            automation_agent: data.get_item("automation_agent")?.extract()?,
            events_since_score: data.get_item("events_since_score")?.extract()?,
            last_flag_ms: data.get_item("last_flag_ms")?.extract()?,
        })
    }
}

impl KeyActivity {
    /// Append a call, then drop the calls older than the horizon (from the front) or beyond the cap.
    fn add_call(&mut self, now_ms: i64, flags: u8, agent: u64, horizon_ms: i64, max_events: usize) {
        self.agent_last.insert(agent, self.calls_seen);
        self.calls_seen += 1;
        self.times.push(now_ms - self.time_base_ms);
        self.flags.push(flags);
        let mut drop = self.times.len().saturating_sub(max_events);
        let horizon = horizon_ms - self.time_base_ms;
        if self.times.get(0) < horizon {
            // Stops at the latest call at the latest: it is not older than the horizon.
            let old = (1..self.times.len())
                .find(|&at| self.times.get(at) >= horizon)
                .unwrap_or(self.times.len());
            drop = drop.max(old);
        }
        if drop > 0 {
            self.times.drop_oldest(drop);
            self.flags.drain(..drop);
            let first = self.calls_seen - self.times.len() as i64;
            if self.agent_last.values().any(|&last| last < first) {
                // An agent's calls have all left the window.
                self.agent_last.retain(|_, last| *last >= first);
            }
        }
        if let Offsets::Wide(_) = self.times {
            self.rebase(now_ms);
        }
    }

    /// Offsets from `now_ms` in 32 bits again, when every kept call is within ~24 days of it (a key back after a
    /// long idle spell, or one busy for weeks); until then a window with calls further apart stays in 64 bits.
    fn rebase(&mut self, now_ms: i64) {
        let shift = self.time_base_ms - now_ms;
        let shifted = Offsets::of(
            self.times
                .to_vec()
                .iter()
                .map(|offset| offset + shift)
                .collect(),
        );
        if let Offsets::Narrow(_) = shifted {
            self.times = shifted;
            self.time_base_ms = now_ms;
        }
    }

    fn add_numbered_read(&mut self, number: i64, max_id_step: i64, max_events: usize) {
        let forward = self
            .last_number
            .is_some_and(|last| (1..=max_id_step).contains(&(number - last)));
        self.forward_steps.push(u8::from(forward));
        self.last_number = Some(number);
        if self.forward_steps.len() > max_events {
            self.forward_steps.remove(0);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> PyResult<Vec<u8>> {
    let invalid = || PyValueError::new_err(format!("not hex bytes: {:.64?}", text));
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err(invalid());
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).map_err(|_| invalid()))
        .collect()
}

/// The window every key's calls are kept in: `window_ms` of event time and at most `max_events` calls (and as
/// many numbered reads), and when a key's window is due to be scored.
#[pyclass(frozen, module = "detectors.native")]
pub struct CrawlerWindow {
    window_ms: i64,
    max_events: usize,
    max_id_step: i64,
    min_requests: usize,
    evaluate_every: i64,
}

#[pymethods]
impl CrawlerWindow {
    #[new]
    #[pyo3(signature = (*, window_ms, max_events, max_id_step, min_requests, evaluate_every))]
    fn new(
        window_ms: i64,
        max_events: usize,
        max_id_step: i64,
        min_requests: usize,
        evaluate_every: i64,
    ) -> PyResult<Self> {
        if max_events < 1 {
            return Err(PyValueError::new_err(
                "a crawler window keeps at least one call",
            ));
        }
        Ok(Self {
            window_ms,
            max_events,
            max_id_step,
            min_requests,
            evaluate_every,
        })
    }

    /// ``step(keys, events, start, agents, describe_agent, read_number)``: adds `events[start:]` in turn to
    /// their keys' windows, each touched in its store, up to the first after which its key's window is due to be
    /// scored (it then starts counting again). Returns `(index, window)` for it, or None when none was due.
    ///
    /// A call's user agent is known by its digest (an integer) and whether it is automation, found in `agents`
    /// or else by `describe_agent(user_agent)`. A GET of an id ending in a number is a numbered read: the number
    /// is read here for an ASCII id (`ascii_trailing_number`), else by `read_number(resource_id)`.
    fn step<'py>(
        &self,
        keys: &Bound<'py, SubjectStore>,
        events: &Bound<'py, PyList>,
        start: usize,
        agents: &Bound<'py, PyDict>,
        describe_agent: &Bound<'py, PyAny>,
        read_number: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(usize, Bound<'py, KeyActivity>)>> {
        let py = events.py();
        for index in start..events.len() {
            let event = EventFields::at(events, index)?;
            let now_ms: i64 = event.get(intern!(py, "ts_ms"))?.extract()?;
            let user_agent = event.get(intern!(py, "user_agent"))?;
            let (agent, automation): (u64, bool) = match agents.get_item(&user_agent)? {
                Some(known) => known.extract()?,
                None => describe_agent.call1((user_agent,))?.extract()?,
            };
            let method = Method::of(&event.string(intern!(py, "method"))?)?;
            let number = match method {
                Method::Get => {
                    let resource_id = event.get(intern!(py, "resource_id"))?;
                    numbered_read(&resource_id, read_number)?
                }
                _ => None,
            };
            let status: i64 = event.get(intern!(py, "status"))?.extract()?;
            let call = Call {
                now_ms,
                generating: method == Method::Generating,
                not_found: status == 404,
                agent,
                automation,
                number,
            };
            let key_subject = event.string(intern!(py, "key_subject"))?;
            if let Some(window) = self.record(keys, &key_subject, &call)? {
                return Ok(Some((index, window)));
            }
        }
        Ok(None)
    }
}

/// What a call's method says: it makes something (POST, PUT, PATCH), it reads (GET), or neither.
#[derive(PartialEq)]
enum Method {
    Generating,
    Get,
    Other,
}

impl Method {
    /// By the method's upper case, as `str.upper` makes it (Python's, for a method that is not ASCII).
    fn of(method: &Bound<'_, PyString>) -> PyResult<Self> {
        let text = method.to_str()?;
        let upper = if text.is_ascii() {
            text.to_ascii_uppercase()
        } else {
            method
                .call_method0(intern!(method.py(), "upper"))?
                .extract::<String>()?
        };
        Ok(match upper.as_str() {
            "POST" | "PUT" | "PATCH" => Self::Generating,
            "GET" => Self::Get,
            _ => Self::Other,
        })
    }
}

/// One call as a key's window keeps it.
struct Call {
    now_ms: i64,
    generating: bool,
    not_found: bool,
    agent: u64,
    automation: bool,
    number: Option<i64>,
}

/// The number a read id ends in (None for no id, an empty one, or one without such a number).
fn numbered_read(
    resource_id: &Bound<'_, PyAny>,
    read_number: &Bound<'_, PyAny>,
) -> PyResult<Option<i64>> {
    if resource_id.is_none() {
        return Ok(None);
    }
    let text = resource_id.cast::<PyString>()?.to_str()?;
    if text.is_ascii() {
        return Ok(trailing_number(text));
    }
    read_number.call1((resource_id,))?.extract()
}

/// The number an ASCII id ends in, as `detectors.crawler.detector.numbered_read` reads it: the digits that end
/// it (or end it but for one final newline, where a regular expression's `$` also matches), after its start or a
/// character that is neither a letter nor a digit, as a number under 2**63 (past that, an opaque token).
fn trailing_number(text: &str) -> Option<i64> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let digits_from = body.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits_from == body.len()
        || body[..digits_from].ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return None;
    }
    body[digits_from..]
        .bytes()
        .try_fold(0_i64, |number, digit| {
            number.checked_mul(10)?.checked_add(i64::from(digit - b'0'))
        })
}

/// ``ascii_trailing_number(text)``: the number an ASCII id ends in, as the crawler's step reads it (for the test
/// that holds it against the regular expression).
#[pyfunction]
pub fn ascii_trailing_number(text: &str) -> PyResult<Option<i64>> {
    if !text.is_ascii() {
        return Err(PyValueError::new_err(
            "an id that is not ASCII is read by Python",
        ));
    }
    Ok(trailing_number(text))
}

impl CrawlerWindow {
    /// Adds one call (and its id's number, for a numbered read) to the key's window, touched in its store;
    /// returns the window when it is due to be scored (and starts counting again).
    fn record<'py>(
        &self,
        keys: &Bound<'py, SubjectStore>,
        key_subject: &Bound<'py, PyString>,
        call: &Call,
    ) -> PyResult<Option<Bound<'py, KeyActivity>>> {
        let now_ms = call.now_ms;
        let window = touch_as::<KeyActivity>(keys, key_subject, now_ms)?;
        let mut activity = window.borrow_mut();
        if now_ms > activity.last_seen_ms {
            activity.last_seen_ms = now_ms;
        }
        if call.automation {
            activity.automation_agent = true;
        }
        let flags = if call.generating { GENERATING } else { 0 }
            | if call.not_found { NOT_FOUND } else { 0 };
        activity.add_call(
            now_ms,
            flags,
            call.agent,
            now_ms - self.window_ms,
            self.max_events,
        );
        if let Some(number) = call.number {
            activity.add_numbered_read(number, self.max_id_step, self.max_events);
        }
        activity.events_since_score += 1;
        if activity.times.len() < self.min_requests
            || activity.events_since_score < self.evaluate_every
        {
            return Ok(None);
        }
        activity.events_since_score = 0;
        drop(activity);
        Ok(Some(window))
    }
}
