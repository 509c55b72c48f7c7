//! The per-event path of `detectors.key_sharing`: a key's or account's `UsageProfile` and the `SharingWindow` that
//! counts an event's items into it and follows its located uses. The rules that read the counts and the hops
//! (thresholds, evidence, findings) stay in Python, where they run only when something changed.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::events::EventFields;
use crate::sketches::SlidingSketch;
use crate::state::{touch_as, LastSeen, SubjectStore};

/// Distinct item tuples remembered per pane: a key's user, or an account's keys, mostly alternate among a few.
const RECENT_ITEMS: usize = 3;

/// A located use: where (the country and its coordinates, as the address database gives them) and when.
#[derive(Clone, PartialEq)]
struct Use {
    country: String,
    latitude: f64,
    longitude: Option<f64>,
    ts_ms: i64,
}

impl Use {
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            [
                self.country.as_str().into_pyobject(py)?.into_any(),
                self.latitude.into_pyobject(py)?.into_any(),
                self.longitude.into_pyobject(py)?,
                self.ts_ms.into_pyobject(py)?.into_any(),
            ],
        )
    }

    fn from_sequence(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let fields: Vec<Bound<'_, PyAny>> = data.extract()?;
        let [country, latitude, longitude, ts_ms] = fields.as_slice() else {
            return Err(PyValueError::new_err(format!(
                "a located use is [country, latitude, longitude, ts_ms], not {} fields",
                fields.len()
            )));
        };
        Ok(Self {
            country: country.extract()?,
            latitude: latitude.extract()?,
            longitude: longitude.extract()?,
            ts_ms: ts_ms.extract()?,
        })
    }
}

/// One key's or account's recent spread: the distinct counts, the last located use, recent distant hops.
#[pyclass(module = "detectors.native")]
pub struct UsageProfile {
    #[pyo3(get, set)]
    last_seen_ms: i64,
    /// Every dimension's distinct count in one sketch (kinds in the caller's item order), made at the first item.
    distinct: Option<SlidingSketch>,
    previous: Option<Use>,
    /// Times of recent hops between distant countries (most profiles: none).
    #[pyo3(get, set)]
    switches: Vec<i64>,
    #[pyo3(get, set)]
    last_flag_ms: Option<i64>,
    // Not state but a shortcut, never dumped: the pane the last events fell in and the items of its last few
    // distinct events (the latest first). Within that pane, one of those items again only repeats what the
    // sketch's current pane holds.
    recent_pane: i64,
    recent: [Option<Py<PyTuple>>; RECENT_ITEMS],
}

impl LastSeen for UsageProfile {
    fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms
    }
}

#[pymethods]
impl UsageProfile {
    #[new]
    fn new(last_seen_ms: i64) -> Self {
        Self {
            last_seen_ms,
            distinct: None,
            previous: None,
            switches: Vec::new(),
            last_flag_ms: None,
            recent_pane: 0,
            recent: [None, None, None],
        }
    }

    /// Distinct items of kind `dimension` in the window that ends now (0 before the first item).
    fn count(&mut self, now_ms: i64, dimension: usize) -> i64 {
        self.distinct
            .as_mut()
            .map_or(0, |sketch| sketch.count(now_ms, dimension))
    }

    fn dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let data = PyDict::new(py);
        data.set_item("last_seen_ms", self.last_seen_ms)?;
        match &self.distinct {
            Some(sketch) => data.set_item("distinct", sketch.dump(py)?)?,
            None => data.set_item("distinct", py.None())?,
        }
        match &self.previous {
            Some(previous) => data.set_item("previous", previous.to_list(py)?)?,
            None => data.set_item("previous", py.None())?,
        }
        data.set_item("switches", &self.switches)?;
        data.set_item("last_flag_ms", self.last_flag_ms)?;
        Ok(data)
    }

    #[staticmethod]
    fn load(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let distinct = data.get_item("distinct")?;
        let previous = data.get_item("previous")?;
        let mut profile = Self::new(data.get_item("last_seen_ms")?.extract()?);
        profile.distinct = if distinct.is_none() {
            None
        } else {
            Some(SlidingSketch::load(&distinct)?)
        };
        profile.previous = if previous.is_none() {
            None
        } else {
            Some(Use::from_sequence(&previous)?)
        };
        profile.switches = data.get_item("switches")?.extract()?;
        profile.last_flag_ms = data.get_item("last_flag_ms")?.extract()?;
        Ok(profile)
    }
}

