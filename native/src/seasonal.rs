//! The learning step of `detectors.seasonal`'s model: what `lane_learner` returns. The arithmetic is the model's as
//! that module documents it and as `SeasonalModel` reads it back, operation for operation in doubles, with what is
//! kept rounded to single precision as `array("f")` rounds it; `tests/test_seasonal_native.py` holds it, bit for
//! bit, against a plain-Python statement of the same step.

// `!(x > 0.0)` is meant: it is the Python model's `not x > 0`, true for NaN too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PySlice, PyTuple};

const HOURS_PER_DAY: i64 = 24;
const DAYS_PER_WEEK: i64 = 7;
const MS_PER_HOUR: i64 = 3_600_000;
/// 1970-01-01 was a Thursday: shift so that slot 0 is Monday.
const EPOCH_WEEKDAY: i64 = 3;
const MAD_TO_SIGMA: f64 = 1.25;
const COUNT_CAP: u64 = 1_000_000;
const SCALE_STEP_CAP: f64 = 2.0;
const AUTOCORRELATION_RATE: f64 = 0.25;

// Layout of `SeasonalState.values` (see its docstring): the shared slot weights, then each stirred lane.
const DAY_WEIGHT: usize = 0;
const WEEK_WEIGHT: usize = DAY_WEIGHT + HOURS_PER_DAY as usize;
const SHARED: usize = WEEK_WEIGHT + DAYS_PER_WEEK as usize;
const LEVEL: usize = 0;
const SCALE: usize = 1;
const CUSUM_UP: usize = 2;
const CUSUM_DOWN: usize = 3;
const LAST_Z: usize = 4;
const LAG_PRODUCT: usize = 5;
const Z_POWER: usize = 6;
const DAY_SHIFT: usize = 7;
const WEEK_SHIFT: usize = 8;
const DAY: usize = 9;
const WEEK: usize = DAY + HOURS_PER_DAY as usize;
const LANE_SIZE: usize = WEEK + DAYS_PER_WEEK as usize;

/// The most lanes a state may have: the stirred bits index a table of offsets.
pub const MAX_LANES: usize = 8;

extern "C" {
    // The C library's asinh, which Python's math.asinh calls: Rust's own f64::asinh may differ in the last bit.
    fn asinh(x: f64) -> f64;
}

fn model_space(value: f64, unit: f64) -> f64 {
    // SAFETY: a pure function of a double.
    unsafe { asinh(value / unit) }
}

/// How far a slot's profile moves towards a residual: its rate (a running mean's over the time the slot has seen,
/// at least ``season_alpha``) times the time the point stands for. A point at the time of the one before (or
/// before it) moves no profile, also in a slot that has seen no time yet, whose rate would be 1 / 0.
#[inline]
fn seasonal_factor(seen: f64, season_alpha: f64, spacing: f64) -> f64 {
    if spacing <= 0.0 {
        return 0.0;
    }
    let rate = 1.0 / seen;
    (if rate > season_alpha {
        rate
    } else {
        season_alpha
    }) * spacing
}

/// The layout and constants above, for a test to hold against the Python model's own.
#[pyfunction]
pub fn seasonal_layout(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let layout = PyDict::new(py);
    for (name, value) in [
        ("HOURS_PER_DAY", HOURS_PER_DAY),
        ("DAYS_PER_WEEK", DAYS_PER_WEEK),
        ("MS_PER_HOUR", MS_PER_HOUR),
        ("_EPOCH_WEEKDAY", EPOCH_WEEKDAY),
        ("_COUNT_CAP", COUNT_CAP as i64),
        ("_DAY_WEIGHT", DAY_WEIGHT as i64),
        ("_WEEK_WEIGHT", WEEK_WEIGHT as i64),
        ("_LANES", SHARED as i64),
        ("_LEVEL", LEVEL as i64),
        ("_SCALE", SCALE as i64),
        ("_CUSUM_UP", CUSUM_UP as i64),
        ("_CUSUM_DOWN", CUSUM_DOWN as i64),
        ("_LAST_Z", LAST_Z as i64),
        ("_LAG_PRODUCT", LAG_PRODUCT as i64),
        ("_Z_POWER", Z_POWER as i64),
        ("_DAY_SHIFT", DAY_SHIFT as i64),
        ("_WEEK_SHIFT", WEEK_SHIFT as i64),
        ("_DAY", DAY as i64),
        ("_WEEK", WEEK as i64),
        ("LANE_SIZE", LANE_SIZE as i64),
    ] {
        layout.set_item(name, value)?;
    }
    for (name, value) in [
        ("_MAD_TO_SIGMA", MAD_TO_SIGMA),
        ("SCALE_STEP_CAP", SCALE_STEP_CAP),
        ("AUTOCORRELATION_RATE", AUTOCORRELATION_RATE),
    ] {
        layout.set_item(name, value)?;
    }
    Ok(layout)
}

