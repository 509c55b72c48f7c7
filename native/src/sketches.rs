//! Bounded distinct counters: HyperLogLog registers in a sliding event-time window of panes.
//!
//! They dump to plain JSON (registers as base64), so they ride in `SubjectStore` snapshots and the state changelog
//! like any other state. Items are hashed with BLAKE2b (8-byte digest), never with a salted hash, so a replay in
//! another process counts exactly the same. `tests/test_sketches_native.py` holds adds, counts and dumps against a
//! plain-Python statement of the same sketch.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

const HASH_BITS: u32 = 64;
const MIN_PRECISION: u32 = 4;
const MAX_PRECISION: u32 = 16;

extern "C" {
    // The C library's log, which Python's math.log calls: linear counting must round as the dumps' readers do.
    fn log(x: f64) -> f64;
}

/// The register `item` lands in and the rank it would set there, in a sketch of this precision.
fn position(item: &str, precision: u32) -> (usize, u8) {
    let mut hasher = Blake2bVar::new(8).expect("8 bytes is a BLAKE2b digest size");
    hasher.update(item.as_bytes());
    let mut digest = [0u8; 8];
    hasher
        .finalize_variable(&mut digest)
        .expect("the digest buffer is the digest's size");
    let hashed = u64::from_be_bytes(digest);
    let rest_bits = HASH_BITS - precision;
    let rest = hashed & ((1u64 << rest_bits) - 1);
    let bit_length = HASH_BITS - rest.leading_zeros();
    (
        (hashed >> rest_bits) as usize,
        (rest_bits - bit_length + 1) as u8,
    )
}

/// 2**-rank, exactly: a power of two is its exponent's bits (every rank a register can hold is in range).
fn inverse_power(rank: u8) -> f64 {
    f64::from_bits((1023 - u64::from(rank)) << 52)
}

/// Flajolet et al.'s estimate from one sketch's registers, given as their count, how many are zero and the sum of
/// 2**-register over them in register order (~1.04/sqrt(m) error). Small counts, what a sharing detector compares
/// with thresholds of 3 to 10, fall back to linear counting, which is close to exact there.
fn estimate(m: usize, zeros: usize, harmonic: f64) -> i64 {
    if zeros == m {
        return 0;
    }
    let size = m as f64;
    let alpha = match m {
        16 => 0.673,
        32 => 0.697,
        64 => 0.709,
        _ => 0.7213 / (1.0 + 1.079 / size),
    };
    let mut estimate = alpha * size * size / harmonic;
    if estimate <= 2.5 * size && zeros > 0 {
        // SAFETY: a pure function of a double.
        estimate = size * unsafe { log(size / zeros as f64) };
    }
    estimate.round_ties_even() as i64
}

fn checked_precision(precision: u32) -> PyResult<u32> {
    if (MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
        Ok(precision)
    } else {
        Err(PyValueError::new_err(format!(
            "precision must be between {MIN_PRECISION} and {MAX_PRECISION}, not {precision}"
        )))
    }
}

/// Distinct items of several kinds (say devices, networks, countries) over the last `panes * pane_ms` of event
/// time: one HyperLogLog per pane and kind.
///
/// A pane leaves when the window passes it, so the counts forget old items without remembering any item. The
/// kinds share their panes, and all registers lie one after another in one buffer, in the order of `starts`:
/// per pane, the first kind's `2**precision` registers, then the next kind's. A kind with no item in a pane keeps
/// zero registers there, which no count or union can tell from a pane it never had. The buffer holds kinds
/// `0 .. dimensions - 1` and widens when a later kind's first item comes, so a caller numbers its kinds commonest
/// first. `starts` is always ascending (a late event's new pane goes in its place): trimming drops a prefix, and
/// a dump, which every changelog record of a key or account carries, is the buffer as is.
#[derive(Clone)]
pub struct SlidingSketch {
    precision: u32,
    pane_ms: i64,
    panes: i64,
    dimensions: usize,
    starts: Vec<i64>,
    registers: Vec<u8>,
}

impl SlidingSketch {
    pub fn new(precision: u32, pane_ms: i64, panes: i64) -> PyResult<Self> {
        if pane_ms < 1 || panes < 1 {
            return Err(PyValueError::new_err(format!(
                "a window of at least one pane of at least 1 ms, not {panes} of {pane_ms} ms"
            )));
        }
        Ok(Self {
            precision: checked_precision(precision)?,
            pane_ms,
            panes,
            dimensions: 1,
            starts: Vec::new(),
            registers: Vec::new(),
        })
    }

    pub fn pane_ms(&self) -> i64 {
        self.pane_ms
    }

    fn block(&self) -> usize {
        self.dimensions << self.precision
    }