/// The window the profiles count in (`panes` panes of `pane_ms`, sketches of `2**precision` registers per kind),
/// and the step every event takes through a profile.
#[pyclass(frozen, module = "detectors.native")]
pub struct SharingWindow {
    precision: u32,
    pane_ms: i64,
    panes: i64,
}

#[pymethods]
impl SharingWindow {
    #[new]
    fn new(precision: u32, pane_ms: i64, panes: i64) -> PyResult<Self> {
        SlidingSketch::new(precision, pane_ms, panes)?; // the same checks as every sketch's
        Ok(Self {
            precision,
            pane_ms,
            panes,
        })
    }

    /// ``step(keys, accounts, events, start, site)``: `events[start:]` in turn through their keys' and accounts'
    /// profiles, each touched in its store, up to the first event after which a rule could fire. Returns
    /// `(index, key, account, key_changed, hop_from, account_changed)` for it: the profiles, whether an item is
    /// new to each window, and the key's use before a hop to another country, `[country, latitude, longitude,
    /// ts_ms]`; or None when no event of the batch brought an item new to either window or a hop (most).
    ///
    /// `site(ip)` gives what an address contributes (`detectors.key_sharing.Site`, a tuple): its items, `(network, asn,
    /// country)` (None where unknown), and `here`, `(country, latitude, longitude)` of a located use, or None. An
    /// event's items are its user agent, its device and those three; None and "" are not counted. A use at a
    /// profile's last place moves only its time; elsewhere it becomes the last place. An account makes no hops:
    /// its several keys may legitimately run in several places.
    fn step<'py>(
        &self,
        keys: &Bound<'py, SubjectStore>,
        accounts: &Bound<'py, SubjectStore>,
        events: &Bound<'py, PyList>,
        start: usize,
        site: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Stopped<'py>>> {
        let py = events.py();
        for index in start..events.len() {
            let event = EventFields::at(events, index)?;
            let now_ms: i64 = event.get(intern!(py, "ts_ms"))?.extract()?;
            let located = site.call1((event.get(intern!(py, "ip"))?,))?;
            let place_items = located
                .getattr(intern!(py, "items"))?
                .cast_into::<PyTuple>()?;
            let items = PyTuple::new(
                py,
                [
                    event.get(intern!(py, "user_agent"))?,
                    event.get(intern!(py, "device_id"))?,
                    place_items.get_item(0)?,
                    place_items.get_item(1)?,
                    place_items.get_item(2)?,
                ],
            )?;
            let here = located.get_item(1)?;
            let here = (!here.is_none())
                .then(|| here.cast_into::<PyTuple>())
                .transpose()?;
            let key =
                touch_as::<UsageProfile>(keys, &event.string(intern!(py, "key_subject"))?, now_ms)?;
            let account = touch_as::<UsageProfile>(
                accounts,
                &event.string(intern!(py, "account_id"))?,
                now_ms,
            )?;
            if let Some((key, account, key_changed, hop_from, account_changed)) =
                self.observe(key, account, &items, here.as_ref(), now_ms)?
            {
                return Ok(Some((
                    index,
                    key,
                    account,
                    key_changed,
                    hop_from,
                    account_changed,
                )));
            }
        }
        Ok(None)
    }
}

/// What an event changed: the key's and the account's profiles, whether an item is new to the key's window, the
/// key's use before a hop to another country, and whether an item is new to the account's window.
type Outcome<'py> = (
    Bound<'py, UsageProfile>,
    Bound<'py, UsageProfile>,
    bool,
    Option<Bound<'py, PyList>>,
    bool,
);

/// Where the step stopped: the event's index in the batch, and what it changed.
type Stopped<'py> = (
    usize,
    Bound<'py, UsageProfile>,
    Bound<'py, UsageProfile>,
    bool,
    Option<Bound<'py, PyList>>,
    bool,
);

/// Where an event's address is, borrowed from the caller's tuple for the event.
struct Place<'a> {
    country: &'a str,
    latitude: f64,
    longitude: Option<f64>,
}