/// Learns (ts_ms, one value per lane) points into a `SeasonalState` of `len(units)` lanes that share one set of
/// parameters: the time-only work (slots, spacing, slot weights, rates) once per point for all lanes.
#[pyclass(frozen, module = "detectors.native")]
pub struct LaneLearner {
    warmup: u64,
    shrinkage: f64,
    min_scale: f64,
    huber_z: f64,
    drift: f64,
    cusum_cap: f64,
    level_alpha: f64,
    season_alpha: f64,
    scale_alpha: f64,
    rho_rate: f64,
    units: Vec<f64>,
    /// Per set of stirred lanes, where each lane starts (an unstirred one: where it would be inserted).
    offsets_by_stirred: Vec<Vec<usize>>,
    /// `array.array`, for a state's first array of its own.
    array_type: Py<PyAny>,
}

/// A state's numbers while a call learns: read from its array, written back at the end.
struct Values {
    numbers: Vec<f32>,
}

impl Values {
    #[inline]
    fn get(&self, at: usize) -> f64 {
        f64::from(self.numbers[at])
    }

    #[inline]
    fn set(&mut self, at: usize, value: f64) {
        // As array("f") stores a double: rounded to the nearest single (inf past its range).
        self.numbers[at] = value as f32;
    }
}

#[pymethods]
impl LaneLearner {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, warmup, season_shrinkage, min_scale, huber_z, cusum_drift, cusum_limit, level_alpha,
                        season_alpha, scale_alpha, units))]
    fn new(
        py: Python<'_>,
        warmup: u64,
        season_shrinkage: f64,
        min_scale: f64,
        huber_z: f64,
        cusum_drift: f64,
        cusum_limit: f64,
        level_alpha: f64,
        season_alpha: f64,
        scale_alpha: f64,
        units: Vec<f64>,
    ) -> PyResult<Self> {
        let lane_count = units.len();
        if lane_count == 0 || lane_count > MAX_LANES {
            return Err(PyValueError::new_err(format!(
                "a learner of 1 to {MAX_LANES} lanes, not {lane_count}"
            )));
        }
        let offsets_by_stirred = (0..1usize << lane_count)
            .map(|stirred| {
                (0..lane_count)
                    .map(|lane| {
                        SHARED + LANE_SIZE * (stirred & ((1 << lane) - 1)).count_ones() as usize
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            warmup,
            shrinkage: season_shrinkage,
            min_scale,
            huber_z,
            drift: cusum_drift,
            cusum_cap: 2.0 * cusum_limit,
            level_alpha,
            season_alpha,
            scale_alpha,
            rho_rate: scale_alpha * AUTOCORRELATION_RATE,
            units,
            offsets_by_stirred,
            array_type: py.import("array")?.getattr("array")?.unbind(),
        })
    }

    /// ``learn(state, points)``: learn each (ts_ms, one value per lane) in turn.
    fn __call__(
        &self,
        py: Python<'_>,
        state: &Bound<'_, PyAny>,
        points: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let lane_count = self.units.len();
        self.check_lanes(state)?; // before the points: a state of other lanes is the first thing wrong
        let mut parsed = Vec::new();
        for point in points.try_iter()? {
            let mut values = [0.0f64; MAX_LANES];
            let point = point?;
            let point = point.cast::<PyTuple>()?;
            let ts_ms: i64 = point.get_item(0)?.extract()?;
            let given = point.get_item(1)?;
            let mut count = 0;
            for value in given.try_iter()? {
                if count == lane_count {
                    return Err(PyValueError::new_err(format!(
                        "a point of more than {lane_count} values"
                    )));
                }
                values[count] = value?.extract()?;
                count += 1;
            }
            if count != lane_count {
                return Err(PyValueError::new_err(format!(
                    "a point of {count} values for {lane_count} lanes"
                )));
            }
            parsed.push((ts_ms, values));
        }
        self.learn(py, state, &parsed)
    }
}

impl LaneLearner {
    fn check_lanes(&self, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let lane_count = self.units.len();
        let lanes: usize = state.getattr("lanes")?.extract()?;
        if lanes != lane_count {
            return Err(PyValueError::new_err(format!(
                "a learner of {lane_count} lanes for a {lanes}-lane state"
            )));
        }
        Ok(())
    }

    /// Learn each (ts_ms, one value per lane, the first `len(units)` of `MAX_LANES` used) in turn.
    pub fn learn(
        &self,
        py: Python<'_>,
        state: &Bound<'_, PyAny>,
        points: &[(i64, [f64; MAX_LANES])],
    ) -> PyResult<()> {
        let lane_count = self.units.len();
        self.check_lanes(state)?;
        let array = state.getattr("values")?;
        // An unlearned state shares one empty array (whose buffer may point nowhere), never written.
        let buffer = if array.len()? > 0 {
            Some(PyBuffer::<f32>::get(&array)?)
        } else {
            None
        };
        let mut v = Values {
            numbers: match &buffer {
                Some(buffer) => buffer.to_vec(py)?,
                None => Vec::new(),
            },
        };
        let stored_len = v.numbers.len();
        let mut own_array = buffer.is_some();
        let mut n: u64 = state.getattr("n")?.extract()?;
        let mut last_ts_ms: Option<i64> = state.getattr("last_ts_ms")?.extract()?;
        let mut stirred: usize = state.getattr("stirred")?.extract()?;
        for &(ts_ms, values) in points {
            // Seasonal slots learn per unit of time, not per point, so minute and hourly series age alike.
            let spacing_h = match last_ts_ms {
                None => 1.0,
                Some(last) => {
                    let elapsed_h =
                        (if ts_ms > last { ts_ms - last } else { 0 }) as f64 / MS_PER_HOUR as f64;
                    if elapsed_h < 1.0 {
                        elapsed_h
                    } else {
                        1.0
                    }
                }
            };
            last_ts_ms = Some(ts_ms);
            if n == 0 {
                if v.numbers.is_empty() {
                    v.numbers = vec![0.0; SHARED];
                    own_array = false;
                }
                for (lane, &value) in values[..lane_count].iter().enumerate() {
                    if value != 0.0 {
                        if stirred & (1 << lane) == 0 {
                            stirred = self.stir(&mut v, stirred, lane);
                        }
                        let at = self.offsets_by_stirred[stirred][lane] + LEVEL;
                        v.set(at, model_space(value, self.units[lane]));
                    }
                }
                n = 1;
                continue;
            }
            let hours = ts_ms.div_euclid(MS_PER_HOUR);
            let hour = hours.rem_euclid(HOURS_PER_DAY) as usize;
            let weekday = (hours.div_euclid(HOURS_PER_DAY) + EPOCH_WEEKDAY)
                .rem_euclid(DAYS_PER_WEEK) as usize;
            let mut day_seen = v.get(DAY_WEIGHT + hour);
            let mut week_seen = v.get(WEEK_WEIGHT + weekday);
            let day_shrink = day_seen / (day_seen + self.shrinkage);
            let week_shrink = week_seen / (week_seen + self.shrinkage);
            let warm = n >= self.warmup;
            let level_rate = 1.0 / (n + 1) as f64;
            let level_rate = if level_rate > self.level_alpha {
                level_rate
            } else {
                self.level_alpha
            };
            let scale_rate = 1.0 / n as f64;
            let scale_rate = if scale_rate > self.scale_alpha {
                scale_rate
            } else {
                self.scale_alpha
            };
            // A weighted running mean at first, an EWMA over periods once the slot has history.
            day_seen += spacing_h;
            v.set(DAY_WEIGHT + hour, day_seen);
            let day_factor = seasonal_factor(day_seen, self.season_alpha, spacing_h);
            let spacing_w = spacing_h / HOURS_PER_DAY as f64;
            week_seen += spacing_w;
            v.set(WEEK_WEIGHT + weekday, week_seen);
            let week_factor = seasonal_factor(week_seen, self.season_alpha, spacing_w);
            for (lane, &value) in values[..lane_count].iter().enumerate() {
                if stirred & (1 << lane) == 0 {
                    if value == 0.0 {
                        // A lane that has learned only zeros stays all zeros: nothing to store or learn.
                        continue;
                    }
                    stirred = self.stir(&mut v, stirred, lane);
                }
                let base = self.offsets_by_stirred[stirred][lane];
                self.learn_lane(
                    &mut v,
                    base,
                    hour,
                    weekday,
                    model_space(value, self.units[lane]),
                    warm,
                    [
                        level_rate,
                        scale_rate,
                        day_shrink,
                        week_shrink,
                        day_factor,
                        week_factor,
                    ],
                );
            }
            if n < COUNT_CAP {
                n += 1;
            }
        }
        match buffer {
            Some(buffer) if own_array && v.numbers.len() == stored_len => {
                buffer.copy_from_slice(py, &v.numbers)?
            }
            buffer => {
                if let Some(buffer) = buffer {
                    buffer.release(py);
                }
                let bytes: Vec<u8> = v
                    .numbers
                    .iter()
                    .flat_map(|number| number.to_ne_bytes())
                    .collect();
                let bytes = PyBytes::new(py, &bytes);
                if own_array {
                    // Grown by a stirred lane: the same array object, as Python's slice insertion keeps it.
                    array.del_item(PySlice::full(py))?;
                    array.call_method1("frombytes", (bytes,))?;
                } else {
                    state.setattr("values", self.array_type.call1(py, ("f", bytes))?)?;
                }
            }
        }
        state.setattr("n", n)?;
        state.setattr("last_ts_ms", last_ts_ms)?;
        state.setattr("stirred", stirred)?;
        Ok(())
    }

    /// Give ``lane`` its numbers (zeros, as it has learned only zeros so far) at its place; returns the stirred
    /// bits with it.
    fn stir(&self, v: &mut Values, stirred: usize, lane: usize) -> usize {
        let at = self.offsets_by_stirred[stirred][lane];
        v.numbers
            .splice(at..at, std::iter::repeat_n(0.0, LANE_SIZE));
        stirred | (1 << lane)
    }

    /// One lane's step at one point. ``rates``: level, scale, day shrink, week shrink, day factor, week factor.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn learn_lane(
        &self,
        v: &mut Values,
        base: usize,
        hour: usize,
        weekday: usize,
        y: f64,
        warm: bool,
        rates: [f64; 6],
    ) {
        let [level_rate, scale_rate, day_shrink, week_shrink, day_factor, week_factor] = rates;
        let (huber_z, min_scale) = (self.huber_z, self.min_scale);
        let mut level = v.get(base + LEVEL);
        let scale = v.get(base + SCALE);
        let last_z = v.get(base + LAST_Z);
        let day_shift = v.get(base + DAY_SHIFT);
        let week_shift = v.get(base + WEEK_SHIFT);
        let day_value = v.get(base + DAY + hour);
        let week_value = v.get(base + WEEK + weekday);
        // z, the CUSUM and the scale judge the prediction as scored; the level and profile learn from the
        // residual of the unshrunk profile, so the offsets converge to it rather than overshoot.
        let day_offset = day_value - day_shift;
        let week_offset = week_value - week_shift;
        let profile = level + day_offset + week_offset;
        let expected = level + day_shrink * day_offset + week_shrink * week_offset;
        let sigma = scale * MAD_TO_SIGMA;
        let sigma = if min_scale > sigma { min_scale } else { sigma };
        let residual = y - expected;
        let z = residual / sigma;
        let profile_residual = y - profile;
        let bounded_z = if z < huber_z { z } else { huber_z };
        let bounded_z = if bounded_z > -huber_z {
            bounded_z
        } else {
            -huber_z
        };
        let clipped;
        let scale_input;
        if warm {
            let lag_product = v.get(base + LAG_PRODUCT);
            let z_power = v.get(base + Z_POWER);
            let rho = if z_power > 0.0 {
                let rho = lag_product / z_power;
                // Written so that a NaN ratio counts as no correlation, as the Python model's `not rho > 0.0`.
                if !(rho > 0.0) {
                    0.0
                } else if rho > 0.95 {
                    0.95
                } else {
                    rho
                }
            } else {
                0.0
            };
            let step = z * ((1.0 - rho) / (1.0 + rho)).sqrt();
            let cusum_up = v.get(base + CUSUM_UP) + step - self.drift;
            v.set(base + CUSUM_UP, self.cap_cusum(cusum_up));
            let cusum_down = v.get(base + CUSUM_DOWN) - step - self.drift;
            v.set(base + CUSUM_DOWN, self.cap_cusum(cusum_down));
            // Huber: an outlier teaches the model only as much as a 'huber_z' deviation would.
            let bound = huber_z * sigma;
            let bounded = if profile_residual < bound {
                profile_residual
            } else {
                bound
            };
            clipped = if bounded > -bound { bounded } else { -bound };
            // The scale hears at most twice itself per value, so a surge or a ramp cannot quickly widen its band.
            let scale_cap = SCALE_STEP_CAP * (if min_scale > scale { min_scale } else { scale });
            let absolute = residual.abs();
            scale_input = if scale_cap < absolute {
                scale_cap
            } else {
                absolute
            };
            // Autocorrelation is a trait of the series, learned slowly and only once warm.
            v.set(
                base + LAG_PRODUCT,
                lag_product + self.rho_rate * (bounded_z * last_z - lag_product),
            );
            v.set(
                base + Z_POWER,
                z_power + self.rho_rate * (bounded_z * bounded_z - z_power),
            );
        } else {
            v.set(base + CUSUM_UP, 0.0);
            v.set(base + CUSUM_DOWN, 0.0);
            clipped = profile_residual;
            scale_input = residual.abs();
        }
        level += level_rate * clipped;
        v.set(base + SCALE, scale + scale_rate * (scale_input - scale));
        v.set(base + LAST_Z, bounded_z);
        let remainder = clipped * (1.0 - level_rate);
        let day_step = day_factor * remainder;
        let week_step = week_factor * remainder;
        // Offsets average zero and the mean lives in the level: otherwise level and profiles, learning from the
        // same residual, drift in opposite directions and the profile is no longer a profile.
        v.set(base + DAY + hour, day_value + day_step);
        v.set(
            base + DAY_SHIFT,
            day_shift + day_step / HOURS_PER_DAY as f64,
        );
        v.set(base + WEEK + weekday, week_value + week_step);
        v.set(
            base + WEEK_SHIFT,
            week_shift + week_step / DAYS_PER_WEEK as f64,
        );
        v.set(
            base + LEVEL,
            level + (day_step / HOURS_PER_DAY as f64 + week_step / DAYS_PER_WEEK as f64),
        );
    }

    /// A CUSUM stays in [0, 2 × cusum_limit]; NaN counts as 0.
    #[inline]
    fn cap_cusum(&self, cusum: f64) -> f64 {
        if !(cusum > 0.0) {
            0.0
        } else if self.cusum_cap < cusum {
            self.cusum_cap
        } else {
            cusum
        }
    }
}