    fn pane_start(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.pane_ms)
    }

    fn trim(&mut self, now_ms: i64) {
        let oldest = self.pane_start(now_ms) - (self.panes - 1) * self.pane_ms;
        let left = self.starts.partition_point(|&start| start < oldest);
        if left > 0 {
            let block = self.block();
            self.starts.drain(..left);
            self.registers.drain(..left * block);
        }
    }

    /// Count `item` of kind `dimension` now; returns whether it is (probably) new to the whole window.
    ///
    /// An item seen in an older pane and repeated in a new one does not count as new, so a window merely sliding
    /// over the same users never looks like a change.
    pub fn add(&mut self, item: &str, now_ms: i64, dimension: usize) -> bool {
        if dimension >= self.dimensions {
            self.widen(dimension + 1);
        }
        let current = self.pane_start(now_ms);
        let (index, rank) = position(item, self.precision);
        let offset = (dimension << self.precision) + index;
        let block = self.block();
        let mut pane = self.starts.partition_point(|&start| start < current);
        let at = if pane < self.starts.len() && self.starts[pane] == current {
            let at = pane * block + offset;
            if rank <= self.registers[at] {
                return false; // a repeat within the pane, by far the commonest case
            }
            at
        } else {
            // A new pane is the only moment an old one can have left the window.
            self.trim(now_ms);
            pane = self.starts.partition_point(|&start| start < current);
            // Exactly one pane more: a subject's buffer is its state, and most subjects are small.
            self.starts.reserve_exact(1);
            self.starts.insert(pane, current);
            self.registers.reserve_exact(block);
            let from = pane * block;
            self.registers
                .splice(from..from, std::iter::repeat_n(0u8, block));
            from + offset
        };
        let seen = self
            .registers
            .iter()
            .skip(offset)
            .step_by(block)
            .copied()
            .max()
            .unwrap_or(0);
        self.registers[at] = rank;
        rank > seen
    }

    /// Room for kinds up to `dimensions - 1`: zero registers for the new kinds in every pane.
    fn widen(&mut self, dimensions: usize) {
        let block = self.block();
        let added = (dimensions - self.dimensions) << self.precision;
        let mut widened = Vec::with_capacity(self.starts.len() * (block + added));
        for pane in self.registers.chunks(block) {
            widened.extend_from_slice(pane);
            widened.resize(widened.len() + added, 0);
        }
        self.registers = widened;
        self.dimensions = dimensions;
    }

    /// Distinct items of kind `dimension` in the window that ends now.
    pub fn count(&mut self, now_ms: i64, dimension: usize) -> i64 {
        self.trim(now_ms);
        if self.starts.is_empty() || dimension >= self.dimensions {
            return 0;
        }
        let m = 1usize << self.precision;
        let first = dimension * m;
        let block = self.block();
        let (mut zeros, mut harmonic) = (0, 0.0f64);
        // The union of the panes' sketches, register by register; summed in register order, one double at a
        // time, as Python 3.11's sum() adds floats.
        for index in first..first + m {
            let rank = self.registers[index..]
                .iter()
                .step_by(block)
                .copied()
                .max()
                .unwrap_or(0);
            zeros += usize::from(rank == 0);
            harmonic += inverse_power(rank);
        }
        estimate(m, zeros, harmonic)
    }

    /// Pane starts and all registers in one base64 string, in pane order.
    pub fn dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let data = PyDict::new(py);
        data.set_item("precision", self.precision)?;
        data.set_item("pane_ms", self.pane_ms)?;
        data.set_item("panes", self.panes)?;
        data.set_item("dimensions", self.dimensions)?;
        data.set_item("starts", &self.starts)?;
        data.set_item(
            "registers",
            PyString::new(py, &STANDARD.encode(&self.registers)),
        )?;
        Ok(data)
    }

    pub fn load(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let precision = checked_precision(data.get_item("precision")?.extract()?)?;
        let dimensions: usize = data.get_item("dimensions")?.extract()?;
        let starts: Vec<i64> = data.get_item("starts")?.extract()?;
        let text: String = data.get_item("registers")?.extract()?;
        let registers = STANDARD.decode(text).map_err(|error| {
            PyValueError::new_err(format!("sketch registers are not base64: {error}"))
        })?;
        if dimensions < 1 || registers.len() != (starts.len() * dimensions) << precision {
            return Err(PyValueError::new_err(
                "sketch registers do not match their panes, kinds and precision",
            ));
        }
        if starts.windows(2).any(|pair| pair[1] <= pair[0]) {
            return Err(PyValueError::new_err(
                "sketch pane starts are not in ascending order",
            ));
        }
        let mut sketch = Self::new(
            precision,
            data.get_item("pane_ms")?.extract()?,
            data.get_item("panes")?.extract()?,
        )?;
        sketch.dimensions = dimensions;
        sketch.starts = starts;
        sketch.registers = registers;
        Ok(sketch)
    }
}

/// `SlidingSketch` for Python: the key-sharing profiles hold theirs inside; this serves tests and tools.
#[pyclass(module = "detectors.native")]
pub struct SlidingDistinct {
    sketch: SlidingSketch,
}

#[pymethods]
impl SlidingDistinct {
    #[new]
    fn new(precision: u32, pane_ms: i64, panes: i64) -> PyResult<Self> {
        Ok(Self {
            sketch: SlidingSketch::new(precision, pane_ms, panes)?,
        })
    }

    #[getter]
    fn dimensions(&self) -> usize {
        self.sketch.dimensions
    }

    #[getter]
    fn starts(&self) -> Vec<i64> {
        self.sketch.starts.clone()
    }

    #[pyo3(signature = (item, now_ms, dimension = 0))]
    fn add(&mut self, item: &str, now_ms: i64, dimension: usize) -> bool {
        self.sketch.add(item, now_ms, dimension)
    }

    #[pyo3(signature = (now_ms, dimension = 0))]
    fn count(&mut self, now_ms: i64, dimension: usize) -> i64 {
        self.sketch.count(now_ms, dimension)
    }

    fn dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.sketch.dump(py)
    }

    #[staticmethod]
    fn load(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            sketch: SlidingSketch::load(data)?,
        })
    }
}