impl SharingWindow {
    /// One event through its key's and its account's profiles: None when no item is new to either window and the
    /// key made no hop.
    fn observe<'py>(
        &self,
        key: Bound<'py, UsageProfile>,
        account: Bound<'py, UsageProfile>,
        items: &Bound<'py, PyTuple>,
        here: Option<&Bound<'py, PyTuple>>,
        now_ms: i64,
    ) -> PyResult<Option<Outcome<'py>>> {
        let py = key.py();
        let country = match here {
            Some(here) => Some(here.get_item(0)?.cast_into::<PyString>()?),
            None => None,
        };
        let place = match (here, &country) {
            (Some(here), Some(country)) => Some(Place {
                country: country.to_str()?,
                latitude: here.get_item(1)?.extract()?,
                longitude: here.get_item(2)?.extract()?,
            }),
            _ => None,
        };
        let (key_changed, hop_from) = self.step_profile(
            py,
            &mut key.borrow_mut(),
            items,
            place.as_ref(),
            now_ms,
            true,
        )?;
        let (account_changed, _) = self.step_profile(
            py,
            &mut account.borrow_mut(),
            items,
            place.as_ref(),
            now_ms,
            false,
        )?;
        if !key_changed && !account_changed && hop_from.is_none() {
            return Ok(None);
        }
        let hop_from = match hop_from {
            Some(before) => Some(before.to_list(py)?),
            None => None,
        };
        Ok(Some((key, account, key_changed, hop_from, account_changed)))
    }

    /// One profile's step: returns whether an item is new to its window and, when `hops` is set, the use before
    /// a hop to another country.
    fn step_profile(
        &self,
        py: Python<'_>,
        profile: &mut UsageProfile,
        items: &Bound<'_, PyTuple>,
        place: Option<&Place<'_>>,
        now_ms: i64,
        hops: bool,
    ) -> PyResult<(bool, Option<Use>)> {
        if now_ms > profile.last_seen_ms {
            profile.last_seen_ms = now_ms;
        }
        let pane = now_ms - now_ms.rem_euclid(self.pane_ms);
        let mut repeat = false;
        if profile.recent_pane == pane {
            for known in profile.recent.iter().flatten() {
                if known.bind(py).eq(items)? {
                    repeat = true;
                    break;
                }
            }
        }
        let changed = !repeat && self.add(py, profile, pane, items, now_ms)?;
        let mut hop_from = None;
        if let Some(place) = place {
            match &mut profile.previous {
                Some(previous)
                    if previous.country == place.country
                        && previous.latitude == place.latitude
                        && previous.longitude == place.longitude =>
                {
                    previous.ts_ms = now_ms; // the same place again, the commonest case: only the time moves
                }
                previous => {
                    let before = previous.replace(Use {
                        country: place.country.to_owned(),
                        latitude: place.latitude,
                        longitude: place.longitude,
                        ts_ms: now_ms,
                    });
                    hop_from = before.filter(|before| hops && before.country != place.country);
                }
            }
        }
        Ok((changed, hop_from))
    }

    /// Count the event's items; returns whether any is new to its window.
    fn add(
        &self,
        py: Python<'_>,
        profile: &mut UsageProfile,
        pane: i64,
        items: &Bound<'_, PyTuple>,
        now_ms: i64,
    ) -> PyResult<bool> {
        let known: &[Option<Py<PyTuple>>] = if profile.recent_pane == pane {
            &profile.recent
        } else {
            &[]
        };
        let mut changed = false;
        for (kind, item) in items.iter().enumerate() {
            if item.is_none() {
                continue;
            }
            let text = item.cast::<PyString>()?.to_str()?;
            if text.is_empty() {
                continue;
            }
            let mut counted = false;
            for earlier in known.iter().flatten() {
                if earlier.bind(py).get_item(kind)?.eq(&item)? {
                    counted = true; // counted in this pane already: it would only repeat
                    break;
                }
            }
            if counted {
                continue;
            }
            let sketch = match &mut profile.distinct {
                Some(sketch) => sketch,
                empty => empty.insert(SlidingSketch::new(
                    self.precision,
                    self.pane_ms,
                    self.panes,
                )?),
            };
            changed |= sketch.add(text, now_ms, kind);
        }
        // A sketch restored from another window's config has other panes: the shortcut would not hold.
        let aligned = profile
            .distinct
            .as_ref()
            .is_none_or(|sketch| sketch.pane_ms() == self.pane_ms);
        if !aligned {
            profile.recent = [None, None, None];
        } else if profile.recent_pane == pane {
            profile.recent.rotate_right(1);
            profile.recent[0] = Some(items.clone().unbind());
        } else {
            profile.recent_pane = pane;
            profile.recent = [Some(items.clone().unbind()), None, None];
        }
        Ok(changed)
    }
}
